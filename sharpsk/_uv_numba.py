"""Compiled (numba) core of the batched UV engine.

Imported only by :mod:`sharpsk._uv_batched`, and only when numba is installed
(the ``fast`` extra): importing this module without numba raises ImportError.

Every function here performs the floating-point operations of its numpy
counterpart in the same order, with the same operands: the stepping of
:class:`sharpsk._maps._UVStepper` (with its flush), the running maximum of
``eta * lambda_H`` of ``_sharpness_into``, the label signals of
:func:`sharpsk._maps.uv_sharpness` and the tangent map of
:func:`sharpsk._dynamics.uv_lyapunov`.  Compiled without ``fastmath``, LLVM
neither reassociates nor contracts ``a * b + c`` into a fused multiply-add,
and ``+ - * / sqrt`` are correctly rounded in IEEE 754, so the results are the
numpy path's bit for bit; vectorising across runs (SIMD) does not change
them, since every run is computed independently.  ``error_model="numpy"``:
a division by zero gives inf or NaN as in numpy (numba's default raises
ZeroDivisionError, and its check keeps LLVM from vectorising).  Logarithms
are left to numpy (a compiled ``log`` may differ in the last bit).
"""

import numpy as np
from numba import njit

__all__ = ["uv_advance", "uv_signals", "uv_tangent_norms"]


@njit(cache=True, error_model="numpy", inline="always")
def _eta_sharpness(df, ntk, k4, y2, eta):
    """``eta * uv_sharpness``, rounded as ``_sharpness_into`` rounds it."""
    disc = (k4 * df) * (3.0 * df + y2) + ntk * ntk
    if disc < 0.0:  # np.maximum(disc, 0.0): a NaN stays NaN
        disc = 0.0
    return ((np.sqrt(disc) + ntk) * 0.5) * eta


@njit(cache=True, error_model="numpy", inline="always")
def _running_max(old, new):
    """``np.maximum(old, new)``: NaN propagates from either side."""
    if new > old or new != new:
        return new
    return old


@njit(cache=True, error_model="numpy")
def _step(n, df, ntk, eta, ek, eek, y, bound):
    """One step of the first ``n`` runs in place; how many left the bound.

    ``_UVStepper.step`` without its flush, elementwise.  The divergence test
    (``|df| <= bound``, NaN fails) is taken before the flush, which only
    zeroes residuals far inside the bound, so it decides the same.
    """
    bad = 0
    for i in range(n):
        d = df[i]
        a = eta[i] * ntk[i]  # eta ntk
        e = d + y[i]  # df + y
        g = (eek[i] * d) * e  # eta ek df (df + y)
        j = a * d - e * 4.0  # eta ntk df - 4 (df + y)
        ntk[i] = ntk[i] + (ek[i] * d) * j
        d = d * ((1.0 - a) + g)
        df[i] = d
        bad += not (abs(d) <= bound[i])
    return bad


@njit(cache=True, error_model="numpy")
def _flush(n, df, flush_below):
    for i in range(n):  # a select, not a branch: vectorised
        df[i] = 0.0 if abs(df[i]) < flush_below[i] else df[i]


@njit(cache=True, error_model="numpy")
def _pack(alive, src, dst, idx):
    """Copy the columns of the alive runs of ``src`` into ``dst``; count them."""
    n = 0
    for i in range(alive.size):
        if alive[i]:
            idx[n] = i
            for f in range(src.shape[0]):
                dst[f, n] = src[f, i]
            n += 1
    return n


@njit(cache=True, error_model="numpy")
def _store(n, idx, act, df, ntk, max_es):
    for k in range(n):
        i = idx[k]
        df[i], ntk[i], max_es[i] = act[0, k], act[1, k], act[9, k]


@njit(cache=True, error_model="numpy")
def uv_advance(
    df,
    ntk,
    params,
    alive,
    n_iter,
    max_es,
    rec_df,
    rec_ntk,
    schedule,
    first_rec,
    first_tail,
    max_iter,
    full,
    flush_every,
    freeze_every,
):
    """The stepping loop of :func:`sharpsk._uv_batched.uv_batched_runs`.

    Same schedule of records, divergence steps, freezing of converged runs and
    return of the frozen runs for the tail window as the numpy loop
    (``_advance_numpy``), and the same arithmetic.  ``params`` (8, N) holds
    ``eta, ek, eek, y, k4, y2, bound, flush_below`` per run; residuals are
    flushed every ``flush_every`` steps and converged runs frozen every
    ``freeze_every`` (arguments, not globals: numba's cache would keep the
    values of other modules' constants when they change).  Updates ``df``,
    ``ntk``, ``alive``, ``n_iter``, ``max_es``, ``rec_df`` and ``rec_ntk`` in
    place; the records are time-major, ``rec_df[record, run]``.
    """
    N = df.size
    n_rec = schedule.size
    t_tail = schedule[first_tail]
    # The active runs, packed (structure of arrays, contiguous rows for SIMD):
    # df, ntk, eta, ek, eek, y, k4, y2, bound, max_es, flush_below.
    src = np.empty((11, N))
    act = np.empty((11, N))
    idx = np.empty(N, dtype=np.int64)
    for i in range(N):
        src[0, i], src[1, i] = df[i], ntk[i]
        for f in range(7):
            src[2 + f, i] = params[f, i]
        src[9, i], src[10, i] = max_es[i], params[7, i]
    n = _pack(alive, src, act, idx)
    in_tail, rec, t = False, 0, 0
    while True:
        if not in_tail and (t >= t_tail or n == 0):
            # Bring the frozen (converged) runs back for the tail window;
            # they are exact fixed points, so jumping to it is exact.
            _store(n, idx, act, df, ntk, max_es)
            for i in range(N):
                src[0, i], src[1, i], src[9, i] = df[i], ntk[i], max_es[i]
            n = _pack(alive, src, act, idx)
            t, in_tail, rec = t_tail, True, max(rec, first_tail)
        if rec < n_rec and schedule[rec] == t:
            for k in range(n):
                es = _eta_sharpness(
                    act[0, k], act[1, k], act[6, k], act[7, k], act[2, k]
                )
                act[9, k] = _running_max(act[9, k], es)
            if rec >= first_rec:
                r = rec - first_rec
                for k in range(n):
                    rec_df[r, idx[k]] = act[0, k]
                    rec_ntk[r, idx[k]] = act[1, k]
            rec += 1
        if t == max_iter or (in_tail and n == 0):
            break
        bad = _step(n, act[0], act[1], act[2], act[3], act[4], act[5], act[8])
        if (t + 1) % flush_every == 0:
            _flush(n, act[0], act[10])
        freeze = not in_tail and not full and (t + 1) % freeze_every == 0
        if bad or freeze:
            m = 0
            for k in range(n):
                d = act[0, k]
                dead = not (abs(d) <= act[8, k])
                frozen = freeze and not dead and d == 0.0
                if dead or frozen:
                    i = idx[k]
                    if dead:
                        alive[i] = False
                        n_iter[i] = t
                    else:
                        # An exact fixed point from here on: its later records
                        # all equal this state, so count it in the maximum now.
                        es = _eta_sharpness(
                            d, act[1, k], act[6, k], act[7, k], act[2, k]
                        )
                        act[9, k] = _running_max(act[9, k], es)
                    df[i], ntk[i], max_es[i] = d, act[1, k], act[9, k]
                    continue
                if m != k:
                    idx[m] = idx[k]
                    for f in range(11):
                        act[f, m] = act[f, k]
                m += 1
            n = m
        t += 1
    _store(n, idx, act, df, ntk, max_es)


@njit(cache=True, error_model="numpy")
def uv_tangent_norms(df, ntk, eta, ek, eek, y, bound, alive, ta, tb, out):
    """``out.shape[0]`` steps of :func:`sharpsk._dynamics.uv_lyapunov`.

    Per step and run: the Jacobian entries of
    :func:`sharpsk._maps.uv_jacobian_entries` at the current state, the
    tangent ``(ta, tb)`` pushed through them and renormalised, the growth
    factor written to ``out[step, run]`` (the caller takes its ``np.log``),
    then :func:`sharpsk._maps.uv_step` (no flush) and the divergence test.
    Every array but ``out`` (K, n) has shape (n,); all are updated in place.
    """
    for t in range(out.shape[0]):
        for i in range(df.size):
            d, u, e, yy, k, kk = df[i], ntk[i], eta[i], y[i], ek[i], eek[i]
            j00 = (1.0 - e * u) + (kk * d) * (3.0 * d + 2.0 * yy)
            j01 = -e * d
            j10 = (((2.0 * e) * k) * u) * d - (4.0 * k) * (2.0 * d + yy)
            j11 = 1.0 + (kk * d) * d
            a, b = ta[i], tb[i]
            na = j00 * a + j01 * b
            nb = j10 * a + j11 * b
            norm = np.sqrt(na * na + nb * nb)
            ta[i] = na / norm
            tb[i] = nb / norm
            out[t, i] = norm
            d_new = d * ((1.0 - e * u) + (kk * d) * (d + yy))
            ntk[i] = u + (k * d) * ((e * u) * d - 4.0 * (d + yy))
            df[i] = d_new
            alive[i] = alive[i] & (abs(d_new) <= bound[i])


@njit(cache=True, error_model="numpy")
def uv_signals(rec_df, rec_ntk, first, eta, kappa, y, signals, loss, eta_sharpness):
    """The series that label runs ``first, first + 1, ...``, from their records.

    ``rec_df`` and ``rec_ntk`` are time-major (T, N) (read a row at a time);
    for the ``n = loss.shape[0]`` runs from ``first`` (``eta``, ``kappa``,
    ``y`` of shape (n,)): ``signals[i] = (loss, sharpness, delta_f)``
    (n, 3, T), ``loss`` (n, T) and ``eta_sharpness`` (n, T), rounded as
    ``0.5 * df * df``, :func:`sharpsk._maps.uv_sharpness` and
    ``eta * sharpness`` round them.
    """
    T = rec_df.shape[0]
    for t0 in range(0, T, 16):  # blocks of 16 records: cache- and TLB-friendly
        t1 = min(t0 + 16, T)
        for i in range(loss.shape[0]):
            k4, y2, e = 4.0 * kappa[i], 2.0 * y[i], eta[i]
            for t in range(t0, t1):
                d, u = rec_df[t, first + i], rec_ntk[t, first + i]
                disc = u * u + (k4 * d) * (3.0 * d + y2)
                if disc < 0.0:  # np.maximum(disc, 0.0): a NaN stays NaN
                    disc = 0.0
                sharp = 0.5 * (u + np.sqrt(disc))
                ls = (0.5 * d) * d
                signals[i, 0, t], signals[i, 1, t], signals[i, 2, t] = ls, sharp, d
                loss[i, t] = ls
                eta_sharpness[i, t] = e * sharp
