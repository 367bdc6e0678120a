from __future__ import annotations

import math
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tsf_adapter.core.errors import DecodeError
from tsf_adapter.core.series import STALE_NAN, STALE_NAN_BITS
from tsf_adapter.remote.xor import MAX_SAMPLES, decode_xor_chunk, encode_xor_chunk

# A chunk streamed by Prometheus 2.42 for 9 samples written through remote-write:
# equal values, -0.0, ±Inf, the smallest subnormal, a huge value, the staleness
# marker, 1 ms steps and a 10-minute gap (a 64-bit delta-of-delta).
PROMETHEUS_CHUNK = bytes.fromhex(
    "0009a09d808dc4683ff0000000000000987530197ffb8ad37ffe1d4b5001b92a3800fff0000000000001f00000"
    "000000923d89ffbf73c562b6ee63fffffffffffdb611e001fdcf158adbb9bcd2e28fed50000000000080"
)
T0 = 1795846834000
PROMETHEUS_TS = [T0 + d for d in (0, 15000, 30000, 30001, 45000, 46000, 646000, 646007, 700000)]
PROMETHEUS_VS = [1.0, 1.0, -0.0, math.inf, -math.inf, 5e-324, 1.79e308, STALE_NAN, 42.5]


def _bits(values: np.ndarray | list[float]) -> list[int]:
    bits: list[int] = np.asarray(values, dtype=np.float64).view(np.uint64).tolist()
    return bits


def _from_bits(bits: list[int]) -> np.ndarray:
    return np.array(bits, dtype=np.uint64).view(np.float64)


def _assert_round_trip(timestamps: list[int], values: np.ndarray | list[float]) -> bytes:
    chunk = encode_xor_chunk(timestamps, values)
    ts, vs = decode_xor_chunk(chunk)
    assert ts.dtype == np.int64 and vs.dtype == np.float64
    assert ts.tolist() == list(timestamps)
    assert _bits(vs) == _bits(values)
    return chunk


def test_decodes_a_chunk_written_by_prometheus() -> None:
    ts, vs = decode_xor_chunk(PROMETHEUS_CHUNK)
    assert ts.tolist() == PROMETHEUS_TS
    assert _bits(vs) == _bits(PROMETHEUS_VS)
    assert vs.view(np.uint64)[7] == STALE_NAN_BITS


def test_encodes_byte_for_byte_like_prometheus() -> None:
    assert encode_xor_chunk(PROMETHEUS_TS, PROMETHEUS_VS) == PROMETHEUS_CHUNK


def test_empty_and_single_sample_chunks() -> None:
    ts, vs = decode_xor_chunk(encode_xor_chunk([], []))
    assert ts.size == 0 and vs.size == 0
    # Prometheus's stream allocates a byte after whole-byte writes: 2 + 1 + 8 + 1 bytes.
    assert encode_xor_chunk([0], [0.0]) == bytes.fromhex("0001" + "00" + "00" * 8 + "00")
    _assert_round_trip([-1], [-0.0])
    _assert_round_trip([2**63 - 1], [math.nan])
    _assert_round_trip([-(2**63)], [STALE_NAN])


# Narrow buckets hold [-(2^(n-1) - 1), 2^(n-1)]: the edges decide between two sizes.
@pytest.mark.parametrize(
    ("dod", "payload_bits"),
    [
        (0, 1),
        (1, 2 + 14),
        (-(2**13 - 1), 2 + 14),
        (2**13, 2 + 14),
        (-(2**13), 3 + 17),
        (2**13 + 1, 3 + 17),
        (2**16, 3 + 17),
        (-(2**16), 4 + 20),
        (2**19, 4 + 20),
        (2**19 + 1, 4 + 64),
        (-(2**19), 4 + 64),
        (2**40, 4 + 64),
        (-(2**40) + 1, 4 + 64),
    ],
)
def test_delta_of_delta_buckets(dod: int, payload_bits: int) -> None:
    first_delta = 2**41
    timestamps = [0, first_delta, 2 * first_delta + dod]
    chunk = _assert_round_trip(timestamps, [1.0, 1.0, 1.0])
    # header + varint(0) + raw value + uvarint(2^41) + unchanged value + dod + unchanged value
    bits = 16 + 8 + 64 + 48 + 1 + payload_bits + 1
    assert len(chunk) == math.ceil(bits / 8)


def test_value_windows_reused_and_renewed() -> None:
    values = [1.0, 1.5, 1.25, 1e300, -1e-300, 1e-300, 2.0, 2.0, -2.0]
    _assert_round_trip(list(range(0, 9000, 1000)), values)


def test_xor_with_64_significant_bits() -> None:
    """XOR 0x8000000000000001 has no leading or trailing zeros: sig-bits field 0 means 64."""
    _assert_round_trip([0, 1, 2], _from_bits([0, 0x8000000000000001, 0]))


_SPECIAL_BITS = _bits([math.inf, -math.inf, -0.0, 0.0, math.nan, STALE_NAN, 5e-324, 1.79e308, -5e-324])

_value_bits = st.one_of(
    st.sampled_from(_SPECIAL_BITS),
    st.integers(0, 2**64 - 1),  # any bit pattern, NaN payloads included
    st.sampled_from(_bits([1.0, 1.5, 2.0, 100.0])),  # repeats exercise "unchanged" and window reuse
)
_steps = st.one_of(st.integers(1, 3), st.integers(1, 60_000), st.integers(1, 2**48))


@settings(max_examples=300, deadline=None)
@given(
    start=st.integers(-(2**61), 2**61),
    steps=st.lists(_steps, max_size=300),
    data=st.data(),
)
def test_round_trip_small_chunks(start: int, steps: list[int], data: st.DataObject) -> None:
    timestamps = [start]
    for step in steps:
        timestamps.append(timestamps[-1] + step)
    bits = data.draw(st.lists(_value_bits, min_size=len(timestamps), max_size=len(timestamps)))
    _assert_round_trip(timestamps, _from_bits(bits))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(n=10_000, seed=1, regular=True, special_share=0.01)
@example(n=10_000, seed=2, regular=False, special_share=0.3)
@given(
    n=st.integers(1, 10_000),
    seed=st.integers(0, 2**32 - 1),
    regular=st.booleans(),
    special_share=st.floats(0.0, 0.5),
)
def test_round_trip_large_chunks(n: int, seed: int, regular: bool, special_share: float) -> None:
    """Up to 10,000 samples, built with numpy from a drawn seed (drawing 10k list items is slow)."""
    rng = np.random.default_rng(seed)
    if regular:
        steps = np.where(rng.random(n - 1) < 0.05, rng.integers(1, 5, n - 1), 15_000)
    else:
        steps = rng.choice([1, 2, 999, 1000, 1001, 30_000, 2**20, 2**35], size=n - 1)
    timestamps = (1_700_000_000_000 + np.concatenate([[0], np.cumsum(steps)])).tolist()
    values = np.round(np.cumsum(rng.normal(0, 1, n)), 2)
    specials = rng.random(n) < special_share
    values[specials] = _from_bits(rng.choice(_SPECIAL_BITS, size=int(specials.sum())).tolist())
    _assert_round_trip(timestamps, values)


def _pack(bits: str) -> bytes:
    """'0101 ...' (spaces ignored) to bytes, zero-padded at the end."""
    bits = bits.replace(" ", "")
    bits += "0" * (-len(bits) % 8)
    return int(bits, 2).to_bytes(len(bits) // 8, "big") if bits else b""


_ZERO_VALUE = "0" * 64
_GARBAGE: dict[str, tuple[bytes, str]] = {
    "empty": (b"", "shorter than its 2-byte header"),
    "half header": (b"\x00", "shorter than its 2-byte header"),
    "count without samples": (b"\x00\x01", "truncated in sample 0"),
    "second sample missing": (_pack("0000000000000010 00000000" + _ZERO_VALUE), "truncated in sample 1 of 2"),
    "varint longer than 10 bytes": (b"\x00\x01" + b"\xff" * 11 + bytes(8), "longer than 10 bytes"),
    "varint overflows 64 bits": (b"\x00\x01" + b"\xff" * 9 + b"\x7f" + bytes(8), "overflows 64 bits"),
    "leading + significant > 64": (
        _pack("0000000000000010 00000000" + _ZERO_VALUE + "00000001" + "11 11111 111111" + "1" * 63),
        "31 leading \\+ 63 significant",
    ),
    "timestamp leaves int64": (
        _pack(
            "0000000000000010"
            + "11111110"
            + "11111111" * 8
            + "00000001"
            + _ZERO_VALUE
            # t0 = 2^63 - 1 (zig-zag), then a delta of 2^62
            + "10000000" * 8
            + "01000000"
            + "0"
        ),
        "outside int64",
    ),
    "64-bit dod cut short": (
        _pack("0000000000000011 00000000" + _ZERO_VALUE + "00000001 0" + "1111" + "1" * 10),
        "truncated in sample 2 of 3",
    ),
}


@pytest.mark.parametrize(("data", "message"), list(_GARBAGE.values()), ids=list(_GARBAGE))
def test_garbage_raises_decode_error(data: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        decode_xor_chunk(data)


def test_every_truncation_raises_decode_error() -> None:
    chunk = encode_xor_chunk(PROMETHEUS_TS, PROMETHEUS_VS)
    for cut in range(len(chunk)):
        with pytest.raises(DecodeError):
            decode_xor_chunk(chunk[:cut])


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    try:
        ts, vs = decode_xor_chunk(data)
    except DecodeError:
        return
    assert ts.shape == vs.shape == ((data[0] << 8) | data[1],)


def test_a_huge_sample_count_on_a_short_buffer_fails_fast() -> None:
    with pytest.raises(DecodeError, match="truncated"):
        decode_xor_chunk(b"\xff\xff" + bytes(20))


@pytest.mark.parametrize(
    ("timestamps", "values", "message"),
    [
        ([1, 1], [0.0, 0.0], "strictly increasing"),
        ([2, 1], [0.0, 0.0], "strictly increasing"),
        ([1, 2], [0.0], "same length"),
        (list(range(MAX_SAMPLES + 1)), [0.0] * (MAX_SAMPLES + 1), "at most 65535"),
        ([-(2**63), 2**63 - 1], [0.0, 0.0], "fit in int64"),
    ],
)
def test_encoder_rejects_what_a_chunk_cannot_hold(
    timestamps: list[int], values: list[float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        encode_xor_chunk(timestamps, values)


def test_staleness_marker_survives_as_itself() -> None:
    _, vs = decode_xor_chunk(encode_xor_chunk([1, 2, 3], [math.nan, STALE_NAN, math.nan]))
    assert struct.pack(">d", vs[1]) == STALE_NAN_BITS.to_bytes(8, "big")
    assert vs.view(np.uint64).tolist() == [0x7FF8000000000000, STALE_NAN_BITS, 0x7FF8000000000000]
