"""The admission request the decisions read: the parts of an AdmissionReview, as plain data."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

from kaptain_warden.policies.evaluate import Subject
from kaptain_warden.policies.objects import metadata_maps
from kaptain_warden.policies.provenance import CreatorPod

Operation = Literal["CREATE", "UPDATE", "DELETE", "CONNECT"]


@dataclass(frozen=True)
class AdmissionRequest:
    """The parts of an AdmissionReview request the decisions need, as plain data."""

    uid: str
    operation: Operation
    api_version: str
    kind: str
    namespace: str
    name: str
    username: str
    groups: tuple[str, ...] = ()
    obj: Mapping[str, Any] | None = None
    old_obj: Mapping[str, Any] | None = None
    sub_resource: str = ""
    dry_run: bool = False
    # The Pod the requester's bound ServiceAccount token names (`userInfo.extra`), if any.
    pod: CreatorPod | None = None

    @cached_property
    def maps(self) -> tuple[Mapping[str, str], Mapping[str, str]]:
        """(labels, annotations) of the new object as str -> str, read once: a decision
        reads them two or three times."""
        return metadata_maps(self.obj)

    def subject(
        self,
        *,
        inherited_owner: str | None = None,
        namespace_labels: Mapping[str, str] | None = None,
    ) -> Subject:
        """The facts to match rules against (the new object, or the old one on DELETE)."""
        obj = self.obj if self.obj is not None else (self.old_obj or {})
        return Subject(
            api_version=self.api_version,
            kind=self.kind,
            namespace=self.namespace,
            obj=obj,
            username=self.username,
            groups=self.groups,
            namespace_labels=namespace_labels,
            inherited_owner=inherited_owner,
        )
