"""Unregistration: the webhook configurations removed (a Helm pre-delete hook, or by hand)."""

from __future__ import annotations

from kaptain_warden.certs.settings import ADMISSION_GROUP, REQUEST_TIMEOUT
from kaptain_warden.kube.api import KubeApi
from kaptain_warden.kube.client import resource_path
from kaptain_warden.kube.errors import ApiError

__all__ = ["unregister_webhooks"]


def unregister_webhooks(api: KubeApi, *, mutating: str | None, validating: str | None) -> list[str]:
    """Delete the two webhook configurations (absent ones are fine); the names deleted."""
    deleted = []
    for resource, name in (
        ("mutatingwebhookconfigurations", mutating),
        ("validatingwebhookconfigurations", validating),
    ):
        if not name:
            continue
        path = resource_path(group=ADMISSION_GROUP, version="v1", resource=resource, name=name)
        try:
            api.request("DELETE", path, timeout=REQUEST_TIMEOUT)
        except ApiError as exc:
            if exc.status != 404:
                raise
            continue
        deleted.append(f"{resource}/{name}")
    return deleted
