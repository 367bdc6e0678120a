"""The daemon-training benchmark on a shipped target, at a tiny size, so the GPU check's stage runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.train_daemon import main

SHIPPED = Path(__file__).resolve().parents[2] / "deploy" / "tsf-adapter.yml"


def run(tmp_path: Path, *extra: str) -> dict[str, Any]:
    out = tmp_path / "train_daemon.json"
    args = f"--config {SHIPPED} --target storage-quota --series 3 --budget 2 --json {out}".split()
    main([*args, *extra])
    report: dict[str, Any] = json.loads(out.read_text())
    return report


def test_the_shipped_storage_target_trains_and_forecasts_every_series(tmp_path: Path) -> None:
    report = run(tmp_path)
    assert report["target"] == "storage-quota" and report["device"] == "cpu"
    assert report["retrain_every_s"] == 6 * 3600 and report["budget_s"] == 2
    assert (report["history_steps"], report["input_steps"], report["horizon_steps"]) == (2016, 288, 288)
    (fit,) = report["fits"]
    assert fit["model"] == "lstm (global)" and fit["untrained"] == 0 and fit["steps"] > 0
    assert report["finite_fraction"] == 1.0 and report["predict_s"] > 0


def test_history_and_horizons_can_be_overridden_to_measure_their_cost(tmp_path: Path) -> None:
    report = run(tmp_path, "--history", "2d", "--horizons", "1h,6h")
    assert (report["history_steps"], report["input_steps"], report["horizon_steps"]) == (576, 144, 72)
