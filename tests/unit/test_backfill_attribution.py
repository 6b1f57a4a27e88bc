"""Tier 1: who owns an object the webhook missed, which rule governs it, and the stamp backfill
writes (the API answered from a script; tier 3 does it against a real API server)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

import pytest
import yaml
from test_sweeper_parts import ScriptedApi, api_error

from kaptain_warden.kube.client import METADATA_ONLY
from kaptain_warden.policies.evaluate import Subject, find_backfill_rule
from kaptain_warden.policies.loader import PolicyError, load_policy, load_policy_text
from kaptain_warden.policies.owner import owner_label_value
from kaptain_warden.sweeper.backfill import NamespaceOwners, attribute, backfill
from kaptain_warden.sweeper.loop import Sweeper
from kaptain_warden.sweeper.settings import SweeperSettings

P = "warden.kaptain.io"
NOTEBOOK = "system:serviceaccount:team-a:default-editor"
POLICY = load_policy()
NOW = datetime(2025, 6, 1, 9, 0, tzinfo=UTC)


def secret(name: str = "creds", **annotations: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": name,
            "namespace": "team-a",
            "uid": f"uid-{name}",
            "annotations": annotations,
        },
    }


def subject(obj: dict[str, Any], *, username: str = "", inherited: str | None = None) -> Subject:
    return Subject(
        api_version=obj["apiVersion"],
        kind=obj["kind"],
        namespace="team-a",
        obj=obj,
        username=username,
        inherited_owner=inherited,
    )


def rule_of(s: Subject, *, attributed: bool, owned: bool, policy=POLICY) -> str | None:
    rule = find_backfill_rule(policy, s, attributed=attributed, namespace_owned=owned)
    return rule.id if rule else None


def test_an_unattributed_secret_is_governed_only_in_a_namespace_that_has_an_owner():
    assert rule_of(subject(secret()), attributed=False, owned=True) == "credentials-secrets"
    assert rule_of(subject(secret()), attributed=False, owned=False) is None


def test_a_recorded_creator_is_matched_like_a_requester_and_never_overridden():
    notebook = subject(secret(), username=NOTEBOOK)
    assert rule_of(notebook, attributed=True, owned=False) == "credentials-secrets"
    # Someone else made it: attributed, not the notebook, so not governed, owned or not.
    alice = subject(secret(), username="alice@example.com")
    assert rule_of(alice, attributed=True, owned=True) is None


def test_attributed_rules_never_govern_the_unknown():
    # knative-serving keeps the default `attributed`: a Knative Service nobody can be named
    # for is left alone even in an owned namespace.
    ksvc = {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "metadata": {"name": "s"}}
    assert rule_of(subject(ksvc), attributed=False, owned=True) is None
    assert rule_of(subject(ksvc, inherited="bob"), attributed=True, owned=False) == (
        "knative-serving"
    )


def test_any_governs_without_evidence_and_other_fields_still_must_match():
    document = load_policy_document()
    document["rules"][0]["backfill"] = "any"
    policy = load_policy_text(yaml.safe_dump(document))
    assert rule_of(subject(secret()), attributed=False, owned=False, policy=policy) == (
        "credentials-secrets"
    )
    other_type = {**secret(), "type": "kubernetes.io/tls"}
    assert rule_of(subject(other_type), attributed=False, owned=False, policy=policy) is None


def load_policy_document() -> dict[str, Any]:
    text = resources.files("kaptain_warden.policies").joinpath("default-policy.yaml").read_text()
    return yaml.safe_load(text)


def test_the_loader_reads_the_setting_and_refuses_unknown_values():
    assert {r.id: r.backfill for r in POLICY.rules}["knative-revisions"] == "attributed"
    assert {r.id: r.backfill for r in POLICY.rules}["credentials-secrets"] == "owned"
    document = load_policy_document()
    document["rules"][0]["backfill"] = "always"
    with pytest.raises(PolicyError, match="backfill"):
        load_policy_text(yaml.safe_dump(document))


@pytest.mark.parametrize(
    ("inherited", "creator", "namespace_owner", "expected"),
    [
        ("bob", NOTEBOOK, "alice", ("bob", "parent")),
        (None, NOTEBOOK, "alice", (NOTEBOOK, "creator")),
        (None, None, "alice", ("alice", "namespace")),
        (None, None, None, ("unknown", "none")),
    ],
)
def test_the_owner_comes_from_the_best_evidence_in_order(
    inherited, creator, namespace_owner, expected
):
    rule = POLICY.rule_by_id("build-jobs")  # inherits
    assert rule is not None
    got = attribute(rule, inherited=inherited, creator=creator, namespace_owner=namespace_owner)
    assert (got.owner, got.evidence) == expected


def test_a_rule_that_does_not_inherit_skips_the_parents_owner():
    rule = POLICY.rule_by_id("credentials-secrets")
    assert rule is not None and not rule.match.inherit
    got = attribute(rule, inherited="bob", creator=None, namespace_owner="alice")
    assert (got.owner, got.evidence) == ("alice", "namespace")


# -- namespace owners ------------------------------------------------------------------------


def namespaces(profile: Any, annotation: str | None = None) -> ScriptedApi:
    def answer(method, path, kw):
        if path == "/api/v1/namespaces/team-a":
            annotations = {"owner": annotation} if annotation else {}
            return {
                "metadata": {"name": "team-a", "labels": {"l": "v"}, "annotations": annotations}
            }
        if path == "/apis/kubeflow.org/v1/profiles/team-a":
            if isinstance(profile, Exception):
                raise profile
            return profile
        raise AssertionError(path)

    return ScriptedApi(answer)


def test_the_profile_names_the_owner_before_the_namespace_annotation():
    profile = {"spec": {"owner": {"kind": "User", "name": "alice@example.com"}}}
    facts = NamespaceOwners(namespaces(profile, "mallory"))
    assert facts.get("team-a").owner == "alice@example.com"
    assert facts.get("team-a").labels == {"l": "v"}


def test_without_a_profile_the_owner_annotation_counts():
    facts = NamespaceOwners(namespaces(api_error(404), "alice@example.com")).get("team-a")
    assert (facts.owner, facts.unreadable) == ("alice@example.com", None)
    nobody = NamespaceOwners(namespaces(api_error(404))).get("team-a")
    assert (nobody.owner, nobody.unreadable) == (None, None)


def test_an_unreadable_profile_is_not_taken_for_no_owner():
    facts = NamespaceOwners(namespaces(api_error(403), "alice@example.com")).get("team-a")
    assert facts.owner is None and facts.unreadable and "Profile team-a" in facts.unreadable


def test_namespaces_are_read_once_per_pass():
    api = namespaces(api_error(404), "alice")
    owners = NamespaceOwners(api)
    owners.get("team-a")
    owners.get("team-a")
    assert len(api.calls) == 2  # the namespace and its Profile, once


# -- the stamp -------------------------------------------------------------------------------


def cluster(objects: list[dict[str, Any]], *, profile_owner: str | None) -> ScriptedApi:
    def answer(method, path, kw):
        if method == "GET" and path == "/api/v1/namespaces/team-a/secrets":
            query = dict(kw.get("query") or [])
            wanted = query.get("fieldSelector", "").removeprefix("type=")
            items = [o for o in objects if wanted in ("", o["type"])]
            return {"metadata": {}, "items": [{"metadata": o["metadata"]} for o in items]}
        if method == "GET" and path.startswith("/api/v1/namespaces/team-a/"):
            return {"metadata": {}, "items": []}
        if method == "GET" and path.startswith("/apis/") and "/namespaces/team-a/" in path:
            return {"metadata": {}, "items": []}
        if path == "/api/v1/namespaces/team-a":
            return {"metadata": {"name": "team-a"}}
        if path == "/apis/kubeflow.org/v1/profiles/team-a":
            if profile_owner is None:
                raise api_error(404)
            return {"spec": {"owner": {"name": profile_owner}}}
        if method == "PATCH":
            return {}
        raise AssertionError((method, path))

    return ScriptedApi(answer)


def run(api: ScriptedApi, **kw: Any):
    return backfill(
        api,  # type: ignore[arg-type]
        policy=POLICY,
        namespaces=("team-a",),
        dry_run=False,
        now=NOW,
        resolve_owner=lambda namespace, obj: None,
        **kw,
    )


def patches(api: ScriptedApi) -> dict[str, dict[str, Any]]:
    return {p.rsplit("/", 1)[1]: kw["body"] for m, p, kw in api.calls if m == "PATCH"}


def test_the_stamp_counts_from_now_whatever_the_object_claims():
    forged = secret(
        "forged",
        **{
            f"{P}/created-at": "2020-01-01T00:00:00Z",
            f"{P}/expires-at": "2020-01-02T00:00:00Z",
            f"{P}/owner": "mallory",
            f"{P}/warned-at": "2020-01-01T00:00:00Z",  # would silence the expiry warning
            f"{P}/ttl": "2h",  # a user key within maxTtl: honoured
        },
    )
    plain = secret("plain")
    for obj in (forged, plain):
        obj["metadata"]["creationTimestamp"] = "2025-06-01T08:59:00Z"
        obj["metadata"]["resourceVersion"] = "7"
    api = cluster([forged, plain], profile_owner="alice@example.com")
    result = run(api)
    assert result.stamped == 2 and not result.errors
    sent = patches(api)
    for name, ttl in (("forged", timedelta(hours=2)), ("plain", timedelta(hours=24))):
        annotations = sent[name]["metadata"]["annotations"]
        assert annotations[f"{P}/owner"] == "alice@example.com"
        assert annotations[f"{P}/created-at"] == "2025-06-01T09:00:00Z"
        assert annotations[f"{P}/backfilled-at"] == "2025-06-01T09:00:00Z"
        assert annotations[f"{P}/expires-at"] == (NOW + ttl).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert sent[name]["metadata"]["labels"] == {
            f"{P}/managed": "true",
            f"{P}/owner": owner_label_value("alice@example.com"),
            f"{P}/rule": "credentials-secrets",
        }
    assert sent["forged"]["metadata"]["resourceVersion"] == "7"
    assert sent["forged"]["metadata"]["annotations"][f"{P}/warned-at"] is None  # removed
    assert f"{P}/warned-at" not in sent["plain"]["metadata"]["annotations"]
    # The answer comes back as metadata only: a Secret's data never reaches the sweeper.
    assert {kw["accept"] for m, p, kw in api.calls if m == "PATCH"} == {METADATA_ONLY}


def test_objects_older_than_the_webhook_are_left_alone():
    old, new = secret("old"), secret("new")
    old["metadata"]["creationTimestamp"] = "2025-05-01T00:00:00Z"
    new["metadata"]["creationTimestamp"] = "2025-06-01T08:00:00Z"
    api = cluster([old, new], profile_owner="alice@example.com")
    result = run(api, created_after=datetime(2025, 5, 31, tzinfo=UTC))
    assert result.stamped == 1
    assert set(patches(api)) == {"new"}


def test_nothing_is_stamped_in_a_namespace_nobody_owns():
    api = cluster([secret("a")], profile_owner=None)
    assert run(api).stamped == 0
    assert patches(api) == {}


# -- since the webhook was registered ---------------------------------------------------------

WEBHOOK = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/kw"


def pass_with_webhook(answer_webhook) -> tuple[Any, ScriptedApi]:
    """One sweeper pass with backfill bound to the `kw` webhook configuration; every list is
    empty."""

    def answer(method, path, kw):
        if path == WEBHOOK:
            return answer_webhook()
        if method == "GET":
            return {"metadata": {}, "items": []}
        raise AssertionError((method, path))

    api = ScriptedApi(answer)
    api.total = 0  # type: ignore[attr-defined]  # the pass's summary line reads it
    sweeper = Sweeper(
        api,  # type: ignore[arg-type]
        policy=POLICY,
        settings=SweeperSettings(
            namespaces=("team-a",), backfill=True, backfill_since_webhook="kw"
        ),
        resolve_owner=lambda namespace, obj: None,
    )
    return sweeper.run_once(now=NOW), api


def unmanaged_lists(api: ScriptedApi) -> int:
    return sum(
        1 for m, p, kw in api.calls if ("labelSelector", f"!{P}/managed") in (kw.get("query") or [])
    )


def test_backfill_runs_when_the_webhook_configuration_says_since_when():
    report, api = pass_with_webhook(
        lambda: {"metadata": {"creationTimestamp": "2025-05-01T00:00:00Z"}}
    )
    assert report.complete and unmanaged_lists(api) > 0


def test_no_webhook_configuration_means_nothing_was_missed():
    def absent():
        raise api_error(404)

    report, api = pass_with_webhook(absent)
    assert report.complete and unmanaged_lists(api) == 0


def test_an_unreadable_webhook_configuration_skips_backfill_and_says_so():
    def forbidden():
        raise api_error(403)

    report, api = pass_with_webhook(forbidden)
    assert unmanaged_lists(api) == 0
    assert not report.complete
    assert any("MutatingWebhookConfiguration kw" in e for e in report.errors)
