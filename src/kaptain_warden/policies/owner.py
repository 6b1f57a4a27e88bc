"""Owner identities made label-safe (≤63 chars, [A-Za-z0-9._-], alphanumeric at both ends)."""

from __future__ import annotations

import functools
import hashlib
import re

LABEL_VALUE_MAX = 63
_HASH_LENGTH = 8
_INVALID = re.compile(r"[^A-Za-z0-9._-]")
_VALID = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)?")


def is_label_value(value: str) -> bool:
    """True when `value` is a valid Kubernetes label value."""
    return len(value) <= LABEL_VALUE_MAX and _VALID.fullmatch(value) is not None


# Few identities create most objects: remembering their label form keeps a hash off the
# admission hot path.
@functools.lru_cache(maxsize=4096)
def owner_label_value(owner: str) -> str:
    """The label form of an owner identity.

    Valid label values are kept as they are. Anything else has its invalid characters
    replaced by `_`, is trimmed to fit, and gets a short hash of the exact identity as a
    suffix, so `alice@corp` and `alice:corp` stay distinct labels.
    """
    if owner and is_label_value(owner):
        return owner
    digest = hashlib.sha256(owner.encode("utf-8")).hexdigest()[:_HASH_LENGTH]
    body = _INVALID.sub("_", owner.encode("ascii", "replace").decode("ascii"))
    body = body[: LABEL_VALUE_MAX - _HASH_LENGTH - 1].strip("._-")
    return f"{body}-{digest}" if body else f"u-{digest}"
