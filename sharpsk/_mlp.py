"""Fully connected networks trained by gradient descent, with sharpness tracking.

The estimators :class:`MLPRegressor` and :class:`MLPClassifier`: thin
scikit-learn wrappers over the pure kernels and the engine model of
:mod:`sharpsk._mlp_kernels` (forward pass, backpropagation, Hessian-vector
products), trained by :func:`sharpsk._engine.train` one run at a time, or by
the batched scan engine of :mod:`sharpsk._mlp_batched`.
"""

import warnings
from numbers import Integral, Real

import numpy as np
from scipy.special import expit, log_expit, log_softmax, softmax
from sklearn.base import (
    BaseEstimator,
    ClassifierMixin,
    RegressorMixin,
    _fit_context,
    clone,
)
from sklearn.utils import check_random_state
from sklearn.utils._available_if import available_if
from sklearn.utils._param_validation import Hidden, Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from ._base import (
    GD_PARAMETER_CONSTRAINTS,
    OPTIMIZER_DOC,
    HessianMixin,
    check_memory,
    check_numeric_targets,
    make_estimator_optimizer,
    store_run,
    warn_divergence,
)
from ._engine import BatchedEngine, draw_streams, train
from ._losses import get_loss
from ._mlp_batched import FrozenArray, batched_pays, mlp_batched_runs
from ._mlp_kernels import ACTIVATIONS, MLPModel, _layers, mlp_predict
from ._parameterization import resolve_parameterization

__all__ = ["MLPClassifier", "MLPRegressor"]

# Parameters the batched engine of a scan accounts for (``batched_engine``):
# an estimator with any other returns None, so that a new option of the
# per-run engine is never silently ignored by the batched one.
_BATCHED_PARAMETERS = frozenset(
    {
        "hidden_layer_sizes",
        "loss",
        "activation",
        "fit_intercept",
        "learning_rate",
        "lr_units",
        "max_iter",
        "batch_size",
        "parameterization",
        "init_scale",
        "record_every",
        "sharpness_tol",
        "sharpness_batch_size",
        "compute_ntk",
        "compute_lyapunov",
        "optimizer",
        "momentum",
        "beta_1",
        "beta_2",
        "epsilon",
        "warm_start",
        "blas_threads",
        "k",
        "random_state",
        "verbose",
        "sharpness_every",
    }
)
# Runs per batched kernel call of a scan (its unit of caching and progress).
_BATCHED_MAX_BLOCK = 64


def _bias_lr_scale(lr_scale):
    """Learning-rate scale of each layer's bias: the layer's, but 1 at the output.

    The output bias connects a constant to the finitely many outputs, so its
    step must not grow with width: with the output layer's muP scale (the
    width) its contribution to the sharpness, and the output change of one
    step, would grow linearly with width.
    """
    scale = np.array(lr_scale, dtype=float)
    scale[-1] = 1.0
    return scale


def _as_2d(y):
    return y.reshape(-1, 1) if y.ndim == 1 else y


# Docstring entries every MLP estimator shares (filled in by _fill_doc).
_PARAMETERS_DOC = """fit_intercept : bool, default=True
        Whether every layer has a bias.  Biases start at 0 and have multiplier
        1; hidden-layer biases have the learning-rate scale of their layer, the
        output bias the scale 1 (see Notes).
    learning_rate : float or callable, default=0.01
        Step size ``eta``, or ``c = eta * lambda_H0`` when
        ``lr_units="initial_sharpness"``.  Per-layer learning-rate scales of
        the parameterization are applied on top of it.  A callable of the
        step ``t`` (0, 1, ...) is a schedule, e.g. :class:`LinearWarmup`.
        (sklearn's ``learning_rate`` is a schedule name.)
    lr_units : {"absolute", "initial_sharpness"}, default="absolute"
        ``"absolute"``: the step size is ``learning_rate``.
        ``"initial_sharpness"``: the step size is ``learning_rate /
        initial_sharpness_``, so ``learning_rate`` is ``c = eta lambda_H0``
        (below 2 the initialization is linearly stable).  The step used is
        ``learning_rate_``.
    max_iter : int, default=200
        Number of gradient-descent steps (parameter updates; sklearn counts
        epochs).  0 records the initialization only.
    batch_size : int or None, default=None
        None: full-batch gradient descent.  An int: minibatch SGD on batches
        of ``min(batch_size, n_samples)`` samples, reshuffled every epoch with
        ``random_state`` (the last batch of an epoch may be smaller).
    parameterization : {"sp", "ntk", "mup"} or ParameterizationTransformer, \
            default="sp"
        Per-layer multiplier, initialization and learning-rate scale as
        functions of width; see :class:`ParameterizationTransformer`.
    init_scale : float, default=1.0
        Multiplies the initialization standard deviation of every layer.
    record_every : int, default=1
        Record the loss and measure the sharpness every ``record_every``
        steps (the first and the last step are always recorded).
    sharpness_tol : float, default=1e-6
        Relative tolerance of the Lanczos eigensolver.  From ``1e-5`` up, the
        Hessian-vector products of the sharpness (and preconditioned
        sharpness) measurements are computed in float32, the Rayleigh-Ritz
        step staying in float64: about 2.5 times faster per product, the
        eigenvalue moved by about ``1e-8`` (relative), which a float64
        product checks every 100 measurements (see
        :meth:`~sharpsk._sharpness.TopEigenTracker.update`).  Below ``1e-5``,
        and for the NTK and Lyapunov products, float64.
    sharpness_batch_size : int or None, default=None
        None: the sharpness is that of the full training loss.  An int: that
        of the loss on a fixed measurement batch, the first
        ``sharpness_batch_size`` samples of one permutation drawn from
        ``random_state`` (cheaper on large data, and the usual choice with
        SGD).
    compute_ntk : bool, default=False
        Also record the top eigenvalue of the Gauss-Newton matrix, for the
        squared error that of the NTK Gram matrix divided by the number of
        samples (same measurement batch and steps; one more warm-started
        Lanczos on Gauss-Newton products).
    compute_lyapunov : bool, default=False
        Also estimate the largest Lyapunov exponent of the gradient-descent
        map: one tangent vector of the parameters and the optimizer state
        (``(I - eta H_t)`` for plain GD) is pushed through every step (one
        Hessian-vector product per step) and renormalized.
    %(optimizer)s
    warm_start : bool, default=False
        Continue the previous fit: from its weights, optimizer state,
        step count and eigenvector warm starts, appending to every trace
        (a run split into two fits is bit-identical to one long run).
    blas_threads : int or None, default=1
        BLAS threads during the fit; None leaves them as they are.  Small
        matrices are faster on one thread (see the benchmarks).
    k : int, default=1
        Eigenvalues tracked at the top of the Hessian spectrum: with ``k > 1``
        every record also holds the top ``k`` (``top_eigenvalues_trace_``),
        from :func:`sharpsk.hessian.eigenpairs` warm-started at the previous
        eigenvectors (about ``k`` times the products of one)."""

_ATTRIBUTES_DOC = """coefs_ : list of ndarray of shape (fan_in, fan_out)
        The weight matrices the network applies: ``multiplier_l * theta_l``
        with ``theta_l`` the raw trained weights.
    intercepts_ : list of ndarray of shape (fan_out,)
        The biases the network applies (zeros when ``fit_intercept=False``).
    scalings_ : dict
        ``{"multiplier", "init_std", "lr_scale"}``: per-layer arrays of the
        parameterization (``init_scale`` not applied), so ``theta_l =
        coefs_[l] / scalings_["multiplier"][l]``.
    learning_rate_ : float
        The step size ``eta`` used.
    sharpness_trace_ : ndarray of shape (n_records,)
        Sharpness ``lambda_H`` at the steps ``steps_``.
    steps_ : ndarray of shape (n_records,)
        Gradient-descent step of each measurement (0 is the initialization).
    hvp_trace_ : ndarray of shape (n_records,)
        Hessian-vector products spent by each sharpness measurement.
    sharpness_converged_ : ndarray of shape (n_records,)
        Whether each measurement met ``sharpness_tol``.
    top_eigenvalues_trace_ : ndarray of shape (n_records, k) or None
        The top ``k`` Hessian eigenvalues of each record (None for ``k=1``).
    ntk_trace_ : ndarray of shape (n_records,) or None
        Top NTK eigenvalue at ``steps_`` (None unless ``compute_ntk``).
    loss_curve_ : ndarray of shape (n_records,)
        Training loss at ``steps_``.  (sklearn records one value per epoch.)
    preconditioned_sharpness_trace_ : ndarray of shape (n_records,) or None
        ``lambda_max(P^-1 H)`` at ``steps_`` for the adaptive optimizers
        (``P`` the preconditioner of the step from there); None otherwise.
    stability_threshold_ : float or ndarray of shape (n_records,)
        The value the tracked sharpness (the preconditioned one for adaptive
        optimizers) is compared with, e.g. ``2 / eta`` for GD; per record when
        the learning rate changes during the run.
    n_iter_ : int
        Steps completed (fewer than ``max_iter`` only when diverged).
    diverged_ : bool
        Whether the run blew up; the traces then hold its finite prefix.
    initial_sharpness_ : float
        ``lambda_H`` at initialization.
    n_hvp_ : int
        Total Hessian-vector products of the fit (sharpness measurements plus
        one per step for ``compute_lyapunov``; the Gauss-Newton products of
        ``compute_ntk`` are not counted).
    lyapunov_exponent_ : float or None
        Mean of ``tangent_log_growth_`` over the second half of the run (the
        first half is a transient in which the tangent vector aligns with the
        dominant direction); NaN if no step was taken, None unless
        ``compute_lyapunov``.
    tangent_log_growth_ : ndarray of shape (n_iter_,) or None
        Log growth of the tangent vector at each step, to average over another
        window (None unless ``compute_lyapunov``).
    n_layers_ : int
        Number of layers including input and output (sklearn's convention).
    n_outputs_ : int
        Number of outputs.
    out_activation_ : {"identity", "softmax", "logistic"}
        Output activation of the loss (sklearn's name): ``"identity"``
        for the squared error.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during fit, when ``X`` has string column names."""


def _fill_doc(cls):
    cls.__doc__ = (
        cls.__doc__.replace("%(parameters)s", _PARAMETERS_DOC)
        .replace("%(attributes)s", _ATTRIBUTES_DOC)
        .replace("%(optimizer)s", OPTIMIZER_DOC)
    )
    return cls


class _BaseMLP(HessianMixin, BaseEstimator):
    """What :class:`MLPRegressor` and :class:`MLPClassifier` share.

    Parameters, the fit (validation hook, initialization, one call into the
    engine, fitted attributes), the forward pass and the engine model of
    ``hessian_operator``.  A subclass provides ``_validate_input(X, y,
    reset) -> (X, Y, loss)``: validated inputs, 2-D float targets and the
    name of the loss in :data:`~sharpsk._losses.LOSS_FUNCTIONS`.
    """

    _parameter_constraints: dict = {
        "hidden_layer_sizes": [
            "array-like",
            Interval(Integral, 1, None, closed="left"),
        ],
        "activation": [StrOptions(set(ACTIVATIONS))],
        "fit_intercept": ["boolean"],
        **GD_PARAMETER_CONSTRAINTS,
        "lr_units": [StrOptions({"absolute", "initial_sharpness"})],
        "batch_size": [Interval(Integral, 1, None, closed="left"), None],
        "sharpness_tol": [Interval(Real, 0, 1, closed="neither")],
        "sharpness_batch_size": [Interval(Integral, 1, None, closed="left"), None],
        "compute_ntk": ["boolean"],
        "compute_lyapunov": ["boolean"],
    }

    def _hidden_sizes(self):
        sizes = self.hidden_layer_sizes
        sizes = [sizes] if isinstance(sizes, Integral) else list(sizes)
        for size in sizes:
            if isinstance(size, bool) or not isinstance(size, Integral) or size < 1:
                raise ValueError(
                    "hidden_layer_sizes must contain positive integers, got "
                    f"{self.hidden_layer_sizes!r}."
                )
        return [int(s) for s in sizes]

    def _initialize(self, n_features, n_outputs, rng):
        """Trained variables ``phi`` and their multipliers; see Notes."""
        sizes = [n_features, *self._hidden_sizes(), n_outputs]
        check_memory(
            sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:], strict=True)),
            f"hidden_layer_sizes={self.hidden_layer_sizes!r}",
        )
        scalings = resolve_parameterization(self.parameterization).get_scalings(sizes)
        std = self.init_scale * scalings["init_std"]
        root_c = np.sqrt(scalings["lr_scale"])
        root_cb = np.sqrt(_bias_lr_scale(scalings["lr_scale"]))
        params, multipliers = [], []
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            theta = rng.normal(0.0, std[i], size=(fan_out, fan_in)).T
            params.append(np.ascontiguousarray(theta) / root_c[i])
            multipliers.append(float(scalings["multiplier"][i] * root_c[i]))
            if self.fit_intercept:
                params.append(np.zeros(fan_out))
                multipliers.append(float(root_cb[i]))
        return params, multipliers, scalings

    def _fit(self, X, y, record_every):
        """The body of ``fit`` shared by the estimators: validate, run, store."""
        warm = self.warm_start and hasattr(self, "_engine_state")
        X, Y, loss = self._validate_input(X, y, reset=not warm)
        name = type(self).__name__
        if warm:
            if Y.shape[1] != self.n_outputs_:
                raise ValueError(
                    f"warm_start: y has {Y.shape[1]} outputs, the previous fit "
                    f"had {self.n_outputs_}."
                )
            state = self._engine_state
            mults, scalings, streams = (
                state["multipliers"],
                self.scalings_,
                state["streams"],
            )
            theta = None
        else:
            rng = check_random_state(self.random_state)
            params, mults, scalings = self._initialize(X.shape[1], Y.shape[1], rng)
            theta = np.concatenate([p.ravel() for p in params])
            rng_measure, rng_tangent, rng_shuffle = draw_streams(rng)
            streams = {"measure": rng_measure, "tangent": rng_tangent, "batches": None}
            n_samples = X.shape[0]
            if self.batch_size is not None and self.batch_size < n_samples:
                streams["batches"] = _Minibatches(
                    n_samples, self.batch_size, rng_shuffle
                )
            streams["rows"] = None
            size = self.sharpness_batch_size
            if size is not None and size < n_samples:
                streams["rows"] = np.sort(rng_measure.permutation(n_samples)[:size])
            state = {"multipliers": mults, "streams": streams, "run": None}
            params = None
        state["loss"] = loss
        shapes = [tuple(sh) for sh in self._shapes(X.shape[1], Y.shape[1])]
        model = MLPModel(X, Y, shapes, mults, self.activation, loss)
        scale = self._coordinate_scale(shapes, scalings)
        optimizer = make_estimator_optimizer(self, scale)
        report = None
        report_every = max(1, self.max_iter // 10) if self.verbose >= 2 else 0
        if report_every:

            def report(t, loss, eta_sharpness):
                print(
                    f"[{name}] step {t}/{self.max_iter}: loss={loss:.6g}, "
                    f"eta*lambda_H={eta_sharpness:.4g}",
                    flush=True,
                )

        run = train(
            model,
            theta,
            optimizer=optimizer,
            learning_rate=self.learning_rate,
            lr_units=self.lr_units,
            max_iter=self.max_iter,
            record_every=record_every,
            sharpness_tol=self.sharpness_tol,
            measure_rows=streams["rows"],
            batches=streams["batches"],
            compute_ntk=self.compute_ntk,
            compute_lyapunov=self.compute_lyapunov,
            rng_tangent=streams["tangent"],
            resume=state["run"] if warm else None,
            report=report,
            report_every=report_every,
            blas_threads=self.blas_threads,
            k=self.k,
        )
        state["run"] = run["state"]
        self._engine_state = state
        store_run(self, run, warm=warm, compute_lyapunov=self.compute_lyapunov)
        self._set_weights(model.unflatten(run["theta"]), mults, scalings)
        self.n_layers_ = len(self.coefs_) + 1
        self.n_outputs_ = Y.shape[1]
        self.out_activation_ = get_loss(loss).out_activation
        if self.diverged_:
            warn_divergence(self, self.n_iter_)
        if self.verbose:
            print(
                f"[{name}] steps={self.n_iter_} diverged={self.diverged_} "
                f"lambda_H0={self.initial_sharpness_:.6g} "
                f"final loss={self.loss_curve_[-1]:.6g} HVPs={self.n_hvp_}"
            )
        return self

    def _engine_model(self, X, Y):
        Y = _as_2d(Y)
        if Y.shape[1] != self.n_outputs_:
            raise ValueError(
                f"y has {Y.shape[1]} outputs, the fitted network {self.n_outputs_}."
            )
        shapes = [tuple(sh) for sh in self._shapes(X.shape[1], Y.shape[1])]
        state = self._engine_state
        model = MLPModel(
            X, Y, shapes, state["multipliers"], self.activation, state["loss"]
        )
        return model, state["run"]["theta"]

    def batched_engine(self, X, y):
        """Scan protocol: this configuration's batched engine, or None.

        Full-batch training by ``"gd"``, ``"momentum"`` or ``"nesterov"``
        tracking one eigenvalue (``k=1``), without Lyapunov tangent, from a
        fresh initialization: :class:`LearningRateScan` then trains all its
        runs of one architecture at once, with the numbers of one fit per
        run (:func:`sharpsk._mlp_batched.mlp_batched_runs`).  The step size
        is the scan's (the kernel's ``eta``), so ``learning_rate`` and
        ``lr_units`` play no part; ``compute_ntk`` neither (the scan does not
        read the NTK, so it is not measured).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training inputs of the scan.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Targets.

        Returns
        -------
        engine : BatchedEngine or None
            ``kernel`` (a module-level function); ``state``: ``theta0``, this
            run's initial parameters (the seed's, ``init_scale``'s), and
            ``measure_rows``, its measurement batch, with
            ``sharpness_batch_size``; ``key``: the static arguments (data,
            architecture, multipliers, loss, schedule, tolerance) as ``(name,
            value)`` pairs; ``auto`` is True only for small networks with
            ``record_every >= 10``, where it was measured to be faster (see
            the user guide's scan protocol page).
        """
        # (imported here: the kernel module builds on this one)
        params = self.get_params()
        if (
            not set(params) <= _BATCHED_PARAMETERS
            or self.optimizer not in ("gd", "momentum", "nesterov")
            or self.compute_lyapunov
            or self.k != 1
            or self.verbose
            or params.get("sharpness_every", "deprecated") != "deprecated"
            or (self.warm_start and hasattr(self, "_engine_state"))
        ):
            return None
        probe = clone(self)  # validation sets attributes: not on self
        probe._validate_params()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            X, Y, loss = probe._validate_input(X, y, reset=True)
        n_samples = X.shape[0]
        if self.batch_size is not None and self.batch_size < n_samples:
            return None
        rng = check_random_state(self.random_state)
        weights, mults, _ = probe._initialize(X.shape[1], Y.shape[1], rng)
        state = {"theta0": np.concatenate([w.ravel() for w in weights])}
        size = self.sharpness_batch_size
        if size is not None and size < n_samples:  # as in _fit
            rng_measure = draw_streams(rng)[0]
            state["measure_rows"] = np.sort(rng_measure.permutation(n_samples)[:size])
        else:
            size = None
        shapes = tuple(tuple(w.shape) for w in weights)
        key = (
            ("X", FrozenArray(X)),
            ("Y", FrozenArray(Y)),
            ("shapes", shapes),
            ("multipliers", tuple(mults)),
            ("activation", self.activation),
            ("loss", loss),
            ("optimizer", self.optimizer),
            ("momentum", float(self.momentum)),
            ("max_iter", int(self.max_iter)),
            ("record_every", int(self.record_every)),
            ("sharpness_tol", float(self.sharpness_tol)),
            ("sharpness_batch_size", size),
            ("blas_threads", self.blas_threads),
            ("n_input_warnings", len(caught)),
        )
        return BatchedEngine(
            kernel=mlp_batched_runs,
            state=state,
            key=key,
            max_block=_BATCHED_MAX_BLOCK,
            auto=batched_pays(n_samples, [sh[-1] for sh in shapes], self.record_every),
        )

    def _coordinate_scale(self, shapes, scalings):
        """``sqrt(lr_scale)`` of every trained coordinate (see Notes)."""
        roots = (
            np.sqrt(scalings["lr_scale"]),
            np.sqrt(_bias_lr_scale(scalings["lr_scale"])),
        )
        parts, layer = [], -1
        for shape in shapes:
            bias = len(shape) == 1
            layer += not bias
            parts.append(np.full(int(np.prod(shape)), roots[bias][layer]))
        return np.concatenate(parts)

    def _shapes(self, n_features, n_outputs):
        sizes = [n_features, *self._hidden_sizes(), n_outputs]
        shapes = []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
            shapes.append((fan_in, fan_out))
            if self.fit_intercept:
                shapes.append((fan_out,))
        return shapes

    def _set_weights(self, params, mults, scalings):
        """Store the matrices the network applies (see Notes)."""
        root_c = np.sqrt(_bias_lr_scale(scalings["lr_scale"]))
        layers = _layers(params, mults)
        self.coefs_ = [m_w * W for W, m_w, _, _ in layers]
        self.intercepts_ = [
            np.zeros(W.shape[1]) if b is None else root_c[i] * b
            for i, (W, _, b, _) in enumerate(layers)
        ]
        self.scalings_ = scalings

    def _forward(self, X):
        """The network's outputs on validated ``X`` (logits for the log losses)."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            return mlp_predict(self.coefs_, self.intercepts_, X, self.activation)[-1]


@_fill_doc
class MLPRegressor(RegressorMixin, _BaseMLP):
    """Fully connected network trained by gradient descent, tracking sharpness.

    ``fit`` runs gradient descent (full batch by default; or momentum,
    Nesterov, RMSProp, Adam) on
    ``L = sum_i |f(x_i) - y_i|**2 / (2 n_samples)`` and records the loss and
    the sharpness ``lambda_H`` (top eigenvalue of the loss Hessian) every
    ``record_every`` steps, from a Lanczos eigensolver on
    exact Hessian-vector products, warm-started from the previous
    eigenvector.  This is the protocol of Cohen et al. (2021) in which
    progressive sharpening and the edge of stability (``learning_rate *
    lambda_H`` hovering around 2) appear on real data.

    Parameters
    ----------
    hidden_layer_sizes : array-like of shape (n_hidden_layers,), default=(100,)
        Width of each hidden layer; ``()`` gives a linear model.
    activation : {"identity", "logistic", "tanh", "relu"}, default="tanh"
        Hidden-layer activation; the output layer is linear.  (sklearn's
        :class:`~sklearn.neural_network.MLPRegressor` defaults to ``"relu"``;
        ``"tanh"`` is the smooth choice of edge-of-stability studies.)
    %(parameters)s
    random_state : int, RandomState instance or None, default=None
        Seeds the initialization, the measurement batch, the tangent vector and
        the SGD shuffles.
    verbose : int, default=0
        Print a one-line summary of each fit when positive, and from 2 on also
        a progress line (step, loss, ``learning_rate_ * lambda_H``) every tenth
        of the run.
    sharpness_every : int, default="deprecated"
        Deprecated alias of ``record_every`` (removed in 0.3).

    Attributes
    ----------
    %(attributes)s

    See Also
    --------
    UVRegressor : The two-layer linear model with exact function-space maps.
    sklearn.neural_network.MLPRegressor : The same network trained by Adam or
        SGD with momentum, without sharpness tracking.

    Notes
    -----
    Layer ``l`` has raw weights ``theta_l ~ N(0, (init_scale *
    init_std_l)**2)`` (drawn, layer by layer, as a ``(fan_out, fan_in)``
    array as :class:`UVRegressor` does, then transposed) and a bias
    initialized at 0.  The forward pass uses ``multiplier_l * theta_l`` and
    the bias (multiplier 1), and gradient descent steps ``theta_l`` with
    ``learning_rate * lr_scale_l``, the biases of hidden layers likewise and
    the output bias with ``learning_rate``: under muP (``lr_scale`` = width)
    an output bias stepped like the output weights would move the outputs by
    an amount growing with width and make ``lambda_H`` grow linearly with
    width (as in microsoft/mup, where only tensors with a width dimension get
    width-scaled steps).  For SP and NTK every scale is 1.  Internally the
    trained variables are each parameter divided by the square root of its
    learning-rate scale, updated with the plain step ``eta``: the same
    gradient-descent trajectory.  Sharpness, NTK and
    Lyapunov exponent are measured in these coordinates, so linear stability
    is always ``learning_rate_ * lambda_H < 2``; for SP and NTK they are the
    raw weights, for muP the reported values are those of the raw weights
    times the learning-rate scale.  An MLP with one hidden layer, identity
    activation and no biases is the UV model: with the same
    ``random_state`` and parameterization it reproduces
    :class:`UVRegressor`'s run.

    The loss sums over outputs and averages over samples (sklearn averages
    over both).  A run *diverges* at the first step whose residuals are not
    finite or exceed ``1e6`` times the largest initial residual or target.
    Memory grows with the number of steps through scalar traces only.

    Hessian-vector products are analytic (Pearlmutter's R-operator) and reuse
    the forward and backward pass of the gradient step: one product costs
    about 1.2-1.4 gradients (forward pass included).  Measurements are
    tracked by :class:`~sharpsk._sharpness.TopEigenTracker`: the first one
    starts from a random vector and spends 30 products (fewer would sometimes
    return the second eigenvalue); later ones warm-start from the previous
    top and second Ritz vectors.  On 200 digits with a (32,) tanh network
    (``learning_rate=0.5``, ``init_scale=0.25``) a measurement every step
    takes on average 6.4 products before the edge of stability and 10.6 at
    it with the default ``sharpness_tol=1e-6``, and 3.9 and 5.7 at 1e-4: at
    the edge several eigenvalues near ``2 / eta`` swap order from step to
    step.  From ``sharpness_tol=1e-5`` up the products are float32 (see
    ``sharpness_tol``): on 1000 digits with a (256, 256) network,
    ``learning_rate=4`` in units of the initial sharpness and
    ``sharpness_tol=1e-4``, a 220-step fit measuring the sharpness every step
    took 4.4 times a plain one (4.5 products per measurement), against 6.6
    times with float64 products.

    References
    ----------
    D. S. Kalra, T. He and M. Barkeshli, "Universal Sharpness Dynamics in
    Neural Network Training: Fixed Point Analysis, Edge of Stability, and Route
    to Chaos", ICLR 2025, arXiv:2311.02076.

    J. M. Cohen, S. Kaur, Y. Li, J. Z. Kolter and A. Talwalkar, "Gradient
    Descent on Neural Networks Typically Occurs at the Edge of Stability",
    ICLR 2021.

    Examples
    --------
    >>> from sharpsk import MLPRegressor
    >>> from sharpsk.datasets import load_digits_onehot
    >>> X, Y = load_digits_onehot(n_samples=200, random_state=0)
    >>> mlp = MLPRegressor((32,), learning_rate=1.0, lr_units="initial_sharpness",
    ...                    max_iter=50, record_every=10, random_state=0)
    >>> mlp = mlp.fit(X, Y)
    >>> mlp.steps_
    array([ 0, 10, 20, 30, 40, 50])
    >>> bool(mlp.loss_curve_[-1] < mlp.loss_curve_[0])
    True
    >>> round(float(mlp.learning_rate_ * mlp.initial_sharpness_), 12)
    1.0
    """

    _parameter_constraints: dict = {
        **_BaseMLP._parameter_constraints,
        "sharpness_every": [
            Interval(Integral, 1, None, closed="left"),
            Hidden(StrOptions({"deprecated"})),
        ],
    }

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        *,
        activation="tanh",
        fit_intercept=True,
        learning_rate=0.01,
        lr_units="absolute",
        max_iter=200,
        batch_size=None,
        parameterization="sp",
        init_scale=1.0,
        record_every=1,
        sharpness_tol=1e-6,
        sharpness_batch_size=None,
        compute_ntk=False,
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
        sharpness_every="deprecated",
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.fit_intercept = fit_intercept
        self.learning_rate = learning_rate
        self.lr_units = lr_units
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.parameterization = parameterization
        self.init_scale = init_scale
        self.record_every = record_every
        self.sharpness_tol = sharpness_tol
        self.sharpness_batch_size = sharpness_batch_size
        self.compute_ntk = compute_ntk
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
        self.sharpness_every = sharpness_every

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Run gradient descent on ``(X, y)`` and record the traces.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training inputs.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Targets (e.g. one-hot class indicators).

        Returns
        -------
        self : MLPRegressor
            The fitted estimator.
        """
        record_every = self.record_every
        if self.sharpness_every != "deprecated":
            warnings.warn(
                "sharpness_every was renamed record_every in 0.2 and will be "
                "removed in 0.3: every trace is now recorded at the same steps.",
                FutureWarning,
                stacklevel=3,
            )
            record_every = self.sharpness_every
        return self._fit(X, y, record_every)

    def _validate_input(self, X, y, reset):
        X, y = validate_data(
            self,
            X,
            y,
            multi_output=True,
            y_numeric=True,
            dtype=np.float64,
            reset=reset,
        )
        return X, _as_2d(check_numeric_targets(y)), "squared_error"

    def predict(self, X):
        """Network output.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Inputs.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            Predictions; 1-D when the network has a single output.
        """
        out = self._forward(X)
        return out.ravel() if out.shape[1] == 1 else out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


def _check_proba(estimator):
    """``predict_proba`` exists for the log loss only (as in SGDClassifier)."""
    if estimator.loss != "log_loss":
        raise AttributeError(
            f"probability estimates are not available for loss={estimator.loss!r}"
        )
    return True


def _class_targets(codes, n_classes, n_outputs):
    """Targets of class indices: one column of 0/1, or one-hot rows."""
    if n_outputs == 1:
        return codes.astype(np.float64)[:, None]
    return np.eye(n_classes)[codes]


@_fill_doc
class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Fully connected classifier trained by gradient descent, tracking sharpness.

    The classification counterpart of :class:`MLPRegressor`, with the same
    parameters, engine and traces.  ``fit`` runs gradient descent (full
    batch by default) on the cross-entropy of the softmax of the network's
    outputs (``loss="log_loss"``; one logistic output for two classes, as in
    scikit-learn's :class:`~sklearn.neural_network.MLPClassifier`), or on
    the squared error of one-hot targets (``loss="squared_error"``, the
    setting of most edge-of-stability studies), and records the loss and the
    sharpness ``lambda_H`` (top eigenvalue of the loss Hessian) every
    ``record_every`` steps.  With cross-entropy the sharpness rises to the
    edge of stability ``2 / eta`` too, and later falls as the margins grow
    and the softmax saturates (see the user guide's classification page).

    Parameters
    ----------
    hidden_layer_sizes : array-like of shape (n_hidden_layers,), default=(100,)
        Width of each hidden layer; ``()`` gives a linear model (multinomial
        logistic regression for the log loss).
    loss : {"log_loss", "squared_error"}, default="log_loss"
        ``"log_loss"``: cross-entropy ``-sum_i log p_{y_i}(x_i) / n_samples``
        of the softmax of one output per class, or of one logistic output for
        two classes.  ``"squared_error"``: ``sum_i |f(x_i) - e_{y_i}|**2 /
        (2 n_samples)`` with one-hot targets ``e_y`` and one output per class
        (two for two classes); the class is that of the largest output.
    activation : {"identity", "logistic", "tanh", "relu"}, default="tanh"
        Hidden-layer activation; the output activation is that of the loss
        (``out_activation_``).
    %(parameters)s
    random_state : int, RandomState instance or None, default=None
        Seeds the initialization, the measurement batch, the tangent vector and
        the SGD shuffles.
    verbose : int, default=0
        Print a one-line summary of each fit when positive, and from 2 on also
        a progress line (step, loss, ``learning_rate_ * lambda_H``) every tenth
        of the run.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels, sorted (any labels :func:`numpy.unique` sorts: integers,
        strings, ...).
    %(attributes)s

    See Also
    --------
    MLPRegressor : The same network on real-valued targets (squared error).
    sklearn.neural_network.MLPClassifier : The same network trained by Adam or
        SGD with momentum, without sharpness tracking.

    Notes
    -----
    Initialization, parameterizations, learning-rate scales, the measurement
    coordinates and the cost of a measurement are those of
    :class:`MLPRegressor` (see its Notes).  The losses come from the table
    :data:`sharpsk._losses.LOSS_FUNCTIONS`: ``log_loss`` (softmax,
    ``out_activation_ = "softmax"``) for three classes or more,
    ``binary_log_loss`` (``"logistic"``) for two, ``squared_error``
    (``"identity"``).  For each, the gradient with respect to the outputs is
    ``(p - y) / n_samples`` and the output-space Hessian is ``diag(p) - p
    p^T`` (softmax), ``p (1 - p)`` (logistic) or the identity, divided by
    ``n_samples``; Hessian-vector products are exact (Pearlmutter's
    R-operator started from that Hessian), and ``ntk_trace_`` is the top
    eigenvalue of the Gauss-Newton matrix ``J^T H_out J``, the NTK weighted by
    the output Hessian.  Unlike the squared error's, this Hessian vanishes as
    the probabilities saturate: once the training set is fitted, growing
    margins flatten the loss and the sharpness decreases.

    A cross-entropy run *diverges* at the first step whose loss or weights
    are not finite or whose largest ``|logit|`` exceeds ``1e6`` times its
    initial value or 1 (the targets' scale): the residual ``p - y`` is bounded
    and cannot signal a blow-up, and logits of ``1e6`` saturate the softmax
    to the last bit.  A converging run's logits grow only logarithmically.

    References
    ----------
    J. M. Cohen, S. Kaur, Y. Li, J. Z. Kolter and A. Talwalkar, "Gradient
    Descent on Neural Networks Typically Occurs at the Edge of Stability",
    ICLR 2021.

    D. S. Kalra, T. He and M. Barkeshli, "Universal Sharpness Dynamics in
    Neural Network Training: Fixed Point Analysis, Edge of Stability, and Route
    to Chaos", ICLR 2025, arXiv:2311.02076.

    Examples
    --------
    >>> from sharpsk import MLPClassifier
    >>> from sharpsk.datasets import load_digits_onehot
    >>> X, Y = load_digits_onehot(n_samples=200, random_state=0)
    >>> y = Y.argmax(axis=1)
    >>> clf = MLPClassifier((32,), learning_rate=1.0, lr_units="initial_sharpness",
    ...                     max_iter=50, record_every=10, random_state=0)
    >>> clf = clf.fit(X, y)
    >>> clf.classes_
    array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    >>> clf.out_activation_, clf.n_outputs_, clf.steps_
    ('softmax', 10, array([ 0, 10, 20, 30, 40, 50]))
    >>> clf.predict_proba(X[:2]).sum(axis=1)
    array([1., 1.])
    >>> bool(clf.score(X, y) > 0.9), bool(clf.loss_curve_[-1] < clf.loss_curve_[0])
    (True, True)
    """

    _parameter_constraints: dict = {
        **_BaseMLP._parameter_constraints,
        "loss": [StrOptions({"log_loss", "squared_error"})],
    }

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        *,
        loss="log_loss",
        activation="tanh",
        fit_intercept=True,
        learning_rate=0.01,
        lr_units="absolute",
        max_iter=200,
        batch_size=None,
        parameterization="sp",
        init_scale=1.0,
        record_every=1,
        sharpness_tol=1e-6,
        sharpness_batch_size=None,
        compute_ntk=False,
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
        self.hidden_layer_sizes = hidden_layer_sizes
        self.loss = loss
        self.activation = activation
        self.fit_intercept = fit_intercept
        self.learning_rate = learning_rate
        self.lr_units = lr_units
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.parameterization = parameterization
        self.init_scale = init_scale
        self.record_every = record_every
        self.sharpness_tol = sharpness_tol
        self.sharpness_batch_size = sharpness_batch_size
        self.compute_ntk = compute_ntk
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
        """Run gradient descent on ``(X, y)`` and record the traces.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training inputs.
        y : array-like of shape (n_samples,)
            Class labels (at least two classes).

        Returns
        -------
        self : MLPClassifier
            The fitted estimator.
        """
        return self._fit(X, y, self.record_every)

    def _validate_input(self, X, y, reset):
        X, y = validate_data(self, X, y, dtype=np.float64, reset=reset)
        check_classification_targets(y)
        classes, codes = np.unique(y, return_inverse=True)
        if reset:
            if classes.size < 2:
                raise ValueError(
                    f"{type(self).__name__} needs at least 2 classes in y; got 1 "
                    f"class: {classes[0]!r}."
                )
            self.classes_ = classes
        elif not np.array_equal(classes, self.classes_):
            raise ValueError(
                f"warm_start: y has the classes {classes.tolist()}, the previous "
                f"fit had {self.classes_.tolist()}."
            )
        binary = self.loss == "log_loss" and classes.size == 2
        loss = "binary_log_loss" if binary else self.loss
        n_outputs = 1 if binary else classes.size
        return X, _class_targets(codes, classes.size, n_outputs), loss

    def _encode(self, y):
        """Targets of fitted labels ``y``, as the network was trained on."""
        y = column_or_1d(y, warn=True)
        unseen = np.setdiff1d(y, self.classes_)
        if unseen.size:
            raise ValueError(f"y has labels not seen in fit: {unseen.tolist()}.")
        codes = np.searchsorted(self.classes_, y)
        return _class_targets(codes, self.classes_.size, self.n_outputs_)

    def hessian_operator(self, X, y):
        """The Hessian of the training loss at the fitted weights.

        In the coordinates in which the optimizer steps with the plain
        ``learning_rate``, so its top eigenvalue is comparable with
        ``stability_threshold_``, as ``sharpness_trace_`` is.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Inputs, e.g. the training data.
        y : array-like of shape (n_samples,)
            Class labels, among ``classes_``.

        Returns
        -------
        hessian : scipy.sparse.linalg.LinearOperator of shape (P, P)
            Exact Hessian-vector products (``hessian @ v``), ``P`` the number
            of trained parameters; see :mod:`sharpsk.hessian` for its
            spectrum.
        """
        check_is_fitted(self)
        return super().hessian_operator(X, self._encode(y))

    def predict(self, X):
        """Class of the largest output (the sign of the logit for two classes).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Inputs.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            Predicted class labels, from ``classes_``.
        """
        out = self._forward(X)
        if out.shape[1] == 1:
            return self.classes_[(out[:, 0] > 0).astype(np.intp)]
        return self.classes_[np.argmax(out, axis=1)]

    @available_if(_check_proba)
    def predict_proba(self, X):
        """Class probabilities (``loss="log_loss"`` only).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Inputs.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Softmax of the outputs (for two classes ``1 - p`` and ``p``, the
            logistic of the single output), in the order of ``classes_``.
        """
        out = self._forward(X)
        if out.shape[1] == 1:
            p = expit(out)
            return np.hstack([1.0 - p, p])
        return softmax(out, axis=1)

    @available_if(_check_proba)
    def predict_log_proba(self, X):
        """Logarithm of the class probabilities, computed stably.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Inputs.

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
            ``log(predict_proba(X))`` without its underflow to ``-inf``.
        """
        out = self._forward(X)
        if out.shape[1] == 1:
            return np.hstack([log_expit(-out), log_expit(out)])
        return log_softmax(out, axis=1)


class _Minibatches:
    """Sample indices of successive minibatches, reshuffled every epoch."""

    def __init__(self, n_samples, batch_size, rng):
        self.n_samples, self.batch_size, self.rng = n_samples, batch_size, rng
        self.order, self.cursor = None, n_samples

    def __call__(self):
        if self.cursor >= self.n_samples:
            self.order, self.cursor = self.rng.permutation(self.n_samples), 0
        batch = self.order[self.cursor : self.cursor + self.batch_size]
        self.cursor += self.batch_size
        return batch
