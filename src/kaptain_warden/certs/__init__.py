"""Self-managed TLS: a CA and serving/client certificates built with `cryptography` (`pki`,
`selfsigned`), their rotation (`rotation`), and keeping the certificate Secret, the webhook
configurations' caBundle and the server's files in step (`sync`, `ca_bundle`, `files`, `watch`,
`unregister`)."""
