"""Log records: one line each, UTC, logfmt or JSON, tracebacks only at debug; the flags that set them."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest

from tsf_adapter.cli import _parser
from tsf_adapter.server.logs import LineFormatter, setup_logging


def record(message: str, *, exc: BaseException | None = None) -> logging.LogRecord:
    info = None
    if exc is not None:
        try:
            raise exc
        except BaseException:
            info = sys.exc_info()
    rec = logging.LogRecord("tsf_adapter.daemon", logging.ERROR, __file__, 1, message, (), info)
    rec.created = 1_764_849_600.25  # 2025-12-04T12:00:00.250Z
    return rec


def test_logfmt_is_one_line_with_utc_and_quoted_values() -> None:
    line = LineFormatter().format(record('bad key "x"\nnext line'))
    assert line == (
        'ts=2025-12-04T12:00:00.250Z level=error logger=tsf_adapter.daemon msg="bad key \\"x\\"\\nnext line"'
    )


def test_an_exception_is_its_type_and_message_unless_debugging() -> None:
    failing = record("save failed", exc=OSError("disk full"))
    assert LineFormatter().format(failing).endswith(' msg="save failed" err="OSError: disk full"')
    with_trace = LineFormatter(tracebacks=True).format(failing)
    assert "\n" not in with_trace
    assert 'err="Traceback (most recent call last):\\n' in with_trace
    assert with_trace.endswith('OSError: disk full"')


def test_json_records_parse_and_carry_the_same_fields() -> None:
    line = LineFormatter("json").format(record("ready: 2 targets", exc=ValueError("x")))
    assert "\n" not in line
    assert json.loads(line) == {
        "ts": "2025-12-04T12:00:00.250Z",
        "level": "error",
        "logger": "tsf_adapter.daemon",
        "msg": "ready: 2 targets",
        "err": "ValueError: x",
    }


def test_setup_logging_replaces_the_handlers_and_sets_the_level(capsys: pytest.CaptureFixture[str]) -> None:
    # (tests/conftest.py puts the test run's own logging back afterwards.)
    setup_logging("warning", "json")
    logging.getLogger("tsf_adapter.x").info("not shown")
    logging.getLogger("tsf_adapter.x").warning("shown")
    lines = capsys.readouterr().err.splitlines()
    assert [json.loads(line)["msg"] for line in lines] == ["shown"]


@pytest.mark.parametrize(
    "argv",
    [
        ["--log.level", "debug", "--log.format", "json", "check-config", "--config", "c.yml"],
        ["check-config", "--config.file", "c.yml", "--log.level", "debug", "--log.format", "json"],
        ["--log-level", "debug", "check-config", "--log.format", "json", "--config", "c.yml"],
    ],
)
def test_log_flags_go_before_or_after_the_subcommand(argv: list[str]) -> None:
    args = _parser().parse_args(argv)
    assert (args.log_level, args.log_format, args.config) == ("debug", "json", Path("c.yml"))


def test_defaults_are_info_and_logfmt() -> None:
    args = _parser().parse_args(["check-config", "--config", "c.yml"])
    assert (args.log_level, args.log_format) == ("info", "logfmt")


def test_run_takes_the_prometheus_spellings_and_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    args = _parser().parse_args(["run", "--config.file", "a.yml", "--web.listen-address", ":9301"])
    assert (args.config, args.listen) == (Path("a.yml"), ":9301")
    monkeypatch.setenv("TSF_ADAPTER_CONFIG", "/etc/tsf-adapter/config.yml")
    monkeypatch.setenv("TSF_ADAPTER_LISTEN_ADDRESS", "0.0.0.0:9201")
    args = _parser().parse_args(["run"])
    assert (args.config, args.listen) == (Path("/etc/tsf-adapter/config.yml"), "0.0.0.0:9201")
    # A flag still wins over the environment.
    assert _parser().parse_args(["run", "--listen", ":1"]).listen == ":1"
