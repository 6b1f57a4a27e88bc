"""batch/v1 Jobs (the SDK's image builds) and CronJobs."""

from kaptain_warden.policies.kinds.spec import (
    ConditionsFinish,
    Family,
    KnownKind,
    NativeTtl,
    SecretRefs,
)

FAMILY = Family(
    name="Kubernetes batch",
    upstream="k8s.io/api batch/v1",
    kinds=(
        KnownKind(
            "batch/v1",
            "Job",
            "jobs",
            # The rule of Kubernetes' TTL-after-finished controller (jobFinishTime): the first
            # Complete or Failed condition that is True, its lastTransitionTime.
            # SuccessCriteriaMet / FailureTarget (1.31+) only announce a finish to come.
            finish=ConditionsFinish(("Complete", "Failed")),
            native_ttl=NativeTtl("spec.ttlSecondsAfterFinished"),
            status_writes_metadata=True,
            secret_refs=SecretRefs(pod_specs=("spec.template.spec",)),
        ),
        KnownKind(
            "batch/v1",
            "CronJob",
            "cronjobs",
            governable=False,
            parent=False,
            secret_refs=SecretRefs(pod_specs=("spec.jobTemplate.spec.template.spec",)),
        ),
    ),
)
