"""The upstream CRDs and controller files the tests run against, found envtest-style.

`hack/test-assets --component upstream` copies the files named in `hack/upstream.tsv` out of
their Go module zips into one cache directory, `<module>@<version>/<path>` each, with an
`index.tsv` listing the rows it holds. This module finds that directory:

1. `$KAPTAIN_WARDEN_UPSTREAM`, when set (it must then hold an `index.tsv`);
2. else the directory `hack/test-assets --component upstream` prints (it copies them the first
   time), when a kaptain-warden checkout is found;
3. else `UpstreamNotFoundError`, naming the command to run.

The KFServing CRD (`serving.kubeflow.org`) is the one exception: its last upstream release is
`apiextensions.k8s.io/v1beta1`, which API servers since 1.22 refuse, so a minimal v1 version
of it lives in this package (`crds/`).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

from kaptain_warden.testing.assets import (
    AssetsNotFoundError,
    find_test_assets_script,
    run_test_assets,
)

__all__ = [
    "LOCAL_CRD_DIR",
    "UPSTREAM_VARIABLE",
    "UpstreamManifests",
    "UpstreamNotFoundError",
    "UpstreamRow",
    "default_crd_files",
    "find_upstream",
    "load_yaml_documents",
]

UPSTREAM_VARIABLE: Final = "KAPTAIN_WARDEN_UPSTREAM"
#: CRDs kept in the repository because no upstream release can be installed (see above).
LOCAL_CRD_DIR: Final = Path(__file__).with_name("crds")
_INDEX: Final = "index.tsv"
_COMPONENT: Final = "upstream"
_HOW_TO_GET: Final = (
    "Run `hack/test-assets --component upstream` in a kaptain-warden checkout (it copies the "
    "upstream CRDs named in hack/upstream.tsv out of their Go modules, which needs Go, and "
    f"prints their directory as its last line), then export {UPSTREAM_VARIABLE}=<that directory>."
)


class UpstreamNotFoundError(AssetsNotFoundError):
    """The upstream CRDs are neither configured nor obtainable with hack/test-assets."""


@dataclass(frozen=True)
class UpstreamRow:
    """One row of `hack/upstream.tsv`: what it is for, and where it comes from."""

    what: str
    module: str
    version: str
    path: str


@dataclass(frozen=True)
class UpstreamManifests:
    """A directory `hack/test-assets --component upstream` filled, and its index."""

    root: Path
    rows: tuple[UpstreamRow, ...]

    @classmethod
    def read(cls, root: Path) -> UpstreamManifests:
        """Read `root/index.tsv`; raise UpstreamNotFoundError when it is missing or malformed."""
        index = root / _INDEX
        try:
            text = index.read_text(encoding="utf-8")
        except OSError as error:
            raise UpstreamNotFoundError(f"cannot read {index}: {error}. {_HOW_TO_GET}") from error
        rows = []
        for number, line in enumerate(text.splitlines(), start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 4:
                raise UpstreamNotFoundError(f"{index}:{number}: expected 4 fields, got {line!r}")
            rows.append(UpstreamRow(*fields))
        return cls(root.resolve(), tuple(rows))

    def location(self, row: UpstreamRow) -> Path:
        """Where the row's file or directory is in the cache."""
        return self.root / f"{row.module}@{row.version}" / row.path

    def files(self, *what: str) -> list[Path]:
        """The YAML files of the rows whose `what` is one of `what` (directories expanded)."""
        found: list[Path] = []
        for row in self.rows:
            if row.what not in what:
                continue
            location = self.location(row)
            if location.is_dir():
                found.extend(sorted(location.rglob("*.yaml")))
            elif location.is_file():
                found.append(location)
            else:
                raise UpstreamNotFoundError(
                    f"{location} (listed in {self.root / _INDEX}) is missing"
                )
        return found

    def file(self, module: str, path: str) -> Path:
        """The cached copy of `path` in `module` (at the version the index names)."""
        for row in self.rows:
            if row.module == module and (row.path == path or path.startswith(row.path + "/")):
                location = self.root / f"{row.module}@{row.version}" / path
                if location.exists():
                    return location
        raise UpstreamNotFoundError(
            f"{self.root / _INDEX} lists no {module} file {path}; add a row to hack/upstream.tsv"
        )

    def crd_files(self, *, controllers: bool = False) -> list[Path]:
        """The upstream CRDs every test control plane installs (plus, with `controllers`,
        those the real controllers need besides)."""
        return self.files("crd", "controller-crd") if controllers else self.files("crd")


def find_upstream(
    *, environ: Mapping[str, str] | None = None, run_script: bool = True
) -> UpstreamManifests:
    """Locate the upstream manifests (see the module docstring for the order)."""
    env = os.environ if environ is None else environ
    configured = env.get(UPSTREAM_VARIABLE, "").strip()
    if configured:
        return UpstreamManifests.read(Path(configured).expanduser())
    script = find_test_assets_script() if run_script else None
    if script is None:
        raise UpstreamNotFoundError(f"{UPSTREAM_VARIABLE} is not set. {_HOW_TO_GET}")
    try:
        directory = run_test_assets(script, "--component", _COMPONENT, environ=env)
    except AssetsNotFoundError as error:
        raise UpstreamNotFoundError(f"{error}\n{_HOW_TO_GET}") from error
    return UpstreamManifests.read(directory)


@functools.lru_cache(maxsize=64)
def _parsed(path: Path, mtime_ns: int) -> tuple[Any, ...]:
    with path.open(encoding="utf-8") as stream:
        return tuple(yaml.load_all(stream, Loader=_LOADER))


# The upstream InferenceService CRD alone is 2 MB of YAML: the C parser reads it in a fraction
# of the pure-Python one's time. Parsed once per process (keyed by path and mtime).
_LOADER: Final = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml_documents(path: Path) -> Iterator[Any]:
    """The YAML documents in `path` (parsed once per process; each call yields fresh copies)."""
    for document in _parsed(path, path.stat().st_mtime_ns):
        yield _copy(document)


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy(item) for item in value]
    return value


def default_crd_files(manifests: UpstreamManifests, *, controllers: bool = False) -> list[Path]:
    """The CRDs a test control plane installs: the upstream ones (with `controllers`, also those
    the real controllers need) and the KFServing one kept in this package."""
    return [*manifests.crd_files(controllers=controllers), *sorted(LOCAL_CRD_DIR.glob("*.yaml"))]
