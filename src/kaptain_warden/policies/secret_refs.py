"""Which Secrets a live workload still references: pods, pod templates, ServiceAccounts."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kaptain_warden.policies.completion import finished_at
from kaptain_warden.policies.kinds import ApiVersioned

__all__ = [
    "HOLDER_KINDS",
    "HolderKind",
    "holders_reason",
    "pod_spec_secret_names",
    "secret_references",
    "volume_secret_references",
]


@dataclass(frozen=True)
class HolderKind(ApiVersioned):
    """A kind whose objects can hold a Secret, and where its pod specs live.

    Each template path is a tuple of keys from the object's root to a PodSpec; `*` stands for
    every value of a map (the replica types of a training job).
    """

    api_version: str
    kind: str
    resource: str
    template_paths: tuple[tuple[str, ...], ...]
    # Paths to maps that are single containers (an InferenceService's framework specs).
    container_paths: tuple[tuple[str, ...], ...] = ()
    # Cluster-scoped (PersistentVolumes): listed once, their references name a namespace.
    cluster_scoped: bool = False


_TEMPLATE = (("spec", "template", "spec"),)
# A Katib trial template is a whole manifest: a Job's pod template, or a training job's
# replica templates (tfReplicaSpecs, pytorchReplicaSpecs, ...).
_TRIAL = ("spec", "trialTemplate", "trialSpec", "spec")
_TRIAL_TEMPLATES = ((*_TRIAL, "template", "spec"), (*_TRIAL, "*", "*", "template", "spec"))
# An InferenceService component (predictor, transformer, explainer) is a PodSpec inline, and
# its framework entry (sklearn, tensorflow, model, ...) a container.
_ISVC_COMPONENTS = tuple(("spec", c) for c in ("predictor", "transformer", "explainer"))
_ISVC_CONTAINERS = tuple((*c, "*") for c in _ISVC_COMPONENTS)

#: What the sweeper reads before deleting a Secret: the kinds the Kaptain SDK and Kubernetes
#: run pods from. Controllers, training jobs, Katib Experiments, InferenceServices and Knative
#: Configurations keep referencing a Secret while they have no pod (pending, scaled to zero),
#: so their templates count whatever their replica count; PersistentVolumes name Secrets of
#: any namespace for their CSI driver.
HOLDER_KINDS: tuple[HolderKind, ...] = (
    HolderKind("v1", "Pod", "pods", (("spec",),)),
    HolderKind("v1", "ServiceAccount", "serviceaccounts", ()),
    HolderKind("v1", "ReplicationController", "replicationcontrollers", _TEMPLATE),
    HolderKind("batch/v1", "Job", "jobs", _TEMPLATE),
    HolderKind(
        "batch/v1", "CronJob", "cronjobs", (("spec", "jobTemplate", "spec", "template", "spec"),)
    ),
    HolderKind("apps/v1", "Deployment", "deployments", _TEMPLATE),
    HolderKind("apps/v1", "StatefulSet", "statefulsets", _TEMPLATE),
    HolderKind("apps/v1", "DaemonSet", "daemonsets", _TEMPLATE),
    HolderKind("apps/v1", "ReplicaSet", "replicasets", _TEMPLATE),
    HolderKind(
        "kubeflow.org/v1", "TFJob", "tfjobs", (("spec", "tfReplicaSpecs", "*", "template", "spec"),)
    ),
    HolderKind(
        "kubeflow.org/v1",
        "PyTorchJob",
        "pytorchjobs",
        (("spec", "pytorchReplicaSpecs", "*", "template", "spec"),),
    ),
    HolderKind("kubeflow.org/v1beta1", "Experiment", "experiments", _TRIAL_TEMPLATES),
    HolderKind(
        "serving.kserve.io/v1beta1",
        "InferenceService",
        "inferenceservices",
        _ISVC_COMPONENTS,
        _ISVC_CONTAINERS,
    ),
    HolderKind(
        "serving.kubeflow.org/v1beta1",
        "InferenceService",
        "inferenceservices",
        _ISVC_COMPONENTS,
        _ISVC_CONTAINERS,
    ),
    HolderKind("serving.knative.dev/v1", "Configuration", "configurations", _TEMPLATE),
    HolderKind("v1", "PersistentVolume", "persistentvolumes", (), cluster_scoped=True),
)

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


def secret_references(obj: Mapping[str, Any], holder: HolderKind) -> frozenset[str]:
    """The Secrets `obj` (an object of `holder`'s kind) references while it is live.

    Finished Pods (Succeeded, Failed) and finished Jobs and training jobs hold nothing:
    they will not start a container again. A ServiceAccount holds its `secrets` and
    `imagePullSecrets`, which pods running as it receive.
    """
    if holder.kind == "ServiceAccount":
        names = {_str(ref.get("name")) for ref in _maps(obj.get("secrets"))}
        names |= {_str(ref.get("name")) for ref in _maps(obj.get("imagePullSecrets"))}
        names.discard("")
        return frozenset(names)
    if _finished(obj, holder):
        return frozenset()
    names = set()
    for path in holder.template_paths:
        for spec in _walk(obj, path):
            names |= pod_spec_secret_names(spec)
    for path in holder.container_paths:
        for container in _walk(obj, path):
            names |= _container_secret_names(container)
    names.discard("")
    return frozenset(names)


def _finished(obj: Mapping[str, Any], holder: HolderKind) -> bool:
    if holder.kind == "Pod":
        return _str(_map(obj.get("status")).get("phase")) in _FINISHED_POD_PHASES
    if holder.kind in ("Job", "TFJob", "PyTorchJob", "Experiment"):
        # finished_at reads the kind from the object; list items may lack it.
        typed = {**obj, "apiVersion": holder.api_version, "kind": holder.kind}
        return finished_at(typed) is not None
    return False


def holders_reason(holders: Sequence[str]) -> str:
    """`in use by Pod/train-0, ServiceAccount/default` (the first five, then a count)."""
    shown = ", ".join(holders[:5])
    more = f" and {len(holders) - 5} more" if len(holders) > 5 else ""
    return f"in use by {shown}{more}"


def _walk(node: object, path: Sequence[str]) -> Iterator[Mapping[str, Any]]:
    """The mappings at `path` below `node` (`*` = every value of a map)."""
    if not isinstance(node, Mapping):
        return
    if not path:
        yield node
        return
    head, rest = path[0], path[1:]
    children = node.values() if head == "*" else (node.get(head),)
    for child in children:
        yield from _walk(child, rest)


def _map(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _maps(value: object) -> Iterator[Mapping[str, Any]]:
    if isinstance(value, list):
        yield from (v for v in value if isinstance(v, Mapping))


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""
