"""Tier 4: the chart's generated files are what `make generate` writes from the registry and
the policy (regenerated in memory and compared: the check, not a second copy)."""

from __future__ import annotations

import yaml

from helm_chart import CHART, ROOT
from kaptain_warden.install.generated import (
    _without_defaults,
    generated_files,
    stale_files,
    values_table,
)
from kaptain_warden.policies.kinds import HOLDER_KINDS, KNOWN_KINDS, PARENT_ONLY_KINDS


def test_no_generated_file_is_stale():
    stale = [str(path.relative_to(ROOT)) for path in stale_files(ROOT)]
    assert stale == [], f"stale: {stale}; run `make generate` and commit the result"


def test_a_hand_edit_of_a_generated_file_is_caught(tmp_path):
    for path, text in generated_files(ROOT).items():
        copy = tmp_path / path.relative_to(ROOT)
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_text(text)
    assert stale_files(tmp_path) == []
    kinds = tmp_path / "charts" / "kaptain-warden" / "files" / "kinds.yaml"
    kinds.write_text(kinds.read_text().replace("resource: tfjobs", "resource: tfjob"))
    values = tmp_path / "charts" / "kaptain-warden" / "values.yaml"
    values.write_text(values.read_text().replace("ttlAfterFinished: 7d", "ttlAfterFinished: 6d"))
    reference = tmp_path / "docs" / "policy-authors" / "policy-reference.md"
    reference.write_text(reference.read_text().replace("| `30d` |", "| `31d` |"))
    assert sorted(p.name for p in stale_files(tmp_path)) == [
        "kinds.yaml",
        "policy-reference.md",
        "values.yaml",
    ]


def test_the_tables_hold_the_registry():
    kinds = yaml.safe_load((CHART / "files" / "kinds.yaml").read_text())
    assert [(k["apiVersion"], k["kind"]) for k in kinds if k["governable"]] == [
        (k.api_version, k.kind) for k in KNOWN_KINDS
    ]
    assert [(k["apiVersion"], k["kind"]) for k in kinds if not k["governable"]] == [
        (k.api_version, k.kind) for k in PARENT_ONLY_KINDS
    ]
    holders = yaml.safe_load((CHART / "files" / "secret-holders.yaml").read_text())
    assert [h["resource"] for h in holders] == [h.resource for h in HOLDER_KINDS]


def test_the_values_table_documents_keys_defaults_and_overrides():
    text = (
        "a:\n"
        "  # -- Alpha | one.\n"
        "  b: 1\n"
        "  # -- Covered below.\n"
        "  c:\n"
        "    d: [x]\n"
        "# -- Long text\n"
        "# over lines.\n"
        "# @default -- the built-in one\n"
        "e: {f: 2}\n"
    )
    assert values_table(text).splitlines()[2:] == [
        "| `a.b` | `1` | Alpha \\| one. |",
        "| `a.c` | `{d: [x]}` | Covered below. |",
        "| `e` | the built-in one | Long text over lines. |",
    ]


def test_the_chart_copy_drops_default_keywords_not_properties_named_default():
    schema = {
        "type": "object",
        "default": {},
        "properties": {
            "default": {"type": "string", "default": "x"},
            "ttl": {"anyOf": [{"type": "string", "default": "1d"}, {"type": "null"}]},
        },
    }
    assert _without_defaults(schema) == {
        "type": "object",
        "properties": {
            "default": {"type": "string"},
            "ttl": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        },
    }
