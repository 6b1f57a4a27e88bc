"""Load policy files: YAML, checked against the JSON Schema, then built into the model.

The built-in policy is fixed when the package is built: its schema check is a test
(tests/unit/test_loader.py), not a cost every process pays at start-up, and libyaml parses it
when PyYAML has it. A policy file is always checked, and parsed by the pure-Python loader,
whose errors quote the offending line.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import timedelta
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from kaptain_warden.policies.durations import DurationError, format_duration, parse_duration
from kaptain_warden.policies.kinds import KNOWN_KINDS, KnownKind, known_kind
from kaptain_warden.policies.model import (
    Globs,
    LabelSelector,
    Match,
    Policy,
    Requirement,
    Rule,
    Settings,
)
from kaptain_warden.policies.retention import RetentionSettings

if TYPE_CHECKING:
    import jsonschema

DEFAULT_POLICY_NAME = "default-policy.yaml"
BUILT_IN_SOURCE = f"<built-in {DEFAULT_POLICY_NAME}>"
# libyaml's loader builds the same documents as the pure-Python SafeLoader, several times faster.
_FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class PolicyError(ValueError):
    """A policy that cannot be used; `errors` holds one actionable line per problem."""

    def __init__(self, source: str, errors: Sequence[str]) -> None:
        self.source = source
        self.errors = tuple(errors)
        super().__init__("\n".join(f"{source}: {e}" for e in self.errors))


@cache
def _schema() -> dict[str, Any]:
    # Read by every process: the settings' defaults are in it (about 0.1 ms).
    schema: dict[str, Any] = json.loads(
        resources.files(__package__).joinpath("schema.json").read_text()
    )
    return schema


@cache
def _validator() -> jsonschema.Draft202012Validator:
    # Imported on first use: loading it costs more than checking a policy, and a process that
    # runs on the built-in policy never checks one.
    import jsonschema  # noqa: PLC0415

    return jsonschema.Draft202012Validator(_schema())


def policy_schema() -> dict[str, Any]:
    """The JSON Schema policy files are checked against."""
    return copy.deepcopy(_schema())


def _setting(raw: Mapping[str, Any], *path: str) -> Any:
    """The setting at `path` ("privileged", "users") in the document's `raw` settings, else
    its default: the schema holds each setting's default and meaning (for `policy schema`
    and the generated docs too)."""
    *within, name = path
    properties = _schema()["$defs"]["settings"]["properties"]
    for step in within:
        raw = raw.get(step, {})
        properties = properties[step]["properties"]
    return raw.get(name, properties[name]["default"])


def _where(document: Any, path: Sequence[str | int]) -> str:
    """`rules[2] (id "build-jobs").ttlAfterFinished` for a JSON path into the document."""
    out = ""
    node = document
    for i, step in enumerate(path):
        if isinstance(step, int):
            out += f"[{step}]"
        else:
            out += f".{step}" if out else step
        if isinstance(node, list) and isinstance(step, int) and step < len(node):
            node = node[step]
        elif isinstance(node, Mapping):
            node = node.get(step)
        else:
            node = None
        if i == 1 and path[0] == "rules" and isinstance(node, Mapping) and "id" in node:
            out += f' (id "{node["id"]}")'
    return out or "(top level)"


def _schema_errors(document: Any) -> Iterator[str]:
    for error in sorted(_validator().iter_errors(document), key=lambda e: list(map(str, e.path))):
        yield f"{_where(document, list(error.path))}: {error.message}"


class _Builder:
    """Turns a schema-valid document into the model, collecting semantic errors."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        self.document = document
        self.errors: list[str] = []

    def fail(self, path: Sequence[str | int], message: str) -> None:
        self.errors.append(f"{_where(self.document, path)}: {message}")

    def duration(self, value: Any, path: Sequence[str | int]) -> timedelta | None:
        if value is None:
            return None
        try:
            return parse_duration(value)
        except DurationError as exc:
            self.fail(path, str(exc))
            return None

    def optional_duration(self, value: Any, path: Sequence[str | int]) -> timedelta | None:
        return None if value in (None, "disabled") else self.duration(value, path)

    def selector(self, raw: Mapping[str, Any] | None) -> LabelSelector | None:
        if raw is None:
            return None
        return LabelSelector(
            match_labels=tuple(sorted(raw.get("matchLabels", {}).items())),
            match_expressions=tuple(
                Requirement(e["key"], e["operator"], frozenset(e.get("values", ())))
                for e in raw.get("matchExpressions", ())
            ),
        )

    def kind(self, raw: Mapping[str, str], path: Sequence[str | int]) -> KnownKind | None:
        entry = known_kind(raw["apiVersion"], raw["kind"])
        if entry is not None:
            return entry
        if "resource" in raw:
            return KnownKind(raw["apiVersion"], raw["kind"], raw["resource"])
        known = ", ".join(f"{k.api_version} {k.kind}" for k in KNOWN_KINDS)
        self.fail(
            path,
            f"{raw['apiVersion']} {raw['kind']} is not a known kind; add `resource:` "
            f"(its plural, e.g. configmaps) or use one of: {known}",
        )
        return None

    def match(self, raw: Mapping[str, Any], path: list[str | int]) -> Match:
        kinds = [self.kind(k, [*path, "kinds", i]) for i, k in enumerate(raw["kinds"])]
        name_regex = None
        if "nameRegex" in raw:
            try:
                name_regex = re.compile(raw["nameRegex"])
            except re.error as exc:
                self.fail(
                    [*path, "nameRegex"], f"{raw['nameRegex']!r} is not a regular expression: {exc}"
                )
        return Match(
            kinds=tuple(k for k in kinds if k is not None),
            namespaces=Globs.of(tuple(raw.get("namespaces", ()))),
            namespace_selector=self.selector(raw.get("namespaceSelector")),
            selector=self.selector(raw.get("selector")),
            names=Globs.of(tuple(raw.get("names", ()))),
            name_regex=name_regex,
            secret_types=frozenset(raw.get("secretTypes", ())),
            users=Globs.of(tuple(raw.get("users", ()))),
            groups=Globs.of(tuple(raw.get("groups", ()))),
            inherit=raw.get("inherit", True),
        )

    def retention(
        self, raw: Mapping[str, Any] | None, path: list[str | int]
    ) -> RetentionSettings | None:
        if raw is None:
            return None

        def count(key: str) -> int | None:
            value = raw.get(key, "disabled")
            return None if value == "disabled" else int(value)

        try:
            return RetentionSettings(
                min_non_active=count("minNonActive"),
                max_non_active=count("maxNonActive"),
                retain_since_create=self.optional_duration(
                    raw.get("retainSinceCreate"), [*path, "retainSinceCreate"]
                ),
                retain_since_last_active=self.optional_duration(
                    raw.get("retainSinceLastActive"), [*path, "retainSinceLastActive"]
                ),
            )
        except ValueError as exc:
            self.fail(path, str(exc))
            return None

    def rule(self, raw: Mapping[str, Any], index: int, default_max_ttl: timedelta) -> Rule:
        path: list[str | int] = ["rules", index]
        ttl = self.duration(raw.get("ttl"), [*path, "ttl"])
        after = self.duration(raw.get("ttlAfterFinished"), [*path, "ttlAfterFinished"])
        max_ttl = self.duration(raw.get("maxTtl"), [*path, "maxTtl"]) or default_max_ttl
        for name, value in (("ttl", ttl), ("ttlAfterFinished", after)):
            if value is not None and value > max_ttl:
                self.fail(
                    [*path, name],
                    f"{raw[name]} is above this rule's maxTtl of {format_duration(max_ttl)}",
                )
        warn_before = (
            timedelta(0)
            if raw.get("warnBefore") == "0"
            else self.duration(raw.get("warnBefore"), [*path, "warnBefore"])
        )
        creator_gone = self.duration(
            raw.get("expireWhenCreatorGone"), [*path, "expireWhenCreatorGone"]
        )
        match = self.match(raw["match"], [*path, "match"])
        retention = self.retention(raw.get("retention"), [*path, "retention"])
        if retention is not None and not all(k.retention for k in match.kinds):
            names = ", ".join(f"{k.api_version} {k.kind}" for k in KNOWN_KINDS if k.retention)
            self.fail([*path, "retention"], f"retention applies to {names} only")
        if after is not None and not all(k.needs_status for k in match.kinds):
            names = ", ".join(k.kind for k in match.kinds if not k.needs_status)
            self.fail(
                [*path, "ttlAfterFinished"],
                f"{names} has no completion status; use ttl (counted from creation) instead",
            )
        return Rule(
            id=raw["id"],
            description=raw.get("description", ""),
            match=match,
            ttl=ttl,
            ttl_after_finished=after,
            max_ttl=max_ttl,
            allow_keep=raw.get("allowKeep", False),
            retention=retention,
            backfill=raw.get("backfill", "attributed"),
            warn_before=warn_before,
            expire_when_creator_gone=creator_gone,
        )

    def build(self, source: str) -> Policy:
        raw = self.document.get("settings", {})
        default_max_ttl = self.duration(
            _setting(raw, "defaultMaxTtl"), ["settings", "defaultMaxTtl"]
        ) or parse_duration(_setting({}, "defaultMaxTtl"))  # its error is reported already
        settings = Settings(
            metadata_prefix=_setting(raw, "metadataPrefix"),
            warden_namespace=_setting(raw, "wardenNamespace"),
            excluded_namespaces=frozenset(_setting(raw, "excludedNamespaces")),
            privileged_users=Globs.of(tuple(_setting(raw, "privileged", "users"))),
            privileged_groups=Globs.of(tuple(_setting(raw, "privileged", "groups"))),
            dry_run=_setting(raw, "dryRun"),
            backfill=_setting(raw, "backfill"),
            propagation_policy=_setting(raw, "propagationPolicy"),
        )
        rules = [self.rule(r, i, default_max_ttl) for i, r in enumerate(self.document["rules"])]
        seen: dict[str, int] = {}
        for i, rule in enumerate(rules):
            if rule.id in seen:
                self.fail(["rules", i, "id"], f"duplicates the id of rules[{seen[rule.id]}]")
            seen.setdefault(rule.id, i)
        if self.errors:
            raise PolicyError(source, self.errors)
        return Policy(settings=settings, rules=tuple(rules), source=source)


def parse_policy(document: Any, *, source: str = "<memory>") -> Policy:
    """Check a decoded policy document against the schema and build the model."""
    errors = list(_schema_errors(document))
    if errors:
        raise PolicyError(source, errors)
    return _Builder(document).build(source)


def load_policy_text(text: str, *, source: str = "<memory>") -> Policy:
    """Parse YAML text into a Policy, or raise PolicyError naming `source`."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(source, [f"not valid YAML: {exc}"]) from exc
    return parse_policy(document, source=source)


def built_in_document() -> Any:
    """The built-in policy, decoded."""
    text = resources.files(__package__).joinpath(DEFAULT_POLICY_NAME).read_text()
    return yaml.load(text, Loader=_FAST_LOADER)  # a safe loader: no Python objects


def load_policy(path: str | Path | None = None) -> Policy:
    """Load a policy file, or the built-in default policy when `path` is None."""
    if path is None:
        return _Builder(built_in_document()).build(BUILT_IN_SOURCE)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(str(path), [f"cannot read the file: {exc.strerror}"]) from exc
    return load_policy_text(text, source=str(path))
