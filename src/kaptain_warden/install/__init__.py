"""Install manifests generated from the policy: the webhook configurations."""
