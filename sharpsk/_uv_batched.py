"""The batched function-space engine of the single-example UV model.

:class:`~sharpsk.UVRegressor` offers it to :class:`~sharpsk.LearningRateScan`
through the scan protocol (``UVRegressor.batched_engine``): all learning
rates of a scan iterate the exact map at once, bit-identical to one fit each.
The stepping, the Lyapunov exponents and the tail statistics the labels are
decided on run in numpy or, when numba is installed (the ``fast`` extra), in
the compiled core of :mod:`sharpsk._uv_numba`, with the same numbers (and
then without the GIL: the scan runs its blocks in threads);
``SHARPSK_NO_NUMBA=1`` in the environment forces numpy.
"""

import importlib.util
import os
import sys
import threading

import numpy as np

from ._dynamics import (
    CONTRACTION,
    GD,
    SETTLE_TOL,
    _analyze_batch,
    _label_runs,
    _tangent_stretches,
    labelled_tail,
    uv_lyapunov,
)
from ._maps import (
    _FLUSH_EVERY,
    _FLUSH_RATIO,
    _UVStepper,
    divergence_bound,
    recorded_steps,
    uv_sharpness,
)

__all__ = ["releases_gil", "tail_lyapunov", "uv_batched_runs"]

# Converged runs (exact fixed points) leave the batch every this many steps
# until the tail window (both paths).
_FREEZE_EVERY = 256

# compiled=None keeps small scans on numpy until the compiled core is loaded:
# importing numba and loading its cached machine code costs ~0.25 s once per
# process (~1.7 s the very first time, to compile).  The numpy loop costs about
# (15 us + 10 ns per run) per step; the compiled core is used once the numpy
# stepping of this process (this block included) reaches an estimated 0.2 s,
# or as soon as it is loaded.  Counted per process, not per block: a large
# scan is many blocks that are each small.
_COMPILED_MIN_SECONDS = 0.2
_numpy_seconds = 0.0

# Runs the compiled core steps and labels at a time: their tail records
# (16 bytes per run and record) stay in cache until they are labelled.
_COMPILED_BATCH = 256

# Record buffers of the compiled core, kept from block to block (and scan to
# scan: joblib's threads are new for every scan) up to this many bytes each:
# a fresh 4 MiB buffer costs about 1 ms of page faults, a tenth of a small
# block.  A block takes one for its duration; a few are kept.
_KEPT_BUFFER_BYTES = 1 << 24
_KEPT_BUFFERS = 4
_free_buffers = []
_free_lock = threading.Lock()


def _numba_disabled():
    return os.environ.get("SHARPSK_NO_NUMBA", "0") not in ("", "0")


def releases_gil():
    """Whether the scan's blocks run in the compiled core, without the GIL.

    True when numba is installed and not disabled (``SHARPSK_NO_NUMBA``),
    found without importing it; the scan then prefers threads.  (A block too
    small for the compiled core runs on numpy, GIL or not: it is short.)
    """
    return not _numba_disabled() and importlib.util.find_spec("numba") is not None


def compiled_core(compiled=None, n_runs=None, n_steps=None):
    """The numba kernels (:mod:`sharpsk._uv_numba`), or None for numpy.

    ``compiled=None`` (automatic): numba when it is importable and the
    environment variable ``SHARPSK_NO_NUMBA`` is unset (or ``0``), once the
    numpy loops of this process, this block of ``n_runs`` runs of ``n_steps``
    steps included, would have taken ``_COMPILED_MIN_SECONDS``, or whatever
    its size once the core is loaded in this process.  True requires numba
    (ImportError without it); False is the pure-numpy path.  Both paths
    give the same numbers.
    """
    global _numpy_seconds
    if compiled is None:
        if _numba_disabled():
            return None
        # Loaded, or being loaded by another thread: the import below waits
        # for it (a module found in sys.modules may be half initialised).
        loaded = f"{__package__}._uv_numba" in sys.modules
        if not loaded and n_runs is not None and n_steps is not None:
            _numpy_seconds += n_steps * (15e-6 + 10e-9 * n_runs)
            if _numpy_seconds < _COMPILED_MIN_SECONDS:
                return None
    elif not compiled:
        return None
    try:
        from . import _uv_numba
    except ImportError:
        if compiled:
            raise
        return None
    return _uv_numba


def _take_buffers(size):
    """Two record buffers of at least ``size`` floats, ``(2, size)``: a kept
    one if one is large enough (its values are never reused), else new."""
    with _free_lock:
        for k, buffers in enumerate(_free_buffers):
            if buffers.shape[1] >= size:
                return _free_buffers.pop(k)
    return np.empty((2, size))


def _give_back(buffers):
    """Keep ``buffers`` for a later block if small enough and room is left."""
    if buffers.nbytes <= _KEPT_BUFFER_BYTES:
        with _free_lock:
            if len(_free_buffers) < _KEPT_BUFFERS:
                _free_buffers.append(buffers)


def tail_lyapunov(delta_f, ntk, eta, kappa, y, n_steps, *, core=None):
    """UV exponent over the last ``n_steps`` steps (``n_steps // 8`` discarded).

    :func:`sharpsk._dynamics.uv_lyapunov`; with ``core`` (the module of
    :func:`compiled_core`, 1-D arrays), its compiled twin, bit-identical.
    """
    n_steps = int(n_steps)
    if n_steps < 1:
        return np.full(np.shape(delta_f), np.nan)
    if core is None:
        return uv_lyapunov(delta_f, ntk, eta, kappa, y, n_steps, discard=n_steps // 8)
    return _tail_lyapunov_compiled(core, delta_f, ntk, eta, kappa, y, n_steps)


def _tail_lyapunov_compiled(core, delta_f, ntk, eta, kappa, y, n_steps, chunk=64):
    """:func:`uv_lyapunov` with its steps compiled, ``chunk`` stretches a call.

    The tangent's squared norms at the end of each stretch come back from
    ``core.uv_tangent_growth``; half their logarithms are taken by numpy and
    summed in order (``core.add_rows``), as :func:`uv_lyapunov` sums them.
    """
    discard = n_steps // 8
    df, ntk = np.array(delta_f, dtype=float), np.array(ntk, dtype=float)
    eta, kappa, y = (np.ascontiguousarray(a, dtype=float) for a in (eta, kappa, y))
    bound = divergence_bound(df, y)
    ek = eta * kappa
    eek = eta * ek
    ta = np.full(df.shape, np.sqrt(0.5))
    tb = ta.copy()
    total = np.zeros(df.shape)
    alive = np.abs(df) <= bound
    lengths = _tangent_stretches(n_steps, discard).astype(np.int64)
    ends = np.cumsum(lengths)
    norms = np.empty((min(chunk, lengths.size), df.size))
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for start in range(0, lengths.size, chunk):
            part = lengths[start : start + chunk]
            out = norms[: part.size]
            core.uv_tangent_growth(
                df, ntk, eta, ek, eek, y, bound, alive, ta, tb, part, out
            )
            counted = out[ends[start : start + chunk] > discard]  # a copy
            np.log(counted, out=counted)
            counted *= 0.5
            core.add_rows(counted, 0, total)
        lam = total / (n_steps - discard)
    return np.where(alive & np.isfinite(lam), lam, np.nan)


def _sharpness_into(df, ntk, k4, y2, out, buf):
    """:func:`sharpsk._maps.uv_sharpness` into ``out`` (same rounding).

    ``k4 = 4.0 * kappa`` and ``y2 = 2.0 * y`` are precomputed.
    """
    np.multiply(3.0, df, out=buf)
    buf += y2  # 3 df + 2 y
    np.multiply(k4, df, out=out)
    out *= buf  # 4 kappa df (3 df + 2 y)
    np.multiply(ntk, ntk, out=buf)
    out += buf
    np.maximum(out, 0.0, out=out)
    np.sqrt(out, out=out)
    out += ntk
    out *= 0.5
    return out


class _ActiveRuns:
    """State of the runs still iterated by :func:`uv_batched_runs`."""

    def __init__(self, index, df, ntk, eta, kappa, y, bound, max_es):
        self.idx = index
        self.stepper = _UVStepper(eta, kappa, y, bound).subset(index)
        self.df, self.ntk = df[index], ntk[index]
        self.eta, self.bound, self.max_es = eta[index], bound[index], max_es[index]
        self.k4, self.y2 = 4.0 * kappa[index], 2.0 * y[index]
        self._es = np.empty(index.size)
        self._buf = np.empty(index.size)

    def keep(self, mask):
        self.stepper = self.stepper.subset(mask)
        for name in ("idx", "df", "ntk", "eta", "bound", "max_es", "k4", "y2"):
            setattr(self, name, getattr(self, name)[mask])
        self._es, self._buf = self._es[: self.idx.size], self._buf[: self.idx.size]

    def record_max(self, mask=None):
        """Running maximum of ``eta * lambda_H`` (of the runs ``mask``)."""
        es = _sharpness_into(self.df, self.ntk, self.k4, self.y2, self._es, self._buf)
        es *= self.eta
        if mask is None:
            np.maximum(self.max_es, es, out=self.max_es)
        else:
            self.max_es[mask] = np.maximum(self.max_es[mask], es[mask])

    def store(self, df, ntk, max_es):
        df[self.idx], ntk[self.idx], max_es[self.idx] = self.df, self.ntk, self.max_es


@np.errstate(over="ignore", invalid="ignore", divide="ignore")
def uv_batched_runs(
    delta_f0,
    ntk0,
    eta,
    kappa,
    y,
    max_iter,
    record_every,
    *,
    analysis,
    n_tail_points,
    chunk_size=64,
    compiled=None,
):
    """All runs of a single-example UV scan at once, in function space.

    Iterates the exact map for every run with one vectorised step per
    gradient-descent step (:class:`sharpsk._maps._UVStepper`, the step of
    :func:`sharpsk._maps.uv_simulate`, or its compiled twin), keeps only what
    labelling needs (the tail window of records, the running maximum of
    ``eta * lambda_H`` over the recorded steps, the divergence step) and drops
    diverged runs, and until the tail window converged ones (exact fixed
    points, ``delta_f == 0``), from the active batch.  The numbers equal
    those of fitting a ``UVRegressor`` per run and calling
    :func:`_fit_and_label`, bit for bit.

    Parameters
    ----------
    delta_f0, ntk0, eta, kappa, y : ndarray of shape (n_runs,)
        Initial state, learning rate, ``kappa`` and target of each run.
    max_iter, record_every : int
        Steps and record schedule (as in ``UVRegressor``).
    analysis : dict
        ``tail``, ``max_period`` and the labelling tolerances.
    n_tail_points : int or None
        Records per run kept for the bifurcation table (None: every record,
        and no converged run is frozen).
    chunk_size : int, default=64
        Runs labelled at a time by the numpy analysis (bounds its memory; the
        compiled core labels ``_COMPILED_BATCH`` runs at a time).  With
        1024-record tails, 64 runs (1.5 MiB of signals) stay in cache across
        the passes of the analysis: 2.2x faster than 512 on a 10^4-run scan.
        Labels do not depend on it.
    compiled : bool or None, default=None
        Step with the compiled core (numba, the ``fast`` extra) or numpy; None
        picks the compiled core when numba is importable, the environment
        variable ``SHARPSK_NO_NUMBA`` is not set and the scan is not too small
        to pay for loading it (see :func:`compiled_core`).  Both give the same
        numbers, bit for bit.

    Returns
    -------
    result : dict
        Arrays of shape (n_runs,) keyed like ``results_``, plus
        ``tail_steps`` (P,), ``tail_sharpness`` and ``tail_loss`` (n_runs, P);
        with ``n_tail_points=None``, ``tails`` instead: per run, its recorded
        steps, sharpness and loss (up to the divergence for a diverged run).
    """
    delta_f0, ntk0, eta, kappa, y = (
        np.ascontiguousarray(a, dtype=float).ravel()
        for a in np.broadcast_arrays(delta_f0, ntk0, eta, kappa, y)
    )
    N, max_iter = delta_f0.size, int(max_iter)
    schedule = recorded_steps(max_iter, int(record_every))
    n_rec = schedule.size
    T = labelled_tail(n_rec, analysis)
    full = n_tail_points is None  # every record kept: no run is frozen

    bound = divergence_bound(delta_f0, y)
    alive = np.abs(delta_f0) <= bound
    n_iter = np.where(alive, max_iter, 0)
    max_es = np.full(N, -np.inf)
    core = compiled_core(compiled, N, max_iter)
    P = n_rec if full else min(int(n_tail_points), T)
    # eta times the threshold, rounded as classify_run rounds it
    edge = eta * GD.stability_threshold(eta)
    runs = (delta_f0, ntk0, eta, kappa, y, bound)
    kw = dict(schedule=schedule, T=T, P=P, max_iter=max_iter, edge=edge)
    if core is not None and not full:
        out, tail_sharp, tail_loss = _compiled_scan(
            core, runs, (alive, n_iter, max_es), **kw, analysis=analysis
        )
    else:
        out, tail_sharp, tail_loss = _advance_and_label(
            core,
            runs,
            (alive, n_iter, max_es),
            **kw,
            analysis=analysis,
            full=full,
            chunk_size=chunk_size,
        )
    diverged = ~alive
    out["n_iter"] = n_iter
    out["stability_threshold"] = GD.stability_threshold(eta)
    steps = schedule[n_rec - P :]
    if not full:
        out["tail_steps"] = steps
        out["tail_sharpness"] = tail_sharp
        out["tail_loss"] = tail_loss
        return out
    tails = [(steps, tail_sharp[j], tail_loss[j]) for j in range(N)]
    dead = np.flatnonzero(diverged)
    if dead.size:  # their records up to the divergence, replayed
        replay = _diverged_traces(
            delta_f0[dead],
            ntk0[dead],
            eta[dead],
            kappa[dead],
            y[dead],
            n_iter[dead],
            schedule,
        )
        for j, trace in zip(dead.tolist(), replay, strict=True):
            tails[j] = trace
    out["tails"] = tails
    return out


def _advance_and_label(
    core, runs, out, *, schedule, T, P, max_iter, edge, analysis, full, chunk_size
):
    """The runs of :func:`uv_batched_runs` all at once: records, Lyapunov
    exponents and labels; the numpy path, and the compiled one for full
    traces.  ``runs`` is ``(delta_f0, ntk0, eta, kappa, y, bound)``, ``out``
    ``(alive, n_iter, max_es)`` (updated in place).  Returns ``(results,
    tail_sharpness, tail_loss)``."""
    delta_f0, ntk0, eta, kappa, y, bound = runs
    alive, n_iter, max_es = out
    N, n_rec = eta.size, schedule.size
    first_tail = n_rec - T
    first_rec = 0 if full else first_tail  # first record stored
    rec_df = np.full((n_rec - first_rec, N), np.nan)  # time-major: row = record
    rec_ntk = np.full((n_rec - first_rec, N), np.nan)
    if core is None:
        _advance_numpy(
            delta_f0.copy(),
            ntk0.copy(),
            (eta, kappa, y, bound),
            (alive, n_iter, max_es, rec_df, rec_ntk),
            schedule=schedule,
            first_rec=first_rec,
            first_tail=first_tail,
            max_iter=max_iter,
            full=full,
        )
    else:
        core.uv_advance(
            delta_f0.copy(),
            ntk0.copy(),
            _compiled_params(eta, kappa, y, bound),
            alive,
            n_iter,
            max_es,
            rec_df,
            rec_ntk,
            schedule.astype(np.int64),
            int(first_rec),
            int(first_tail),
            max_iter,
            full,
            _FLUSH_EVERY,
            _FREEZE_EVERY,
        )
    i0 = first_tail - first_rec
    lyap = _bounded_lyapunov(
        (rec_df[i0], rec_ntk[i0], eta, kappa, y),
        alive,
        max_iter - schedule[first_tail],
        core,
    )
    return _labels(
        rec_df,
        rec_ntk,
        T,
        P,
        (eta, kappa, y),
        ~alive,
        lyap,
        max_es,
        edge,
        analysis,
        full=full,
        chunk_size=chunk_size,
        core=core,
    )


def _bounded_lyapunov(start, alive, n_steps, core):
    """:func:`tail_lyapunov` of the ``alive`` runs from ``start`` (the state
    at the tail and the runs' ``eta, kappa, y``), NaN for the others."""
    lyap = np.full(alive.size, np.nan)
    ok = np.flatnonzero(alive)
    if ok.size:
        lyap[ok] = tail_lyapunov(*(a[ok] for a in start), n_steps, core=core)
    return lyap


def _compiled_params(eta, kappa, y, bound):
    """The per-run constants of ``core.uv_advance`` (8, N), rounded as
    :class:`sharpsk._maps._UVStepper` and ``_ActiveRuns`` round them."""
    ek = eta * kappa
    params = [eta, ek, eta * ek, y, 4.0 * kappa, 2.0 * y, bound]
    return np.stack(params + [_FLUSH_RATIO * bound])


def _compiled_scan(core, runs, out, *, schedule, T, P, max_iter, edge, analysis):
    """:func:`_advance_and_label` in the compiled core, in batches of
    ``_COMPILED_BATCH`` runs (the tail window only, ``n_tail_points`` set).

    Each batch is stepped and its tail statistics taken
    (``core.uv_tail_statistics``, one pass over the records, nothing
    materialised) while its records are still in cache; the record buffers
    are reused from batch to batch, not filled with NaN: a diverged run's
    records after its divergence are never read for a result.  The Lyapunov
    exponents, which need only the first record, are computed for all runs
    at once after the batches (per batch, their calls cost about 10 ms per
    10^4 runs).
    """
    delta_f0, ntk0, eta, kappa, y, bound = runs
    alive, n_iter, max_es = out
    N = eta.size
    first_tail = schedule.size - T
    params = _compiled_params(eta, kappa, y, bound)
    batch = max(1, min(N, _COMPILED_BATCH))
    buffers = _take_buffers(T * batch)
    start_df, start_ntk = np.empty(N), np.empty(N)  # the state at the tail
    flt = np.empty((N, 6))
    period = np.zeros(N, dtype=np.int64)
    flags = np.empty((N, 4), dtype=bool)
    tail_sharp = np.empty((N, P))
    tail_loss = np.empty((N, P))
    steps = schedule.astype(np.int64)
    try:
        for start in range(0, N, batch):
            s = slice(start, min(start + batch, N))
            n = s.stop - s.start
            rec_df, rec_ntk = (b[: T * n].reshape(T, n) for b in buffers)
            core.uv_advance(
                delta_f0[s].copy(),
                ntk0[s].copy(),
                np.ascontiguousarray(params[:, s]),
                alive[s],
                n_iter[s],
                max_es[s],
                rec_df,
                rec_ntk,
                steps,
                int(first_tail),
                int(first_tail),
                max_iter,
                False,
                _FLUSH_EVERY,
                _FREEZE_EVERY,
            )
            start_df[s], start_ntk[s] = rec_df[0], rec_ntk[0]
            core.uv_tail_statistics(
                rec_df,
                rec_ntk,
                0,
                eta[s],
                kappa[s],
                y[s],
                ~alive[s],
                int(analysis["max_period"]),
                float(analysis["rtol"]),
                float(analysis.get("contraction", CONTRACTION)),
                SETTLE_TOL,
                flt[s],
                period[s],
                flags[s],
                tail_sharp[s],
                tail_loss[s],
            )
    finally:
        _give_back(buffers)
    # all runs at once: only the first record is needed, not the cached ones
    lyap = _bounded_lyapunov(
        (start_df, start_ntk, eta, kappa, y),
        alive,
        max_iter - schedule[first_tail],
        core,
    )

    stats = dict(
        zip(("ok", "contracting", "non_monotone", "settled"), flags.T, strict=True)
    )
    stats.update(zip(("mean", "min", "max", "std", "drift"), flt.T[:5], strict=True))
    stats["period"] = period
    out = _label_runs(
        stats,
        lyap,
        max_es,
        flt[:, 5],
        edge=edge,
        edge_band=analysis["edge_band"],
        lyapunov_tol=analysis["lyapunov_tol"],
    )
    return out, tail_sharp, tail_loss


def _labels(
    rec_df,
    rec_ntk,
    T,
    P,
    runs,
    diverged,
    lyap,
    max_es,
    edge,
    analysis,
    *,
    full,
    chunk_size,
    core,
):
    """Labels of :func:`uv_batched_runs` from the label signals, in chunks.

    Returns ``(results, tail_sharpness, tail_loss)``; the tables hold the
    last ``P`` records of each run (every record with ``full``).
    """
    eta, kappa, y = runs
    N, n_rec = eta.size, rec_df.shape[0]
    kwargs = {k: v for k, v in analysis.items() if k != "tail"}
    parts = []
    tail_sharp = np.empty((N, P))
    tail_loss = np.empty((N, P))
    for start in range(0, max(N, 1), chunk_size):  # one chunk for no run
        s = slice(start, start + chunk_size)
        signals, loss, es_tail = _label_signals(
            rec_df, rec_ntk, s, eta[s], kappa[s], y[s], core
        )
        if full:  # the whole trace for the tables, its tail for the labels
            tail_sharp[s], tail_loss[s] = signals[:, 1], loss
            signals = np.ascontiguousarray(signals[:, :, n_rec - T :])
            loss = np.ascontiguousarray(loss[:, n_rec - T :])
            es_tail = np.ascontiguousarray(es_tail[:, n_rec - T :])
        parts.append(
            _analyze_batch(
                signals,
                loss,
                es_tail,
                diverged[s],
                lyap[s],
                max_es[s],
                loss[:, -1],
                edge=edge[s],
                **kwargs,
            )
        )
        if not full:
            tail_sharp[s], tail_loss[s] = signals[:, 1, T - P :], loss[:, T - P :]
    out = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    if not full:  # a diverged run keeps no tail (as in the compiled path)
        tail_sharp[diverged] = tail_loss[diverged] = np.nan
    return out, tail_sharp, tail_loss


def _advance_numpy(
    df, ntk, runs, out, *, schedule, first_rec, first_tail, max_iter, full
):
    """The stepping loop of :func:`uv_batched_runs`, in numpy.

    Steps the ``alive`` runs from ``(df, ntk)`` to ``max_iter``: records the
    state at the steps of ``schedule`` (rows from ``first_rec`` on) and the
    running maximum of ``eta * lambda_H``, marks diverged runs (``alive``
    False, ``n_iter`` the step), and before the tail window (record
    ``first_tail``) freezes converged runs (exact fixed points) until it.
    ``runs`` is ``(eta, kappa, y, bound)``; ``out`` is ``(alive, n_iter,
    max_es, rec_df, rec_ntk)``, updated in place.
    """
    eta, kappa, y, bound = runs
    alive, n_iter, max_es, rec_df, rec_ntk = out
    n_rec = schedule.size
    t_tail = schedule[first_tail]
    act = _ActiveRuns(np.flatnonzero(alive), df, ntk, eta, kappa, y, bound, max_es)
    in_tail, rec, t = False, 0, 0
    with np.errstate(over="ignore", invalid="ignore"):
        while True:
            if not in_tail and (t >= t_tail or act.idx.size == 0):
                # Bring the frozen (converged) runs back for the tail window;
                # they are exact fixed points, so jumping to it is exact.
                act.store(df, ntk, max_es)
                act = _ActiveRuns(
                    np.flatnonzero(alive), df, ntk, eta, kappa, y, bound, max_es
                )
                t, in_tail, rec = t_tail, True, max(rec, first_tail)
            if rec < n_rec and schedule[rec] == t:
                act.record_max()
                if rec >= first_rec:
                    rec_df[rec - first_rec, act.idx] = act.df
                    rec_ntk[rec - first_rec, act.idx] = act.ntk
                rec += 1
            if t == max_iter or (in_tail and act.idx.size == 0):
                break
            act.stepper.step(act.df, act.ntk, t)
            ok = np.abs(act.df) <= act.bound  # NaN compares False
            compact = not ok.all()
            if compact:
                dead = act.idx[~ok]
                alive[dead] = False
                n_iter[dead] = t
            if not in_tail and not full and (t + 1) % _FREEZE_EVERY == 0:
                frozen = ok & (act.df == 0.0)
                if frozen.any():
                    # Exact fixed points from here on: their later records all
                    # equal the current state, so count it in the maximum now.
                    act.record_max(frozen)
                    ok &= ~frozen
                    compact = True
            if compact:  # diverged runs leave for good, converged until the tail
                act.store(df, ntk, max_es)
                act.keep(ok)
            t += 1
        act.store(df, ntk, max_es)


def _label_signals(rec_df, rec_ntk, runs, eta, kappa, y, core=None):
    """``(signals, loss, eta_sharpness)`` of the runs ``runs`` (a slice).

    From the time-major records (T, N): ``signals`` (n, 3, T) stacks the loss,
    the sharpness and the residual, run-major; ``core.uv_signals`` computes
    the same numbers in one compiled pass.
    """
    if core is None:
        r_df = np.ascontiguousarray(rec_df[:, runs].T)
        r_ntk = np.ascontiguousarray(rec_ntk[:, runs].T)
        with np.errstate(over="ignore", invalid="ignore"):
            sharp = uv_sharpness(r_df, r_ntk, kappa[:, None], y[:, None])
            loss = 0.5 * r_df * r_df
            es = eta[:, None] * sharp
        return np.stack([loss, sharp, r_df], axis=1), loss, es
    n, T = eta.size, rec_df.shape[0]
    signals, loss, es = np.empty((n, 3, T)), np.empty((n, T)), np.empty((n, T))
    core.uv_signals(rec_df, rec_ntk, runs.start, eta, kappa, y, signals, loss, es)
    return signals, loss, es


def _diverged_traces(delta_f0, ntk0, eta, kappa, y, n_iter, schedule):
    """The full traces of diverged runs, as a fit records them.

    Replays the runs from their initial state with the stepper of
    :func:`uv_batched_runs` (same arithmetic, same flushes) and keeps, per
    run, the records at the steps of ``schedule`` up to its last finite step
    ``n_iter`` and that step itself (the closing record of a diverged fit).
    """
    n = delta_f0.size
    df, ntk = delta_f0.copy(), ntk0.copy()
    stepper = _UVStepper(eta, kappa, y, divergence_bound(delta_f0, y))
    last = int(n_iter.max())
    on_schedule = np.zeros(last + 1, dtype=bool)
    on_schedule[schedule[schedule <= last]] = True
    steps, frames = [], []
    for t in range(last + 1):
        if on_schedule[t] or np.any(n_iter == t):
            steps.append(t)
            frames.append((df.copy(), ntk.copy()))
        if t < last:
            stepper.step(df, ntk, t)
    steps = np.asarray(steps)
    rec_df = np.stack([f[0] for f in frames], axis=1)
    rec_ntk = np.stack([f[1] for f in frames], axis=1)
    sharp = uv_sharpness(rec_df, rec_ntk, kappa[:, None], y[:, None])
    loss = 0.5 * rec_df * rec_df
    traces = []
    for j in range(n):
        keep = (steps <= n_iter[j]) & (on_schedule[steps] | (steps == n_iter[j]))
        traces.append((steps[keep], sharp[j, keep], loss[j, keep]))
    return traces
