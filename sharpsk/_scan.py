"""LearningRateScan: fit and label one run per learning rate.

The layout follows scikit-learn's ``model_selection/_search.py``: a
meta-estimator that validates its parameters, builds the list of runs, and
hands each to a module-level worker (:func:`_fit_and_label`, like
``_fit_and_score``) through :class:`sklearn.utils.parallel.Parallel`.  A
single-example UV model skips the per-run loop altogether: all runs are
iterated at once by the vectorised function-space kernel
:func:`_uv_batched_runs`, whose numbers are bit-identical to the per-run path.
"""

import os
import sys
import time
import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, MetaEstimatorMixin, _fit_context, clone
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils._tags import get_tags
from sklearn.utils.parallel import Parallel, delayed
from sklearn.utils.validation import check_memory, validate_data

from ._dynamics import LABELS, _analyze_batch, classify_run, default_tail, uv_lyapunov
from ._maps import _UVStepper, divergence_bound, recorded_steps, uv_sharpness

__all__ = ["LearningRateScan"]

# Runs iterated together by the batched UV engine: one cache entry and one
# progress update each.  Results do not depend on it (runs are independent).
_BATCH_BLOCK = 4096

# Keys of ``results_`` holding one number per run, in a stable order.
_RESULT_KEYS = (
    "learning_rate",
    "c",
    "label",
    "period",
    "lyapunov",
    "final_loss",
    "eta_sharpness_mean",
    "eta_sharpness_min",
    "eta_sharpness_max",
    "eta_sharpness_std",
    "max_eta_sharpness",
    "catapult",
    "diverged",
    "n_iter",
    "initial_sharpness",
    "critical_learning_rate",
)


# --------------------------------------------------------------------------
# Workers (module level: picklable for joblib, Dask and joblib.Memory)
# --------------------------------------------------------------------------


def _tail_lyapunov(delta_f, ntk, eta, kappa, y, n_steps):
    """UV exponent over the last ``n_steps`` steps (``n_steps // 8`` discarded)."""
    n_steps = int(n_steps)
    if n_steps < 1:
        return np.full(np.shape(delta_f), np.nan)
    return uv_lyapunov(delta_f, ntk, eta, kappa, y, n_steps, discard=n_steps // 8)


def _fit_and_label(estimator, X, y, *, learning_rate, analysis, n_tail_points):
    """Fit one configured clone and summarise its run.

    Warnings raised during the fit are recorded, not shown, and counted;
    arithmetic and linear-algebra errors count as divergence.  Returns a dict
    of scalars (the keys of ``results_`` computed per run) and the arrays
    ``tail_steps``, ``tail_sharpness``, ``tail_loss`` for the bifurcation
    table.
    """
    failed = False
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            estimator.fit(X, y)
        except (ArithmeticError, np.linalg.LinAlgError):
            failed = True
    out = {"n_warnings": len(caught)}
    if failed:
        nan = float("nan")
        out.update(
            label="diverge",
            period=0,
            lyapunov=nan,
            final_loss=float("inf"),
            eta_sharpness_mean=nan,
            eta_sharpness_min=nan,
            eta_sharpness_max=nan,
            eta_sharpness_std=nan,
            max_eta_sharpness=nan,
            catapult=False,
            diverged=True,
            n_iter=0,
        )
        empty = np.empty(0)
        out.update(
            tail_steps=np.empty(0, dtype=np.int64),
            tail_sharpness=empty,
            tail_loss=empty,
        )
        return out

    # The step size the run used (an estimator may take relative units).
    learning_rate = float(getattr(estimator, "learning_rate_", learning_rate))
    loss = np.asarray(estimator.loss_curve_, dtype=float)
    sharp = np.asarray(estimator.sharpness_trace_, dtype=float)
    diverged = bool(getattr(estimator, "diverged_", False))
    n_iter = int(getattr(estimator, "n_iter_", loss.size - 1))
    steps = np.asarray(getattr(estimator, "steps_", np.arange(sharp.size)))
    tail = analysis["tail"]
    T = default_tail(loss.size, analysis["max_period"]) if tail is None else tail
    T = min(T, loss.size)
    orbit = getattr(estimator, "residual_trace_", None)
    if orbit is not None and np.size(orbit) != loss.size:
        orbit = None
    lyap = getattr(estimator, "lyapunov_", None)
    if lyap is None:
        lyap = getattr(estimator, "lyapunov_exponent_", None)
    ntk = getattr(estimator, "ntk_trace_", None)
    if (
        lyap is None
        and not diverged
        and orbit is not None
        and ntk is not None
        and hasattr(estimator, "_function_space_init")
        and np.isfinite(getattr(estimator, "kappa_", np.nan))
        and steps.size == loss.size
    ):
        init = estimator._function_space_init(X, y)
        lyap = float(
            _tail_lyapunov(
                orbit[-T],
                ntk[-T],
                learning_rate,
                init["kappa"],
                init["y"],
                steps[-1] - steps[-T],
            )
        )
    kwargs = {k: v for k, v in analysis.items() if k != "tail"}
    res = classify_run(
        loss,
        sharp,
        learning_rate,
        diverged=diverged,
        lyapunov=lyap,
        orbit=orbit,
        tail=T,
        **kwargs,
    )
    res.pop("tail")
    out.update(res)
    out["n_iter"] = n_iter
    P = 0 if diverged else min(int(n_tail_points), T, sharp.size)
    out["tail_steps"] = steps[sharp.size - P :] if P else np.empty(0, dtype=int)
    out["tail_sharpness"] = sharp[sharp.size - P :]
    if sharp.size == loss.size:
        out["tail_loss"] = loss[loss.size - P :]
    else:  # sharpness recorded at other steps than the loss
        out["tail_loss"] = np.full(P, np.nan)
    return out


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
    """State of the runs still iterated by :func:`_uv_batched_runs`."""

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


def _uv_batched_runs(
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
    chunk_size=512,
):
    """All runs of a single-example UV scan at once, in function space.

    Iterates the exact map for every run with one vectorised step per
    gradient-descent step (:class:`sharpsk._maps._UVStepper`, the step of
    :func:`sharpsk._maps.uv_simulate`), keeps only what labelling needs (the
    tail window of records, the running maximum of ``eta * lambda_H`` over the
    recorded steps, the divergence step) and drops diverged runs, and until
    the tail window converged ones (exact fixed points, ``delta_f == 0``), from
    the active batch.  The numbers equal those of fitting a ``UVRegressor``
    per run and calling :func:`_fit_and_label`, bit for bit.

    Parameters
    ----------
    delta_f0, ntk0, eta, kappa, y : ndarray of shape (n_runs,)
        Initial state, learning rate, ``kappa`` and target of each run.
    max_iter, record_every : int
        Steps and record schedule (as in ``UVRegressor``).
    analysis : dict
        ``tail``, ``max_period`` and the labelling tolerances.
    n_tail_points : int
        Records per run kept for the bifurcation table.
    chunk_size : int, default=512
        Runs labelled at a time (bounds the memory of the analysis; with
        1024-record tails, 2048 doubled the peak memory of a 10^4-run scan and
        was slower).  Labels do not depend on it.

    Returns
    -------
    result : dict
        Arrays of shape (n_runs,) keyed like ``results_``, plus
        ``tail_steps`` (P,), ``tail_sharpness`` and ``tail_loss`` (n_runs, P).
    """
    delta_f0, ntk0, eta, kappa, y = (
        np.ascontiguousarray(a, dtype=float).ravel()
        for a in np.broadcast_arrays(delta_f0, ntk0, eta, kappa, y)
    )
    N, max_iter = delta_f0.size, int(max_iter)
    schedule = recorded_steps(max_iter, int(record_every))
    n_rec = schedule.size
    tail = analysis["tail"]
    T = default_tail(n_rec, analysis["max_period"]) if tail is None else tail
    T = min(T, n_rec)
    first_tail = n_rec - T
    t_tail = schedule[first_tail]

    bound = divergence_bound(delta_f0, y)
    alive = np.abs(delta_f0) <= bound
    n_iter = np.where(alive, max_iter, 0)
    df, ntk = delta_f0.copy(), ntk0.copy()
    max_es = np.full(N, -np.inf)
    rec_df = np.full((T, N), np.nan)  # time-major: one row per record
    rec_ntk = np.full((T, N), np.nan)

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
                if rec >= first_tail:
                    rec_df[rec - first_tail, act.idx] = act.df
                    rec_ntk[rec - first_tail, act.idx] = act.ntk
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
            if not in_tail and (t + 1) % 256 == 0:
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
    diverged = ~alive

    kwargs = {k: v for k, v in analysis.items() if k != "tail"}
    lyap = np.full(N, np.nan)
    ok = np.flatnonzero(alive)
    if ok.size:
        lyap[ok] = _tail_lyapunov(
            rec_df[0, ok], rec_ntk[0, ok], eta[ok], kappa[ok], y[ok], max_iter - t_tail
        )
    P = min(int(n_tail_points), T)
    parts = []
    tail_sharp = np.empty((N, P))
    tail_loss = np.empty((N, P))
    for start in range(0, N, chunk_size):
        s = slice(start, start + chunk_size)
        r_df = np.ascontiguousarray(rec_df[:, s].T)
        r_ntk = np.ascontiguousarray(rec_ntk[:, s].T)
        with np.errstate(over="ignore", invalid="ignore"):
            sharp = uv_sharpness(r_df, r_ntk, kappa[s, None], y[s, None])
            loss = 0.5 * r_df * r_df
            es_tail = eta[s, None] * sharp
        parts.append(
            _analyze_batch(
                np.stack([loss, sharp, r_df], axis=1),
                loss,
                es_tail,
                diverged[s],
                lyap[s],
                max_es[s],
                loss[:, -1],
                **kwargs,
            )
        )
        tail_sharp[s], tail_loss[s] = sharp[:, T - P :], loss[:, T - P :]
    out = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    out["n_iter"] = n_iter
    out["tail_steps"] = schedule[n_rec - P :]
    out["tail_sharpness"] = tail_sharp
    out["tail_loss"] = tail_loss
    return out


class _Progress:
    """A one-line progress report on stderr (no tqdm dependency)."""

    def __init__(self, total, enabled, name="LearningRateScan"):
        self.total, self.enabled, self.name = total, enabled, name
        self.start = self.last = time.monotonic()
        self.done = 0

    def update(self, n=1):
        self.done += n
        now = time.monotonic()
        if self.enabled and (now - self.last > 0.2 or self.done == self.total):
            self.last = now
            sys.stderr.write(
                f"\r[{self.name}] {self.done}/{self.total} runs "
                f"({now - self.start:.1f} s)"
            )
            if self.done == self.total:
                sys.stderr.write("\n")
            sys.stderr.flush()


class LearningRateScan(MetaEstimatorMixin, BaseEstimator):
    """Fit one run per learning rate and label its long-time behaviour.

    For every learning rate (and, optionally, every value of a second
    estimator parameter) a clone of ``estimator`` is trained from the same
    initial weights, and its traces are labelled with
    :func:`~sharpsk.classify_run` as ``"converge"``, ``"eos"`` (the period-2
    orbit around ``2 / eta``, or hovering at the edge of stability),
    ``"periodic"``, ``"chaotic"`` or ``"diverge"``.  Runs are independent and
    run in parallel with joblib (any backend, including Dask through
    ``joblib.parallel_config(backend="dask")``); a single-example
    :class:`~sharpsk.UVRegressor` is instead iterated for all learning rates
    at once by a vectorised kernel of its exact function-space map.

    Parameters
    ----------
    estimator : estimator object
        A regressor with a ``learning_rate`` parameter whose ``fit`` sets
        ``loss_curve_``, ``sharpness_trace_``, ``steps_``, ``n_iter_``,
        ``diverged_`` and ``initial_sharpness_`` (as
        :class:`~sharpsk.UVRegressor` and :class:`~sharpsk.MLPRegressor` do);
        ``max_iter=0`` must be allowed (it measures the initial sharpness).
        ``residual_trace_``, ``lyapunov_`` or ``lyapunov_exponent_`` and
        ``learning_rate_`` (the step size actually used) are used when
        present.
    learning_rates : array-like of shape (n_learning_rates,)
        Positive learning rates ``eta``, or values of ``c = eta * lambda_H0``
        with ``normalize``.
    normalize : False, "initial_sharpness" or "critical", default=False
        Units of ``learning_rates``.  With ``"initial_sharpness"`` (or
        ``True``) they are ``c = eta * lambda_H0`` and each run uses ``eta = c /
        lambda_H0`` with ``lambda_H0`` the initial sharpness of its
        initialization; with ``"critical"`` they are ``eta / eta_c`` (the
        estimator's ``critical_learning_rate_``: a UVRegressor on one example).
        With ``False``, an estimator's own ``lr_units`` (see
        :class:`~sharpsk.UVRegressor`, :class:`~sharpsk.MLPRegressor`) set the
        units.  Either way the runs get ``eta`` itself (``lr_units="absolute"``)
        and ``results_["learning_rate"]`` holds it.
    param_name : str, default=None
        A second estimator parameter to scan (``"width"``, ``"init_scale"``,
        ``"parameterization"``, ...) for phase diagrams.
    param_values : array-like, default=None
        Its values (required with ``param_name``).
    engine : {"auto", "batched", "per_run"}, default="auto"
        ``"batched"`` runs the vectorised UV kernel (single-example
        :class:`~sharpsk.UVRegressor` with ``engine`` ``"auto"`` or
        ``"function"``); ``"per_run"`` fits one clone per run; ``"auto"`` picks
        ``"batched"`` when possible.  Both give identical numbers.
    tail : int, default=None
        Number of final records labelled; ``None`` uses the rule of
        :func:`~sharpsk.classify_run` (the last quarter of the run, at least
        ``4 * max_period`` records but at most half the run, at most 1024).
    max_period : int, default=64
        Longest period detected.
    rtol : float, default=1e-6
        Relative tolerance of period detection.
    eos_band : tuple of float, default=(1.75, 2.5)
        Range of the tail mean of ``eta * lambda_H`` counted as sitting at the
        edge of stability (period-2 and aperiodic runs).
    lyapunov_tol : float, default=1e-2
        Exponents above it count as chaotic.
    n_tail_points : int, default=64
        Records per run kept in ``trace_tails_`` (bifurcation diagrams).
    same_init : bool, default=True
        Start every run from the same initial weights: the estimator's own
        integer ``random_state`` if it has one, else one seed drawn from
        ``random_state``.  With ``False`` each run gets its own seed.
    n_jobs : int, default=None
        Parallel jobs for the per-run engine (``None`` means 1 unless in a
        :func:`joblib.parallel_config` context; -1 means all processors).
    memory : str, path-like or object with the joblib.Memory interface, \
            default=None
        Caches every finished run (a directory path or a ``joblib.Memory``),
        so an interrupted scan, rerun, recomputes only the missing runs.  A
        batched UV scan is cached in blocks of up to 4096 runs.
    progress : bool or "auto", default="auto"
        Write a one-line progress report to stderr; ``"auto"`` does so when
        stderr is a terminal.
    verbose : int, default=0
        Print a summary at the end when positive; larger values are passed to
        joblib.
    random_state : int, RandomState instance or None, default=None
        Draws the shared seed when the estimator has no integer
        ``random_state`` (or the per-run seeds with ``same_init=False``).

    Attributes
    ----------
    labels_ : ndarray of str of shape (n_learning_rates,) or \
            (n_param_values, n_learning_rates)
        One label per run, in the order of ``learning_rates`` (rows follow
        ``param_values``).
    learning_rates_ : ndarray of the same shape
        The learning rate ``eta`` each run used.
    results_ : dict of ndarray of shape (n_runs,)
        One entry per run, ready for ``pandas.DataFrame``: ``learning_rate``,
        ``param_<param_name>`` (2-D scans), ``c`` (``eta * lambda_H0``),
        ``label``, ``period`` (1 converged, ``p`` for a period-``p`` orbit, 0
        aperiodic or diverged), ``lyapunov`` (NaN when diverged or unknown),
        ``final_loss`` (inf when diverged), ``eta_sharpness_mean``,
        ``eta_sharpness_min``, ``eta_sharpness_max``, ``eta_sharpness_std``
        (tail statistics of ``eta * lambda_H``), ``max_eta_sharpness`` (over
        the whole run), ``catapult`` (converged after ``eta * lambda_H``
        exceeded 2), ``diverged``, ``n_iter``, ``initial_sharpness``,
        ``critical_learning_rate`` (NaN unless the estimator defines it).
    trace_tails_ : dict of ndarray
        Tidy table of the last ``n_tail_points`` records of every bounded run
        (the points of a bifurcation diagram): ``run`` (row of ``results_``),
        ``learning_rate``, ``param_<param_name>``, ``step``, ``sharpness``,
        ``eta_sharpness`` and ``loss``.
    engine_ : str
        ``"batched"`` or ``"per_run"``.
    n_runs_ : int
        Number of runs.
    n_cached_ : int
        Runs (per-run engine) or blocks of runs (batched engine) found in
        ``memory`` instead of computed.
    n_warnings_ : int
        Total number of warnings silenced during the fits (exact for
        sequential and process-based backends; thread-based backends may lose
        count, but still show none).
    init_seed_ : int, ndarray of int or None
        The seed(s) the runs used (None when the estimator has no
        ``random_state``; the axis values on a ``random_state`` axis).
    n_features_in_ : int
        Number of features seen during fit.

    See Also
    --------
    classify_run : How one run is labelled.
    UVRegressor : The model whose single-example scans are vectorised.

    Notes
    -----
    Like :class:`~sklearn.model_selection.GridSearchCV`, the fits are
    dispatched through :class:`sklearn.utils.parallel.Parallel`; since every
    run is deterministic given its seed, ``results_`` do not depend on
    ``n_jobs`` or the joblib backend.

    Examples
    --------
    >>> import numpy as np
    >>> from sharpsk import LearningRateScan, UVRegressor
    >>> X, y = np.ones((1, 4)) / 2.0, np.array([1.0])
    >>> uv = UVRegressor(width=1, max_iter=2000, random_state=3)  # eta_c = 1
    >>> scan = LearningRateScan(uv, learning_rates=[0.5, 1.1, 1.25, 1.5, 2.5],
    ...                         progress=False).fit(X, y)
    >>> scan.engine_, float(scan.results_["critical_learning_rate"][0])
    ('batched', 1.0)
    >>> scan.labels_.tolist()
    ['converge', 'eos', 'periodic', 'chaotic', 'diverge']
    >>> scan.results_["period"].tolist()
    [1, 2, 4, 0, 0]
    """

    _parameter_constraints: dict = {
        "estimator": [HasMethods(["fit"])],
        "learning_rates": ["array-like"],
        "normalize": ["boolean", StrOptions({"initial_sharpness", "critical"})],
        "param_name": [str, None],
        "param_values": ["array-like", None],
        "engine": [StrOptions({"auto", "batched", "per_run"})],
        "tail": [Interval(Integral, 1, None, closed="left"), None],
        "max_period": [Interval(Integral, 1, None, closed="left")],
        "rtol": [Interval(Real, 0, None, closed="neither")],
        "eos_band": [tuple, list],
        "lyapunov_tol": [Interval(Real, 0, None, closed="left")],
        "n_tail_points": [Interval(Integral, 0, None, closed="left")],
        "same_init": ["boolean"],
        "n_jobs": [Integral, None],
        "memory": [None, str, os.PathLike, HasMethods(["cache"])],
        "progress": ["boolean", StrOptions({"auto"})],
        "verbose": ["verbose"],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        estimator,
        *,
        learning_rates=(0.1,),
        normalize=False,
        param_name=None,
        param_values=None,
        engine="auto",
        tail=None,
        max_period=64,
        rtol=1e-6,
        eos_band=(1.75, 2.5),
        lyapunov_tol=1e-2,
        n_tail_points=64,
        same_init=True,
        n_jobs=None,
        memory=None,
        progress="auto",
        verbose=0,
        random_state=None,
    ):
        self.estimator = estimator
        self.learning_rates = learning_rates
        self.normalize = normalize
        self.param_name = param_name
        self.param_values = param_values
        self.engine = engine
        self.tail = tail
        self.max_period = max_period
        self.rtol = rtol
        self.eos_band = eos_band
        self.lyapunov_tol = lyapunov_tol
        self.n_tail_points = n_tail_points
        self.same_init = same_init
        self.n_jobs = n_jobs
        self.memory = memory
        self.progress = progress
        self.verbose = verbose
        self.random_state = random_state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        sub = get_tags(self.estimator)
        tags.input_tags = sub.input_tags
        tags.target_tags.required = True
        return tags

    # ----------------------------------------------------------------------
    def _check_grid(self):
        """Validated learning rates and second-axis values."""
        lrs = np.asarray(self.learning_rates, dtype=float)
        if lrs.ndim != 1 or lrs.size == 0:
            raise ValueError(
                "learning_rates must be a non-empty 1-D array-like, got shape "
                f"{lrs.shape}."
            )
        if not np.all(np.isfinite(lrs) & (lrs > 0)):
            raise ValueError(
                f"learning_rates must be finite and positive, got {lrs.tolist()}."
            )
        params = self.estimator.get_params()
        if "learning_rate" not in params:
            raise ValueError(
                f"estimator: {type(self.estimator).__name__} has no "
                "'learning_rate' parameter to scan."
            )
        if (self.param_name is None) != (self.param_values is None):
            raise ValueError(
                "param_name and param_values must be given together; got "
                f"param_name={self.param_name!r} and param_values="
                f"{self.param_values!r}."
            )
        if self.param_name is None:
            return lrs, [None]
        if self.param_name == "learning_rate" or self.param_name not in params:
            raise ValueError(
                f"param_name={self.param_name!r} is not a parameter of "
                f"{type(self.estimator).__name__} other than learning_rate."
            )
        if self.param_name == "lr_units":
            raise ValueError(
                "param_name='lr_units' cannot be scanned: the scan owns the "
                "learning-rate units (set them with normalize)."
            )
        values = list(self.param_values)
        if not values:
            raise ValueError("param_values must not be empty.")
        return lrs, values

    def _configure(self, value, seed):
        """The estimator with the second-axis value and the seed set."""
        est = clone(self.estimator)
        if "lr_units" in est.get_params():
            # The scan owns the units (normalize); its runs get eta itself.
            est.set_params(lr_units="absolute")
        if self.param_name is not None:
            est.set_params(**{self.param_name: value})
        if seed is not None:
            est.set_params(random_state=seed)
        return est

    def _batched_possible(self, X, values):
        if not hasattr(self.estimator, "_function_space_init") or X.shape[0] != 1:
            return False
        for value in values:
            est = self._configure(value, None)
            if est.get_params().get("engine", "auto") not in ("auto", "function"):
                return False
        return True

    def _draw_seeds(self, n_val, n_lr, values):
        """Seed of every run: one shared seed (same init) or one per run.

        On a ``random_state`` axis the values are the seeds.
        """
        n_runs = n_val * n_lr
        if self.param_name == "random_state":
            self.init_seed_ = np.asarray(values, dtype=object)
            return np.repeat(self.init_seed_, n_lr)
        if "random_state" not in self.estimator.get_params():
            self.init_seed_ = None
            return np.full(n_runs, None, dtype=object)
        rng = check_random_state(self.random_state)
        own = self.estimator.get_params()["random_state"]
        if self.same_init:
            if isinstance(own, Integral):
                self.init_seed_ = int(own)
            else:
                self.init_seed_ = int(rng.randint(np.iinfo(np.int32).max))
            return np.full(n_runs, self.init_seed_, dtype=object)
        seeds = rng.randint(np.iinfo(np.int32).max, size=n_runs)
        self.init_seed_ = seeds.reshape(
            (n_lr,) if self.param_name is None else (n_val, n_lr)
        )
        return seeds.astype(object)

    def _initial_sharpness(self, X, y, values, seeds, run_val):
        """``lambda_H0`` and ``eta_c`` of every run, one init fit per distinct
        initialization (``max_iter=0``)."""
        info = {}
        for key in zip(run_val, seeds, strict=True):
            if key not in info:
                est = self._configure(values[key[0]], key[1])
                if "max_iter" in est.get_params():
                    est.set_params(max_iter=0)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    est.fit(X, y)
                info[key] = (
                    float(est.initial_sharpness_),
                    float(getattr(est, "critical_learning_rate_", np.nan)),
                )
        both = np.array([info[key] for key in zip(run_val, seeds, strict=True)])
        return both[:, 0], both[:, 1]

    @_fit_context(
        # estimator is validated by its own fit
        prefer_skip_nested_validation=False
    )
    def fit(self, X, y):
        """Run and label every learning rate (times every ``param_values``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training inputs (one row for the batched UV engine).
        y : array-like of shape (n_samples,)
            Targets.

        Returns
        -------
        self : LearningRateScan
            The fitted scan.
        """
        X, y = validate_data(
            self, X, y, multi_output=True, y_numeric=True, dtype=np.float64
        )
        lrs, values = self._check_grid()
        if len(self.eos_band) != 2 or not self.eos_band[0] <= self.eos_band[1]:
            raise ValueError(
                f"eos_band must be a pair (low, high) with low <= high, got "
                f"{self.eos_band!r}."
            )
        n_lr, n_val = lrs.size, len(values)
        n_runs = n_lr * n_val
        analysis = {
            "tail": self.tail,
            "max_period": int(self.max_period),
            "rtol": float(self.rtol),
            "eos_band": tuple(float(b) for b in self.eos_band),
            "lyapunov_tol": float(self.lyapunov_tol),
        }

        seeds = self._draw_seeds(n_val, n_lr, values)
        run_val = np.repeat(np.arange(n_val), n_lr)
        lam0, eta_c = self._initial_sharpness(X, y, values, seeds, run_val)
        grid = np.tile(lrs, n_val)
        units = self.normalize
        if units is True:
            units = "initial_sharpness"
        elif not units:  # the estimator's own units, if it has any
            units = self.estimator.get_params().get("lr_units", "absolute")
        if units == "critical":
            eta = grid * eta_c
            if not np.all(np.isfinite(eta) & (eta > 0)):
                raise ValueError(
                    "normalize='critical' needs a critical learning rate "
                    "(critical_learning_rate_ of a UVRegressor on one example); "
                    f"{type(self.estimator).__name__} gave {np.unique(eta_c).tolist()}."
                )
            c = eta * lam0
        elif units == "initial_sharpness":
            c = grid
            with np.errstate(divide="ignore"):
                eta = grid / lam0
            if not np.all(np.isfinite(eta) & (eta > 0)):
                raise ValueError(
                    "normalize='initial_sharpness' needs a positive initial "
                    "sharpness; the estimator's is "
                    f"{np.unique(lam0[~(eta > 0)]).tolist()}."
                )
        else:
            eta, c = grid, grid * lam0

        engine = self.engine
        if engine == "auto":
            engine = "batched" if self._batched_possible(X, values) else "per_run"
        elif engine == "batched" and not self._batched_possible(X, values):
            raise ValueError(
                "engine='batched' needs a single-example UVRegressor-like "
                "estimator (with _function_space_init) and its engine 'auto' or "
                f"'function'; got {type(self.estimator).__name__} on "
                f"{X.shape[0]} samples. Use engine='per_run'."
            )
        memory = self.memory
        if isinstance(memory, os.PathLike):
            memory = os.fspath(memory)
        memory = check_memory(memory)
        show = sys.stderr.isatty() if self.progress == "auto" else bool(self.progress)
        start = time.monotonic()
        if engine == "batched":
            runs = self._run_batched(X, y, values, seeds, eta, memory, analysis, show)
        else:
            runs = self._run_per_run(X, y, values, seeds, eta, memory, analysis, show)

        results = {"learning_rate": eta}
        if self.param_name is not None:
            col = np.empty(n_runs, dtype=object)
            col[:] = [values[j] for j in run_val]
            if all(isinstance(v, Real) and not isinstance(v, bool) for v in values):
                col = col.astype(float)
            results[f"param_{self.param_name}"] = col
        results["c"] = c
        for key in _RESULT_KEYS[2:]:
            if key == "initial_sharpness":
                results[key] = lam0
            elif key == "critical_learning_rate":
                results[key] = eta_c
            else:
                results[key] = runs[key]
        self.results_ = results
        shape = (n_lr,) if self.param_name is None else (n_val, n_lr)
        self.labels_ = np.asarray(results["label"], dtype=object).reshape(shape)
        self.learning_rates_ = eta.reshape(shape)
        self.trace_tails_ = self._tidy_tails(runs, results)
        self.engine_ = engine
        self.n_runs_ = n_runs
        self.n_warnings_ = int(np.sum(runs["n_warnings"])) + runs["n_leaked"]
        if self.verbose:
            counts = {k: int(np.sum(results["label"] == k)) for k in LABELS}
            print(
                f"[LearningRateScan] {n_runs} runs ({engine}, "
                f"{time.monotonic() - start:.2f} s, {self.n_cached_} cached): "
                + ", ".join(f"{k}={v}" for k, v in counts.items())
                + f"; {self.n_warnings_} warnings silenced"
            )
        return self

    def _run_per_run(self, X, y, values, seeds, eta, memory, analysis, show):
        n_runs, n_lr = eta.size, eta.size // len(values)
        worker = memory.cache(_fit_and_label)
        jobs = []
        self.n_cached_ = 0
        cached = hasattr(worker, "check_call_in_cache")
        for i in range(n_runs):
            est = self._configure(values[i // n_lr], seeds[i])
            est.set_params(learning_rate=float(eta[i]))
            kwargs = {
                "learning_rate": float(eta[i]),
                "analysis": analysis,
                "n_tail_points": int(self.n_tail_points),
            }
            if cached and worker.check_call_in_cache(est, X, y, **kwargs):
                self.n_cached_ += 1
            jobs.append(delayed(worker)(est, X, y, **kwargs))
        bar = _Progress(n_runs, show)
        parallel = Parallel(
            n_jobs=self.n_jobs,
            verbose=max(0, int(self.verbose) - 1),
            return_as="generator",
        )
        out = []
        # Each worker silences and counts its own warnings; in thread-based
        # backends (threading, in-process Dask) ``catch_warnings`` is not
        # thread-safe, so this outer context catches whatever slips through
        # and restores the filters at the end.
        with warnings.catch_warnings(record=True) as leaked:
            warnings.simplefilter("always")
            for res in parallel(jobs):
                out.append(res)
                bar.update()
        n_leaked = len(leaked)
        runs = {}
        for key in _RESULT_KEYS[2:]:
            if key in ("initial_sharpness", "critical_learning_rate"):
                continue
            runs[key] = np.array([r[key] for r in out])
        runs["label"] = runs["label"].astype(object)
        runs["n_warnings"] = np.array([r["n_warnings"] for r in out])
        runs["n_leaked"] = n_leaked
        for key in ("tail_steps", "tail_sharpness", "tail_loss"):
            runs[key] = [np.asarray(r[key]) for r in out]
        return runs

    def _run_batched(self, X, y, values, seeds, eta, memory, analysis, show):
        n_runs, n_lr = eta.size, eta.size // len(values)
        state = {k: np.empty(n_runs) for k in ("delta_f0", "ntk0", "kappa", "y")}
        inits, schedule = {}, {}
        for i in range(n_runs):
            init_key = (i // n_lr, seeds[i])
            if init_key not in inits:
                est = self._configure(values[i // n_lr], seeds[i])
                p = est.get_params()
                inits[init_key] = (
                    est._function_space_init(X, y),
                    (int(p["max_iter"]), int(p.get("record_every", 1))),
                )
            init, key = inits[init_key]
            for k in state:
                state[k][i] = init[k]
            schedule.setdefault(key, []).append(i)
        kernel = memory.cache(_uv_batched_runs)
        cached = hasattr(kernel, "check_call_in_cache")
        self.n_cached_ = 0
        bar = _Progress(n_runs, show)
        runs, tails = {}, [None] * n_runs
        # Blocks of runs: each is cached on its own (an interrupted scan keeps its
        # finished blocks) and advances the progress line.
        blocks = [
            (key, block)
            for key, index in schedule.items()
            for block in np.array_split(
                np.asarray(index), -(-len(index) // _BATCH_BLOCK)
            )
        ]
        for (max_iter, every), index in blocks:
            args = (
                state["delta_f0"][index],
                state["ntk0"][index],
                eta[index],
                state["kappa"][index],
                state["y"][index],
                max_iter,
                every,
            )
            kwargs = {
                "analysis": analysis,
                "n_tail_points": int(self.n_tail_points),
            }
            if cached and kernel.check_call_in_cache(*args, **kwargs):
                self.n_cached_ += 1
            part = kernel(*args, **kwargs)
            for key, value in part.items():
                if key.startswith("tail_"):
                    continue
                if key not in runs:
                    dtype = object if key == "label" else value.dtype
                    runs[key] = np.empty(n_runs, dtype=dtype)
                runs[key][index] = value
            for j, i in enumerate(index):
                bounded = not part["diverged"][j]
                P = part["tail_steps"].size if bounded else 0
                tails[i] = (
                    part["tail_steps"][:P] if P else np.empty(0, dtype=int),
                    part["tail_sharpness"][j, :P],
                    part["tail_loss"][j, :P],
                )
            bar.update(index.size)
        runs["n_warnings"] = np.zeros(n_runs, dtype=np.int64)
        runs["n_leaked"] = 0
        runs["tail_steps"] = [t[0] for t in tails]
        runs["tail_sharpness"] = [t[1] for t in tails]
        runs["tail_loss"] = [t[2] for t in tails]
        return runs

    def _tidy_tails(self, runs, results):
        lengths = np.array([s.size for s in runs["tail_sharpness"]], dtype=np.int64)
        run = np.repeat(np.arange(lengths.size), lengths)

        def cat(arrays, dtype):
            return np.concatenate(arrays).astype(dtype)

        sharp = cat(runs["tail_sharpness"], float)
        table = {"run": run, "learning_rate": results["learning_rate"][run]}
        if self.param_name is not None:
            key = f"param_{self.param_name}"
            table[key] = results[key][run]
        table["step"] = cat(runs["tail_steps"], np.int64)
        table["sharpness"] = sharp
        table["eta_sharpness"] = table["learning_rate"] * sharp
        table["loss"] = cat(runs["tail_loss"], float)
        return table
