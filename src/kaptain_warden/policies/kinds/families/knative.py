"""Knative Serving: the Services, Configurations, Routes and Revisions made for a model."""

from kaptain_warden.policies.kinds.spec import Family, KnownKind, SecretRefs
from kaptain_warden.policies.metadata import (
    KNATIVE_CONFIGURATION_LABEL,
    KNATIVE_GROUP,
    KNATIVE_SERVICE_LABEL,
)

_V1 = f"{KNATIVE_GROUP}/v1"

FAMILY = Family(
    name="Knative Serving",
    upstream="knative.dev/serving v0.48",
    kinds=(
        KnownKind(_V1, "Service", "services", parent_labels=(KNATIVE_SERVICE_LABEL,)),
        # A Configuration's template keeps a Secret in use even while it is scaled to zero.
        KnownKind(
            _V1,
            "Configuration",
            "configurations",
            parent_labels=(KNATIVE_CONFIGURATION_LABEL,),
            secret_refs=SecretRefs(pod_specs=("spec.template.spec",)),
        ),
        KnownKind(_V1, "Route", "routes"),
        # Revision retention reads the Configuration (its latest ready revision) and the
        # InferenceServices (the revisions their status names).
        KnownKind(
            _V1,
            "Revision",
            "revisions",
            retention=True,
            sweeper_reads=(
                (KNATIVE_GROUP, "configurations"),
                ("serving.kserve.io", "inferenceservices"),
                ("serving.kubeflow.org", "inferenceservices"),
            ),
        ),
    ),
)
