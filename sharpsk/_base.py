"""What the gradient-descent regressors share: parameters, divergence, traces."""

import os
import warnings
from numbers import Integral, Real

import numpy as np
from scipy.sparse.linalg import LinearOperator
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from ._optimizers import OPTIMIZERS, make_optimizer
from ._parameterization import _PARAMETERIZATION_CONSTRAINT

__all__ = ["DivergenceWarning"]


class DivergenceWarning(UserWarning):
    """Gradient descent diverged at the requested learning rate.

    Divergence is a result, not an error: the estimator sets ``diverged_ = True``,
    keeps the finite prefix of every trace and emits this warning once per fit.
    Silence it with ``warnings.simplefilter("ignore", DivergenceWarning)``.
    """


# Parameters every gradient-descent regressor of sharpsk has, with one meaning.
GD_PARAMETER_CONSTRAINTS = {
    "learning_rate": [Interval(Real, 0, None, closed="neither"), callable],
    "max_iter": [Interval(Integral, 0, None, closed="left")],
    "optimizer": [StrOptions(set(OPTIMIZERS))],
    "momentum": [Interval(Real, 0, 1, closed="left")],
    "beta_1": [Interval(Real, 0, 1, closed="left")],
    "beta_2": [Interval(Real, 0, 1, closed="left")],
    "epsilon": [Interval(Real, 0, None, closed="neither")],
    "parameterization": _PARAMETERIZATION_CONSTRAINT,
    "init_scale": [Interval(Real, 0, None, closed="neither")],
    "record_every": [Interval(Integral, 1, None, closed="left")],
    "warm_start": ["boolean"],
    "blas_threads": [Interval(Integral, 1, None, closed="left"), None],
    "k": [Interval(Integral, 1, None, closed="left")],
    "random_state": ["random_state"],
    "verbose": ["verbose"],
}

#: Docstring entries of those parameters (estimators include them verbatim).
OPTIMIZER_DOC = """optimizer : {"gd", "momentum", "nesterov", "rmsprop", "adam"}, \
default="gd"
        The update rule; each has its stability threshold
        (``stability_threshold_``, see the user guide's optimizers page).
    momentum : float, default=0.9
        ``beta`` of heavy-ball ``"momentum"`` and ``"nesterov"``.
    beta_1 : float, default=0.9
        Decay of Adam's first moment.
    beta_2 : float, default=0.999
        Decay of the second moment of ``"rmsprop"`` and ``"adam"``.
    epsilon : float, default=1e-8
        Added to the root of the second moment (adaptive methods)."""


# Working copies of the parameters a fit holds at once (weights, normalised
# weights, gradient, optimizer state, eigenvectors): a rough, safe factor.
_COPIES = 6


def check_memory(n_floats, culprit):
    """Refuse, naming ``culprit``, a fit whose arrays exceed the free memory.

    ``n_floats`` float64 values, times a few working copies, are compared
    with the available physical memory (where the system reports it).
    """
    try:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # not reported: no check
        return
    need = 8.0 * _COPIES * float(n_floats)
    if need > free:
        raise ValueError(
            f"{culprit}: the fit needs about {need / 2**30:.3g} GiB, more than "
            f"the {free / 2**30:.3g} GiB of free memory."
        )


def check_numeric_targets(y):
    """Validated ``y`` as float64, or a ValueError naming it (e.g. strings)."""
    if y.dtype.kind not in "biuf":
        raise ValueError(
            f"y must be numeric (regression targets), got dtype {y.dtype}."
        )
    return y.astype(np.float64, copy=False)


def validate_regression_data(estimator, X, y, *, reset):
    """``(X, y)`` validated as float64, ``y`` 1-D or 2-D (several outputs)."""
    X, y = validate_data(
        estimator,
        X,
        y,
        reset=reset,
        multi_output=True,
        y_numeric=True,
        dtype=np.float64,
    )
    return X, check_numeric_targets(y)


def make_estimator_optimizer(estimator, scale=1.0):
    """The optimizer object of an estimator's parameters.

    ``scale``: the square root of each trained coordinate's learning-rate
    scale (see :func:`~sharpsk._optimizers.make_optimizer`).
    """
    return make_optimizer(
        estimator.optimizer,
        momentum=estimator.momentum,
        beta_1=estimator.beta_1,
        beta_2=estimator.beta_2,
        epsilon=estimator.epsilon,
        scale=scale,
    )


class HessianMixin:
    """``hessian_operator`` for estimators trained by the engine.

    The estimator provides ``_engine_model(X, Y) -> (model, theta)``: its
    engine model on ``(X, Y)`` and its final parameters in the engine's
    coordinates.
    """

    def hessian_operator(self, X, y):
        """The Hessian of the training loss at the fitted weights.

        In the coordinates in which the optimizer steps with the plain
        ``learning_rate`` (each layer divided by the square root of its
        learning-rate scale), so its top eigenvalue is comparable with
        ``stability_threshold_``, as ``sharpness_trace_`` is.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Inputs, e.g. the training data.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Targets.

        Returns
        -------
        hessian : scipy.sparse.linalg.LinearOperator of shape (P, P)
            Exact Hessian-vector products (``hessian @ v``), ``P`` the number
            of trained parameters; see :mod:`sharpsk.hessian` for its
            spectrum.
        """
        check_is_fitted(self)
        X, y = validate_regression_data(self, X, y, reset=False)
        model, theta = self._engine_model(X, y)
        point = model.point(theta)

        def matvec(vec):
            return point.hvp(np.asarray(vec, dtype=np.float64).ravel())

        n = model.n_params
        return LinearOperator((n, n), matvec=matvec, rmatvec=matvec, dtype=np.float64)


def warn_divergence(estimator, n_iter):
    """The single warning a fit emits when its run diverged."""
    eta = np.ravel(getattr(estimator, "learning_rate_", estimator.learning_rate))
    why = ""
    if not np.isfinite(estimator.loss_curve_[0]):
        why = " (the initial loss overflows float64: rescale X or y)"
    warnings.warn(
        f"{type(estimator).__name__} diverged after {n_iter} steps at learning "
        f"rate {eta[-1]:g}{why}; diverged_ is True and the traces hold the "
        "finite prefix of the run.",
        DivergenceWarning,
        stacklevel=4,
    )


def _constant_or_trace(values):
    """A float when all records share it, else the per-record array."""
    values = np.asarray(values, dtype=float)
    if values.size and np.all(values == values[0]):
        return float(values[0])
    return values


def store_traces(estimator, traces, *, n_iter, diverged, append=False):
    """Set the trace attributes of :data:`~sharpsk._engine.TRACE_ATTRIBUTES`.

    ``traces`` maps ``steps, loss, sharpness, n_hvp, converged, eta,
    threshold`` and optionally ``ntk``, ``preconditioned`` and model extras
    (``residual``) to one value per record.  With ``append`` (warm start) the
    records are added to those of the previous fit.
    """
    names = {
        "steps": ("steps_", np.int64),
        "loss": ("loss_curve_", float),
        "sharpness": ("sharpness_trace_", float),
        "n_hvp": ("hvp_trace_", np.int64),
        "converged": ("sharpness_converged_", bool),
        "ntk": ("ntk_trace_", float),
        "preconditioned": ("preconditioned_sharpness_trace_", float),
        "residual": ("residual_trace_", float),
        "top_k": ("top_eigenvalues_trace_", float),
        "eta": ("_eta_records", float),
        "threshold": ("_threshold_records", float),
    }
    n_old = len(estimator.steps_) if append else 0
    n_new = len(traces["steps"])
    new = {}  # all checked before any attribute changes
    for key, (attr, dtype) in names.items():
        value = traces.get(key)
        old = getattr(estimator, attr, None) if append else None
        if value is None and old is None:
            new[attr] = None
            continue
        # an optional trace switched on or off between warm fits: NaN there
        if value is None:
            value = np.full((n_new,) + np.shape(old)[1:], np.nan)
        value = np.asarray(value, dtype=dtype)
        if append and old is None:
            old = np.full((n_old,) + value.shape[1:], np.nan)
        if old is not None and old.shape[1:] != value.shape[1:]:
            raise ValueError(
                f"warm_start: {attr} holds {old.shape[1:]} values per record, "
                f"this fit {value.shape[1:]} (k changed between warm fits)."
            )
        new[attr] = value if old is None else np.concatenate([old, value])
    for attr, value in new.items():
        setattr(estimator, attr, value)
    estimator.n_iter_ = n_iter + (estimator.n_iter_ if append else 0)
    estimator.diverged_ = bool(diverged)
    if not append:
        estimator.initial_sharpness_ = float(estimator.sharpness_trace_[0])
    estimator.learning_rate_ = _constant_or_trace(estimator._eta_records)
    estimator.stability_threshold_ = _constant_or_trace(estimator._threshold_records)


def store_run(estimator, run, *, warm, compute_lyapunov):
    """Fitted attributes of an engine run: the traces, ``n_hvp_`` and the
    Lyapunov exponent (``tangent_log_growth_`` continued on a warm start).
    """
    growth = np.asarray(run["growth"], dtype=float)
    if warm and getattr(estimator, "tangent_log_growth_", None) is not None:
        growth = np.concatenate([estimator.tangent_log_growth_, growth])
    store_traces(
        estimator,
        run["traces"],
        n_iter=run["n_iter"],
        diverged=run["diverged"],
        append=warm,
    )
    estimator.n_hvp_ = int(estimator.hvp_trace_.sum()) + (
        growth.size if compute_lyapunov else 0
    )
    estimator.tangent_log_growth_ = growth if compute_lyapunov else None
    estimator.lyapunov_exponent_ = None
    if compute_lyapunov:
        n = growth.size
        estimator.lyapunov_exponent_ = float(np.mean(growth[n // 2 :])) if n else np.nan
