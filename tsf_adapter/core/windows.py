"""How a history on a grid is cut for training: the validation split and the fewest steps that train.

A neural training keeps the newest steps of the grid for early stopping (the validation
split) and needs at least one whole training window, ``input_steps`` followed by
``horizon_steps``, before them. The trainer splits by these rules, the config decoder
rejects a target whose history can never hold that many steps, and the scheduler waits
for history rather than failing: one rule, here, so the three never disagree.

>>> validation_steps(1000, 360)
360
>>> min_train_steps(288, 360)
1008
"""

from __future__ import annotations

import math
from typing import Final

# The newest share of the grid kept for early stopping (at least one horizon): a fifth leaves most of
# the history to learn from while still scoring every series on its most recent behaviour.
VALIDATION_FRACTION: Final = 0.2


def validation_steps(n_steps: int, horizon_steps: int, fraction: float = VALIDATION_FRACTION) -> int:
    """The newest steps of an ``n_steps`` grid kept for validation: ``fraction`` of it, at least a horizon.

    No validation at all (0) when ``fraction`` is 0 or less.
    """
    if fraction <= 0:
        return 0
    return max(horizon_steps, math.ceil(fraction * n_steps))


def min_train_steps(input_steps: int, horizon_steps: int, fraction: float = VALIDATION_FRACTION) -> int:
    """The fewest grid steps that leave one training window before the validation split.

    ``ValueError`` when ``fraction`` is 1 or more: the validation split would take everything.

    >>> min_train_steps(20, 2), min_train_steps(20, 2, fraction=0)
    (28, 22)
    """
    if fraction >= 1:
        raise ValueError(f"validation fraction must be below 1 (got {fraction})")
    window = input_steps + horizon_steps
    # A lower bound from both halves of validation_steps; the loop absorbs the rounding of ceil.
    n = max(window + (horizon_steps if fraction > 0 else 0), math.ceil(window / (1 - max(fraction, 0))))
    while n > window and n - 1 - validation_steps(n - 1, horizon_steps, fraction) >= window:
        n -= 1
    while n - validation_steps(n, horizon_steps, fraction) < window:
        n += 1
    return n
