"""sharpsk benchmarks: every figure a ratio against a reference of the same run.

Usage::

    python benchmarks/run.py            # full run (several minutes)
    python benchmarks/run.py --quick    # small sizes, about half a minute
    python benchmarks/run.py --only hvp sharpness
    python benchmarks/run.py --only optimizers --merge  # keep the other rows

Writes ``benchmarks/RESULTS.md`` (table, machine, versions) and
``benchmarks/results.json`` (every raw number).  Machines here are shared and
noisy, so timings are the minimum of ``k`` repeats, with candidate and reference
interleaved (alternating order) in the same process.  See
``benchmarks/README.md`` for what each benchmark measures and why.
"""

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import time
import tracemalloc
import warnings
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

# --------------------------------------------------------------------------
# Configurations
# --------------------------------------------------------------------------
FULL = {
    "uv_scan": {
        "n_lr": 10_000,
        "n_steps": 10_000,
        "c_range": (0.5, 3.0),
        "target": 10.0,
        "width": 100,
        "repeats": 5,
        "per_run_subset": 100,
        "per_run_repeats": 2,
        # one 10^6-run scan with n_jobs=2 (a size, not a target); None: skipped
        "big_n_lr": 1_000_000,
        "big_max_iter": 1_000,
    },
    "hvp": {
        "hidden": (256, 256),
        "n_samples": 1000,
        "threads": (1, 2),
        "repeats": 6,
        "block": 5,
    },
    "sharpness": {
        "hidden": (32,),
        "n_samples": 500,
        "c": 3.0,
        "n_steps": 1200,
        "tol": 1e-4,
        "cold_every": 10,
        "dense_hidden": (8,),
        "dense_n_samples": 200,
        "dense_steps": 300,
    },
    "parallel": {
        "hidden": (32,),
        "n_samples": 500,
        "n_lr": 8,
        "max_iter": 300,
        "record_every": 10,
        "repeats": 3,
    },
    "memory": {
        "uv_n_lr": 10_000,
        "uv_n_steps": 10_000,
        "mlp_hidden": (32,),
        "mlp_n_samples": 300,
        "mlp_steps": (1_000, 10_000),
    },
    "optimizers": {
        "hidden": (32,),
        "n_samples": 500,
        "max_iter": 200,
        "sharpness_tol": 1e-6,  # the estimators' default
        # (learning_rate, lr_units) per optimizer: stable runs, loss down 14-48x
        "learning_rates": {
            "gd": (1.0, "initial_sharpness"),
            "momentum": (1.0, "initial_sharpness"),
            "nesterov": (1.0, "initial_sharpness"),
            "rmsprop": (1e-3, "absolute"),
            "adam": (1e-3, "absolute"),
        },
        "repeats": 5,
        "kernel_calls": 50,
        "per_product_target": 2.0,
    },
    "blas_threads": {
        "hidden": (32,),
        "n_samples": 500,
        "max_iter": 150,
        "repeats": 7,
        "kernel_calls": 50,
        "kernel_repeats": 9,
        "large_hidden": (256, 256),
        "large_n_samples": 1000,
        "large_kernel_calls": 5,
        "target": 1.1,
    },
    "uv_vs_mlp": {
        "width": 64,
        "n_samples": 50,
        "n_features": 10,
        "learning_rate": 0.5,  # in units of the initial sharpness
        "max_iter": 200,
        "repeats": 5,
        "target": 2.0,
    },
    "scan_cache": {
        "uv_n_lr": 10_000,
        "uv_steps": 1_000,
        "n_samples": 5000,
        "n_features": 3072,
        "n_runs": 16,
    },
    "topk": {
        "hidden": (32,),
        "n_samples": 500,
        "max_iter": 200,
        "ks": (1, 5),
        "tol": 1e-6,
        "seeds": 5,
        "power_tol": 1e-3,
        "power_max_iter": 100,
    },
    "mlp_batched": {
        "hidden": (64,),
        "n_samples": 500,
        "n_lr": 64,
        "max_iter": 500,
        "record_every": 10,
        "c_range": (0.5, 5.0),
        "repeats": 2,
        "target": 5.0,
        # a network where engine="auto" picks the batched engine
        "small_hidden": (16,),
        "small_n_samples": 100,
        "small_repeats": 3,
    },
    "eos_tracking": {
        "hidden": (256, 256),
        "n_samples": 1000,
        "c": 4.0,  # eta * lambda_0: catapult, progressive sharpening, then EoS
        "n_steps": 220,
        "tol": 1e-4,  # TopEigenTracker's default
        # the loosest of 1e-2, 3e-3, 1e-3 keeping torch.lobpcg within tol of
        # the reference on this run (3e-3: errors up to 7e-4)
        "lobpcg_tol": 1e-3,
        "lobpcg_niter": 200,
        "power_tol": 1e-3,  # PyHessian's defaults
        "power_max_iter": 100,
        "ref_every": 20,
        "ref_tol": 1e-10,
        "fit_repeats": 2,
    },
}

QUICK = {
    "uv_scan": {
        **FULL["uv_scan"],
        "n_lr": 1_000,
        "n_steps": 1_000,
        "per_run_subset": 20,
        "per_run_repeats": 1,
        "big_n_lr": None,
    },
    "hvp": {**FULL["hvp"], "n_samples": 500, "repeats": 3, "block": 3},
    "sharpness": {
        **FULL["sharpness"],
        "n_steps": 150,
        "cold_every": 25,
        "dense_steps": 20,
    },
    "parallel": {**FULL["parallel"], "n_lr": 4, "max_iter": 60, "repeats": 2},
    "memory": {
        **FULL["memory"],
        "uv_n_lr": 1_000,
        "uv_n_steps": 1_000,
        "mlp_steps": (100, 1_000),
    },
    "optimizers": {
        **FULL["optimizers"],
        "max_iter": 40,
        "repeats": 1,
        "kernel_calls": 10,
    },
    "blas_threads": {
        **FULL["blas_threads"],
        "max_iter": 30,
        "repeats": 3,
        "kernel_calls": 10,
        "kernel_repeats": 3,
        "large_n_samples": 500,
        "large_kernel_calls": 2,
    },
    "uv_vs_mlp": {**FULL["uv_vs_mlp"], "max_iter": 50, "repeats": 2},
    "topk": {**FULL["topk"], "n_samples": 200, "max_iter": 50, "seeds": 2},
    "scan_cache": {
        **FULL["scan_cache"],
        "uv_n_lr": 1000,
        "n_samples": 1000,
        "n_features": 512,
        "n_runs": 8,
    },
    "mlp_batched": {
        **FULL["mlp_batched"],
        "n_lr": 16,
        "max_iter": 150,
        "repeats": 1,
        "small_repeats": 1,
    },
    "eos_tracking": {
        **FULL["eos_tracking"],
        "hidden": (64, 64),
        "n_samples": 300,
        "n_steps": 60,
        "ref_every": 15,
        "fit_repeats": 1,
    },
}


# --------------------------------------------------------------------------
# Timing and bookkeeping helpers
# --------------------------------------------------------------------------
def interleaved_min(funcs, repeats, block=1):
    """Minimum wall time of each callable over ``repeats`` interleaved rounds.

    Every round calls all of ``funcs`` (a dict name -> callable), in an order
    rotated from round to round, so slow phases of a shared machine hit
    candidate and reference alike.  Each call is repeated ``block`` times in a
    row (all timed): with several thread pools in one process (OpenBLAS,
    OpenMP), the first call after switching libraries can pay for the other
    pool's threads still spinning.  Returns ``(minima, samples)``.
    """
    names = list(funcs)
    samples = {name: [] for name in names}
    for r in range(repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            gc.collect()
            for _ in range(block):
                start = time.perf_counter()
                funcs[name]()
                samples[name].append(time.perf_counter() - start)
    return {name: min(s) for name, s in samples.items()}, samples


def row(benchmark, measured, reference, ratio, target, met, note=""):
    """One line of the results table (numbers as display strings + raw)."""
    return {
        "benchmark": benchmark,
        "measured": measured,
        "reference": reference,
        "ratio": ratio,
        "target": target,
        "met": met,
        "note": note,
    }


def _fmt_time(seconds):
    if seconds >= 1.0:
        return f"{seconds:.3g} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds * 1e6:.3g} µs"


def _fmt_bytes(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.3g} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024.0
    return f"{n:.3g} GiB"  # pragma: no cover


@contextmanager
def blas_threads(n):
    """Limit BLAS/OpenMP threads of numpy, scipy (and torch if imported)."""
    from threadpoolctl import threadpool_limits

    torch = sys.modules.get("torch")
    old = torch.get_num_threads() if torch is not None else None
    with threadpool_limits(limits=n):
        if torch is not None:
            torch.set_num_threads(n)
        try:
            yield
        finally:
            if torch is not None:
                torch.set_num_threads(old)


# --------------------------------------------------------------------------
# 1. UV learning-rate scan, batched
# --------------------------------------------------------------------------
def _uv_problem(cfg):
    from sharpsk import UVRegressor
    from sharpsk.datasets import make_uv_example

    X, y = make_uv_example(random_state=0, target=cfg["target"])
    est = UVRegressor(width=cfg["width"], max_iter=cfg["n_steps"], random_state=0)
    c = np.linspace(*cfg["c_range"], cfg["n_lr"])
    return X, y, est, c


def _bare_uv_loop(delta_f0, ntk0, eta, kappa, y, n_steps):
    """The numpy floor: the exact function-space map, in place, nothing else.

    ``df' = df (1 - eta ntk + eta^2 kappa df (df + y))`` and
    ``ntk' = ntk + eta kappa df (eta ntk df - 4 (df + y))`` for every run at
    once, rounded and flushed as ``sharpsk._maps._UVStepper`` (residuals below
    ``_FLUSH_RATIO`` times the divergence bound set to 0 every
    ``_FLUSH_EVERY`` steps: without it, converged runs crawl through subnormal
    floats, ~100x slower, and the "floor" is slower than the scan); no
    divergence test, no records, no labels.
    """
    from sharpsk._maps import _FLUSH_EVERY, _FLUSH_RATIO, divergence_bound

    df = np.array(delta_f0, dtype=float)
    ntk = np.array(ntk0, dtype=float)
    ek = eta * kappa
    eek = eta * ek  # rounded as _UVStepper rounds it
    flush_below = _FLUSH_RATIO * divergence_bound(df, y)
    a, e, d, j = (np.empty_like(df) for _ in range(4))
    with np.errstate(all="ignore"):
        for t in range(n_steps):
            np.multiply(eta, ntk, out=a)
            np.add(df, y, out=e)
            np.multiply(eek, df, out=d)
            d *= e
            np.multiply(a, df, out=j)
            np.subtract(1.0, a, out=a)
            a += d
            e *= 4.0
            j -= e
            np.multiply(ek, df, out=d)
            d *= j
            ntk += d
            df *= a
            if (t + 1) % _FLUSH_EVERY == 0:
                np.copyto(df, 0.0, where=np.abs(df) < flush_below)
    return df, ntk


def _numba_uv_floor():
    """The compiled floor, ``loop(delta_f0, ntk0, eta, kappa, y, n_steps)``.

    The map and flush of :func:`_bare_uv_loop` in numba, the loop over runs
    inside the loop over steps so that LLVM vectorises across runs (SIMD); no
    ``fastmath``, so it rounds like numpy, bit for bit.  None without numba.
    """
    try:
        from numba import njit
    except ImportError:
        return None
    from sharpsk._maps import _FLUSH_EVERY, _FLUSH_RATIO, divergence_bound

    @njit
    def steps(df, ntk, eta, ek, eek, y, flush_below, n_steps):
        n = df.size
        for t in range(n_steps):
            for i in range(n):
                d = df[i]
                a = eta[i] * ntk[i]
                e = d + y[i]
                g = (eek[i] * d) * e
                j = a * d - e * 4.0
                ntk[i] = ntk[i] + (ek[i] * d) * j
                df[i] = d * ((1.0 - a) + g)
            if (t + 1) % _FLUSH_EVERY == 0:
                for i in range(n):
                    if abs(df[i]) < flush_below[i]:
                        df[i] = 0.0

    def loop(delta_f0, ntk0, eta, kappa, y, n_steps, block=None):
        # block: runs stepped at a time (all steps of a block, then the
        # next: they stay in cache), None for all at once
        df = np.array(delta_f0, dtype=float)
        ntk = np.array(ntk0, dtype=float)
        eta, kappa, y = np.broadcast_arrays(
            *(np.asarray(v, dtype=float) for v in (eta, kappa, y))
        )
        eta, y = np.ascontiguousarray(eta), np.ascontiguousarray(y)
        ek = eta * kappa
        eek = eta * ek
        flush_below = _FLUSH_RATIO * divergence_bound(df, y)
        size = df.size if block is None else int(block)
        for s in range(0, df.size, max(size, 1)):
            b = slice(s, s + size)
            steps(df[b], ntk[b], eta[b], ek[b], eek[b], y[b], flush_below[b], n_steps)
        return df, ntk

    return loop


@contextmanager
def _numpy_uv_path():
    """Force the batched UV engine's numpy path (``SHARPSK_NO_NUMBA=1``)."""
    old = os.environ.get("SHARPSK_NO_NUMBA")
    os.environ["SHARPSK_NO_NUMBA"] = "1"
    try:
        yield
    finally:
        if old is None:
            del os.environ["SHARPSK_NO_NUMBA"]
        else:
            os.environ["SHARPSK_NO_NUMBA"] = old


def _process_tree_rss():
    """Resident memory of this process and its children (psutil), or None."""
    try:
        import psutil
    except ImportError:
        return None
    me = psutil.Process()
    total = me.memory_info().rss
    for child in me.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.Error:
            pass
    return total


def _peak_rss_of(fn, every=0.05):
    """``(result, peak resident bytes of the process tree)`` while ``fn`` runs.

    Sampled every ``every`` seconds in a thread (loky workers included); the
    peak is None without psutil.
    """
    import threading

    peak = [_process_tree_rss()]
    done = threading.Event()

    def sample():
        while not done.wait(every):
            rss = _process_tree_rss()
            if rss is not None:
                peak[0] = max(peak[0], rss)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        result = fn()
    finally:
        done.set()
        thread.join()
    return result, peak[0]


def _big_uv_scan(n_lr, max_iter):
    """One UV scan of ``n_lr`` runs, n_jobs=2: ``(seconds, peak rss, counts)``."""
    from sharpsk import UVRegressor
    from sharpsk._scan import LearningRateScan

    X, y = np.ones((1, 4)) / 2, np.array([1.0])
    scan = LearningRateScan(
        UVRegressor(width=1, max_iter=max_iter, random_state=3),
        learning_rates=np.linspace(0.5, 2.5, n_lr),
        lr_units="critical",
        n_jobs=2,
    )
    start = time.perf_counter()  # the default backend (threads when compiled)
    _, peak = _peak_rss_of(lambda: scan.fit(X, y))
    seconds = time.perf_counter() - start
    labels = scan.results_["label"]
    counts = {k: int(np.sum(labels == k)) for k in np.unique(labels)}
    return seconds, peak, counts


def _uv_scan_phases(fit, core):
    """Seconds spent in each phase of the batched UV kernel during ``fit()``.

    Wraps the kernel's pieces for one call (in this process: run it with
    n_jobs=1): the stepping, the Lyapunov exponents and the labels (the
    compiled tail statistics, or the numpy signals and ``_analyze_batch``);
    ``core`` is the compiled core the scan uses, or None.
    """
    import sharpsk._uv_batched as kernel

    spent = {}
    pieces = [(kernel, "tail_lyapunov", "lyapunov")]
    if core is not None:
        pieces += [
            (core, "uv_advance", "stepping"),
            (core, "uv_tail_statistics", "labels"),
        ]
    else:
        pieces += [
            (kernel, "_advance_numpy", "stepping"),
            (kernel, "_label_signals", "signals"),
            (kernel, "_analyze_batch", "labels"),
        ]
    saved = [(obj, name, getattr(obj, name)) for obj, name, _ in pieces]

    def timed(func, label):
        def call(*args, **kwargs):
            start = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                spent[label] = spent.get(label, 0.0) + time.perf_counter() - start

        return call

    for (obj, name, label), (_, _, func) in zip(pieces, saved, strict=True):
        setattr(obj, name, timed(func, label))
    try:
        start = time.perf_counter()
        fit()
        spent["total"] = time.perf_counter() - start
    finally:
        for obj, name, func in saved:
            setattr(obj, name, func)
    return spent


def _same_results(a, b):
    """Whether two ``results_`` dicts hold the same numbers (NaN equal to NaN)."""
    if set(a) != set(b):
        return False
    for key, x in a.items():
        x, y = np.asarray(x), np.asarray(b[key])
        nan = x.dtype.kind in "fc" and y.dtype.kind in "fc"
        if not np.array_equal(x, y, equal_nan=nan):
            return False
    return True


def bench_uv_scan(cfg):
    """Batched LearningRateScan vs compiled and numpy floors, n_jobs, per run."""
    from joblib import parallel_config

    from sharpsk._scan import LearningRateScan
    from sharpsk._uv import _MAX_BLOCK
    from sharpsk._uv_batched import _COMPILED_BATCH, compiled_core

    X, y, est, c = _uv_problem(cfg)
    n_lr, n_steps = cfg["n_lr"], cfg["n_steps"]

    def scan(lrs, engine, n_jobs=None):
        return LearningRateScan(
            est,
            learning_rates=lrs,
            lr_units="initial_sharpness",
            engine=engine,
            n_jobs=n_jobs,
        ).fit(X, y)

    # The same initial state and learning rates for the floors.
    init = est.function_space_state(X, y)
    lam0 = scan(c[:1], "batched").results_["initial_sharpness"][0]
    eta = c / lam0
    state = [np.full(n_lr, init[k]) for k in ("delta_f0", "ntk0")]
    floor_args = (*state, eta, init["kappa"], init["y"], n_steps)
    # What the scan's blocks will use (decided before anything loads it).
    compiled = compiled_core(None, min(n_lr, _MAX_BLOCK), n_steps)
    numba_loop = _numba_uv_floor()

    result = {}

    def candidate():
        with blas_threads(1):
            result["scan"] = scan(c, "batched", n_jobs=1)

    def numpy_path():
        with blas_threads(1), _numpy_uv_path():
            result["numpy scan"] = scan(c, "batched", n_jobs=1)

    def parallel_2():
        # the default backend: threads for the compiled core (it releases
        # the GIL), loky processes on the numpy path
        result["n_jobs=2"] = scan(c, "batched", n_jobs=2)

    def parallel_2_loky():
        # one BLAS thread per worker: 2 workers x 1 thread on 2 cores
        with parallel_config(backend="loky", inner_max_num_threads=1):
            result["n_jobs=2, loky"] = scan(c, "batched", n_jobs=2)

    funcs = {
        "batched scan": candidate,
        "batched scan n_jobs=2": parallel_2,
        "batched scan n_jobs=2, loky": parallel_2_loky,
        "batched scan, numpy path": numpy_path,
        "numpy floor": lambda: _bare_uv_loop(*floor_args),
    }
    if numba_loop is not None:
        numba_loop(*(a[:2] if np.ndim(a) else a for a in floor_args[:-1]), 2)
        funcs["numba floor"] = lambda: numba_loop(*floor_args)
        # the same loop in blocks of runs the size of the scan's batches
        funcs["numba floor, blocked"] = lambda: numba_loop(
            *floor_args, block=_COMPILED_BATCH
        )
    # Warm-up outside the timings: the compiled core's cache loaded (or
    # compiled once), the loky workers started (and their numba loaded).
    candidate()
    parallel_2()
    parallel_2_loky()
    best, samples = interleaved_min(funcs, cfg["repeats"])
    labels = result["scan"].results_["label"]
    counts = {k: int(np.sum(labels == k)) for k in np.unique(labels)}
    same = all(
        _same_results(result["scan"].results_, result[other].results_)
        for other in ("numpy scan", "n_jobs=2", "n_jobs=2, loky")
    )
    floors_agree = None
    if numba_loop is not None:
        small = tuple(a[:64] if np.ndim(a) else a for a in floor_args[:-1])
        n_check = min(n_steps, 2000)
        floors_agree = all(
            np.array_equal(u, v, equal_nan=True)
            for u, v in zip(
                numba_loop(*small, n_check), _bare_uv_loop(*small, n_check), strict=True
            )
        )

    phases = _uv_scan_phases(candidate, compiled)  # once, outside the timings

    # Per-run path on an evenly spread subset, extrapolated per run.
    sub = c[:: max(1, n_lr // cfg["per_run_subset"])][: cfg["per_run_subset"]]
    per_run, per_run_samples = interleaved_min(
        {"per-run": lambda: scan(sub, "per_run", n_jobs=1)}, cfg["per_run_repeats"]
    )
    per_run_each = per_run["per-run"] / sub.size
    per_run_total = per_run_each * n_lr
    t_scan, t_np = best["batched scan"], best["numpy floor"]
    t_par, t_np_scan = best["batched scan n_jobs=2"], best["batched scan, numpy path"]
    t_loky = best["batched scan n_jobs=2, loky"]
    backend = "threads" if compiled is not None else "loky"
    size = f"{n_lr:.0e} learning rates x {n_steps:.0e} steps"
    engine = "compiled core (numba)" if compiled is not None else "numpy path"
    rows = []
    if numba_loop is not None:
        t_nb = best["numba floor"]
        rows.append(
            row(
                f"UV scan vs numba floor ({size})",
                _fmt_time(t_scan),
                _fmt_time(t_nb),
                f"{t_scan / t_nb:.2f}x slower",
                "<= 3x",
                t_scan / t_nb <= 3.0,
                f"scan ({engine}, n_jobs=1) with divergence tests, records, "
                "labels, Lyapunov exponents; floor: the map and its flush, "
                "SIMD across runs, no fastmath (bit-identical to the numpy "
                "floor). Phases of one scan: "
                + ", ".join(
                    f"{k} {_fmt_time(v)}" for k, v in phases.items() if k != "total"
                )
                + f" of {_fmt_time(phases['total'])}",
            )
        )
        t_blocked = best["numba floor, blocked"]
        rows.append(
            row(
                f"UV scan vs numba floor in blocks of {_COMPILED_BATCH} runs ({size})",
                _fmt_time(t_scan),
                _fmt_time(t_blocked),
                f"{t_scan / t_blocked:.2f}x slower",
                "report",
                None,
                "the same floor, a block of runs stepped to the end before the "
                "next (they stay in cache, as the scan's batches do): a lower "
                "floor than the issue's",
            )
        )
    else:
        rows.append(
            row(
                f"UV scan vs numba floor ({size})",
                "-",
                "-",
                "-",
                "<= 3x",
                None,
                "skipped: numba is not importable (pip install sharpsk[fast])",
            )
        )
    rows += [
        row(
            f"UV scan vs numpy floor ({size})",
            _fmt_time(t_scan),
            _fmt_time(t_np),
            f"{t_scan / t_np:.2f}x",
            "<= 5x",
            t_scan / t_np <= 5.0,
            f"scan: {engine}; floor: the map with the flush of _UVStepper",
        ),
        row(
            f"UV scan, numpy path (SHARPSK_NO_NUMBA=1) vs numpy floor ({size})",
            _fmt_time(t_np_scan),
            _fmt_time(t_np),
            f"{t_np_scan / t_np:.2f}x",
            "report",
            None,
            "the fallback without numba",
        ),
        row(
            f"UV scan, n_jobs=2 vs n_jobs=1 ({size})",
            _fmt_time(t_par),
            _fmt_time(t_scan),
            f"{t_scan / t_par:.2f}x faster",
            ">= 1.7x",
            t_scan / t_par >= 1.7,
            f"the default backend ({backend}: the compiled core releases the "
            f"GIL); load average {os.getloadavg()[0]:.2f}",
        ),
        row(
            f"UV scan, n_jobs=2 on loky processes vs n_jobs=1 ({size})",
            _fmt_time(t_loky),
            _fmt_time(t_scan),
            f"{t_scan / t_loky:.2f}x faster",
            "report",
            None,
            "parallel_config(backend='loky'), 1 BLAS thread per process; "
            "workers started before timing",
        ),
        row(
            f"UV scan vs per-run path ({size})",
            _fmt_time(t_scan),
            _fmt_time(per_run_total),
            f"{per_run_total / t_scan:.0f}x faster",
            ">= 50x",
            per_run_total / t_scan >= 50.0,
            f"per-run measured on {sub.size} learning rates (n_jobs=1), "
            f"{_fmt_time(per_run_each)} per run, extrapolated to {n_lr}",
        ),
    ]
    details = {
        "config": cfg,
        "engine": engine,
        "seconds": {
            "batched_scan": samples["batched scan"],
            "batched_scan_n_jobs_2": samples["batched scan n_jobs=2"],
            "batched_scan_n_jobs_2_loky": samples["batched scan n_jobs=2, loky"],
            "batched_scan_numpy_path": samples["batched scan, numpy path"],
            "numpy_floor": samples["numpy floor"],
            "numba_floor": samples.get("numba floor"),
            "numba_floor_blocked": samples.get("numba floor, blocked"),
            "per_run_subset": per_run_samples["per-run"],
        },
        "per_run_subset_size": int(sub.size),
        "per_run_seconds_each": per_run_each,
        "per_run_extrapolated_seconds": per_run_total,
        "label_counts": counts,
        "phase_seconds": phases,
        "paths_and_n_jobs_agree": bool(same),
        "numba_floor_equals_numpy_floor": floors_agree,
        "ratio_scan_over_numpy_floor": t_scan / t_np,
        "ratio_scan_over_numba_floor": (
            t_scan / best["numba floor"] if numba_loop is not None else None
        ),
        "speedup_n_jobs_2": t_scan / t_par,
        "speedup_n_jobs_2_loky": t_scan / t_loky,
        "speedup_over_per_run": per_run_total / t_scan,
    }
    if cfg.get("big_n_lr"):
        n_big, it_big = cfg["big_n_lr"], cfg["big_max_iter"]
        seconds, peak, big_counts = _big_uv_scan(n_big, it_big)
        rows.append(
            row(
                f"UV scan of {n_big:.0e} learning rates x {it_big} steps, n_jobs=2",
                _fmt_time(seconds),
                "-",
                "-",
                "report",
                None,
                f"{engine}; peak resident memory "
                + ("unknown (no psutil)" if peak is None else _fmt_bytes(peak))
                + " (process and workers, sampled every 50 ms); UVRegressor("
                "width=1), lr_units='critical', default n_tail_points=64",
            )
        )
        details["big_scan"] = {
            "n_lr": n_big,
            "max_iter": it_big,
            "seconds": seconds,
            "peak_rss_bytes": peak,
            "label_counts": big_counts,
        }
    return rows, details


# --------------------------------------------------------------------------
# 2. MLP Hessian-vector product vs PyTorch
# --------------------------------------------------------------------------
def _mlp_setup(hidden, n_samples, seed=0):
    from sharpsk import MLPRegressor
    from sharpsk.datasets import load_digits_onehot

    X, Y = load_digits_onehot(n_samples=n_samples, random_state=seed)
    est = MLPRegressor(hidden, random_state=seed)
    params, mults, _ = est._initialize(X.shape[1], Y.shape[1], np.random.RandomState(0))
    return X, Y, params, mults


def bench_hvp(cfg):
    """sharpsk's analytic gradient/HVP vs PyTorch autograd, float64 on CPU."""
    from sharpsk._mlp_kernels import mlp_gradient, mlp_hvp, mlp_point

    try:
        import torch
    except ImportError:
        msg = "PyTorch not installed (pip install -e .[benchmark])"
        return [row("MLP HVP vs PyTorch", "skipped", "-", "-", "<= 1.3x", None, msg)], {
            "skipped": msg
        }
    X, Y, params, mults = _mlp_setup(cfg["hidden"], cfg["n_samples"])
    rng = np.random.default_rng(1)
    vecs = [rng.standard_normal(p.shape) for p in params]
    t_params = [torch.tensor(p, requires_grad=True) for p in params]
    t_X, t_Y = torch.tensor(X), torch.tensor(Y)
    t_vecs = [torch.tensor(v) for v in vecs]
    n_layers = len(params) // 2

    def t_loss():
        h = t_X
        for i in range(n_layers):
            W, b = t_params[2 * i], t_params[2 * i + 1]
            z = mults[2 * i] * (h @ W) + mults[2 * i + 1] * b
            h = z if i == n_layers - 1 else torch.tanh(z)
        r = h - t_Y
        return 0.5 * (r * r).sum() / t_X.shape[0]

    def t_grad():
        return torch.autograd.grad(t_loss(), t_params)

    def t_hvp_scratch():
        g = torch.autograd.grad(t_loss(), t_params, create_graph=True)
        dot = sum((gi * vi).sum() for gi, vi in zip(g, t_vecs, strict=True))
        return torch.autograd.grad(dot, t_params)

    def s_grad():
        return mlp_gradient(mlp_point(params, X, Y, mults, "tanh"))

    def s_hvp_scratch():
        point = mlp_point(params, X, Y, mults, "tanh")
        mlp_gradient(point)
        return mlp_hvp(point, vecs)

    # agreement: both HVPs and gradients, rtol 1e-10
    hv_s, hv_t = s_hvp_scratch(), t_hvp_scratch()
    g_s, g_t = s_grad(), t_grad()

    def rel(a, b):
        return max(
            float(np.max(np.abs(x - y.detach().numpy())) / np.max(np.abs(x)))
            for x, y in zip(a, b, strict=True)
        )

    hvp_err, grad_err = rel(hv_s, hv_t), rel(g_s, g_t)
    agree = all(
        np.allclose(x, y.detach().numpy(), rtol=1e-10, atol=1e-12 * np.abs(x).max())
        for x, y in zip(hv_s + g_s, hv_t + g_t, strict=True)
    )
    n_params = sum(p.size for p in params)
    rows, details = (
        [],
        {
            "config": cfg,
            "n_params": n_params,
            "max_rel_diff_hvp": hvp_err,
            "max_rel_diff_grad": grad_err,
            "agree_rtol_1e-10": agree,
            "torch_version": torch.__version__,
            "by_threads": {},
        },
    )
    net = "64-" + "-".join(map(str, cfg["hidden"])) + "-10"
    for threads in cfg["threads"]:
        with blas_threads(threads):
            # In a sharpness measurement the forward/backward pass is shared by
            # all products: sharpsk keeps its point, PyTorch its graph.
            point = mlp_point(params, X, Y, mults, "tanh")
            mlp_gradient(point)
            g_graph = torch.autograd.grad(t_loss(), t_params, create_graph=True)

            def t_hvp_reuse(g_graph=g_graph):
                dot = sum(
                    (gi * vi).sum() for gi, vi in zip(g_graph, t_vecs, strict=True)
                )
                return torch.autograd.grad(dot, t_params, retain_graph=True)

            def s_hvp_reuse(point=point):
                return mlp_hvp(point, vecs)

            best, samples = interleaved_min(
                {
                    "sharpsk gradient": s_grad,
                    "torch gradient": t_grad,
                    "sharpsk HVP (shared pass)": s_hvp_reuse,
                    "torch HVP (retained graph)": t_hvp_reuse,
                    "sharpsk HVP (from scratch)": s_hvp_scratch,
                    "torch HVP (from scratch)": t_hvp_scratch,
                },
                cfg["repeats"],
                block=cfg["block"],
            )
        g_ratio = best["sharpsk gradient"] / best["torch gradient"]
        h_ratio = best["sharpsk HVP (shared pass)"] / best["torch HVP (retained graph)"]
        s_ratio = best["sharpsk HVP (from scratch)"] / best["torch HVP (from scratch)"]
        s_cost = best["sharpsk HVP (shared pass)"] / best["sharpsk gradient"]
        t_cost = best["torch HVP (retained graph)"] / best["torch gradient"]
        tag = f"{net}, {cfg['n_samples']} samples, {threads} thread(s)"
        rows += [
            row(
                f"MLP HVP in a sharpness measurement ({tag})",
                _fmt_time(best["sharpsk HVP (shared pass)"]),
                _fmt_time(best["torch HVP (retained graph)"]) + " (torch)",
                f"{h_ratio:.2f}x",
                "<= 1.3x",
                h_ratio <= 1.3,
                "forward/backward shared by all products (point / retained graph)",
            ),
            row(
                f"MLP HVP from scratch ({tag})",
                _fmt_time(best["sharpsk HVP (from scratch)"]),
                _fmt_time(best["torch HVP (from scratch)"]) + " (torch)",
                f"{s_ratio:.2f}x",
                "<= 1.3x",
                s_ratio <= 1.3,
                "forward + backward + one HVP",
            ),
            row(
                f"MLP gradient ({tag})",
                _fmt_time(best["sharpsk gradient"]),
                _fmt_time(best["torch gradient"]) + " (torch)",
                f"{g_ratio:.2f}x",
                "report",
                None,
                "forward + backward",
            ),
            row(
                f"HVP / gradient cost ({tag})",
                f"{s_cost:.2f} (sharpsk)",
                f"{t_cost:.2f} (torch)",
                f"{s_cost / t_cost:.2f}x",
                "report",
                None,
                "shared-pass HVP over gradient",
            ),
        ]
        details["by_threads"][threads] = {
            "seconds": samples,
            "min_seconds": best,
            "gradient_ratio": g_ratio,
            "hvp_shared_ratio": h_ratio,
            "hvp_scratch_ratio": s_ratio,
            "hvp_over_gradient_sharpsk": s_cost,
            "hvp_over_gradient_torch": t_cost,
        }
    rows.append(
        row(
            f"MLP HVP agreement with PyTorch ({net})",
            f"{hvp_err:.1e}",
            "rtol 1e-10",
            "-",
            "agree",
            agree,
            f"max relative difference; gradient {grad_err:.1e}",
        )
    )
    return rows, details


# --------------------------------------------------------------------------
# 3. Sharpness tracking: HVPs per measurement, warm vs cold
# --------------------------------------------------------------------------
def _gd_trajectory(X, Y, params, mults, c, n_steps):
    """Parameters of ``n_steps`` full-batch GD steps at ``eta = c / lambda_H0``."""
    from sharpsk._mlp_kernels import mlp_gradient, mlp_matvec, mlp_point
    from sharpsk._sharpness import top_eigenpair

    matvec, n = mlp_matvec(mlp_point(params, X, Y, mults, "tanh"))
    lam0 = top_eigenpair(matvec, n, tol=1e-12, random_state=0).eigenvalue
    eta = c / lam0
    out = []
    for _ in range(n_steps + 1):
        out.append([p.copy() for p in params])
        grads = mlp_gradient(mlp_point(params, X, Y, mults, "tanh"))
        params = [p - eta * g for p, g in zip(params, grads, strict=True)]
    return out, eta


def _reference_top(matvec, n, seed, warm=None):
    """Top eigenvalue to ~1e-12: the larger of a cold and a warm tight run."""
    from sharpsk._sharpness import top_eigenpair

    runs = [top_eigenpair(matvec, n, tol=1e-12, max_matvec=400, random_state=seed)]
    if warm is not None:
        runs.append(top_eigenpair(matvec, n, v0=warm, tol=1e-12, max_matvec=400))
    return max(r.eigenvalue for r in runs)


def _dense_top(matvec, n):
    eye = np.eye(n)
    H = np.array([matvec(eye[i]) for i in range(n)])
    return float(np.linalg.eigvalsh(0.5 * (H + H.T))[-1])


def _track(snapshots, X, Y, mults, tol, cold_every, reference):
    """Warm (tracker and plain previous-vector) and cold measurements."""
    from sharpsk._mlp_kernels import mlp_matvec, mlp_point
    from sharpsk._sharpness import TopEigenTracker, top_eigenpair

    tracker = TopEigenTracker(tol=tol, random_state=0)
    prev = None
    out = {k: [] for k in ("ref", "tracker", "plain", "cold", "cold_ref")}
    hvps = {k: [] for k in ("tracker", "plain", "cold")}
    for t, params in enumerate(snapshots):
        matvec, n = mlp_matvec(mlp_point(params, X, Y, mults, "tanh"))
        res = tracker.update(matvec, n)
        plain = top_eigenpair(matvec, n, v0=prev, tol=tol, random_state=0)
        prev = plain.eigenvector
        ref = reference(matvec, n, t, res.eigenvector)
        out["ref"].append(ref)
        out["tracker"].append(res.eigenvalue)
        out["plain"].append(plain.eigenvalue)
        hvps["tracker"].append(res.n_hvp)
        hvps["plain"].append(plain.n_hvp)
        if t % cold_every == 0:
            cold = top_eigenpair(matvec, n, tol=tol, random_state=10_000 + t)
            out["cold"].append(cold.eigenvalue)
            out["cold_ref"].append(ref)
            hvps["cold"].append(cold.n_hvp)
    return {k: np.asarray(v) for k, v in out.items()}, {
        k: np.asarray(v) for k, v in hvps.items()
    }


def bench_sharpness(cfg):
    """HVPs per measurement along GD through a catapult and the EoS."""
    tol = cfg["tol"]
    X, Y, params, mults = _mlp_setup(cfg["hidden"], cfg["n_samples"])
    snaps, eta = _gd_trajectory(X, Y, params, mults, cfg["c"], cfg["n_steps"])
    vals, hvps = _track(
        snaps,
        X,
        Y,
        mults,
        tol,
        cfg["cold_every"],
        lambda mv, n, t, warm: _reference_top(mv, n, t, warm),
    )
    es = eta * vals["ref"]
    # Edge-of-stability phase: from the first step after the initial
    # catapult at which eta * lambda_H reaches 1.95.
    late = np.flatnonzero((np.arange(es.size) > 20) & (es >= 1.95))
    t_eos = int(late[0]) if late.size else es.size

    def err(key, ref="ref"):
        return (vals[ref] - vals[key]) / vals[ref]

    warm = slice(1, None)
    e_tr, e_pl, e_cold = (
        err("tracker")[warm],
        err("plain")[warm],
        err("cold", "cold_ref"),
    )
    h_tr, h_pl = hvps["tracker"][warm], hvps["plain"][warm]
    pre, eos = slice(0, max(t_eos - 1, 0)), slice(max(t_eos - 1, 0), None)

    def mean(a):
        return float(np.mean(a)) if np.size(a) else float("nan")

    # Dense check on a smaller net: the reference and the tracker vs eigvalsh.
    Xs, Ys, ps, ms = _mlp_setup(cfg["dense_hidden"], cfg["dense_n_samples"])
    snaps_s, eta_s = _gd_trajectory(Xs, Ys, ps, ms, cfg["c"], cfg["dense_steps"])
    vals_s, hvps_s = _track(
        snaps_s,
        Xs,
        Ys,
        ms,
        tol,
        cfg["cold_every"],
        lambda mv, n, t, w: _dense_top(mv, n),
    )
    d_tr = (vals_s["ref"] - vals_s["tracker"]) / vals_s["ref"]
    d_cold = (vals_s["cold_ref"] - vals_s["cold"]) / vals_s["cold_ref"]
    ref_check = []
    from sharpsk._mlp_kernels import mlp_matvec, mlp_point

    for t in range(0, len(snaps_s), max(1, len(snaps_s) // 10)):
        mv, n = mlp_matvec(mlp_point(snaps_s[t], Xs, Ys, ms, "tanh"))
        ref_check.append(
            abs(_reference_top(mv, n, t) - vals_s["ref"][t]) / vals_s["ref"][t]
        )

    net = "64-" + "-".join(map(str, cfg["hidden"])) + "-10"
    n_params = sum(p.size for p in params)
    small = "64-" + "-".join(map(str, cfg["dense_hidden"])) + "-10"
    n_small = sum(p.size for p in ps)
    mean_all, mean_pre, mean_eos = mean(h_tr), mean(h_tr[pre]), mean(h_tr[eos])
    rows = [
        row(
            f"Sharpness HVPs/measurement, warm, whole run ({net}, tol={tol:g})",
            f"{mean_all:.2f}",
            f"{mean(hvps['cold']):.1f} (cold)",
            f"{mean(hvps['cold']) / mean_all:.1f}x fewer",
            "<= 3",
            mean_all <= 3.0,
            f"{len(snaps) - 1} steps, eta*lambda_H0={cfg['c']:g}; "
            f"{np.sum(e_tr > tol)} results > tol off (max {e_tr.max():.1e})",
        ),
        row(
            f"Sharpness HVPs/measurement, warm, before EoS (steps 1-{t_eos - 1})",
            f"{mean_pre:.2f}",
            f"{mean(h_pl[pre]):.2f} (previous vector only)",
            "-",
            "<= 3",
            mean_pre <= 3.0 if np.size(h_tr[pre]) else None,
            "catapult, then progressive sharpening",
        ),
        row(
            f"Sharpness HVPs/measurement, warm, at EoS (steps {t_eos}-)",
            f"{mean_eos:.2f}",
            f"{mean(h_pl[eos]):.2f} (previous vector only)",
            "-",
            "<= 3",
            mean_eos <= 3.0 if np.size(h_tr[eos]) else None,
            f"previous-vector warm starts: {np.sum(e_pl > tol)} results > tol off "
            f"(max {e_pl.max():.1e}); see README for why 3 is below the floor",
        ),
        row(
            f"Sharpness accuracy vs dense eigvalsh ({small}, P={n_small})",
            f"{max(d_tr.max(), 0):.1e} warm, {max(d_cold.max(), 0):.1e} cold",
            f"tol {tol:g}",
            f"{max(d_tr.max(), 0) / tol:.2f} tol",
            "report",
            None,
            f"max relative error over {len(snaps_s)} steps "
            f"({np.sum(d_tr > tol)} warm results above tol); warm "
            f"{mean(hvps_s['tracker'][1:]):.2f} HVPs, cold {mean(hvps_s['cold']):.1f}",
        ),
    ]
    details = {
        "config": cfg,
        "n_params": n_params,
        "eta": eta,
        "eos_start_step": t_eos,
        "eta_sharpness": es.tolist(),
        "hvp_tracker": hvps["tracker"].tolist(),
        "hvp_previous_vector": hvps["plain"].tolist(),
        "hvp_cold": hvps["cold"].tolist(),
        "rel_err_tracker": e_tr.tolist(),
        "rel_err_previous_vector": e_pl.tolist(),
        "rel_err_cold": e_cold.tolist(),
        "summary": {
            "tracker_mean": mean_all,
            "tracker_mean_pre_eos": mean_pre,
            "tracker_mean_eos": mean_eos,
            "previous_vector_mean": mean(h_pl),
            "previous_vector_mean_pre_eos": mean(h_pl[pre]),
            "previous_vector_mean_eos": mean(h_pl[eos]),
            "cold_mean": mean(hvps["cold"]),
            "tracker_n_err_above_tol": int(np.sum(e_tr > tol)),
            "previous_vector_n_err_above_tol": int(np.sum(e_pl > tol)),
            "cold_n_err_above_tol": int(np.sum(e_cold > tol)),
            "tracker_max_err": float(e_tr.max()),
            "previous_vector_max_err": float(e_pl.max()),
            "cold_max_err": float(e_cold.max()),
        },
        "dense_check": {
            "n_params": n_small,
            "eta": eta_s,
            "max_rel_err_tracker": float(d_tr.max()),
            "max_rel_err_cold": float(d_cold.max()),
            "mean_hvp_tracker": mean(hvps_s["tracker"][1:]),
            "mean_hvp_cold": mean(hvps_s["cold"]),
            "reference_vs_dense_max_rel_diff": float(max(ref_check)),
        },
    }
    return rows, details


# --------------------------------------------------------------------------
# 4. Parallel MLP scan
# --------------------------------------------------------------------------
def bench_parallel(cfg):
    """LearningRateScan of MLPs with n_jobs=2 vs n_jobs=1."""
    from joblib import parallel_config

    from sharpsk import MLPRegressor
    from sharpsk._scan import LearningRateScan
    from sharpsk.datasets import load_digits_onehot

    X, Y = load_digits_onehot(n_samples=cfg["n_samples"], random_state=0)
    est = MLPRegressor(
        cfg["hidden"],
        max_iter=cfg["max_iter"],
        record_every=cfg["record_every"],
        sharpness_tol=1e-4,
        random_state=0,
    )
    c = np.linspace(0.5, 2.5, cfg["n_lr"])

    def scan(n_jobs):
        return LearningRateScan(
            est,
            learning_rates=c,
            lr_units="initial_sharpness",
            n_jobs=n_jobs,
            engine="per_run",
        ).fit(X, Y)

    def serial_1():
        with blas_threads(1):
            scan(1)

    def serial_default():
        scan(1)

    def parallel_2():
        # one BLAS thread per worker: 2 workers x 1 thread on 2 cores
        with parallel_config(backend="loky", inner_max_num_threads=1):
            scan(2)

    parallel_2()  # start the worker processes once, as a session would
    best, samples = interleaved_min(
        {
            "n_jobs=1, 1 BLAS thread": serial_1,
            "n_jobs=1, default BLAS threads": serial_default,
            "n_jobs=2, 1 BLAS thread each": parallel_2,
        },
        cfg["repeats"],
    )
    t1 = best["n_jobs=1, 1 BLAS thread"]
    td = best["n_jobs=1, default BLAS threads"]
    t2 = best["n_jobs=2, 1 BLAS thread each"]
    load = os.getloadavg()[0]
    tag = f"{cfg['n_lr']} learning rates x {cfg['max_iter']} steps"
    rows = [
        row(
            f"Parallel MLP scan, n_jobs=2 vs n_jobs=1 ({tag})",
            _fmt_time(t2),
            _fmt_time(t1),
            f"{t1 / t2:.2f}x faster",
            ">= 1.7x",
            t1 / t2 >= 1.7,
            "1 BLAS thread per process in both (threadpoolctl / "
            "inner_max_num_threads=1); loky workers started before timing",
        ),
        row(
            f"Parallel MLP scan, n_jobs=2 vs n_jobs=1 with default BLAS ({tag})",
            _fmt_time(t2),
            _fmt_time(td),
            f"{td / t2:.2f}x faster",
            "report",
            None,
            f"what a user without thread limits gets; load average {load:.2f}",
        ),
    ]
    return rows, {"config": cfg, "seconds": samples, "min_seconds": best}


# --------------------------------------------------------------------------
# 5. Memory
# --------------------------------------------------------------------------
def _traced_peak(fn):
    """``(result, peak bytes)`` of numpy and Python allocations during ``fn``."""
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        out = fn()
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    return out, peak


def _nbytes(obj):
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    if isinstance(obj, dict):
        return sum(_nbytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_nbytes(v) for v in obj)
    return 0


def bench_memory(cfg):
    """Peak traced memory against what the runs must store."""
    from sharpsk import MLPRegressor
    from sharpsk._dynamics import default_tail
    from sharpsk._scan import LearningRateScan
    from sharpsk.datasets import load_digits_onehot

    # UV scan: its output, plus the tail window its labelling needs.
    uv_cfg = {
        **FULL["uv_scan"],
        "n_lr": cfg["uv_n_lr"],
        "n_steps": cfg["uv_n_steps"],
    }
    X, y, est, c = _uv_problem(uv_cfg)

    def uv():
        return LearningRateScan(
            est, learning_rates=c, lr_units="initial_sharpness"
        ).fit(X, y)

    scan, uv_peak = _traced_peak(uv)
    n_lr, n_steps = cfg["uv_n_lr"], cfg["uv_n_steps"]
    output = _nbytes(scan.results_) + _nbytes(scan.trace_tails_)
    window = default_tail(n_steps + 1) * n_lr * 2 * 8  # (delta_f, ntk) records
    full_traces = (n_steps + 1) * n_lr * 2 * 8
    must = output + window

    # Long MLP run, sharpness every step: traces grow, nothing else should.
    Xd, Yd = load_digits_onehot(n_samples=cfg["mlp_n_samples"], random_state=0)
    peaks, stored = {}, {}
    for n_steps_mlp in cfg["mlp_steps"]:
        mlp = MLPRegressor(
            cfg["mlp_hidden"],
            learning_rate=1.0,
            lr_units="initial_sharpness",
            max_iter=n_steps_mlp,
            record_every=1,
            sharpness_tol=1e-4,
            random_state=0,
        )
        fitted, peaks[n_steps_mlp] = _traced_peak(lambda mlp=mlp: mlp.fit(Xd, Yd))
        traces = sum(
            _nbytes(getattr(fitted, k))
            for k in (
                "loss_curve_",
                "sharpness_trace_",
                "steps_",
                "hvp_trace_",
                "sharpness_converged_",
            )
        )
        stored[n_steps_mlp] = traces
    short, long = cfg["mlp_steps"]
    n_params = sum(
        w.size + b.size for w, b in zip(fitted.coefs_, fitted.intercepts_, strict=True)
    )
    acts = cfg["mlp_n_samples"] * (64 + sum(cfg["mlp_hidden"]) + 10) * 8
    essential = stored[long] + Xd.nbytes + Yd.nbytes + n_params * 8 + acts
    growth = peaks[long] - peaks[short]
    trace_growth = stored[long] - stored[short]
    rows = [
        row(
            f"Memory: UV scan peak ({n_lr:.0e} x {n_steps:.0e})",
            _fmt_bytes(uv_peak),
            _fmt_bytes(must) + " (output + label window)",
            f"{uv_peak / must:.2f}x",
            "<= 2x",
            uv_peak / must <= 2.0,
            f"output {_fmt_bytes(output)}, tail window {_fmt_bytes(window)}; "
            f"full traces would be {_fmt_bytes(full_traces)}",
        ),
        row(
            f"Memory: MLP run peak ({long} steps, sharpness every step)",
            _fmt_bytes(peaks[long]),
            _fmt_bytes(essential) + " (data+params+traces+1 pass)",
            f"{peaks[long] / essential:.2f}x",
            "report",
            None,
            f"P={n_params}, traces {_fmt_bytes(stored[long])}",
        ),
        row(
            f"Memory: MLP peak growth {short} -> {long} steps",
            _fmt_bytes(growth),
            _fmt_bytes(trace_growth) + " (trace growth)",
            f"{growth / trace_growth:.2f}x" if trace_growth else "-",
            "<= 2x",
            growth <= 2.0 * trace_growth,
            "memory grows with the scalar traces only",
        ),
    ]
    details = {
        "config": cfg,
        "uv_peak_bytes": uv_peak,
        "uv_output_bytes": output,
        "uv_tail_window_bytes": window,
        "uv_full_traces_bytes": full_traces,
        "mlp_peak_bytes": peaks,
        "mlp_trace_bytes": stored,
        "mlp_essential_bytes": essential,
        "mlp_n_params": n_params,
    }
    return rows, details


# --------------------------------------------------------------------------
# 6. Optimizers: what tracking the sharpness at every step costs
# --------------------------------------------------------------------------
def _digits_point(hidden, n_samples):
    """An ``MLPModel`` on digits and its flat initial parameters (SP, tanh)."""
    from sharpsk._mlp_kernels import MLPModel

    X, Y, params, mults = _mlp_setup(hidden, n_samples)
    model = MLPModel(X, Y, [p.shape for p in params], mults, "tanh")
    return model, np.concatenate([p.ravel() for p in params])


def _net_name(hidden):
    return "64-" + "-".join(map(str, hidden)) + "-10"


def _optimizer_figures(n, fitted, best):
    """Per-step figures of one optimizer from its setup, plain and tracked fits."""
    t0, t_plain, t_tracked = (best[k] for k in ("setup", "plain", "tracked"))
    h0, h_plain, h_tracked = (
        int(fitted[k].hvp_trace_.sum()) for k in ("setup", "plain", "tracked")
    )
    last = int(fitted["plain"].hvp_trace_[-1])
    # The same first record in both runs: the difference is records 1..n of
    # the tracked run minus the last record of the plain one.
    per_product = float("nan")  # (no extra product: only in toy configurations)
    if h_tracked > h_plain:
        per_product = (t_tracked - t_plain) / (h_tracked - h_plain)
    plain_step = (t_plain - t0 - per_product * last) / n
    tracked_step = (t_tracked - t0) / n
    tracked = fitted["tracked"]
    return {
        "min_seconds": {"setup": t0, "plain": t_plain, "tracked": t_tracked},
        "hvp_setup": h0,
        "hvp_plain": h_plain,
        "hvp_tracked": h_tracked,
        "hvp_plain_last_record": last,
        "products_per_record": (h_tracked - h0) / n,
        "seconds_per_product": per_product,
        "plain_step_seconds": plain_step,
        "tracked_step_seconds": tracked_step,
        "tracking_over_plain_step": tracked_step / plain_step - 1.0,
        "product_over_plain_step": per_product / plain_step,
        "adaptive": tracked.preconditioned_sharpness_trace_ is not None,
        "diverged": bool(tracked.diverged_),
        "loss_first_last": [
            float(tracked.loss_curve_[0]),
            float(tracked.loss_curve_[-1]),
        ],
    }


def bench_optimizers(cfg):
    """Per optimizer: a step with the sharpness tracked every step vs a plain step.

    There is no switch to turn the tracking off, so the *plain* run records
    only its first and last step (``record_every=max_iter``) and the
    *tracked* one every step.  Both pay the same set-up (validation,
    initialization, a cold first measurement), timed alone with
    ``max_iter=0`` and subtracted; the plain run's last measurement (a warm
    start from step 0, far away) is subtracted at the measured cost of a
    tracking product.  Every fit of every optimizer and two kernels (a bare
    GD step, one HVP) are interleaved in the same rounds, so that a slow
    phase of the machine hits them all.
    """
    from sharpsk import MLPRegressor
    from sharpsk._engine import limit_blas_threads
    from sharpsk._optimizers import make_optimizer
    from sharpsk.datasets import load_digits_onehot

    X, Y = load_digits_onehot(n_samples=cfg["n_samples"], random_state=0)
    net, n = _net_name(cfg["hidden"]), cfg["max_iter"]
    fitted = {}

    def fitter(name, kind, max_iter, record_every):
        lr, units = cfg["learning_rates"][name]
        est = MLPRegressor(
            cfg["hidden"],
            optimizer=name,
            learning_rate=lr,
            lr_units=units,
            max_iter=max_iter,
            record_every=record_every,
            sharpness_tol=cfg["sharpness_tol"],
            random_state=0,
        )

        def fit():
            fitted[name, kind] = est.fit(X, Y)

        return fit

    funcs = {}
    for name in cfg["learning_rates"]:
        for kind, max_iter, every in (
            ("setup", 0, 1),
            ("plain", n, n),
            ("tracked", n, 1),
        ):
            funcs[f"{name} {kind}"] = fitter(name, kind, max_iter, every)

    # Kernels at the initial point, with one BLAS thread as the fits: the
    # engine's GD step (one forward pass, one backward pass, the update) and
    # one Hessian-vector product.
    model, theta = _digits_point(cfg["hidden"], cfg["n_samples"])
    point = model.point(theta)
    vec = np.random.default_rng(1).standard_normal(theta.size)
    point.hvp(vec)  # the backward pass and curvature terms, as in a record
    gd, k = make_optimizer("gd"), cfg["kernel_calls"]

    def bare_step():
        with limit_blas_threads(1):
            for _ in range(k):
                gd.update(theta, model.point(theta).gradient(), 1e-3, {})

    def bare_hvp():
        with limit_blas_threads(1):
            for _ in range(k):
                point.hvp(vec)

    funcs.update({"kernel step": bare_step, "kernel hvp": bare_hvp})
    best, samples = interleaved_min(funcs, cfg["repeats"])
    t_step, t_hvp = best["kernel step"] / k, best["kernel hvp"] / k

    target = cfg["per_product_target"]
    rows, by_opt = [], {}
    for name in cfg["learning_rates"]:
        kinds = ("setup", "plain", "tracked")
        d = by_opt[name] = _optimizer_figures(
            n,
            {kind: fitted[name, kind] for kind in kinds},
            {kind: best[f"{name} {kind}"] for kind in kinds},
        )
        kind = "Hessian + P^-1 H" if d["adaptive"] else "Hessian"
        l0, l1 = d["loss_first_last"]
        rows.append(
            row(
                f"Optimizer {name}: step with sharpness tracked every step "
                f"({net}, {cfg['n_samples']} digits, {n} steps)",
                _fmt_time(d["tracked_step_seconds"]),
                _fmt_time(d["plain_step_seconds"]) + " (plain step)",
                f"{d['tracking_over_plain_step']:+.2f} steps "
                f"({d['product_over_plain_step']:.2f} per product)",
                f"<= {target:g} steps per product",
                bool(d["product_over_plain_step"] <= target),
                f"{d['products_per_record']:.2f} products per record ({kind}, "
                f"tol {cfg['sharpness_tol']:g}); a tracking product costs "
                f"{_fmt_time(d['seconds_per_product'])}; loss {l0:.3g} -> "
                f"{l1:.3g}" + ("; DIVERGED" if d["diverged"] else ""),
            )
        )
    rows.append(
        row(
            f"Optimizers: bare HVP / bare GD step ({net}, {cfg['n_samples']} digits)",
            _fmt_time(t_hvp),
            _fmt_time(t_step),
            f"{t_hvp / t_step:.2f}x",
            "report",
            None,
            "kernels at the initial point, 1 BLAS thread: what a tracking "
            "product costs above this is the eigensolver's bookkeeping",
        )
    )
    details = {
        "config": cfg,
        "seconds": samples,
        "bare_step_seconds": t_step,
        "bare_hvp_seconds": t_hvp,
        "by_optimizer": by_opt,
    }
    return rows, details


# --------------------------------------------------------------------------
# 7. BLAS threads: the default blas_threads=1 vs no limit
# --------------------------------------------------------------------------
def _blas_thread_count():
    from threadpoolctl import threadpool_info

    counts = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
    return max(counts) if counts else None


def _hvp_threads(hidden, n_samples, calls, repeats):
    """Seconds per HVP under ``threadpool_limits(1)`` and unlimited, alternated.

    Each sample is ``calls`` products timed inside the limit (entering it is
    not timed), after one untimed product that lets the other setting's
    threads settle.
    """
    model, theta = _digits_point(hidden, n_samples)
    point = model.point(theta)
    vec = np.random.default_rng(1).standard_normal(theta.size)
    point.hvp(vec)
    names = ["1 thread", "unlimited"]
    samples = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % 2 :] + names[: r % 2]:
            gc.collect()
            with blas_threads(1) if name == "1 thread" else nullcontext():
                point.hvp(vec)
                start = time.perf_counter()
                for _ in range(calls):
                    point.hvp(vec)
                samples[name].append((time.perf_counter() - start) / calls)
    return samples


def bench_blas_threads(cfg):
    """A digits fit and the HVP kernel with one BLAS thread vs no limit."""
    from sharpsk import MLPRegressor
    from sharpsk.datasets import load_digits_onehot

    X, Y = load_digits_onehot(n_samples=cfg["n_samples"], random_state=0)
    net = _net_name(cfg["hidden"])
    n_threads = _blas_thread_count()
    target = cfg["target"]

    def fit(threads):
        MLPRegressor(
            cfg["hidden"],
            learning_rate=1.0,
            lr_units="initial_sharpness",
            max_iter=cfg["max_iter"],
            random_state=0,
            blas_threads=threads,
        ).fit(X, Y)

    _, fit_samples = interleaved_min(
        {"blas_threads=1": lambda: fit(1), "blas_threads=None": lambda: fit(None)},
        cfg["repeats"],
    )
    small = _hvp_threads(
        cfg["hidden"], cfg["n_samples"], cfg["kernel_calls"], cfg["kernel_repeats"]
    )
    large = _hvp_threads(
        cfg["large_hidden"],
        cfg["large_n_samples"],
        cfg["large_kernel_calls"],
        cfg["kernel_repeats"],
    )
    load = os.getloadavg()[0]

    def summary(samples, one, unlimited):
        a, b = np.asarray(samples[one]), np.asarray(samples[unlimited])
        return {
            "min_one": float(a.min()),
            "min_unlimited": float(b.min()),
            "median_one": float(np.median(a)),
            "median_unlimited": float(np.median(b)),
            "ratio_min": float(a.min() / b.min()),
            "ratio_median": float(np.median(a) / np.median(b)),
        }

    s_fit = summary(fit_samples, "blas_threads=1", "blas_threads=None")
    s_small = summary(small, "1 thread", "unlimited")
    s_large = summary(large, "1 thread", "unlimited")

    def ratio(s):
        return f"{s['ratio_min']:.2f}x (median {s['ratio_median']:.2f}x)"

    fit_tag = f"{net}, {cfg['n_samples']} digits, {cfg['max_iter']} steps"
    rows = [
        row(
            f"BLAS threads: fit, blas_threads=1 (default) vs None ({fit_tag})",
            _fmt_time(s_fit["min_one"]),
            _fmt_time(s_fit["min_unlimited"]) + f" (no limit: {n_threads} threads)",
            ratio(s_fit),
            f"<= {target:g}x",
            s_fit["ratio_min"] <= target,
            f"{cfg['repeats']} fits each, alternated; medians "
            f"{_fmt_time(s_fit['median_one'])} vs "
            f"{_fmt_time(s_fit['median_unlimited'])}, slowest unlimited fit "
            f"{_fmt_time(max(fit_samples['blas_threads=None']))}; "
            f"load average {load:.2f}",
        ),
        row(
            f"BLAS threads: HVP kernel, 1 thread vs unlimited "
            f"({net}, {cfg['n_samples']} digits)",
            _fmt_time(s_small["min_one"]),
            _fmt_time(s_small["min_unlimited"]) + f" ({n_threads} threads)",
            ratio(s_small),
            f"<= {target:g}x",
            s_small["ratio_min"] <= target,
            f"MLPModel point.hvp, {cfg['kernel_calls']} products per sample, "
            f"{cfg['kernel_repeats']} samples each, alternated",
        ),
        row(
            f"BLAS threads: HVP kernel, 1 thread vs unlimited "
            f"({_net_name(cfg['large_hidden'])}, {cfg['large_n_samples']} digits)",
            _fmt_time(s_large["min_one"]),
            _fmt_time(s_large["min_unlimited"]) + f" ({n_threads} threads)",
            ratio(s_large),
            "report",
            None,
            "a large net, where threads pay: pass blas_threads=None (or n) there",
        ),
    ]
    details = {
        "config": cfg,
        "blas_threads_unlimited": n_threads,
        "load_average": load,
        "fit_seconds": fit_samples,
        "hvp_seconds": small,
        "hvp_large_seconds": large,
        "fit": s_fit,
        "hvp": s_small,
        "hvp_large": s_large,
    }
    return rows, details


# --------------------------------------------------------------------------
# 8. UVRegressor (parameter engine) vs the same network as an MLPRegressor
# --------------------------------------------------------------------------
def bench_uv_vs_mlp(cfg):
    """UV model on several examples vs MLPRegressor((width,), identity, no bias).

    Both in the NTK parameterization with the same seed: the same initial
    weights, the same network and the same gradient-descent run (checked).
    """
    from sharpsk import MLPRegressor, UVRegressor
    from sharpsk.datasets import make_teacher_student

    X, y = make_teacher_student(
        cfg["n_samples"],
        cfg["n_features"],
        hidden_layer_sizes=(),
        activation="identity",
        random_state=0,
    )
    common = {
        "learning_rate": cfg["learning_rate"],
        "lr_units": "initial_sharpness",
        "max_iter": cfg["max_iter"],
        "parameterization": "ntk",
        "random_state": 0,
    }
    fitted = {}

    def uv():
        fitted["uv"] = UVRegressor(cfg["width"], engine="parameter", **common).fit(X, y)

    def mlp(ntk):
        fitted[ntk] = MLPRegressor(
            (cfg["width"],),
            activation="identity",
            fit_intercept=False,
            compute_ntk=ntk,
            **common,
        ).fit(X, y)

    best, samples = interleaved_min(
        {
            "UVRegressor": uv,
            "MLPRegressor compute_ntk=True": lambda: mlp(True),
            "MLPRegressor": lambda: mlp(False),
        },
        cfg["repeats"],
    )
    a, b = fitted["uv"], fitted[True]

    def rel(u, v):
        return float(np.max(np.abs(u - v)) / np.max(np.abs(v)))

    diffs = {
        "sharpness": rel(a.sharpness_trace_, b.sharpness_trace_),
        "ntk": rel(a.ntk_trace_, b.ntk_trace_),
        "loss": rel(a.loss_curve_, b.loss_curve_),
        "predictions": rel(a.predict(X), b.predict(X)),
    }
    # (the flat parameter vectors are ordered differently, so the random
    # start of the first, cold, measurement differs: HVP counts may too)
    hvps = {"uv": int(a.hvp_trace_.sum()), "mlp": int(b.hvp_trace_.sum())}
    agree = bool(max(diffs.values()) <= 1e-10)
    t_uv = best["UVRegressor"]
    t_ntk, t_mlp = best["MLPRegressor compute_ntk=True"], best["MLPRegressor"]
    target = cfg["target"]
    tag = (
        f"width {cfg['width']}, {cfg['n_samples']} examples x "
        f"{cfg['n_features']} features, {cfg['max_iter']} steps"
    )
    per_record = float(np.mean(a.hvp_trace_[1:])) if a.hvp_trace_.size > 1 else 0.0
    rows = [
        row(
            f"UV vs MLP, same traces: UVRegressor vs MLPRegressor "
            f"compute_ntk=True ({tag})",
            _fmt_time(t_uv),
            _fmt_time(t_ntk) + " (MLP)",
            f"{t_uv / t_ntk:.2f}x",
            f"<= {target:g}x",
            t_uv / t_ntk <= target,
            f"engine='parameter', sharpness and NTK every step; "
            f"{per_record:.2f} Hessian products per record",
        ),
        row(
            f"UV vs MLP, defaults: UVRegressor vs MLPRegressor ({tag})",
            _fmt_time(t_uv),
            _fmt_time(t_mlp) + " (MLP)",
            f"{t_uv / t_mlp:.2f}x",
            f"<= {target:g}x",
            t_uv / t_mlp <= target,
            "the UV fit also tracks the NTK (MLPRegressor's default does not)",
        ),
        row(
            f"UV vs MLP agreement ({tag})",
            f"{max(diffs.values()):.1e}",
            "rtol 1e-10",
            "-",
            "agree",
            agree,
            "max relative difference of the sharpness, NTK and loss traces and "
            f"predictions; Hessian products {hvps['uv']} (UV), {hvps['mlp']} (MLP)",
        ),
    ]
    details = {
        "config": cfg,
        "seconds": samples,
        "min_seconds": best,
        "ratio_uv_over_mlp_ntk": t_uv / t_ntk,
        "ratio_uv_over_mlp": t_uv / t_mlp,
        "max_rel_diff": diffs,
        "hvp_total": hvps,
        "agree": agree,
        "engine": a.engine_,
        "hvp_per_record": per_record,
    }
    return rows, details


def _power_iteration(matvec, n, k, tol, max_iter, rng):
    """PyHessian's top-k: power iteration with deflation against the found
    vectors, stopped when the Rayleigh quotient changes by less than ``tol``
    (relative).  Finds the largest *magnitude*.  Returns (values, products)."""
    values, vectors, products = [], [], 0
    for _ in range(k):
        v = rng.standard_normal(n)
        v /= np.linalg.norm(v)
        value = None
        for _ in range(max_iter):
            for u in vectors:
                v -= (u @ v) * u
            v /= np.linalg.norm(v)
            w = matvec(v)
            products += 1
            new = float(v @ w)
            done = value is not None and abs(new - value) < tol * abs(value) + 1e-30
            value, v = new, w / np.linalg.norm(w)
            if done:
                break
        values.append(value)
        vectors.append(v)
    return np.array(values), products


def bench_topk(cfg):
    """Hessian-vector products per top-k measurement: sharpsk.hessian, scipy's
    eigsh and a PyHessian-style power iteration, on one trained MLP.

    Counts, not times: a product is the unit of cost of all three, and counts
    do not depend on the machine's load.
    """
    from scipy.sparse.linalg import LinearOperator, eigsh

    from sharpsk import MLPRegressor
    from sharpsk.datasets import load_digits_onehot
    from sharpsk.hessian import eigenpairs

    X, Y = load_digits_onehot(n_samples=cfg["n_samples"], random_state=0)
    est = MLPRegressor(
        cfg["hidden"], learning_rate=0.1, max_iter=cfg["max_iter"], random_state=0
    ).fit(X, Y)
    H = est.hessian_operator(X, Y)
    n = H.shape[0]
    exact = np.linalg.eigvalsh(H @ np.eye(n))[::-1]
    tag = f"{_net_name(cfg['hidden'])}, P={n}, tol {cfg['tol']:g}"
    rows, details = [], {"config": cfg, "n_params": n}
    for k in cfg["ks"]:
        counts = {"sharpsk": [], "eigsh": [], "power": []}
        errors = {"sharpsk": [], "eigsh": [], "power": []}
        for seed in range(cfg["seeds"]):
            res = eigenpairs(H, k, tol=cfg["tol"], random_state=seed)
            counts["sharpsk"].append(res.n_hvp)
            errors["sharpsk"].append(np.max(np.abs(res.eigenvalues - exact[:k])))
            calls = [0]

            def matvec(v, calls=calls):
                calls[0] += 1
                return H @ np.ravel(v)

            v0 = np.random.default_rng(seed).standard_normal(n)
            op = LinearOperator((n, n), matvec=matvec, dtype=float)
            ev = np.sort(eigsh(op, k=k, which="LA", tol=cfg["tol"], v0=v0)[0])[::-1]
            counts["eigsh"].append(calls[0])
            errors["eigsh"].append(np.max(np.abs(ev - exact[:k])))
            values, products = _power_iteration(
                lambda v: H @ v,
                n,
                k,
                cfg["power_tol"],
                cfg["power_max_iter"],
                np.random.default_rng(seed),
            )
            counts["power"].append(products)
            errors["power"].append(np.max(np.abs(np.sort(values)[::-1] - exact[:k])))
        scale = abs(exact[0])
        med = {m: float(np.median(c)) for m, c in counts.items()}
        worst = {m: float(np.max(e)) / scale for m, e in errors.items()}
        rows.append(
            row(
                f"Top-{k} eigenpairs, HVPs per measurement ({tag})",
                f"{med['sharpsk']:.0f} (error {worst['sharpsk']:.0e})",
                f"{med['eigsh']:.0f} eigsh (error {worst['eigsh']:.0e}); "
                f"{med['power']:.0f} power iteration (error {worst['power']:.0e})",
                f"{med['sharpsk'] / med['eigsh']:.2f}x eigsh",
                f"error <= {cfg['tol']:g}",
                worst["sharpsk"] <= cfg["tol"],
                f"medians over {cfg['seeds']} random starts; errors relative to "
                "lambda_max; power iteration stopped at a relative change of "
                f"{cfg['power_tol']:g} (PyHessian's rule), largest magnitude",
            )
        )
        details[f"k={k}"] = {"hvps": counts, "max_rel_error": worst}
    return rows, details


# --------------------------------------------------------------------------
# 10. Batched MLP engine
# --------------------------------------------------------------------------
_SCAN_ANALYSIS = {
    "tail": None,
    "max_period": 64,
    "rtol": 1e-6,
    "edge_band": (0.875, 1.25),
    "lyapunov_tol": 1e-2,
}


def _max_rel_diff(batched, per_run):
    """Largest relative difference of every number of two scans' runs, and
    the number of runs whose labels differ."""
    tails = ("tail_steps", "tail_sharpness", "tail_loss")
    worst, labels = 0.0, 0
    for r, ref in enumerate(per_run):
        for key, value in ref.items():
            if key == "label":
                labels += batched[key][r] != value
                continue
            got = (
                batched["tails"][r][tails.index(key)]
                if key in tails
                else batched[key][r]
            )
            a = np.asarray(got, dtype=float)
            b = np.asarray(value, dtype=float)
            if a.shape != b.shape:
                return float("inf"), labels
            both = np.isfinite(a) & np.isfinite(b)
            if not np.array_equal(np.isfinite(a), np.isfinite(b)) or not (
                np.array_equal(a[~both], b[~both], equal_nan=True)
            ):
                return float("inf"), labels
            if both.any():
                scale = np.maximum(np.abs(b[both]), 1e-300)
                worst = max(worst, float(np.max(np.abs(a[both] - b[both]) / scale)))
    return worst, int(labels)


def _mlp_batched_case(hidden, n_samples, cfg, repeats):
    """Time the batched kernel and the per-run path on one scan; compare."""
    from sklearn.base import clone

    from sharpsk import MLPRegressor
    from sharpsk._scan import _fit_and_label
    from sharpsk.datasets import load_digits_onehot

    X, Y = load_digits_onehot(n_samples=n_samples, random_state=0)
    est = MLPRegressor(
        hidden,
        max_iter=cfg["max_iter"],
        record_every=cfg["record_every"],
        random_state=0,
    )
    lam0 = clone(est).set_params(max_iter=0).fit(X, Y).initial_sharpness_
    eta = np.linspace(*cfg["c_range"], cfg["n_lr"]) / lam0
    # as LearningRateScan stacks the runs' engines (all share the seed here)
    engine = est.batched_engine(X, Y)
    state = {k: np.array([v] * eta.size) for k, v in engine.state.items()}
    kwargs = {**state, **dict(engine.key)}
    kwargs.update(analysis=_SCAN_ANALYSIS, n_tail_points=64)
    out = {}

    def batched():
        out["batched"] = engine.kernel(eta=eta, **kwargs)

    def per_run():
        out["per_run"] = [
            _fit_and_label(
                clone(est).set_params(learning_rate=float(e)),
                X,
                Y,
                analysis=_SCAN_ANALYSIS,
                n_tail_points=64,
            )
            for e in eta
        ]

    with blas_threads(1):
        best, samples = interleaved_min(
            {"batched": batched, "per-run": per_run}, repeats
        )
    diff, label_diffs = _max_rel_diff(out["batched"], out["per_run"])
    labels = {
        str(k): int(v)
        for k, v in zip(
            *np.unique(out["batched"]["label"].astype(str), return_counts=True),
            strict=True,
        )
    }
    return {
        "min_seconds": best,
        "seconds": samples,
        "ratio": best["per-run"] / best["batched"],
        "max_rel_diff": diff,
        "label_differences": label_diffs,
        "labels": labels,
        "auto": bool(engine.auto),
        "initial_sharpness": float(lam0),
    }


def bench_mlp_batched(cfg):
    """The batched MLP engine of LearningRateScan vs the per-run path.

    The kernel (``MLPRegressor.batched_engine``) against fitting one
    estimator per learning rate and labelling it with the scan's worker
    (``_fit_and_label``), both in this process (n_jobs=1) with one BLAS
    thread; the same runs, compared number by number.
    """
    main = _mlp_batched_case(cfg["hidden"], cfg["n_samples"], cfg, cfg["repeats"])
    small = _mlp_batched_case(
        cfg["small_hidden"], cfg["small_n_samples"], cfg, cfg["small_repeats"]
    )
    steps = f"{cfg['max_iter']} steps, sharpness every {cfg['record_every']}"

    def tag(hidden, n):
        return (
            f"{cfg['n_lr']} learning rates, {_net_name(hidden)} on {n} digits, {steps}"
        )

    def labels(case):
        return ", ".join(f"{k} {v}" for k, v in case["labels"].items())

    target = cfg["target"]
    agree = all(
        c["max_rel_diff"] <= 1e-10 and c["label_differences"] == 0
        for c in (main, small)
    )
    rows = [
        row(
            "Batched MLP engine vs per-run path "
            f"({tag(cfg['hidden'], cfg['n_samples'])})",
            _fmt_time(main["min_seconds"]["batched"]),
            _fmt_time(main["min_seconds"]["per-run"]),
            f"{main['ratio']:.2f}x faster",
            f">= {target:g}x",
            main["ratio"] >= target,
            f"n_jobs=1, 1 BLAS thread; labels: {labels(main)}; engine='auto' "
            f"{'picks' if main['auto'] else 'does not pick'} it here",
        ),
        row(
            "Batched MLP engine vs per-run path, small network "
            f"({tag(cfg['small_hidden'], cfg['small_n_samples'])})",
            _fmt_time(small["min_seconds"]["batched"]),
            _fmt_time(small["min_seconds"]["per-run"]),
            f"{small['ratio']:.2f}x faster",
            "report",
            None,
            f"labels: {labels(small)}; engine='auto' "
            f"{'picks' if small['auto'] else 'does not pick'} it here",
        ),
        row(
            "Batched MLP engine agreement with the per-run path",
            f"{max(main['max_rel_diff'], small['max_rel_diff']):.1e}",
            "rtol 1e-10",
            "-",
            "agree",
            agree,
            "largest relative difference of every result and tail value of both "
            "scans above; labels "
            + (
                "all equal"
                if main["label_differences"] + small["label_differences"] == 0
                else "differ"
            ),
        ),
    ]
    return rows, {"config": cfg, "main": main, "small": small, "agree": agree}


# --------------------------------------------------------------------------
# 12. Sharpness tracking at the edge of stability vs PyTorch peers
# --------------------------------------------------------------------------
def _torch_mlp_hvp(torch, theta, shapes, mults, t_X, t_Y):
    """PyTorch double-backward HVP at ``theta`` (the graph built once).

    Returns ``(hvp, calls)``: ``hvp(v)`` for a flat float64 tensor, reusing
    the graph of ``grad(loss, create_graph=True)``; ``calls[0]`` counts.
    """
    sizes = [int(np.prod(s)) for s in shapes]
    pieces = np.split(theta, np.cumsum(sizes)[:-1])
    params = [
        torch.tensor(p.reshape(s), requires_grad=True)
        for p, s in zip(pieces, shapes, strict=True)
    ]
    h, n_layers = t_X, len(params) // 2
    for i in range(n_layers):
        z = mults[2 * i] * (h @ params[2 * i]) + mults[2 * i + 1] * params[2 * i + 1]
        h = z if i == n_layers - 1 else torch.tanh(z)
    loss = 0.5 * ((h - t_Y) ** 2).sum() / t_X.shape[0]
    grads = torch.autograd.grad(loss, params, create_graph=True)
    flat = torch.cat([g.reshape(-1) for g in grads])
    calls = [0]

    def hvp(vec):
        calls[0] += 1
        out = torch.autograd.grad(flat @ vec, params, retain_graph=True)
        return torch.cat([o.reshape(-1) for o in out])

    return hvp, calls


def _torch_operator(torch, hvp, n):
    """A matrix-free (n, n) float64 tensor for ``torch.lobpcg``.

    A storage-less wrapper subclass whose ``torch.matmul`` applies ``hvp``
    column by column; ``torch.lobpcg`` itself is dispatched to its
    implementation (its public entry point defers to ``__torch_function__``).
    """

    class HVPOperator(torch.Tensor):
        @staticmethod
        def __new__(cls):
            return torch.Tensor._make_wrapper_subclass(cls, (n, n), dtype=torch.float64)

        @classmethod
        def __torch_function__(cls, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func is torch.lobpcg:
                from torch._lobpcg import _lobpcg

                return _lobpcg(*args, **kwargs)
            if func is torch.matmul and isinstance(args[0], cls):
                block = args[1]
                return torch.stack(
                    [hvp(block[:, j]) for j in range(block.shape[1])], dim=1
                )
            with torch._C.DisableTorchFunctionSubclass():
                return func(*args, **kwargs)

        @classmethod
        def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
            raise NotImplementedError(f"{func} on a matrix-free operator")

    return HVPOperator()


def _pyhessian_power(torch, hvp, v, tol, max_iter):
    """PyHessian's ``hessian.eigenvalues`` (top 1) from a start ``v``.

    Power iteration that stops when the Rayleigh quotient changes by less
    than ``tol`` relative to the previous one (``+ 1e-6`` in the denominator,
    as PyHessian), returning that previous value and the normalized last
    product.  Largest magnitude, not largest algebraic.
    """
    value = None
    for _ in range(max_iter):
        hv = hvp(v)
        new = float(hv @ v)
        v = hv / torch.linalg.norm(hv)
        if value is not None and abs(value - new) / (abs(value) + 1e-6) < tol:
            break
        value = new
    return value, v


def bench_eos_tracking(cfg):
    """The sharpness measured at every GD step through the edge of stability:
    sharpsk's tracker vs warm-started ``torch.lobpcg`` and PyHessian-style
    power iteration on PyTorch HVPs, and a tracked ``MLPRegressor.fit`` vs a
    plain one.
    """
    from sharpsk import MLPRegressor
    from sharpsk._mlp_kernels import MLPModel
    from sharpsk._sharpness import TopEigenTracker, top_eigenpair
    from sharpsk.datasets import load_digits_onehot

    try:
        import torch
    except ImportError:
        torch = None
    tol, c, n_steps = cfg["tol"], cfg["c"], cfg["n_steps"]
    X, Y = load_digits_onehot(n_samples=cfg["n_samples"], random_state=0)
    est = MLPRegressor(cfg["hidden"], random_state=0)
    # the initialization of MLPRegressor(random_state=0).fit (SP)
    params, mults, _ = est._initialize(X.shape[1], Y.shape[1], np.random.RandomState(0))
    shapes = [p.shape for p in params]
    model = MLPModel(X, Y, shapes, mults, "tanh")
    n = model.n_params
    theta = np.concatenate([p.ravel() for p in params])
    net = _net_name(cfg["hidden"])
    tag = f"{net}, {cfg['n_samples']} digits, tol {tol:g}"
    names = ["sharpsk", "lobpcg", "power"] if torch is not None else ["sharpsk"]
    values = {k: np.full(n_steps + 1, np.nan) for k in names}
    hvps = {k: np.zeros(n_steps + 1, dtype=int) for k in names}
    seconds = {k: np.zeros(n_steps + 1) for k in names}
    ref_steps, refs = [], []
    tracker = TopEigenTracker(tol=tol, random_state=0)
    if torch is not None:
        t_X, t_Y = torch.tensor(X), torch.tensor(Y)
        start = np.random.default_rng(0).standard_normal(n)
        vec = {k: torch.tensor(start / np.linalg.norm(start)) for k in names[1:]}
    with blas_threads(1):
        eta = None
        for t in range(n_steps + 1):
            point = model.point(theta)
            grad = point.gradient()  # the step's backward pass, shared
            if torch is not None:
                t_hvp, calls = _torch_mlp_hvp(torch, theta, shapes, mults, t_X, t_Y)
            # rotate the order: slow phases of the machine hit all alike
            for name in names[t % len(names) :] + names[: t % len(names)]:
                t0 = time.perf_counter()
                if name == "sharpsk":
                    res = tracker.update(point.hvp, n, matvec32=point.hvp32)
                    value, count, last = res.eigenvalue, res.n_hvp, res.eigenvector
                elif name == "lobpcg":
                    calls[0] = 0
                    lam, vecs = torch.lobpcg(
                        _torch_operator(torch, t_hvp, n),
                        k=1,
                        X=vec["lobpcg"].reshape(n, 1).clone(),
                        tol=cfg["lobpcg_tol"],
                        largest=True,
                        niter=cfg["lobpcg_niter"],
                    )
                    value, count = float(lam[0]), calls[0]
                    vec["lobpcg"] = vecs[:, 0].clone()
                else:
                    calls[0] = 0
                    value, vec["power"] = _pyhessian_power(
                        torch,
                        t_hvp,
                        vec["power"],
                        cfg["power_tol"],
                        cfg["power_max_iter"],
                    )
                    count = calls[0]
                seconds[name][t] = time.perf_counter() - t0
                values[name][t], hvps[name][t] = value, count
            if t % cfg["ref_every"] == 0 or t == n_steps:
                # the larger of a warm and a cold tight run (float64 products)
                runs = [
                    top_eigenpair(
                        point.hvp,
                        n,
                        v0=v0,
                        tol=cfg["ref_tol"],
                        max_matvec=400,
                        random_state=t,
                    )
                    for v0 in (last, None)
                ]
                ref_steps.append(t)
                refs.append(max(r.eigenvalue for r in runs))
            if eta is None:  # lr_units="initial_sharpness", as MLPRegressor
                eta = c / values["sharpsk"][0]
            theta = theta - eta * grad
    ref_steps, refs = np.array(ref_steps), np.array(refs)
    es = eta * values["sharpsk"]
    late = np.flatnonzero((np.arange(es.size) > 20) & (es >= 1.95))
    t_eos = int(late[0]) if late.size else es.size
    warm = slice(1, None)  # step 0 is a cold start for every contender
    eos = slice(max(t_eos, 1), None)

    def mean(a):
        return float(np.mean(a)) if np.size(a) else float("nan")

    summary = {}
    for name in names:
        err = (refs - values[name][ref_steps]) / refs
        summary[name] = {
            "hvp_mean": mean(hvps[name][warm]),
            "hvp_mean_eos": mean(hvps[name][eos]),
            "seconds_mean": mean(seconds[name][warm]),
            "seconds_mean_eos": mean(seconds[name][eos]),
            "max_abs_rel_err": float(np.max(np.abs(err[1:]))),
            "mean_rel_err": float(np.mean(err[1:])),
            "n_err_above_tol": int(np.sum(np.abs(err[1:]) > tol)),
        }
    s = summary["sharpsk"]
    phase = (
        f"edge of stability from step {t_eos}"
        if t_eos <= n_steps
        else "edge of stability not reached"
    )
    run = f"{n_steps} GD steps at eta = {c:g} / lambda_0 ({phase}), 1 thread"
    rows = [
        row(
            f"EoS tracking: sharpsk HVPs/measurement ({tag})",
            f"{s['hvp_mean']:.2f} ({s['hvp_mean_eos']:.2f} at EoS)",
            _fmt_time(s["seconds_mean"]) + " per measurement",
            "-",
            "report",
            None,
            f"{run}; TopEigenTracker, float32 products, Rayleigh-Ritz in float64",
        ),
        row(
            f"EoS tracking: sharpsk accuracy ({tag})",
            f"{s['max_abs_rel_err']:.1e}",
            f"reference at tol {cfg['ref_tol']:g}, {len(refs) - 1} snapshots",
            f"{s['max_abs_rel_err'] / tol:.2f} tol",
            f"<= tol {tol:g}",
            s["max_abs_rel_err"] <= tol,
            "largest relative error of the tracked eigenvalue (snapshots every "
            f"{cfg['ref_every']} steps, step 0 excluded)",
        ),
    ]
    if torch is None:
        msg = "PyTorch not installed (pip install -e .[benchmark])"
        rows.append(
            row(
                "EoS tracking vs PyTorch peers", "skipped", "-", "-", ">= 2x", None, msg
            )
        )
    else:
        for name, label, target in (
            ("lobpcg", "warm-started torch.lobpcg", 2.0),
            ("power", "PyHessian-style power iteration", None),
        ):
            p = summary[name]
            ratio = p["seconds_mean"] / s["seconds_mean"]
            if name == "lobpcg":
                how = f"residual tol {cfg['lobpcg_tol']:g}, warm from the last vector"
            else:
                how = (
                    f"warm from the last vector, stops at a relative change below "
                    f"{cfg['power_tol']:g} (PyHessian's rule), at most "
                    f"{cfg['power_max_iter']} products"
                )
            rows.append(
                row(
                    f"EoS tracking: sharpsk vs {label} ({tag})",
                    _fmt_time(s["seconds_mean"]) + " (sharpsk)",
                    f"{_fmt_time(p['seconds_mean'])} ({p['hvp_mean']:.1f} HVPs, "
                    f"error up to {p['max_abs_rel_err']:.1e})",
                    f"{ratio:.2f}x faster"
                    if ratio >= 1
                    else f"{1 / ratio:.2f}x slower",
                    ">= 2x" if target else "report",
                    ratio >= target if target else None,
                    f"time per measurement over steps 1-{n_steps}; PyTorch float64 "
                    f"double-backward HVPs on a retained graph (building it is not "
                    f"counted), {how}; at EoS {p['hvp_mean_eos']:.1f} HVPs, "
                    f"{_fmt_time(p['seconds_mean_eos'])} vs "
                    f"{_fmt_time(s['seconds_mean_eos'])}",
                )
            )

    # A full fit with the sharpness every step vs a plain GD fit.
    def fit(record_every):
        return MLPRegressor(
            cfg["hidden"],
            learning_rate=c,
            lr_units="initial_sharpness",
            max_iter=n_steps,
            record_every=record_every,
            sharpness_tol=tol,
            random_state=0,
        ).fit(X, Y)

    fitted = {}
    best, samples = interleaved_min(
        {
            "tracked": lambda: fitted.__setitem__("tracked", fit(1)),
            "plain": lambda: fitted.__setitem__("plain", fit(n_steps)),
        },
        cfg["fit_repeats"],
    )
    trace = fitted["tracked"].sharpness_trace_
    same = float(np.max(np.abs(trace - values["sharpsk"]) / np.abs(trace)))
    fit_ratio = best["tracked"] / best["plain"]
    rows.append(
        row(
            f"EoS tracking: MLPRegressor.fit, sharpness every step vs plain GD "
            f"({net}, {cfg['n_samples']} digits, {n_steps} steps)",
            _fmt_time(best["tracked"]),
            _fmt_time(best["plain"]) + " (record_every=max_iter)",
            f"{fit_ratio:.2f}x",
            "<= 4x",
            fit_ratio <= 4.0,
            f"sharpness_tol={tol:g}, {fitted['tracked'].n_hvp_} HVPs in the tracked "
            f"fit, {fitted['plain'].n_hvp_} in the plain one (first and last "
            f"records); its sharpness trace is the benchmark's tracker's to "
            f"{same:.0e}",
        )
    )
    details = {
        "config": cfg,
        "n_params": n,
        "eta": eta,
        "eos_start_step": t_eos,
        "eta_sharpness": es.tolist(),
        "reference_steps": ref_steps.tolist(),
        "reference": refs.tolist(),
        "values": {k: v.tolist() for k, v in values.items()},
        "hvps": {k: v.tolist() for k, v in hvps.items()},
        "seconds": {k: v.tolist() for k, v in seconds.items()},
        "summary": summary,
        "fit_seconds": samples,
        "fit_min_seconds": best,
        "fit_ratio": fit_ratio,
        "fit_trace_max_rel_diff": same,
        "torch_version": None if torch is None else torch.__version__,
    }
    return rows, details


# --------------------------------------------------------------------------
# Machine, versions, report
# --------------------------------------------------------------------------
def machine_info():
    """CPU, cores, load, BLAS (threadpoolctl), library versions, commit."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:  # pragma: no cover - not Linux
        pass
    info = {
        "cpu": cpu,
        "logical_cores": os.cpu_count(),
        "load_average": list(os.getloadavg()),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "executable": sys.executable,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    try:
        import psutil

        info["physical_cores"] = psutil.cpu_count(logical=False)
        info["memory_gib"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:  # pragma: no cover
        pass
    try:
        import scipy.linalg  # noqa: F401  (load every BLAS the run uses)
        from threadpoolctl import threadpool_info

        try:
            import torch  # noqa: F401
        except ImportError:
            pass

        info["threadpools"] = [
            {
                k: p.get(k)
                for k in (
                    "user_api",
                    "internal_api",
                    "prefix",
                    "version",
                    "num_threads",
                )
            }
            | {"architecture": p.get("architecture")}
            for p in threadpool_info()
        ]
    except ImportError:  # pragma: no cover
        info["threadpools"] = "threadpoolctl not installed"
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for name in (
        "sharpsk",
        "numpy",
        "scipy",
        "scikit-learn",
        "joblib",
        "autograd",
        "threadpoolctl",
        "psutil",
        "torch",
    ):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    info["versions"] = versions
    try:
        git = {"cwd": HERE, "capture_output": True, "text": True, "timeout": 10}
        info["git_commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], **git
        ).stdout.strip()
        # uncommitted changes to the library: the figures are of the work tree
        info["git_dirty"] = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--", "../sharpsk"], **git
            ).stdout.strip()
        )
    except (OSError, subprocess.SubprocessError):  # pragma: no cover
        info["git_commit"] = "?"
    return info


# --------------------------------------------------------------------------
# Scan caching: keys per run, data fingerprinted once
# --------------------------------------------------------------------------


def bench_scan_cache(cfg):
    """Per-run caching: an extended grid recomputes only its new run, and a
    cached rerun of a scan on large data fingerprints X once (not per run)."""
    import tempfile

    import joblib

    from sharpsk import LearningRateScan, UVRegressor

    X1, y1 = np.ones((1, 4)) / 2.0, np.array([1.0])
    uv = UVRegressor(width=1, max_iter=cfg["uv_steps"], random_state=3)
    rates = np.linspace(0.5, 2.5, cfg["uv_n_lr"])
    timings = {}
    with tempfile.TemporaryDirectory() as tmp, blas_threads(1):

        def uv_scan(lrs):
            t0 = time.perf_counter()
            scan = LearningRateScan(
                uv,
                learning_rates=lrs,
                lr_units="critical",
                memory=tmp,
                progress=False,
            ).fit(X1, y1)
            return scan, time.perf_counter() - t0

        first, timings["grid"] = uv_scan(rates)
        extended, timings["extended"] = uv_scan(np.append(rates, 1.2345))
        recomputed = extended.n_runs_ - extended.n_cached_

    rng = np.random.default_rng(0)
    X = rng.normal(size=(cfg["n_samples"], cfg["n_features"]))
    y = X[:, 0].copy()
    est = UVRegressor(width=2, max_iter=5, random_state=0)
    lrs = np.linspace(1e-4, 1e-3, cfg["n_runs"])
    with tempfile.TemporaryDirectory() as tmp, blas_threads(1):
        kw = {"learning_rates": lrs, "memory": tmp, "progress": False}
        LearningRateScan(est, **kw).fit(X, y)
        t0 = time.perf_counter()
        cached = LearningRateScan(est, **kw).fit(X, y)
        timings["cached_rerun"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        joblib.hash((X, y))
        timings["one_hash"] = time.perf_counter() - t0
    ratio = timings["cached_rerun"] / timings["one_hash"]
    rows = [
        row(
            f"Scan cache: grid of {rates.size} rates extended by one",
            f"{recomputed} run recomputed",
            f"{rates.size + 1} runs",
            f"{timings['extended'] / timings['grid']:.3f}x the first fit's time",
            "exactly 1 run",
            recomputed == 1,
            f"UV batched scan, {cfg['uv_steps']} steps; first fit "
            f"{_fmt_time(timings['grid'])}, extended {_fmt_time(timings['extended'])}",
        ),
        row(
            f"Scan cache: cached rerun of {cfg['n_runs']} runs on a "
            f"{cfg['n_samples']}x{cfg['n_features']} X",
            _fmt_time(timings["cached_rerun"]),
            f"{_fmt_time(timings['one_hash'])} (one hash of X, y)",
            f"{ratio:.2f}x",
            "<= 2x",
            ratio <= 2.0 and cached.n_cached_ == cfg["n_runs"],
            "X and y are fingerprinted once per fit, not once per run",
        ),
    ]
    return rows, {"config": cfg, "seconds": timings, "recomputed": recomputed}


BENCHMARKS = {
    "uv_scan": bench_uv_scan,
    "hvp": bench_hvp,
    "sharpness": bench_sharpness,
    "parallel": bench_parallel,
    "memory": bench_memory,
    "optimizers": bench_optimizers,
    "blas_threads": bench_blas_threads,
    "uv_vs_mlp": bench_uv_vs_mlp,
    "topk": bench_topk,
    "scan_cache": bench_scan_cache,
    "mlp_batched": bench_mlp_batched,
    "eos_tracking": bench_eos_tracking,
}


def _met(value):
    return {True: "yes", False: "**no**", None: "-"}[value]


def render_markdown(report):
    """The RESULTS.md text of a report dict (see :func:`run`)."""
    m = report["machine"]
    lines = [
        "# sharpsk benchmark results",
        "",
        "Generated by `python benchmarks/run.py"
        + (" --quick" if report["quick"] else "")
        + "`; see [README.md](README.md) for what each line measures.  Every "
        "time is the minimum over interleaved repeats in one process; ratios "
        "compare numbers from the same run.",
        "",
        "| benchmark | measured | reference | ratio | target | met? |",
        "|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['benchmark']} | {r['measured']} | {r['reference']} | "
            f"{r['ratio']} | {r['target']} | {_met(r['met'])} |"
        )
    lines += ["", "Notes:", ""]
    for r in report["rows"]:
        if r["note"]:
            lines.append(f"- *{r['benchmark']}*: {r['note']}")
    threads = m.get("threadpools")
    blas = (
        "; ".join(
            f"{p['internal_api']} {p['version']} ({p['prefix']}, {p['architecture']},"
            f" {p['num_threads']} threads)"
            for p in threads
        )
        if isinstance(threads, list)
        else threads
    )
    lines += [
        "",
        "## Machine",
        "",
        f"- CPU: {m['cpu']}, {m['logical_cores']} logical cores"
        + (f", {m['physical_cores']} physical" if "physical_cores" in m else "")
        + (f", {m['memory_gib']} GiB" if "memory_gib" in m else ""),
        "- Load average (1, 5, 15 min) at start: "
        + ", ".join(f"{x:.2f}" for x in m["load_average"])
        + "; at end: "
        + ", ".join(f"{x:.2f}" for x in report["load_average_end"]),
        f"- Thread pools (threadpoolctl): {blas}",
        f"- Platform: {m['platform']}, Python {m['python']}, commit {m['git_commit']}"
        + (" with uncommitted changes to sharpsk/" if m.get("git_dirty") else ""),
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()),
        f"- Wall time of the whole run: {report['wall_seconds']:.0f} s",
        *_kept_lines(report.get("kept"), m["versions"]),
        "",
        "Raw numbers: [results.json](results.json).",
        "",
    ]
    return "\n".join(lines)


def _kept_lines(kept, versions):
    """Machine-section lines naming the rows kept from an earlier run."""
    if not kept:
        return []
    by_run = {}
    for name, info in kept.items():
        commit = info["git_commit"] + (" with changes" if info.get("git_dirty") else "")
        by_run.setdefault((commit, info["date"]), []).append(name)
    lines = []
    for (commit, date), names in by_run.items():
        old = kept[names[0]].get("versions") or {}
        diff = [f"{k} {v}" for k, v in old.items() if versions.get(k) != v]
        lines.append(
            "- Rows of "
            + ", ".join(f"`{n}`" for n in names)
            + f" kept from an earlier run (commit {commit}, {date}; `--merge`)"
            + (f", with {', '.join(diff)}" if diff else "")
            + ": the commit, versions, load and wall time above are this run's"
        )
    return lines


def run(
    names=None, *, quick=False, configs=None, out_dir=None, echo=print, merge=False
):
    """Run benchmarks in this process and write RESULTS.md and results.json.

    Parameters
    ----------
    names : list of str, default=None
        Benchmarks to run (keys of ``BENCHMARKS``); None runs all.
    quick : bool, default=False
        Use the ``QUICK`` sizes.
    configs : dict, default=None
        Per-benchmark configuration overrides (merged over FULL/QUICK).
    out_dir : path-like, default=None
        Where to write the files (None: this folder); False: do not write.
    echo : callable, default=print
        Progress output.
    merge : bool, default=False
        Keep the rows and details of the benchmarks not run now from the
        ``results.json`` already in ``out_dir`` (same ``quick`` mode), listed
        in ``report["kept"]`` with the commit and date of their run.

    Returns
    -------
    report : dict
        ``rows`` (each tagged with its ``bench``), ``details``, ``machine``,
        ``wall_seconds``, ``markdown`` (and ``kept`` when merged).
    """
    base = QUICK if quick else FULL
    names = list(BENCHMARKS) if names is None else list(names)
    machine = machine_info()
    start = time.perf_counter()
    rows, details = [], {}
    for name in names:
        cfg = {**base[name], **(configs or {}).get(name, {})}
        echo(f"[benchmarks] {name} ...")
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r, d = BENCHMARKS[name](cfg)
        d["wall_seconds"] = time.perf_counter() - t0
        echo(f"[benchmarks] {name} done in {d['wall_seconds']:.1f} s")
        for line in r:
            echo(f"    {line['benchmark']}: {line['ratio']} (target {line['target']})")
            line["bench"] = name
        rows += r
        details[name] = d
    report = {
        "quick": quick,
        "rows": rows,
        "details": details,
        "machine": machine,
        "load_average_end": list(os.getloadavg()),
        "wall_seconds": time.perf_counter() - start,
    }
    out = None if out_dir is False else Path(out_dir or HERE)
    if merge and out is not None and (out / "results.json").exists():
        _merge_previous(report, json.loads((out / "results.json").read_text()))
    report["markdown"] = render_markdown(report)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "RESULTS.md").write_text(report["markdown"])
        raw = {k: v for k, v in report.items() if k != "markdown"}
        (out / "results.json").write_text(json.dumps(raw, indent=1, default=_json))
    return report


def _merge_previous(report, old):
    """Add the rows and details of ``old`` for the benchmarks not in ``report``."""
    if old.get("quick") != report["quick"]:
        return
    ran = set(report["details"])
    kept = [n for n in BENCHMARKS if n not in ran and n in old["details"]]
    if not kept:
        return
    rows, details = [], {}
    for name in BENCHMARKS:
        if name in ran:
            rows += [r for r in report["rows"] if r["bench"] == name]
            details[name] = report["details"][name]
        elif name in kept:
            rows += [r for r in old["rows"] if r.get("bench") == name]
            details[name] = old["details"][name]
    m = old.get("machine", {})
    report["rows"], report["details"] = rows, details
    report["kept"] = {
        name: {
            "git_commit": m.get("git_commit", "?"),
            "git_dirty": m.get("git_dirty", False),
            "date": m.get("date", "?"),
            "versions": m.get("versions", {}),
            "load_average": m.get("load_average"),
            "wall_seconds": old["details"][name].get("wall_seconds"),
        }
        for name in kept
    }
    for name, info in old.get("kept", {}).items():  # kept twice: keep the origin
        if name in report["kept"]:
            report["kept"][name] = info


def _json(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes")
    parser.add_argument(
        "--only", nargs="+", choices=list(BENCHMARKS), help="run only these"
    )
    parser.add_argument("--out", default=None, help="output folder (default: here)")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the other benchmarks' rows from the results.json in --out",
    )
    args = parser.parse_args(argv)
    report = run(args.only, quick=args.quick, out_dir=args.out, merge=args.merge)
    print(f"[benchmarks] total {report['wall_seconds']:.0f} s; wrote RESULTS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
