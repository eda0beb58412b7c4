"""Your own model, as a loss written with ``autograd.numpy``."""

from numbers import Real

import numpy as np
from autograd import value_and_grad
from autograd.differential_operators import make_hvp
from sklearn.base import BaseEstimator, RegressorMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from ._base import (
    GD_PARAMETER_CONSTRAINTS,
    OPTIMIZER_DOC,
    HessianMixin,
    make_estimator_optimizer,
    store_run,
    validate_regression_data,
    warn_divergence,
)
from ._engine import Model, Point, draw_streams, train

__all__ = ["AutogradRegressor"]


class _Structure:
    """How a list or dict of parameter arrays maps to one flat vector."""

    def __init__(self, params):
        if isinstance(params, dict):
            self.keys = sorted(params)
            arrays = [params[k] for k in self.keys]
        elif isinstance(params, (list, tuple)):
            self.keys, arrays = None, list(params)
        else:
            raise TypeError(
                "init must return a list, tuple or dict of arrays, got "
                f"{type(params).__name__}."
            )
        arrays = [np.asarray(a, dtype=np.float64) for a in arrays]
        if not arrays or not all(a.size for a in arrays):
            raise ValueError("init must return at least one non-empty array.")
        self.shapes = [a.shape for a in arrays]
        self.bounds = np.cumsum([0] + [a.size for a in arrays])
        self.theta = np.concatenate([a.ravel() for a in arrays])

    def arrays(self, theta):
        b = self.bounds
        return [theta[b[i] : b[i + 1]].reshape(s) for i, s in enumerate(self.shapes)]

    def pack(self, arrays):
        """The user's structure (list or dict) around ``arrays``."""
        if self.keys is None:
            return list(arrays)
        return dict(zip(self.keys, arrays, strict=True))


class _AutogradPoint(Point):
    def __init__(self, model, theta, X, y):
        self.structure, self.n = model.structure, model.n_params
        self._fun = model.closure(X, y)
        self._arrays = self.structure.arrays(theta)
        value, grad = value_and_grad(self._fun)(self._arrays)
        self.loss = float(value)
        # The root of twice the loss: the RMS residual of a squared error.
        self.residual_max = float(np.sqrt(2.0 * max(self.loss, 0.0)))
        self._grad = np.concatenate([np.ravel(g) for g in grad])
        self._vjp = None

    def gradient(self):
        return self._grad

    def hvp(self, vec):
        if self._vjp is None:  # one more recorded pass, only when measuring
            self._vjp, _ = make_hvp(self._fun)(self._arrays)
        vec = np.asarray(vec, dtype=np.float64)
        out = self._vjp(self.structure.arrays(vec))
        return np.concatenate([np.ravel(o) for o in out])


class AutogradModel(Model):
    """An engine model from ``loss(params, X, y)`` written with autograd."""

    def __init__(self, loss, structure, X, y):
        self.loss, self.structure, self.X, self.y = loss, structure, X, y
        self.n_params = int(structure.bounds[-1])
        self.target_max = float(np.max(np.abs(y))) if np.size(y) else 0.0

    def closure(self, X, y):
        loss, pack = self.loss, self.structure.pack
        return lambda arrays: loss(pack(arrays), X, y)

    def point(self, theta, rows=None):
        X, y = (self.X, self.y) if rows is None else (self.X[rows], self.y[rows])
        return _AutogradPoint(self, theta, X, y)


class AutogradRegressor(HessianMixin, RegressorMixin, BaseEstimator):
    """Your own model, given as a loss written with ``autograd.numpy``.

    ``fit`` trains ``params = init(n_features, n_outputs, random_state)`` on
    ``loss(params, X, y)`` with the training engine of every sharpsk
    estimator: the same traces (``sharpness_trace_``, ``loss_curve_``,
    ``stability_threshold_``, ...), optimizers, schedules, warm starts,
    Lyapunov exponents, scans and ``hessian_operator``.  Gradients come from
    autograd and Hessian-vector products from its forward-over-reverse
    ``make_hvp`` (one recorded pass per measured step).

    Parameters
    ----------
    loss : callable
        ``loss(params, X, y) -> float``, written with ``autograd.numpy``
        (``import autograd.numpy as anp``; no in-place operations), the mean
        training loss; ``params`` as ``init`` returns them.
    init : callable
        ``init(n_features, n_outputs, random_state) -> params``: a list,
        tuple or dict of arrays; ``random_state`` is a
        :class:`numpy.random.RandomState` seeded from ``random_state``.
    forward : callable, default=None
        ``forward(params, X) -> predictions``, used by ``predict`` (and
        ``score``); without it ``predict`` raises.
    learning_rate : float or callable, default=0.01
        Step size ``eta`` (in ``lr_units``), or a schedule of the step.
    lr_units : {"absolute", "initial_sharpness"}, default="absolute"
        ``"initial_sharpness"``: ``learning_rate`` is ``c = eta lambda_H0``.
    max_iter : int, default=200
        Number of steps (0 records the initialization only).
    record_every : int, default=1
        Record every ``record_every`` steps (the first and last always).
    sharpness_tol : float, default=1e-6
        Relative tolerance of the tracked top eigenvalue.
    compute_lyapunov : bool, default=False
        Also estimate the largest Lyapunov exponent (one more product per
        step), as :class:`MLPRegressor` does.
    %(optimizer)s
    warm_start : bool, default=False
        Continue the previous fit, appending to every trace.
    blas_threads : int or None, default=1
        BLAS threads during the fit; None leaves them as they are.
    k : int, default=1
        Eigenvalues tracked at the top of the Hessian spectrum: with ``k > 1``
        every record also holds the top ``k`` (``top_eigenvalues_trace_``),
        from :func:`sharpsk.hessian.eigenpairs` warm-started at the previous
        eigenvectors (about ``k`` times the products of one).
    random_state : int, RandomState instance or None, default=None
        Seeds ``init`` and the Lyapunov tangent.
    verbose : int, default=0
        Print a one-line summary of each fit when positive.

    Attributes
    ----------
    params_ : list or dict of ndarray
        The trained parameters, structured like ``init``'s.
    sharpness_trace_, loss_curve_, steps_ : ndarray of shape (n_records,)
        Top Hessian eigenvalue, loss and step of each record.
    preconditioned_sharpness_trace_ : ndarray of shape (n_records,) or None
        For the adaptive optimizers.
    hvp_trace_ : ndarray of shape (n_records,)
        Hessian-vector products per record.
    sharpness_converged_ : ndarray of shape (n_records,)
        Whether each measurement met ``sharpness_tol``.
    top_eigenvalues_trace_ : ndarray of shape (n_records, k) or None
        The top ``k`` Hessian eigenvalues of each record (None for ``k=1``).
    ntk_trace_ : None
        Not measured (the loss hides the outputs).
    stability_threshold_ : float or ndarray of shape (n_records,)
        What the tracked sharpness is compared with (``2 / eta`` for GD).
    learning_rate_ : float or ndarray of shape (n_records,)
        The step size used.
    initial_sharpness_ : float
        ``lambda_H`` at initialization.
    n_iter_ : int
        Steps completed.
    diverged_ : bool
        Whether the run blew up (its loss not finite, or its root of twice
        the loss past ``1e6`` times the initial one or the targets' scale).
    n_hvp_ : int
        Hessian-vector products of the fit.
    lyapunov_exponent_ : float or None
        With ``compute_lyapunov``.
    tangent_log_growth_ : ndarray of shape (n_iter_,) or None
        With ``compute_lyapunov``.
    n_features_in_ : int
        Number of features seen during fit.

    See Also
    --------
    MLPRegressor : The fully connected network with analytic HVPs (faster).

    Notes
    -----
    The parameters are trained as they are (no parameterization scalings:
    put multipliers into ``loss`` and ``init``).  Clones, pickles and scans
    with process-based joblib backends need ``loss``, ``init`` and
    ``forward`` picklable: define them at the top level of a module; for
    functions defined in a notebook use the default ``loky`` backend (it
    pickles them by value with cloudpickle) or ``n_jobs=1``.

    Examples
    --------
    >>> import numpy as np
    >>> import autograd.numpy as anp
    >>> from sharpsk import AutogradRegressor
    >>> def loss(params, X, y):
    ...     w, b = params["w"], params["b"]
    ...     return 0.5 * anp.mean((anp.tanh(X @ w) @ b - y) ** 2)
    >>> def init(n_features, n_outputs, rng):
    ...     return {"w": rng.normal(size=(n_features, 8)) / np.sqrt(n_features),
    ...             "b": rng.normal(size=8) / np.sqrt(8)}
    >>> X = np.random.default_rng(0).normal(size=(50, 3))
    >>> y = np.sin(X[:, 0])
    >>> est = AutogradRegressor(loss, init, learning_rate=1.0,
    ...                         lr_units="initial_sharpness", max_iter=40,
    ...                         record_every=10, random_state=0).fit(X, y)
    >>> est.steps_
    array([ 0, 10, 20, 30, 40])
    >>> bool(est.loss_curve_[-1] < est.loss_curve_[0])
    True
    """

    _parameter_constraints: dict = {
        "loss": [callable],
        "init": [callable],
        "forward": [callable, None],
        **{
            name: constraint
            for name, constraint in GD_PARAMETER_CONSTRAINTS.items()
            if name not in ("parameterization", "init_scale")  # the user's model
        },
        "lr_units": [StrOptions({"absolute", "initial_sharpness"})],
        "sharpness_tol": [Interval(Real, 0, 1, closed="neither")],
        "compute_lyapunov": ["boolean"],
    }

    def __init__(
        self,
        loss,
        init,
        *,
        forward=None,
        learning_rate=0.01,
        lr_units="absolute",
        max_iter=200,
        record_every=1,
        sharpness_tol=1e-6,
        compute_lyapunov=False,
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
        self.loss = loss
        self.init = init
        self.forward = forward
        self.learning_rate = learning_rate
        self.lr_units = lr_units
        self.max_iter = max_iter
        self.record_every = record_every
        self.sharpness_tol = sharpness_tol
        self.compute_lyapunov = compute_lyapunov
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

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Train ``loss`` from ``init`` and record the traces.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training inputs.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Targets, passed to ``loss`` with this shape.

        Returns
        -------
        self : AutogradRegressor
            The fitted estimator.
        """
        warm = self.warm_start and hasattr(self, "_engine_state")
        X, y = validate_regression_data(self, X, y, reset=not warm)
        rng = check_random_state(self.random_state)
        if warm:
            structure, rng_tangent = self._structure, self._engine_state["tangent"]
        else:
            n_outputs = 1 if y.ndim == 1 else y.shape[1]
            structure = _Structure(self.init(X.shape[1], n_outputs, rng))
            rng_tangent = draw_streams(rng)[1]
        model = AutogradModel(self.loss, structure, X, y)
        run = train(
            model,
            structure.theta,
            optimizer=make_estimator_optimizer(self),
            learning_rate=self.learning_rate,
            lr_units=self.lr_units,
            max_iter=self.max_iter,
            record_every=self.record_every,
            sharpness_tol=self.sharpness_tol,
            compute_lyapunov=self.compute_lyapunov,
            rng_tangent=rng_tangent,
            resume=self._engine_state["run"] if warm else None,
            blas_threads=self.blas_threads,
            k=self.k,
        )
        self._structure = structure
        self._engine_state = {"run": run["state"], "tangent": rng_tangent}
        store_run(self, run, warm=warm, compute_lyapunov=self.compute_lyapunov)
        self.params_ = structure.pack(
            [a.copy() for a in structure.arrays(run["theta"])]
        )
        if self.diverged_:
            warn_divergence(self, self.n_iter_)
        if self.verbose:
            print(
                f"[AutogradRegressor] steps={self.n_iter_} diverged={self.diverged_} "
                f"lambda_H0={self.initial_sharpness_:.6g} "
                f"final loss={self.loss_curve_[-1]:.6g} HVPs={self.n_hvp_}"
            )
        return self

    def _engine_model(self, X, y):
        model = AutogradModel(self.loss, self._structure, X, y)
        return model, self._engine_state["run"]["theta"]

    def predict(self, X):
        """``forward(params_, X)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Inputs.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            Predictions.
        """
        check_is_fitted(self)
        if self.forward is None:
            raise AttributeError(
                "AutogradRegressor.predict needs forward=: a function "
                "forward(params, X) -> predictions."
            )
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return np.asarray(self.forward(self.params_, X), dtype=np.float64)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


AutogradRegressor.__doc__ = AutogradRegressor.__doc__.replace(
    "%(optimizer)s", OPTIMIZER_DOC
)
