"""Smoke test of ``benchmarks/run.py`` in a tiny configuration.

No timing is asserted (machines are shared and noisy): only that every
benchmark runs, the table and the raw JSON are written and hold what they
should.  Also checks that the labelling chunk size of the batched UV scan (a
speed and memory knob) leaves every number unchanged.
"""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

RUN_PY = Path(__file__).resolve().parents[1] / "benchmarks" / "run.py"

TINY = {
    "uv_scan": {
        "n_lr": 40,
        "n_steps": 200,
        "repeats": 1,
        "per_run_subset": 2,
        "per_run_repeats": 1,
    },
    "hvp": {
        "hidden": (8,),
        "n_samples": 40,
        "threads": (1,),
        "repeats": 1,
        "block": 1,
    },
    "sharpness": {
        "hidden": (6,),
        "n_samples": 40,
        "n_steps": 8,
        "cold_every": 4,
        "dense_hidden": (3,),
        "dense_n_samples": 30,
        "dense_steps": 4,
    },
    "parallel": {
        "hidden": (4,),
        "n_samples": 40,
        "n_lr": 2,
        "max_iter": 4,
        "record_every": 2,
        "repeats": 1,
    },
    "memory": {
        "uv_n_lr": 40,
        "uv_n_steps": 200,
        "mlp_hidden": (4,),
        "mlp_n_samples": 40,
        "mlp_steps": (5, 10),
    },
    "optimizers": {
        "hidden": (4,),
        "n_samples": 40,
        "max_iter": 4,
        "repeats": 1,
        "kernel_calls": 2,
    },
    "blas_threads": {
        "hidden": (4,),
        "n_samples": 40,
        "max_iter": 4,
        "repeats": 1,
        "kernel_calls": 2,
        "kernel_repeats": 1,
        "large_hidden": (8,),
        "large_n_samples": 40,
        "large_kernel_calls": 1,
    },
    "uv_vs_mlp": {
        "width": 8,
        "n_samples": 5,
        "n_features": 3,
        "max_iter": 5,
        "repeats": 1,
    },
    "topk": {"hidden": (4,), "n_samples": 40, "max_iter": 5, "seeds": 1},
    "scan_cache": {
        "uv_n_lr": 20,
        "uv_steps": 50,
        "n_samples": 20,
        "n_features": 4,
        "n_runs": 2,
    },
    "mlp_batched": {
        "hidden": (4,),
        "n_samples": 40,
        "n_lr": 3,
        "max_iter": 20,
        "record_every": 5,
        "repeats": 1,
        "small_hidden": (3,),
        "small_n_samples": 30,
        "small_repeats": 1,
    },
    "eos_tracking": {
        "hidden": (6,),
        "n_samples": 40,
        "n_steps": 8,
        "ref_every": 4,
        "fit_repeats": 1,
    },
}


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("sharpsk_benchmarks_run", RUN_PY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiny_run_writes_the_table(bench, tmp_path):
    report = bench.run(quick=True, configs=TINY, out_dir=tmp_path, echo=lambda s: None)
    assert set(report["details"]) == set(bench.BENCHMARKS)
    text = (tmp_path / "RESULTS.md").read_text()
    assert "| benchmark | measured | reference | ratio | target | met? |" in text
    for name in (
        "UV scan",
        "MLP HVP",
        "Sharpness",
        "Parallel MLP scan",
        "Memory",
        "Optimizer adam",
        "BLAS threads",
        "UV vs MLP",
        "Batched MLP engine",
    ):
        assert f"| {name}" in text
    for word in ("CPU:", "Load average", "Thread pools", "Versions:", "numpy"):
        assert word in text
    n_table = sum(1 for line in text.splitlines() if line.startswith("| "))
    assert n_table == len(report["rows"]) + 1  # header + one line per row
    raw = json.loads((tmp_path / "results.json").read_text())
    assert raw["quick"] is True and len(raw["rows"]) == len(report["rows"])
    for r in raw["rows"]:
        assert r["met"] in (True, False, None)
    # numbers that are not timings: exact checks
    if "skipped" not in raw["details"]["hvp"]:
        assert raw["details"]["hvp"]["agree_rtol_1e-10"] is True
    dense = raw["details"]["sharpness"]["dense_check"]
    assert dense["reference_vs_dense_max_rel_diff"] <= 1e-10
    # the UV model and the identity MLP without biases are the same network
    assert raw["details"]["uv_vs_mlp"]["agree"] is True
    # the batched MLP engine gives the per-run numbers
    assert raw["details"]["mlp_batched"]["agree"] is True
    # the UV scan's paths and n_jobs agree; the two floors too
    uv = raw["details"]["uv_scan"]
    assert uv["paths_and_n_jobs_agree"] is True
    assert uv["numba_floor_equals_numpy_floor"] in (True, None)
    assert set(raw["details"]["optimizers"]["by_optimizer"]) == {
        "gd",
        "momentum",
        "nesterov",
        "rmsprop",
        "adam",
    }


def test_merge_keeps_the_other_benchmarks(bench, tmp_path):
    quiet = {"quick": True, "configs": TINY, "out_dir": tmp_path}
    quiet["echo"] = lambda line: None
    first = bench.run(["uv_vs_mlp"], **quiet)
    second = bench.run(["blas_threads"], merge=True, **quiet)
    assert list(second["details"]) == ["blas_threads", "uv_vs_mlp"]  # run order
    assert set(second["kept"]) == {"uv_vs_mlp"}
    n_rows = len(first["rows"]) + sum(
        r["bench"] == "blas_threads" for r in second["rows"]
    )
    assert len(second["rows"]) == n_rows
    raw = json.loads((tmp_path / "results.json").read_text())
    assert [r["bench"] for r in raw["rows"]] == [r["bench"] for r in second["rows"]]
    text = (tmp_path / "RESULTS.md").read_text()
    assert "| UV vs MLP" in text and "| BLAS threads" in text
    assert "Rows of `uv_vs_mlp` kept from an earlier run" in text
    # without merge the file holds this run only
    third = bench.run(["blas_threads"], **quiet)
    assert (
        "kept" not in third
        and "| UV vs MLP" not in (tmp_path / "RESULTS.md").read_text()
    )


def test_bare_uv_loop_is_the_map(bench):
    from sharpsk._maps import uv_step

    rng = np.random.default_rng(0)
    df, ntk = rng.normal(size=5), rng.uniform(1.0, 2.0, 5)
    eta = rng.uniform(0.1, 0.5, 5)
    out = bench._bare_uv_loop(df, ntk, eta, 0.3, 1.5, 3)
    ref = (df, ntk)
    for _ in range(3):
        ref = uv_step(*ref, eta, 0.3, 1.5)
    np.testing.assert_array_equal(out[0], ref[0])
    np.testing.assert_array_equal(out[1], ref[1])


def test_uv_floors_flush_like_the_stepper(bench):
    from sharpsk._maps import uv_simulate

    # flushed to exactly 0 (unflushed: 1.9e-274), converging, oscillating, chaotic
    eta = np.array([0.3, 0.9, 1.2, 1.45, 1.55])
    args = (np.full(5, -1.0), np.full(5, 1.0), eta, 1.0, 1.0)
    sim = uv_simulate(*args, 600, record_every=600)
    assert sim["final"][0][0] == 0.0 and sim["final"][0][1] != 0.0
    floors = [bench._bare_uv_loop]
    if bench._numba_uv_floor() is not None:
        floors.append(bench._numba_uv_floor())
    for floor in floors:
        df, ntk = floor(*args, 600)
        np.testing.assert_array_equal(df, sim["final"][0])
        np.testing.assert_array_equal(ntk, sim["final"][1])


def test_uv_batched_chunk_size_changes_no_number():
    from sharpsk._uv_batched import uv_batched_runs

    n = 23
    eta = np.linspace(0.05, 0.35, n)
    analysis = {
        "tail": None,
        "max_period": 8,
        "rtol": 1e-6,
        "edge_band": (0.875, 1.25),
        "lyapunov_tol": 1e-3,
    }
    args = (np.full(n, -10.0), np.full(n, 2.0), eta, 0.01, np.full(n, 10.0), 300, 1)
    a = uv_batched_runs(*args, analysis=analysis, n_tail_points=8)
    b = uv_batched_runs(*args, analysis=analysis, n_tail_points=8, chunk_size=5)
    assert set(a) == set(b)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
