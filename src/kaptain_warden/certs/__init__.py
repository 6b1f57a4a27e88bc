"""TLS material: a CA and serving/client certificates, built with `cryptography`."""
