"""Mutating/ValidatingWebhookConfiguration objects, generated from the kinds a policy governs.

One function serves the tests, `kaptain-warden webhook-config` and the Helm chart's checks, so
what is registered against the API server always matches what the policy governs.
"""

from __future__ import annotations

import base64
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Literal

from kaptain_warden.policies.model import Policy

FailurePolicy = Literal["Ignore", "Fail"]
MUTATING_WEBHOOK = "mutate.warden.kaptain.io"
VALIDATING_WEBHOOK = "validate.warden.kaptain.io"
# The label the API server sets on every namespace (GA since 1.22): selecting on it is how a
# webhook stays out of kube-system and its own namespace even while it is down.
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


@dataclass(frozen=True)
class WebhookClient:
    """Where the API server reaches the admission server: a URL, or a Service."""

    url: str | None = None
    service_namespace: str | None = None
    service_name: str | None = None
    service_port: int = 443

    def __post_init__(self) -> None:
        if (self.url is None) == (self.service_name is None):
            raise ValueError("give either a URL or a service namespace/name, not both")
        if self.url is not None and not self.url.startswith("https://"):
            raise ValueError(f"webhook URLs must use https://, got {self.url!r}")
        if self.service_name is not None and not self.service_namespace:
            raise ValueError("a service needs its namespace")

    def client_config(self, path: str, ca_bundle: bytes) -> dict[str, Any]:
        """The `clientConfig` stanza for one endpoint path."""
        config: dict[str, Any] = {}
        if self.url is not None:
            config["url"] = self.url.rstrip("/") + path
        else:
            config["service"] = {
                "namespace": self.service_namespace,
                "name": self.service_name,
                "path": path,
                "port": self.service_port,
            }
        if ca_bundle:
            config["caBundle"] = base64.b64encode(ca_bundle).decode("ascii")
        return config


def webhook_rules(
    policy: Policy, operations: list[str], *, status: bool = False
) -> list[dict[str, Any]]:
    """Admission rules for every governed kind, one per API group/version, sorted.

    With `status`, `<resource>/status` too for the kinds whose status subresource can change
    metadata (built-in Jobs: an identity allowed only `jobs/status` could otherwise rewrite
    warden metadata); CRDs' status subresources cannot, and are not intercepted.
    """
    resources: dict[tuple[str, str], set[str]] = defaultdict(set)
    for kind in policy.kinds:
        resources[(kind.group, kind.version)].add(kind.resource)
        if status and kind.status_writes_metadata:
            resources[(kind.group, kind.version)].add(f"{kind.resource}/status")
    return [
        {
            "apiGroups": [group],
            "apiVersions": [version],
            "operations": list(operations),
            "resources": sorted(names),
            "scope": "Namespaced",
        }
        for (group, version), names in sorted(resources.items())
    ]


def namespace_selector(policy: Policy) -> dict[str, Any]:
    """Never intercept the always-excluded namespaces (kube-system, the warden's own)."""
    return {
        "matchExpressions": [
            {
                "key": NAMESPACE_NAME_LABEL,
                "operator": "NotIn",
                "values": sorted(policy.settings.all_excluded_namespaces),
            }
        ]
    }


def webhook_configurations(
    *,
    policy: Policy,
    client: WebhookClient,
    ca_bundle: bytes,
    name: str = "kaptain-warden",
    failure_policy: FailurePolicy = "Ignore",
    timeout_seconds: int = 5,
    labels: dict[str, str] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The (mutating, validating) webhook configurations for `policy`.

    Both see CREATE and UPDATE: the mutating webhook stamps on CREATE and carries the warden
    keys over on UPDATE (a replace with one's own manifest keeps them); it is reinvoked if
    another webhook changes the object (`IfNeeded`), which is safe because it is idempotent.
    The validating webhook also sees UPDATEs of the status subresources that can change
    metadata (judging only the metadata). It sees every CREATE too, with no `matchConditions`:
    a mutating webhook called after ours and reinvoked after our reinvocation has the last word
    on the object, and may apply a tenant's own rules; nothing a match condition can read tells
    our stamp from values such a mutator copied.
    """
    if not 1 <= timeout_seconds <= 30:
        raise ValueError(f"timeoutSeconds must be between 1 and 30, got {timeout_seconds}")
    metadata: dict[str, Any] = {"name": name}
    if labels:
        metadata["labels"] = dict(labels)
    common = {
        "admissionReviewVersions": ["v1"],
        "sideEffects": "None",
        "matchPolicy": "Equivalent",
        "failurePolicy": failure_policy,
        "timeoutSeconds": timeout_seconds,
        "namespaceSelector": namespace_selector(policy),
    }
    mutating = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": metadata,
        "webhooks": [
            {
                "name": MUTATING_WEBHOOK,
                "clientConfig": client.client_config("/mutate", ca_bundle),
                "rules": webhook_rules(policy, ["CREATE", "UPDATE"]),
                "reinvocationPolicy": "IfNeeded",
                **common,
            }
        ],
    }
    validating = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": dict(metadata),
        "webhooks": [
            {
                "name": VALIDATING_WEBHOOK,
                "clientConfig": client.client_config("/validate", ca_bundle),
                "rules": webhook_rules(policy, ["CREATE", "UPDATE"], status=True),
                **common,
            }
        ],
    }
    return mutating, validating
