"""The climb guard the benchmark scores is the PromQL the rules ship: promtool checks it on the same data."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from tsf_adapter.pipeline.climb import ClimbGuard, climb_guard
from tsf_adapter.tools.climb_rule import ClimbRule, climb_alerts

STEP_MS = 300_000
HOUR_MS = 3_600_000
T = np.arange(0, 8 * HOUR_MS + 1, STEP_MS, dtype=np.int64)
QUOTA = 1000.0


def _series() -> dict[str, np.ndarray]:
    """Shapes the guard must tell apart, with a little deterministic noise on each."""
    rng = np.random.default_rng(7)
    noise = np.round(rng.normal(0.0, 0.3, size=len(T)), 3)
    ramp = np.clip((T - 2 * HOUR_MS) / (5 * HOUR_MS), 0.0, 1.0)
    return {
        "runaway": np.round(880.0 + 110.0 * ramp**1.3 + noise, 3),
        "burst": np.round(900.0 + 40.0 * np.clip((T - 3 * HOUR_MS) / 900_000, 0.0, 1.0) + noise, 3),
        "day": np.round(900.0 + 15.0 * np.sin(2 * np.pi * T / (24 * HOUR_MS)) + noise, 3),
        "slow": np.round(900.0 + 3.0 * T / HOUR_MS + noise, 3),
    }


@pytest.mark.parametrize(
    "guard", [ClimbGuard(), ClimbGuard(sustain_s=2700, min_rate_per_h=0.01), ClimbGuard(min_rate_per_h=0)]
)
def test_promtool_agrees_with_the_numpy_guard(tmp_path: Path, guard: ClimbGuard) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (apt-get install prometheus)")
    series = _series()
    names = sorted(series)
    used = np.stack([series[n] for n in names])
    origins = np.arange(HOUR_MS, 8 * HOUR_MS + 1, 15 * 60_000, dtype=np.int64)
    expected = climb_guard(T, used, np.full_like(used, QUOTA), origins, guard)
    rule = ClimbRule()
    expected_rule = climb_alerts(T, used, np.full_like(used, QUOTA), origins, rule)
    # Informative data: each signal is on somewhere and off somewhere.
    assert expected.any() and not expected.all() and expected_rule.any() and not expected_rule.all()

    inputs = []
    for name in names:
        values = " ".join(repr(float(v)) for v in series[name])
        inputs.append({"series": f'used{{user="{name}"}}', "values": values})
        inputs.append({"series": f'quota{{user="{name}"}}', "values": f"{QUOTA}x{len(T) - 1}"})
    tests = []
    for k, origin in enumerate(origins):
        at = f"{int(origin) // 60_000}m"
        for expr, truth in (
            (guard.promql("used", "quota", ("user",)), expected),
            (rule.promql("used", "quota"), expected_rule),
        ):
            samples = [{"labels": f'{{user="{n}"}}', "value": 1} for i, n in enumerate(names) if truth[i, k]]
            tests.append({"expr": f"count by (user) ({expr})", "eval_time": at, "exp_samples": samples})
    spec = {
        "evaluation_interval": "5m",
        "tests": [{"interval": "5m", "input_series": inputs, "promql_expr_test": tests}],
    }
    path = tmp_path / "guard.test.yml"
    path.write_text(yaml.safe_dump(spec))
    result = subprocess.run(
        [promtool, "test", "rules", path.name], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
