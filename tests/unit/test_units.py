"""Parsing and formatting of memory sizes and CPU amounts."""

import math

import pytest

from latticehub.units import format_bytes, format_cpu, parse_bytes, parse_cpu

K, M, G, T, P = (1024**i for i in range(1, 6))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0),
        (1, 1),
        (123456, 123456),
        (1.9, 1),
        (2048.0, 2048),
        ("0", 0),
        ("100", 100),
        ("512M", 512 * M),
        ("8G", 8 * G),
        ("1.5K", 1536),
        ("0.5G", 512 * M),
        ("2T", 2 * T),
        ("1P", P),
        ("8Gi", 8 * G),
        ("8GB", 8 * G),
        ("8GiB", 8 * G),
        ("8gib", 8 * G),
        ("8g", 8 * G),
        ("512m", 512 * M),
        ("1k", K),
        ("  8G  ", 8 * G),
        ("8 G", 8 * G),
        ("\t1.5K\n", 1536),
    ],
)
def test_parse_bytes_accepts(value, expected):
    result = parse_bytes(value)
    assert result == expected
    assert type(result) is int


@pytest.mark.parametrize(
    "value",
    ["", "   ", "abc", "-1", "8X", "G", "1.2.3", "8 GG", "1e3", "0x10", "8M8"],
)
def test_parse_bytes_rejects_bad_strings(value):
    with pytest.raises(ValueError) as info:
        parse_bytes(value, name="mem_limit")
    message = str(info.value)
    assert message.startswith("mem_limit=")
    assert repr(value) in message
    assert "'512M'" in message and "'8G'" in message


@pytest.mark.parametrize("value", [True, False, None, [1], {"a": 1}, b"8G"])
def test_parse_bytes_rejects_non_sizes(value):
    with pytest.raises(ValueError) as info:
        parse_bytes(value, name="group_limits.mem")
    message = str(info.value)
    assert message.startswith("group_limits.mem=")
    assert "'8G'" in message


@pytest.mark.parametrize("value", [-1, -0.5, -(10**12), math.inf, -math.inf, math.nan])
def test_parse_bytes_rejects_negative_and_non_finite_numbers(value):
    with pytest.raises(ValueError) as info:
        parse_bytes(value, name="mem_limit")
    assert str(info.value).startswith(f"mem_limit={value!r}")
    assert "non-negative" in str(info.value)


@pytest.mark.parametrize("value", [-1, math.inf])
def test_parse_bytes_negative_number_message_gives_example(value):
    with pytest.raises(ValueError) as info:
        parse_bytes(value, name="mem_limit")
    assert "e.g." in str(info.value)


def test_parse_bytes_default_name_is_mem_limit():
    with pytest.raises(ValueError, match=r"^mem_limit='abc'"):
        parse_bytes("abc")


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (None, "unlimited"),
        (0, "0"),
        (1, "1"),
        (1023, "1023"),
        (K, "1K"),
        (1536, "1.5K"),
        (512 * M, "512M"),
        (8 * G, "8G"),
        (int(1.5 * G), "1.5G"),
        (int(2.25 * G), "2.25G"),
        (3 * T, "3T"),
        (P, "1024T"),
    ],
)
def test_format_bytes(n, expected):
    assert format_bytes(n) == expected


@pytest.mark.parametrize("text", ["1K", "1.5K", "512M", "8G", "1.5G", "2.25G", "3T"])
def test_format_bytes_round_trips_through_parse_bytes(text):
    assert format_bytes(parse_bytes(text)) == text


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (2, 2.0),
        (0.5, 0.5),
        (1, 1.0),
        ("1.5", 1.5),
        ("2", 2.0),
        (" 3 ", 3.0),
        ("500m", 0.5),
        ("1500m", 1.5),
        ("250 m", 0.25),
        ("1m", 0.001),
    ],
)
def test_parse_cpu_accepts(value, expected):
    result = parse_cpu(value)
    assert result == pytest.approx(expected)
    assert type(result) is float


@pytest.mark.parametrize(
    "value",
    [
        0,
        0.0,
        -1,
        -0.5,
        "0",
        "0m",
        "-1",
        "abc",
        "",
        "1.5x",
        "1.5M",
        "m",
        True,
        False,
        None,
        math.inf,
        math.nan,
        [2],
    ],
)
def test_parse_cpu_rejects(value):
    with pytest.raises(ValueError) as info:
        parse_cpu(value, name="cpu_limit")
    message = str(info.value)
    assert message.startswith(f"cpu_limit={value!r}")
    assert "e.g." in message


@pytest.mark.parametrize(
    ("cores", "expected"),
    [(None, "unlimited"), (2.0, "2"), (2, "2"), (0.5, "0.5"), (1.25, "1.25"), (16.0, "16")],
)
def test_format_cpu(cores, expected):
    assert format_cpu(cores) == expected
