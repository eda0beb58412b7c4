"""Scans at scale (issue 11): per-run caching, every joblib backend for every
engine, full traces, param_grid, to_frame and the Parquet stream."""

import os

import joblib
import numpy as np
import pytest
from numpy.testing import assert_array_equal
from sklearn.base import clone

import sharpsk._scan as scan_module
import sharpsk._uv as uv_module
from sharpsk import LearningRateScan, UVRegressor

X1, Y1 = np.ones((1, 4)) / 2.0, np.array([1.0])
UV1 = UVRegressor(width=1, max_iter=400, record_every=3, random_state=3)
RATES = [0.5, 1.1, 1.25, 1.5, 2.5]  # converge, eos, periodic, chaotic, diverge


def multi_example_data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3, 2))
    return X, X @ np.array([1.0, -0.5])


def assert_results_equal(a, b, skip=()):
    assert [k for k in a if k not in skip] == [k for k in b if k not in skip]
    for key in a:
        if key not in skip:
            assert_array_equal(np.asarray(a[key]), np.asarray(b[key]), err_msg=key)


def uv_scan(**kw):
    kw = {"learning_rates": RATES, "lr_units": "critical", "progress": False, **kw}
    return LearningRateScan(UV1, **kw)


class KernelCalls:
    """Records the calls of the batched UV kernel made in this process: the
    learning rates of each block and the process that ran it."""

    def __init__(self, monkeypatch):
        self.blocks, self.pids = [], []
        kernel = uv_module.uv_batched_runs

        def recorded(**kwargs):
            self.blocks.append(np.asarray(kwargs["eta"]))
            self.pids.append(os.getpid())
            return kernel(**kwargs)

        monkeypatch.setattr(uv_module, "uv_batched_runs", recorded)

    @property
    def n_runs(self):
        return sum(b.size for b in self.blocks)

    def clear(self):
        self.blocks.clear()
        self.pids.clear()


# --------------------------------------------------------------------------
# Per-run caching
# --------------------------------------------------------------------------


def test_extended_grid_recomputes_exactly_one_run(tmp_path, monkeypatch):
    counter = KernelCalls(monkeypatch)
    first = uv_scan(memory=tmp_path).fit(X1, Y1)
    assert counter.n_runs == 5 and first.n_cached_ == 0
    counter.clear()
    extended = uv_scan(learning_rates=[*RATES, 1.2], memory=tmp_path).fit(X1, Y1)
    assert counter.n_runs == 1 and extended.n_cached_ == 5
    counter.clear()
    subset = uv_scan(learning_rates=RATES[3:0:-1], memory=tmp_path).fit(X1, Y1)
    assert counter.n_runs == 0 and subset.n_cached_ == 3
    fresh = uv_scan(learning_rates=[*RATES, 1.2]).fit(X1, Y1)
    assert_results_equal(extended.results_, fresh.results_)
    assert_results_equal(extended.trace_tails_, fresh.trace_tails_)
    # The batched and per-run engines share their cache (identical numbers).
    per_run = uv_scan(engine="per_run", memory=tmp_path).fit(X1, Y1)
    assert per_run.n_cached_ == 5


def test_cache_key_changes_with_what_changes_the_run(tmp_path):
    base = uv_scan(memory=tmp_path).fit(X1, Y1)
    assert base.n_cached_ == 0
    assert uv_scan(memory=tmp_path, max_period=32).fit(X1, Y1).n_cached_ == 0
    assert uv_scan(memory=tmp_path, n_tail_points=8).fit(X1, Y1).n_cached_ == 0
    other = clone(UV1).set_params(random_state=4)
    scan = LearningRateScan(
        other,
        learning_rates=RATES,
        lr_units="critical",
        memory=tmp_path,
        progress=False,
    ).fit(X1, Y1)
    assert scan.n_cached_ == 0
    assert uv_scan(memory=tmp_path).fit(X1, 2 * Y1).n_cached_ == 0
    assert uv_scan(memory=tmp_path).fit(X1, Y1).n_cached_ == 5


def test_data_is_fingerprinted_once(tmp_path, monkeypatch):
    X, y = multi_example_data()
    calls = []
    fingerprint = scan_module.fingerprint

    def counted(*objects):
        calls.append(any(o is X or isinstance(o, np.ndarray) for o in objects))
        return fingerprint(*objects)

    monkeypatch.setattr(scan_module, "fingerprint", counted)
    est = UVRegressor(width=4, max_iter=20, random_state=0)
    LearningRateScan(
        est,
        learning_rates=np.linspace(0.1, 0.5, 6),
        memory=tmp_path,
        progress=False,
    ).fit(X, y)
    assert sum(calls) == 1  # X and y, once for six runs


def test_fully_cached_scan_starts_no_worker(tmp_path, monkeypatch):
    X, y = multi_example_data()
    est = UVRegressor(width=4, max_iter=20, random_state=0)
    kw = {"learning_rates": [0.1, 0.2, 0.3], "memory": tmp_path, "progress": False}
    first = LearningRateScan(est, **kw).fit(X, y)

    def no_workers(*args, **kwargs):
        raise AssertionError("a worker pool was started")

    monkeypatch.setattr(scan_module, "Parallel", no_workers)
    again = LearningRateScan(est, n_jobs=2, **kw).fit(X, y)
    assert again.n_cached_ == 3
    assert_results_equal(first.results_, again.results_)


# --------------------------------------------------------------------------
# Every engine through joblib, every backend
# --------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["loky", "threading", "multiprocessing"])
@pytest.mark.parametrize("engine", ["batched", "per_run"])
def test_every_backend_gives_identical_numbers(engine, backend):
    ref = uv_scan(engine=engine, n_jobs=1).fit(X1, Y1)
    assert ref.engine_ == engine
    with joblib.parallel_config(backend=backend):
        scan = uv_scan(engine=engine, n_jobs=2).fit(X1, Y1)
    assert_results_equal(ref.results_, scan.results_)
    assert_results_equal(ref.trace_tails_, scan.trace_tails_)


def test_batched_blocks_are_split_across_workers(monkeypatch):
    calls = KernelCalls(monkeypatch)
    with joblib.parallel_config(backend="threading"):
        uv_scan(learning_rates=np.linspace(0.5, 1.5, 16), n_jobs=2).fit(X1, Y1)
    assert calls.n_runs == 16 and len(calls.blocks) == 4  # two blocks per worker


@pytest.mark.parametrize("n_runs", [3, 50, 101])
def test_blocks_respect_max_block_and_hold_every_run_once(monkeypatch, n_runs):
    calls = KernelCalls(monkeypatch)
    monkeypatch.setattr(uv_module, "_MAX_BLOCK", 7)
    rates = np.linspace(0.5, 1.5, n_runs)
    with joblib.parallel_config(backend="threading"):
        scan = uv_scan(learning_rates=rates, n_jobs=2).fit(X1, Y1)
    blocks = calls.blocks
    assert max(b.size for b in blocks) <= 7
    assert len(blocks) % 2 == 0 or len(blocks) == n_runs  # balanced
    seen = np.sort(np.concatenate(blocks))
    assert_array_equal(seen, np.sort(scan.results_["learning_rate"]))
    assert np.unique(seen).size == n_runs


def test_compiled_uv_blocks_run_in_threads(monkeypatch):
    # The compiled UV kernel releases the GIL: its blocks run in threads of
    # this process by default (no worker to start, no result to copy), on
    # numpy in processes; a backend the user sets wins.
    pytest.importorskip("numba")
    calls = KernelCalls(monkeypatch)
    monkeypatch.delenv("SHARPSK_NO_NUMBA", raising=False)
    assert UV1.batched_engine(X1, Y1).prefer == "threads"
    ref = uv_scan(n_jobs=1).fit(X1, Y1)
    calls.clear()
    scan = uv_scan(n_jobs=2).fit(X1, Y1)
    assert calls.pids == [os.getpid()] * 4  # 2 blocks per thread
    assert_results_equal(ref.results_, scan.results_)
    calls.clear()
    with joblib.parallel_config(backend="loky"):
        uv_scan(n_jobs=2).fit(X1, Y1)
    assert calls.pids == []  # run in the loky workers
    monkeypatch.setenv("SHARPSK_NO_NUMBA", "1")
    assert UV1.batched_engine(X1, Y1).prefer is None


def test_initial_fits_of_compiled_uv_scans_run_in_threads(monkeypatch):
    # Short fits: no process pool is started for them (it took 1.1 s of a
    # 1.8 s first scan over three widths).
    pytest.importorskip("numba")
    monkeypatch.delenv("SHARPSK_NO_NUMBA", raising=False)
    pids = []
    fit = scan_module._initial_fit

    def recorded(*args):
        pids.append(os.getpid())
        return fit(*args)

    monkeypatch.setattr(scan_module, "_initial_fit", recorded)
    scan = uv_scan(param_grid={"width": [1, 2]}, n_jobs=2).fit(X1, Y1)
    assert scan.engine_ == "batched"
    assert pids == [os.getpid()] * 2


def test_initial_sharpness_fits_run_in_parallel_with_identical_numbers():
    X, y = multi_example_data()
    est = UVRegressor(width=4, max_iter=30)
    kw = {
        "learning_rates": [0.2, 1.0],
        "lr_units": "initial_sharpness",
        "same_init": False,
        "random_state": 0,
        "progress": False,
    }
    ref = LearningRateScan(est, **kw).fit(X, y)
    assert np.unique(ref.results_["initial_sharpness"]).size == 2
    with joblib.parallel_config(backend="threading"):
        other = LearningRateScan(est, n_jobs=2, **kw).fit(X, y)
    assert_results_equal(ref.results_, other.results_)


def test_dask_runs_batched_blocks(tmp_path):
    distributed = pytest.importorskip("distributed")
    import dask

    ref = uv_scan(learning_rates=np.linspace(0.5, 2.5, 12)).fit(X1, Y1)
    with (
        dask.config.set({"temporary-directory": str(tmp_path)}),
        distributed.LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        with joblib.parallel_config(backend="dask"):
            scan = uv_scan(learning_rates=np.linspace(0.5, 2.5, 12)).fit(X1, Y1)
        tasks = client.run_on_scheduler(
            lambda dask_scheduler: len(dask_scheduler.transition_log)
        )
    assert scan.engine_ == "batched" and tasks > 0  # the scheduler saw tasks
    assert_results_equal(ref.results_, scan.results_)


# --------------------------------------------------------------------------
# Results out: full traces, param_grid, to_frame, Parquet
# --------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::sharpsk.DivergenceWarning")
def test_full_traces_equal_the_fits():
    batched = uv_scan(n_tail_points=None).fit(X1, Y1)
    per_run = uv_scan(n_tail_points=None, engine="per_run").fit(X1, Y1)
    assert batched.engine_ == "batched"
    assert_results_equal(batched.results_, per_run.results_)
    assert_results_equal(batched.trace_tails_, per_run.trace_tails_)
    tails = batched.trace_tails_
    for run, eta in enumerate(batched.results_["learning_rate"]):
        fit = clone(UV1).set_params(learning_rate=eta).fit(X1, Y1)
        mine = tails["run"] == run
        assert_array_equal(tails["step"][mine], fit.steps_)
        assert_array_equal(tails["sharpness"][mine], fit.sharpness_trace_)
        assert_array_equal(tails["loss"][mine], fit.loss_curve_)
    assert batched.results_["diverged"][-1]  # its finite prefix is kept


def test_param_grid_keeps_types_and_matches_single_scans():
    X, y = multi_example_data()
    est = UVRegressor(max_iter=30, random_state=0)
    grid = {"width": [2, 4], "init_scale": [0.5, 1.0]}
    scan = LearningRateScan(
        est, learning_rates=[0.1, 0.3], param_grid=grid, progress=False
    ).fit(X, y)
    res = scan.results_
    assert res["param_width"].dtype == np.int64
    assert res["param_init_scale"].dtype == np.float64
    assert scan.labels_.shape == (4, 2)
    assert list(res["params"][:2]) == [{"init_scale": 0.5, "width": 2}] * 2
    frame = scan.to_frame()
    assert frame.index.name == "run" and len(frame) == 8
    assert frame["param_width"].dtype == np.int64
    for params, lam0 in zip(res["params"], res["initial_sharpness"], strict=True):
        ref = clone(est).set_params(max_iter=0, **params).fit(X, y)
        assert lam0 == ref.initial_sharpness_
    single = LearningRateScan(
        est,
        learning_rates=[0.1, 0.3],
        param_name="width",
        param_values=[2, 4],
        progress=False,
    ).fit(X, y)
    assert single.results_["param_width"].dtype == np.int64
    traces = scan.to_frame("traces")
    assert set(traces["run"]) <= set(range(8))
    with pytest.raises(ValueError, match="kind"):
        scan.to_frame("nope")


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"param_grid": {"nope": [1]}}, "param_grid: 'nope'"),
        ({"param_grid": {"width": 3}}, "must be a list"),
        ({"param_grid": [{"width": [1]}, 3]}, "list of dicts"),
        (
            {"param_grid": {"width": [1]}, "param_name": "width", "param_values": [1]},
            "either param_grid",
        ),
    ],
)
def test_bad_param_grid(kw, match):
    with pytest.raises((ValueError, TypeError), match=match):
        uv_scan(**kw).fit(X1, Y1)


def test_results_file_streams_finished_runs(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    path = tmp_path / "scan.parquet"
    scan = uv_scan(results_file=path, n_jobs=1).fit(X1, Y1)
    table = pd.read_parquet(path).sort_values("run").reset_index(drop=True)
    frame = scan.to_frame()
    assert len(table) == 5 and list(table["run"]) == list(range(5))
    for key in ("learning_rate", "label", "period", "final_loss", "settled"):
        assert_array_equal(table[key].to_numpy(), frame[key].to_numpy(), err_msg=key)
    with pytest.raises(ValueError, match="parent directory"):
        uv_scan(results_file=tmp_path / "no" / "x.parquet").fit(X1, Y1)


class FlakyUV(UVRegressor):
    """Interrupts the scan (Ctrl-C) at one learning rate."""

    def fit(self, X, y):
        if self.max_iter > 0 and self.learning_rate == 0.3:
            raise KeyboardInterrupt
        return super().fit(X, y)


def test_killed_scan_keeps_finished_runs_in_file_and_cache(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    X, y = multi_example_data()
    path = tmp_path / "scan.parquet"
    kw = {
        "learning_rates": [0.05, 0.1, 0.2, 0.3, 0.4],
        "memory": tmp_path / "cache",
        "results_file": path,
        "progress": False,
    }
    with pytest.raises(KeyboardInterrupt):
        LearningRateScan(FlakyUV(width=4, max_iter=30, random_state=0), **kw).fit(X, y)
    table = pd.read_parquet(path)
    assert sorted(table["learning_rate"]) == [0.05, 0.1, 0.2]
    scan = LearningRateScan(UVRegressor(width=4, max_iter=30, random_state=0), **kw)
    assert scan.fit(X, y).n_cached_ == 0  # another estimator class: other keys
    resumed = LearningRateScan(FlakyUV(width=4, max_iter=30, random_state=0), **kw)
    with pytest.raises(KeyboardInterrupt):
        resumed.fit(X, y)
    assert len(pd.read_parquet(path)) == 3  # found in the cache, streamed again


def test_merged_tails_of_blocks_in_any_order():
    # Blocks arrive in any order and cover any runs (a worker's block, cached
    # runs picked out of stored blocks), as per-run records or as a batched
    # kernel's common steps and rows (a diverged run keeps none): the
    # records come out in run order.
    rng = np.random.default_rng(0)
    per_run = []
    for run in range(9):
        n = int(rng.integers(0, 5))
        per_run.append((np.arange(n) + 10 * run, rng.random(n), rng.random(n)))
    steps = np.array([5, 6, 7])
    for run in (9, 10, 11):  # run 10 diverged
        n = 0 if run == 10 else 3
        per_run.append((steps[:n], rng.random(n), rng.random(n)))
    collected = scan_module._Collected(12)
    pieces = [([3, 4, 5], [0, 1, 2]), ([8, 0], [1, 0]), ([7, 1, 2, 6], [3, 0, 2, 1])]
    for index, rows in pieces:
        stored = [None] * len(rows)  # the block, its runs in its own order
        for i, r in zip(index, rows, strict=True):
            stored[r] = per_run[i]
        block = {"columns": {"run": np.zeros(len(rows))}, "tails": stored}
        collected.fill(np.array(index), block, np.array(rows))
    # a batched kernel's block of runs 11, 9, 10 (rows 0, 1, 2), two read
    sharp, loss = rng.random((3, 3)), rng.random((3, 3))
    for run, row in ((11, 0), (9, 1)):
        per_run[run] = (steps, sharp[row], loss[row])
    kernel = {
        "label": np.array(["eos"] * 3),
        "diverged": np.array([False, False, True]),
        "tail_steps": steps,
        "tail_sharpness": sharp,
        "tail_loss": loss,
    }
    collected.fill(np.array([9, 11]), scan_module._as_block(kernel), np.array([1, 0]))
    collected.fill(np.array([10]), scan_module._as_block(kernel), np.array([2]))
    out = scan_module._merge_tails(collected.tails, 12)
    assert out["lengths"].tolist() == [t[0].size for t in per_run]
    for k, key in enumerate(("step", "sharpness", "loss")):
        np.testing.assert_array_equal(out[key], np.concatenate([t[k] for t in per_run]))
