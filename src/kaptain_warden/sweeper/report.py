"""The sweep report: one entry per governed object seen, as a table or as a JSON array."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import orjson

from kaptain_warden.policies.expiry_warnings import State
from kaptain_warden.policies.timestamps import format_time

__all__ = ["Outcome", "ReportEntry", "render_json", "render_table"]

#: What happened to an entry this cycle (None for keeps):
#:   deleted        the API server accepted the delete
#:   would-delete   dry run: nothing was sent
#:   gone           404: already deleted by someone else
#:   conflict       409: the uid precondition failed (deleted and recreated under the name)
#:   error          the API server refused or failed the request; retried next cycle
#:   deferred       the API server was unavailable (no answer, 429, 502-504), or the cycle
#:                  backed off from it before sending; the next cycle redoes it
#:   not-attempted  the cycle stopped first (budget spent, leadership lost, a 500)
Outcome = Literal[
    "deleted", "would-delete", "gone", "conflict", "error", "deferred", "not-attempted"
]


@dataclass(slots=True)
class ReportEntry:
    """One governed object, its decision, and what happened to it."""

    api_version: str
    kind: str
    namespace: str
    name: str
    uid: str
    rule: str | None
    owner: str | None
    action: Literal["delete", "keep"]
    reason: str
    expires_at: datetime | None
    outcome: Outcome | None = None
    detail: str = ""
    state: State | None = None
    # Provenance: the notebook that made it, and the person (the Profile's owner).
    notebook: str | None = None
    person: str | None = None

    def to_json(self, *, evaluated_at: datetime | None = None) -> dict[str, Any]:
        """The public JSON form; field names are a contract other tools rely on."""
        entry: dict[str, Any] = {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "uid": self.uid,
            "rule": self.rule,
            "owner": self.owner,
            "action": self.action,
            "reason": self.reason,
            "expiresAt": format_time(self.expires_at) if self.expires_at else None,
            "outcome": self.outcome,
            "state": self.state,
            "notebook": self.notebook,
            "profileOwner": self.person,
        }
        if self.detail:
            entry["detail"] = self.detail
        if evaluated_at is not None:
            entry["evaluatedAt"] = format_time(evaluated_at)
        return entry


def render_json(entries: Sequence[ReportEntry], *, evaluated_at: datetime | None = None) -> str:
    """One JSON array, entries in report order, indented for reading."""
    return orjson.dumps(
        [e.to_json(evaluated_at=evaluated_at) for e in entries], option=orjson.OPT_INDENT_2
    ).decode()


_COLUMNS = (
    "NAMESPACE",
    "KIND",
    "NAME",
    "RULE",
    "OWNER",
    "NOTEBOOK",
    "PERSON",
    "ACTION",
    "EXPIRES",
    "REASON",
)


def render_table(entries: Sequence[ReportEntry], *, evaluated_at: datetime | None = None) -> str:
    """Aligned columns, kubectl style; the evaluation time on top when it was chosen (`--at`)."""
    rows = [
        (
            e.namespace,
            e.kind,
            e.name,
            e.rule or "-",
            e.owner or "-",
            e.notebook or "-",
            e.person or "-",
            e.action if e.outcome is None else f"{e.action} ({e.outcome})",
            format_time(e.expires_at) if e.expires_at else "-",
            e.reason + (f" [{e.detail}]" if e.detail else ""),
        )
        for e in entries
    ]
    widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(_COLUMNS)]
    lines = []
    if evaluated_at is not None:
        lines.append(f"Evaluated at {format_time(evaluated_at)}")
    for row in (_COLUMNS, *rows):
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])]
        lines.append("   ".join([*cells, row[-1]]).rstrip())
    if not rows:
        lines.append("(no governed objects)")
    return "\n".join(lines)
