from __future__ import annotations

import pickle
import re

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from tsf_adapter.core.units import (
    MAX_DURATION_MS,
    Duration,
    format_duration,
    format_size,
    parse_duration,
    parse_size,
)

DAY = 86400.0


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0),
        ("0s", 0.0),
        ("100ms", 0.1),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("90m", 5400.0),  # not canonical, but valid, as in Prometheus
        ("1d", DAY),
        ("1w", 7 * DAY),
        ("1y", 365 * DAY),
        ("1y2w3d4h5m6s7ms", 365 * DAY + 14 * DAY + 3 * DAY + 4 * 3600 + 5 * 60 + 6 + 0.007),
        ("1h30m100ms", 5400.1),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1.5h", "'1.5h': fractions are not allowed, use a smaller unit (e.g. 90m for 1.5h)"),
        ("h", "'h': missing number before unit 'h'"),
        ("-5m", "'-5m': a duration cannot have a sign"),
        ("+5m", "'+5m': a duration cannot have a sign"),
        ("5", "'5': missing unit after 5 (one of y, w, d, h, m, s, ms)"),
        ("00", "'00': missing unit after 00 (one of y, w, d, h, m, s, ms)"),
        ("", 'empty duration (write e.g. "30s" or "0")'),
        ("5x", "'5x': unknown unit 'x' (expected one of y, w, d, h, m, s, ms)"),
        ("5M", "'5M': unknown unit 'M' (expected one of y, w, d, h, m, s, ms)"),
        ("1m1h", "'1m1h': unit 'h' repeated or out of order (units go from y down to ms, once each)"),
        ("1h1h", "'1h1h': unit 'h' repeated or out of order (units go from y down to ms, once each)"),
        (" 5m", "' 5m': unexpected ' '"),
        ("5m ", "'5m ': unexpected ' '"),
        ("300y", "'300y': duration out of range (at most about 292y)"),
    ],
)
def test_parse_duration_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "0s"),
        (0.1, "100ms"),
        (61.0, "1m1s"),
        (5400.0, "1h30m"),
        (5400.1, "1h30m100ms"),
        (DAY, "1d"),
        (7 * DAY, "1w"),
        (8 * DAY, "8d"),  # weeks only when exact: 8d, not 1w1d
        (90 * DAY, "90d"),
        (365 * DAY, "1y"),
        (366 * DAY, "366d"),
        (2 * 365 * DAY + 3600, "730d1h"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("seconds", [-1.0, float("nan"), float("inf"), 0.0001, (MAX_DURATION_MS + 1) / 1000])
def test_format_duration_rejects(seconds: float) -> None:
    with pytest.raises(ValueError, match="cannot format"):
        format_duration(seconds)


@given(st.integers(min_value=0, max_value=MAX_DURATION_MS))
def test_duration_round_trips_through_text(ms: int) -> None:
    seconds = ms / 1000
    text = format_duration(seconds)
    assert parse_duration(text) == seconds
    assert re.fullmatch(r"(?:[1-9][0-9]*(?:y|w|d|h|ms|m|s))+|0s", text)


_UNITS = ("y", "w", "d", "h", "m", "s", "ms")
_MS = (365 * 86_400_000, 7 * 86_400_000, 86_400_000, 3_600_000, 60_000, 1000, 1)


@given(st.lists(st.one_of(st.none(), st.integers(0, 1000)), min_size=7, max_size=7))
def test_any_valid_spelling_parses_to_its_sum_and_formats_canonically(counts: list[int | None]) -> None:
    parts = [(n, unit, ms) for n, unit, ms in zip(counts, _UNITS, _MS, strict=True) if n is not None]
    text = "".join(f"{n}{unit}" for n, unit, _ in parts) or "0"
    total_ms = sum(n * ms for n, _, ms in parts)
    assume(total_ms <= MAX_DURATION_MS)
    seconds = total_ms / 1000
    assert parse_duration(text) == seconds
    canonical = format_duration(seconds)
    assert parse_duration(canonical) == seconds
    assert format_duration(parse_duration(canonical)) == canonical


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("0", 0),
        ("1024", 1024),
        ("1024B", 1024),
        ("512KiB", 512 * 1024),
        ("512KB", 512 * 1024),  # Prometheus's units: KB is 1024 bytes too
        ("16MiB", 16 * 1024**2),
        ("16MB", 16 * 1024**2),
        ("1GB", 1024**3),
        ("2TiB", 2 * 1024**4),
        ("1PB", 1024**5),
        ("1EiB", 1024**6),
    ],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("16mb", "'16mb': unknown unit 'mb' (expected one of B, KB, MB, GB, TB, PB, EB, KiB, MiB, GiB, TiB"),
        ("1.5GiB", "'1.5GiB': fractions are not allowed, use a smaller unit (e.g. 1536KiB)"),
        ("-1MiB", "'-1MiB': a size cannot have a sign"),
        ("MiB", "'MiB': expected an integer and an optional unit, e.g. 16MiB"),
        ("16 MiB", "'16 MiB': expected an integer and an optional unit, e.g. 16MiB"),
        ("", "'': expected an integer and an optional unit, e.g. 16MiB"),
    ],
)
def test_parse_size_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}"):
        parse_size(text)


@pytest.mark.parametrize(
    ("size", "text"), [(0, "0B"), (1000, "1000B"), (1024, "1KiB"), (1536, "1536B"), (16 * 1024**2, "16MiB")]
)
def test_format_size(size: int, text: str) -> None:
    assert format_size(size) == text


@given(st.integers(min_value=0, max_value=2**70))
def test_size_round_trips_through_text(size: int) -> None:
    assert parse_size(format_size(size)) == size


def test_format_size_rejects_negative() -> None:
    with pytest.raises(ValueError, match="must be >= 0"):
        format_size(-1)


def test_a_duration_keeps_its_spelling_through_copies_and_sets() -> None:
    written = Duration.parse("24h")
    again = pickle.loads(pickle.dumps(written))
    assert (again, again.text, type(again)) == (86400.0, "24h", Duration)
    # Equal as seconds to a float, and hashed as one, so it can key what floats key.
    assert {86400.0: "day"}[written] == "day" and hash(written) == hash(86400.0)
    # A respelt duration is a different setting (a reload must see it), the same seconds.
    assert written != Duration.parse("1d") and float(written) == float(Duration.parse("1d"))
    assert Duration(90.0).text == "1m30s"


@given(st.integers(min_value=0, max_value=10**12))
def test_a_duration_from_seconds_spells_itself_canonically(ms: int) -> None:
    seconds = ms / 1000
    assert Duration(seconds).text == format_duration(seconds)
    assert Duration.parse(Duration(seconds).text) == Duration(seconds)
