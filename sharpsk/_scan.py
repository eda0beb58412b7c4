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
from collections.abc import Mapping
from numbers import Integral, Real
from pathlib import Path

import numpy as np
from joblib import effective_n_jobs
from joblib.memory import CacheWarning
from sklearn.base import (
    BaseEstimator,
    MetaEstimatorMixin,
    _fit_context,
    clone,
    is_classifier,
)
from sklearn.model_selection import ParameterGrid
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
from sklearn.utils.validation import check_is_fitted, validate_data

from ._dynamics import (
    EDGE_BAND,
    LABELS,
    deprecated_eos_band,
    labelled_tail,
    summarize_run,
)
from ._engine import LR_UNITS, resolve_learning_rate
from ._runstore import RunStore, fingerprint, run_key

__all__ = ["LearningRateScan"]

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

# A batched scan's blocks per worker, and the chunks of consecutive runs each
# block takes (see LearningRateScan._batched_tasks).  More blocks per worker
# cost a little each (a 10^4-run UV scan with n_jobs=2: 93 ms in 4 blocks,
# 100 ms in 8).
_BLOCKS_PER_WORKER = 2
_CHUNKS_PER_BLOCK = 8


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
            settled=True,
            drift=nan,
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
    diverged = bool(estimator.diverged_)
    if (
        lyapunov is None
        and not diverged
        and hasattr(estimator, "tail_lyapunov_exponent")
    ):
        n_records = np.size(estimator.loss_curve_)
        lyapunov = estimator.tail_lyapunov_exponent(labelled_tail(n_records, analysis))
    out.update(
        summarize_run(
            estimator.loss_curve_,
            _tracked(estimator),
            estimator.learning_rate_,
            estimator.stability_threshold_,
            estimator.steps_,
            diverged=diverged,
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
    ``joblib.parallel_config(backend="dask")``); estimators offering a
    batched engine have blocks of runs advanced together as stacked arrays
    instead (a single-example :class:`~sharpsk.UVRegressor` by its exact
    function-space map, a small full-batch :class:`~sharpsk.MLPRegressor` or
    :class:`~sharpsk.MLPClassifier` by stacked matrix products), with
    identical numbers.  See the user guide's "Large scans".

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
        ``"parameterization"``, ...) for phase diagrams: the same as
        ``param_grid={param_name: param_values}``.
    param_values : array-like, default=None
        Its values (required with ``param_name``).
    param_grid : dict or list of dict, default=None
        Estimator parameters to scan besides the learning rate, as in
        :class:`~sklearn.model_selection.GridSearchCV`: a dict of lists (every
        combination) or a list of such dicts.  Every learning rate runs for
        every setting; ``results_`` gets a ``param_<name>`` column per
        parameter (integers stay integers) and a ``params`` column.  A
        ``random_state`` entry gives the runs' seeds.
    engine : {"auto", "batched", "per_run"}, default="auto"
        ``"batched"`` advances blocks of runs together with the estimator's
        batched engine (single-example :class:`~sharpsk.UVRegressor`;
        full-batch MLPs trained by ``"gd"``, ``"momentum"`` or
        ``"nesterov"``); ``"per_run"`` fits one clone per run; ``"auto"``
        picks ``"batched"`` where the estimator says it pays (always for the
        UV map; small MLPs with sparse records).  Both give identical
        numbers.
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
    n_tail_points : int or None, default=64
        Records per run kept in ``trace_tails_`` (bifurcation diagrams); None
        keeps every record of every run (full traces, diverged runs' finite
        prefix included).
    same_init : bool, default=True
        Start every run from the same initial weights: the estimator's own
        integer ``random_state`` if it has one, else one seed drawn from
        ``random_state``.  With ``False`` each run gets its own seed.
    n_jobs : int, default=None
        Parallel jobs (``None`` means 1 unless in a
        :func:`joblib.parallel_config` context; -1 means all processors): runs
        of the per-run engine, blocks of runs of a batched engine, and the
        initial-sharpness fits, with any joblib backend (loky, threading,
        multiprocessing, Dask).  No worker starts when nothing is left to
        compute.
    memory : str, path-like or joblib.Memory, default=None
        A directory (or a ``joblib.Memory`` and its location) where every
        finished run is cached under its own key: the estimator's
        configuration, the data, the labelling options, the run's seed and
        learning rate.  A rerun, an extended or refined grid, or a scan
        interrupted and started again recomputes only the runs it does not
        find.  X and y are fingerprinted once per fit.
    results_file : str or path-like, default=None
        A Parquet dataset (a directory, created if its parent exists) to which
        finished runs are appended as they finish, one file per block, so a
        killed scan's dataset holds every run that finished;
        ``pandas.read_parquet(results_file)`` reads it (one row per run, the
        columns of ``results_`` and ``run``, the row of ``results_``).  Needs
        pyarrow (``pip install 'sharpsk[parquet]'``).
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
            (n_settings, n_learning_rates)
        One label per run, in the order of ``learning_rates`` (rows follow
        ``param_values``, or the settings of ``param_grid`` in the order of
        :class:`~sklearn.model_selection.ParameterGrid`).
    learning_rates_ : ndarray of the same shape
        The learning rate ``eta`` each run used.
    results_ : dict of ndarray of shape (n_runs,)
        One entry per run, ready for ``pandas.DataFrame`` (see
        :meth:`to_frame`): ``learning_rate``, ``param_<name>`` and ``params``
        (scans over parameters), ``c`` (``eta * lambda_H0``),
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
        (the points of a bifurcation diagram), or of every record of every
        run with ``n_tail_points=None``: ``run`` (row of ``results_``),
        ``learning_rate``, ``param_<name>``, ``step``, ``sharpness``,
        ``eta_sharpness``, ``stability_threshold`` and ``loss``.  Built from
        the fitted records when first read.
    engine_ : str
        ``"batched"`` or ``"per_run"``.
    lr_units_ : str
        The units ``learning_rates`` were given in (the plots use them by
        default).
    n_runs_ : int
        Number of runs.
    n_cached_ : int
        Runs found in ``memory`` instead of computed.
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
        "param_grid": [dict, list, None],
        "engine": [StrOptions({"auto", "batched", "per_run"})],
        "tail": [Interval(Integral, 1, None, closed="left"), None],
        "max_period": [Interval(Integral, 1, None, closed="left")],
        "rtol": [Interval(Real, 0, None, closed="neither")],
        "edge_band": [tuple, list],
        "eos_band": [tuple, list, Hidden(StrOptions({"deprecated"}))],
        "lyapunov_tol": [Interval(Real, 0, None, closed="left")],
        "n_tail_points": [Interval(Integral, 0, None, closed="left"), None],
        "same_init": ["boolean"],
        "n_jobs": [Integral, None],
        "memory": [None, str, os.PathLike, HasMethods(["cache"])],
        "results_file": [None, str, os.PathLike],
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
        param_grid=None,
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
        results_file=None,
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
        self.param_grid = param_grid
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
        self.results_file = results_file
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
        """Validated learning rates and the candidate parameter settings.

        Returns ``(lrs, candidates, names)``: the candidates are dicts of
        estimator parameters (``[{}]`` without a grid), in the order of
        :class:`sklearn.model_selection.ParameterGrid`; ``names`` are the
        scanned parameter names in order of first appearance.
        """
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
        grid = self.param_grid
        if self.param_name is not None:
            if grid is not None:
                raise ValueError(
                    "Give either param_grid or param_name and param_values, not both."
                )
            values = list(self.param_values)
            if not values:
                raise ValueError("param_values must not be empty.")
            grid = {self.param_name: values}
        if grid is None:
            return lrs, [{}], []
        source = "param_grid" if self.param_name is None else "param_name"

        def culprit(name):
            return (
                f"param_grid: {name!r}"
                if self.param_name is None
                else (f"param_name={name!r}")
            )

        for sub in [grid] if isinstance(grid, Mapping) else grid:
            if not isinstance(sub, Mapping):
                raise TypeError(
                    "param_grid must be a dict or a list of dicts, got an element "
                    f"of type {type(sub).__name__}."
                )
            for name, values in sub.items():
                if name == "learning_rate" or name not in params:
                    raise ValueError(
                        f"{culprit(name)} is not a parameter of "
                        f"{type(self.estimator).__name__} other than learning_rate."
                    )
                if name == "lr_units":
                    raise ValueError(
                        f"{source}: 'lr_units' cannot be scanned: the scan owns "
                        "the learning-rate units (set them with lr_units)."
                    )
                if isinstance(values, (str, bytes)) or not np.iterable(values):
                    raise TypeError(
                        f"param_grid: the values of {name!r} must be a list or "
                        f"an array, got {values!r}."
                    )
        try:
            candidates = list(ParameterGrid(grid))
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"param_grid: {exc}") from exc
        if not candidates:
            raise ValueError("param_grid must not be empty.")
        names = list(dict.fromkeys(n for c in candidates for n in c))
        return lrs, candidates, names

    def _configure(self, params, seed):
        """The estimator with a candidate's parameters and the seed set."""
        est = clone(self.estimator)
        if "lr_units" in est.get_params():
            # The scan owns the units; its runs get eta itself.
            est.set_params(lr_units="absolute")
        est.set_params(**params)
        if seed is not None:
            est.set_params(random_state=seed)
        return est

    def _draw_seeds(self, n_lr, candidates, names):
        """Seed of every run: one shared seed (same init) or one per run; a
        candidate that sets ``random_state`` uses its own."""
        n_cand = len(candidates)
        if "random_state" not in self.estimator.get_params():
            self.init_seed_ = None
            return np.full(n_cand * n_lr, None, dtype=object)
        rng = check_random_state(self.random_state)
        if self.same_init:
            base = self.estimator.get_params()["random_state"]
            if not isinstance(base, Integral):
                base = int(rng.randint(np.iinfo(np.int32).max))
            seeds = np.full((n_cand, n_lr), int(base), dtype=object)
        else:
            seeds = rng.randint(np.iinfo(np.int32).max, size=(n_cand, n_lr))
            seeds = seeds.astype(object)
        for j, cand in enumerate(candidates):
            if "random_state" in cand:
                seeds[j] = cand["random_state"]
        if names == ["random_state"]:  # the axis values are the seeds
            self.init_seed_ = seeds[:, 0].copy()
        elif self.same_init and "random_state" not in names:
            self.init_seed_ = int(base)
        else:
            self.init_seed_ = seeds if names else seeds[0]
        return seeds.ravel()

    def _initial_sharpness(self, X, y, candidates, configs, store, fp, prefer):
        """``lambda_H0`` and ``eta_c`` of each configuration ``(candidate,
        seed)``: one ``max_iter=0`` fit each, found in the cache or fitted in
        parallel (joblib's hint ``prefer``)."""
        keys, found = {}, {}
        if store is not None:
            keys = {
                rk: run_key(fp["config"][rk[0]], fp["data"], rk[1], "init")
                for rk in configs
            }
            found = store.load(keys.values())
        info, tasks, todo = {}, [], []
        for rk in configs:
            if rk in keys and keys[rk] in found:
                block, row = found[keys[rk]]
                info[rk] = tuple(block["columns"]["init"][row])
                continue
            est = self._configure(candidates[rk[0]], rk[1])
            if "max_iter" in est.get_params():
                est.set_params(max_iter=0)
            tasks.append((_initial_fit, (est, X, y), {}))
            todo.append(rk)
        for ids, res in self._dispatch(tasks, todo, prefer):
            info[ids] = res
        if store is not None and todo:
            store.save(
                [keys[rk] for rk in todo],
                {"columns": {"init": np.array([info[rk] for rk in todo])}},
            )
        both = np.array([info[rk] for rk in configs])
        return both[:, 0], both[:, 1]

    def _dispatch(self, tasks, ids, prefer=None):
        """Run ``tasks`` (``(func, args, kwargs)`` triples), yield ``(id,
        result)`` as they finish.

        In the calling process when there is at most one task (no worker is
        started for nothing), else through :class:`~sklearn.utils.parallel.
        Parallel` with ``n_jobs`` and joblib's soft hint ``prefer``: results
        come back as they finish where the backend can stream them, else
        (``multiprocessing``) in rounds of a few tasks per worker.  See
        :meth:`_quietly` for warnings.
        """
        if not tasks:
            return
        if len(tasks) == 1:
            func, args, kwargs = tasks[0]
            yield ids[0], func(*args, **kwargs)
            return
        verbose = max(0, int(self.verbose) - 1)
        tagged = [delayed(_tagged)(i, *t) for i, t in zip(ids, tasks, strict=True)]
        try:
            parallel = Parallel(
                n_jobs=self.n_jobs,
                verbose=verbose,
                prefer=prefer,
                return_as="generator_unordered",
            )
            rounds = [tagged]
        except ValueError:  # the backend cannot stream results
            parallel = Parallel(n_jobs=self.n_jobs, verbose=verbose, prefer=prefer)
            size = 2 * effective_n_jobs(self.n_jobs)
            rounds = [tagged[i : i + size] for i in range(0, len(tagged), size)]
        for batch in rounds:
            results = self._quietly(lambda batch=batch: iter(parallel(batch)))
            while (item := self._quietly(next, results, None)) is not None:
                yield item

    def _quietly(self, func, *args):
        """``func(*args)`` with the runs' warnings counted, not shown.

        Each worker silences and counts its own warnings; in thread-based
        backends (threading, in-process Dask) ``catch_warnings`` is not
        thread-safe, so this context catches whatever slips through (counted
        in ``self._n_leaked``).  Warnings of the cache and the parallel
        machinery are not the runs': they are shown.
        """
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = func(*args)
        for w in caught:
            if _infrastructure_warning(w):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            else:
                self._n_leaked += 1
        return out

    @_fit_context(
        # estimator is validated by its own fit
        prefer_skip_nested_validation=False
    )
    def fit(self, X, y):
        """Run and label every learning rate (times every parameter setting).

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
        lrs, candidates, names = self._check_grid()
        band = deprecated_eos_band(self.eos_band, self.edge_band)
        name = "edge_band" if self.eos_band == "deprecated" else "eos_band"
        if len(band) != 2 or not band[0] <= band[1]:
            raise ValueError(
                f"{name} must be a pair (low, high) with low <= high, got "
                f"{getattr(self, name)!r}."
            )
        n_lr, n_cand = lrs.size, len(candidates)
        n_runs = n_lr * n_cand
        analysis = {
            "tail": self.tail,
            "max_period": int(self.max_period),
            "rtol": float(self.rtol),
            "edge_band": tuple(float(b) for b in band),
            "lyapunov_tol": float(self.lyapunov_tol),
        }
        n_tail = None if self.n_tail_points is None else int(self.n_tail_points)
        store = RunStore.from_memory(self.memory)
        self._n_leaked = 0
        start = time.monotonic()

        seeds = self._draw_seeds(n_lr, candidates, names)
        run_cand = np.repeat(np.arange(n_cand), n_lr)
        # a run's configuration: (index of its candidate, its seed); the
        # distinct ones, and which one each run has
        configs, run_config = _distinct_rows(run_cand, seeds)
        fp = None if store is None else self._fingerprints(X, y, candidates, analysis)
        engine, engines = self.engine, None
        if engine != "per_run":
            engines = self._batched_engines(X, y, candidates, configs)
        if engine == "auto":
            offered = engines is not None and all(e.auto for e in engines)
            engine = "batched" if offered else "per_run"
        elif engine == "batched" and engines is None:
            raise ValueError(
                "engine='batched' needs an estimator offering a batched engine "
                "for every run (UVRegressor on a single example with optimizer="
                "'gd', a constant learning_rate and engine 'auto' or 'function'; "
                "MLPRegressor or MLPClassifier trained on the full batch by 'gd', "
                "'momentum' or 'nesterov', with k=1, compute_lyapunov=False and "
                "verbose=0); got "
                f"{type(self.estimator).__name__} on {X.shape[0]} samples. Use "
                "engine='per_run'."
            )
        # threads when every kernel runs without the GIL (the initial fits
        # too: they are short, and a process pool would be started for them)
        prefer = None
        if engine == "batched" and all(e.prefer == "threads" for e in engines):
            prefer = "threads"
        lam0, eta_c = self._initial_sharpness(
            X, y, candidates, configs, store, fp, prefer
        )
        lam0, eta_c = lam0[run_config], eta_c[run_config]
        grid = np.tile(lrs, n_cand)
        units = self._units()
        eta = resolve_learning_rate(
            grid, units, initial_sharpness=lam0, critical_learning_rate=eta_c
        )
        with np.errstate(over="ignore"):
            c = grid if units == "initial_sharpness" else eta * lam0

        # The table of everything known before the runs (streamed with them).
        table = {"learning_rate": eta}
        for axis in names:
            table[f"param_{axis}"] = _column([c.get(axis) for c in candidates])[
                run_cand
            ]
        if names:
            params = np.empty(n_cand, dtype=object)
            params[:] = candidates
            table["params"] = params[run_cand]
        table["c"] = c
        table["initial_sharpness"] = lam0
        table["critical_learning_rate"] = eta_c
        collected = _Collected(n_runs)
        sink = _ParquetSink.open(self.results_file, table)
        show = sys.stderr.isatty() if self.progress == "auto" else bool(self.progress)
        bar = _Progress(n_runs, show)

        keys = []
        if store is not None:
            keys = [
                run_key(fp["config"][j], fp["data"], fp["analysis"], seed, e)
                for (j, seed), e in zip(
                    (configs[k] for k in run_config.tolist()), eta.tolist(), strict=True
                )
            ]
        self.n_cached_ = 0 if store is None else collected.load(store, keys)
        done = np.flatnonzero(collected.filled)
        if done.size:
            sink.write(done, collected)
            bar.update(done.size)
        todo = np.flatnonzero(~collected.filled)

        if engine == "batched":
            tasks, ids = self._batched_tasks(
                engines, run_config, eta, todo, analysis, n_tail
            )
        else:
            tasks, ids = [], []
            for i in todo.tolist():
                j, seed = configs[run_config[i]]
                est = self._configure(candidates[j], seed)
                est.set_params(learning_rate=float(eta[i]))
                kwargs = {"analysis": analysis, "n_tail_points": n_tail}
                tasks.append((_fit_and_label, (est, X, y), kwargs))
                ids.append(np.array([i]))
        for index, part in self._dispatch(tasks, ids, prefer):
            block = _as_block(part)
            rows = np.arange(index.size)
            collected.fill(index, block, rows)
            if store is not None:
                store.save([keys[i] for i in index.tolist()], block)
            sink.write(index, collected)
            bar.update(index.size)

        runs = collected.columns
        results = dict(table)
        del results["initial_sharpness"], results["critical_learning_rate"]
        for key in _RESULT_KEYS[2:]:
            if key == "initial_sharpness":
                results[key] = lam0
            elif key == "critical_learning_rate":
                results[key] = eta_c
            else:
                results[key] = runs[key]
        for key, column in runs.items():  # diagnostics beyond the fixed keys
            if key not in results and key != "n_warnings":
                results[key] = column
        self.results_ = results
        shape = (n_lr,) if not names else (n_cand, n_lr)
        self.labels_ = np.asarray(results["label"], dtype=object).reshape(shape)
        self.learning_rates_ = eta.reshape(shape)
        # trace_tails_ is built from the blocks' records when first read
        self._tails, self._tail_axes = (collected.tails, n_runs), names
        self.__dict__.pop("_trace_tails", None)
        self.engine_ = engine
        self.lr_units_ = units
        self.n_runs_ = n_runs
        self.n_warnings_ = int(np.sum(runs["n_warnings"])) + self._n_leaked
        if self.verbose:
            counts = {k: int(np.sum(results["label"] == k)) for k in LABELS}
            print(
                f"[LearningRateScan] {n_runs} runs ({engine}, "
                f"{time.monotonic() - start:.2f} s, {self.n_cached_} cached): "
                + ", ".join(f"{k}={v}" for k, v in counts.items())
                + f"; {self.n_warnings_} warnings silenced"
            )
        return self

    def _fingerprints(self, X, y, candidates, analysis):
        """What the cache keys are made of, fingerprinted once per fit: the
        data, the labelling options and each candidate's configuration (its
        learning rate and seed left out: every run adds its own)."""
        fp = {
            "data": fingerprint(X, y),
            "analysis": fingerprint(
                analysis,
                None if self.n_tail_points is None else int(self.n_tail_points),
            ),
            "config": {},
        }
        for j, cand in enumerate(candidates):
            est = self._configure(cand, None).set_params(learning_rate=1.0)
            if "random_state" in est.get_params():
                est.set_params(random_state=None)
            fp["config"][j] = fingerprint(est)
        return fp

    def _batched_engines(self, X, y, candidates, configs):
        """The batched engine of each configuration ``(candidate, seed)``, or
        None.

        Asks each configured clone for its ``batched_engine(X, y)`` (scan
        protocol); None unless every configuration offers one.
        """
        if not hasattr(self.estimator, "batched_engine"):
            return None
        engines = []
        for j, seed in configs:
            engine = self._configure(candidates[j], seed).batched_engine(X, y)
            if engine is None:
                return None
            engines.append(engine)
        return engines

    def _batched_tasks(self, engines, run_config, eta, todo, analysis, n_tail):
        """One kernel call per block of runs still to compute.

        Runs sharing a kernel and its static arguments are stacked; each
        group is cut into blocks of at most the engine's ``max_block`` runs,
        and into at least ``_BLOCKS_PER_WORKER`` blocks per worker (a
        multiple of the workers), so that every worker is busy and a
        finished block is cached and reported while others run.  The group
        is cut into
        ``_CHUNKS_PER_BLOCK`` chunks of consecutive runs per block, and a
        block takes every k-th chunk: the blocks of a grid of learning rates
        mix cheap runs (converged or diverged early) and costly ones alike,
        so the workers finish together, while neighbours in the grid stay
        together (a kernel stepping similar runs at once is faster: a 10^4
        UV scan took 166 ms in blocks of every 8th run, 157 ms in chunks).
        Runs are independent: the blocks do not change any number.
        ``engines[k]`` is the engine of configuration k, ``run_config`` each
        run's configuration.
        """
        groups = {}
        for k, engine in enumerate(engines):
            groups.setdefault((engine.kernel, engine.key), []).append(k)
        workers = effective_n_jobs(self.n_jobs)
        tasks, ids = [], []
        for (kernel, static), members in groups.items():
            index = todo[np.isin(run_config[todo], members)]
            n = index.size
            if n == 0:
                continue
            # the group's states, a row per configuration (groups may differ
            # in shape: another architecture), gathered into its runs' below
            states = [engines[k].state for k in members]
            state = {name: np.array([st[name] for st in states]) for name in states[0]}
            row_of = np.zeros(len(engines), dtype=np.intp)
            row_of[members] = np.arange(len(members))
            per_block = -(-n // (_BLOCKS_PER_WORKER * workers)) if workers > 1 else n
            size = max(1, min(engines[members[0]].max_block, per_block))
            n_blocks = -(-n // size)
            n_blocks = min(n, -(-n_blocks // workers) * workers)
            chunks = np.array_split(index, min(n, _CHUNKS_PER_BLOCK * n_blocks))
            for first in range(n_blocks):
                block = np.concatenate(chunks[first::n_blocks])
                of_run = row_of[run_config[block]]
                kwargs = {name: values[of_run] for name, values in state.items()}
                kwargs["eta"] = eta[block]
                kwargs.update(static)
                kwargs.update(analysis=analysis, n_tail_points=n_tail)
                tasks.append((kernel, (), kwargs))
                ids.append(block)
        return tasks, ids

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

    @property
    def trace_tails_(self):
        """Tidy table of the kept records of every run (see the class doc).

        Built from the fitted records when first read, then kept: a fit does
        not pay for a table of ``n_runs * n_tail_points`` rows it may not use.
        """
        check_is_fitted(self, "results_")
        table = self.__dict__.get("_trace_tails")
        if table is None:
            tails = _merge_tails(*self._tails)
            table = self._tidy_tails(tails, self.results_, self._tail_axes)
            self._trace_tails, self._tails = table, None  # the blocks freed
        return table

    def _tidy_tails(self, tails, results, names):
        """``trace_tails_`` from the ragged records of every run."""
        lengths = tails["lengths"]

        def per_record(column):  # one value per run, repeated for its records
            return np.repeat(np.asarray(column), lengths)

        table = {"run": per_record(np.arange(lengths.size))}
        table["learning_rate"] = per_record(results["learning_rate"])
        for axis in names:
            key = f"param_{axis}"
            table[key] = per_record(results[key])
        table["step"] = tails["step"]
        table["sharpness"] = tails["sharpness"]
        table["eta_sharpness"] = table["learning_rate"] * tails["sharpness"]
        table["stability_threshold"] = per_record(results["stability_threshold"])
        table["loss"] = tails["loss"]
        return table

    def to_frame(self, kind="results"):
        """The scan's results as a tidy :class:`pandas.DataFrame`.

        Parameters
        ----------
        kind : {"results", "traces"}, default="results"
            ``"results"``: one row per run (the columns of ``results_``,
            ``params`` holding each run's parameter setting as a dict, types
            kept: integer parameters stay integers); ``"traces"``: one row per
            kept record (``trace_tails_``: the last ``n_tail_points`` records of
            every bounded run, or every record with ``n_tail_points=None``).

        Returns
        -------
        frame : pandas.DataFrame
            Indexed by ``run`` (the row of ``results_``) for ``"results"``.
        """
        check_is_fitted(self, "results_")
        import pandas as pd

        if kind == "results":
            frame = pd.DataFrame(self.results_)
            frame.index.name = "run"
            return frame
        if kind == "traces":
            return pd.DataFrame(self.trace_tails_)
        raise ValueError(f"kind must be 'results' or 'traces', got {kind!r}.")


# --------------------------------------------------------------------------
# Helpers of fit: task wrappers, result collection, the Parquet sink
# --------------------------------------------------------------------------


def _tagged(tag, func, args, kwargs):
    """``(tag, func(*args, **kwargs))``: a result that says which runs it holds."""
    return tag, func(*args, **kwargs)


def _initial_fit(est, X, y):
    """``(lambda_H0, eta_c)`` of one configuration (a ``max_iter=0`` fit)."""
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
        raise TypeError(_protocol_message(est, f"its fit sets no {missing}"))
    return (
        float(est.initial_sharpness_),
        float(getattr(est, "critical_learning_rate_", np.nan)),
    )


def _column(values):
    """A results column of ``values``, typed: int, float, bool, else object."""
    if values and all(isinstance(v, bool | np.bool_) for v in values):
        return np.array(values, dtype=bool)
    if values and all(
        isinstance(v, Integral) and not isinstance(v, bool | np.bool_) for v in values
    ):
        return np.array(values, dtype=np.int64)
    if values and all(
        isinstance(v, Real) and not isinstance(v, bool | np.bool_) for v in values
    ):
        return np.array(values, dtype=float)
    col = np.empty(len(values), dtype=object)
    col[:] = values
    return col


def _distinct_rows(*columns):
    """The distinct rows of ``columns`` in order of first appearance (a list
    of tuples), and the index of each row's among them."""
    try:
        table = np.column_stack([np.asarray(c, dtype=np.int64) for c in columns])
    except (TypeError, ValueError):  # seeds None (or other objects)
        codes = {}
        rows = zip(*(np.asarray(c).tolist() for c in columns), strict=True)
        index = [codes.setdefault(row, len(codes)) for row in rows]
        return list(codes), np.asarray(index, dtype=np.intp)
    rows, first, inverse = np.unique(
        table, axis=0, return_index=True, return_inverse=True
    )
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return [tuple(r) for r in rows[order].tolist()], rank[inverse.ravel()]


def _as_block(part):
    """A worker's result as a block: ``columns`` (arrays over its runs),
    ``tails`` (:func:`_ragged` records of its runs) and ``n_warnings``.

    Accepts the dict of one per-run fit (:func:`_fit_and_label`) and the
    output of a batched kernel (per-run arrays plus either ``tails``, one
    ``(steps, sharpness, loss)`` per run, or the arrays ``tail_steps``
    (common), ``tail_sharpness`` and ``tail_loss``; a diverged run keeps no
    record there).
    """
    part = dict(part)
    if np.ndim(part["label"]) == 0:  # one per-run fit
        one = (
            part.pop("tail_steps"),
            part.pop("tail_sharpness"),
            part.pop("tail_loss"),
        )
        tails = _ragged([one])
        columns = {k: np.array([v]) for k, v in part.items()}
    else:
        if "tails" in part:
            tails = _ragged(part.pop("tails"))
        else:
            # kept as they come (the records are laid out when read): the
            # common steps, a row per run (a diverged run keeps none)
            steps = np.asarray(part.pop("tail_steps"), dtype=np.int64)
            kept = ~np.asarray(part["diverged"], dtype=bool)
            tails = {
                "lengths": np.where(kept, steps.size, 0).astype(np.int64),
                "steps": steps,
                "sharpness": np.asarray(part.pop("tail_sharpness"), dtype=float),
                "loss": np.asarray(part.pop("tail_loss"), dtype=float),
            }
        columns = {k: np.asarray(v) for k, v in part.items()}
        columns.setdefault("n_warnings", np.zeros(tails["lengths"].size, np.int64))
    columns["label"] = columns["label"].astype(object)
    return {"columns": columns, "tails": tails}


def _ragged(tails):
    """Per-run ``(steps, sharpness, loss)`` records as one ragged table: the
    ``lengths`` of the runs and the concatenated ``step``, ``sharpness`` and
    ``loss``.  A table passes through (also a batched kernel's, see
    :func:`_as_block`)."""
    if isinstance(tails, dict):
        return tails
    tails = list(tails)

    def cat(k, dtype):
        return np.concatenate([np.asarray(t[k], dtype=dtype) for t in tails] or [[]])

    return {
        "lengths": np.array([np.size(t[0]) for t in tails], dtype=np.int64),
        "step": cat(0, np.int64),
        "sharpness": cat(1, float),
        "loss": cat(2, float),
    }


def _is_range(index, first=None, size=None):
    """Whether ``index`` is ``first, first + 1, ...`` (of ``size`` items)."""
    index = np.asarray(index)
    if index.size == 0 or (size is not None and index.size != size):
        return False
    start = index[0] if first is None else first
    return (
        index[0] == start
        and index[-1] - start == index.size - 1
        and (index.size < 2 or bool(np.all(np.diff(index) == 1)))
    )


def _segments(lengths, rows):
    """Positions in a ragged table (runs of ``lengths``) of the records of
    ``rows``, concatenated in that order."""
    starts = np.cumsum(lengths) - lengths
    n = lengths[rows]
    first = np.repeat(starts[rows] - (np.cumsum(n) - n), n)
    return first + np.arange(first.size)


class _Collected:
    """The per-run results of a scan as they arrive (from cache or workers)."""

    def __init__(self, n_runs):
        self.columns = {}
        self.tails = []  # (index, ragged records of a block, rows of it)
        self.filled = np.zeros(n_runs, dtype=bool)

    def load(self, store, keys):
        """Fill in the runs of ``keys`` found in ``store``; their number."""
        found = store.load(keys)
        by_block = {}
        for i, key in enumerate(keys):
            if key in found:
                block, row = found[key]
                entry = by_block.setdefault(id(block), (block, [], []))
                entry[1].append(i)
                entry[2].append(row)
        for block, index, rows in by_block.values():
            self.fill(np.asarray(index), block, np.asarray(rows))
        return len(found)

    def fill(self, index, block, rows):
        n = self.filled.size
        for key, values in block["columns"].items():
            if key not in self.columns:
                dtype = object if values.dtype == object else values.dtype
                self.columns[key] = np.zeros(n, dtype=dtype)
            self.columns[key][index] = values[rows]
        self.tails.append((index, _ragged(block["tails"]), rows))
        self.filled[index] = True


def _merge_tails(pieces, n_runs):
    """The records of all ``n_runs`` runs as one ragged table, in run order,
    from ``pieces``: ``(index, ragged records of a block, rows of it)``."""
    lengths = np.zeros(n_runs, dtype=np.int64)
    for index, tails, rows in pieces:
        lengths[index] = tails["lengths"][rows]
    out = {"lengths": lengths}
    total = int(lengths.sum())
    for key, dtype in (("step", np.int64), ("sharpness", float), ("loss", float)):
        out[key] = np.empty(total, dtype=dtype)
    starts = np.cumsum(lengths) - lengths
    for index, tails, rows in pieces:
        records = _records_of(tails, rows)
        if _is_range(index):  # consecutive runs: one slice
            first = starts[index[0]]
            dst = slice(first, first + records["step"].size)
        else:
            dst = _segments(lengths, index)
        for key in ("step", "sharpness", "loss"):
            out[key][dst] = records[key]
    return out


def _records_of(tails, rows):
    """The records of the runs ``rows`` of a block's tails, flat, in that
    order: ``step``, ``sharpness`` and ``loss``."""
    if "steps" in tails:  # a batched kernel's: every kept run, the same steps
        kept = rows[tails["lengths"][rows] > 0]
        return {
            "step": np.tile(tails["steps"], kept.size),
            "sharpness": tails["sharpness"][kept].ravel(),
            "loss": tails["loss"][kept].ravel(),
        }
    if _is_range(rows, 0, tails["lengths"].size):
        return tails
    src = _segments(tails["lengths"], rows)
    return {key: tails[key][src] for key in ("step", "sharpness", "loss")}


class _ParquetSink:
    """Appends finished runs to a Parquet dataset (a directory of parts).

    Each finished block of runs becomes one file ``part-<first run>.parquet``
    written atomically, so the directory always holds exactly the runs that
    finished; ``pandas.read_parquet(path)`` reads them as one table (sort by
    ``run`` for the order of ``results_``).  The ``params`` column (dicts) is
    left out: the ``param_<name>`` columns hold the same values.
    """

    def __init__(self, path, table):
        self.path, self.table = path, table

    @classmethod
    def open(cls, path, table):
        if path is None:
            return _NoSink()
        try:
            import pyarrow  # noqa: F401
        except ImportError as exc:
            raise ImportError(
                "results_file: writing Parquet needs pyarrow (pip install "
                "'sharpsk[parquet]')."
            ) from exc
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise ValueError(
                f"results_file: {os.fspath(path)!r} exists and is not a directory "
                "(a Parquet dataset is a directory of parts)."
            )
        if not path.parent.is_dir():
            raise ValueError(
                f"results_file: the parent directory of {os.fspath(path)!r} does "
                "not exist."
            )
        path.mkdir(exist_ok=True)
        for old in path.glob("part-*.parquet"):  # a previous scan's parts
            old.unlink()
        return cls(path, table)

    def write(self, index, collected):
        import pandas as pd

        frame = {"run": index}
        for key, column in self.table.items():
            if key != "params":
                frame[key] = column[index]
        for key, column in collected.columns.items():
            frame[key] = column[index]
        for key, column in frame.items():
            if column.dtype == object and key != "label":
                frame[key] = column.astype(str)
        tmp = self.path / f".part-{int(index[0]):09d}.tmp"
        pd.DataFrame(frame).to_parquet(tmp, index=False)
        os.replace(tmp, self.path / f"part-{int(index[0]):09d}.parquet")


class _NoSink:
    def write(self, index, collected):
        pass
