"""Fuzzing the receiver over real HTTP: random and mutated bodies, headers and lengths.

Every answer must be the one the contract names (415, 413, 400, 204: never a
5xx, since nothing here overloads or stops the receiver), and the receiver must
keep serving. Requests go over a raw socket so the fuzzer controls every byte,
including a Content-Length that lies.

Two targets: the app in this process (a ``TestServer`` on a background loop,
fast, and its sink can be compared with the reference decoder) and
``python -m tsf_adapter receive`` as a subprocess with the real ``Store``.

The expected status comes from a small model: the content headers, the size
limits, then ``decompress`` for the snappy layer and the reference decoder
(``decode_write_request``) for the protobuf layer. The receiver parses lazily
(metadata, histograms and exemplars are counted, not decoded), so a request the
reference decoder rejects only for such a part may be accepted; one it accepts
must be stored exactly as it decodes.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.remote.test_ingest import RecordingSink, expected_rows, wire_series
from tests.test_cli import ReceiverProcess
from tsf_adapter._pb import types_pb2, write_v2_pb2
from tsf_adapter.config import Config, ServerConfig
from tsf_adapter.core.errors import DecodeError
from tsf_adapter.core.protocol import RW1_MESSAGE, RW2_MESSAGE
from tsf_adapter.core.selector import parse_selector
from tsf_adapter.core.series import SeriesSamples, make_labels
from tsf_adapter.remote.codec import (
    PayloadTooLarge,
    compress,
    decode_write_request,
    decompress,
    encode_write_request,
    parse_content_type,
)
from tsf_adapter.server.app import build_app

pytestmark = pytest.mark.integration

HANG_GUARD = 30.0  # seconds; only against a hang, never a speed assertion
MAX_COMPRESSED = 4096
MAX_DECOMPRESSED = 16384
SELECTOR = '{__name__=~"m|up"}'
LIMITS = ServerConfig(max_compressed_bytes=MAX_COMPRESSED, max_decompressed_bytes=MAX_DECOMPRESSED)


# --- raw HTTP ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int | None  # None: the server closed the connection without answering
    body: bytes


def exchange(port: int, headers: list[tuple[str, str]], body: bytes, declared: int) -> Answer:
    """One POST on its own connection.

    When ``declared`` promises more than ``body``, the write side is closed after
    sending (a sender that died mid-request), else the server would wait for the rest.
    """
    head = ["POST /api/v1/write HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    head += [f"{k}: {v}" for k, v in headers]
    head.append(f"Content-Length: {declared}")
    request = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
    with socket.create_connection(("127.0.0.1", port), timeout=HANG_GUARD) as sock:
        try:
            sock.sendall(request)
            if declared > len(body):
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # answered (413) and closed before taking the whole body: read the answer
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:
            pass
    data = b"".join(chunks)
    if not data:
        return Answer(None, b"")
    status_line, _, rest = data.partition(b"\r\n")
    _, _, payload = rest.partition(b"\r\n\r\n")
    return Answer(int(status_line.split(b" ")[1]), payload)


# --- what to send --------------------------------------------------------------------------------


@st.composite
def rw1_raw(draw: st.DrawFn) -> tuple[str, bytes]:
    """An uncompressed RW1 body, sometimes with metadata as Prometheus sends it."""
    raw = decompress(encode_write_request(draw(st.lists(wire_series(), max_size=6))), 1 << 20)
    for name in draw(st.lists(st.sampled_from(["m", "up"]), max_size=2)):
        meta = types_pb2.MetricMetadata(
            type=types_pb2.MetricMetadata.GAUGE, metric_family_name=name, help="h"
        )
        raw += b"\x1a" + bytes([meta.ByteSize()]) + meta.SerializeToString()
    return RW1_MESSAGE, raw


@st.composite
def rw2_raw(draw: st.DrawFn) -> tuple[str, bytes]:
    raw = decompress(
        encode_write_request(draw(st.lists(wire_series(), max_size=6)), message=RW2_MESSAGE), 1 << 20
    )
    if draw(st.booleans()):
        req = write_v2_pb2.Request()
        req.ParseFromString(raw)
        for ts in req.timeseries:
            ts.histograms.add(count_int=1, sum=2.0, timestamp=1)
        raw = req.SerializeToString()
    return RW2_MESSAGE, raw


def mutate(data: bytes, draw: st.DrawFn) -> bytes:
    """Flip, truncate, insert, delete or overwrite: small edits that keep most of the structure."""
    kind = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "overwrite"]))
    event(f"mutation: {kind}")
    if not data:
        return draw(st.binary(max_size=8))
    i = draw(st.integers(0, len(data) - 1))
    if kind == "flip":
        return data[:i] + bytes([data[i] ^ draw(st.integers(1, 255))]) + data[i + 1 :]
    if kind == "truncate":
        return data[:i]
    if kind == "insert":
        return data[:i] + draw(st.binary(min_size=1, max_size=8)) + data[i:]
    if kind == "delete":
        return data[:i] + data[i + draw(st.integers(1, 8)) :]
    return (
        data[:i] + bytes([draw(st.sampled_from([0x00, 0x08, 0x0A, 0x12, 0x7F, 0x80, 0xFF]))]) + data[i + 1 :]
    )


def uvarint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


@st.composite
def bodies(draw: st.DrawFn) -> tuple[str, bytes]:
    """(message the body was made for, body): valid, mutated before or after snappy, or noise."""
    message, raw = draw(st.one_of(rw1_raw(), rw2_raw()))
    shape = draw(
        st.sampled_from(
            ["valid", "mutated-raw", "mutated-snappy", "declared-length", "framed", "uncompressed", "noise"]
        )
    )
    event(f"body: {shape}")
    if shape == "valid":
        return message, compress(raw)
    if shape == "mutated-raw":
        return message, compress(mutate(raw, draw))
    if shape == "mutated-snappy":
        return message, mutate(compress(raw), draw)
    if shape == "declared-length":
        body = compress(raw)
        rest = body[len(uvarint(len(raw))) :]
        lie = draw(
            st.one_of(
                st.integers(0, 2 * len(raw) + 2),
                st.integers(MAX_DECOMPRESSED + 1, 2**32 - 1),
                st.integers(0, 2**64),
            )
        )
        return message, uvarint(lie) + rest
    if shape == "framed":
        return message, b"\xff\x06\x00\x00sNaPpY" + b"\x01" + uvarint(len(raw) + 4)[:3] + b"\0\0\0\0" + raw
    if shape == "uncompressed":
        return message, raw
    return message, draw(st.binary(max_size=MAX_COMPRESSED + 64))


printable = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)


@st.composite
def requests(draw: st.DrawFn) -> tuple[list[tuple[str, str]], bytes, int]:
    message, body = draw(bodies())
    headers = []
    right_type = "application/x-protobuf" + ("" if message == RW1_MESSAGE else f";proto={message}")
    ctype = draw(
        st.one_of(
            st.just(right_type),
            st.sampled_from(
                [
                    None,
                    "application/x-protobuf",
                    f"application/x-protobuf;proto={RW2_MESSAGE}",
                    "application/x-protobuf; proto=prometheus.WriteRequest",
                    "application/x-protobuf;proto=io.prometheus.write.v3.Request",
                    "text/plain",
                    "application/octet-stream",
                ]
            ),
            printable,
        )
    )
    if ctype is not None:
        headers.append(("Content-Type", ctype))
    encoding = draw(
        st.one_of(
            st.just("snappy"),
            st.sampled_from(
                [None, "", "SNAPPY", "gzip", "deflate", "br", "zstd", "identity", "snappy, gzip"]
            ),
            printable,
        )
    )
    if encoding is not None:
        headers.append(("Content-Encoding", encoding))
    version = draw(st.sampled_from([None, "0.1.0", "2.0.0", "banana"]))
    if version is not None:
        headers.append(("X-Prometheus-Remote-Write-Version", version))
    lie = draw(st.sampled_from(["none", "none", "none", "none", "short", "long", "huge"]))
    if lie == "short":  # the rest of the body looks like the next request
        return headers, body, draw(st.integers(0, max(0, len(body) - 1)))
    if lie == "long":  # the body ends early
        return headers, body, draw(st.integers(len(body) + 1, len(body) + 100))
    if lie == "huge":
        return headers, body, draw(st.integers(MAX_COMPRESSED + 1, 2**40))
    return headers, body, len(body)


# --- the model -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Expected:
    statuses: frozenset[int | None]
    rows: list[Any] | None = None  # what the sink must receive, when the request is stored
    why: str = ""


def expect(headers: list[tuple[str, str]], body: bytes, declared: int) -> Expected:
    hdrs = {k: v.strip() for k, v in headers}
    if declared < len(body):
        # Bytes after the declared body are a second request to aiohttp, which may
        # answer 400 for them itself; the first answer is ours or that one.
        event("content length too short")
        return Expected(frozenset({204, 400, 413, 415}), why="length lie")
    message = parse_content_type(hdrs.get("Content-Type"))
    if message is None:
        return Expected(frozenset({415}), why="content type")
    if hdrs.get("Content-Encoding", "snappy").lower() not in ("snappy", ""):
        return Expected(frozenset({415}), why="encoding")
    if declared > MAX_COMPRESSED:
        return Expected(frozenset({413}), why="content length")
    if declared > len(body):
        # The connection closes before the promised body: nobody is left to answer.
        event("content length too long")
        return Expected(frozenset({None}), why="cut short")
    try:
        raw = decompress(body, MAX_DECOMPRESSED)
    except PayloadTooLarge:
        return Expected(frozenset({413}), why="decompressed size")
    except DecodeError:
        return Expected(frozenset({400}), why="snappy")
    try:
        decoded = decode_write_request(raw, message=message)
        if message == RW2_MESSAGE:
            req = write_v2_pb2.Request()
            req.ParseFromString(raw)
            if req.symbols and req.symbols[0] != "":
                raise DecodeError("symbols[0]")
    except DecodeError:
        return Expected(frozenset({400, 204}), why="protobuf")
    return Expected(frozenset({204}), rows=expected_rows(decoded.series, parse_selector(SELECTOR)), why="ok")


def check(answer: Answer, want: Expected, *, sender_quit: bool) -> None:
    """``sender_quit``: the request was cut short by a closed connection, so no answer is fine too."""
    event(f"answer: {answer.status} ({want.why})")
    allowed = want.statuses | {None} if sender_quit else want.statuses
    assert answer.status in allowed, (answer, want.why)
    if answer.status is not None and answer.status != 204 and want.why != "length lie":
        # (A lying Content-Length can also get aiohttp's own 400 for the bytes after the body.)
        text = answer.body.decode()
        assert text.endswith("\n") and "\n" not in text[:-1], text  # one line


# --- in-process ----------------------------------------------------------------------------------


class BackgroundServer:
    """``build_app`` served by a ``TestServer`` on its own loop and thread, for sync hypothesis tests."""

    def __init__(self) -> None:
        self.sink = RecordingSink()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fuzz-server", daemon=True)
        self.server: TestServer | None = None

    def call(self, coro: Any) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(HANG_GUARD)

    def __enter__(self) -> BackgroundServer:
        self.thread.start()
        app = build_app(Config(server=LIMITS), self.sink, selectors=[parse_selector(SELECTOR)])

        async def start() -> TestServer:
            server = TestServer(app, host="127.0.0.1")
            await server.start_server()
            return server

        self.server = self.call(start())
        return self

    def __exit__(self, *exc: object) -> None:
        if self.server is not None:
            self.call(self.server.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(HANG_GUARD)
        self.loop.close()

    @property
    def port(self) -> int:
        assert self.server is not None and self.server.port is not None
        return self.server.port


@pytest.fixture(scope="module")
def in_process() -> Iterator[BackgroundServer]:
    with BackgroundServer() as server:
        yield server


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request=requests())
def test_in_process_fuzz(
    in_process: BackgroundServer, request: tuple[list[tuple[str, str]], bytes, int]
) -> None:
    headers, body, declared = request
    want = expect(headers, body, declared)
    before = len(in_process.sink.rows)
    check(exchange(in_process.port, headers, body, declared), want, sender_quit=declared > len(body))
    if want.rows is not None:
        assert in_process.sink.rows[before:] == want.rows


# --- a real process ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def subprocess_receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReceiverProcess]:
    workdir = tmp_path_factory.mktemp("fuzz-receiver")
    config = workdir / "config.yaml"
    config.write_text(
        "server:\n"
        f"  max_compressed_bytes: {MAX_COMPRESSED}\n"
        f"  max_decompressed_bytes: {MAX_DECOMPRESSED}\n"
        "ingest:\n"
        f"  selectors: ['{SELECTOR}']\n"
    )
    with ReceiverProcess(workdir, "--config", str(config)) as proc:
        yield proc
        assert proc.terminate() == 0
        # aiohttp logs its own tracebacks for broken HTTP framing (bytes after the
        # declared body); none may come from an exception that escaped our code.
        ours = [line for line in proc.log().splitlines() if 'File "' in line and "/tsf_adapter/" in line]
        assert not ours, proc.log()[-4000:]


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request=requests())
def test_subprocess_fuzz(
    subprocess_receiver: ReceiverProcess, request: tuple[list[tuple[str, str]], bytes, int]
) -> None:
    headers, body, declared = request
    check(
        exchange(subprocess_receiver.port, headers, body, declared),
        expect(headers, body, declared),
        sender_quit=declared > len(body),
    )
    assert subprocess_receiver.alive(), subprocess_receiver.log()[-4000:]


def test_subprocess_still_serves_after_fuzzing(subprocess_receiver: ReceiverProcess) -> None:
    """After the fuzz test (file order) the same process takes a good write; teardown stops it."""
    body = encode_write_request([SeriesSamples(make_labels({"__name__": "m"}), [1_700_000_000_000], [1.0])])
    headers = [("Content-Type", "application/x-protobuf"), ("Content-Encoding", "snappy")]
    assert exchange(subprocess_receiver.port, headers, body, len(body)).status == 204
    assert subprocess_receiver.alive()
