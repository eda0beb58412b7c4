"""LearningRateScan: fit and label one run per learning rate.

The layout follows scikit-learn's ``model_selection/_search.py``: a
meta-estimator that validates its parameters, builds the list of runs, and
hands each to a module-level worker (:func:`_fit_and_label`, like
``_fit_and_score``) through :class:`sklearn.utils.parallel.Parallel`.  An
estimator that offers a batched engine (the scan protocol's
``batched_engine(X, y)``: the single-example UV model's exact map) has all
its runs iterated at once instead, with numbers bit-identical to the per-run
path.

The scan protocol, all an estimator needs to be scanned:

* parameters ``learning_rate`` (required), ``max_iter`` (0 must record the
  initialization), and optionally ``random_state`` and ``lr_units``;
* fitted attributes of :data:`sharpsk._engine.TRACE_ATTRIBUTES`
  (``loss_curve_``, ``sharpness_trace_``, ``steps_``, ``n_iter_``,
  ``diverged_``, ``initial_sharpness_``, ``learning_rate_``,
  ``stability_threshold_``; ``preconditioned_sharpness_trace_`` when not
  None is the tracked sharpness), optionally ``residual_trace_``,
  ``lyapunov_exponent_`` and ``critical_learning_rate_``;
* optional capabilities: ``batched_engine(X, y)`` (see
  :class:`sharpsk._engine.BatchedEngine`) and
  ``tail_lyapunov_exponent(n_records)``.
"""

import os
import sys
import time
import warnings
from numbers import Integral, Real

import numpy as np
from joblib.memory import CacheWarning
from sklearn.base import (
    BaseEstimator,
    MetaEstimatorMixin,
    _fit_context,
    clone,
    is_classifier,
)
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import (
    HasMethods,
    Hidden,
    Interval,
    InvalidParameterError,
    StrOptions,
)
from sklearn.utils._tags import get_tags
from sklearn.utils.parallel import Parallel, delayed
from sklearn.utils.validation import check_memory, validate_data

from ._dynamics import (
    EDGE_BAND,
    LABELS,
    deprecated_eos_band,
    summarize_run,
)
from ._engine import LR_UNITS, resolve_learning_rate

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
    "edge_ratio_mean",
    "stability_threshold",
    "catapult",
    "diverged",
    "n_iter",
    "initial_sharpness",
    "critical_learning_rate",
)


# --------------------------------------------------------------------------
# Workers (module level: picklable for joblib, Dask and joblib.Memory)
# --------------------------------------------------------------------------


# Fitted attributes the scan reads (see the module docstring).
_PROTOCOL_ATTRIBUTES = (
    "sharpness_trace_",
    "loss_curve_",
    "steps_",
    "n_iter_",
    "diverged_",
    "initial_sharpness_",
    "learning_rate_",
    "stability_threshold_",
)


def _protocol_message(estimator, what):
    return (
        f"estimator: {type(estimator).__name__} does not follow the scan protocol "
        "(a learning_rate and a max_iter parameter, max_iter=0 recording the "
        f"initialization, and the trace attributes {list(_PROTOCOL_ATTRIBUTES)} "
        f"after fit; see the user guide's scan protocol page): {what}."
    )


def _infrastructure_warning(record):
    """Whether a caught warning comes from joblib (caching, dispatch)."""
    return isinstance(record.message, CacheWarning) or (
        f"{os.sep}joblib{os.sep}" in str(record.filename)
    )


def _tracked(estimator):
    """The tracked sharpness trace of a fitted estimator (scan protocol)."""
    pre = getattr(estimator, "preconditioned_sharpness_trace_", None)
    sharp = estimator.sharpness_trace_ if pre is None else pre
    return np.asarray(sharp, dtype=float)


def _fit_and_label(estimator, X, y, *, analysis, n_tail_points):
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
            edge_ratio_mean=nan,
            stability_threshold=nan,
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

    lyapunov = getattr(estimator, "lyapunov_exponent_", None)
    if lyapunov is None and hasattr(estimator, "tail_lyapunov_exponent"):
        lyapunov = estimator.tail_lyapunov_exponent
    out.update(
        summarize_run(
            estimator.loss_curve_,
            _tracked(estimator),
            estimator.learning_rate_,
            estimator.stability_threshold_,
            estimator.steps_,
            diverged=bool(estimator.diverged_),
            analysis=analysis,
            n_tail_points=n_tail_points,
            orbit=getattr(estimator, "residual_trace_", None),
            lyapunov=lyapunov,
        )
    )
    out["n_iter"] = int(estimator.n_iter_)
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
        An estimator following the scan protocol (see the user guide's
        "Scanning your own estimator"): a ``learning_rate`` and a
        ``max_iter`` parameter (``max_iter=0`` records the initialization),
        and after ``fit`` the trace attributes of
        :class:`~sharpsk.UVRegressor` and :class:`~sharpsk.MLPRegressor`
        (``loss_curve_``, ``sharpness_trace_``, ``steps_``, ``n_iter_``,
        ``diverged_``, ``initial_sharpness_``, ``learning_rate_``,
        ``stability_threshold_``).
    learning_rates : array-like of shape (n_learning_rates,)
        Positive learning rates in the units of ``lr_units``.
    lr_units : {"absolute", "initial_sharpness", "critical"} or None, \
default=None
        Units of ``learning_rates``, the vocabulary of the estimators'
        ``lr_units``: ``"absolute"`` is ``eta``; ``"initial_sharpness"`` is
        ``c = eta * lambda_H0`` (each run uses ``eta = c / lambda_H0`` of its
        initialization); ``"critical"`` is ``eta / eta_c`` (the estimator's
        ``critical_learning_rate_``: a UVRegressor on one example).  None: the
        estimator's own ``lr_units`` if it has one, else ``"absolute"``.  The
        runs get ``eta`` itself and ``results_["learning_rate"]`` holds it.
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
    edge_band : tuple of float, default=(0.875, 1.25)
        Range of the tail mean of the edge ratio (the tracked sharpness over
        the run's ``stability_threshold_``: ``eta lambda_H / 2`` for GD)
        counted as sitting at the edge of stability (period-2 and aperiodic
        runs).
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
    normalize : bool or str, default="deprecated"
        Deprecated alias of ``lr_units`` (``True`` meant
        ``"initial_sharpness"``); removed in 0.3.
    eos_band : tuple of float, default="deprecated"
        Deprecated: the band in units of ``eta * lambda_H``; use
        ``edge_band`` (removed in 0.3).

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
        (tail statistics of ``eta`` times the tracked sharpness),
        ``max_eta_sharpness`` (over the whole run), ``edge_ratio_mean`` (tail
        mean of the tracked sharpness over the threshold),
        ``stability_threshold`` (the run's, at its last record), ``catapult``
        (converged after the sharpness exceeded the threshold), ``diverged``,
        ``n_iter``, ``initial_sharpness``,
        ``critical_learning_rate`` (NaN unless the estimator defines it).
    trace_tails_ : dict of ndarray
        Tidy table of the last ``n_tail_points`` records of every bounded run
        (the points of a bifurcation diagram): ``run`` (row of ``results_``),
        ``learning_rate``, ``param_<param_name>``, ``step``, ``sharpness``,
        ``eta_sharpness`` and ``loss``.
    engine_ : str
        ``"batched"`` or ``"per_run"``.
    lr_units_ : str
        The units ``learning_rates`` were given in (the plots use them by
        default).
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
        "lr_units": [StrOptions(set(LR_UNITS)), None],
        "normalize": [
            "boolean",
            StrOptions({"initial_sharpness", "critical"}),
            Hidden(StrOptions({"deprecated"})),
        ],
        "param_name": [str, None],
        "param_values": ["array-like", None],
        "engine": [StrOptions({"auto", "batched", "per_run"})],
        "tail": [Interval(Integral, 1, None, closed="left"), None],
        "max_period": [Interval(Integral, 1, None, closed="left")],
        "rtol": [Interval(Real, 0, None, closed="neither")],
        "edge_band": [tuple, list],
        "eos_band": [tuple, list, Hidden(StrOptions({"deprecated"}))],
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
        lr_units=None,
        param_name=None,
        param_values=None,
        engine="auto",
        tail=None,
        max_period=64,
        rtol=1e-6,
        edge_band=EDGE_BAND,
        lyapunov_tol=1e-2,
        n_tail_points=64,
        same_init=True,
        n_jobs=None,
        memory=None,
        progress="auto",
        verbose=0,
        random_state=None,
        normalize="deprecated",
        eos_band="deprecated",
    ):
        self.estimator = estimator
        self.learning_rates = learning_rates
        self.lr_units = lr_units
        self.param_name = param_name
        self.param_values = param_values
        self.engine = engine
        self.tail = tail
        self.max_period = max_period
        self.rtol = rtol
        self.edge_band = edge_band
        self.lyapunov_tol = lyapunov_tol
        self.n_tail_points = n_tail_points
        self.same_init = same_init
        self.n_jobs = n_jobs
        self.memory = memory
        self.progress = progress
        self.verbose = verbose
        self.random_state = random_state
        self.normalize = normalize
        self.eos_band = eos_band

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        sub = get_tags(self.estimator)
        tags.input_tags = sub.input_tags
        tags.target_tags.required = True
        return tags

    # ----------------------------------------------------------------------
    def _check_grid(self):
        """Validated learning rates and second-axis values."""
        if isinstance(self.learning_rates, (set, frozenset, dict, str)):
            raise ValueError(
                "learning_rates must be a 1-D array-like of floats (a list or an "
                f"array), got a {type(self.learning_rates).__name__}."
            )
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
                "learning-rate units (set them with lr_units)."
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

    def _batched_engines(self, X, y, values, run_keys):
        """The batched engine of every run's configuration, or None.

        Asks each configured clone for its ``batched_engine(X, y)`` (scan
        protocol); None unless every configuration offers one.
        """
        if not hasattr(self.estimator, "batched_engine"):
            return None
        engines = {}
        for value_index, seed in dict.fromkeys(run_keys):  # distinct, in order
            est = self._configure(values[value_index], seed)
            engine = est.batched_engine(X, y)
            if engine is None:
                return None
            engines[value_index, seed] = engine
        return engines

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

    def _initial_sharpness(self, X, y, values, run_keys):
        """``lambda_H0`` and ``eta_c`` of every run, one init fit per distinct
        initialization (``max_iter=0``)."""
        info = {}
        for key in run_keys:
            if key not in info:
                est = self._configure(values[key[0]], key[1])
                if "max_iter" in est.get_params():
                    est.set_params(max_iter=0)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    try:
                        est.fit(X, y)
                    except InvalidParameterError as exc:
                        if "max_iter" not in str(exc):
                            raise
                        raise TypeError(
                            _protocol_message(est, f"max_iter=0 is refused ({exc})")
                        ) from exc
                missing = [a for a in _PROTOCOL_ATTRIBUTES if not hasattr(est, a)]
                if missing:
                    raise TypeError(
                        _protocol_message(est, f"its fit sets no {missing}")
                    )
                info[key] = (
                    float(est.initial_sharpness_),
                    float(getattr(est, "critical_learning_rate_", np.nan)),
                )
        both = np.array([info[key] for key in run_keys])
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
            self,
            X,
            y,
            multi_output=True,
            y_numeric=not is_classifier(self.estimator),
            dtype=np.float64,
        )
        lrs, values = self._check_grid()
        band = deprecated_eos_band(self.eos_band, self.edge_band)
        name = "edge_band" if self.eos_band == "deprecated" else "eos_band"
        if len(band) != 2 or not band[0] <= band[1]:
            raise ValueError(
                f"{name} must be a pair (low, high) with low <= high, got "
                f"{getattr(self, name)!r}."
            )
        n_lr, n_val = lrs.size, len(values)
        n_runs = n_lr * n_val
        analysis = {
            "tail": self.tail,
            "max_period": int(self.max_period),
            "rtol": float(self.rtol),
            "edge_band": tuple(float(b) for b in band),
            "lyapunov_tol": float(self.lyapunov_tol),
        }

        seeds = self._draw_seeds(n_val, n_lr, values)
        run_val = np.repeat(np.arange(n_val), n_lr)
        # a run's configuration: (index of its param_values entry, its seed)
        run_keys = list(zip(run_val, seeds, strict=True))
        lam0, eta_c = self._initial_sharpness(X, y, values, run_keys)
        grid = np.tile(lrs, n_val)
        units = self._units()
        eta = resolve_learning_rate(
            grid, units, initial_sharpness=lam0, critical_learning_rate=eta_c
        )
        with np.errstate(over="ignore"):
            c = grid if units == "initial_sharpness" else eta * lam0

        engine, engines = self.engine, None
        if engine != "per_run":
            engines = self._batched_engines(X, y, values, run_keys)
        if engine == "auto":
            engine = "per_run" if engines is None else "batched"
        elif engine == "batched" and engines is None:
            raise ValueError(
                "engine='batched' needs an estimator offering a batched engine "
                "for every run (UVRegressor on a single example with optimizer="
                f"'gd', a constant learning_rate and engine 'auto' or 'function'); "
                f"got {type(self.estimator).__name__} on {X.shape[0]} samples. "
                "Use engine='per_run'."
            )
        memory = self.memory
        if isinstance(memory, os.PathLike):
            memory = os.fspath(memory)
        memory = check_memory(memory)
        show = sys.stderr.isatty() if self.progress == "auto" else bool(self.progress)
        start = time.monotonic()
        if engine == "batched":
            runs = self._run_batched(engines, run_keys, eta, memory, analysis, show)
        else:
            runs = self._run_per_run(
                X, y, values, run_keys, eta, memory, analysis, show
            )

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
        self.lr_units_ = units
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

    def _run_per_run(self, X, y, values, run_keys, eta, memory, analysis, show):
        n_runs = eta.size
        worker = memory.cache(_fit_and_label)
        self.n_cached_ = 0
        out, jobs, todo = [None] * n_runs, [], []
        bar = _Progress(n_runs, show)
        for i, (value_index, seed) in enumerate(run_keys):
            est = self._configure(values[value_index], seed)
            est.set_params(learning_rate=float(eta[i]))
            kwargs = {
                "analysis": analysis,
                "n_tail_points": int(self.n_tail_points),
            }
            out[i] = self._from_cache(worker, (est, X, y), kwargs)
            if out[i] is None:
                jobs.append(delayed(worker)(est, X, y, **kwargs))
                todo.append(i)
            else:
                bar.update()
        parallel = Parallel(
            n_jobs=self.n_jobs,
            verbose=max(0, int(self.verbose) - 1),
            return_as="generator",
        )
        # Each worker silences and counts its own warnings; in thread-based
        # backends (threading, in-process Dask) ``catch_warnings`` is not
        # thread-safe, so this outer context catches whatever slips through
        # and restores the filters at the end.  Warnings of the cache and
        # the parallel machinery are not the runs': they are shown.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if jobs:  # a fully cached scan starts no workers
                for i, res in zip(todo, parallel(jobs), strict=True):
                    out[i] = res
                    bar.update()
        leaked = [w for w in caught if not _infrastructure_warning(w)]
        for w in caught:
            if _infrastructure_warning(w):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
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

    def _from_cache(self, func, args, kwargs):
        """The cached result of ``func(*args, **kwargs)``, or None.

        Counts it in ``n_cached_``.  A corrupt entry is removed (it is then
        recomputed and stored anew) with one warning line, instead of
        joblib's logged traceback, and is not counted.
        """
        if not hasattr(func, "check_call_in_cache"):
            return None  # memory=None: nothing is cached
        if not func.check_call_in_cache(*args, **kwargs):
            return None
        entry = func.call_and_shelve(*args, **kwargs)
        try:
            result = entry.get()
        except Exception as exc:  # unreadable: truncated, garbage, old format
            entry.clear()
            warnings.warn(
                f"memory: a corrupt cache entry ({type(exc).__name__}) was "
                "removed and its run recomputed.",
                CacheWarning,
                stacklevel=5,  # the caller of fit
            )
            return None
        self.n_cached_ += 1
        return result

    def _units(self):
        """The units of ``learning_rates`` (``lr_units``, or deprecated ones)."""
        if isinstance(self.normalize, str) and self.normalize == "deprecated":
            if self.lr_units is not None:
                return self.lr_units
            return self.estimator.get_params().get("lr_units", "absolute")
        warnings.warn(
            "normalize was renamed lr_units in 0.2 (normalize=True is "
            "lr_units='initial_sharpness', False the estimator's units) and will "
            "be removed in 0.3.",
            FutureWarning,
            stacklevel=3,
        )
        if self.normalize is True:
            return "initial_sharpness"
        if not self.normalize:
            return self.estimator.get_params().get("lr_units", "absolute")
        return self.normalize

    def _run_batched(self, engines, run_keys, eta, memory, analysis, show):
        n_runs = eta.size
        # Group the runs by kernel and static arguments; stack their states.
        groups, state = {}, {}
        for i, run_key in enumerate(run_keys):
            engine = engines[run_key]
            groups.setdefault((engine.kernel, engine.key), []).append(i)
            state[i] = engine.state
        self.n_cached_ = 0
        bar = _Progress(n_runs, show)
        runs, tails = {}, [None] * n_runs
        # Blocks of runs: each is cached on its own (an interrupted scan keeps its
        # finished blocks) and advances the progress line.
        blocks = [
            (key, block)
            for key, index in groups.items()
            for block in np.array_split(
                np.asarray(index), -(-len(index) // _BATCH_BLOCK)
            )
        ]
        for (kernel, static), index in blocks:
            kernel = memory.cache(kernel)
            args = ()
            kwargs = {
                name: np.array([state[i][name] for i in index], dtype=float)
                for name in state[index[0]]
            }
            kwargs["eta"] = eta[index]
            kwargs.update(static)
            kwargs["analysis"] = analysis
            kwargs["n_tail_points"] = int(self.n_tail_points)
            part = self._from_cache(kernel, args, kwargs)
            if part is None:
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
        table["stability_threshold"] = results["stability_threshold"][run]
        table["loss"] = cat(runs["tail_loss"], float)
        return table
