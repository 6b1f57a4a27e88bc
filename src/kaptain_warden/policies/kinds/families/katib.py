"""Katib: Experiments (the SDK's tune()), and the Trials that link them to their jobs.

Read from github.com/kubeflow/katib v0.19.0: pkg/apis/controller/{experiments,trials}/v1beta1,
pkg/controller.v1beta1/trial, pkg/earlystopping/v1beta1/medianstop/service.py.
"""

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
        # Not governed (a notebook never makes one, and Katib counts an Experiment's Trials:
        # one deleted early is one it runs again), but a link in owner chains: an Experiment
        # owns Trials, a Trial owns the job it runs; owner inheritance reads through it.
        # Read by its own status: while it runs, the Secrets its runSpec (the trial
        # template, filled in) names are in use.
        KnownKind(
            "kubeflow.org/v1beta1",
            "Trial",
            "trials",
            governable=False,
            # trials/v1beta1 util.go IsCompleted: any of these True. The median-stop service
            # only appends EarlyStopped (Running stays True, completionTime null): the
            # condition's lastTransitionTime comes first.
            finish=ConditionsFinish(
                ("Succeeded", "Failed", "Killed", "EarlyStopped", "MetricsUnavailable")
            ),
            secret_refs=SecretRefs(
                pod_specs=("spec.runSpec.spec.template.spec", "spec.runSpec.spec.*.*.template.spec")
            ),
        ),
    ),
)
