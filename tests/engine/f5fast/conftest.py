"""Fixtures of the fast-sampler tests: tiny real f5 models and a reference mel."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from tests.engine.f5fast.common import reference
from tests.support.f5 import tiny_cfm


@pytest.fixture(scope="session", autouse=True)
def _one_cpu_thread() -> None:
    """One torch thread: on the small shared CPU the tiny models run faster that way."""
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model() -> Any:
    """The default tiny model (fp32, text ConvNeXt on, no qk-norm)."""
    return tiny_cfm()


@pytest.fixture(scope="module")
def cond() -> torch.Tensor:
    """A 48-frame reference mel."""
    return reference(7)
