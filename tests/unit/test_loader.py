"""Policy files: schema and semantic errors point at the entry; the default policy loads."""

from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from kaptain_warden.cli import main
from kaptain_warden.policies.kinds import KNOWN_KINDS, known_kind
from kaptain_warden.policies.loader import (
    BUILT_IN_SOURCE,
    DEFAULT_POLICY_NAME,
    PolicyError,
    built_in_document,
    load_policy,
    load_policy_text,
    parse_policy,
    policy_schema,
)

MINIMAL = {
    "apiVersion": "warden.kaptain.io/v1alpha1",
    "kind": "WardenPolicy",
    "rules": [{"id": "secrets", "match": {"kinds": [{"apiVersion": "v1", "kind": "Secret"}]}}],
}


def with_rule(**rule):
    rule.setdefault("id", "r")
    rule.setdefault("match", {"kinds": [{"apiVersion": "batch/v1", "kind": "Job"}]})
    return {**MINIMAL, "rules": [rule]}


def errors_of(document) -> list[str]:
    with pytest.raises(PolicyError) as info:
        parse_policy(document, source="p.yaml")
    return list(info.value.errors)


def test_default_policy_loads_with_the_documented_rules():
    policy = load_policy()
    by_id = {r.id: r for r in policy.rules}
    assert list(by_id) == [
        "credentials-secrets",
        "build-jobs",
        "training-jobs",
        "trainer-jobs",
        "ray-jobs",
        "ray-clusters",
        "spark-applications",
        "katib-experiments",
        "inference-services",
        "knative-serving",
        "knative-revisions",
    ]
    assert by_id["credentials-secrets"].ttl == timedelta(hours=24)
    assert by_id["credentials-secrets"].allow_keep is True
    assert by_id["build-jobs"].ttl_after_finished == timedelta(hours=1)
    assert by_id["training-jobs"].ttl_after_finished == timedelta(days=7)
    assert by_id["katib-experiments"].ttl_after_finished == timedelta(days=7)
    assert by_id["inference-services"].ttl is None
    assert by_id["inference-services"].ttl_after_finished is None
    retention = by_id["knative-revisions"].retention
    assert retention is not None
    assert (retention.min_non_active, retention.max_non_active) == (2, 10)
    assert retention.retain_since_create == timedelta(hours=48)
    assert retention.retain_since_last_active == timedelta(hours=15)
    assert all(r.max_ttl == timedelta(days=30) for r in policy.rules)
    assert all(not r.allow_keep for r in policy.rules if r.id != "credentials-secrets")
    assert {"kube-system", "kaptain-warden"} <= policy.settings.all_excluded_namespaces


def test_the_built_in_policy_passes_the_schema_check_it_skips_at_start_up():
    # load_policy() builds the built-in policy unchecked (it is fixed at build time); this is
    # the check, and the checked path must build the very same policy.
    document = built_in_document()
    assert document == yaml.safe_load(
        (
            Path(__file__).parents[2] / "src/kaptain_warden/policies" / DEFAULT_POLICY_NAME
        ).read_text()
    ), "libyaml and the pure-Python loader decode the built-in policy differently"
    assert parse_policy(document, source=BUILT_IN_SOURCE) == load_policy()
    assert load_policy().source == BUILT_IN_SOURCE


def test_minimal_policy_gets_defaults():
    policy = parse_policy(MINIMAL)
    settings = policy.settings
    assert (settings.metadata_prefix, settings.warden_namespace) == (
        "warden.kaptain.io",
        "kaptain-warden",
    )
    assert settings.excluded_namespaces == {"kube-system"}
    assert not settings.privileged_users and not settings.privileged_groups
    assert (settings.dry_run, settings.backfill) == (False, False)
    assert settings.propagation_policy == "Background"
    assert policy.rules[0].max_ttl == timedelta(days=30)


def setting_definitions(properties=None, prefix=""):
    """(dotted name, definition) of every setting in the schema, objects and their members."""
    if properties is None:
        properties = policy_schema()["$defs"]["settings"]["properties"]
    for name, definition in properties.items():
        yield f"{prefix}{name}", definition
        yield from setting_definitions(definition.get("properties", {}), f"{prefix}{name}.")


def test_every_setting_says_what_it_means_and_its_default_is_what_leaving_it_out_gives():
    # values.yaml and the policy reference are generated from these descriptions and defaults.
    definitions = dict(setting_definitions())
    assert all(d.get("description") for d in definitions.values()), definitions
    defaults = {n: d["default"] for n, d in definitions.items() if "properties" not in d}
    assert set(defaults) == {n for n, d in definitions.items() if "default" in d}
    spelled_out: dict = {}
    for name, value in defaults.items():
        *within, last = name.split(".")
        node = spelled_out
        for step in within:
            node = node.setdefault(step, {})
        node[last] = value
    assert parse_policy({**MINIMAL, "settings": spelled_out}) == parse_policy(MINIMAL)
    assert parse_policy({**MINIMAL, "settings": {**spelled_out, "dryRun": True}}).settings.dry_run


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (
            {**MINIMAL, "settings": {"dryRn": True}},
            "settings: Additional properties are not allowed",
        ),
        ({**MINIMAL, "apiVersion": "v2"}, "apiVersion:"),
        ({**MINIMAL, "rules": []}, "rules: [] should be non-empty"),
        (
            with_rule(ttlAfterFinished="7x"),
            "rules[0] (id \"r\").ttlAfterFinished: '7x' is not a duration",
        ),
        (with_rule(ttl="40d"), 'rules[0] (id "r").ttl: 40d is above this rule\'s maxTtl of 30d'),
        (with_rule(id="Bad_Id"), "rules[0] (id \"Bad_Id\").id: 'Bad_Id' does not match"),
        (
            with_rule(match={"kinds": [{"apiVersion": "foo/v1", "kind": "Bar"}]}),
            "match.kinds[0]: foo/v1 Bar is not a known kind",
        ),
        (
            with_rule(
                match={"kinds": [{"apiVersion": "v1", "kind": "Secret"}]}, ttlAfterFinished="1h"
            ),
            "Secret has no completion status",
        ),
        (
            with_rule(
                match={"kinds": [{"apiVersion": "batch/v1", "kind": "Job"}], "nameRegex": "("}
            ),
            "nameRegex: '(' is not a regular expression",
        ),
        (
            with_rule(retention={"minNonActive": 2}),
            "retention applies to serving.knative.dev/v1 Revision only",
        ),
        (
            with_rule(
                match={"kinds": [{"apiVersion": "serving.knative.dev/v1", "kind": "Revision"}]},
                retention={"minNonActive": 5, "maxNonActive": 2},
            ),
            "retention",
        ),
        (with_rule(match={"kinds": []}), "match.kinds: [] should be non-empty"),
        ("just a string", "(top level):"),
    ],
)
def test_errors_name_the_entry_and_the_problem(document, expected):
    errors = errors_of(document)
    assert any(expected in e for e in errors), errors


def test_duplicate_rule_ids_are_refused():
    document = {**MINIMAL, "rules": MINIMAL["rules"] * 2}
    assert any("duplicates the id of rules[0]" in e for e in errors_of(document))


def test_all_problems_are_reported_at_once():
    document = {
        **MINIMAL,
        "rules": [with_rule(ttl="7x")["rules"][0], with_rule(id="s", ttl="0s")["rules"][0]],
    }
    errors = errors_of(document)
    assert len(errors) == 2


def test_unknown_kind_with_resource_is_accepted():
    policy = parse_policy(
        with_rule(
            match={"kinds": [{"apiVersion": "v1", "kind": "ConfigMap", "resource": "configmaps"}]},
            ttl="1d",
        )
    )
    assert policy.kinds[0].resource == "configmaps"


def test_yaml_syntax_errors_name_the_source():
    with pytest.raises(PolicyError, match=r"bad\.yaml: not valid YAML"):
        load_policy_text("rules: [", source="bad.yaml")


def test_missing_file_is_a_policy_error(tmp_path):
    with pytest.raises(PolicyError, match="cannot read the file"):
        load_policy(tmp_path / "absent.yaml")


def test_policy_check_cli_exit_codes(tmp_path, capsys):
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(MINIMAL))
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(with_rule(ttl="soon")))
    assert main(["policy", "check", str(good)]) == 0
    assert "valid (1 rules: secrets)" in capsys.readouterr().out
    assert main(["policy", "check", str(good), str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}: rules[0] (id \"r\").ttl: 'soon' is not a duration" in err


def test_default_policy_printed_by_cli_is_valid(tmp_path, capsys):
    assert main(["policy", "default"]) == 0
    path = Path(tmp_path / "default.yaml")
    path.write_text(capsys.readouterr().out)
    assert load_policy(path).rules == load_policy().rules


@pytest.mark.parametrize(
    "kind", [k for k in KNOWN_KINDS if k.finish is not None], ids=lambda k: f"{k.kind}"
)
def test_ttl_after_finished_is_accepted_for_every_kind_that_can_finish(kind):
    rule = with_rule(
        match={"kinds": [{"apiVersion": kind.api_version, "kind": kind.kind}]},
        ttlAfterFinished="1h",
    )
    (parsed,) = parse_policy(rule).rules
    assert parsed.match.kinds == (kind,)


def test_the_training_operator_kinds_are_known_and_can_finish():
    for kind in ("TFJob", "PyTorchJob", "MPIJob", "XGBoostJob", "PaddleJob", "JAXJob"):
        entry = known_kind("kubeflow.org/v1", kind)
        assert entry is not None and entry.needs_status, kind


@pytest.mark.parametrize(
    "kind", [k for k in KNOWN_KINDS if k.finish is None], ids=lambda k: f"{k.api_version}-{k.kind}"
)
def test_ttl_after_finished_is_refused_for_kinds_that_never_finish(kind):
    rule = with_rule(
        match={"kinds": [{"apiVersion": kind.api_version, "kind": kind.kind}]},
        ttlAfterFinished="1h",
    )
    assert any(f"{kind.kind} has no completion status" in e for e in errors_of(rule))
