"""Model inputs: gap filling, calendar covariates, and per-window scaled windows.

A network should learn the *shape* of a series, not its level: disk bytes in
the terabytes and a request rate near one must look alike to it. So every
window is scaled on its own, relative to its last value (the level) and how
much it moves (the scale), and forecasts are mapped back with the same two
numbers. That also lets one global network serve series of any magnitude.

The scale is the smaller of two spreads: the std of the window's values, and
its mean absolute step-to-step change times sqrt(window length) (about the
std for a random walk, many times it for noise around a steady level). A
single level shift inside the window, such as a user deleting 15% of a quota,
multiplies the std several times, and with it the whole forecast band for as
long as the shift stays in the window (hours of false "will hit the quota"
alerts on the storage simulator), while it moves the mean change by one
step's worth. Noisy stationary series keep their std. ``scale="std"`` is the
std alone, which states saved before this option existed were trained with.

Gaps (NaN, staleness markers included) are forward filled so the arithmetic
stays finite, and a mask channel tells the network which inputs were real.
Targets that are gaps are never trained on: they carry ``y_mask == 0``.

Two layers, statsforecast style: pure numpy kernels run once per fit
(:func:`forward_fill`, :func:`time_covariates`), and :class:`WindowSource`
keeps their results as tensors on the training device and gathers minibatches
there, so windows are never materialised for the whole history (10,000 series
× 1,000 origins × 144 steps would not fit).

Feature channels of one input step, in order: scaled value, observed mask,
each extra series scaled the same way, then :data:`N_COVARIATES` calendar
covariates (time of day sin/cos, day of week sin/cos, day/night flag). With
``FeatureConfig.headroom`` the last extra channel is the headroom
(:mod:`.headroom`): already scale-free, and its level is the point (85% of a
quota is not 40%), so it goes in as it is, not scaled per window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Final, Literal

import numpy as np
import numpy.typing as npt
import torch

N_COVARIATES: Final = 5
SECONDS_PER_DAY: Final = 86_400.0
# 1970-01-01 was a Thursday; with Monday = 0 it is day 3 of its week.
_EPOCH_WEEKDAY: Final = 3.0


@dataclass(frozen=True, slots=True, kw_only=True)
class FeatureConfig:
    """How windows are cut and described.

    >>> FeatureConfig(input_steps=48, horizon_steps=12).n_features(n_extra=1)
    8
    """

    # A day of 10-minute steps: long enough to see a daily cycle's phase.
    input_steps: int = 144
    # Six hours of 10-minute steps: the forecast length the daemon writes back.
    horizon_steps: int = 36
    # Local hours [start, end) count as "day"; office hours by default. start > end wraps midnight.
    day_start_hour: float = 8.0
    day_end_hour: float = 20.0
    # Offset of local time from UTC, so "day" and "Monday" mean what the operators mean.
    utc_offset_hours: float = 0.0
    # The scale never drops below this fraction of |level| (or the absolute floor): a flat
    # series would otherwise blow its last bit of noise up to unit size.
    relative_scale_floor: float = 1e-3
    absolute_scale_floor: float = 1e-9
    # "std": the values' std (the default, measured in BENCHMARKS.md). "min": the smaller of the
    # std and sqrt(input_steps) x the mean absolute change between steps, which one level shift
    # (a deletion) barely moves: narrower bands after deletions, opt-in until it pays off on the
    # quota alerts (see BENCHMARKS.md, forecast accuracy).
    scale: Literal["min", "std"] = "std"
    # The last extra channel is the headroom, fed unscaled (see the module docstring). Left out of
    # repr, which the daemon's model config hash reads, so models without it keep their hash; the
    # hash names it when it is on (pipeline.models.model_config_hash).
    headroom: bool = field(default=False, repr=False)
    # One more channel: how long the series has been climbing (:func:`climb_run`), the duration a
    # runaway has and a write burst or the day's rhythm lacks. Left out of repr like the headroom.
    climb: bool = field(default=False, repr=False)

    def n_features(self, n_extra: int = 0) -> int:
        """Channels per input step: value, mask, extras, the climb channel when on, covariates."""
        return 2 + n_extra + int(self.climb) + N_COVARIATES


def forward_fill(values: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Fill gaps along the last axis with the previous observation; also return where data was real.

    Leading gaps take the first observation (there is no earlier one), and a row with no
    observation at all becomes zeros; its mask is all False, so nothing downstream trusts it.
    Any non-finite value counts as a gap (NaN, staleness marker, ±inf).

    >>> filled, seen = forward_fill(np.array([np.nan, 1.0, np.nan, 3.0]))
    >>> filled.tolist(), seen.tolist()
    ([1.0, 1.0, 1.0, 3.0], [False, True, False, True])
    """
    arr = np.asarray(values, dtype=np.float64)
    observed = np.isfinite(arr)
    steps = arr.shape[-1]
    pos = np.where(observed, np.arange(steps), -1)
    last = np.maximum.accumulate(pos, axis=-1)
    # Index of the first observation per row, for leading gaps; rows without any get 0.
    first = np.where(observed.any(axis=-1), observed.argmax(axis=-1), 0)
    idx = np.where(last < 0, first[..., None], last)
    filled = np.take_along_axis(np.where(observed, arr, 0.0), idx, axis=-1)
    return filled, observed


CLIMB_SLOPE_S: Final = 1800.0
CLIMB_CAP_S: Final = 6 * 3600.0


def climb_run(
    filled: npt.NDArray[np.float64], step_s: float, slope_s: float = CLIMB_SLOPE_S, cap_s: float = CLIMB_CAP_S
) -> npt.NDArray[np.float64]:
    """For every step, how long the series has risen without a break, as a fraction of ``cap_s``.

    "Rising" at a step: the value is above the one ``slope_s`` earlier. A write burst rises for
    minutes and a flat series under noise for a step or two at a time; a runaway job climbs for
    hours. The run is capped at ``cap_s`` (1.0), so the channel is scale-free like the covariates.

    >>> climb_run(np.array([[5.0, 4.0, 5.0, 6.0, 7.0, 7.0, 8.0]]), 60.0, slope_s=60.0, cap_s=240.0).tolist()
    [[0.0, 0.0, 0.25, 0.5, 0.75, 0.0, 0.25]]
    """
    lag = max(1, round(slope_s / step_s))
    rising = np.zeros(filled.shape, dtype=bool)
    rising[..., lag:] = filled[..., lag:] > filled[..., :-lag]
    idx = np.arange(filled.shape[-1])
    last_break = np.maximum.accumulate(np.where(rising, -1, idx), axis=-1)
    run_s = ((idx - last_break) * step_s).astype(np.float64)
    out: npt.NDArray[np.float64] = np.minimum(run_s / cap_s, 1.0)
    return out


def time_covariates(timestamps_s: npt.NDArray[np.float64], config: FeatureConfig) -> npt.NDArray[np.float32]:
    """Calendar covariates [steps, 5]: sin/cos of time of day and of day of week, day flag.

    Sin/cos pairs put 23:59 next to 00:00 and Sunday next to Monday, which a raw hour
    number does not. The day flag marks ``[day_start_hour, day_end_hour)`` local time.

    >>> thursday_6am = np.array([6 * 3600.0])  # 1970-01-01 06:00 UTC
    >>> time_covariates(thursday_6am, FeatureConfig()).astype(float).round(2).tolist()
    [[1.0, 0.0, 0.22, -0.97, 0.0]]
    """
    local = np.asarray(timestamps_s, dtype=np.float64) + config.utc_offset_hours * 3600.0
    day_frac = np.mod(local, SECONDS_PER_DAY) / SECONDS_PER_DAY
    week_frac = (np.mod(np.floor(local / SECONDS_PER_DAY) + _EPOCH_WEEKDAY, 7.0) + day_frac) / 7.0
    hour = day_frac * 24.0
    start, end = config.day_start_hour, config.day_end_hour
    is_day = (hour >= start) & (hour < end) if start <= end else (hour >= start) | (hour < end)
    tau = 2.0 * math.pi
    cov = np.stack(
        [
            np.sin(tau * day_frac),
            np.cos(tau * day_frac),
            np.sin(tau * week_frac),
            np.cos(tau * week_frac),
            is_day.astype(np.float64),
        ],
        axis=-1,
    )
    return cov.astype(np.float32)


def window_origins(
    n_steps: int, input_steps: int, horizon_steps: int, stride: int = 1
) -> npt.NDArray[np.int64]:
    """Origins (index of the first target step) of every full window, newest last.

    The newest origin is always included, so the most recent data is never skipped by the stride.

    >>> window_origins(10, 4, 2, stride=3).tolist()
    [5, 8]
    """
    last = n_steps - horizon_steps
    if last < input_steps:
        return np.zeros(0, dtype=np.int64)
    return np.arange(last, input_steps - 1, -stride, dtype=np.int64)[::-1].copy()


@dataclass(frozen=True, slots=True)
class WindowBatch:
    """One minibatch of windows; leading dims ``...`` are [series, windows] or [windows]."""

    x: torch.Tensor  # [..., input_steps, n_features] float32
    y: torch.Tensor  # [..., horizon_steps] float32, scaled like the inputs; 0 where a gap
    y_mask: torch.Tensor  # [..., horizon_steps] float32, 1 where the target is real
    level: torch.Tensor  # [...] float64, the last (filled) input value
    scale: torch.Tensor  # [...] float64, > 0


class WindowSource:
    """Holds one set of series on a device and cuts scaled windows from it.

    ``values`` is [series, steps] on a regular grid starting at ``start_s`` with ``step_s``
    seconds per step; ``extra`` is [series, channels, steps] on the same grid. Histories
    shorter than ``input_steps`` are padded in front with gaps.

    >>> src = WindowSource(np.arange(20.0)[None], 0.0, 60.0, FeatureConfig(input_steps=4, horizon_steps=2))
    >>> b = src.grid(torch.tensor([10]))
    >>> tuple(b.x.shape), b.y[0, 0].double().numpy().round(3).tolist(), float(b.level[0, 0])
    ((1, 1, 4, 7), [0.894, 1.789], 9.0)
    """

    def __init__(
        self,
        values: npt.NDArray[np.float64],
        start_s: float,
        step_s: float,
        config: FeatureConfig,
        *,
        extra: npt.NDArray[np.float64] | None = None,
        device: torch.device | None = None,
    ) -> None:
        vals = np.asarray(values, dtype=np.float64)
        if vals.ndim != 2:
            raise ValueError(f"values must be [series, steps], got shape {vals.shape}")
        ext = np.zeros((vals.shape[0], 0, vals.shape[1])) if extra is None else np.asarray(extra, np.float64)
        if ext.ndim != 3 or ext.shape[0] != vals.shape[0] or ext.shape[2] != vals.shape[1]:
            raise ValueError(f"extra must be [series, channels, {vals.shape[1]}], got shape {ext.shape}")
        pad = max(0, config.input_steps - vals.shape[1])
        if pad:
            vals = np.concatenate([np.full((vals.shape[0], pad), np.nan), vals], axis=1)
            ext = np.concatenate([np.full((*ext.shape[:2], pad), np.nan), ext], axis=2)
            start_s -= pad * step_s
        self.config = config
        self.n_series, self.n_steps = vals.shape
        self.n_extra = ext.shape[1]
        self.n_features = config.n_features(self.n_extra)
        dev = device or torch.device("cpu")
        filled, observed = forward_fill(vals)
        ext_filled, _ = forward_fill(ext)
        stamps = start_s + step_s * np.arange(self.n_steps, dtype=np.float64)
        # float64 on the device: subtracting a level of 1e12 bytes in float32 would erase the signal.
        self._filled = torch.from_numpy(filled).to(dev)  # [S, T]
        self._observed = torch.from_numpy(observed).to(dev)  # [S, T] bool
        self._raw = torch.from_numpy(np.where(observed, vals, np.nan)).to(dev)  # [S, T]
        self._extra = torch.from_numpy(ext_filled).to(dev)  # [S, C, T]
        self._cov = torch.from_numpy(time_covariates(stamps, config)).to(dev)  # [T, 5]
        self._climb = torch.from_numpy(climb_run(filled, step_s)).to(dev) if config.climb else None  # [S, T]
        self._in_offsets = torch.arange(-config.input_steps, 0, device=dev)  # [L]
        self._out_offsets = torch.arange(config.horizon_steps, device=dev)  # [H]

    def grid(self, origins: torch.Tensor) -> WindowBatch:
        """Windows at the same origins for every series: leading dims [series, len(origins)]."""
        rows = torch.arange(self.n_series, device=self._filled.device)[:, None]  # [S, 1]
        return self._gather(rows.expand(-1, origins.shape[0]), origins[None, :].expand(self.n_series, -1))

    def pairs(self, series: torch.Tensor, origins: torch.Tensor) -> WindowBatch:
        """Windows for (series, origin) pairs: leading dim [len(series)]."""
        return self._gather(series, origins)

    def _gather(self, rows: torch.Tensor, origins: torch.Tensor) -> WindowBatch:
        cfg = self.config
        idx_in = origins[..., None] + self._in_offsets  # [..., L]
        r = rows[..., None]  # [..., 1]
        val = self._filled[r, idx_in]  # [..., L] float64
        seen = self._observed[r, idx_in]  # [..., L] bool
        # Level and scale are measured in units of the window's magnitude (see _magnitude_unit),
        # so values near the float64 limit scale as any others do, without an Inf or NaN.
        unit = _magnitude_unit(val)  # [...]
        rel = val / unit[..., None]  # [..., L], |rel| < 2
        rel_level = rel[..., -1]  # [...]
        rel_scale = _masked_std(rel, seen)  # [...]
        if cfg.scale == "min":
            rel_scale = torch.minimum(rel_scale, _mean_abs_diff(rel, seen))  # [...]
        rel_scale = torch.maximum(
            torch.maximum(rel_scale, cfg.relative_scale_floor * rel_level.abs()),
            cfg.absolute_scale_floor / unit,
        )
        level, scale = rel_level * unit, rel_scale * unit  # [...], [...]: both exact
        parts = [
            ((rel - rel_level[..., None]) / rel_scale[..., None]).unsqueeze(-1),  # [..., L, 1]
            seen.to(torch.float64).unsqueeze(-1),  # [..., L, 1]
        ]
        n_scaled = self.n_extra - 1 if cfg.headroom and self.n_extra else self.n_extra
        parts += self._scaled_extra(r, idx_in, n_scaled)
        if n_scaled < self.n_extra:  # the headroom: scale-free already, its level is what counts
            parts.append(self._extra[r, self.n_extra - 1, idx_in].unsqueeze(-1))  # [..., L, 1]
        if self._climb is not None:
            parts.append(self._climb[r, idx_in].unsqueeze(-1))  # [..., L, 1]
        x = torch.cat([p.to(torch.float32) for p in parts] + [self._cov[idx_in]], dim=-1)  # [..., L, F]
        # Targets exist only where the window lies inside the grid (not for the forecast origin).
        idx_out = (origins[..., None] + self._out_offsets).clamp_max(self.n_steps - 1)  # [..., H]
        inside = (origins[..., None] + self._out_offsets) < self.n_steps  # [..., H]
        target = self._raw[r, idx_out]  # [..., H]
        has_input = seen.any(dim=-1, keepdim=True)  # [..., 1]: no observed input, nothing to scale by
        # A target many orders of magnitude off its window (a jump of 1e300) scales to Inf: unusable,
        # and one Inf in a loss would turn every weight it reaches into NaN.
        y = (target / unit[..., None] - rel_level[..., None]) / rel_scale[..., None]  # [..., H]
        y_mask = torch.isfinite(y) & inside & has_input  # [..., H]
        y = torch.where(y_mask, y, 0.0)  # [..., H]
        return WindowBatch(
            x=x, y=y.to(torch.float32), y_mask=y_mask.to(torch.float32), level=level, scale=scale
        )

    def _scaled_extra(self, r: torch.Tensor, idx_in: torch.Tensor, n: int) -> list[torch.Tensor]:
        """The first ``n`` extra channels of rows ``r`` at ``idx_in``, each scaled on its own window."""
        if n == 0:
            return []
        cfg = self.config
        dev = self._filled.device
        ext = self._extra[r[..., None, :], torch.arange(n, device=dev)[:, None], idx_in[..., None, :]]
        # ext: [..., C, L]; each channel gets its own level/scale, like the target.
        e_level = ext[..., -1]  # [..., C]
        e_scale = ext.std(dim=-1, correction=0)  # [..., C]
        e_scale = torch.maximum(e_scale, cfg.relative_scale_floor * e_level.abs()).clamp_min(
            cfg.absolute_scale_floor
        )
        return [((ext - e_level[..., None]) / e_scale[..., None]).transpose(-1, -2)]  # [..., L, C]


def _magnitude_unit(values: torch.Tensor) -> torch.Tensor:
    """Per window, the power of two at or just below its largest magnitude (1 for a window of zeros).

    Windows are scaled in this unit: every value is then below 2 in magnitude, so no square
    (the std) or difference (a level of 1.7e308 from one of -1.7e308) can overflow float64.
    Dividing by a power of two is exact, so an ordinary window scales bit for bit as it would
    without it.
    """
    peak = values.abs().amax(dim=-1)  # [...]
    mantissa, _ = torch.frexp(peak)  # peak = mantissa * 2**e, mantissa in [0.5, 1)
    unit = peak / (2.0 * mantissa)  # exactly 2**(e - 1): no overflow even at the float64 limit
    return torch.where(peak > 0, unit, torch.ones_like(peak))


def _mean_abs_diff(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean |change| between neighbouring observed inputs, times sqrt(steps); 0 where none are.

    For a random walk this is about the std of the window (so "min" keeps the std there).

    Gaps are forward filled, so a change across a gap counts once, where the gap ends.
    """
    step = (values[..., 1:] - values[..., :-1]).abs()  # [..., L-1]
    m = mask[..., 1:].to(values.dtype)  # [..., L-1]
    mean = (step * m).sum(dim=-1) / m.sum(dim=-1).clamp_min(1.0)  # [...]
    return mean * math.sqrt(values.shape[-1])


def _masked_std(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Population std over the last axis of the masked-in values; 0 where none are."""
    m = mask.to(values.dtype)
    n = m.sum(dim=-1).clamp_min(1.0)
    mean = (values * m).sum(dim=-1) / n
    return ((((values - mean[..., None]) ** 2) * m).sum(dim=-1) / n).sqrt()
