"""Shared fixtures: seeded generators, the Agg backend, figures closed after use."""

import os

import numpy as np
import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def rng():
    """A seeded generator, fresh for every test."""
    return np.random.default_rng(0)


def _random_net(rng, sizes, bias=True):
    params, mults = [], []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
        params.append(rng.normal(size=(fan_in, fan_out)))
        mults.append(rng.uniform(0.5, 1.5))
        if bias:
            params.append(rng.normal(size=fan_out))
            mults.append(rng.uniform(0.5, 1.5))
    return params, mults


@pytest.fixture
def random_net():
    """``make(rng, sizes, bias=True) -> (params, mults)``: random MLP weights
    (each layer's ``(fan_in, fan_out)`` matrix, then its bias) and their
    multipliers, drawn from ``rng``."""
    return _random_net


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import sys

    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")
