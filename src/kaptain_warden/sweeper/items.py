"""What a sweep pass carries for each governed object, from its list page to its delete."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kaptain_warden.policies.expiry import Decision, Protection, owner_of, protect, rule_id_of
from kaptain_warden.policies.expiry_warnings import ExpiryWarning, expiry_warning, state_of
from kaptain_warden.policies.kinds import KnownKind
from kaptain_warden.policies.model import Policy
from kaptain_warden.policies.objects import metadata_of, string_map
from kaptain_warden.sweeper.report import ReportEntry

__all__ = ["SweepItem"]


@dataclass(slots=True, eq=False)
class SweepItem:
    """One governed object in a pass: decided as its list page arrives, then only this.

    The listed object itself is dropped once decided (a pass holds one page of objects, not
    all of them). What the later steps need stays: the kind (where to send the delete or the
    patch), the report entry (identity, uid for the delete precondition, decision, outcome),
    the resourceVersion as listed (precondition of every patch), the decision (its `cause`
    names the Event), whether this pass found its creator Pod missing, and the expiry warning
    due, if any. Anything that blocks a delete (a live workload using a Secret, a Revision
    Knative protects) does it through `protect`, the same way `decide` does.
    """

    kind: KnownKind
    entry: ReportEntry
    resource_version: str
    decision: Decision
    creator_missing: bool = False
    warning: ExpiryWarning | None = None

    @classmethod
    def of(
        cls,
        kind: KnownKind,
        obj: Mapping[str, Any],
        decision: Decision,
        *,
        policy: Policy,
        now: datetime,
        creator_missing: bool = False,
    ) -> SweepItem:
        """The record of a listed, decided object."""
        meta = metadata_of(obj)
        annotations = string_map(meta.get("annotations"))
        entry = ReportEntry(
            api_version=kind.api_version,
            kind=kind.kind,
            namespace=str(meta.get("namespace", "")),
            name=str(meta.get("name", "")),
            uid=str(meta.get("uid", "")),
            rule=rule_id_of(obj, policy),
            owner=owner_of(obj, policy),
            action=decision.action,
            reason=decision.reason,
            expires_at=decision.expires_at,
            state=state_of(obj=obj, policy=policy, decision=decision, now=now),
            notebook=annotations.get(policy.keys.notebook),
            person=annotations.get(policy.keys.profile_owner),
        )
        warning = (
            expiry_warning(obj=obj, policy=policy, decision=decision, now=now)
            if decision.action == "keep"
            else None
        )
        return cls(
            kind=kind,
            entry=entry,
            resource_version=str(meta.get("resourceVersion", "")),
            decision=decision,
            creator_missing=creator_missing,
            warning=warning,
        )

    @property
    def due(self) -> bool:
        """Decided `delete`."""
        return self.decision.action == "delete"

    @property
    def record_creator_gone(self) -> bool:
        """This pass first saw its creator gone and keeps it: `creator-gone-at` is written (an
        object that goes now needs no record)."""
        return self.creator_missing and not self.due

    def protect(self, protection: Protection) -> None:
        """Keep it on purpose (see `policies.expiry.protect`); the entry says so."""
        self.decision = protect(self.decision, protection)
        self.entry.action = self.decision.action
        self.entry.reason = self.decision.reason
        self.entry.expires_at = self.decision.expires_at
        self.entry.state = "kept"
        self.warning = None
