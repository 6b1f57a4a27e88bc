"""Render the Helm chart with the real helm that hack/test-assets builds (tiers 3 and 4)."""

from __future__ import annotations

import functools
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from kaptain_warden.testing.binaries import find_binaries

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "kaptain-warden"
CI_VALUES = {
    path.name.removesuffix("-values.yaml"): path for path in CHART.glob("ci/*-values.yaml")
}
CHART_CRDS = Path(__file__).resolve().parent / "chart" / "crds"


@functools.cache
def helm_path() -> Path:
    """helm from KUBEBUILDER_ASSETS, or from the directory hack/test-assets prints."""
    binaries = find_binaries(controller_manager=False)
    assert binaries.helm is not None, (
        f"no helm next to {binaries.kube_apiserver}: run hack/test-assets (it builds helm)"
    )
    return binaries.helm


def run_helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run helm with captured text output; offline (no repositories are configured)."""
    result = subprocess.run(
        [str(helm_path()), *args], capture_output=True, text=True, timeout=120, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stderr}")
    return result


def template_args(
    *,
    release: str = "kaptain-warden",
    namespace: str = "kaptain-warden",
    values: Iterable[Path] = (),
    set_values: Mapping[str, str] | None = None,
) -> list[str]:
    """`helm template` arguments for the chart."""
    args = ["template", release, str(CHART), "--namespace", namespace]
    for path in values:
        args += ["--values", str(path)]
    for key, value in (set_values or {}).items():
        args += ["--set", f"{key}={value}"]
    return args


def render(
    *,
    release: str = "kaptain-warden",
    namespace: str = "kaptain-warden",
    values: Iterable[Path] = (),
    set_values: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """The chart's manifests (hooks included) as dicts."""
    text = run_helm(
        *template_args(release=release, namespace=namespace, values=values, set_values=set_values)
    ).stdout
    return [doc for doc in yaml.safe_load_all(text) if doc]


def find(manifests: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    """The one manifest of `kind` (and `name`)."""
    found = [
        m
        for m in manifests
        if m["kind"] == kind and (name is None or m["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def find_all(manifests: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """Every manifest of `kind`."""
    return [m for m in manifests if m["kind"] == kind]


def pod_specs(manifests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The pod spec of every workload (Deployments and Jobs), by `<kind>/<name>`."""
    return {
        f"{m['kind']}/{m['metadata']['name']}": m["spec"]["template"]["spec"]
        for m in manifests
        if m["kind"] in ("Deployment", "Job")
    }
