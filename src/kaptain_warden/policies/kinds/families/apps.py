"""The `apps` workload controllers: not governed, but their pod templates keep Secrets in use."""

from kaptain_warden.policies.kinds.spec import Family, KnownKind, SecretRefs

_TEMPLATE = SecretRefs(pod_specs=("spec.template.spec",))

FAMILY = Family(
    name="Kubernetes apps",
    upstream="k8s.io/api apps/v1",
    kinds=tuple(
        KnownKind("apps/v1", kind, resource, governable=False, parent=False, secret_refs=_TEMPLATE)
        for kind, resource in (
            ("Deployment", "deployments"),
            ("StatefulSet", "statefulsets"),
            ("DaemonSet", "daemonsets"),
            ("ReplicaSet", "replicasets"),
        )
    ),
)
