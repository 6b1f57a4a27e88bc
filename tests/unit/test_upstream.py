"""The upstream table (hack/upstream.tsv), the documentation's copy of it, and finding its cache."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from kaptain_warden.testing.controllers import ControllersNotFoundError, find_controller_binaries
from kaptain_warden.testing.upstream import (
    LOCAL_CRD_DIR,
    UpstreamManifests,
    UpstreamNotFoundError,
    default_crd_files,
    find_upstream,
)

ROOT = Path(__file__).resolve().parents[2]
TABLE = ROOT / "hack" / "upstream.tsv"


def rows() -> list[list[str]]:
    lines = (line.split("#", 1)[0].split() for line in TABLE.read_text().splitlines())
    return [fields for fields in lines if fields]


def test_the_docs_show_the_table_hack_upstream_table_prints() -> None:
    table = subprocess.run(
        [str(ROOT / "hack" / "upstream-table")], capture_output=True, text=True, check=True
    ).stdout
    assert table.count("\n") > 5
    doc = (ROOT / "docs" / "developers" / "upstream.md").read_text()
    begin = "<!-- BEGIN GENERATED: upstream (hack/upstream-table --write) -->\n"
    end = "<!-- END GENERATED: upstream -->"
    assert doc.count(begin) == 1 and doc.count(end) == 1
    assert doc.split(begin)[1].split(end)[0] == table, (
        "docs/developers/upstream.md's upstream table is stale: run hack/upstream-table --write"
    )


def test_the_table_names_the_releases_the_project_runs_against() -> None:
    releases = {(what, module, version) for what, module, version, _ in rows()}
    assert ("crd", "github.com/kubeflow/training-operator", "v1.9.0") in releases
    assert ("crd", "github.com/kubeflow/katib", "v0.19.0") in releases
    assert ("crd", "github.com/kserve/kserve", "v0.20.0") in releases
    assert ("crd", "knative.dev/serving", "v0.48.1") in releases
    assert ("kserve", "github.com/kserve/kserve", "v0.20.0") in releases
    assert ("knative-serving", "knative.dev/serving", "v0.48.1") in releases
    assert ("training-operator", "github.com/kubeflow/training-operator", "v1.9.2") in releases
    assert all(len(fields) == 4 for fields in rows())


def test_only_the_kfserving_crd_lives_in_the_repository() -> None:
    assert sorted(path.name for path in LOCAL_CRD_DIR.iterdir()) == [
        "serving.kubeflow.org_inferenceservices.yaml"
    ]
    text = (LOCAL_CRD_DIR / "serving.kubeflow.org_inferenceservices.yaml").read_text()
    assert "apiextensions.k8s.io/v1beta1" in text  # the comment says why it is here


def _cache(tmp_path: Path) -> Path:
    module = tmp_path / "example.com/crds@v1.0.0"
    (module / "crds").mkdir(parents=True)
    (module / "crds" / "a.yaml").write_text("kind: CustomResourceDefinition\n")
    (module / "crds" / "b.yaml").write_text("kind: CustomResourceDefinition\n")
    (module / "extra.yaml").write_text("kind: CustomResourceDefinition\n")
    (module / "config").mkdir()
    (module / "config" / "map.yaml").write_text("kind: ConfigMap\n")
    (tmp_path / "index.tsv").write_text(
        "crd example.com/crds v1.0.0 crds/a.yaml\n"
        "controller-crd example.com/crds v1.0.0 extra.yaml\n"
        "config example.com/crds v1.0.0 config\n"
    )
    return tmp_path


def test_the_index_selects_files_by_use(tmp_path: Path) -> None:
    upstream = find_upstream(environ={"KAPTAIN_WARDEN_UPSTREAM": str(_cache(tmp_path))})
    module = upstream.root / "example.com/crds@v1.0.0"
    assert upstream.crd_files() == [module / "crds" / "a.yaml"]
    assert upstream.crd_files(controllers=True) == [
        module / "crds" / "a.yaml",
        module / "extra.yaml",
    ]
    assert upstream.files("config") == [module / "config" / "map.yaml"]
    assert upstream.file("example.com/crds", "config/map.yaml") == module / "config" / "map.yaml"
    with pytest.raises(UpstreamNotFoundError, match=r"add a row to hack/upstream\.tsv"):
        upstream.file("example.com/crds", "crds/b.yaml")
    assert default_crd_files(upstream)[-1].parent == LOCAL_CRD_DIR


def test_a_missing_cache_names_the_command_to_run(tmp_path: Path) -> None:
    with pytest.raises(UpstreamNotFoundError, match=r"hack/test-assets --component upstream"):
        find_upstream(environ={}, run_script=False)
    with pytest.raises(UpstreamNotFoundError, match=r"index\.tsv"):
        find_upstream(environ={"KAPTAIN_WARDEN_UPSTREAM": str(tmp_path)})
    cache = _cache(tmp_path)
    (cache / "example.com/crds@v1.0.0" / "extra.yaml").unlink()
    with pytest.raises(UpstreamNotFoundError, match=r"extra\.yaml"):
        UpstreamManifests.read(cache).crd_files(controllers=True)


def test_missing_controllers_name_the_command_to_run() -> None:
    with pytest.raises(ControllersNotFoundError, match=r"hack/test-assets --component kserve"):
        find_controller_binaries(environ={}, run_script=False)
    with pytest.raises(ControllersNotFoundError, match="TEST_ASSET_KSERVE_MANAGER"):
        find_controller_binaries(
            environ={"TEST_ASSET_KSERVE_MANAGER": "/nonexistent/manager"}, run_script=False
        )
