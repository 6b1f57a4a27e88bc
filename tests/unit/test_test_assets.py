"""hack/test-assets, run for real on fake builds and a fake `go`.

The script and its component files are copied into a temporary checkout; each component's
`<name>_build` is replaced by one that writes small fake executables reporting a version (and,
for the Kubernetes binaries and etcd, a megabyte more after the version line, as a binary that
would die of SIGPIPE when its reader stops early). Everything else is the real script: cache
layout, locks, verification, the envtest directory, reuse of the old layout, the proxy messages.
`go` is a fake on PATH that answers from a table of served module versions.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BINARIES = ("kube-apiserver", "kube-controller-manager", "kubectl", "etcd", "helm")

FAKE_BUILDS = r"""
# --- fakes for tests/unit/test_test_assets.py ---
fake_binary() {  # fake_binary PATH VERSION-LINE NOISE
  printf '#!/bin/sh\nprintf "%%s\\n" "%s"\n' "$2" > "$1"
  [ "${3:-}" = noise ] && printf 'head -c 1048576 /dev/zero | tr "\\000" x\n' >> "$1"
  chmod +x "$1"
}
# Kubernetes and etcd list their modules from upstream go.mod files: not here (helm's are real).
kubernetes_modules() { :; }
etcd_modules() { :; }
fake_version() { if [ -n "${FAKE_WRONG:-}" ]; then echo 0.0.0; else echo "$1"; fi; }
kubernetes_build() {
  echo kubernetes >> "$FAKE_BUILDS_LOG"
  local v; v="$(fake_version "$(kubernetes_version)")"
  fake_binary "$1/kube-apiserver" "Kubernetes v$v" noise
  fake_binary "$1/kube-controller-manager" "Kubernetes v$v" noise
  fake_binary "$1/kubectl" "Client Version: v$v" noise
}
etcd_build() {
  echo etcd >> "$FAKE_BUILDS_LOG"
  fake_binary "$1/etcd" "etcd Version: $(fake_version "$(etcd_version)")" noise
}
helm_build() {
  echo helm >> "$FAKE_BUILDS_LOG"
  cat > "$1/helm" <<FAKE
#!/bin/sh
case "\$1" in
  version) echo "v$(fake_version "$(helm_version)")+gdeadbeef" ;;
  template) echo "kubeVersion: v1.34.0" ;;
esac
FAKE
  chmod +x "$1/helm"
  echo v1.34.0 > "$1/kube-version"
}
"""

# Answers `go env`, `go list -m -versions MODULE` and `go list -m [-e] -json MODULE@VERSION...`
# from FAKE_SERVED ("module@version ...") and FAKE_LISTED ("module@version ...": what
# `-versions` lists, a subset of what is served, as the real proxy does).
FAKE_GO = r"""#!/usr/bin/env python3
import json, os, sys
served = set(os.environ.get("FAKE_SERVED", "").split())
listed = os.environ.get("FAKE_LISTED", "").split()
args = sys.argv[1:]
if args[:1] == ["env"]:
    print({"GOVERSION": "go1.26.0", "GOPROXY": "https://proxy.invalid"}[args[1]])
elif args[:3] == ["list", "-m", "-versions"]:
    module = args[3]
    print(" ".join([module] + [m.split("@")[1] for m in listed if m.split("@")[0] == module]))
elif args[:2] == ["list", "-m"]:
    for wanted in [a for a in args[2:] if not a.startswith("-")]:
        module, version = wanted.split("@")
        entry = {"Path": module, "Version": version}
        if wanted not in served:
            entry["Error"] = {"Err": f"{wanted}: reading https://proxy.invalid/{module}/@v/"
                              f"{version}.info: 403 Forbidden\n\tserver response: not available"}
        print(json.dumps(entry, indent="\t"))
else:
    sys.exit(f"fake go: unexpected {args}")
"""


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    hack = tmp_path / "checkout" / "hack"
    (hack / "assets").mkdir(parents=True)
    shutil.copy2(REPO / "hack" / "test-assets", hack / "test-assets")
    for component in ("kubernetes", "etcd", "helm"):
        source = (REPO / "hack" / "assets" / f"{component}.sh").read_text()
        (hack / "assets" / f"{component}.sh").write_text(source + FAKE_BUILDS)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "go").write_text(FAKE_GO)
    (bin_dir / "go").chmod(0o755)
    return hack / "test-assets"


def run(
    script: Path, *args: str, check: bool = True, **env: str
) -> subprocess.CompletedProcess[str]:
    tmp = script.parents[2]
    environ = {
        "PATH": f"{tmp / 'bin'}:{os.environ['PATH']}",
        "HOME": str(tmp),
        "KAPTAIN_WARDEN_CACHE": str(tmp / "cache"),
        "FAKE_BUILDS_LOG": str(tmp / "builds.log"),
        "FAKE_SERVED": "helm.sh/helm/v3@v3.19.5 helm.sh/helm/v3@v3.19.2 helm.sh/helm/v3@v3.19.9",
        "FAKE_LISTED": "helm.sh/helm/v3@v3.19.9",
        **env,
    }
    result = subprocess.run(
        [str(script), *args], env=environ, capture_output=True, text=True, timeout=60, check=False
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def builds(script: Path) -> list[str]:
    log = script.parents[2] / "builds.log"
    builds = log.read_text().split() if log.exists() else []
    log.unlink(missing_ok=True)
    return builds


def last_line(result: subprocess.CompletedProcess[str]) -> Path:
    return Path(result.stdout.strip().splitlines()[-1])


def test_each_component_is_cached_by_its_own_version(checkout: Path) -> None:
    cache = checkout.parents[2] / "cache"
    first = last_line(run(checkout))
    assert builds(checkout) == ["kubernetes", "etcd", "helm"]
    assert first == cache / "envtest" / "k8s-1.34.4+etcd-3.6.16+helm-3.19.5"
    for binary in BINARIES:
        assert (first / binary).is_symlink()
        assert os.access(first / binary, os.X_OK)
    assert (first / "etcd").resolve() == cache / "etcd-3.6.16" / "etcd"

    # Found the second time; another Kubernetes version rebuilds Kubernetes only.
    assert last_line(run(checkout)) == first
    other = last_line(run(checkout, KW_K8S_VERSION="1.30.14"))
    assert builds(checkout) == ["kubernetes"]
    assert other == cache / "envtest" / "k8s-1.30.14+etcd-3.6.16+helm-3.19.5"
    assert (other / "etcd").resolve() == (first / "etcd").resolve()
    assert (
        "Kubernetes v1.30.14"
        in subprocess.run(
            [other / "kube-apiserver"], capture_output=True, text=True, check=True
        ).stdout
    )

    listing = run(checkout, "--versions").stdout
    for key in ("k8s-1.34.4", "k8s-1.30.14", "etcd-3.6.16", "helm-3.19.5"):
        assert f"{cache / key}\n" in listing
    assert run(checkout, "--component", "etcd").stdout.splitlines() == [str(cache / "etcd-3.6.16")]


def test_check_builds_nothing(checkout: Path) -> None:
    result = run(checkout, "--check", check=False)
    assert result.returncode == 1
    assert "missing: kubernetes" in result.stderr
    assert "missing: helm" in result.stderr
    assert builds(checkout) == []


def test_a_build_reporting_another_version_is_not_cached(checkout: Path) -> None:
    result = run(checkout, "--component", "etcd", check=False, FAKE_WRONG="1")
    assert result.returncode == 1
    assert "reports 'etcd Version: 0.0.0', expected 'etcd Version: 3.6.16'" in result.stderr
    assert sorted(p.name for p in (checkout.parents[2] / "cache").iterdir()) == ["build", "locks"]


def test_kubebuilder_assets_with_every_binary_is_used_as_is(checkout: Path, tmp_path: Path) -> None:
    for binary in BINARIES:
        (tmp_path / binary).write_text("#!/bin/sh\n")
        (tmp_path / binary).chmod(0o755)
    assert last_line(run(checkout, KUBEBUILDER_ASSETS=str(tmp_path))) == tmp_path
    assert builds(checkout) == []


def test_kubebuilder_assets_of_another_version_than_asked_is_not_used(
    checkout: Path, tmp_path: Path
) -> None:
    assets = tmp_path / "assets"
    assets.mkdir()
    for binary in BINARIES:
        (assets / binary).write_text("#!/bin/sh\necho 'Kubernetes v1.34.4'\n")
        (assets / binary).chmod(0o755)
    assert (
        last_line(run(checkout, KUBEBUILDER_ASSETS=str(assets), KW_K8S_VERSION="1.34.4")) == assets
    )
    result = run(checkout, KUBEBUILDER_ASSETS=str(assets), KW_K8S_VERSION="1.30.14")
    assert "is not Kubernetes v1.30.14 (KW_K8S_VERSION): not used" in result.stderr
    assert last_line(result).name == "k8s-1.30.14+etcd-3.6.16+helm-3.19.5"


def test_binaries_of_the_old_layout_are_reused_not_rebuilt(checkout: Path) -> None:
    built = last_line(run(checkout))
    builds(checkout)
    cache = checkout.parents[2] / "cache"
    old = cache / "assets" / "k8s-1.34.4_etcd-3.6.16_helm-3.19.5"
    old.mkdir(parents=True)
    for binary in BINARIES:
        shutil.copy2(built / binary, old / binary)
    for directory in (*cache.glob("k8s-*"), *cache.glob("etcd-*"), *cache.glob("helm-*")):
        shutil.rmtree(directory)

    assert last_line(run(checkout)) == built
    # helm is rebuilt: the old layout has no record of its default Kubernetes version.
    assert builds(checkout) == ["helm"]
    assert (cache / "k8s-1.34.4" / "kubectl").stat().st_ino == (old / "kubectl").stat().st_ino
    assert (cache / "etcd-3.6.16" / "etcd").stat().st_ino == (old / "etcd").stat().st_ino


def test_a_version_the_proxy_refuses_names_the_module_and_the_nearest_served_patch(
    checkout: Path,
) -> None:
    result = run(checkout, "--component", "helm", check=False, KW_HELM_VERSION="3.19.7")
    assert result.returncode == 1
    assert "helm.sh/helm/v3@v3.19.7: reading https://proxy.invalid" in result.stderr
    # 3.19.6 is refused, 3.19.5 served (and not listed); 3.19.9 is listed and served.
    assert "serves every module of helm 3.19.5 (lower)" in result.stderr
    assert "serves every module of helm 3.19.9 (newer)" in result.stderr
    assert result.stderr.rstrip().endswith("run with KW_HELM_VERSION=3.19.5")
    assert builds(checkout) == []


def test_version_checks_read_the_whole_output(checkout: Path, tmp_path: Path) -> None:
    """A check that stops reading at the version line kills the binary with SIGPIPE; under
    pipefail the check then fails although the binary is right (the flake of `| grep -q`).
    The fake binaries write a megabyte after their version line, so that race is lost every
    time here, and the script's own checks (which passed, or nothing would be cached) are not."""
    built = last_line(run(checkout))
    for binary, line in (("etcd", "etcd Version: 3.6.16"), ("kubectl", "Client Version: v1.34.4")):
        script = textwrap.dedent(f"""\
            set -euo pipefail
            "{built / binary}" --version | grep -q "{line}"
        """)
        assert subprocess.run(["bash", "-c", script], check=False).returncode != 0
        assert (checkout.parents[2] / "cache" / (built / binary).resolve().parent.name).is_dir()
