"""The GPU benchmark's CPU fallback, at a tiny size, so the script cannot rot between GPU runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.gpu_train import main


def test_the_gpu_benchmark_runs_on_the_cpu_for_every_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "gpu_train.json"
    main(["--tiny", "--models", "lstm", "gru", "transformer", "--json", str(out)])
    report = json.loads(out.read_text())
    assert report["device"] == "cpu"
    assert [r["model"] for r in report["results"]] == ["lstm", "gru", "transformer"]
    for r in report["results"]:
        assert r["series"] == 20 and r["fit_s"] > 0 and r["predict_s"] > 0
    assert "goal: judged at 10000 series only" in capsys.readouterr().out


def test_the_loop_can_be_skipped_and_then_reports_no_ratio(tmp_path: Path) -> None:
    out = tmp_path / "gpu_train.json"
    main(["--tiny", "--loop-series", "0", "--json", str(out)])
    (result,) = json.loads(out.read_text())["results"]
    assert result["loop_extrapolated_s"] is None and result["batched_vs_loop"] is None
