"""Pure orbit analysis: run labels, periods, Lyapunov exponents, fixed points.

Everything here takes numpy arrays (or scalars) and returns numpy arrays,
scalars or dicts; nothing knows about estimators.  The vectorised cores work on
a batch of runs at once (one row per run) and the single-run functions are thin
wrappers around them, so a run analysed alone and inside a batch gives
bit-identical numbers.

Notation of the single-example UV model (see :mod:`sharpsk._maps`): residual
``delta_f = f - y``, NTK ``ntk`` (``lambda``), ``kappa = s**2 |x|**2``, learning
rate ``eta``; scaled variables ``g = eta sqrt(kappa) delta_f``,
``x = eta ntk`` and ``y_tilde = eta sqrt(kappa) y``.
"""

import warnings

import numpy as np

from ._maps import divergence_bound, uv_jacobian_entries, uv_step
from ._optimizers import make_optimizer

__all__ = [
    "LABELS",
    "classify_run",
    "default_tail",
    "detect_period",
    "eos_fixed_point_multiplier",
    "eos_manifold_ntk",
    "lazy_phase",
    "logistic_map",
    "logistic_map_derivative",
    "lyapunov_from_growth",
    "map_lyapunov",
    "series_lyapunov",
    "summarize_run",
    "tangent_lyapunov",
    "tangent_step",
    "uv_critical_learning_rate",
    "uv_lyapunov",
    "uv_minimum_multiplier",
    "uv_q",
    "uv_q_update",
    "uv_scaled_variables",
]

#: The run labels, in order of increasing "wildness".
LABELS = ("converge", "eos", "periodic", "chaotic", "diverge")

#: Default band of the edge ratio (tracked sharpness / stability threshold)
#: counted as the edge of stability: networks hover a little above 1.
EDGE_BAND = (0.875, 1.25)

GD = make_optimizer("gd")


def deprecated_eos_band(eos_band, edge_band):
    """``edge_band``, or the deprecated ``eos_band`` (``eta lambda_H`` units).

    ``eos_band`` was the band on ``eta * lambda_H``, whose gradient-descent
    edge is 2; it is converted to the edge ratio with a FutureWarning.
    """
    if isinstance(eos_band, str) and eos_band == "deprecated":
        return tuple(edge_band)
    warnings.warn(
        "eos_band (in units of eta * lambda_H) was replaced in 0.2 by edge_band, "
        "in units of the run's stability threshold (eos_band / 2 for gradient "
        "descent); eos_band will be removed in 0.3.",
        FutureWarning,
        stacklevel=3,
    )
    return tuple(float(b) / GD.edge() for b in eos_band)


_TINY = np.finfo(float).tiny


# --------------------------------------------------------------------------
# Period detection and labels
# --------------------------------------------------------------------------


def default_tail(n_records, max_period=64):
    """Number of final records used to label a run of ``n_records`` records.

    ``max(1, min(1024, max(n // 4, min(n // 2, 4 * max_period))))`` for
    ``n = n_records``: the last quarter of the run (the transients of the first
    three quarters are ignored), but at least four times the longest period
    looked for as long as that is at most half the run, and at most 1024
    records.

    Parameters
    ----------
    n_records : int
        Length of the recorded trace.
    max_period : int, default=64
        Longest period that period detection looks for.

    Returns
    -------
    tail : int
        The tail length.

    Examples
    --------
    >>> from sharpsk._dynamics import default_tail
    >>> default_tail(10_001), default_tail(2_000), default_tail(600)
    (1024, 500, 256)
    >>> default_tail(201), default_tail(1)
    (100, 1)
    """
    n, max_period = int(n_records), int(max_period)
    return max(1, min(1024, max(n // 4, min(n // 2, 4 * max_period))))


def _as_signals(series):
    """``(1, k, T)`` float array of one (multivariate) series."""
    Z = np.asarray(series, dtype=float)
    if Z.ndim == 1:
        return Z[None, None, :]
    if Z.ndim == 2:
        return np.ascontiguousarray(Z.T)[None]
    raise ValueError(f"series: expected shape (T,) or (T, k), got {Z.shape}.")


def _signal_scale(Z):
    """Largest absolute value of each signal of ``Z`` (N, k, T), floored."""
    with np.errstate(invalid="ignore"):  # max |z| without a copy of |Z|
        return np.maximum(np.maximum(np.max(Z, axis=2), -np.min(Z, axis=2)), _TINY)


def _period_batch(Z, max_period, rtol, scale=None):
    """Smallest period of each run of ``Z`` (N, k, T); 0 when none.

    See :func:`detect_period` for the test.  Periods are tried in increasing
    order; a cheap necessary condition (the last sample repeats) selects the
    runs whose whole window is then checked, so chaotic runs cost O(P k).
    """
    n_runs, _, T = Z.shape
    period = np.zeros(n_runs, dtype=np.int64)
    P = min(int(max_period), T // 3)
    if P < 1 or n_runs == 0:
        return period
    W = min(T - P, max(T // 2, 2 * P))
    thr = rtol * (_signal_scale(Z) if scale is None else scale)
    with np.errstate(invalid="ignore"):
        last = Z[:, :, T - 1]
        todo = np.arange(n_runs)
        for p in range(1, P + 1):
            d = np.abs(last[todo] - Z[todo, :, T - 1 - p])
            cand = todo[np.all(d <= thr[todo], axis=1)]
            if cand.size:
                d = np.abs(Z[cand, :, T - W :] - Z[cand, :, T - W - p : T - p])
                found = cand[np.all(d <= thr[cand, :, None], axis=(1, 2))]
                period[found] = p
                todo = todo[period[todo] == 0]
            if todo.size == 0:
                break
    return period


def detect_period(series, *, max_period=64, rtol=1e-6):
    """Smallest period of the end of a (multivariate) series, 0 if none.

    With ``T = len(series)``, ``P = min(max_period, T // 3)`` and the window
    ``W = min(T - P, max(T // 2, 2 P))``, the period is the smallest
    ``p <= P`` such that every sample of the last ``W`` repeats after ``p``
    samples, ``|z[t] - z[t - p]| <= rtol * max|z|``, in every column (each
    column scaled by its own largest absolute value over the whole series).
    Testing only the second half of the series makes the test robust to slow
    transients; the relative tolerance makes it robust to round-off and to the
    scale of each signal.  Pass the tail of a run (see :func:`default_tail`).

    Parameters
    ----------
    series : array-like of shape (T,) or (T, k)
        One scalar or ``k`` simultaneous signals per time step.
    max_period : int, default=64
        Longest period looked for.
    rtol : float, default=1e-6
        Relative tolerance of a repeat.

    Returns
    -------
    period : int
        1 for a fixed point, ``p`` for a period-``p`` orbit, 0 when no period
        up to ``max_period`` fits (aperiodic, not yet settled, or non-finite).

    Examples
    --------
    >>> import numpy as np
    >>> from sharpsk._dynamics import detect_period
    >>> detect_period(np.tile([0.1, 0.5, 0.9], 100))
    3
    >>> detect_period(np.random.default_rng(0).random(300))
    0
    """
    return int(_period_batch(_as_signals(series), max_period, rtol)[0])


#: Relative change across the tail above which a run has not settled.
SETTLE_TOL = 1e-2
#: Contraction factor of the largest step that marks a converging run.
CONTRACTION = 0.1


def _seqsum(a):
    """Sum along the last axis, added in order (``a[0] + a[1] + ...``).

    ``np.sum`` adds pairwise, in an order that depends on the length; a
    sequential sum is what a loop vectorised across runs computes, so the
    compiled labeller of the batched UV engine gives these bits.
    """
    a = np.asarray(a, dtype=float)
    if a.shape[-1] == 0:
        return np.zeros(a.shape[:-1])
    return np.add.accumulate(a, axis=-1)[..., -1]


def _tail_statistics(
    signals, loss, eta_sharpness, blocked, *, max_period, rtol, contraction
):
    """Per-run reductions of the tails that the labels are decided on.

    ``signals`` (N, k, T), ``loss`` (N, T) and ``eta_sharpness`` (N, Ts) as
    in :func:`_analyze_batch`; ``blocked`` (N,) marks runs not to analyse
    (diverged).  Returns a dict of (N,) arrays: ``ok`` (analysed: not
    blocked, every tail value finite), the detected ``period`` (0 when none
    or not ok), ``contracting``, ``non_monotone``, the ``mean``, ``min``,
    ``max`` and ``std`` of ``eta_sharpness`` (NaN when not ok), the
    ``drift`` and ``settled`` of :func:`_settling` (NaN and True when not
    ok).  Sums are sequential (:func:`_seqsum`); the standard deviation
    sums deviations from the first value, ``var = (S2 - S1**2 / Ts) / Ts``,
    whose relative error stays below about ``Ts**2`` times the machine
    epsilon (the first value's own deviation bounds ``var`` from below).
    :func:`sharpsk._uv_numba.uv_tail_statistics` computes the same bits
    from the UV engine's records.
    """
    signals = np.ascontiguousarray(signals, dtype=float)
    loss = np.ascontiguousarray(loss, dtype=float)
    eta_sharpness = np.ascontiguousarray(eta_sharpness, dtype=float)
    n_runs, _, T = signals.shape
    with np.errstate(invalid="ignore"):
        finite = (
            np.all(np.isfinite(signals), axis=(1, 2))
            & np.all(np.isfinite(loss), axis=1)
            & np.all(np.isfinite(eta_sharpness), axis=1)
        )
    ok_mask = finite & ~np.asarray(blocked, dtype=bool)
    ok = np.flatnonzero(ok_mask)
    Zk = signals[ok]
    scale = _signal_scale(Zk)
    period = np.zeros(n_runs, dtype=np.int64)
    period[ok] = _period_batch(Zk, max_period, rtol, scale)

    # Contraction onto a fixed point: the largest step |z[t] - z[t-1]|
    # (relative to each signal's scale) shrinks across the tail.  Division
    # by a positive scale is monotone, so max(|dz|) / scale is exact.
    contracting = np.zeros(n_runs, dtype=bool)
    non_monotone = np.zeros(n_runs, dtype=bool)
    if T >= 8:
        q = max(1, (T - 1) // 4)
        before = np.max(np.abs(np.diff(Zk[:, :, T - 1 - 2 * q : T - q], axis=2)), 2)
        final = np.max(np.abs(np.diff(Zk[:, :, T - 1 - q :], axis=2)), axis=2)
        contracting[ok] = np.max(final / scale, axis=1) <= contraction * np.max(
            before / scale, axis=1
        )
    if loss.shape[1] >= 2:
        Lk = loss[ok]
        thr = rtol * np.maximum(np.max(np.abs(Lk), axis=1), _TINY)
        non_monotone[ok] = np.any(np.diff(Lk, axis=1) > thr[:, None], axis=1)

    stats = {k: np.full(n_runs, np.nan) for k in ("mean", "min", "max", "std")}
    Ts = eta_sharpness.shape[1]
    if Ts:
        es = eta_sharpness[ok]
        stats["mean"][ok] = _seqsum(es) / Ts
        stats["min"][ok] = np.min(es, axis=1)
        stats["max"][ok] = np.max(es, axis=1)
        dev = es - es[:, :1]
        s1, s2 = _seqsum(dev), _seqsum(dev * dev)
        stats["std"][ok] = np.sqrt(np.maximum((s2 - s1 * s1 / Ts) / Ts, 0.0))
    drift = np.full(n_runs, np.nan)
    settled = np.ones(n_runs, dtype=bool)
    drift[ok], settled[ok] = _settling(Zk, eta_sharpness[ok], period[ok], scale)
    return {
        "ok": ok_mask,
        "period": period,
        "contracting": contracting,
        "non_monotone": non_monotone,
        **stats,
        "drift": drift,
        "settled": settled,
    }


def _analyze_batch(
    signals,
    loss,
    eta_sharpness,
    diverged,
    lyapunov,
    max_eta_sharpness,
    final_loss,
    *,
    edge,
    max_period=64,
    rtol=1e-6,
    edge_band=EDGE_BAND,
    lyapunov_tol=1e-2,
    contraction=CONTRACTION,
):
    """Vectorised labels of N runs from their tails (rows).

    ``signals`` (N, k, T) are the series used for period detection and
    contraction, ``loss`` (N, T) the loss tail, ``eta_sharpness`` (N, Ts) the
    tail of ``eta`` times the tracked sharpness; ``diverged``, ``lyapunov``
    (NaN when unknown), ``max_eta_sharpness`` and ``final_loss`` are (N,);
    ``edge`` (float or (N,)) is ``eta`` times the stability threshold, where
    the edge-of-stability decisions are taken.  Returns a dict of (N,)
    arrays (see :func:`classify_run`).  Every reduction runs along the last,
    contiguous axis of each row, so a run gives the same bits alone or in a
    batch.
    """
    final_loss = np.asarray(final_loss, dtype=float)
    with np.errstate(invalid="ignore"):
        blocked = np.asarray(diverged, dtype=bool) | ~np.isfinite(final_loss)
    stats = _tail_statistics(
        signals,
        loss,
        eta_sharpness,
        blocked,
        max_period=max_period,
        rtol=rtol,
        contraction=contraction,
    )
    return _label_runs(
        stats,
        lyapunov,
        max_eta_sharpness,
        final_loss,
        edge=edge,
        edge_band=edge_band,
        lyapunov_tol=lyapunov_tol,
    )


def _label_runs(
    stats, lyapunov, max_eta_sharpness, final_loss, *, edge, edge_band, lyapunov_tol
):
    """The decisions of :func:`_analyze_batch` on :func:`_tail_statistics`."""
    lyapunov = np.asarray(lyapunov, dtype=float)
    final_loss = np.asarray(final_loss, dtype=float)
    max_eta_sharpness = np.asarray(max_eta_sharpness, dtype=float)
    diverged = ~stats["ok"]
    n_runs = diverged.size
    period = stats["period"].copy()
    contracting, non_monotone = stats["contracting"], stats["non_monotone"]
    edge = np.broadcast_to(np.asarray(edge, dtype=float), (n_runs,))
    ratio = stats["mean"] / edge
    in_band = (ratio >= edge_band[0]) & (ratio <= edge_band[1])
    straddles = (stats["min"] < edge) & (stats["max"] > edge)
    chaotic = lyapunov > lyapunov_tol  # NaN (unknown) compares False

    # Contraction overrides a detected period >= 2: a slowly decaying
    # oscillation (multiplier near -1) repeats within rtol after 2 steps.
    bounded = ~diverged
    converge = bounded & ((period == 1) | contracting)
    rest = bounded & (period == 0) & ~contracting
    label = np.select(
        [
            diverged,
            converge,
            bounded & (period == 2) & in_band,
            bounded & (period >= 2),
            rest & chaotic,
            rest & (non_monotone | straddles) & in_band,
            rest & ~non_monotone,
        ],
        ["diverge", "converge", "eos", "periodic", "chaotic", "eos", "converge"],
        default="periodic",
    ).astype(object)
    converged = label == "converge"
    # Chaotic tails are not tested (their halves differ by chance), and a
    # detected fixed point has settled by definition.
    tested = bounded & (label != "chaotic") & ~((period == 1) & converged)
    settled = stats["settled"] | ~tested
    period[converged] = 1
    period[diverged] = 0
    return {
        "label": label,
        "period": period,
        "lyapunov": np.where(diverged, np.nan, lyapunov),
        "final_loss": np.where(diverged, np.inf, final_loss),
        "eta_sharpness_mean": stats["mean"],
        "eta_sharpness_min": stats["min"],
        "eta_sharpness_max": stats["max"],
        "eta_sharpness_std": stats["std"],
        "max_eta_sharpness": np.where(diverged, np.nan, max_eta_sharpness),
        "edge_ratio_mean": ratio,
        "catapult": converged & (max_eta_sharpness > edge),
        "diverged": diverged,
        "settled": settled,
        "drift": stats["drift"],
    }


def _settling(Z, eta_sharpness, period, scale):
    """Whether each run's tail is stationary: ``(drift, settled)``.

    ``drift`` is the relative change of the tracked sharpness between the
    two halves of its tail (``mean(second) / mean(first) - 1``).  A run has
    settled when ``|drift| <= SETTLE_TOL`` and, for a detected even period
    ``p``, the amplitude of its ``p``-cycle about the ``p / 2``-cycle (the
    mean of ``|z[t] - z[t - p/2]|`` of the first signal, the loss) changes
    by at most ``SETTLE_TOL`` between the halves: near a period doubling an
    orbit that still decays onto the lower period repeats within ``rtol``
    over the tail but shrinks from one half to the next.  Amplitudes at
    round-off level (below ``1e-9`` of the signal's scale) are not tested.
    Means are sequential sums over the count (:func:`_seqsum`).
    """
    n = Z.shape[0]
    drift = np.full(n, np.nan)
    Ts = eta_sharpness.shape[1]
    if Ts >= 4:
        h = Ts // 2
        first = _seqsum(eta_sharpness[:, :h]) / h
        second = _seqsum(eta_sharpness[:, Ts - h :]) / h
        with np.errstate(divide="ignore", invalid="ignore"):
            drift = second / first - 1.0
    settled = ~(np.abs(drift) > SETTLE_TOL)  # NaN (too short): settled
    T = Z.shape[2]
    for p in np.unique(period[(period >= 2) & (period % 2 == 0)]):
        rows = np.flatnonzero(period == p)
        half = int(p) // 2
        if T - half < 4:
            continue
        z = Z[rows, 0]  # the first signal (the loss) carries every cycle
        amp = np.abs(z[:, half:] - z[:, :-half])
        m = amp.shape[1] // 2
        a1 = _seqsum(amp[:, :m]) / m
        a2 = _seqsum(amp[:, amp.shape[1] - m :]) / m
        big = a1 > 1e-9 * scale[rows, 0]  # above round-off
        with np.errstate(divide="ignore", invalid="ignore"):
            change = np.where(big, np.abs(a2 / a1 - 1.0), 0.0)
        settled[rows] &= change <= SETTLE_TOL
    return drift, settled


def classify_run(
    loss,
    sharpness,
    learning_rate,
    *,
    diverged=False,
    lyapunov=None,
    orbit=None,
    tail=None,
    max_period=64,
    rtol=1e-6,
    edge_band=EDGE_BAND,
    lyapunov_tol=1e-2,
    contraction=0.1,
    stability_threshold=None,
    eos_band="deprecated",
):
    """Label one gradient-descent run from its traces.

    The label is one of :data:`LABELS`, decided on the tail of the run (the
    last ``tail`` records, default :func:`default_tail`):

    1. ``"diverge"``: ``diverged`` is set or a tail value is not finite.
    2. ``"converge"`` if the tail has period 1 or is contracting onto a fixed
       point: the largest step ``|z[t] - z[t-1]|`` (each signal relative to its
       largest absolute value) over the last quarter of the tail is at most
       ``contraction`` times that over the quarter before (slow, possibly
       oscillating convergence).  The signals ``z`` are the loss, the
       sharpness when recorded at the same steps, and the columns of
       ``orbit``.
    3. Otherwise the period ``p`` of the tail is detected
       (:func:`detect_period` on the same signals): ``p = 2`` with the tail
       mean of the *edge ratio* ``lambda / threshold`` (the tracked sharpness
       over the run's stability threshold, ``eta lambda_H / 2`` for GD) in
       ``edge_band`` is ``"eos"`` (the UV model's period-2 orbit straddling
       ``2 / eta``); ``p >= 3``, or a
       period-2 orbit far from the edge (the period-2 windows inside the UV
       model's chaotic band), is ``"periodic"``.
    4. Without a period: ``"chaotic"`` if ``lyapunov > lyapunov_tol``; else
       ``"eos"`` if the tail mean of the edge ratio lies in ``edge_band``
       and either the loss is non-monotone or the sharpness crosses the
       threshold (real networks hovering at the edge of stability, including
       the self-stabilised regime where the loss still falls monotonically
       while the sharpness oscillates around it); else ``"converge"`` if the loss
       is non-increasing; else ``"periodic"`` with period 0 (a bounded
       oscillation whose period is longer than ``max_period`` or that is
       quasi-periodic).

    Parameters
    ----------
    loss : array-like of shape (n_records,)
        Training loss at each recorded step.
    sharpness : array-like of shape (n_sharpness,)
        The tracked sharpness at each of its recorded steps: ``lambda_H``, or
        the preconditioned sharpness of an adaptive optimizer.
    learning_rate : float or array-like of shape (n_sharpness,)
        The step size ``eta`` of the run (per record for a schedule).
    diverged : bool, default=False
        Whether the run blew up (the traces then hold its finite prefix).
    lyapunov : float or None, default=None
        Largest Lyapunov exponent of the run if known (see
        :func:`uv_lyapunov`, :func:`tangent_lyapunov`); needed for
        ``"chaotic"``.
    orbit : array-like of shape (n_records,) or (n_records, k), default=None
        Extra signals recorded with the loss (e.g. the residual) for period
        detection.
    tail : int, default=None
        Number of final records analysed; ``None`` uses
        ``default_tail(n_records, max_period)``.
    max_period : int, default=64
        Longest period looked for.
    rtol : float, default=1e-6
        Relative tolerance of a repeat, and of a loss increase.
    edge_band : tuple of float, default=(0.875, 1.25)
        Range of the tail mean of the edge ratio (sharpness over stability
        threshold) counted as sitting at the edge of stability (rules 3 and
        4).  Networks hover a little above their threshold.
    lyapunov_tol : float, default=1e-2
        Exponents above it count as chaotic (finite-time estimates of a zero
        exponent scatter by about ``1 / tail``; tangent estimates of real
        networks over a few hundred steps by more).
    contraction : float, default=0.1
        Shrink factor of the step size across the tail that counts as
        converging.
    stability_threshold : float or array-like of shape (n_sharpness,), \
default=None
        The run's threshold (an estimator's ``stability_threshold_``); None:
        gradient descent's ``2 / learning_rate``.
    eos_band : tuple of float, default="deprecated"
        Deprecated: the band in units of ``eta * lambda_H`` (GD only); use
        ``edge_band`` (removed in 0.3).

    Returns
    -------
    result : dict
        ``label`` (str), ``period`` (int: 1 converged, ``p`` period-``p``
        orbit, 0 aperiodic or diverged), ``lyapunov`` (float, NaN when unknown
        or diverged), ``final_loss`` (inf when diverged), the tail statistics
        ``eta_sharpness_mean``, ``eta_sharpness_min``, ``eta_sharpness_max``,
        ``eta_sharpness_std`` of ``eta * lambda_H`` (NaN when diverged),
        ``max_eta_sharpness`` over the whole trace, ``edge_ratio_mean`` (the
        tail mean of the edge ratio), ``catapult`` (converged after the
        sharpness exceeded the threshold), ``diverged``, ``settled`` (the
        tail is stationary: the sharpness does not drift by more than 1 %
        between its halves and a detected even-period cycle does not decay
        onto the lower period; see the user guide's label policy; chaotic
        and diverged runs count as settled), ``drift`` (that relative change
        of the tracked sharpness, NaN when diverged) and ``tail``.

    Examples
    --------
    >>> import numpy as np
    >>> from sharpsk._dynamics import classify_run
    >>> t = np.arange(400)
    >>> loss = 0.5 + 0.1 * (-1.0) ** t          # a period-2 oscillation
    >>> sharp = 1.0 + 0.05 * (-1.0) ** t        # straddling 2 / eta = 1
    >>> r = classify_run(loss, sharp, 2.0, lyapunov=-0.1)
    >>> r["label"], r["period"], r["eta_sharpness_mean"], r["edge_ratio_mean"]
    ('eos', 2, 2.0, 1.0)
    >>> classify_run(np.exp(-0.1 * t), 1.0 + 0 * t, 1.0)["label"]
    'converge'
    """
    loss = np.asarray(loss, dtype=float).ravel()
    sharpness = np.asarray(sharpness, dtype=float).ravel()
    eta = np.asarray(learning_rate, dtype=float)
    edge_band = deprecated_eos_band(eos_band, edge_band)
    if stability_threshold is None:
        stability_threshold = GD.stability_threshold(eta)
    # eta times the threshold: the same at every step for a given optimizer
    edge = np.ravel(eta * np.asarray(stability_threshold, dtype=float))[-1]
    n = loss.size
    if n == 0:
        raise ValueError("loss: the trace is empty.")
    if sharpness.size == 0:
        raise ValueError("sharpness: the trace is empty.")
    T = default_tail(n, max_period) if tail is None else min(int(tail), n)
    if T < 1:
        raise ValueError(f"tail must be a positive integer, got {tail!r}.")
    Ts = min(
        sharpness.size,
        T if sharpness.size == n else default_tail(sharpness.size, max_period),
    )
    cols = [loss[-T:]]
    if sharpness.size == n:
        cols.append(sharpness[-T:])
    if orbit is not None:
        orbit = np.asarray(orbit, dtype=float)
        orbit = orbit.reshape(orbit.shape[0], -1)
        if orbit.shape[0] != n:
            raise ValueError(
                f"orbit: expected {n} records like loss, got {orbit.shape[0]}."
            )
        cols.extend(orbit[-T:].T)
    with np.errstate(over="ignore", invalid="ignore"):
        eta_sharp = eta * sharpness
        max_es = np.max(eta_sharp) if np.all(np.isfinite(eta_sharp)) else np.nan
    res = _analyze_batch(
        np.stack(cols)[None],
        loss[None, -T:],
        eta_sharp[None, -Ts:],
        np.array([bool(diverged)]),
        np.array([np.nan if lyapunov is None else float(lyapunov)]),
        np.array([max_es]),
        loss[-1:],
        edge=edge,
        max_period=max_period,
        rtol=rtol,
        edge_band=edge_band,
        lyapunov_tol=lyapunov_tol,
        contraction=contraction,
    )
    out = {}
    for key, value in res.items():
        v = value[0]
        out[key] = v if isinstance(v, str) else v.item()
    out["tail"] = T
    return out


def labelled_tail(n_records, analysis):
    """Number of final records a scan labels: ``analysis["tail"]`` (at most
    the run), or :func:`default_tail` when it is None."""
    tail = analysis.get("tail")
    if tail is None:
        return default_tail(n_records, analysis["max_period"])
    return min(int(tail), int(n_records))


def summarize_run(
    loss,
    sharpness,
    learning_rate,
    stability_threshold,
    steps,
    *,
    diverged,
    analysis,
    n_tail_points,
    orbit=None,
    lyapunov=None,
):
    """Label one recorded run and keep the tail of its traces (scan summary).

    The summary every scan engine stores per run: :func:`classify_run` of the
    traces with the scan's ``analysis`` options (``tail``, ``max_period``,
    ``rtol``, ``edge_band``, ``lyapunov_tol``), plus the last
    ``n_tail_points`` records (all of them when None) of the tracked
    sharpness and the loss.

    Parameters
    ----------
    loss, sharpness : array-like of shape (n_records,)
        The loss and the tracked sharpness at ``steps``.
    learning_rate, stability_threshold : float or array-like
        The run's ``eta`` and threshold (per record for a schedule).
    steps : array-like of int of shape (n_records,)
        The recorded steps.
    diverged : bool
        Whether the run blew up (the traces hold its finite prefix).
    analysis : dict
        Keyword arguments of :func:`classify_run` (``tail`` may be None).
    n_tail_points : int or None
        Records kept per run; None keeps the whole trace, diverged runs
        included (their finite prefix), else diverged runs keep none.
    orbit : array-like, default=None
        Extra signals for period detection (see :func:`classify_run`).
    lyapunov : float or None, default=None
        The run's exponent (over the :func:`labelled_tail`).

    Returns
    -------
    summary : dict
        The result of :func:`classify_run` (without ``tail``), and
        ``stability_threshold`` (at the last record), ``tail_steps``,
        ``tail_sharpness``, ``tail_loss``.
    """
    loss = np.asarray(loss, dtype=float)
    sharp = np.asarray(sharpness, dtype=float)
    steps = np.asarray(steps)
    threshold = np.asarray(stability_threshold, dtype=float)
    T = labelled_tail(loss.size, analysis)
    kwargs = {k: v for k, v in analysis.items() if k != "tail"}
    out = classify_run(
        loss,
        sharp,
        learning_rate,
        diverged=diverged,
        lyapunov=lyapunov,
        orbit=orbit,
        tail=T,
        stability_threshold=threshold,
        **kwargs,
    )
    out.pop("tail")
    out["stability_threshold"] = float(np.ravel(threshold)[-1])
    if n_tail_points is None:
        P = sharp.size
    else:
        P = 0 if diverged else min(int(n_tail_points), T, sharp.size)
    out["tail_steps"] = steps[steps.size - P :] if P else np.empty(0, dtype=int)
    out["tail_sharpness"] = sharp[sharp.size - P :] if P else np.empty(0)
    out["tail_loss"] = loss[loss.size - P :] if P else np.empty(0)
    return out


# --------------------------------------------------------------------------
# Lyapunov exponents
# --------------------------------------------------------------------------


# Steps between renormalisations of the tangent in uv_lyapunov: its growth
# is measured (one square root and one logarithm per run) once per block, not
# once per step.  To overflow or underflow in 16 steps, the tangent of a
# bounded run would have to grow or shrink by a factor 1e19 per step.
_TANGENT_BLOCK = 16


def _tangent_stretches(n_steps, discard):
    """Lengths of the stretches of steps after which :func:`uv_lyapunov`
    renormalises its tangent: every ``_TANGENT_BLOCK`` steps, after the
    ``discard`` steps and after the last."""
    ends = {*range(_TANGENT_BLOCK, n_steps, _TANGENT_BLOCK), discard, n_steps}
    return np.diff([0, *sorted(ends - {0})])


def uv_lyapunov(delta_f, ntk, eta, kappa, y, n_steps, *, discard=0):
    """Largest Lyapunov exponent of the exact UV map, from its Jacobian.

    Iterates :func:`sharpsk._maps.uv_step` ``n_steps`` times from the given
    state while a tangent vector (initially ``(1, 1) / sqrt(2)`` in
    ``(delta_f, ntk)`` coordinates) is pushed through the Jacobian; the
    exponent is the mean log growth factor per step over the steps after the
    first ``discard`` (which let the tangent align).  The tangent is
    renormalised every 16 steps (and after the ``discard`` steps), its log
    growth over the 16 steps counted then.
    Broadcasts over batches of runs.

    Parameters
    ----------
    delta_f, ntk, eta, kappa, y : float or ndarray
        Initial state, learning rate, ``kappa`` and target (broadcast).
    n_steps : int
        Number of steps.
    discard : int, default=0
        Initial steps not averaged.

    Returns
    -------
    exponent : ndarray
        Largest Lyapunov exponent per step (natural log); NaN for runs that
        diverge (see :func:`sharpsk._maps.divergence_bound`).

    Notes
    -----
    Along a converged run the exponent tends to 0 (the line of minima is
    neutral).  On the edge-of-stability attractor (``Q = 0``) the exponent is
    that of the 1-D map :func:`sharpsk._maps.eos_map` whenever it exceeds the
    transverse one, the mean of ``2 log|1 - g**2|`` (from
    ``Q' = Q (1 - g**2)**2``).  In parameter space the transverse coordinate is
    ``sqrt(Q)`` (e.g. ``u**2 - v**2`` at width 1), so the tangent dynamics
    ``(I - eta H) delta`` (:func:`tangent_lyapunov`) see half that transverse
    exponent: on stable periodic orbits the two estimates can differ (both
    negative); on chaotic orbits the along-manifold exponent dominates both.

    Examples
    --------
    >>> from sharpsk._dynamics import uv_lyapunov
    >>> lam = uv_lyapunov(-1.0, 1.0, [0.5, 1.1, 3.0], 1.0, 1.0, 2000,
    ...                   discard=1000)
    >>> lam.round(3)   # converge (neutral), the period-2 orbit, divergence
    array([ 0.   , -0.223,    nan])
    """
    n_steps, discard = int(n_steps), int(discard)
    if not 0 <= discard < n_steps:
        raise ValueError(
            f"discard must be in [0, n_steps), got discard={discard}, "
            f"n_steps={n_steps}."
        )
    df, ntk, eta, kappa, y = np.broadcast_arrays(
        *(np.asarray(a, dtype=float) for a in (delta_f, ntk, eta, kappa, y))
    )
    bound = divergence_bound(df, y)
    ta = np.full(df.shape, np.sqrt(0.5))
    tb = ta.copy()
    total = np.zeros(df.shape)
    alive = np.abs(df) <= bound
    ends = set(np.cumsum(_tangent_stretches(n_steps, discard)).tolist())
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for t in range(n_steps):
            j00, j01, j10, j11 = uv_jacobian_entries(df, ntk, eta, kappa, y)
            ta, tb = j00 * ta + j01 * tb, j10 * ta + j11 * tb
            df, ntk = uv_step(df, ntk, eta, kappa, y)
            alive &= np.abs(df) <= bound
            if t + 1 in ends:  # renormalise; count the growth after discard
                n2 = ta * ta + tb * tb
                if t + 1 > discard:
                    total += 0.5 * np.log(n2)
                norm = np.sqrt(n2)
                ta, tb = ta / norm, tb / norm
        lam = total / (n_steps - discard)
    return np.where(alive & np.isfinite(lam), lam, np.nan)


def tangent_step(tangent, hvp_tangent, learning_rate):
    """One step of the gradient-descent tangent dynamics, renormalised.

    The Jacobian of a GD step ``theta' = theta - eta grad L(theta)`` is
    ``I - eta H_t``, so a perturbation evolves as
    ``delta' = delta - eta H_t delta``: one Hessian-vector product per step.

    Parameters
    ----------
    tangent : ndarray
        Unit tangent vector ``delta`` (any shape, e.g. flattened parameters).
    hvp_tangent : ndarray
        ``H_t @ delta``, the Hessian-vector product at the current parameters.
    learning_rate : float
        ``eta``.

    Returns
    -------
    new_tangent : ndarray
        ``delta'`` divided by its norm.
    log_growth : float
        ``log |delta'|``; average these with :func:`lyapunov_from_growth`.

    Examples
    --------
    >>> import numpy as np
    >>> from sharpsk._dynamics import tangent_step
    >>> H = np.diag([3.0, 0.5])
    >>> d, lg = tangent_step(np.array([0.0, 1.0]), H @ [0.0, 1.0], 1.0)
    >>> d, round(lg, 6)     # |1 - 1 * 0.5| = 0.5
    (array([0., 1.]), -0.693147)
    """
    new = np.asarray(tangent, dtype=float) - learning_rate * np.asarray(
        hvp_tangent, dtype=float
    )
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        norm = float(np.sqrt(np.sum(new * new)))
        return new / norm, float(np.log(norm))


def lyapunov_from_growth(log_growth, discard=0):
    """Largest Lyapunov exponent from per-step log growth factors.

    The protocol for any gradient-descent run (used by the estimators'
    tangent option): start from a random unit vector ``delta`` in parameter
    space; at every step ``t``, *before* updating the parameters, take one
    Hessian-vector product at ``theta_t`` and call :func:`tangent_step`; keep
    its ``log_growth``.  The exponent is the mean of those after the first
    ``discard`` steps (which let ``delta`` align with the most expanding
    direction).

    Parameters
    ----------
    log_growth : array-like of shape (n_steps,)
        ``log |delta_{t+1}| - log |delta_t|`` per step (with renormalisation,
        ``log |delta_{t+1}|``).
    discard : int, default=0
        Initial steps ignored.

    Returns
    -------
    exponent : float
        Mean log growth per step; NaN if nothing is left or a value is not
        finite.

    Examples
    --------
    >>> from sharpsk._dynamics import lyapunov_from_growth
    >>> lyapunov_from_growth([5.0, 0.1, 0.3], discard=1)
    0.2
    """
    g = np.asarray(log_growth, dtype=float).ravel()[int(discard) :]
    if g.size == 0 or not np.all(np.isfinite(g)):
        return np.nan
    return float(np.mean(g))


def tangent_lyapunov(hvp, learning_rate, tangent0, n_steps=None, *, discard=0):
    """Largest Lyapunov exponent of a GD run from its Hessian-vector products.

    Parameters
    ----------
    hvp : callable or iterable of callables
        Either ``hvp(t, v) -> H_t v`` (then ``n_steps`` is required) or a
        sequence whose ``t``-th element is ``v -> H_t v``.
    learning_rate : float
        ``eta``.
    tangent0 : ndarray
        Initial tangent vector (normalised here).
    n_steps : int, default=None
        Number of steps when ``hvp`` is a callable.
    discard : int, default=0
        Initial steps not averaged (see :func:`lyapunov_from_growth`).

    Returns
    -------
    exponent : float
        Mean log growth per step of ``delta' = (I - eta H_t) delta``.

    Examples
    --------
    >>> import numpy as np
    >>> from sharpsk._dynamics import tangent_lyapunov
    >>> H = np.diag([3.0, 0.5])          # |1 - eta h| is largest for h = 3
    >>> lam = tangent_lyapunov(lambda t, v: H @ v, 1.0, np.ones(2), 60,
    ...                        discard=10)
    >>> round(lam, 12) == round(float(np.log(2.0)), 12)
    True
    """
    if callable(hvp):
        if n_steps is None:
            raise ValueError("n_steps is required when hvp is a callable.")
        ops = (lambda v, t=t: hvp(t, v) for t in range(int(n_steps)))
    else:
        ops = iter(hvp)
    d = np.asarray(tangent0, dtype=float)
    d = d / np.sqrt(np.sum(d * d))
    growth = []
    for op in ops:
        d, lg = tangent_step(d, op(d), learning_rate)
        growth.append(lg)
    return lyapunov_from_growth(growth, discard)


def logistic_map(x, r):
    """The logistic map ``r x (1 - x)`` (a test bed for exponents).

    Examples
    --------
    >>> from sharpsk._dynamics import logistic_map
    >>> logistic_map(0.5, 4.0)
    1.0
    """
    return r * x * (1.0 - x)


def logistic_map_derivative(x, r):
    """Derivative ``r (1 - 2 x)`` of :func:`logistic_map`.

    Examples
    --------
    >>> from sharpsk._dynamics import logistic_map_derivative
    >>> logistic_map_derivative(0.0, 4.0)
    4.0
    """
    return r * (1.0 - 2.0 * x)


def map_lyapunov(f, fprime, x0, n_steps, *, discard=1000, args=()):
    """Lyapunov exponent of a 1-D map, ``mean log|f'(x_t)|`` along an orbit.

    Parameters
    ----------
    f, fprime : callable
        ``f(x, *args)`` and its derivative; they must broadcast.
    x0 : float or ndarray
        Initial points (one orbit each; broadcast with ``args``).
    n_steps : int
        Number of averaged steps.
    discard : int, default=1000
        Transient steps iterated first and not averaged.
    args : tuple, default=()
        Extra arguments of ``f`` and ``fprime`` (e.g. a parameter array).

    Returns
    -------
    exponent : ndarray
        The exponent per orbit (NaN for orbits that leave the finite range).

    Examples
    --------
    >>> import numpy as np
    >>> from sharpsk._dynamics import logistic_map, logistic_map_derivative
    >>> from sharpsk._dynamics import map_lyapunov
    >>> lam = map_lyapunov(logistic_map, logistic_map_derivative, 0.3, 100_000,
    ...                    args=(4.0,))
    >>> bool(abs(lam - np.log(2.0)) < 0.01)
    True
    """
    x = np.asarray(x0, dtype=float)
    total = 0.0
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for _ in range(int(discard)):
            x = f(x, *args)
        for _ in range(int(n_steps)):
            total = total + np.log(np.abs(fprime(x, *args)))
            x = f(x, *args)
        lam = total / int(n_steps)
    return np.where(np.isfinite(x), lam, np.nan)


def series_lyapunov(series, *, embedding_dim=1, lag=1, min_separation=10, fit_steps=5):
    """Largest Lyapunov exponent from a scalar time series (Rosenstein).

    Delay vectors ``(x_i, x_{i+lag}, ..., x_{i+(m-1) lag})`` are built; each is
    paired with its nearest neighbour at least ``min_separation`` samples away
    in time; the mean log distance of the pairs after ``k`` steps grows like
    ``lambda k`` until it saturates at the attractor size, and the exponent is
    the least-squares slope over ``k = 0 .. fit_steps``.  Use it to
    cross-check the Jacobian-based exponents; it is biased low when the
    initial neighbour distances are not small (short series) and needs
    ``fit_steps`` shorter than the saturation time.

    Parameters
    ----------
    series : array-like of shape (n_samples,)
        The scalar observable, sampled every step.
    embedding_dim : int, default=1
        Delay-embedding dimension ``m`` (1 suffices for a 1-D map).
    lag : int, default=1
        Delay in samples.
    min_separation : int, default=10
        Minimal temporal separation of a pair.
    fit_steps : int, default=5
        Number of steps over which the divergence curve is fitted.

    Returns
    -------
    exponent : float
        Estimated largest exponent per sample (natural log).

    References
    ----------
    M. T. Rosenstein, J. J. Collins and C. J. De Luca, "A practical method for
    calculating largest Lyapunov exponents from small data sets", Physica D
    65 (1993) 117-134.

    Examples
    --------
    >>> import numpy as np
    >>> from sharpsk._dynamics import logistic_map, series_lyapunov
    >>> x = [0.3]
    >>> for _ in range(2999):
    ...     x.append(logistic_map(x[-1], 4.0))
    >>> bool(abs(series_lyapunov(x) - np.log(2.0)) < 0.1)
    True
    """
    x = np.asarray(series, dtype=float).ravel()
    m, lag, k = int(embedding_dim), int(lag), int(fit_steps)
    n_vec = x.size - (m - 1) * lag
    n_use = n_vec - k  # vectors that can be followed for k steps
    if m < 1 or lag < 1 or k < 1 or n_use < 2 * int(min_separation) + 2:
        raise ValueError(
            f"series of length {x.size} is too short for embedding_dim={m}, "
            f"lag={lag}, fit_steps={k}, min_separation={min_separation}."
        )
    if not np.all(np.isfinite(x)):
        return np.nan
    emb = np.stack([x[j * lag : j * lag + n_vec] for j in range(m)], axis=1)
    a = emb[:n_use]
    dist = np.sqrt(np.sum((a[:, None, :] - a[None, :, :]) ** 2, axis=2))
    idx = np.arange(n_use)
    dist[np.abs(idx[:, None] - idx[None, :]) < int(min_separation)] = np.inf
    dist[dist == 0.0] = np.inf  # exact repeats carry no divergence
    nn = np.argmin(dist, axis=1)
    keep = np.isfinite(dist[idx, nn])
    i, j = idx[keep], nn[keep]
    curve = np.empty(k + 1)
    with np.errstate(divide="ignore"):
        for s in range(k + 1):
            d = np.sqrt(np.sum((emb[i + s] - emb[j + s]) ** 2, axis=1))
            logd = np.log(d)
            curve[s] = np.mean(logd[np.isfinite(logd)])
    steps = np.arange(k + 1)
    return float(np.polyfit(steps, curve, 1)[0])


# --------------------------------------------------------------------------
# Fixed points and thresholds of the UV model
# --------------------------------------------------------------------------


def uv_critical_learning_rate(kappa, y):
    """``eta_c = 1 / (sqrt(kappa) |y|)``: above it no minimum is stable.

    Reachable minima have ``ntk >= 2 sqrt(kappa) |y|`` (from ``Q >= 0``), and a
    minimum is linearly stable only while ``eta ntk < 2``.

    Parameters
    ----------
    kappa, y : float or ndarray
        ``s**2 |x|**2`` and the target.

    Returns
    -------
    eta_c : ndarray
        Critical learning rate (inf for ``y = 0``).

    Examples
    --------
    >>> from sharpsk._dynamics import uv_critical_learning_rate
    >>> float(uv_critical_learning_rate(4.0, 0.5))
    1.0
    """
    with np.errstate(divide="ignore"):
        return 1.0 / (np.sqrt(np.asarray(kappa, dtype=float)) * np.abs(y))


def uv_minimum_multiplier(ntk, eta):
    """Multiplier ``1 - eta ntk`` of a minimum (``delta_f = 0``) of the UV map.

    The Jacobian there has eigenvalues ``1 - eta ntk`` (across the line of
    minima) and 1 (along it); the minimum is linearly stable iff
    ``|1 - eta ntk| < 1``, i.e. ``0 < eta ntk < 2``.

    Examples
    --------
    >>> from sharpsk._dynamics import uv_minimum_multiplier
    >>> float(uv_minimum_multiplier(3.0, 0.5))
    -0.5
    """
    return 1.0 - np.multiply(eta, ntk)


def eos_manifold_ntk(delta_f, kappa, y):
    """NTK on the edge-of-stability manifold ``Q = 0``: ``2 sqrt(kappa)|f|``.

    Examples
    --------
    >>> from sharpsk._dynamics import eos_manifold_ntk
    >>> float(eos_manifold_ntk(-0.5, 4.0, 1.0))
    2.0
    """
    return 2.0 * np.sqrt(kappa) * np.abs(np.add(delta_f, y))


def uv_q(delta_f, ntk, kappa, y):
    """The conserved-type quantity ``Q = ntk**2 - 4 kappa f**2``.

    Examples
    --------
    >>> from sharpsk._dynamics import uv_q
    >>> float(uv_q(-1.0, 3.0, 1.0, 1.0))   # f = 0
    9.0
    """
    f = np.add(delta_f, y)
    return np.multiply(ntk, ntk) - 4.0 * np.multiply(kappa, f * f)


def uv_q_update(q, delta_f, eta, kappa):
    """Exact one-step law ``Q' = Q (1 - eta**2 kappa delta_f**2)**2``.

    Gradient flow conserves ``Q``; large steps shrink it (flatter minima), and
    the bounded attractor above ``eta_c`` lies on ``Q = 0``.

    Examples
    --------
    >>> from sharpsk._dynamics import uv_q_update
    >>> float(uv_q_update(2.0, 0.5, 1.0, 1.0))
    1.125
    """
    eta = np.asarray(eta, dtype=float)
    return q * (1.0 - eta * eta * np.multiply(kappa, np.square(delta_f))) ** 2


def uv_scaled_variables(delta_f, ntk, eta, kappa, y):
    """Scaled variables ``(g, x, y_tilde)`` of science.md section 2.2.

    ``g = eta sqrt(kappa) delta_f``, ``x = eta ntk``,
    ``y_tilde = eta sqrt(kappa) y``; the long-time behaviour depends on
    ``y_tilde`` only (``y_tilde = eta / eta_c`` for ``y > 0``).

    Examples
    --------
    >>> from sharpsk._dynamics import uv_scaled_variables
    >>> uv_scaled_variables(0.5, 2.0, 0.5, 4.0, 1.0)
    (0.5, 1.0, 1.0)
    """
    eta = np.asarray(eta, dtype=float)
    root = eta * np.sqrt(kappa)
    g, x, yt = root * delta_f, eta * ntk, root * y
    if np.ndim(g) == 0 and np.ndim(x) == 0 and np.ndim(yt) == 0:
        return float(g), float(x), float(yt)
    return g, x, yt


def eos_fixed_point_multiplier(y_tilde):
    """Multiplier ``1 - 2 y_tilde`` of the EoS map's fixed point ``g = 0``.

    The fixed point (a minimum with ``eta ntk = 2 y_tilde``) is stable for
    ``0 < y_tilde < 1``; at ``y_tilde = 1`` (``eta = eta_c``) the multiplier
    crosses -1 and a period-2 orbit is born (period doubling).  The map's
    other fixed points, ``g = 2`` (multiplier ``5 + 2 y_tilde``) and
    ``g = -y_tilde`` (``f = 0``), are unstable.

    Examples
    --------
    >>> from sharpsk._dynamics import eos_fixed_point_multiplier
    >>> float(eos_fixed_point_multiplier(1.0))
    -1.0
    """
    return 1.0 - 2.0 * np.asarray(y_tilde, dtype=float)


def lazy_phase(c):
    """Phase of the lazy limit (``y_tilde -> 0``, ``f_0 = 0``) at ``c = eta ntk_0``.

    ``c < 2`` converges, ``2 <= c < 4`` catapults (the loss spikes, the NTK
    drops below ``2 / eta``, then the run converges), ``c >= 4`` diverges.

    Parameters
    ----------
    c : float or array-like
        Learning rate in units of the initial NTK, ``c = eta ntk_0`` (in this
        limit the initial sharpness equals the NTK).

    Returns
    -------
    phase : str or ndarray of str
        ``"converge"``, ``"catapult"`` or ``"diverge"``.

    Examples
    --------
    >>> from sharpsk._dynamics import lazy_phase
    >>> lazy_phase([1.0, 3.0, 5.0]).tolist()
    ['converge', 'catapult', 'diverge']
    """
    c_arr = np.asarray(c, dtype=float)
    out = np.select(
        [c_arr < 2.0, c_arr < 4.0], ["converge", "catapult"], default="diverge"
    )
    return str(out) if out.ndim == 0 else out
