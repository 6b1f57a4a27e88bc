"""Katib: Experiments (the SDK's tune()), and the Trials that link them to their jobs."""

from kaptain_warden.policies.kinds.spec import ConditionsFinish, Family, KnownKind, SecretRefs

# A trial template is a whole manifest: a Job's pod template, or a training job's replica
# templates (tfReplicaSpecs, pytorchReplicaSpecs, ...).
_TRIAL = "spec.trialTemplate.trialSpec.spec"

FAMILY = Family(
    name="Katib",
    upstream="github.com/kubeflow/katib v0.19",
    kinds=(
        KnownKind(
            "kubeflow.org/v1beta1",
            "Experiment",
            "experiments",
            # experiments/v1beta1 util.go IsCompleted: Succeeded or Failed True; the controller
            # stamps status.completionTime when it marks it so. A restarted Experiment has both
            # conditions removed, and reads as unfinished.
            finish=ConditionsFinish(("Succeeded", "Failed"), prefer_completion_time=True),
            secret_refs=SecretRefs(
                pod_specs=(f"{_TRIAL}.template.spec", f"{_TRIAL}.*.*.template.spec")
            ),
        ),
        # Not governed, but a link in owner chains: an Experiment owns Trials, a Trial owns
        # the job it runs. Owner inheritance reads through it.
        KnownKind("kubeflow.org/v1beta1", "Trial", "trials", governable=False),
    ),
)
