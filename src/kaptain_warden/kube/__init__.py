"""Adapters that talk to the Kubernetes API server (the only place the client is imported)."""
