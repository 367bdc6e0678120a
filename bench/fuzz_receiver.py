"""The receiver under 100,000 fuzzed requests: every answer the contract's, no 5xx, memory bounded.

CI runs the same generator a few hundred times (tests/integration/test_receiver_fuzz.py); this
runs it at full count against ``python -m tsf_adapter receive`` as a process, and then a few
crafted bodies the generator does not reach (a million tiny series, megabyte label values,
duplicate and unsorted labels, RW2 symbol references out of range) against a second receiver with
the default size limits. It prints the answers by status, every answer the contract does not
allow, and the receiver's resident memory as it went.

    python -m bench.fuzz_receiver                  # 100,000 requests (about 10 minutes here)
    python -m bench.fuzz_receiver --requests 2000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, settings

from tests.integration.test_receiver_fuzz import (
    MAX_COMPRESSED,
    MAX_DECOMPRESSED,
    SELECTOR,
    exchange,
    expect,
    requests,
)
from tests.test_cli import ReceiverProcess
from tsf_adapter._pb import remote_pb2, write_v2_pb2
from tsf_adapter.core.series import SeriesSamples, make_labels
from tsf_adapter.remote.codec import compress, encode_write_request

RW1 = [("Content-Type", "application/x-protobuf"), ("Content-Encoding", "snappy")]
RW2 = [
    ("Content-Type", "application/x-protobuf;proto=io.prometheus.write.v2.Request"),
    ("Content-Encoding", "snappy"),
]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def crafted() -> list[tuple[str, list[tuple[str, str]], bytes, set[int]]]:
    """(what, headers, body, statuses the contract allows) for inputs the generator does not reach."""
    now = 1_700_000_000_000
    tiny = [
        SeriesSamples(make_labels({"__name__": "m", "i": str(i)}), [now], [1.0]) for i in range(1_000_000)
    ]
    long_value = [SeriesSamples(make_labels({"__name__": "m", "v": "x" * 1_000_000}), [now], [1.0])]
    long_name = [SeriesSamples(make_labels({"__name__": "m", "n" * 100_000: "v"}), [now], [1.0])]
    dup = remote_pb2.WriteRequest()
    series = dup.timeseries.add()
    for name, value in (("__name__", "m"), ("b", "1"), ("a", "2"), ("a", "3")):  # unsorted, twice
        label = series.labels.add()
        label.name, label.value = name, value
    sample = series.samples.add()
    sample.value, sample.timestamp = 1.0, now
    out_of_range = write_v2_pb2.Request(symbols=["", "__name__", "m"])
    ts = out_of_range.timeseries.add()
    ts.labels_refs.extend([1, 2, 7, 9])  # symbols 7 and 9 do not exist
    s2 = ts.samples.add()
    s2.value, s2.timestamp = 1.0, now
    return [
        ("1,000,000 tiny series", RW1, encode_write_request(tiny), {204, 413}),
        ("a 1 MB label value", RW1, encode_write_request(long_value), {204, 400}),
        ("a 100 kB label name", RW1, encode_write_request(long_name), {204, 400}),
        ("duplicate, unsorted labels", RW1, compress(dup.SerializeToString()), {400}),
        ("RW2 symbol refs out of range", RW2, compress(out_of_range.SerializeToString()), {400}),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=100_000)
    args = parser.parse_args()
    statuses: Counter[int | None] = Counter()
    wrong: list[str] = []
    memory: list[tuple[int, int]] = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        config = workdir / "fuzz.yaml"
        limits = f"  max_compressed_bytes: {MAX_COMPRESSED}\n  max_decompressed_bytes: {MAX_DECOMPRESSED}\n"
        config.write_text(f"server:\n{limits}ingest:\n  selectors: ['{SELECTOR}']\n")
        t0 = time.monotonic()
        with ReceiverProcess(workdir, "--config", str(config)) as receiver:
            assert receiver.proc is not None
            pid = receiver.proc.pid
            memory.append((0, rss_kib(pid)))
            sent = 0

            @settings(
                max_examples=args.requests,
                deadline=None,
                database=None,
                phases=[Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(request=requests())
            def one(request: tuple[list[tuple[str, str]], bytes, int]) -> None:
                nonlocal sent
                headers, body, declared = request
                want = expect(headers, body, declared)
                answer = exchange(receiver.port, headers, body, declared)
                statuses[answer.status] += 1
                allowed = want.statuses | ({None} if declared > len(body) else set())
                if answer.status not in allowed:
                    wrong.append(f"{answer.status} for {want.why} (allowed {sorted(map(str, allowed))})")
                sent += 1
                if sent % max(1, args.requests // 10) == 0:
                    memory.append((sent, rss_kib(pid)))

            one()
            alive = receiver.alive()
            assert receiver.terminate() == 0, receiver.log()[-4000:]
        fuzz_s = time.monotonic() - t0
        crafted_answers = []
        with ReceiverProcess(workdir, "--selector", SELECTOR) as receiver:
            assert receiver.proc is not None
            for what, headers, body, allowed in crafted():
                answer = exchange(receiver.port, headers, body, len(body))
                crafted_answers.append((what, len(body), answer.status, answer.status in allowed))
            crafted_rss = rss_kib(receiver.proc.pid)
            assert receiver.terminate() == 0
    print(f"{sent:,} fuzzed requests in {fuzz_s:.0f} s; receiver alive after them: {alive}")
    print("answers: " + ", ".join(f"{status}: {n:,}" for status, n in sorted(statuses.items(), key=str)))
    print(f"answers the contract does not allow: {len(wrong)}")
    for line in Counter(wrong).most_common(10):
        print(f"  {line}")
    print("receiver RSS (requests sent: KiB): " + ", ".join(f"{n:,}: {kib:,}" for n, kib in memory))
    print("crafted bodies (default limits):")
    for what, size, status, ok in crafted_answers:
        print(f"  {what}: {size:,} bytes -> {status} ({'allowed' if ok else 'NOT allowed'})")
    print(f"  receiver RSS after them: {crafted_rss:,} KiB")


if __name__ == "__main__":
    main()
