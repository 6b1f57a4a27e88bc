"""What a kind family declares about each of its kinds: the vocabulary of the registry.

Every fact the warden uses about a kind is a field of `KnownKind`; a family module
(`kinds/families/`) fills them in, the registry (`kinds/registry.py`) collects them, and the
rest of the code reads them there. Paths into objects are dotted strings (`kinds.paths`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kaptain_warden.policies.kinds.paths import parse_path


def split_api_version(api_version: str) -> tuple[str, str]:
    """(group, version) of an `apiVersion`: `("", "v1")` for the core group's `v1`."""
    group, _, version = api_version.rpartition("/")
    return group, version


def api_version_of(group: str, version: str) -> str:
    """`apiVersion` as written in objects: `v1` for the core group, else `group/version`."""
    return f"{group}/{version}" if group else version


class ApiVersioned:
    """`group` and `version` properties for a dataclass with an `api_version` field."""

    api_version: str

    @property
    def group(self) -> str:
        """The API group ("" for the core group)."""
        return split_api_version(self.api_version)[0]

    @property
    def version(self) -> str:
        """The API version within the group."""
        return split_api_version(self.api_version)[1]

    @property
    def custom(self) -> bool:
        """Served by a CustomResourceDefinition, as far as the group tells: a CRD's group
        always has a dot, while the core group and `apps`, `batch`, ... have none. Kubernetes'
        own dotted groups (`networking.k8s.io`, ...) count as custom too: no kind the registry
        knows is in one, and for a kind a policy names there the sweeper only streams its list
        where a paginated one would cost the API server less, a matter of speed
        (`kube.listing`). `k8s.io` does not mean built in: `sparkoperator.k8s.io` is a CRD's."""
        return "." in self.group


@dataclass(frozen=True)
class ConditionsFinish:
    """Finished when a condition in `status.conditions` of one of `types` has status "True".

    The finish instant is that condition's `lastTransitionTime`, else `status.completionTime`;
    `prefer_completion_time` reverses the order (for kinds whose controller stamps
    completionTime as the moment of record). The first matching condition in list order counts.
    """

    types: tuple[str, ...]
    prefer_completion_time: bool = False


@dataclass(frozen=True)
class StateFinish:
    """Finished when the string at `state` (a path, e.g. `status.phase`) is one of `values`.

    The finish instant is the timestamp at `time` (a path); without `time` the kind says that
    it finished but not when (a Pod's phase): enough to stop holding Secrets, never enough to
    start a TTL clock.
    """

    state: str
    values: frozenset[str]
    time: str | None = None

    def __post_init__(self) -> None:
        for path in (self.state, self.time):
            if path is not None and any(s.many for s in parse_path(path)):
                raise ValueError(f"a finish path names one field, not {path!r}")


#: How to read that an object of the kind has finished.
Finish = ConditionsFinish | StateFinish


@dataclass(frozen=True)
class NativeTtl:
    """The kind's own "delete N seconds after finishing" field, which the warden mirrors
    `ttlAfterFinished` into when the object does not set it.

    `path` is where the field lives (e.g. `spec.runPolicy.ttlSecondsAfterFinished`); missing
    parents are created. An older shape of the kind may keep it elsewhere: when the object has
    none of `path`'s parents but one of `legacy_markers` (fields of `spec`), `legacy_path` is
    used instead (tf-operator v1 had the run policy's fields directly under `spec`).
    """

    path: str
    legacy_path: str | None = None
    legacy_markers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for path in (self.path, self.legacy_path):
            if path is not None and any(s.many for s in parse_path(path)):
                raise ValueError(f"a native TTL path names one field, not {path!r}")
        if bool(self.legacy_path) != bool(self.legacy_markers):
            raise ValueError("legacy_path and legacy_markers go together")


@dataclass(frozen=True)
class SecretRefs:
    """Where a live object of the kind names Secrets, read before a Secret is deleted.

    `pod_specs`: paths to PodSpecs (every Secret a pod would use: volumes, env, envFrom,
    imagePullSecrets); `containers`: paths to single containers (env, envFrom); `references`:
    paths to `{name: ...}` Secret references (a ServiceAccount's `secrets[*]`); `names`: paths
    to Secret names written as bare strings (a SparkApplication's `spec.imagePullSecrets[*]`).
    Paths may go through every value of a map (`*`) and every item of a list (`[*]`).
    """

    pod_specs: tuple[str, ...] = ()
    containers: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for path in (*self.pod_specs, *self.containers, *self.references, *self.names):
            parse_path(path)


@dataclass(frozen=True)
class KnownKind(ApiVersioned):
    """One kind and everything the warden reads or writes on it.

    Only `api_version`, `kind` and `resource` are needed for a kind a policy names with
    `resource:` (a ConfigMap); the rest describes kinds the registry knows.
    """

    api_version: str
    kind: str
    resource: str
    #: How to read that it finished; None: it never does (the loader refuses ttlAfterFinished).
    finish: Finish | None = None
    #: Its own TTL-after-finished field, if it has one.
    native_ttl: NativeTtl | None = None
    #: True when an UPDATE of its status subresource can change metadata (built-in kinds such as
    #: Jobs reset only the spec on a status update); a CRD's status subresource ignores
    #: metadata changes, so its status needs no webhook.
    status_writes_metadata: bool = False
    #: A policy rule may name it without `resource:` (the chart's kinds table lists it).
    governable: bool = True
    #: Other objects may name it as their owner (ownerReferences, `parent_labels`): the
    #: admission server and backfill read it to inherit its owner. Never a Secret.
    parent: bool = True
    #: Labels other objects carry to name an object of this kind, in the same namespace.
    parent_labels: tuple[str, ...] = ()
    #: Where its objects reference Secrets; None: they never do.
    secret_refs: SecretRefs | None = None
    #: Cluster-scoped; a cluster-scoped Secret holder (a PersistentVolume) names Secrets of any
    #: namespace through its volume source.
    cluster_scoped: bool = False
    #: A governed object of this kind is kept while a live object references it (Secrets).
    kept_while_referenced: bool = False
    #: Knative-style revision retention applies to it (`rules[].retention`).
    retention: bool = False
    #: (group, resource) the sweeper reads (`get`) to decide about objects of this kind.
    sweeper_reads: tuple[tuple[str, str], ...] = ()

    @property
    def needs_status(self) -> bool:
        """Deciding needs the object's status (completion), not only its metadata."""
        return self.finish is not None

    @property
    def read_fields(self) -> tuple[str, ...]:
        """The top-level fields of its objects that Secret references and the finish are read
        from (what a list of holders must keep), sorted."""
        paths: list[str] = []
        if self.secret_refs is not None:
            refs = self.secret_refs
            paths += [*refs.pod_specs, *refs.containers, *refs.references]
        if isinstance(self.finish, ConditionsFinish):
            paths.append("status")
        elif isinstance(self.finish, StateFinish):
            paths += [p for p in (self.finish.state, self.finish.time) if p is not None]
        return tuple(sorted({p.split(".", 1)[0].removesuffix("[*]") for p in paths}))

    @property
    def holds_secrets(self) -> bool:
        """Objects of this kind can keep a Secret in use."""
        return self.secret_refs is not None


@dataclass(frozen=True)
class Family:
    """The kinds one upstream project defines, and where they come from.

    `upstream` names the project and release the facts were read from (the Go module whose
    CRDs the tests install), so a reader can check them.
    """

    name: str
    upstream: str
    kinds: tuple[KnownKind, ...] = field(default=())
