"""Finding the control-plane binaries the way envtest does: `KUBEBUILDER_ASSETS` (or one
`TEST_ASSET_*` variable per binary), else the directory `hack/test-assets` prints last."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from kaptain_warden.testing.assets import (
    TEST_ASSETS_RELATIVE,
    AssetsNotFoundError,
    find_test_assets_script,
    run_test_assets,
)
from kaptain_warden.testing.errors import ControlPlaneError

__all__ = ["Binaries", "BinariesNotFoundError", "find_binaries", "kubernetes_version"]

# Binary name -> the envtest variable that names it directly.
_ASSET_VARIABLES: Final = {
    "kube-apiserver": "TEST_ASSET_KUBE_APISERVER",
    "etcd": "TEST_ASSET_ETCD",
    "kubectl": "TEST_ASSET_KUBECTL",
    "kube-controller-manager": "TEST_ASSET_KUBE_CONTROLLER_MANAGER",
}


class BinariesNotFoundError(ControlPlaneError, AssetsNotFoundError):
    """The control-plane binaries are neither configured nor obtainable with hack/test-assets."""


@dataclass(frozen=True)
class Binaries:
    """Absolute paths of the control-plane executables."""

    kube_apiserver: Path
    etcd: Path
    kubectl: Path
    kube_controller_manager: Path | None = None
    #: helm, when it sits next to the others (hack/test-assets provides it); not needed here.
    helm: Path | None = None


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def kubernetes_version(binary: Path) -> tuple[int, int, int]:
    """The version a kube-apiserver or kube-controller-manager binary reports with `--version`.

    Raises:
        ControlPlaneError: when it cannot run or prints no `Kubernetes vX.Y.Z`.
    """
    try:
        output = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError) as error:
        raise ControlPlaneError(f"{binary} --version failed: {error}") from error
    match = re.search(r"Kubernetes v(\d+)\.(\d+)\.(\d+)", output)
    if match is None:
        raise ControlPlaneError(f"{binary} --version printed no Kubernetes version: {output!r}")
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


_HOW_TO_GET_BINARIES: Final = (
    "To get the binaries, run hack/test-assets from a kaptain-warden checkout (it builds "
    "kube-apiserver, kube-controller-manager, kubectl, etcd and helm from their Go modules "
    "once, which needs Go, and prints the cache directory as its last line), then either "
    "let the tests find it or export KUBEBUILDER_ASSETS=<that directory>. Individual "
    "binaries can also be named with TEST_ASSET_KUBE_APISERVER, TEST_ASSET_ETCD, "
    "TEST_ASSET_KUBECTL and TEST_ASSET_KUBE_CONTROLLER_MANAGER."
)


def find_binaries(
    *,
    controller_manager: bool = True,
    test_assets_script: Path | None = None,
    environ: Mapping[str, str] | None = None,
    run_script: bool = True,
) -> Binaries:
    """Locate kube-apiserver, etcd, kubectl (and kube-controller-manager), envtest-style.

    Order, per binary: its `TEST_ASSET_*` variable (which must then name an executable), then
    `$KUBEBUILDER_ASSETS/<binary>`. When any binary is still missing, `test_assets_script`
    (default: `hack/test-assets` found by `find_test_assets_script`) is run, unless `run_script`
    is false, and its directory fills the gaps.

    Raises:
        BinariesNotFoundError: with what was looked at and how to get the binaries.
    """
    env = os.environ if environ is None else environ
    needed = ["kube-apiserver", "etcd", "kubectl"]
    if controller_manager:
        needed.append("kube-controller-manager")
    found: dict[str, Path] = {}
    assets = env.get("KUBEBUILDER_ASSETS", "").strip()
    for name in needed:
        variable = _ASSET_VARIABLES[name]
        explicit = env.get(variable, "").strip()
        if explicit:
            path = Path(explicit).expanduser().resolve()
            if not _is_executable(path):
                raise BinariesNotFoundError(
                    f"{variable}={explicit} does not name an executable file. "
                    f"{_HOW_TO_GET_BINARIES}"
                )
            found[name] = path
        elif assets and _is_executable(Path(assets) / name):
            found[name] = (Path(assets) / name).absolute()
    # Not resolved: hack/test-assets' directory holds symlinks into per-version caches, and the
    # binaries' directory is where helm is looked for.
    directory = Path(assets).absolute() if assets else None
    missing = [name for name in needed if name not in found]
    if missing:
        looked_at = f"KUBEBUILDER_ASSETS={assets!r}" if assets else "KUBEBUILDER_ASSETS is not set"
        if not run_script:
            raise BinariesNotFoundError(
                f"missing control-plane binaries: {', '.join(missing)} ({looked_at}). "
                f"{_HOW_TO_GET_BINARIES}"
            )
        script = test_assets_script or find_test_assets_script()
        if script is None:
            raise BinariesNotFoundError(
                f"missing control-plane binaries: {', '.join(missing)} ({looked_at}), and no "
                f"{TEST_ASSETS_RELATIVE} was found above {Path(__file__).parent} or {Path.cwd()}. "
                f"{_HOW_TO_GET_BINARIES}"
            )
        if not _is_executable(script):
            raise BinariesNotFoundError(f"{script} is not an executable file")
        try:
            directory = run_test_assets(script, environ=env)
        except AssetsNotFoundError as error:
            raise BinariesNotFoundError(f"{error}\n{_HOW_TO_GET_BINARIES}") from error
        for name in missing:
            path = directory / name
            if not _is_executable(path):
                raise BinariesNotFoundError(
                    f"{script} reported {directory}, which holds no executable {name}. "
                    f"{_HOW_TO_GET_BINARIES}"
                )
            found[name] = path.absolute()
    helm = directory / "helm" if directory is not None else None
    return Binaries(
        kube_apiserver=found["kube-apiserver"],
        etcd=found["etcd"],
        kubectl=found["kubectl"],
        kube_controller_manager=found.get("kube-controller-manager"),
        helm=helm if helm is not None and _is_executable(helm) else None,
    )
