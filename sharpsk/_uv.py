"""The UV model: a two-layer linear network f(x) = s v^T U x trained by GD."""

from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from ._base import GD_PARAMETER_CONSTRAINTS, warn_divergence
from ._dynamics import uv_critical_learning_rate
from ._maps import divergence_bound, recorded_steps, uv_sharpness, uv_simulate
from ._parameterization import resolve_parameterization
from ._sharpness import top_eigenpair

__all__ = ["UVRegressor"]


# --------------------------------------------------------------------------
# Pure parameter-space kernels.  ``U`` (n, d) and ``v`` (n,) are the
# learning-rate-normalised parameters: plain GD with the user's learning rate
# on them is GD with ``learning_rate * lr_scale`` on the raw weights.
# --------------------------------------------------------------------------


def uv_residual(U, v, X, y, s):
    """Residuals ``f(X) - y`` and the hidden activations ``A = X U^T``."""
    A = X @ U.T
    return s * (A @ v) - y, A


def uv_gradient(U, v, X, r, A, s):
    """Gradient of ``L = mean(r**2) / 2`` with respect to ``(U, v)``."""
    n_samples = X.shape[0]
    return (
        (s / n_samples) * np.outer(v, X.T @ r),
        (s / n_samples) * (A.T @ r),
    )


def uv_hvp(U, v, X, r, A, s, dU, dv):
    """Hessian-vector product of the UV loss, analytically.

    ``H (dU, dv)`` is the Gauss-Newton term ``J^T J (dU, dv) / N`` plus the
    residual term, which couples ``dU`` and ``dv`` through ``r``.
    """
    n_samples = X.shape[0]
    dA = X @ dU.T
    df = s * (A @ dv + dA @ v)
    c = s / n_samples
    return (
        c * (np.outer(v, X.T @ df) + np.outer(dv, X.T @ r)),
        c * (A.T @ df + dA.T @ r),
    )


def uv_ntk_top(v, X, A, s):
    """Top eigenvalue of the empirical NTK Gram matrix divided by ``N``.

    ``K = s^2 (|v|^2 X X^T + A A^T) = B B^T`` with ``B = s [|v| X, A]``, so its
    top eigenvalue is the squared top singular value of ``B``.  For one example
    this is the NTK ``lambda`` of the function-space map.
    """
    B = s * np.hstack([np.linalg.norm(v) * X, A])
    return np.linalg.norm(B, 2) ** 2 / X.shape[0]


def uv_function_state(U, v, x, y, s):
    """Function-space state ``(delta_f, ntk, kappa)`` of one example."""
    a = U @ x
    xx = x @ x
    return (
        s * (v @ a) - y,
        s * s * (a @ a + (v @ v) * xx),
        s * s * xx,
    )


class UVRegressor(RegressorMixin, BaseEstimator):
    """Two-layer linear network ``f(x) = s v^T U x`` trained by gradient descent.

    The UV model of Kalra, He & Barkeshli: on a single example it already shows
    early sharpness reduction, progressive sharpening, the edge of stability
    and a period-doubling route to chaos.  ``fit`` runs plain full-batch
    gradient descent on ``L = mean((f(x_i) - y_i)**2) / 2`` and records the
    sharpness (top eigenvalue of the loss Hessian), the NTK and the loss.

    Parameters
    ----------
    width : int, default=100
        Number of hidden units ``n``.
    learning_rate : float, default=0.1
        Gradient-descent step size ``eta`` (per-layer learning-rate scales of
        the parameterization are applied on top of it), in the units of
        ``lr_units``.
    lr_units : {"absolute", "initial_sharpness", "critical"}, default="absolute"
        ``"absolute"``: ``learning_rate`` is ``eta``.  ``"initial_sharpness"``:
        it is ``c = eta * lambda_H0`` (``eta = learning_rate /
        initial_sharpness_``; 2 is the linear-stability edge at
        initialization).  ``"critical"``: it is ``eta / eta_c`` with ``eta_c =
        1 / (sqrt(kappa) |y|)`` (single example only; above 1 no minimum is
        stable).  The step size used is ``learning_rate_``.
    max_iter : int, default=1000
        Number of gradient-descent steps (0 records the initialization only).
    parameterization : {"ntk", "sp", "mup"} or ParameterizationTransformer, \
            default="ntk"
        How width enters the output multiplier ``s``, the initialization and the
        learning rate; see :class:`ParameterizationTransformer`.
    init_scale : float, default=1.0
        Multiplies the initialization standard deviation of both layers.
    record_every : int, default=1
        Record the traces every ``record_every`` steps (the initialization and
        the final step are always recorded).
    engine : {"auto", "function", "parameter"}, default="auto"
        ``"function"`` iterates the exact function-space map of the
        ``(delta_f, ntk)`` pair (single training example only, O(1) per step
        whatever the width); ``"parameter"`` runs gradient descent on ``U`` and
        ``v``.  ``"auto"`` picks ``"function"`` for one example.
    sharpness_tol : float, default=1e-6
        Relative tolerance of the iterative eigensolver used for the sharpness on
        multi-example data (single examples use the closed form).
    random_state : int, RandomState instance or None, default=None
        Seeds the initialization.
    verbose : int, default=0
        Print a one-line summary of each fit when positive.

    Attributes
    ----------
    sharpness_trace_ : ndarray of shape (n_records,)
        Top Hessian eigenvalue ``lambda_H`` at each recorded step.
    ntk_trace_ : ndarray of shape (n_records,)
        NTK ``lambda`` (top eigenvalue of the NTK Gram matrix divided by the
        number of samples) at each recorded step.
    loss_curve_ : ndarray of shape (n_records,)
        Training loss ``mean((f - y)**2) / 2`` at each recorded step.
    residual_trace_ : ndarray of shape (n_records,)
        ``f - y`` on a single example; the root mean squared residual otherwise.
    steps_ : ndarray of shape (n_records,)
        Gradient-descent step of each record (0 is the initialization).
    learning_rate_ : float
        The step size ``eta`` used (``learning_rate`` converted from
        ``lr_units``).
    n_iter_ : int
        Steps completed (fewer than ``max_iter`` only when diverged).
    diverged_ : bool
        Whether the run blew up; the traces then hold its finite prefix.
    initial_sharpness_ : float
        ``lambda_H`` at initialization, so ``c = learning_rate *
        initial_sharpness_`` is the learning rate in units of it.
    kappa_ : float
        ``s^2 |x|^2`` for a single example (NaN otherwise).
    critical_learning_rate_ : float
        ``eta_c = 1 / (sqrt(kappa_) |y|)``: above it a single example cannot
        converge (NaN for several examples).
    U_ : ndarray of shape (width, n_features_in_)
        Learned first-layer weights.
    v_ : ndarray of shape (width,)
        Learned second-layer weights.
    output_scale_ : float
        The multiplier ``s``, so ``predict(X) = output_scale_ * X @ U_.T @ v_``.
    engine_ : str
        The engine that ran.
    n_features_in_ : int
        Number of features seen during fit.

    See Also
    --------
    MLPRegressor : Deeper networks with nonlinear activations.
    LearningRateScan : Fit and label many learning rates at once.

    Notes
    -----
    Sharpness and NTK are measured in the coordinates in which gradient
    descent uses the plain ``learning_rate`` (each layer's weights divided by
    the square root of its learning-rate scale), so linear stability is always
    ``learning_rate * lambda_H < 2``.  For SP and NTK these are the weights
    themselves; for muP the reported values are ``width`` times those of the raw
    weights.

    For one example ``(x, y)`` the run is exactly the two-dimensional map
    ``delta_f' = delta_f (1 - eta lambda + eta^2 kappa delta_f (delta_f + y))``,
    ``lambda' = lambda + eta kappa delta_f (eta lambda delta_f - 4 (delta_f + y))``
    and ``lambda_H = (lambda + sqrt(lambda^2 + 4 kappa delta_f (3 delta_f +
    2 y))) / 2``.

    References
    ----------
    D. S. Kalra, T. He and M. Barkeshli, "Universal Sharpness Dynamics in
    Neural Network Training: Fixed Point Analysis, Edge of Stability, and Route
    to Chaos", ICLR 2025, arXiv:2311.02076.

    Examples
    --------
    >>> import numpy as np
    >>> from sharpsk import UVRegressor
    >>> X, y = np.ones((1, 4)) / 2.0, np.array([1.0])
    >>> uv = UVRegressor(width=512, learning_rate=0.5, max_iter=200,
    ...                  random_state=0).fit(X, y)
    >>> uv.engine_, bool(uv.diverged_)
    ('function', False)
    >>> float(abs(uv.residual_trace_[-1])) < 1e-8
    True
    """

    _parameter_constraints: dict = {
        "width": [Interval(Integral, 1, None, closed="left")],
        **GD_PARAMETER_CONSTRAINTS,
        "lr_units": [StrOptions({"absolute", "initial_sharpness", "critical"})],
        "record_every": [Interval(Integral, 1, None, closed="left")],
        "engine": [StrOptions({"auto", "function", "parameter"})],
        "sharpness_tol": [Interval(Real, 0, 1, closed="neither")],
    }

    def __init__(
        self,
        width=100,
        *,
        learning_rate=0.1,
        lr_units="absolute",
        max_iter=1000,
        parameterization="ntk",
        init_scale=1.0,
        record_every=1,
        engine="auto",
        sharpness_tol=1e-6,
        random_state=None,
        verbose=0,
    ):
        self.width = width
        self.learning_rate = learning_rate
        self.lr_units = lr_units
        self.max_iter = max_iter
        self.parameterization = parameterization
        self.init_scale = init_scale
        self.record_every = record_every
        self.engine = engine
        self.sharpness_tol = sharpness_tol
        self.random_state = random_state
        self.verbose = verbose

    def _initialize(self, n_features):
        """Raw initial weights, the multiplier ``s`` and the lr scale ``c``."""
        scalings = resolve_parameterization(self.parameterization).get_scalings(
            [n_features, self.width, 1]
        )
        lr_scale = scalings["lr_scale"]
        if not np.isclose(lr_scale[0], lr_scale[1]):
            raise ValueError(
                "parameterization: the UV model needs one learning-rate scale for "
                f"both layers, got {lr_scale.tolist()}."
            )
        rng = check_random_state(self.random_state)
        std = self.init_scale * scalings["init_std"]
        U = rng.normal(0.0, std[0], size=(self.width, n_features))
        v = rng.normal(0.0, std[1], size=self.width)
        return U, v, float(np.prod(scalings["multiplier"])), float(lr_scale[0])

    def _function_space_init(self, X, y):
        """Initial ``(delta_f0, ntk0, kappa, y)`` of a single-example problem.

        Used by :class:`LearningRateScan` to run many learning rates at once with
        the same map as ``fit``.
        """
        X = np.asarray(X, dtype=float)
        y = np.asarray(y, dtype=float).ravel()
        U, v, s, c = self._initialize(X.shape[1])
        s_eff = s * c  # GD with lr eta on theta / sqrt(c)
        delta_f, ntk, kappa = uv_function_state(
            U / np.sqrt(c), v / np.sqrt(c), X[0], y[0], s_eff
        )
        return {"delta_f0": delta_f, "ntk0": ntk, "kappa": kappa, "y": y[0]}

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Run gradient descent on ``(X, y)`` and record the traces.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training inputs.
        y : array-like of shape (n_samples,)
            Targets.

        Returns
        -------
        self : UVRegressor
            The fitted estimator.
        """
        X, y = validate_data(self, X, y, y_numeric=True, dtype=np.float64)
        n_samples = X.shape[0]
        engine = self.engine
        if engine == "auto":
            engine = "function" if n_samples == 1 else "parameter"
        elif engine == "function" and n_samples != 1:
            raise ValueError(
                f"engine='function' needs a single training example; got "
                f"n_samples={n_samples}. Use engine='parameter' or 'auto'."
            )
        U, v, s, c = self._initialize(X.shape[1])
        s_eff, root_c = s * c, np.sqrt(c)
        U, v = U / root_c, v / root_c
        self.learning_rate_ = self._step_size(U, v, X, y, s_eff)
        run = (self._fit_function if engine == "function" else self._fit_parameter)(
            U, v, X, y, s_eff
        )
        U, v = run.pop("weights")
        self.U_, self.v_ = U * root_c, v * root_c
        self.output_scale_ = s
        self.engine_ = engine
        for name, value in run.items():
            setattr(self, name, value)
        self.initial_sharpness_ = float(self.sharpness_trace_[0])
        if n_samples == 1:
            self.kappa_ = float(s_eff**2 * (X[0] @ X[0]))
            self.critical_learning_rate_ = float(
                uv_critical_learning_rate(self.kappa_, y[0])
            )
        else:
            self.kappa_ = self.critical_learning_rate_ = np.nan
        if self.diverged_:
            warn_divergence(self, self.n_iter_)
        if self.verbose:
            print(
                f"[UVRegressor] engine={engine} steps={self.n_iter_} "
                f"diverged={self.diverged_} lambda_H0={self.initial_sharpness_:.6g} "
                f"final loss={self.loss_curve_[-1]:.6g}"
            )
        return self

    def _step_size(self, U, v, X, y, s):
        """``eta`` from ``learning_rate`` in the units of ``lr_units``."""
        if self.lr_units == "absolute":
            return float(self.learning_rate)
        if X.shape[0] == 1:
            df, ntk, kappa = uv_function_state(U, v, X[0], y[0], s)
            if self.lr_units == "critical":
                eta_c = uv_critical_learning_rate(kappa, y[0])
                if not np.isfinite(eta_c):
                    raise ValueError(
                        "lr_units='critical' needs a non-zero target and input "
                        f"(eta_c = 1 / (sqrt(kappa) |y|) with kappa={kappa:g}, "
                        f"y={y[0]:g})."
                    )
                return float(self.learning_rate * eta_c)
            lam0 = uv_sharpness(df, ntk, kappa, y[0])
        elif self.lr_units == "critical":
            raise ValueError(
                "lr_units='critical' needs a single training example (eta_c is "
                f"defined for one example); got n_samples={X.shape[0]}."
            )
        else:
            r, A = uv_residual(U, v, X, y, s)
            lam0 = self._sharpness(U, v, X, r, A, s, None)[0]
        if not lam0 > 0:
            raise ValueError(
                "lr_units='initial_sharpness' needs a positive initial sharpness; "
                f"got {lam0:g}."
            )
        return float(self.learning_rate / lam0)

    def _fit_function(self, U, v, X, y, s):
        """Exact function-space run on one example, weights rebuilt at the end."""
        x, y0 = X[0], y[0]
        df0, ntk0, kappa = uv_function_state(U, v, x, y0, s)
        sim = uv_simulate(
            df0,
            ntk0,
            self.learning_rate_,
            kappa,
            y0,
            self.max_iter,
            record_every=self.record_every,
            output_scale=s,
        )
        n_iter = int(sim["n_iter"])
        keep = sim["steps"] <= n_iter  # the finite prefix
        df, ntk = sim["delta_f"][keep], sim["ntk"][keep]
        steps = sim["steps"][keep]
        if steps[-1] != n_iter:  # diverged: the last finite state closes the traces
            last = uv_simulate(
                df0, ntk0, self.learning_rate_, kappa, y0, n_iter, record_from=n_iter
            )
            df, ntk = np.append(df, last["delta_f"]), np.append(ntk, last["ntk"])
            steps = np.append(steps, n_iter)
        # Weights: (Ux, v) evolve by the 2x2 map M; U moves along x only.
        M = sim["transfer"]
        a0, xx = U @ x, x @ x
        a, v_new = M[0, 0] * a0 + M[0, 1] * v, M[1, 0] * a0 + M[1, 1] * v
        U_new = U + np.outer(a - a0, x / xx) if xx > 0 else U
        return {
            "weights": (U_new, v_new),
            "steps_": steps,
            "residual_trace_": df,
            "ntk_trace_": ntk,
            "sharpness_trace_": uv_sharpness(df, ntk, kappa, y0),
            "loss_curve_": 0.5 * df * df,
            "n_iter_": n_iter,
            "diverged_": bool(sim["diverged"]),
        }

    def _fit_parameter(self, U, v, X, y, s):
        """Parameter-space gradient descent (any number of examples)."""
        eta, single = self.learning_rate_, X.shape[0] == 1
        schedule = recorded_steps(self.max_iter, self.record_every)
        rows, eigvec = [], None  # (step, residual, ntk, sharpness, loss)

        def record(t):
            nonlocal eigvec
            if single:
                df, ntk, kappa = uv_function_state(U, v, X[0], y[0], s)
                sharp = uv_sharpness(df, ntk, kappa, y[0])
            else:
                df, ntk = np.sqrt(np.mean(r * r)), uv_ntk_top(v, X, A, s)
                sharp, eigvec = self._sharpness(U, v, X, r, A, s, eigvec)
            rows.append((t, df, ntk, sharp, 0.5 * np.mean(r * r)))

        r, A = uv_residual(U, v, X, y, s)
        bound = divergence_bound(np.max(np.abs(r)), np.max(np.abs(y)))
        n_iter, diverged, rec = 0, False, 0
        with np.errstate(over="ignore", invalid="ignore"):
            for t in range(self.max_iter + 1):
                if rec < len(schedule) and schedule[rec] == t:
                    record(t)
                    rec += 1
                if t == self.max_iter:
                    break
                gU, gv = uv_gradient(U, v, X, r, A, s)
                U_new, v_new = U - eta * gU, v - eta * gv
                r_new, A_new = uv_residual(U_new, v_new, X, y, s)
                if not np.max(np.abs(r_new)) <= bound:  # NaN-safe
                    diverged = True
                    break
                U, v, r, A = U_new, v_new, r_new, A_new
                n_iter += 1
            if rows[-1][0] != n_iter:  # diverged: the last finite state closes them
                record(n_iter)
        steps, res, ntk, sharp, loss = (np.array(c) for c in zip(*rows, strict=True))
        return {
            "weights": (U, v),
            "steps_": steps.astype(np.int64),
            "residual_trace_": res,
            "ntk_trace_": ntk,
            "sharpness_trace_": sharp,
            "loss_curve_": loss,
            "n_iter_": n_iter,
            "diverged_": diverged,
        }

    def _sharpness(self, U, v, X, r, A, s, v0):
        """Top Hessian eigenpair on several examples, warm-started."""
        n_u = U.size

        def matvec(w):
            hU, hv = uv_hvp(U, v, X, r, A, s, w[:n_u].reshape(U.shape), w[n_u:])
            return np.concatenate([hU.ravel(), hv])

        res = top_eigenpair(
            matvec,
            n_u + v.size,
            v0=v0,
            tol=self.sharpness_tol,
            random_state=0,
        )
        return res.eigenvalue, res.eigenvector

    def predict(self, X):
        """Network output ``s * X @ U_.T @ v_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Inputs.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            Predictions.
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return self.output_scale_ * ((X @ self.U_.T) @ self.v_)
