"""Core kinds (the `v1` group): Secrets the warden governs, and what can keep one in use."""

from kaptain_warden.policies.kinds.spec import Family, KnownKind, SecretRefs, StateFinish

FAMILY = Family(
    name="Kubernetes core",
    upstream="k8s.io/api core/v1",
    kinds=(
        # Governed: the SDK's registry and storage credentials. Never a parent (nothing is made
        # for a Secret), and kept while a live workload references it.
        KnownKind("v1", "Secret", "secrets", parent=False, kept_while_referenced=True),
        # A Pod in phase Succeeded or Failed never runs a container again (PodPhase): it holds
        # nothing. Its phase says that it finished, not when.
        KnownKind(
            "v1",
            "Pod",
            "pods",
            finish=StateFinish("status.phase", frozenset({"Succeeded", "Failed"})),
            governable=False,
            parent=False,
            secret_refs=SecretRefs(pod_specs=("spec",)),
        ),
        # A ServiceAccount's Secrets and pull Secrets go to every pod that runs as it.
        KnownKind(
            "v1",
            "ServiceAccount",
            "serviceaccounts",
            governable=False,
            parent=False,
            secret_refs=SecretRefs(references=("secrets[*]", "imagePullSecrets[*]")),
        ),
        KnownKind(
            "v1",
            "ReplicationController",
            "replicationcontrollers",
            governable=False,
            parent=False,
            secret_refs=SecretRefs(pod_specs=("spec.template.spec",)),
        ),
        # CSI and other volume sources name Secrets of any namespace (SecretReference).
        KnownKind(
            "v1",
            "PersistentVolume",
            "persistentvolumes",
            governable=False,
            parent=False,
            secret_refs=SecretRefs(),
            cluster_scoped=True,
        ),
    ),
)
