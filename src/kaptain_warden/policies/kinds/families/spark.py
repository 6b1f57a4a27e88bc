"""The Spark operator's SparkApplications (`sparkoperator.k8s.io/v1beta2`).

Read from github.com/kubeflow/spark-operator/v2 v2.5.0: api/v1beta2/sparkapplication_types.go,
internal/controller/sparkapplication/controller.go, pkg/util/sparkapplication.go.
"""

from kaptain_warden.policies.kinds.spec import (
    Family,
    KnownKind,
    NativeTtl,
    SecretRefs,
    StateFinish,
)

# The driver and the executors are each a SparkPodSpec: container-like fields (env, envFrom,
# Secrets mounted by name, env keys from Secrets by map), sidecar and init containers, and a
# pod template merged into the pod.
_PODS = ("spec.driver", "spec.executor")

FAMILY = Family(
    name="Spark operator",
    upstream="github.com/kubeflow/spark-operator/v2 v2.5.0",
    kinds=(
        KnownKind(
            "sparkoperator.k8s.io/v1beta2",
            "SparkApplication",
            "sparkapplications",
            # IsTerminated: COMPLETED or FAILED. The operator stamps terminationTime when the
            # driver terminates (a FAILING application may still be retried) and counts its
            # own TTL from it; unset, it is null.
            finish=StateFinish(
                "status.applicationState.state",
                frozenset({"COMPLETED", "FAILED"}),
                time="status.terminationTime",
            ),
            # "Garbage collected TimeToLiveSeconds after its termination": the warden's clock.
            native_ttl=NativeTtl("spec.timeToLiveSeconds"),
            secret_refs=SecretRefs(
                # spec holds the pod's volumes; each pod template, a PodSpec.
                pod_specs=("spec", *(f"{pod}.template.spec" for pod in _PODS)),
                containers=(
                    *_PODS,
                    *(f"{pod}.{c}[*]" for pod in _PODS for c in ("initContainers", "sidecars")),
                ),
                references=(
                    *(f"{pod}.secrets[*]" for pod in _PODS),
                    *(f"{pod}.envSecretKeyRefs.*" for pod in _PODS),
                ),
                names=("spec.imagePullSecrets[*]",),
            ),
        ),
    ),
)
