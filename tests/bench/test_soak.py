"""The soak benchmark at a tiny size, so that its daemon, sender and report keep working."""

from __future__ import annotations

import pytest

from bench.soak import main


def test_a_short_soak_gets_every_request_accepted_and_the_daemon_exits_0(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = "--rate 2000 --minutes 0.4 --warmup 0.1 --series 400 --target-series 20"
    assert main(args.split()) == 0
    out = capsys.readouterr().out
    assert "(0 not 2xx)" in out
    assert "daemon exit 0" in out
