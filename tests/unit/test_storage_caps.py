"""Artifact storage caps per group (hub_ext.experiments.storage): parsing, lookup, the check."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from hub_ext.experiments.storage import (
    ANY_GROUP,
    PRIVATE,
    Bucket,
    StorageCaps,
    bucket_of,
    check_upload,
    parse_storage_caps,
    storage_json,
)
from hub_ext.experiments.store.errors import STORAGE_QUOTA_EXCEEDED, TrackingError

K, G = 1024, 1024**3
LQCD = Bucket("lqcd")
ANN = Bucket(None, "ann")


# -- parse_storage_caps ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0),
        (1024, 1024),
        (2048.0, 2048),
        ("4096", 4096),
        ("4K", 4 * K),
        ("4k", 4 * K),
        ("1.5K", 1536),
        ("500G", 500 * G),
        ("2 GiB", 2 * G),
        ("3MB", 3 * 1024**2),
        ("1T", 1024**4),
        (None, None),
        ("", None),
        ("none", None),
        ("None", None),
        ("unlimited", None),
        ("  UNLIMITED ", None),
    ],
)
def test_good_values_parse_to_bytes_or_no_cap(value, expected):
    caps = parse_storage_caps({"lqcd": value})
    assert caps.caps == {"lqcd": expected}
    assert caps.cap_of(LQCD) == expected


@pytest.mark.parametrize(
    "value",
    [
        "lots",
        "5X",
        "-5G",
        "G",
        "1 2",
        -1,
        -0.5,
        float("nan"),
        float("inf"),
        True,
        False,
        [1024],
        {"size": 1024},
    ],
    ids=repr,
)
@pytest.mark.parametrize("key", ["lqcd", ANY_GROUP, PRIVATE])
def test_bad_values_name_the_key_and_the_fix(key, value):
    with pytest.raises(ValueError) as err:
        parse_storage_caps({"nuclear": "1G", key: value})
    message = str(err.value)
    assert f"artifact_quota[{key!r}]" in message
    assert "null for no cap" in message  # the fix: a size, or no cap
    assert "'512M'" in message or "bytes" in message


@pytest.mark.parametrize("key", ["", "   ", 1, None, ("lqcd",)], ids=repr)
def test_bad_keys_are_refused_with_what_a_key_may_be(key):
    with pytest.raises(ValueError) as err:
        parse_storage_caps({key: "1G"})
    message = str(err.value)
    assert repr(key) in message
    assert "group name" in message and "'*'" in message and "'~'" in message


@pytest.mark.parametrize("raw", [["lqcd"], "500G", 5, ("lqcd", "1G")], ids=repr)
def test_a_value_that_is_not_a_mapping_is_refused(raw):
    with pytest.raises(ValueError, match="must map group names to sizes"):
        parse_storage_caps(raw)


@pytest.mark.parametrize("raw", [None, {}])
def test_no_setting_means_no_cap(raw):
    caps = parse_storage_caps(raw)
    assert caps == StorageCaps() and caps.caps == {}
    assert not caps.enabled
    assert caps.cap_of(LQCD) is None and caps.cap_of(ANN) is None


def test_parsing_keeps_every_key_and_does_not_change_the_input():
    raw = {"lqcd": "2K", "*": 1024, "~": None}
    caps = parse_storage_caps(raw)
    assert caps.caps == {"lqcd": 2048, "*": 1024, "~": None}
    assert raw == {"lqcd": "2K", "*": 1024, "~": None}


# -- cap_of and enabled --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "lqcd", "nuclear", "private"),
    [
        ({}, None, None, None),
        ({"lqcd": "2K"}, 2 * K, None, None),
        ({"lqcd": "2K", "*": "1K"}, 2 * K, 1 * K, 1 * K),  # "~" falls back to "*"
        ({"*": "1K", "~": "3K"}, 1 * K, 1 * K, 3 * K),
        ({"~": "3K"}, None, None, 3 * K),  # "~" caps private projects only
        ({"lqcd": None, "*": "1K"}, None, 1 * K, 1 * K),  # listed as no cap: no fallback
        ({"~": None, "*": "1K"}, 1 * K, 1 * K, None),  # private listed as no cap
        ({"lqcd": 0, "*": "unlimited"}, 0, None, None),
    ],
)
def test_cap_of_a_bucket_and_its_fallbacks(raw, lqcd, nuclear, private):
    caps = parse_storage_caps(raw)
    assert caps.cap_of(Bucket("lqcd")) == lqcd
    assert caps.cap_of(Bucket("nuclear")) == nuclear
    assert caps.cap_of(Bucket(None, "ann")) == private
    assert caps.cap_of(Bucket(None, "bob")) == private  # the same cap for each user


@pytest.mark.parametrize(
    ("raw", "enabled"),
    [
        ({}, False),
        ({"lqcd": None}, False),
        ({"lqcd": None, "*": "none", "~": ""}, False),
        ({"lqcd": 0}, True),
        ({"*": "1K"}, True),
        ({"~": "1K"}, True),
        ({"lqcd": None, "nuclear": "1G"}, True),
    ],
)
def test_enabled_when_any_bucket_has_a_cap(raw, enabled):
    assert parse_storage_caps(raw).enabled is enabled


# -- buckets ---------------------------------------------------------------------------------------
def test_bucket_of_a_group_project_ignores_its_owner():
    assert bucket_of(SimpleNamespace(group="lqcd", owner="ann")) == Bucket("lqcd")
    assert bucket_of(SimpleNamespace(group="lqcd", owner="bob")) == Bucket("lqcd")


def test_bucket_of_a_private_project_is_its_owners():
    assert bucket_of(SimpleNamespace(group=None, owner="ann")) == Bucket(None, "ann")
    assert bucket_of(SimpleNamespace(group=None, owner="ann")) != Bucket(None, "bob")


@pytest.mark.parametrize(
    ("bucket", "label", "key"),
    [
        (Bucket("lqcd"), "group 'lqcd'", "lqcd"),
        (Bucket(None, "ann"), "ann's private projects", PRIVATE),
    ],
)
def test_bucket_label_and_quota_key(bucket, label, key):
    assert bucket.label == label
    assert bucket.quota_key == key


# -- storage_json ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("bucket", "used", "cap", "expected"),
    [
        (
            Bucket("lqcd"), 100, 1000,
            {"group": "lqcd", "used_bytes": 100, "cap_bytes": 1000, "free_bytes": 900},
        ),
        (
            Bucket("lqcd"), 1000, 1000,
            {"group": "lqcd", "used_bytes": 1000, "cap_bytes": 1000, "free_bytes": 0},
        ),
        (  # over a cap that was lowered: never negative
            Bucket("lqcd"), 1500, 1000,
            {"group": "lqcd", "used_bytes": 1500, "cap_bytes": 1000, "free_bytes": 0},
        ),
        (
            Bucket("lqcd"), 5, None,
            {"group": "lqcd", "used_bytes": 5, "cap_bytes": None, "free_bytes": None},
        ),
        (
            Bucket(None, "ann"), 10, 64,
            {"group": None, "owner": "ann", "used_bytes": 10, "cap_bytes": 64, "free_bytes": 54},
        ),
    ],
)  # fmt: skip
def test_storage_json(bucket, used, cap, expected):
    assert storage_json(bucket, used, cap) == expected


# -- check_upload ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("cap", "used", "adding"),
    [
        (100, 60, 40),  # exactly at the cap
        (100, 0, 100),
        (100, 0, 0),
        (100, 100, 0),  # full, adding nothing
        (100, 150, 0),  # over a lowered cap, adding nothing
        (0, 0, 0),
        (None, 10**15, 10**15),  # no cap
    ],
)
def test_uploads_within_the_cap_pass(cap, used, adding):
    assert check_upload(LQCD, cap, used, adding) is None


@pytest.mark.parametrize(
    ("cap", "used", "adding"),
    [
        (100, 60, 41),  # one byte over
        (100, 0, 101),
        (100, 100, 1),
        (100, 150, 1),
        (0, 0, 1),
    ],
)
def test_uploads_past_the_cap_are_refused_with_413(cap, used, adding):
    with pytest.raises(TrackingError) as err:
        check_upload(LQCD, cap, used, adding)
    assert err.value.code == STORAGE_QUOTA_EXCEEDED
    assert err.value.http_status == 413


@pytest.mark.parametrize(
    ("bucket", "who", "key"),
    [
        (Bucket("lqcd"), "group 'lqcd'", "artifact_quota['lqcd']"),
        (Bucket(None, "ann"), "ann's private projects", "artifact_quota['~']"),
    ],
)
def test_the_refusal_names_the_bucket_its_use_its_cap_and_the_setting(bucket, who, key):
    with pytest.raises(TrackingError) as err:
        check_upload(bucket, 2 * K, 1500, 600)
    message = err.value.message
    assert who in message
    assert "2K" in message and "2048 bytes" in message  # the cap
    assert "1500 bytes are in use" in message
    assert "600 bytes" in message
    assert key in message
    assert "DELETE" in message  # what the user can do
