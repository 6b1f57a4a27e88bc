"""Kubeflow training-operator v1 jobs: TFJob, PyTorchJob, MPIJob, XGBoostJob, PaddleJob, JAXJob.

They share the operator's common types (pkg/apis/kubeflow.org/v1 common_types.go): replica
specs in a map of pod templates, `spec.runPolicy.ttlSecondsAfterFinished`, and a JobStatus whose
conditions (Created, Running, Restarting, Succeeded, Failed, Suspended) say when it finished.
"""

from kaptain_warden.policies.kinds.spec import (
    ConditionsFinish,
    Family,
    KnownKind,
    NativeTtl,
    SecretRefs,
)

# IsSucceeded / IsFailed: the condition with status True. The operator's own TTL counts from
# status.completionTime, set in the same reconcile as the condition; the condition is read
# first, as for Jobs.
_FINISH = ConditionsFinish(("Succeeded", "Failed"))
_RUN_POLICY_TTL = NativeTtl("spec.runPolicy.ttlSecondsAfterFinished")
# The older tf-operator and pytorch-operator v1 (early Kaptain) had the run policy's fields
# directly under spec.
_LEGACY_TTL = NativeTtl(
    "spec.runPolicy.ttlSecondsAfterFinished",
    legacy_path="spec.ttlSecondsAfterFinished",
    legacy_markers=(
        "cleanPodPolicy",
        "ttlSecondsAfterFinished",
        "activeDeadlineSeconds",
        "backoffLimit",
    ),
)


def _job(
    kind: str, resource: str, replica_specs: str, ttl: NativeTtl = _RUN_POLICY_TTL
) -> KnownKind:
    return KnownKind(
        "kubeflow.org/v1",
        kind,
        resource,
        finish=_FINISH,
        native_ttl=ttl,
        secret_refs=SecretRefs(pod_specs=(f"spec.{replica_specs}.*.template.spec",)),
    )


FAMILY = Family(
    name="Kubeflow training-operator",
    upstream="github.com/kubeflow/training-operator v1.9",
    kinds=(
        _job("TFJob", "tfjobs", "tfReplicaSpecs", _LEGACY_TTL),
        _job("PyTorchJob", "pytorchjobs", "pytorchReplicaSpecs", _LEGACY_TTL),
        _job("MPIJob", "mpijobs", "mpiReplicaSpecs"),
        _job("XGBoostJob", "xgboostjobs", "xgbReplicaSpecs"),
        _job("PaddleJob", "paddlejobs", "paddleReplicaSpecs"),
        _job("JAXJob", "jaxjobs", "jaxReplicaSpecs"),
    ),
)
