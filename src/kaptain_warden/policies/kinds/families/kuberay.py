"""KubeRay (`ray.io/v1`): RayJobs, and the RayClusters people or a RayJob run on.

Read from github.com/ray-project/kuberay/ray-operator v1.6.0: apis/ray/v1/rayjob_types.go,
apis/ray/v1/raycluster_types.go, controllers/ray/rayjob_controller.go.
"""

from kaptain_warden.policies.kinds.spec import Family, KnownKind, SecretRefs, StateFinish

# A RayClusterSpec: a head group and a list of worker groups, each with its pod template.
_CLUSTER_PODS = ("headGroupSpec.template.spec", "workerGroupSpecs[*].template.spec")

FAMILY = Family(
    name="KubeRay",
    upstream="github.com/ray-project/kuberay/ray-operator v1.6.0",
    kinds=(
        KnownKind(
            "ray.io/v1",
            "RayJob",
            "rayjobs",
            # IsJobDeploymentTerminal: Complete or Failed; updateRayJobStatus stamps endTime in
            # the same status update. The Ray job's own jobStatus may read SUCCEEDED while the
            # submitter still runs (the deployment stays Running): it does not decide.
            finish=StateFinish(
                "status.jobDeploymentStatus",
                frozenset({"Complete", "Failed"}),
                time="status.endTime",
            ),
            # No native TTL to mirror: spec.ttlSecondsAfterFinished times the shutdown of the
            # RayJob's RayCluster (with spec.shutdownAfterJobFinishes), not the RayJob's
            # deletion. The CRD defaults it to 0, "right away", and the operator refuses a
            # RayJob that sets it without shutdownAfterJobFinishes (ValidationFailed).
            secret_refs=SecretRefs(
                pod_specs=(
                    *(f"spec.rayClusterSpec.{path}" for path in _CLUSTER_PODS),
                    "spec.submitterPodTemplate.spec",
                )
            ),
        ),
        KnownKind(
            "ray.io/v1",
            "RayCluster",
            "rayclusters",
            # Never finishes: status.state is ready or suspended (a suspended cluster resumes).
            # One a RayJob runs on names it in a controller ownerReference.
            secret_refs=SecretRefs(pod_specs=tuple(f"spec.{path}" for path in _CLUSTER_PODS)),
        ),
    ),
)
