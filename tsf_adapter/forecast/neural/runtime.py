"""How torch runs in the daemon: its thread count, set once before the first training."""

from __future__ import annotations

import os

import torch


def set_torch_threads() -> int:
    """One thread fewer than the machine has (at least one): the receiver keeps a core.

    On a busy core torch's threads wait on each other (measured 3-5x slower with 2 threads
    when the other core was busy), so training never takes every core.
    """
    threads = max(1, (os.cpu_count() or 1) - 1)
    torch.set_num_threads(threads)
    return threads
