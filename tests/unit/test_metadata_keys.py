"""Tier 1: the metadata keys are built once per prefix, and each is the prefix's."""

from __future__ import annotations

from kaptain_warden.policies.metadata import MetadataKeys


def test_keys_are_built_once_and_follow_the_prefix() -> None:
    keys = MetadataKeys("example.org")
    # The same objects every time: a review reads them dozens of times (see the class).
    assert keys.owner is keys.owner
    assert keys.annotations is keys.annotations
    assert keys.user_annotations is keys.user_annotations
    assert keys.labels == (
        "example.org/managed",
        "example.org/owner",
        "example.org/rule",
        "example.org/notebook",
    )
    assert MetadataKeys().owner == "warden.kaptain.io/owner"
    assert set(keys.user_annotations) < set(keys.annotations)
