"""InferenceServices (the SDK's deploy()), of KServe and of its predecessor KFServing."""

from kaptain_warden.policies.kinds.spec import Family, KnownKind, SecretRefs

# A component (predictor, transformer, explainer) is a PodSpec inline, and its framework entry
# (sklearn, tensorflow, model, ...) a container.
_COMPONENTS = tuple(f"spec.{c}" for c in ("predictor", "transformer", "explainer"))
_REFS = SecretRefs(pod_specs=_COMPONENTS, containers=tuple(f"{c}.*" for c in _COMPONENTS))

FAMILY = Family(
    name="KServe and KFServing",
    upstream="github.com/kserve/kserve v0.20 (KFServing: the last serving.kubeflow.org CRD)",
    kinds=(
        # The objects a controller makes for an InferenceService carry its name in a label.
        KnownKind(
            "serving.kubeflow.org/v1beta1",
            "InferenceService",
            "inferenceservices",
            parent_labels=("serving.kubeflow.org/inferenceservice",),
            secret_refs=_REFS,
        ),
        KnownKind(
            "serving.kserve.io/v1beta1",
            "InferenceService",
            "inferenceservices",
            parent_labels=("serving.kserve.io/inferenceservice",),
            secret_refs=_REFS,
        ),
    ),
)
