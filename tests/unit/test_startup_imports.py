"""What a one-shot `kaptain-warden sweep --dry-run` imports before its first request.

Start-up cost is mostly imports, so the mechanism that keeps it low is checked here, not a
time: each command line runs in a fresh interpreter, which then reports the modules it holds.
"""

import json
import subprocess
import sys
import textwrap

import pytest

from kaptain_warden.cli import COMMANDS, build_parser

# Runs the command line in-process, then prints the imported module names (stdout is the
# command's own; the names go to a file).
PROBE = textwrap.dedent(
    """
    import json, sys
    from kaptain_warden.cli import main
    try:
        code = main(sys.argv[2:])
    except SystemExit as exc:
        code = exc.code
    if sys.argv[3:4] == ["--dry-run"]:
        import kaptain_warden.sweeper.loop  # the pass's modules, imported after GET /version
    with open(sys.argv[1], "w") as out:
        json.dump({"code": code, "modules": sorted(sys.modules)}, out)
    """
)

#: Nothing a one-shot sweep needs: the policy schema checker (the built-in policy is checked by
#: a test), the metrics server, the admission server and its web framework, other commands.
NOT_ON_THE_SWEEP_PATH = (
    "jsonschema",
    "prometheus_client",
    "flask",
    "kaptain_warden.webhook",
    "kaptain_warden.certs",
    "kaptain_warden.commands.serve",
    "kaptain_warden.commands.up",
    "kaptain_warden.commands.policy",
    # The Kubernetes client's generated API classes and models load on first use; the sweep
    # speaks JSON through the ApiClient and decodes it itself.
    "kubernetes.client.api",
)


def imported(tmp_path, *argv: str) -> tuple[int, list[str]]:
    report = tmp_path / "modules.json"
    subprocess.run(
        [sys.executable, "-c", PROBE, str(report), *argv],
        check=False,
        capture_output=True,
        timeout=60,
    )
    answer = json.loads(report.read_text())
    return answer["code"], answer["modules"]


def loaded(modules: list[str], package: str) -> list[str]:
    return [m for m in modules if m == package or m.startswith(package + ".")]


@pytest.fixture
def unreachable_kubeconfig(tmp_path):
    """A kubeconfig whose API server refuses connections: the sweep stops at its first request."""
    path = tmp_path / "kubeconfig"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    return path


def test_a_dry_run_imports_none_of_what_it_does_not_use(tmp_path, unreachable_kubeconfig):
    code, modules = imported(
        tmp_path, "sweep", "--dry-run", "--kubeconfig", str(unreachable_kubeconfig)
    )
    assert code == 3  # it got as far as its first request
    assert "kaptain_warden.sweeper.loop" in modules
    assert "kaptain_warden.policies.loader" in modules
    for package in NOT_ON_THE_SWEEP_PATH:
        assert not loaded(modules, package), f"sweep --dry-run imported {package}"
    assert not [m for m in modules if m.startswith("kubernetes.client.models.")]


def test_a_policy_file_is_still_checked_with_the_schema(tmp_path, unreachable_kubeconfig):
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "apiVersion: warden.kaptain.io/v1alpha1\nkind: WardenPolicy\nrules:\n"
        "- {id: secrets, match: {kinds: [{apiVersion: v1, kind: Secret}]}}\n"
    )
    code, modules = imported(
        tmp_path,
        "sweep",
        "--dry-run",
        "--policy",
        str(policy),
        "--kubeconfig",
        str(unreachable_kubeconfig),
    )
    assert code == 3
    assert loaded(modules, "jsonschema")


def test_sweep_help_imports_only_its_own_command(tmp_path):
    code, modules = imported(tmp_path, "sweep", "--help")
    assert code == 0
    assert loaded(modules, "kaptain_warden.commands") == [
        "kaptain_warden.commands",
        "kaptain_warden.commands.options",
        "kaptain_warden.commands.sweep",
    ]


def test_every_subcommand_is_mapped_to_the_module_that_registers_it():
    def names(parser) -> set[str]:
        action = next(a for a in parser._actions if a.dest == "command")
        return set(action.choices)

    assert names(build_parser()) == set(COMMANDS)
    for command in COMMANDS:
        assert command in names(build_parser(command))
