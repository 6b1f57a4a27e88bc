"""Tier 3: `sweep --dry-run --at TIME` previews what will go, and whose it is (issue 6)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from kaptain_warden.policies.timestamps import format_time, parse_time
from sweeper_kit import HOUR, body, create, now, run_cli, set_status, write_policy

pytestmark = pytest.mark.e2e

MINUTE = timedelta(minutes=1)
RETENTION = {
    "minNonActive": 1,
    "maxNonActive": "disabled",
    "retainSinceCreate": "disabled",
    "retainSinceLastActive": "1h",
}


def preview(control_plane, namespace, policy, *at: str, output: str = "json"):
    result = run_cli(
        "sweep",
        "--dry-run",
        "--namespace",
        namespace,
        "--policy",
        str(policy),
        "--output",
        output,
        *(("--at", at[0]) if at else ()),
        kubeconfig=control_plane.kubeconfig_path,
    )
    return json.loads(result.stdout) if output == "json" else result.stdout


def going(report) -> set[str]:
    return {e["name"] for e in report if e["action"] == "delete"}


def test_objects_created_now_go_at_their_expiry(control_plane, kube_admin, namespace, tmp_path):
    policy = write_policy(tmp_path / "policy.yaml")
    t = now()
    create(kube_admin, namespace, body("v1", "Secret", "creds", expires=t + 2 * HOUR, owner="bob"))
    create(kube_admin, namespace, body("v1", "Secret", "later", expires=t + 48 * HOUR))

    today = preview(control_plane, namespace, policy)
    assert going(today) == set()
    assert all("evaluatedAt" not in e for e in today)

    weekend = preview(control_plane, namespace, policy, "+3h")
    assert going(weekend) == {"creds"}
    (creds,) = [e for e in weekend if e["name"] == "creds"]
    assert creds["owner"] == "bob"
    assert creds["expiresAt"] == format_time(t + 2 * HOUR)
    evaluated = {e["evaluatedAt"] for e in weekend}
    assert len(evaluated) == 1
    assert timedelta(0) <= (datetime_of(evaluated.pop()) - (t + 3 * HOUR)) < timedelta(minutes=1)

    instant = format_time(t + 72 * HOUR)
    assert going(preview(control_plane, namespace, policy, instant)) == {"creds", "later"}
    table = preview(control_plane, namespace, policy, instant, output="table")
    assert table.splitlines()[0] == f"Evaluated at {instant}"
    # Nothing was deleted by any of this.
    assert going(preview(control_plane, namespace, policy)) == set()
    assert len(today) == 2


def datetime_of(text: str):
    moment = parse_time(text)
    assert moment is not None
    return moment


def test_revision_retention_answers_differently_at_two_instants(
    control_plane, kube_admin, namespace, tmp_path
):
    policy = write_policy(tmp_path / "policy.yaml", retention=RETENTION)
    t = now()
    create(kube_admin, namespace, body("serving.knative.dev/v1", "Configuration", "cfg"))
    set_status(
        kube_admin,
        namespace,
        body("serving.knative.dev/v1", "Configuration", "cfg"),
        {"latestReadyRevisionName": "cfg-00004"},
    )
    for number, idle in ((1, 3 * HOUR), (2, 10 * MINUTE), (3, 5 * MINUTE), (4, 0 * MINUTE)):
        create(
            kube_admin,
            namespace,
            body(
                "serving.knative.dev/v1",
                "Revision",
                f"cfg-0000{number}",
                labels={
                    "serving.knative.dev/configuration": "cfg",
                    "serving.knative.dev/routingState": "reserve",
                },
                annotations={"serving.knative.dev/routingStateModified": format_time(t - idle)},
            ),
        )
    # Now only cfg-00001 is idle for more than an hour; in two hours cfg-00002 is too, and
    # cfg-00003 is the one minNonActive keeps; the latest ready one is never a candidate.
    assert going(preview(control_plane, namespace, policy)) == {"cfg-00001"}
    later = preview(control_plane, namespace, policy, "+2h")
    assert going(later) == {"cfg-00001", "cfg-00002"}
    reasons = {e["name"]: e["reason"] for e in later}
    assert reasons["cfg-00003"] == "retention: kept: within minNonActive=1"
    assert reasons["cfg-00004"].startswith("protected: latest ready revision")
