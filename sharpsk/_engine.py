"""The training engine: one gradient loop for every model and optimizer.

Three small pieces, used by every estimator, the scan, the plots and the CLI:

* the **model protocol** (:class:`Model`, :class:`Point`): a model maps a flat
  parameter vector ``theta`` to a *point* holding the loss, its gradient and
  whatever Hessian-vector products (HVPs) at that point reuse;
* the **learning-rate vocabulary** (:data:`LR_UNITS`,
  :func:`resolve_learning_rate`) and schedules (a callable of the step,
  e.g. :class:`LinearWarmup`);
* the **driver** :func:`train`: recording schedule, divergence (flag, finite
  prefix), sharpness tracking (:class:`~sharpsk._sharpness.TopEigenTracker`),
  preconditioned sharpness, NTK, Lyapunov tangent (through the optimizer
  state), progress, BLAS thread limits, and continuation (``warm_start``).
  It writes the one trace schema of :data:`TRACE_ATTRIBUTES`.

The exact function-space map of the single-example UV model is a separate
engine (:func:`~sharpsk._maps.uv_simulate`) that writes the same schema.
"""

import contextlib
from collections.abc import Callable
from numbers import Real
from typing import Any, NamedTuple

import numpy as np
from threadpoolctl import ThreadpoolController

from ._maps import divergence_bound
from ._sharpness import TopEigenTracker
from .hessian import eigenpairs

__all__ = ["LR_UNITS", "LinearWarmup", "resolve_learning_rate", "train"]

#: Units of ``learning_rate``, shared by the estimators, the scan, the plots
#: and the CLI: ``"absolute"`` is the step size ``eta`` itself,
#: ``"initial_sharpness"`` is ``c = eta * lambda_H0``, ``"critical"`` is
#: ``eta / eta_c`` (the single-example UV model's critical learning rate).
LR_UNITS = ("absolute", "initial_sharpness", "critical")

#: Fitted attributes every sharpsk estimator writes, with one meaning: each
#: ``*_trace_`` and ``loss_curve_`` has one entry per record, at the steps
#: ``steps_`` (every ``record_every`` steps, plus the first and the last).
TRACE_ATTRIBUTES = (
    "steps_",
    "loss_curve_",
    "sharpness_trace_",
    "preconditioned_sharpness_trace_",
    "ntk_trace_",
    "hvp_trace_",
    "sharpness_converged_",
    "stability_threshold_",
    "learning_rate_",
    "n_iter_",
    "diverged_",
    "initial_sharpness_",
)

_CONTROLLER = None


class BatchedEngine(NamedTuple):
    """A batched capability an estimator offers the scan (scan protocol).

    ``kernel(eta=..., **stacked_state, **dict(key), analysis=...,
    n_tail_points=...)`` runs a block of runs at once (``eta`` and each entry
    of ``state`` stacked into arrays over the runs) and returns per-run arrays
    keyed like ``LearningRateScan.results_`` plus the trace tails (see the
    user guide's scan protocol); it must be a module-level function (it is
    sent to joblib workers).
    """

    kernel: Callable
    state: dict
    key: Any
    #: Largest block of runs per kernel call (memory; cache and progress unit).
    max_block: int = 4096
    #: Whether ``engine="auto"`` picks it (else only ``engine="batched"``).
    auto: bool = True
    #: joblib's soft hint for the scan's backend: ``"threads"`` for a kernel
    #: that runs without the GIL (no process to start, no result to copy), None
    #: for processes; a backend set by ``joblib.parallel_config`` wins.
    prefer: str | None = None


def limit_blas_threads(n_threads):
    """Context manager limiting BLAS to ``n_threads`` (None: no limit).

    Small matrices lose to thread start-up and, on a shared machine, to
    oversubscription: a digits fit took 27 s with one BLAS thread and 370 s
    with the default on a loaded 2-core machine.
    """
    global _CONTROLLER
    if n_threads is None:
        return contextlib.nullcontext()
    if _CONTROLLER is None:
        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=int(n_threads), user_api="blas")


class LinearWarmup:
    """Learning-rate schedule: linear warm-up to ``peak``, then constant.

    ``eta(t) = start + (peak - start) * min(t, n_steps) / n_steps``, in the
    units of the estimator's ``lr_units``.  Pass it as ``learning_rate``.

    Parameters
    ----------
    peak : float
        Learning rate from step ``n_steps`` on.
    n_steps : int
        Length of the warm-up.
    start : float, default=0.0
        Learning rate of step 0.

    Examples
    --------
    >>> from sharpsk import LinearWarmup
    >>> schedule = LinearWarmup(0.4, 4)
    >>> [schedule(t) for t in range(6)]
    [0.0, 0.1, 0.2, 0.30000000000000004, 0.4, 0.4]
    """

    def __init__(self, peak, n_steps, *, start=0.0):
        if not (isinstance(peak, Real) and np.isfinite(peak) and peak > 0):
            raise ValueError(f"peak must be a positive float, got {peak!r}.")
        if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
            raise ValueError(f"n_steps must be a positive integer, got {n_steps!r}.")
        if not (isinstance(start, Real) and np.isfinite(start) and start >= 0):
            raise ValueError(f"start must be a non-negative float, got {start!r}.")
        self.peak, self.n_steps, self.start = float(peak), n_steps, float(start)

    def __call__(self, step):
        """The learning rate of step ``step`` (0, 1, ...).

        Parameters
        ----------
        step : int
            Gradient-descent step.

        Returns
        -------
        learning_rate : float
        """
        frac = min(step, self.n_steps) / self.n_steps
        return self.start + (self.peak - self.start) * frac

    def __repr__(self):
        return f"LinearWarmup({self.peak!r}, {self.n_steps!r}, start={self.start!r})"

    def __eq__(self, other):
        return type(other) is type(self) and vars(other) == vars(self)

    def __hash__(self):
        return hash((self.peak, self.n_steps, self.start))


def resolve_learning_rate(
    learning_rate,
    lr_units,
    *,
    initial_sharpness=np.nan,
    critical_learning_rate=np.nan,
):
    """The step size ``eta`` of a learning rate given in ``lr_units``.

    The one conversion used by the estimators, the scan, the plots and the
    CLI (broadcasts over arrays).

    Parameters
    ----------
    learning_rate : float or ndarray
        The value in ``lr_units``.
    lr_units : {"absolute", "initial_sharpness", "critical"}
        See :data:`LR_UNITS`.
    initial_sharpness : float or ndarray
        ``lambda_H0`` (needed by ``"initial_sharpness"``: ``eta =
        learning_rate / lambda_H0``).
    critical_learning_rate : float or ndarray
        ``eta_c`` (needed by ``"critical"``: ``eta = learning_rate * eta_c``).

    Returns
    -------
    eta : float or ndarray

    Raises
    ------
    ValueError
        If the unit's reference value is not positive and finite, naming it,
        or the result is not a positive finite step size.

    Examples
    --------
    >>> from sharpsk._engine import resolve_learning_rate
    >>> resolve_learning_rate(1.0, "initial_sharpness", initial_sharpness=4.0)
    0.25
    """
    if lr_units == "absolute":
        return learning_rate
    if lr_units == "initial_sharpness":
        ref, name = np.asarray(initial_sharpness, dtype=float), "initial sharpness"
    elif lr_units == "critical":
        ref = np.asarray(critical_learning_rate, dtype=float)
        name = "critical learning rate (critical_learning_rate_ of a UVRegressor "
        name += "on one example)"
    else:
        raise ValueError(f"lr_units must be one of {LR_UNITS}, got {lr_units!r}.")
    bad = ~(np.isfinite(ref) & (ref > 0))
    if np.any(bad):
        got = np.unique(ref[bad] if ref.ndim else ref).tolist()
        raise ValueError(
            f"lr_units={lr_units!r} needs a positive, finite {name}; got {got}."
        )
    with np.errstate(over="ignore", under="ignore"):
        if lr_units == "initial_sharpness":
            eta = learning_rate / ref
        else:
            eta = learning_rate * ref
    bad = ~(np.isfinite(eta) & (eta > 0))
    if np.any(bad & (np.asarray(learning_rate) > 0)):
        raise ValueError(
            f"learning_rate in lr_units={lr_units!r} gives step sizes outside the "
            f"floating-point range (learning_rate={learning_rate!r}, {name} "
            f"{np.unique(ref).tolist()})."
        )
    return float(eta) if np.ndim(eta) == 0 else eta


class Model:
    """The model protocol of the engine (a base class documenting it).

    A model owns its data and maps a flat float64 parameter vector to a
    :class:`Point`.  Attributes and methods:

    * ``n_params`` (int) and ``target_max`` (float, ``max |y|``, sets the
      divergence bound);
    * ``point(theta, rows=None)``: the point at ``theta`` on all samples, or
      on the sample indices ``rows`` (minibatches, measurement batches).
    """

    n_params = 0
    target_max = 0.0

    def point(self, theta, rows=None):  # pragma: no cover - protocol
        raise NotImplementedError


class Point:
    """What the engine needs at one parameter vector (protocol base class).

    ``loss`` (float) and ``residual_max`` (the magnitude the divergence test
    watches: ``max |f - y|`` for squared error, the largest ``|logit|`` for
    the log losses) are attributes;
    ``gradient()`` and ``hvp(v)`` return flat arrays and may share cached
    passes.  Optional, returning None when not offered:
    ``gauss_newton(v)`` (Gauss-Newton product; its top eigenvalue is the NTK
    one), ``hvp32(v)`` (``hvp`` in float32 arithmetic, float64 in and out:
    the sharpness trackers use it when ``sharpness_tol >= 1e-5``, see
    :meth:`~sharpsk._sharpness.TopEigenTracker.update`), ``sharpness()`` and
    ``ntk()`` (closed forms), ``extras()`` (a dict of further scalars to
    record, e.g. ``{"residual": ...}``).
    """

    loss = np.nan
    residual_max = np.nan

    def gradient(self):  # pragma: no cover - protocol
        raise NotImplementedError

    def hvp(self, vec):  # pragma: no cover - protocol
        raise NotImplementedError

    gauss_newton = None
    hvp32 = None

    def sharpness(self):
        return None

    def ntk(self):
        return None

    def extras(self):
        return {}


def _finite(theta, point):
    return bool(np.isfinite(point.loss) and np.all(np.isfinite(theta)))


def draw_streams(rng):
    """Measurement-batch, tangent and shuffle generators, drawn after the init.

    Independent streams: toggling one option does not change the others.  Every
    estimator draws them alike, so one network written two ways (e.g. as an
    :class:`~sharpsk.AutogradRegressor` loss) gets the same runs.
    """
    return tuple(np.random.RandomState(s) for s in rng.randint(2**31 - 1, size=3))


def _initial_tangent(rng, n):
    """Unit Gaussian start of the Lyapunov tangent vector."""
    tangent = rng.standard_normal(n)
    return tangent / np.linalg.norm(tangent)


def _schedule(learning_rate, lr_units, initial_sharpness):
    """``eta(t)``: the learning rate (a number or a schedule) as a step size."""

    def eta(t):
        value = learning_rate(t) if callable(learning_rate) else learning_rate
        if not (isinstance(value, Real) and np.isfinite(value) and value >= 0):
            raise ValueError(
                f"learning_rate schedule returned {value!r} at step {t}; it "
                "must return finite, non-negative floats."
            )
        if value == 0:
            return 0.0
        return resolve_learning_rate(
            float(value), lr_units, initial_sharpness=initial_sharpness
        )

    first = eta(0)  # errors in the units surface before the first step
    if callable(learning_rate):
        return eta
    return lambda t: first  # a constant: resolved once, not at every step


class _Record:
    """A growing array of one value (or one row) per record.

    Sized for ``capacity`` records (the records a run schedules: its traces
    are then allocated once), and doubled as needed, so a trace costs its
    values (8 bytes each), not a Python object per value.
    """

    def __init__(self, dtype=np.float64, capacity=16):
        self.dtype, self.data, self.n = dtype, None, 0
        self.capacity = max(1, int(capacity))

    def append(self, value):
        value = np.asarray(value, dtype=self.dtype)
        if self.data is None:
            self.data = np.empty((self.capacity,) + value.shape, dtype=self.dtype)
        elif self.n == len(self.data):
            self.data = np.concatenate([self.data, np.empty_like(self.data)])
        self.data[self.n] = value
        self.n += 1

    def __len__(self):
        return self.n

    def __getitem__(self, index):
        return self.array()[index]

    def array(self):
        if self.data is None:
            return np.empty(0, dtype=self.dtype)
        return self.data[: self.n]


class _TopKTracker:
    """The top ``k`` eigenpairs along a run, each call warm-started."""

    def __init__(self, k, tol):
        self.k, self.tol, self.vectors = k, tol, None

    def update(self, matvec, n):
        if self.k >= n:
            raise ValueError(
                f"k={self.k} eigenvalues need more than {self.k} parameters; "
                f"the model has {n}."
            )
        res = eigenpairs(
            matvec, self.k, n=n, tol=self.tol, v0=self.vectors, random_state=0
        )
        self.vectors = res.eigenvectors
        return res


def train(
    model,
    theta,
    *,
    optimizer,
    learning_rate,
    lr_units="absolute",
    max_iter,
    record_every=1,
    sharpness_tol=1e-6,
    measure_rows=None,
    batches=None,
    compute_ntk=False,
    compute_lyapunov=False,
    rng_tangent=None,
    resume=None,
    report=None,
    report_every=0,
    blas_threads=1,
    k=1,
):
    """Run an optimizer on a model and record the traces.

    Parameters
    ----------
    model : Model
        See :class:`Model`.
    theta : ndarray of shape (n_params,)
        Initial parameters (ignored when ``resume`` is given).
    optimizer : Optimizer
        From :func:`~sharpsk._optimizers.make_optimizer`.
    learning_rate : float or callable
        Step size, or a schedule ``learning_rate(step)``, in ``lr_units``.
    lr_units : {"absolute", "initial_sharpness", "critical"}
        ``"critical"`` is resolved by the caller (pass it as ``"absolute"``
        with the converted rate).
    max_iter : int
        Number of steps of this call.
    record_every : int
        Record every ``record_every`` steps (the first and last always).
    sharpness_tol : float
        Tolerance of the tracked eigenvalues.
    measure_rows : ndarray of int or None
        Sample indices of the measurement batch (None: all samples).
    batches : callable or None
        ``batches() -> rows`` of the next minibatch (None: full batch).
    compute_ntk, compute_lyapunov : bool
        Also record the NTK (Gauss-Newton top eigenvalue or the model's closed
        form) and push a tangent vector of ``(theta, optimizer state)``.
    rng_tangent : RandomState
        Draws the tangent's start.
    resume : dict or None
        The ``"state"`` returned by an earlier call: continue that run (a
        different optimizer starts its state anew; switching the Lyapunov
        tangent on starts it there).
    report : callable or None
        ``report(t, loss, eta_times_sharpness)`` every ``report_every`` steps.
    blas_threads : int or None
        BLAS threads during the run (None: leave as is).
    k : int
        Eigenvalues tracked at the top of the Hessian spectrum: with ``k > 1``
        every record also holds the top ``k`` (``traces["top_k"]``), from
        :func:`sharpsk.hessian.eigenpairs` warm-started at the previous
        eigenvectors; the sharpness is their first.

    Returns
    -------
    out : dict
        Traces (one array entry per record), ``n_iter``, ``diverged``, ``theta`` and
        ``state`` (to resume from).
    """
    with (
        limit_blas_threads(blas_threads),
        np.errstate(over="ignore", invalid="ignore", divide="ignore"),
    ):
        keys = ("steps", "loss", "sharpness", "n_hvp", "converged", "eta", "threshold")
        keys += ("top_k",) if k > 1 else ()
        keys += ("ntk",) if compute_ntk else ()
        keys += ("preconditioned",) if optimizer.adaptive else ()
        dtypes = {"steps": np.int64, "n_hvp": np.int64, "converged": bool}
        # the scheduled records, and the closing one of a diverged run (at
        # most 2**20 up front: a run may stop long before its max_iter)
        n_records = min(max_iter // record_every + 2, 2**20)
        traces = {key: _Record(dtypes.get(key, np.float64), n_records) for key in keys}
        extras, growth = {}, _Record()
        if resume is None:
            t0 = 0
            opt_state = optimizer.init_state(theta.size)
            trackers = {
                kind: TopEigenTracker(tol=sharpness_tol, random_state=0)
                for kind in ("hessian", "ntk", "preconditioned")
            }
            tangent = None
            point = model.point(theta)
            bound = divergence_bound(point.residual_max, model.target_max)
        else:
            t0, theta, lam0 = (
                resume["step"],
                resume["theta"],
                resume["initial_sharpness"],
            )
            opt_state, trackers = resume["optimizer"], resume["trackers"]
            tangent, bound = resume["tangent"], resume["bound"]
            previous_k = getattr(trackers.get("top_k"), "k", k)
            if k > 1 and previous_k != k:
                raise ValueError(
                    f"warm_start: k={k}, but the run tracked the top {previous_k} "
                    "eigenvalues (k changed between warm fits)."
                )
            fresh = optimizer.init_state(theta.size)
            if set(fresh) != set(opt_state):  # another optimizer: its state anew
                opt_state = fresh
            point = model.point(theta)
        n_state = theta.size * (1 + len(optimizer.state_arrays()))
        if compute_lyapunov and (tangent is None or tangent.size != n_state):
            tangent = _initial_tangent(rng_tangent, n_state)

        def track(kind, matvec, matvec32=None):
            res = trackers[kind].update(matvec, model.n_params, matvec32=matvec32)
            return res.eigenvalue, res.n_hvp, res.converged

        def measure(t, theta, point):
            """Append the records of step ``t`` (``point`` is at ``theta``)."""
            traces["steps"].append(t)
            traces["loss"].append(point.loss)
            mpoint = point if measure_rows is None else model.point(theta, measure_rows)
            finite = bool(np.isfinite(mpoint.loss))
            sharp, n_hvp, conv = np.nan, 0, False
            if k > 1:
                top = np.full(k, np.nan)
                if finite:
                    tracker = trackers.setdefault(
                        "top_k", _TopKTracker(k, sharpness_tol)
                    )
                    res = tracker.update(mpoint.hvp, model.n_params)
                    top, n_hvp, conv = res.eigenvalues, res.n_hvp, res.converged
                    sharp = top[0]
                traces["top_k"].append(top)
            elif finite:
                closed = mpoint.sharpness()
                if closed is None:
                    sharp, n_hvp, conv = track("hessian", mpoint.hvp, mpoint.hvp32)
                else:
                    sharp, conv = closed, True
            traces["sharpness"].append(sharp)
            traces["converged"].append(conv)
            if compute_ntk:
                value = mpoint.ntk() if finite else np.nan
                if value is None:
                    value = track("ntk", mpoint.gauss_newton)[0]
                traces["ntk"].append(value)
            if optimizer.adaptive:
                value = np.nan
                if finite:
                    # P of the step taken from here (full-batch gradient)
                    P = optimizer.preconditioner(opt_state, point.gradient())
                    d = 1.0 / np.sqrt(P)
                    hvp32 = mpoint.hvp32
                    value, extra, _ = track(
                        "preconditioned",
                        lambda v: d * mpoint.hvp(d * v),
                        None if hvp32 is None else lambda v: d * hvp32(d * v),
                    )
                    n_hvp += extra
                traces["preconditioned"].append(value)
            traces["n_hvp"].append(n_hvp)
            for key, value in mpoint.extras().items():
                extras.setdefault(key, _Record()).append(value)

        def close_record(t):
            eta = eta_fn(t)
            traces["eta"].append(eta)
            traces["threshold"].append(float(optimizer.stability_threshold(eta)))

        def is_recorded(t):  # the schedule of recorded_steps, without its array
            return (t - t0) % record_every == 0 or t == t0 + max_iter

        if resume is None:
            measure(t0, theta, point)  # before the units: they may need lambda_H0
            lam0 = traces["sharpness"][0]
        eta_fn = _schedule(learning_rate, lr_units, lam0)
        if resume is None:
            close_record(t0)
        # t0 was recorded by this call or by the previous one
        n_iter, diverged, t = 0, False, t0
        while True:
            if t != t0 and is_recorded(t):
                measure(t, theta, point)
                close_record(t)
            if report is not None and report_every and (t - t0) % report_every == 0:
                report(t, point.loss, traces["eta"][-1] * traces["sharpness"][-1])
            if t == t0 + max_iter or not _finite(theta, point):
                break
            eta = eta_fn(t)
            step_point = point if batches is None else model.point(theta, batches())
            grad = step_point.gradient()
            new_theta, new_state = optimizer.update(theta, grad, eta, opt_state)
            new_point = model.point(new_theta)
            if not (new_point.residual_max <= bound and _finite(new_theta, new_point)):
                diverged = True
                break
            if compute_lyapunov:
                tangent = optimizer.tangent(
                    tangent, opt_state, new_state, grad, step_point.hvp, eta
                )
                norm = np.linalg.norm(tangent)
                growth.append(np.log(norm))
                tangent = tangent / norm
            theta, point, opt_state = new_theta, new_point, new_state
            n_iter += 1
            t += 1
        recorded = (
            traces["steps"][-1] == t if len(traces["steps"]) else resume is not None
        )
        if diverged and not recorded:
            measure(t, theta, point)  # the last finite state closes every trace
            close_record(t)
        diverged = diverged or not _finite(theta, point)  # a non-finite start
        state = {
            "step": t,
            "theta": theta,
            "optimizer": opt_state,
            "trackers": trackers,
            "tangent": tangent,
            "bound": bound,
            "initial_sharpness": lam0,
        }
        return {
            "traces": {key: record.array() for key, record in traces.items()},
            "extras": {key: record.array() for key, record in extras.items()},
            "growth": growth.array(),
            "n_iter": n_iter,
            "diverged": diverged,
            "theta": theta,
            "state": state,
        }
