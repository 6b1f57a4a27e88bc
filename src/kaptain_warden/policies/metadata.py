"""The metadata contract: every label and annotation key kaptain-warden reads or writes."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

DEFAULT_PREFIX = "warden.kaptain.io"

# Knative and KServe facts we read (knative/serving pkg/apis/serving/register.go; kserve constants).
KNATIVE_GROUP = "serving.knative.dev"
KNATIVE_SERVICE_LABEL = "serving.knative.dev/service"
KNATIVE_CONFIGURATION_LABEL = "serving.knative.dev/configuration"
KNATIVE_ROUTING_STATE_LABEL = "serving.knative.dev/routingState"
KNATIVE_ROUTING_STATE_MODIFIED = "serving.knative.dev/routingStateModified"
# RevisionPreservedAnnotationKey = GroupName + "/no-gc" (the config-gc example text says
# "knative.dev/no-gc", but the code reads serving.knative.dev/no-gc).
KNATIVE_NO_GC = "serving.knative.dev/no-gc"
KNATIVE_CREATOR = "serving.knative.dev/creator"
# Kubeflow facts we read (kubeflow profile-controller): a Profile is cluster-scoped, named like
# the namespace it makes, and names its owner in `spec.owner.name`; the controller also writes
# that owner into the namespace's `owner` annotation.
KUBEFLOW_PROFILE_GROUP = "kubeflow.org"
KUBEFLOW_PROFILE_VERSION = "v1"
KUBEFLOW_PROFILE_RESOURCE = "profiles"
KUBEFLOW_NAMESPACE_OWNER = "owner"

# What a bound ServiceAccount token tells the API server about the Pod it was issued for; the
# API server puts it in the request's `userInfo.extra` (one value each).
POD_NAME_EXTRA = "authentication.kubernetes.io/pod-name"
POD_UID_EXTRA = "authentication.kubernetes.io/pod-uid"
# Kubeflow's notebook-controller labels a notebook's Pods with the Notebook's name, and owns
# the StatefulSet that runs them (kubeflow/kubeflow components/notebook-controller).
NOTEBOOK_POD_LABEL = "notebook-name"
NOTEBOOK_API_VERSION = "kubeflow.org/v1"
NOTEBOOK_KIND = "Notebook"


@dataclass(frozen=True)
class MetadataKeys:
    """The warden's keys under one prefix (default `warden.kaptain.io`).

    Each key is built once per instance (`cached_property`): a review reads them dozens of
    times, and building the tuples of keys each time cost about a fifth of deciding one.
    """

    prefix: str = DEFAULT_PREFIX

    @cached_property
    def managed(self) -> str:
        """Label `managed: "true"`: the only objects the sweeper ever deletes."""
        return f"{self.prefix}/managed"

    @cached_property
    def owner(self) -> str:
        """Label (label-safe form) and annotation (exact identity) naming the owner."""
        return f"{self.prefix}/owner"

    @cached_property
    def rule(self) -> str:
        """Label: id of the policy rule that matched at creation."""
        return f"{self.prefix}/rule"

    @cached_property
    def created_at(self) -> str:
        """Annotation: RFC 3339 UTC time of stamping, set once."""
        return f"{self.prefix}/created-at"

    @cached_property
    def ttl(self) -> str:
        """Annotation: time to live from creation, a duration."""
        return f"{self.prefix}/ttl"

    @cached_property
    def expires_at(self) -> str:
        """Annotation: RFC 3339 UTC time after which the sweeper deletes the object."""
        return f"{self.prefix}/expires-at"

    @cached_property
    def ttl_after_finished(self) -> str:
        """Annotation: time to live counted from completion, a duration."""
        return f"{self.prefix}/ttl-after-finished"

    @cached_property
    def keep(self) -> str:
        """Annotation `keep: "true"`: opt-out, honoured only where the rule allows it."""
        return f"{self.prefix}/keep"

    @cached_property
    def backfilled_at(self) -> str:
        """Annotation: RFC 3339 UTC time at which the sweeper's backfill stamped an object the
        webhook missed (an outage, or made before the install); its TTL counts from then.

        A system key: only the sweeper (a privileged identity) writes it.
        """
        return f"{self.prefix}/backfilled-at"

    @cached_property
    def warned_at(self) -> str:
        """Annotation: RFC 3339 UTC time the sweeper warned the owner of the coming expiry.

        A system key: only the sweeper (a privileged identity) writes it, so every replica
        and restart warns once per expiry.
        """
        return f"{self.prefix}/warned-at"

    @cached_property
    def created_by_pod(self) -> str:
        """Annotation: name of the Pod whose bound token created the object (provenance)."""
        return f"{self.prefix}/created-by-pod"

    @cached_property
    def created_by_pod_uid(self) -> str:
        """Annotation: uid of that Pod; `expireWhenCreatorGone` watches for it to be gone."""
        return f"{self.prefix}/created-by-pod-uid"

    @cached_property
    def notebook(self) -> str:
        """Annotation (exact name) and label (label-safe form): the Kubeflow Notebook whose
        Pod created the object."""
        return f"{self.prefix}/notebook"

    @cached_property
    def profile_owner(self) -> str:
        """Annotation: `spec.owner.name` of the namespace's Kubeflow Profile (the person)."""
        return f"{self.prefix}/profile-owner"

    @cached_property
    def creator_gone_at(self) -> str:
        """Annotation: RFC 3339 UTC time the sweeper first saw the creator Pod gone; written
        once, by the sweeper only (a privileged identity)."""
        return f"{self.prefix}/creator-gone-at"

    @cached_property
    def provenance_annotations(self) -> tuple[str, ...]:
        """The annotations that say where an object came from, computed on CREATE."""
        return (self.created_by_pod, self.created_by_pod_uid, self.notebook, self.profile_owner)

    @cached_property
    def labels(self) -> tuple[str, ...]:
        """Every label key the warden writes."""
        return (self.managed, self.owner, self.rule, self.notebook)

    @cached_property
    def annotations(self) -> tuple[str, ...]:
        """Every annotation key the warden writes or honours."""
        return (
            self.owner,
            self.created_at,
            self.ttl,
            self.expires_at,
            self.ttl_after_finished,
            self.keep,
            self.backfilled_at,
            self.warned_at,
            *self.provenance_annotations,
            self.creator_gone_at,
        )

    @cached_property
    def system_annotations(self) -> tuple[str, ...]:
        """The annotations the warden computes and nobody else may set: decided on CREATE
        (by the webhook) or by backfill, carried over unchanged on UPDATE. Every label in
        `labels` is a system key too. (A tuple: messages list them in a stable order.)"""
        return (
            self.owner,
            self.created_at,
            self.expires_at,
            self.backfilled_at,
            self.warned_at,
            *self.provenance_annotations,
            self.creator_gone_at,
        )

    @cached_property
    def user_annotations(self) -> tuple[str, ...]:
        """Annotations a person may set (within the rule's limits) and later change."""
        return (self.ttl, self.ttl_after_finished, self.keep)

    @cached_property
    def managed_selector(self) -> str:
        """The label selector the sweeper lists with."""
        return f"{self.managed}=true"
