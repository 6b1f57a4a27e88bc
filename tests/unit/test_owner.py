"""Owner identities made label-safe, distinct, and stable."""

import pytest

from kaptain_warden.policies.owner import is_label_value, owner_label_value


@pytest.mark.parametrize("owner", ["alice", "alice.smith", "a", "bob-1", "x_y"])
def test_valid_label_values_are_kept(owner):
    assert owner_label_value(owner) == owner


@pytest.mark.parametrize(
    "owner",
    [
        "system:serviceaccount:team-a:default-editor",
        "alice@example.com",
        "Ünïcödé-user",
        "用户",
        "-leading-dash",
        "trailing.dot.",
        "a" * 64,
        "x" * 300 + "@corp",
        "",
        "   ",
        "user/with/slashes",
    ],
)
def test_every_owner_becomes_a_valid_label_value(owner):
    value = owner_label_value(owner)
    assert is_label_value(value), value
    assert value  # an empty label would select nothing useful
    assert len(value) <= 63


def test_changed_values_carry_a_hash_suffix_and_keep_a_readable_body():
    value = owner_label_value("alice@example.com")
    body, _, digest = value.rpartition("-")
    assert body == "alice_example.com"
    assert len(digest) == 8


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("alice@corp", "alice:corp"),
        ("alice@corp", "alice_corp"),
        ("a" * 70 + "1", "a" * 70 + "2"),
        ("用户", "用戶"),
    ],
)
def test_distinct_owners_that_sanitise_alike_get_distinct_labels(a, b):
    assert owner_label_value(a) != owner_label_value(b)


def test_sanitising_is_deterministic():
    owner = "system:serviceaccount:ns:default-editor"
    assert owner_label_value(owner) == owner_label_value(owner)
