"""The UV model: a two-layer linear network f(x) = s v^T U x trained by GD."""

from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from ._base import (
    GD_PARAMETER_CONSTRAINTS,
    OPTIMIZER_DOC,
    HessianMixin,
    check_memory,
    check_numeric_targets,
    make_estimator_optimizer,
    store_traces,
    warn_divergence,
)
from ._dynamics import uv_critical_learning_rate
from ._engine import BatchedEngine, Model, Point, resolve_learning_rate, train
from ._maps import uv_sharpness, uv_simulate
from ._parameterization import resolve_parameterization
from ._uv_batched import releases_gil, tail_lyapunov, uv_batched_runs

# Runs of a batched scan per kernel call (bounds its memory; the unit of
# caching and progress).  Numbers do not depend on it.
_MAX_BLOCK = 4096

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


def uv_function_state(U, v, x, y, s):
    """Function-space state ``(delta_f, ntk, kappa)`` of one example."""
    a = U @ x
    xx = x @ x
    return (
        s * (v @ a) - y,
        s * s * (a @ a + (v @ v) * xx),
        s * s * xx,
    )


class _UVPoint(Point):
    """The engine's view of the UV model at ``(U, v)``."""

    def __init__(self, model, U, v, X, y):
        self.model, self.U, self.v, self.X, self.y = model, U, v, X, y
        s = model.s
        self.r, self.A = uv_residual(U, v, X, y, s)
        self.loss = 0.5 * np.mean(self.r * self.r)
        self.residual_max = float(np.max(np.abs(self.r)))
        self._grad = None

    def gradient(self):
        if self._grad is None:
            gU, gv = uv_gradient(self.U, self.v, self.X, self.r, self.A, self.model.s)
            self._grad = np.concatenate([gU.ravel(), gv])
        return self._grad

    def _split(self, vec):
        n_u = self.U.size
        return vec[:n_u].reshape(self.U.shape), vec[n_u:]

    def hvp(self, vec):
        dU, dv = self._split(vec)
        hU, hv = uv_hvp(self.U, self.v, self.X, self.r, self.A, self.model.s, dU, dv)
        return np.concatenate([hU.ravel(), hv])

    def gauss_newton(self, vec):
        dU, dv = self._split(vec)
        zero = np.zeros_like(self.r)
        hU, hv = uv_hvp(self.U, self.v, self.X, zero, self.A, self.model.s, dU, dv)
        return np.concatenate([hU.ravel(), hv])

    def _state(self):
        return uv_function_state(self.U, self.v, self.X[0], self.y[0], self.model.s)

    def sharpness(self):
        if self.X.shape[0] != 1:
            return None
        df, ntk, kappa = self._state()
        return float(uv_sharpness(df, ntk, kappa, self.y[0]))

    def ntk(self):
        if self.X.shape[0] != 1:
            return None
        return float(self._state()[1])

    def extras(self):
        if self.X.shape[0] == 1:
            return {"residual": float(self.r[0])}
        return {"residual": float(np.sqrt(np.mean(self.r * self.r)))}


class UVModel(Model):
    """The UV model with squared error, as an engine model.

    ``theta`` is ``U`` (width, d) raveled, then ``v`` (width,), in the
    learning-rate-normalised coordinates; ``s`` the effective multiplier.
    """

    def __init__(self, X, y, width, s):
        self.X, self.y, self.width, self.s = X, y, width, s
        self.n_params = width * (X.shape[1] + 1)
        self.target_max = float(np.max(np.abs(y)))

    def split(self, theta):
        n_u = self.width * self.X.shape[1]
        return theta[:n_u].reshape(self.width, -1), theta[n_u:]

    def point(self, theta, rows=None):
        U, v = self.split(theta)
        X, y = (self.X, self.y) if rows is None else (self.X[rows], self.y[rows])
        return _UVPoint(self, U, v, X, y)


class UVRegressor(HessianMixin, RegressorMixin, BaseEstimator):
    """Two-layer linear network ``f(x) = s v^T U x`` trained by gradient descent.

    The UV model of Kalra, He & Barkeshli: on a single example it already shows
    early sharpness reduction, progressive sharpening, the edge of stability
    and a period-doubling route to chaos.  ``fit`` runs full-batch gradient
    descent (or momentum, Nesterov, RMSProp, Adam) on
    ``L = mean((f(x_i) - y_i)**2) / 2`` and records the sharpness (top
    eigenvalue of the loss Hessian), the NTK and the loss.

    Parameters
    ----------
    width : int, default=100
        Number of hidden units ``n``.
    learning_rate : float or callable, default=0.1
        Step size ``eta`` (per-layer learning-rate scales of the
        parameterization are applied on top of it), in the units of
        ``lr_units``; a callable of the step is a schedule (e.g.
        :class:`LinearWarmup`, parameter engine only).
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
        ``(delta_f, ntk)`` pair (single training example, plain GD with a
        constant learning rate; O(1) per step whatever the width);
        ``"parameter"`` runs the training engine on ``U`` and ``v``.
        ``"auto"`` picks ``"function"`` whenever it applies.
    sharpness_tol : float, default=1e-6
        Relative tolerance of the iterative eigensolver used for the sharpness on
        multi-example data (single examples use the closed form).
    %(optimizer)s
    warm_start : bool, default=False
        Continue the previous fit (weights, optimizer state, step count),
        appending to every trace; a run split into two fits is bit-identical
        to one long run.
    blas_threads : int or None, default=1
        BLAS threads during the fit; None leaves them as they are.
    k : int, default=1
        Eigenvalues tracked at the top of the Hessian spectrum: with ``k > 1``
        every record also holds the top ``k`` (``top_eigenvalues_trace_``),
        from :func:`sharpsk.hessian.eigenpairs` warm-started at the previous
        eigenvectors (about ``k`` times the products of one).
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
    preconditioned_sharpness_trace_ : ndarray of shape (n_records,) or None
        ``lambda_max(P^-1 H)`` for the adaptive optimizers, else None.
    stability_threshold_ : float or ndarray of shape (n_records,)
        What the tracked sharpness is compared with (``2 / eta`` for GD; see
        the optimizers page of the user guide); per record when the learning
        rate changes.
    hvp_trace_ : ndarray of shape (n_records,)
        Hessian-vector products spent per record (0 for closed forms).
    n_hvp_ : int
        Total Hessian-vector products of the fit (the sum of ``hvp_trace_``,
        as for :class:`~sharpsk.MLPRegressor`; 0 when every sharpness is the
        closed form).
    sharpness_converged_ : ndarray of shape (n_records,)
        Whether each measurement met ``sharpness_tol``.
    top_eigenvalues_trace_ : ndarray of shape (n_records, k) or None
        The top ``k`` Hessian eigenvalues of each record (None for ``k=1``).
    residual_trace_ : ndarray of shape (n_records,)
        ``f - y`` on a single example; the root mean squared residual otherwise.
    steps_ : ndarray of shape (n_records,)
        Gradient-descent step of each record (0 is the initialization).
    learning_rate_ : float or ndarray of shape (n_records,)
        The step size ``eta`` used (``learning_rate`` converted from
        ``lr_units``); per record for a schedule.
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
        optimizer="gd",
        momentum=0.9,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        warm_start=False,
        blas_threads=1,
        k=1,
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
        self.optimizer = optimizer
        self.momentum = momentum
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.warm_start = warm_start
        self.blas_threads = blas_threads
        self.k = k
        self.random_state = random_state
        self.verbose = verbose

    def _scalings(self, n_features):
        """The parameterization's scalings, ``s`` and the lr scale ``c``."""
        if isinstance(self.width, bool):
            raise ValueError(f"width must be a positive integer, got {self.width!r}.")
        scalings = resolve_parameterization(self.parameterization).get_scalings(
            [n_features, self.width, 1]
        )
        lr_scale = scalings["lr_scale"]
        if not np.isclose(lr_scale[0], lr_scale[1]):
            raise ValueError(
                "parameterization: the UV model needs one learning-rate scale for "
                f"both layers, got {lr_scale.tolist()}."
            )
        return scalings, float(np.prod(scalings["multiplier"])), float(lr_scale[0])

    def _initialize(self, n_features):
        """Raw initial weights, the multiplier ``s`` and the lr scale ``c``."""
        scalings, s, c = self._scalings(n_features)
        check_memory(self.width * (n_features + 1), f"width={self.width}")
        rng = check_random_state(self.random_state)
        std = self.init_scale * scalings["init_std"]
        U = rng.normal(0.0, std[0], size=(self.width, n_features))
        v = rng.normal(0.0, std[1], size=self.width)
        return U, v, s, c

    def function_space_state(self, X, y):
        """Initial ``(delta_f0, ntk0, kappa, y)`` of a single-example problem.

        The state of the exact function-space map from this estimator's
        initialization (``random_state``, ``parameterization``,
        ``init_scale``), in the coordinates of ``learning_rate``.

        Parameters
        ----------
        X : array-like of shape (1, n_features)
            The training example.
        y : array-like of shape (1,)
            Its target.

        Returns
        -------
        state : dict
            ``"delta_f0"``, ``"ntk0"``, ``"kappa"`` and ``"y"`` (floats).
        """
        X = np.asarray(X, dtype=float)
        y = np.asarray(y, dtype=float).ravel()
        U, v, s, c = self._initialize(X.shape[1])
        s_eff = s * c  # GD with lr eta on theta / sqrt(c)
        delta_f, ntk, kappa = uv_function_state(
            U / np.sqrt(c), v / np.sqrt(c), X[0], y[0], s_eff
        )
        return {"delta_f0": delta_f, "ntk0": ntk, "kappa": kappa, "y": y[0]}

    def batched_engine(self, X, y):
        """Scan protocol: this configuration's batched engine, or None.

        A single example trained by plain GD at a constant learning rate is
        the exact function-space map, which :class:`LearningRateScan` iterates
        for all its learning rates at once (bit-identical to one fit per
        rate).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training inputs of the scan.
        y : array-like of shape (n_samples,)
            Targets.

        Returns
        -------
        engine : BatchedEngine or None
            ``kernel`` (a module-level function), ``state`` (this run's
            initial values, one float per keyword of the kernel) and ``key``
            (the kernel's static keyword arguments, as ``(name, value)``
            pairs).
        """
        if self._engine_for(np.shape(X)[0]) != "function" or self.warm_start:
            return None
        return BatchedEngine(
            kernel=uv_batched_runs,
            state=self.function_space_state(X, y),
            key=(
                ("max_iter", int(self.max_iter)),
                ("record_every", int(self.record_every)),
            ),
            max_block=_MAX_BLOCK,
            prefer="threads" if releases_gil() else None,
        )

    def tail_lyapunov_exponent(self, n_records):
        """Scan protocol: the largest Lyapunov exponent of the fitted run's tail.

        Iterates the tangent of the exact function-space map from the record
        ``n_records`` from the end to the last one, discarding the first
        eighth of those steps (single example, function engine; NaN
        otherwise or for a diverged run).

        Parameters
        ----------
        n_records : int
            Length of the tail, in records.

        Returns
        -------
        exponent : float
            The mean log growth per step of the tangent vector (NaN when not
            available).
        """
        check_is_fitted(self)
        if self.engine_ != "function" or self.diverged_:
            return float("nan")
        n = min(int(n_records), self.steps_.size)
        return float(
            tail_lyapunov(
                self.residual_trace_[-n],
                self.ntk_trace_[-n],
                self.learning_rate_,
                self.kappa_,
                self._target,
                self.steps_[-1] - self.steps_[-n],
            )
        )

    def _engine_model(self, X, y):
        root_c = np.sqrt(self._lr_scale)
        model = UVModel(X, y.ravel(), self.width, self.output_scale_ * self._lr_scale)
        return model, np.concatenate([(self.U_ / root_c).ravel(), self.v_ / root_c])

    def _engine_for(self, n_samples):
        """The engine a fit on ``n_samples`` examples runs (or raises)."""
        exact = (
            n_samples == 1
            and self.optimizer == "gd"
            and not callable(self.learning_rate)
            and self.k == 1
        )
        if self.engine == "auto":
            return "function" if exact else "parameter"
        if self.engine == "function" and not exact:
            raise ValueError(
                "engine='function' needs a single training example, "
                "optimizer='gd', a constant learning_rate and k=1; got "
                f"n_samples={n_samples}, optimizer={self.optimizer!r}"
                + (", a schedule" if callable(self.learning_rate) else "")
                + ". Use engine='parameter' or 'auto'."
            )
        return self.engine

    @_fit_context(prefer_skip_nested_validation=True)
    # overflow is a result (a diverged run, one DivergenceWarning), not a warning
    @np.errstate(over="ignore", invalid="ignore", divide="ignore")
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
        warm = self.warm_start and hasattr(self, "_engine_state")
        X, y = validate_data(
            self, X, y, y_numeric=True, dtype=np.float64, reset=not warm
        )
        y = check_numeric_targets(y)
        n_samples = X.shape[0]
        engine = self._engine_for(n_samples)
        if warm and engine != self.engine_:
            raise ValueError(
                f"warm_start: this fit would run the {engine!r} engine, the "
                f"previous one ran {self.engine_!r}."
            )
        if warm:  # continue from the fitted weights: nothing to draw
            (_, s, c), U, v = self._scalings(X.shape[1]), self.U_, self.v_
        else:
            U, v, s, c = self._initialize(X.shape[1])
        s_eff, root_c = s * c, np.sqrt(c)
        U, v = U / root_c, v / root_c
        self._lr_scale = c
        if n_samples == 1:
            kappa = float(s_eff**2 * (X[0] @ X[0]))
            eta_c = float(uv_critical_learning_rate(kappa, y[0]))
        else:
            kappa = eta_c = np.nan
        if self.lr_units == "critical":
            if n_samples != 1:
                raise ValueError(
                    "lr_units='critical' needs a single training example (eta_c "
                    f"is defined for one example); got n_samples={n_samples}."
                )
            learning_rate = _in_critical_units(self.learning_rate, eta_c)
            lr_units = "absolute"
        else:
            learning_rate, lr_units = self.learning_rate, self.lr_units
        state = self._engine_state if warm else None
        fitter = self._fit_function if engine == "function" else self._fit_parameter
        run = fitter(U, v, X, y, s_eff, learning_rate, lr_units, state)
        U, v = run.pop("weights")
        self._engine_state = run.pop("state")
        self.U_, self.v_ = U * root_c, v * root_c
        self.output_scale_ = s
        self.engine_ = engine
        store_traces(self, run.pop("traces"), append=warm, **run)
        self.n_hvp_ = int(self.hvp_trace_.sum())
        self.kappa_, self.critical_learning_rate_ = kappa, eta_c
        self._target = float(y[0]) if n_samples == 1 else np.nan
        if self.diverged_:
            warn_divergence(self, self.n_iter_)
        if self.verbose:
            print(
                f"[UVRegressor] engine={engine} steps={self.n_iter_} "
                f"diverged={self.diverged_} lambda_H0={self.initial_sharpness_:.6g} "
                f"final loss={self.loss_curve_[-1]:.6g}"
            )
        return self

    def _fit_function(self, U, v, X, y, s, learning_rate, lr_units, state):
        """Exact function-space run on one example, weights rebuilt at the end."""
        x, y0 = X[0], y[0]
        if state is None:
            df0, ntk0, kappa = uv_function_state(U, v, x, y0, s)
            lam0 = uv_sharpness(df0, ntk0, kappa, y0)
            t0, bound = 0, None
        else:  # continue the run, with this fit's learning rate
            df0, ntk0, kappa = state["df"], state["ntk"], state["kappa"]
            lam0, t0, bound = state["initial_sharpness"], state["step"], state["bound"]
        eta = resolve_learning_rate(learning_rate, lr_units, initial_sharpness=lam0)
        a0, v0 = U @ x, v
        n_steps = t0 + self.max_iter
        sim = uv_simulate(
            df0,
            ntk0,
            eta,
            kappa,
            y0,
            n_steps,
            record_every=self.record_every,
            output_scale=s,
            start_step=t0,
            bound=bound,
        )
        n_iter = int(sim["n_iter"])
        keep = sim["steps"] <= t0 + n_iter  # the finite prefix
        df, ntk = sim["delta_f"][keep], sim["ntk"][keep]
        steps = sim["steps"][keep]
        if steps[-1] != t0 + n_iter:  # diverged: the last finite state closes them
            last = uv_simulate(
                df0,
                ntk0,
                eta,
                kappa,
                y0,
                t0 + n_iter,
                record_from=t0 + n_iter,
                start_step=t0,
                bound=sim["bound"],
            )
            df, ntk = np.append(df, last["delta_f"]), np.append(ntk, last["ntk"])
            steps = np.append(steps, t0 + n_iter)
        if state is not None:  # the previous fit recorded step t0
            df, ntk, steps = df[1:], ntk[1:], steps[1:]
        # Weights: (Ux, v) evolve by the 2x2 map M; U moves along x only.
        M = sim["transfer"]
        xx = x @ x
        a, v_new = M[0, 0] * a0 + M[0, 1] * v0, M[1, 0] * a0 + M[1, 1] * v0
        U_new = U + np.outer(a - a0, x / xx) if xx > 0 else U
        sharp = uv_sharpness(df, ntk, kappa, y0)
        n = steps.size
        final_df, final_ntk = (df[-1], ntk[-1]) if n else (df0, ntk0)
        if n and steps[-1] == n_steps:
            final_df, final_ntk = sim["final"]
        return {
            "weights": (U_new, v_new),
            "traces": {
                "steps": steps,
                "loss": 0.5 * df * df,
                "sharpness": sharp,
                "n_hvp": np.zeros(n, dtype=np.int64),
                "converged": np.ones(n, dtype=bool),
                "ntk": ntk,
                "residual": df,
                "eta": np.full(n, eta),
                "threshold": np.full(
                    n, make_estimator_optimizer(self).stability_threshold(eta)
                ),
            },
            "n_iter": n_iter,
            "diverged": bool(sim["diverged"]),
            "state": {
                "step": t0 + n_iter,
                "df": float(final_df),
                "ntk": float(final_ntk),
                "kappa": kappa,
                "initial_sharpness": lam0,
                "bound": sim["bound"],
            },
        }

    def _fit_parameter(self, U, v, X, y, s, learning_rate, lr_units, state):
        """The training engine on ``(U, v)`` (any number of examples)."""
        model = UVModel(X, y, U.shape[0], s)
        theta = np.concatenate([U.ravel(), v])
        run = train(
            model,
            theta,
            optimizer=make_estimator_optimizer(self, np.sqrt(self._lr_scale)),
            learning_rate=learning_rate,
            lr_units=lr_units,
            max_iter=self.max_iter,
            record_every=self.record_every,
            sharpness_tol=self.sharpness_tol,
            compute_ntk=True,
            resume=state,
            blas_threads=self.blas_threads,
            k=self.k,
        )
        traces = run["traces"]
        traces["residual"] = run["extras"].get("residual", [])
        return {
            "weights": model.split(run["theta"]),
            "traces": traces,
            "n_iter": run["n_iter"],
            "diverged": run["diverged"],
            "state": run["state"],
        }

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


UVRegressor.__doc__ = UVRegressor.__doc__.replace("%(optimizer)s", OPTIMIZER_DOC)


def _in_critical_units(learning_rate, eta_c):
    """``learning_rate`` (a number or a schedule) in units of ``eta_c``."""

    def resolve(value):
        return resolve_learning_rate(value, "critical", critical_learning_rate=eta_c)

    if callable(learning_rate):
        return lambda t: resolve(learning_rate(t))
    return resolve(learning_rate)
