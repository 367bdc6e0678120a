"""Config → store targets: which grids the store keeps, and which series the receiver lets in.

A configured target is its own store target: the store reads the ``TargetConfig``
as it is (name, selector, step, history, aggregate), so a target is described once.
A target whose threshold follows a limit series needs a second grid for that series;
it is derived here, as a ``TargetConfig`` too, rather than described again.

>>> from tsf_adapter.config import TargetConfig, ThresholdConfig
>>> from tsf_adapter.core.selector import parse_selector
>>> t = TargetConfig(name="disk", selector=parse_selector("used"),
...                  threshold=ThresholdConfig(selector=parse_selector("quota")))
>>> [(s.name, str(s.selector), s.history) for s in store_specs([t])]
[('disk', 'used', 172800.0), ('disk/threshold', 'quota', 3600.0)]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Final

from tsf_adapter.config import Config, TargetConfig
from tsf_adapter.core.selector import Selector

# Appended to a target's name to name the grid of its limit series; a configured target name
# cannot contain '/', so the two can never collide.
THRESHOLD_SPEC_SUFFIX: Final = "/threshold"
# A limit series keeps its last value at least this long: limits (quotas, capacities) are often
# exported rarely, and a limit that changes is rare, so an hour-old value is still the limit.
THRESHOLD_HISTORY_S: Final = 3600.0


def threshold_target(target: TargetConfig) -> TargetConfig | None:
    """The store target for the limit series of ``threshold.selector`` (None without one).

    Same step as the target, so the limit's latest value is on the same clock; named
    ``<name>/threshold``; not aggregated (limits are joined ``on`` labels instead). Its history
    is the target's when the model reads the headroom (every training window needs its limit),
    else the last hour, which is enough for the latest value.

    >>> from tsf_adapter.config import ModelConfig, ThresholdConfig
    >>> from tsf_adapter.core.selector import parse_selector
    >>> t = TargetConfig(name="q", selector=parse_selector("used"), model=ModelConfig(headroom=True),
    ...                  threshold=ThresholdConfig(selector=parse_selector("quota")))
    >>> threshold_target(t).history
    172800.0
    """
    threshold = target.threshold
    if threshold is None or threshold.selector is None:
        return None
    return dataclasses.replace(
        target,
        name=f"{target.name}{THRESHOLD_SPEC_SUFFIX}",
        selector=threshold.selector,
        history=max(THRESHOLD_HISTORY_S, 2 * target.step, target.history if target.model.headroom else 0.0),
        aggregate=None,
        threshold=None,
    )


def store_specs(targets: Iterable[TargetConfig]) -> list[TargetConfig]:
    """Every store target: each target's grid, and the grid of its threshold's limit series."""
    specs: list[TargetConfig] = []
    for target in targets:
        specs.append(target)
        limits = threshold_target(target)
        if limits is not None:
            specs.append(limits)
    return specs


def receiver_selectors(config: Config) -> list[Selector]:
    """What the receiver keeps: the ingest selectors and every target's (and limit's) selector."""
    return [*config.ingest.selectors, *(spec.selector for spec in store_specs(config.targets))]
