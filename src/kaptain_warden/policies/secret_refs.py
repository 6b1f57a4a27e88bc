"""Which Secrets a live workload still references: pods, pod templates, ServiceAccounts."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from kaptain_warden.policies.completion import has_finished
from kaptain_warden.policies.kinds import KnownKind
from kaptain_warden.policies.kinds.paths import values, walk

__all__ = [
    "holders_reason",
    "pod_spec_secret_names",
    "secret_references",
    "volume_secret_references",
]

# PersistentVolume sources whose SecretReference carries its own namespace.
_PV_SECRET_REFS: tuple[tuple[str, str], ...] = (
    ("csi", "nodePublishSecretRef"),
    ("csi", "nodeStageSecretRef"),
    ("csi", "nodeExpandSecretRef"),
    ("csi", "controllerPublishSecretRef"),
    ("csi", "controllerExpandSecretRef"),
    ("cephfs", "secretRef"),
    ("rbd", "secretRef"),
    ("iscsi", "secretRef"),
    ("flexVolume", "secretRef"),
    ("scaleIO", "secretRef"),
    ("storageos", "secretRef"),
    ("cinder", "secretRef"),
)

# Volume sources that name a Secret in the pod's namespace, and the field holding its name
# (Kubernetes pkg/api/v1/pod/util.go VisitPodSecretNames).
_VOLUME_SECRET_FIELDS: tuple[tuple[str, str, str | None], ...] = (
    ("secret", "secretName", None),
    ("azureFile", "secretName", None),
    ("cephfs", "secretRef", "name"),
    ("cinder", "secretRef", "name"),
    ("flexVolume", "secretRef", "name"),
    ("rbd", "secretRef", "name"),
    ("scaleIO", "secretRef", "name"),
    ("iscsi", "secretRef", "name"),
    ("storageos", "secretRef", "name"),
    ("csi", "nodePublishSecretRef", "name"),
)
_CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")
# Pods in these phases will never run again (PodPhase docs): their references are history.
_FINISHED_POD_PHASES = frozenset({"Succeeded", "Failed"})


def pod_spec_secret_names(spec: Mapping[str, Any]) -> frozenset[str]:
    """Every Secret name a PodSpec references, as Kubernetes' VisitPodSecretNames finds them.

    `imagePullSecrets`; `env[].valueFrom.secretKeyRef` and `envFrom[].secretRef` of init,
    regular and ephemeral containers; secret-backed volumes, including projected sources.
    Optional references count: the workload still uses the Secret when it exists.
    """
    names: set[str] = set()
    for ref in _maps(spec.get("imagePullSecrets")):
        names.add(_str(ref.get("name")))
    for container_list in _CONTAINER_LISTS:
        for container in _maps(spec.get(container_list)):
            names |= _container_secret_names(container)
    for volume in _maps(spec.get("volumes")):
        for volume_type, key, subkey in _VOLUME_SECRET_FIELDS:
            value = _map(volume.get(volume_type)).get(key)
            names.add(_str(_map(value).get(subkey) if subkey else value))
        for projection in _maps(_map(volume.get("projected")).get("sources")):
            names.add(_str(_map(projection.get("secret")).get("name")))
    names.discard("")
    return frozenset(names)


def _container_secret_names(container: Mapping[str, Any]) -> set[str]:
    names = set()
    for source in _maps(container.get("envFrom")):
        names.add(_str(_map(source.get("secretRef")).get("name")))
    for env in _maps(container.get("env")):
        names.add(_str(_map(_map(env.get("valueFrom")).get("secretKeyRef")).get("name")))
    return names


def volume_secret_references(pv: Mapping[str, Any]) -> frozenset[tuple[str, str]]:
    """(namespace, name) of every Secret a PersistentVolume's source references (CSI
    publish/stage/expand secrets and the other SecretReference fields, azureFile's
    secretNamespace); a reference without a namespace is left out (it names none)."""
    spec = _map(pv.get("spec"))
    refs = set()
    for source, key in _PV_SECRET_REFS:
        ref = _map(_map(spec.get(source)).get(key))
        refs.add((_str(ref.get("namespace")), _str(ref.get("name"))))
    azure = _map(spec.get("azureFile"))
    refs.add((_str(azure.get("secretNamespace")), _str(azure.get("secretName"))))
    return frozenset((ns, name) for ns, name in refs if ns and name)


def secret_references(obj: Mapping[str, Any], holder: KnownKind) -> frozenset[str]:
    """The Secrets `obj` (an object of `holder`'s kind) references while it is live.

    Where it references them is the registry's `holder.secret_refs`. A finished object (a
    Pod that Succeeded or Failed, a finished Job or training job) holds nothing: it will not
    start a container again.
    """
    refs = holder.secret_refs
    if refs is None or has_finished(obj, holder):
        return frozenset()
    names: set[str] = set()
    for path in refs.pod_specs:
        for spec in walk(obj, path):
            names |= pod_spec_secret_names(spec)
    for path in refs.containers:
        for container in walk(obj, path):
            names |= _container_secret_names(container)
    for path in refs.references:
        for ref in walk(obj, path):
            names.add(_str(ref.get("name")))
    for path in refs.names:
        names.update(_str(name) for name in values(obj, path))
    names.discard("")
    return frozenset(names)


def holders_reason(holders: Sequence[str]) -> str:
    """`in use by Pod/train-0, ServiceAccount/default` (the first five, then a count)."""
    shown = ", ".join(holders[:5])
    more = f" and {len(holders) - 5} more" if len(holders) > 5 else ""
    return f"in use by {shown}{more}"


def _map(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _maps(value: object) -> Iterator[Mapping[str, Any]]:
    if isinstance(value, list):
        yield from (v for v in value if isinstance(v, Mapping))


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""
