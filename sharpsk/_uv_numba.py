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
are left to numpy (a compiled ``log`` may differ in the last bit).  The entry
points run without the GIL (``nogil``) and keep no state between calls, so
threads run a scan's blocks at once.
"""

import numpy as np
from numba import njit

__all__ = [
    "add_rows",
    "uv_advance",
    "uv_signals",
    "uv_tail_statistics",
    "uv_tangent_growth",
]


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


@njit(cache=True, error_model="numpy", inline="always")
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


@njit(cache=True, error_model="numpy", inline="always")
def _step_after_max(n, df, ntk, eta, ek, eek, y, bound, k4, y2, max_es):
    """:func:`_record_max`, then :func:`_step`, in one pass over the runs."""
    bad = 0
    for i in range(n):
        d, u = df[i], ntk[i]
        max_es[i] = _running_max(max_es[i], _eta_sharpness(d, u, k4[i], y2[i], eta[i]))
        a = eta[i] * u  # the arithmetic of _step
        e = d + y[i]
        g = (eek[i] * d) * e
        j = a * d - e * 4.0
        ntk[i] = u + (ek[i] * d) * j
        d = d * ((1.0 - a) + g)
        df[i] = d
        bad += not (abs(d) <= bound[i])
    return bad


@njit(cache=True, error_model="numpy")
def _record_max(n, df, ntk, k4, y2, eta, max_es):
    """``max_es = max(max_es, eta * lambda_H)`` of the first ``n`` runs.

    One 1-D array per operand, so that LLVM vectorises it across runs.
    """
    for i in range(n):
        es = _eta_sharpness(df[i], ntk[i], k4[i], y2[i], eta[i])
        max_es[i] = _running_max(max_es[i], es)


@njit(cache=True, error_model="numpy", inline="always")
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


@njit(cache=True, error_model="numpy", nogil=True)
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
    # the rows a step reads and writes, made once (views: the loop is short)
    a_df, a_ntk, a_eta, a_ek, a_eek, a_y = (
        act[0],
        act[1],
        act[2],
        act[3],
        act[4],
        act[5],
    )
    a_k4, a_y2, a_bound, a_max, a_flush = act[6], act[7], act[8], act[9], act[10]
    in_tail, rec, t = False, 0, 0
    # the next steps t with (t + 1) % every == 0 (no integer division per step)
    flush_at, freeze_at = flush_every - 1, freeze_every - 1
    while True:
        if not in_tail and (t >= t_tail or n == 0):
            # Bring the frozen (converged) runs back for the tail window;
            # they are exact fixed points, so jumping to it is exact.
            _store(n, idx, act, df, ntk, max_es)
            for i in range(N):
                src[0, i], src[1, i], src[9, i] = df[i], ntk[i], max_es[i]
            n = _pack(alive, src, act, idx)
            t, in_tail, rec = t_tail, True, max(rec, first_tail)
            flush_at = -(-(t + 1) // flush_every) * flush_every - 1
        recorded = rec < n_rec and schedule[rec] == t
        if recorded:
            if rec >= first_rec:
                r = rec - first_rec
                for k in range(n):
                    rec_df[r, idx[k]] = act[0, k]
                    rec_ntk[r, idx[k]] = act[1, k]
            rec += 1
        if t == max_iter or (in_tail and n == 0):
            if recorded:
                _record_max(n, act[0], act[1], act[6], act[7], act[2], act[9])
            break
        if recorded:  # the running maximum at this state, in the same pass
            bad = _step_after_max(
                n, a_df, a_ntk, a_eta, a_ek, a_eek, a_y, a_bound, a_k4, a_y2, a_max
            )
        else:
            bad = _step(n, a_df, a_ntk, a_eta, a_ek, a_eek, a_y, a_bound)
        if t == flush_at:
            _flush(n, a_df, a_flush)
            flush_at += flush_every
        freeze = t == freeze_at
        if freeze:
            freeze_at += freeze_every
        freeze = freeze and not in_tail and not full
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


@njit(cache=True, error_model="numpy", nogil=True)
def uv_tangent_growth(df, ntk, eta, ek, eek, y, bound, alive, ta, tb, lengths, out):
    """Stretches of ``lengths[s]`` steps of :func:`sharpsk._dynamics.uv_lyapunov`.

    Per step and run: the Jacobian entries of
    :func:`sharpsk._maps.uv_jacobian_entries` at the current state, the
    tangent ``(ta, tb)`` pushed through them, then
    :func:`sharpsk._maps.uv_step` (no flush) and the divergence test.  After
    stretch ``s`` the tangent's squared norm is written to ``out[s, run]``
    (the caller takes its ``np.log``) and the tangent renormalised.  Every
    array but ``lengths`` and ``out`` (S, n) has shape (n,); all are updated
    in place.
    """
    for s in range(lengths.size):
        for _ in range(lengths[s]):
            for i in range(df.size):
                d, u, e, yy, k, kk = df[i], ntk[i], eta[i], y[i], ek[i], eek[i]
                j00 = (1.0 - e * u) + (kk * d) * (3.0 * d + 2.0 * yy)
                j01 = -e * d
                j10 = (((2.0 * e) * k) * u) * d - (4.0 * k) * (2.0 * d + yy)
                j11 = 1.0 + (kk * d) * d
                a, b = ta[i], tb[i]
                ta[i] = j00 * a + j01 * b
                tb[i] = j10 * a + j11 * b
                d_new = d * ((1.0 - e * u) + (kk * d) * (d + yy))
                ntk[i] = u + (k * d) * ((e * u) * d - 4.0 * (d + yy))
                df[i] = d_new
                alive[i] = alive[i] & (abs(d_new) <= bound[i])
        for i in range(df.size):
            a, b = ta[i], tb[i]
            n2 = a * a + b * b
            norm = np.sqrt(n2)
            out[s, i] = n2
            ta[i] = a / norm
            tb[i] = b / norm


@njit(cache=True, error_model="numpy", nogil=True)
def add_rows(rows, first, total):
    """``total += rows[t]`` for ``t = first, first + 1, ...``, in that order."""
    for t in range(first, rows.shape[0]):
        for i in range(total.size):
            total[i] += rows[t, i]


@njit(cache=True, error_model="numpy", nogil=True)
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


@njit(cache=True, error_model="numpy", inline="always")
def _loss_sharpness(d, u, k4, y2):
    """``(0.5 * d * d, uv_sharpness)`` rounded as :func:`uv_signals` rounds them."""
    disc = u * u + (k4 * d) * (3.0 * d + y2)
    if disc < 0.0:  # np.maximum(disc, 0.0): a NaN stays NaN
        disc = 0.0
    return (0.5 * d) * d, 0.5 * (u + np.sqrt(disc))


@njit(cache=True, error_model="numpy")
def _repeating(rec_df, rec_ntk, r, p, c0, cand, m, k4, y2, thr):
    """Keep the candidates whose signals at record ``r`` repeat ``p`` before.

    ``cand[:m]`` are chunk offsets (run ``c0 + i``); those whose three
    signals are within ``thr`` of record ``r - p``'s stay, moved to the
    front (order not kept), the others behind them; returns how many stay.
    """
    k = 0
    while k < m:
        i = cand[k]
        j = c0 + i
        d1, d0 = rec_df[r, j], rec_df[r - p, j]
        u1, u0 = rec_ntk[r, j], rec_ntk[r - p, j]
        # The same state repeats every signal exactly (most orbits found);
        # else the residual first: it needs no square root.
        near = (d1 == d0 and u1 == u0) or abs(d1 - d0) <= thr[2, i]
        if near and not (d1 == d0 and u1 == u0):
            l1, s1 = _loss_sharpness(d1, u1, k4[i], y2[i])
            l0, s0 = _loss_sharpness(d0, u0, k4[i], y2[i])
            near = abs(l1 - l0) <= thr[0, i] and abs(s1 - s0) <= thr[1, i]
        if near:
            k += 1
        else:  # swapped behind the kept ones: cand[:m0] keeps every run
            m -= 1
            cand[k], cand[m] = cand[m], i
    return m


@njit(cache=True, error_model="numpy")
def _cycle_amplitude(rec_df, r, r0, m, j):
    """Sequential sum of ``|loss[r + k] - loss[r0 + k]|``, k < m, of run j."""
    total = 0.0
    for k in range(m):
        d1, d0 = rec_df[r + k, j], rec_df[r0 + k, j]
        amp = abs((0.5 * d1) * d1 - (0.5 * d0) * d0)
        total = amp if k == 0 else total + amp
    return total


# Runs labelled at a time.  The accumulators of a chunk live in one flat
# array, row k of run i at ``k * _CHUNK + i``: with the row stride a constant
# LLVM sees that rows never overlap and vectorises the loops across runs (it
# does not for the rows of a 2-D array, nor for many separate arrays).
_CHUNK = 256
# Rows of that array (per run): 0-2 the max and 3-5 the min of the signals
# (loss, sharpness, residual); 6-8 their largest step in the quarter before
# the final one, 9-11 in the final quarter; 12 the largest loss increase;
# 13 the sum of eta * sharpness, 14-15 the sums of its deviation from its
# first value and of the deviation's square, 16-17 its sums over the first
# and the second half; 18-20 the last record's signals; 21 the first
# eta * sharpness; 22-24 4 kappa, 2 y and eta; 25 1.0 while every value was
# finite, else 0.0.  (The extremes of eta * sharpness are eta times the
# sharpness's.)
_ROWS = 26


@njit(cache=True, error_model="numpy", inline="always")
def _record_signals(w, i, d, u):
    """``(d, loss, sharpness, eta * sharpness, all finite)`` of run ``i``'s
    record ``(d, u)``."""
    C = _CHUNK
    ls, sh = _loss_sharpness(d, u, w[22 * C + i], w[23 * C + i])
    es = w[24 * C + i] * sh
    fin = (abs(ls) < np.inf) & (abs(sh) < np.inf) & (abs(d) < np.inf)
    return d, ls, sh, es, fin & (abs(es) < np.inf)


@njit(cache=True, error_model="numpy")
def _first_record(n, w, df, ntk, at):
    """Start the accumulators of ``w`` at the record ``df[at:], ntk[at:]``."""
    C = _CHUNK
    for i in range(n):
        d, ls, sh, es, fin = _record_signals(w, i, df[at + i], ntk[at + i])
        w[25 * C + i] = 1.0 if fin else 0.0
        w[0 * C + i] = w[3 * C + i] = w[18 * C + i] = ls
        w[1 * C + i] = w[4 * C + i] = w[19 * C + i] = sh
        w[2 * C + i] = w[5 * C + i] = w[20 * C + i] = d
        for k in range(6, 12):
            w[k * C + i] = 0.0
        w[12 * C + i] = -np.inf
        w[13 * C + i] = es
        w[16 * C + i] = w[17 * C + i] = w[21 * C + i] = es
        w[14 * C + i] = w[15 * C + i] = 0.0


@njit(cache=True, error_model="numpy", inline="always")
def _fold(w, i, k, v, before, final):
    """Signal ``k`` (0 loss, 1 sharpness, 2 residual) of run ``i``'s record,
    value ``v``, into its maximum, minimum, step maxima and last value."""
    C = _CHUNK
    hi, lo = w[k * C + i], w[(3 + k) * C + i]
    step = abs(v - w[(18 + k) * C + i])
    w[k * C + i] = v if v > hi else hi
    w[(3 + k) * C + i] = v if v < lo else lo
    b, f = w[(6 + k) * C + i], w[(9 + k) * C + i]
    w[(6 + k) * C + i] = step if before and step > b else b
    w[(9 + k) * C + i] = step if final and step > f else f
    w[(18 + k) * C + i] = v


@njit(cache=True, error_model="numpy")
def _next_record(n, w, df, ntk, at, before, final, first_half, restart, second_half):
    """Fold the record ``df[at:], ntk[at:]`` into the accumulators of ``w``.

    The flags say where the record lies in the tail; they are the same for
    every run, so they select, and the loop stays vectorised.
    """
    C = _CHUNK
    for i in range(n):
        d, ls, sh, es, fin = _record_signals(w, i, df[at + i], ntk[at + i])
        ok = w[25 * C + i]
        w[25 * C + i] = ok if fin else 0.0
        rise = ls - w[18 * C + i]
        top = w[12 * C + i]
        w[12 * C + i] = rise if rise > top else top
        _fold(w, i, 0, ls, before, final)
        _fold(w, i, 1, sh, before, final)
        _fold(w, i, 2, d, before, final)
        w[13 * C + i] += es
        dev = es - w[21 * C + i]
        w[14 * C + i] += dev
        w[15 * C + i] += dev * dev
        h1, h2 = w[16 * C + i], w[17 * C + i]
        w[16 * C + i] = h1 + es if first_half else h1
        w[17 * C + i] = es if restart else (h2 + es if second_half else h2)


@njit(cache=True, error_model="numpy")
def _accumulate(rec_df, rec_ntk, i0, T, c0, n, w):
    """Stream the T records from ``i0`` of runs ``c0 .. c0 + n`` into ``w``."""
    q = max(1, (T - 1) // 4)
    h = T // 2
    N = rec_df.shape[1]
    df, ntk = rec_df.ravel(), rec_ntk.ravel()  # views: the records are C-ordered
    _first_record(n, w, df, ntk, i0 * N + c0)
    for t in range(1, T):
        before = T >= 8 and T - 2 * q <= t <= T - q - 1
        final = T >= 8 and t >= T - q
        at = (i0 + t) * N + c0
        _next_record(n, w, df, ntk, at, before, final, t < h, t == T - h, t > T - h)


@njit(cache=True, error_model="numpy", nogil=True)
def uv_tail_statistics(
    rec_df,
    rec_ntk,
    i0,
    eta,
    kappa,
    y,
    blocked,
    max_period,
    rtol,
    contraction,
    settle_tol,
    flt,
    period,
    flags,
    tail_sharpness,
    tail_loss,
):
    """:func:`sharpsk._dynamics._tail_statistics` of every run, from its records.

    The tail of run ``j`` is ``rec_df[i0:, j]`` and ``rec_ntk[i0:, j]``
    (time-major records, T rows); its signals (loss, sharpness, residual)
    and ``eta * sharpness`` are those of :func:`uv_signals`, recomputed where
    needed instead of stored.  Runs go in chunks; a chunk streams its
    records row by row into one accumulator per run and statistic, a loop
    vectorised across runs whose per-run operations are those of the numpy
    function in its order (sequential sums, exact maxima): the same bits.
    Outputs, per run: ``flt`` (N, 6) the mean, min, max and standard
    deviation of ``eta * sharpness``, the drift and the final loss;
    ``period`` (N,); ``flags`` (N, 4) ok, contracting, non-monotone and
    settled; ``tail_sharpness`` and ``tail_loss`` (N, P), the last P records.
    The records of a ``blocked`` (diverged) run may be anything: it is not
    analysed, and its tail rows are NaN.
    """
    R, N = rec_df.shape
    T = R - i0
    P = tail_loss.shape[1]
    C = _CHUNK
    acc = np.empty((_ROWS, C))  # the accumulators, see _ROWS
    scale = np.empty((3, C))
    thr = np.empty((3, C))
    k4 = np.empty(C)
    y2 = np.empty(C)
    e = np.empty(C)
    ok = np.empty(C, dtype=np.bool_)
    cand = np.empty(C, dtype=np.int64)
    h = T // 2
    Pmax = min(max_period, T // 3)
    W = min(T - Pmax, max(T // 2, 2 * Pmax))
    tiny = np.finfo(np.float64).tiny
    for c0 in range(0, N, C):
        n = min(C, N - c0)
        for i in range(n):
            k4[i], y2[i], e[i] = 4.0 * kappa[c0 + i], 2.0 * y[c0 + i], eta[c0 + i]
        acc[22, :n], acc[23, :n], acc[24, :n] = k4[:n], y2[:n], e[:n]
        _accumulate(rec_df, rec_ntk, i0, T, c0, n, acc.ravel())
        for i in range(n):
            j = c0 + i
            flt[j, 5] = acc[18, i]  # the final loss
            ok[i] = acc[25, i] == 1.0 and not blocked[j]
            flags[j, 0] = ok[i]
            period[j] = 0
            flags[j, 1] = flags[j, 2] = False
            flags[j, 3] = True
            for f in range(5):
                flt[j, f] = np.nan
            if not ok[i]:
                continue
            for k in range(3):  # _signal_scale, then the repeat threshold
                scale[k, i] = max(max(acc[k, i], -acc[3 + k, i]), tiny)
                thr[k, i] = rtol * scale[k, i]
            if T >= 8:
                fin = max(
                    max(acc[9, i] / scale[0, i], acc[10, i] / scale[1, i]),
                    acc[11, i] / scale[2, i],
                )
                bef = max(
                    max(acc[6, i] / scale[0, i], acc[7, i] / scale[1, i]),
                    acc[8, i] / scale[2, i],
                )
                flags[j, 1] = fin <= contraction * bef
            if T >= 2:
                flags[j, 2] = acc[12, i] > thr[0, i]
            flt[j, 0] = acc[13, i] / T
            # eta * sharpness is monotone in the sharpness (rounding is
            # monotone): its extremes are eta times the sharpness's
            lo, hi = e[i] * acc[4, i], e[i] * acc[1, i]
            flt[j, 1], flt[j, 2] = (lo, hi) if e[i] >= 0.0 else (hi, lo)
            s1, s2 = acc[14, i], acc[15, i]
            flt[j, 3] = np.sqrt(max((s2 - s1 * s1 / T) / T, 0.0))
            if T >= 4:
                drift = (acc[17, i] / h) / (acc[16, i] / h) - 1.0
                flt[j, 4] = drift
                flags[j, 3] = not (abs(drift) > settle_tol)

        # Period detection (_period_batch): the cheap test on the last record
        # for every run still without a period, then the whole window for
        # the candidates that pass it, one record at a time.
        todo = 0
        for i in range(n):
            if not ok[i]:
                continue
            flat = True
            for k in range(3):
                flat = flat and acc[k, i] - acc[3 + k, i] <= thr[k, i]
            if flat:
                # every signal's range within its threshold (e.g. an exact
                # fixed point): any two records are near, period 1, as the
                # window tests would find (fl(|a - b|) <= fl(max - min))
                period[c0 + i] = 1
            else:
                cand[todo] = i
                todo += 1
        for p in range(1, Pmax + 1):
            if todo == 0:
                break
            m = _repeating(rec_df, rec_ntk, i0 + T - 1, p, c0, cand, todo, k4, y2, thr)
            for t in range(T - W, T - 1):
                if m == 0:
                    break
                m = _repeating(rec_df, rec_ntk, i0 + t, p, c0, cand, m, k4, y2, thr)
            for k in range(m):
                period[c0 + cand[k]] = p
            kept = 0
            for k in range(todo):  # the runs still without a period
                if period[c0 + cand[k]] == 0:
                    cand[kept] = cand[k]
                    kept += 1
            todo = kept

        # The amplitude of even cycles (_settling), one period at a time.
        for p in range(2, Pmax + 1, 2):
            half = p // 2
            m = (T - half) // 2
            if T - half < 4:
                continue
            runs = 0
            for i in range(n):
                if ok[i] and period[c0 + i] == p:
                    cand[runs] = i
                    runs += 1
            for k in range(runs):
                i, j = cand[k], c0 + cand[k]
                a1 = _cycle_amplitude(rec_df, i0 + half, i0, m, j) / m
                a2 = _cycle_amplitude(rec_df, i0 + T - m, i0 + T - m - half, m, j) / m
                change = abs(a2 / a1 - 1.0) if a1 > 1e-9 * scale[0, i] else 0.0
                flags[j, 3] = flags[j, 3] and change <= settle_tol

        # The tables: the last P records of every run (none when diverged).
        for t in range(T - P, T):
            for i in range(n):
                j = c0 + i
                ls, sharp = _loss_sharpness(
                    rec_df[i0 + t, j], rec_ntk[i0 + t, j], k4[i], y2[i]
                )
                if blocked[j]:
                    ls = sharp = np.nan
                tail_sharpness[j, t - (T - P)] = sharp
                tail_loss[j, t - (T - P)] = ls
