"""Kubeflow Trainer v2's TrainJobs (`trainer.kubeflow.org/v1alpha1`), the Kubeflow SDK's train().

Read from github.com/kubeflow/trainer/v2 v2.3.0: pkg/apis/trainer/v1alpha1/trainjob_types.go,
pkg/runtime/framework/plugins/jobset/jobset.go, pkg/util/trainjob/trainjob.go.
"""

from kaptain_warden.policies.kinds.spec import ConditionsFinish, Family, KnownKind, SecretRefs

FAMILY = Family(
    name="Kubeflow Trainer",
    upstream="github.com/kubeflow/trainer/v2 v2.3.0",
    kinds=(
        KnownKind(
            "trainer.kubeflow.org/v1alpha1",
            "TrainJob",
            "trainjobs",
            # IsTrainJobFinished: Complete or Failed True (metav1.Conditions, copied from the
            # JobSet's Completed / Failed). A TrainJob has no TTL field of its own.
            finish=ConditionsFinish(("Complete", "Failed")),
            secret_refs=SecretRefs(
                # A per-job patch of the runtime's pods: each replicated job's pod template.
                pod_specs=(
                    "spec.runtimePatches[*].trainingRuntimeSpec.template.spec"
                    ".replicatedJobs[*].template.spec.template.spec",
                ),
                # The trainer's and the dataset / model initializers' env.
                containers=("spec.trainer", "spec.initializer.*"),
                references=("spec.initializer.*.secretRef",),
            ),
        ),
    ),
)
