"""The sweeper's settings: one frozen object, filled from the command line."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kaptain_warden.policies.timestamps import format_time

__all__ = ["SweeperSettings"]


@dataclass(frozen=True)
class SweeperSettings:
    """How the sweeper runs. The policy decides what is governed; this decides how to sweep."""

    dry_run: bool = False
    """Report and log what would be deleted, send no delete (and no Event, no backfill patch).
    `--dry-run`, or `settings.dryRun` in the policy. Needs only list/get RBAC."""

    max_deletes_per_cycle: int = 500
    """The delete budget of one pass (`--max-deletes-per-cycle`): past it the pass stops
    deleting, says so, and the next pass continues. Stops a runaway policy from emptying a
    cluster in one go. Dry runs count would-be deletions against it too."""

    namespaces: tuple[str, ...] = ()
    """Sweep only these namespaces (`--namespace`, repeatable); empty means all namespaces
    except the policy's excluded ones. Cluster-wide lists need a ClusterRole."""

    backfill: bool = False
    """Also stamp governed objects that carry no warden metadata (`--backfill`, or
    `settings.backfill` in the policy). Needs `patch` on the governed kinds."""

    backfill_since_webhook: str | None = None
    """Backfill only objects created after this MutatingWebhookConfiguration was
    (`--backfill-since-webhook`): what the webhook missed, not what predates the install.
    Needs `get` on that one configuration. None: every unstamped governed object."""

    interval: float = 60.0
    """Seconds between the starts of two passes of `kaptain-warden sweeper` (`--interval`)."""

    page_size: int = 500
    """Items per list page (`limit`); kubectl's default chunk size."""

    request_timeout: float = 30.0
    """Seconds one API request may take before it counts as failed (and is retried next pass)."""

    delete_batch_size: int = 50
    """Deletes sent between two checks that this replica still holds the Lease."""

    delete_workers: int = 8
    """Deletes in flight at once (the API server answers each in a few milliseconds)."""

    at: datetime | None = None
    """Evaluate as if the clock read this instant (`--at`, dry runs only); None: the real clock."""

    identity: str = field(default="kaptain-warden-sweeper")
    """Who this replica is: the Lease holder identity and the Events' reportingInstance."""

    def summary(self) -> dict[str, Any]:
        """The settings as log fields (nothing here is secret)."""
        return {
            "dryRun": self.dry_run,
            "maxDeletesPerCycle": self.max_deletes_per_cycle,
            "namespaces": list(self.namespaces) or "all",
            "backfill": self.backfill,
            "backfillSinceWebhook": self.backfill_since_webhook,
            "interval": self.interval,
            "pageSize": self.page_size,
            "requestTimeout": self.request_timeout,
            "at": format_time(self.at) if self.at else None,
            "identity": self.identity,
        }
