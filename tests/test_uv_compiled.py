"""The compiled (numba) core of the batched UV engine equals its numpy path.

Both paths of :func:`sharpsk._uv_batched.uv_batched_runs` run on the same
scans (converge, eos, periodic, chaotic and diverge runs; tail windows and full
traces) and must return the same numbers, bit for bit, as one fit per run.
Chaotic runs amplify any difference in the last bit (a fused multiply-add, a
reassociation) to a visible one within a few dozen steps.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
from numpy.testing import assert_array_equal

import sharpsk
import sharpsk._uv_batched as uv_batched
from sharpsk import LearningRateScan, UVRegressor
from sharpsk._dynamics import uv_lyapunov
from sharpsk._uv_batched import compiled_core, tail_lyapunov, uv_batched_runs

numba = pytest.importorskip("numba")

X1, Y1 = np.ones((1, 4)) / 2.0, np.array([1.0])
UV1 = UVRegressor(width=1, max_iter=1500, random_state=3)
ANALYSIS = {
    "tail": None,
    "max_period": 64,
    "rtol": 1e-6,
    "edge_band": (0.875, 1.25),
    "lyapunov_tol": 1e-2,
}
# In units of eta_c: converge, catapults, eos, period doublings, chaos with
# windows, divergence (also at step 1: 40).
RATES = np.concatenate([np.linspace(0.3, 2.6, 120), [1.0, 1.1, 1.25, 1.5, 40.0]])


def kernel_args(rates=RATES, max_iter=1500, record_every=1):
    state = UV1.function_space_state(X1, Y1)
    eta_c = 1.0 / (np.sqrt(state["kappa"]) * abs(state["y"]))
    n = len(rates)
    return (
        np.full(n, state["delta_f0"]),
        np.full(n, state["ntk0"]),
        np.asarray(rates) * eta_c,
        np.full(n, state["kappa"]),
        np.full(n, state["y"]),
        max_iter,
        record_every,
    )


def assert_kernel_outputs_equal(a, b):
    assert list(a) == list(b)
    for key in a:
        if key == "tails":
            assert len(a[key]) == len(b[key])
            for run, (x, y) in enumerate(zip(a[key], b[key], strict=True)):
                for u, v in zip(x, y, strict=True):
                    assert_array_equal(u, v, err_msg=f"tails of run {run}")
        else:
            assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.parametrize("n_tail_points", [16, None])
@pytest.mark.parametrize("record_every", [1, 7])
def test_compiled_core_equals_numpy_path(n_tail_points, record_every):
    args = kernel_args(record_every=record_every)
    kw = {"analysis": ANALYSIS, "n_tail_points": n_tail_points}
    ref = uv_batched_runs(*args, compiled=False, **kw)
    fast = uv_batched_runs(*args, compiled=True, **kw)
    assert_kernel_outputs_equal(ref, fast)
    if record_every == 1:
        assert set(ref["label"]) == {
            "converge",
            "eos",
            "periodic",
            "chaotic",
            "diverge",
        }
        assert ref["catapult"].any()
    dead = np.flatnonzero(ref["diverged"])
    assert dead.size and ref["n_iter"][dead].min() <= 1
    if n_tail_points is None:  # the finite prefix of a diverged run, replayed
        assert all(ref["tails"][j][0][-1] == ref["n_iter"][j] for j in dead)


def test_compiled_core_with_short_runs_and_explicit_tails():
    # max_iter 0 and 1, a tail longer than the run, the tail window starting
    # at step 0 (no frozen runs), a run diverging before its first step.
    for max_iter, tail in [(0, None), (1, None), (40, 500), (300, 8), (300, 301)]:
        args = kernel_args(max_iter=max_iter)
        kw = {"analysis": {**ANALYSIS, "tail": tail}, "n_tail_points": 4}
        assert_kernel_outputs_equal(
            uv_batched_runs(*args, compiled=False, **kw),
            uv_batched_runs(*args, compiled=True, **kw),
        )


def test_no_run():
    args = kernel_args(rates=np.array([]), max_iter=100)
    for n_tail_points in (8, None):
        kw = {"analysis": ANALYSIS, "n_tail_points": n_tail_points}
        ref = uv_batched_runs(*args, compiled=False, **kw)
        assert ref["label"].shape == (0,)
        assert_kernel_outputs_equal(ref, uv_batched_runs(*args, compiled=True, **kw))


def test_compiled_labels_in_batches_of_shuffled_runs(monkeypatch):
    # More runs than a compiled batch (and than a chunk of the labeller), in
    # a random order, so that runs of every period, chaotic and diverged runs
    # share chunks: the compiled statistics (period candidates dropped and
    # kept, cycle amplitudes, sums) equal the numpy ones run by run.
    monkeypatch.setattr(sharpsk._uv_batched, "_COMPILED_BATCH", 300)
    rates = np.random.default_rng(0).permutation(np.linspace(0.3, 2.6, 700))
    args = kernel_args(rates=rates, max_iter=1200)
    kw = {"analysis": ANALYSIS, "n_tail_points": 16}
    ref = uv_batched_runs(*args, compiled=False, **kw)
    assert_kernel_outputs_equal(ref, uv_batched_runs(*args, compiled=True, **kw))
    periods = set(ref["period"][ref["label"] == "periodic"])
    assert {4, 8} <= periods and (~ref["settled"]).any()


def test_compiled_lyapunov_equals_uv_lyapunov(rng):
    n = 300
    eta = rng.uniform(0.2, 3.0, n)
    kappa, y = rng.uniform(0.5, 2.0, n), rng.normal(size=n)
    df, ntk = rng.normal(size=n), rng.uniform(0.1, 3.0, n)
    df[:3] = [0.0, 1e6, np.nan]  # a fixed point, past the bound, not finite
    # A tangent mapped to exactly 0 (0 / 0 in the renormalisation: NaN in
    # numpy, where numba's default error model would raise).
    df[3], ntk[3], eta[3], kappa[3], y[3] = 0.0, 2.0, 0.5, 1.0, 0.5
    core = compiled_core(True)
    for n_steps in (1, 63, 64, 150):  # blocks of 64 steps, partial last block
        expected = uv_lyapunov(df, ntk, eta, kappa, y, n_steps, discard=n_steps // 8)
        got = tail_lyapunov(df, ntk, eta, kappa, y, n_steps, core=core)
        assert_array_equal(got, expected)
    assert np.isfinite(got).any() and np.isnan(got).any()


@pytest.mark.filterwarnings("ignore::sharpsk.DivergenceWarning")
@pytest.mark.parametrize("n_tail_points", [64, None])
def test_compiled_scan_equals_one_fit_per_run(monkeypatch, n_tail_points):
    monkeypatch.delenv("SHARPSK_NO_NUMBA", raising=False)
    core = compiled_core(True)  # loaded: the automatic choice from now on
    calls = []
    advance = core.uv_advance
    monkeypatch.setattr(core, "uv_advance", lambda *a: calls.append(1) or advance(*a))
    kw = {
        "learning_rates": [0.5, 1.1, 1.25, 1.5, 2.5],
        "lr_units": "critical",
        "n_tail_points": n_tail_points,
    }
    fast = LearningRateScan(UV1, **kw).fit(X1, Y1)
    per_run = LearningRateScan(UV1, engine="per_run", **kw).fit(X1, Y1)
    assert fast.engine_ == "batched" and calls
    for table in ("results_", "trace_tails_"):
        a, b = getattr(fast, table), getattr(per_run, table)
        assert list(a) == list(b)
        for key in a:
            assert_array_equal(np.asarray(a[key]), np.asarray(b[key]), err_msg=key)
    assert set(fast.results_["label"]) == {
        "converge",
        "eos",
        "periodic",
        "chaotic",
        "diverge",
    }


def test_choice_of_path(monkeypatch):
    monkeypatch.delenv("SHARPSK_NO_NUMBA", raising=False)
    core = compiled_core(True)
    assert core is not None and compiled_core(False) is None
    assert compiled_core(None, 4096, 10_000) is core
    for value, numpy_path in [("1", True), ("yes", True), ("0", False), ("", False)]:
        monkeypatch.setenv("SHARPSK_NO_NUMBA", value)
        assert (compiled_core(None, 4096, 10_000) is None) is numpy_path
    assert compiled_core(True) is core  # an explicit request wins
    # Small scans do not import numba; once it is loaded, they use it too.
    monkeypatch.delenv("SHARPSK_NO_NUMBA")
    assert compiled_core(None, 10, 100) is core
    monkeypatch.delitem(sys.modules, "sharpsk._uv_numba")
    monkeypatch.setattr(uv_batched, "_numpy_seconds", 0.0)
    assert compiled_core(None, 10, 100) is None
    assert compiled_core(None, 4096, 10_000) is not None


def test_many_small_blocks_load_the_core(monkeypatch):
    # Regression: the choice was made per block, so a scan of 10^6 runs of
    # 1000 steps (blocks of 4096 runs, 0.056 s of numpy each) never used the
    # compiled core; the stepping a process has done now counts.
    monkeypatch.delenv("SHARPSK_NO_NUMBA", raising=False)
    monkeypatch.delitem(sys.modules, "sharpsk._uv_numba", raising=False)
    monkeypatch.setattr(uv_batched, "_numpy_seconds", 0.0, raising=False)
    assert [compiled_core(None, 4096, 1000) is None for _ in range(4)] == [
        True,
        True,
        True,
        False,
    ]


def test_record_buffers_are_kept_and_never_shared(monkeypatch):
    monkeypatch.setattr(uv_batched, "_free_buffers", [])
    a, b = uv_batched._take_buffers(100), uv_batched._take_buffers(100)
    assert a is not b and a.shape == (2, 100)  # two blocks at once: two
    uv_batched._give_back(a)
    assert uv_batched._take_buffers(50) is a  # large enough: kept, reused
    assert uv_batched._take_buffers(50) is not a  # taken: not handed twice
    big = np.empty((2, uv_batched._KEPT_BUFFER_BYTES // 8))
    uv_batched._give_back(big)
    assert uv_batched._free_buffers == []  # too large to keep
    # the kernel gives its buffers back, and the numbers do not depend on them
    args = kernel_args(rates=[0.5, 1.1, 1.5], max_iter=300)
    kw = {"analysis": ANALYSIS, "n_tail_points": 4}
    first = uv_batched_runs(*args, compiled=True, **kw)
    assert len(uv_batched._free_buffers) == 1
    assert_kernel_outputs_equal(uv_batched_runs(*args, compiled=True, **kw), first)


def test_threads_loading_the_core_at_once_get_it_whole():
    # Regression: a scan on the threading backend in a fresh process raised
    # AttributeError ("partially initialized module"): a thread found the
    # core in sys.modules while another thread was still importing it.
    code = """
import threading
from sharpsk._uv_batched import compiled_core
barrier, got = threading.Barrier(4), []
def load():
    barrier.wait()
    got.append(hasattr(compiled_core(None, 4096, 10_000), "uv_tail_statistics"))
threads = [threading.Thread(target=load) for _ in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(got)
"""
    env = {k: v for k, v in os.environ.items() if k != "SHARPSK_NO_NUMBA"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["[True,", "True,", "True,", "True]"]


def test_without_numba_the_numpy_path_runs(monkeypatch):
    args = kernel_args(rates=[0.5, 1.1, 1.5, 2.5], max_iter=300)
    kw = {"analysis": ANALYSIS, "n_tail_points": 4}
    expected = uv_batched_runs(*args, compiled=True, **kw)
    monkeypatch.delenv("SHARPSK_NO_NUMBA", raising=False)
    monkeypatch.setitem(sys.modules, "numba", None)  # import numba fails
    monkeypatch.delitem(sys.modules, "sharpsk._uv_numba")
    monkeypatch.delattr(sharpsk, "_uv_numba")
    assert compiled_core(None, 4096, 10_000) is None
    with pytest.raises(ImportError):
        compiled_core(True)
    assert_kernel_outputs_equal(uv_batched_runs(*args, **kw), expected)
