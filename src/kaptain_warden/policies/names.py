"""Kubernetes object names: the DNS-1123 forms the API server enforces, checked before a name
a tenant wrote goes into a request path."""

from __future__ import annotations

import re

# A DNS-1123 label: lower-case alphanumerics and '-', alphanumeric at both ends, 63 at most.
_LABEL = re.compile(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?", re.ASCII)
# A DNS-1123 subdomain: labels joined by '.', 253 at most.
_SUBDOMAIN = re.compile(
    r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*", re.ASCII
)


def is_dns1123_label(value: object) -> bool:
    """Whether `value` is a DNS-1123 label: a namespace, or a Knative / KServe object name."""
    return isinstance(value, str) and _LABEL.fullmatch(value) is not None


def is_dns1123_subdomain(value: object) -> bool:
    """Whether `value` is a DNS-1123 subdomain: the name of most built-in kinds and CRDs.

    Neither `/`, `?`, `%` nor `..` can appear in one, so it is one path segment as it stands.
    """
    return isinstance(value, str) and len(value) <= 253 and _SUBDOMAIN.fullmatch(value) is not None
