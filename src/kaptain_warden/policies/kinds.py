"""The table of kinds kaptain-warden knows: API coordinates, where their native TTL lives."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# Where a kind keeps its own "TTL after finished" field, if it has one.
#   job:         batch/v1 Job, spec.ttlSecondsAfterFinished (GA since 1.23)
#   run-policy:  training-operator kinds, spec.runPolicy.ttlSecondsAfterFinished; the older
#                tf-operator v1 (early Kaptain) had the same field directly under spec
NativeTtl = Literal["job", "run-policy"]


def split_api_version(api_version: str) -> tuple[str, str]:
    """(group, version) of an `apiVersion`: `("", "v1")` for the core group's `v1`."""
    group, _, version = api_version.rpartition("/")
    return group, version


class ApiVersioned:
    """`group` and `version` properties for a dataclass with an `api_version` field."""

    api_version: str

    @property
    def group(self) -> str:
        """The API group ("" for the core group)."""
        return split_api_version(self.api_version)[0]

    @property
    def version(self) -> str:
        """The API version within the group."""
        return split_api_version(self.api_version)[1]


@dataclass(frozen=True)
class KnownKind(ApiVersioned):
    """One governed kind: its API coordinates and what the sweeper must read of it."""

    api_version: str
    kind: str
    resource: str
    native_ttl: NativeTtl | None = None
    # True when deciding needs the object's status (completion), not only its metadata.
    needs_status: bool = False
    # True when an UPDATE of the kind's status subresource can change its metadata (labels,
    # annotations): built-in kinds such as Jobs reset only the spec on a status update. A
    # CRD's status subresource ignores metadata changes, so its status needs no webhook.
    status_writes_metadata: bool = False


KNOWN_KINDS: tuple[KnownKind, ...] = (
    KnownKind("v1", "Secret", "secrets"),
    KnownKind(
        "batch/v1", "Job", "jobs", native_ttl="job", needs_status=True, status_writes_metadata=True
    ),
    KnownKind("kubeflow.org/v1", "TFJob", "tfjobs", native_ttl="run-policy", needs_status=True),
    KnownKind(
        "kubeflow.org/v1", "PyTorchJob", "pytorchjobs", native_ttl="run-policy", needs_status=True
    ),
    KnownKind("kubeflow.org/v1beta1", "Experiment", "experiments", needs_status=True),
    KnownKind("serving.kubeflow.org/v1beta1", "InferenceService", "inferenceservices"),
    KnownKind("serving.kserve.io/v1beta1", "InferenceService", "inferenceservices"),
    KnownKind("serving.knative.dev/v1", "Service", "services"),
    KnownKind("serving.knative.dev/v1", "Configuration", "configurations"),
    KnownKind("serving.knative.dev/v1", "Route", "routes"),
    KnownKind("serving.knative.dev/v1", "Revision", "revisions"),
)

# Not governed, but a link in owner chains: a Katib Experiment owns Trials, a Trial owns the
# TFJob or PyTorchJob it runs. Owner inheritance walks through it.
KATIB_TRIAL = KnownKind("kubeflow.org/v1beta1", "Trial", "trials")

_BY_API_VERSION_KIND = {(k.api_version, k.kind): k for k in KNOWN_KINDS}


def known_kind(api_version: str, kind: str) -> KnownKind | None:
    """The table entry for apiVersion/kind, or None when the kind is not in the table."""
    return _BY_API_VERSION_KIND.get((api_version, kind))


def api_version_of(group: str, version: str) -> str:
    """`apiVersion` as written in objects: `v1` for the core group, else `group/version`."""
    return f"{group}/{version}" if group else version
