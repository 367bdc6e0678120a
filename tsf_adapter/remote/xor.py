"""Prometheus's XOR chunk encoding (Gorilla-style), decoded and encoded bit-exactly.

Remote-read ``STREAMED_XOR_CHUNKS`` answers carry the TSDB's chunks as stored,
which is about ten times smaller than ``SAMPLES`` and has no sample limit, so
backfilling days of history goes through here. The layout:

* 2 bytes: big-endian uint16 sample count; then one MSB-first bitstream.
* sample 0: zig-zag varint timestamp, then the 64 raw bits of the value.
* sample 1: uvarint of ``t1 - t0``, then the value as an XOR (below).
* sample 2+: delta-of-delta of the timestamps: ``0`` (same delta),
  ``10``+14 bits, ``110``+17, ``1110``+20 or ``1111``+64. An n-bit field holds
  ``[-(2^(n-1) - 1), 2^(n-1)]``, which is why decoding subtracts ``2^n`` only
  when the field is *greater than* ``2^(n-1)``.
* values XOR the previous value's bits: ``0`` unchanged; ``10`` reuse the
  previous leading/trailing window; ``11`` + 5 bits leading zeros + 6 bits
  significant bits (0 means 64) + the bits themselves.

Varints inside the bitstream are written byte by byte but are not byte-aligned.

Decoding is the hot path (days of history for many series) and is pure
Python, so it avoids a bit-reader object and per-field method calls: it lifts
a 512-bit window out of the buffer as one integer, takes every field of a
sample from it with shifts and masks, and lifts the next window only when
fewer bits remain than the widest possible sample (157). That measured about
2.4x faster than re-reading per sample (~1 M samples/s on one core here).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from tsf_adapter.core.errors import DecodeError

MAX_SAMPLES = 0xFFFF
"""The 2-byte header caps a chunk at 65,535 samples (Prometheus cuts at 120)."""

_WINDOW_BYTES = 64
# Widest encoded sample: sample 1's 10-byte uvarint plus a value with a new window.
_SAMPLE_MAX_BITS = 80 + 2 + 5 + 6 + 64
_WINDOW_BITS = 8 * _WINDOW_BYTES
_PAD = bytes(_WINDOW_BYTES)
_U64 = (1 << 64) - 1
# Delta-of-delta buckets: (prefix, prefix length, payload bits), smallest first.
_DOD_BUCKETS = ((0b10, 2, 14), (0b110, 3, 17), (0b1110, 4, 20))


def decode_xor_chunk(data: bytes) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Decode one XOR chunk into (int64 ms timestamps, float64 values), bits preserved.

    >>> ts, vs = decode_xor_chunk(encode_xor_chunk([1000, 2000], [1.0, -0.0]))
    >>> ts.tolist(), vs.tolist()
    ([1000, 2000], [1.0, -0.0])

    Raises ``DecodeError`` for truncated or malformed chunks; never reads past the end.
    """
    size = len(data)
    if size < 2:
        raise DecodeError(f"xor chunk: {size} bytes, shorter than its 2-byte header")
    count = (data[0] << 8) | data[1]
    if count == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
    # Zero padding lets every window slice be full-width; running into it is
    # caught by comparing the bit position with the real length after each sample.
    buf = bytes(data) + _PAD
    limit = 8 * size
    ts: list[int] = [0] * count
    vs: list[int] = [0] * count

    # Sample 0: zig-zag varint timestamp + raw value bits.
    w = int.from_bytes(buf[2 : 2 + _WINDOW_BYTES], "big")
    avail = _WINDOW_BITS
    ux, avail = _read_varint(w, avail)
    t = (ux >> 1) ^ -(ux & 1)
    avail -= 64
    v = (w >> avail) & _U64
    ts[0] = t
    vs[0] = v
    pos = 16 + _WINDOW_BITS - avail
    if pos > limit:
        raise DecodeError("xor chunk: truncated in sample 0")

    delta = 0
    leading = 0
    trailing = 0
    base = 16
    for i in range(1, count):
        if avail < _SAMPLE_MAX_BITS:
            base = pos & ~7
            w = int.from_bytes(buf[base >> 3 : (base >> 3) + _WINDOW_BYTES], "big")
            avail = _WINDOW_BITS - (pos & 7)
        if i == 1:
            delta, avail = _read_varint(w, avail)
        else:
            prefix = (w >> (avail - 4)) & 0xF
            if prefix < 0b1000:  # 0: same delta as before
                avail -= 1
            else:
                if prefix < 0b1100:
                    avail -= 2
                    nbits = 14
                elif prefix < 0b1110:
                    avail -= 3
                    nbits = 17
                elif prefix == 0b1110:
                    avail -= 4
                    nbits = 20
                else:
                    avail -= 4
                    nbits = 64
                avail -= nbits
                dod = (w >> avail) & ((1 << nbits) - 1)
                # 64-bit fields are plain two's complement; the narrow ones hold
                # [-(2^(n-1) - 1), 2^(n-1)], so exactly 2^(n-1) stays positive.
                if dod > (1 << (nbits - 1)) or (nbits == 64 and dod == 1 << 63):
                    dod -= 1 << nbits
                delta += dod
        t += delta

        control = (w >> (avail - 2)) & 0b11
        if control < 0b10:  # 0: value unchanged
            avail -= 1
        else:
            if control == 0b11:
                avail -= 13
                leading = (w >> (avail + 6)) & 0x1F
                sig = (w >> avail) & 0x3F or 64
                trailing = 64 - leading - sig
                if trailing < 0:
                    raise DecodeError(
                        f"xor chunk: sample {i}: {leading} leading + {sig} significant bits > 64"
                    )
            else:
                avail -= 2
                sig = 64 - leading - trailing
            avail -= sig
            v ^= ((w >> avail) & ((1 << sig) - 1)) << trailing
        ts[i] = t
        vs[i] = v
        pos = base + _WINDOW_BITS - avail
        if pos > limit:
            raise DecodeError(f"xor chunk: truncated in sample {i} of {count}")

    try:
        timestamps = np.array(ts, dtype=np.int64)
    except OverflowError:
        raise DecodeError("xor chunk: timestamp outside int64") from None
    return timestamps, np.array(vs, dtype=np.uint64).view(np.float64)


def _read_varint(w: int, avail: int) -> tuple[int, int]:
    """Read a little-endian base-128 varint (at most 10 bytes) from the top of a window."""
    value = 0
    shift = 0
    for _ in range(10):
        avail -= 8
        byte = (w >> avail) & 0xFF
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            if value > _U64:
                raise DecodeError("xor chunk: varint overflows 64 bits")
            return value, avail
        shift += 7
    raise DecodeError("xor chunk: varint longer than 10 bytes")


class _BitWriter:
    """MSB-first bit sink that flushes whole bytes, so the pending int stays small.

    It reproduces one quirk of Prometheus's bit stream so that our chunks equal
    theirs byte for byte: a write of whole bytes (8, 16, ... bits) always
    allocates the next byte, so a stream that ends byte-aligned right after such
    a write carries one extra zero byte. Decoders never read it.
    """

    __slots__ = ("_acc", "_ends_with_bytes", "_nbits", "out")

    def __init__(self) -> None:
        self.out = bytearray()
        self._acc = 0
        self._nbits = 0
        self._ends_with_bytes = False

    def write(self, value: int, nbits: int) -> None:
        self._acc = (self._acc << nbits) | (value & ((1 << nbits) - 1))
        self._nbits += nbits
        self._ends_with_bytes = nbits % 8 == 0
        if self._nbits >= 64:
            rest = self._nbits & 7
            self.out += (self._acc >> rest).to_bytes(self._nbits >> 3, "big")
            self._acc &= (1 << rest) - 1
            self._nbits = rest

    def write_varint_bytes(self, value: int) -> None:
        while value >= 0x80:
            self.write((value & 0x7F) | 0x80, 8)
            value >>= 7
        self.write(value, 8)

    def finish(self) -> bytes:
        pad = -self._nbits % 8
        tail = (self._acc << pad).to_bytes((self._nbits + pad) >> 3, "big")
        extra = b"\x00" if self._ends_with_bytes and pad == 0 else b""
        return bytes(self.out + tail + extra)


def encode_xor_chunk(timestamps: npt.ArrayLike, values: npt.ArrayLike) -> bytes:
    """Encode samples as one XOR chunk, byte for byte as Prometheus's TSDB would.

    Timestamps must be strictly increasing int64 milliseconds; values keep their bits
    (NaN payloads, the staleness marker, -0.0).

    >>> encode_xor_chunk([0], [0.0]).hex()
    '000100000000000000000000'
    """
    ts = np.asarray(timestamps, dtype=np.int64)
    bits = np.asarray(values, dtype=np.float64).view(np.uint64)
    if ts.shape != bits.shape or ts.ndim != 1:
        raise ValueError("timestamps and values must be 1-d arrays of the same length")
    count = int(ts.shape[0])
    if count > MAX_SAMPLES:
        raise ValueError(f"an XOR chunk holds at most {MAX_SAMPLES} samples (got {count})")
    if count > 1:
        steps = np.diff(ts.astype(object))
        if min(steps) <= 0:
            raise ValueError("timestamps must be strictly increasing")
        if max(steps) >= 1 << 63:
            raise ValueError("timestamp steps must fit in int64")

    out = _BitWriter()
    out.write(count, 16)
    prev_t = 0
    prev_delta = 0
    prev_v = 0
    leading = -1  # no window yet: the first changed value always sends one
    trailing = 0
    for i, (t, v) in enumerate(zip(ts.tolist(), bits.tolist(), strict=True)):
        if i == 0:
            out.write_varint_bytes(((t << 1) ^ (t >> 63)) & _U64)
            out.write(v, 64)
        else:
            delta = t - prev_t
            if i == 1:
                out.write_varint_bytes(delta)
            else:
                _write_dod(out, delta - prev_delta)
            prev_delta = delta
            leading, trailing = _write_value(out, v ^ prev_v, leading, trailing)
        prev_t = t
        prev_v = v
    return out.finish()


def _write_dod(out: _BitWriter, dod: int) -> None:
    if dod == 0:
        out.write(0, 1)
        return
    for prefix, prefix_bits, nbits in _DOD_BUCKETS:
        if -((1 << (nbits - 1)) - 1) <= dod <= 1 << (nbits - 1):
            out.write(prefix, prefix_bits)
            out.write(dod, nbits)
            return
    out.write(0b1111, 4)
    out.write(dod, 64)


def _write_value(out: _BitWriter, xor: int, leading: int, trailing: int) -> tuple[int, int]:
    """Write one XOR'd value; returns the (leading, trailing) window now in force."""
    if xor == 0:
        out.write(0, 1)
        return leading, trailing
    new_leading = min(64 - xor.bit_length(), 31)  # 5 bits hold at most 31
    new_trailing = (xor & -xor).bit_length() - 1
    if leading >= 0 and new_leading >= leading and new_trailing >= trailing:
        out.write(0b10, 2)
        out.write(xor >> trailing, 64 - leading - trailing)
        return leading, trailing
    sig = 64 - new_leading - new_trailing
    out.write(0b11, 2)
    out.write(new_leading, 5)
    out.write(sig & 0x3F, 6)  # 64 does not fit in 6 bits and is sent as 0
    out.write(xor >> new_trailing, sig)
    return new_leading, new_trailing
