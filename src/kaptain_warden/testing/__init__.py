"""Test and demo infrastructure: a local kube-apiserver + etcd, and CRDs for the governed kinds."""
