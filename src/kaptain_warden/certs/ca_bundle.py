"""The CA bundle published into the webhook configurations' `caBundle`, so the API server
trusts the admission server's certificate.

A configuration that carries a newer bundle (the bundle generation annotation) is left alone:
a replica with a stale view never writes an older bundle back.
"""

from __future__ import annotations

import base64
import logging
from typing import Any

from kaptain_warden.certs.rotation import BUNDLE_GENERATION, TlsMaterial
from kaptain_warden.certs.settings import ADMISSION_GROUP, REQUEST_TIMEOUT, CertsSettings
from kaptain_warden.kube.api import KubeApi
from kaptain_warden.kube.client import resource_path
from kaptain_warden.kube.errors import ApiError

__all__ = ["publish_bundle", "webhook_paths"]

logger = logging.getLogger(__name__)


def webhook_paths(settings: CertsSettings) -> list[str]:
    """The REST paths of the webhook configurations whose caBundle to keep current."""
    paths = []
    for resource, name in (
        ("mutatingwebhookconfigurations", settings.mutating_webhook),
        ("validatingwebhookconfigurations", settings.validating_webhook),
    ):
        if name:
            paths.append(
                resource_path(group=ADMISSION_GROUP, version="v1", resource=resource, name=name)
            )
    return paths


def publish_bundle(api: KubeApi, settings: CertsSettings, material: TlsMaterial) -> bool:
    """Bring every caBundle to `material.bundle`; True when all carry it now."""
    published = True
    for path in webhook_paths(settings):
        published = _publish_one(api, path, material) and published
    return published


def _publish_one(api: KubeApi, path: str, material: TlsMaterial) -> bool:
    wanted = base64.b64encode(material.bundle_pem).decode("ascii")
    try:
        config = api.request("GET", path, timeout=REQUEST_TIMEOUT)
    except ApiError as exc:
        if exc.status == 404:
            logger.warning("%s does not exist (yet): its caBundle cannot be set", path)
            return False
        raise
    webhooks = config.get("webhooks") or []
    if webhooks and all(
        (hook.get("clientConfig") or {}).get("caBundle") == wanted for hook in webhooks
    ):
        return True
    metadata = config.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    theirs = str(annotations.get(BUNDLE_GENERATION, "0"))
    if theirs.isdigit() and int(theirs) > material.generation:
        logger.info("%s carries a newer CA bundle than this replica read; leaving it", path)
        return False
    # JSON Patch with a `test` of the resourceVersion: the patch applies to exactly the
    # object read above, so two replicas cannot interleave an older bundle over a newer one.
    patch: list[dict[str, Any]] = [
        {
            "op": "test",
            "path": "/metadata/resourceVersion",
            "value": metadata["resourceVersion"],
        }
    ]
    patch += [
        {"op": "add", "path": f"/webhooks/{i}/clientConfig/caBundle", "value": wanted}
        for i in range(len(webhooks))
    ]
    generation = str(material.generation)
    if annotations:
        key = BUNDLE_GENERATION.replace("~", "~0").replace("/", "~1")
        patch.append({"op": "add", "path": f"/metadata/annotations/{key}", "value": generation})
    else:
        patch.append(
            {
                "op": "add",
                "path": "/metadata/annotations",
                "value": {BUNDLE_GENERATION: generation},
            }
        )
    try:
        api.request(
            "PATCH",
            path,
            body=patch,
            content_type="application/json-patch+json",
            timeout=REQUEST_TIMEOUT,
        )
    except ApiError as exc:
        if exc.status in (409, 422):  # the object moved since we read it: next pass
            logger.info("%s changed while its caBundle was being set; retrying later", path)
            return False
        raise
    logger.info("set the caBundle of %s (bundle generation %s)", path, generation)
    return True
