"""Shared fixtures of the model tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture
def _one_thread() -> Iterator[None]:
    """Tiny nets gain nothing from intra-op threads, and on a shared 2-core box they lose ~8x."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
