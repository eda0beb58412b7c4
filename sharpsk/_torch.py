"""Your own model, as a PyTorch module (the ``torch`` extra).

torch is imported inside functions only, so that ``import sharpsk`` does not
load it (and works without it).
"""

import contextlib
import copy
from numbers import Real

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
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

__all__ = ["TorchRegressor"]


def import_torch():
    """The ``torch`` module, or an ImportError saying how to install it."""
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - torch is a test dependency
        raise ImportError(
            "TorchRegressor needs PyTorch: pip install 'sharpsk[torch]'."
        ) from exc
    return torch


@contextlib.contextmanager
def torch_threads(n_threads):
    """torch's intra-op threads limited to ``n_threads`` (None: as they are).

    The counterpart of :func:`~sharpsk._engine.limit_blas_threads` for torch,
    whose kernels use their own thread pool.
    """
    torch = import_torch()
    if n_threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(int(n_threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def initialize_module(module, X, rng, reset):
    """A float64 deep copy of ``module``, initialized from ``rng``.

    Lazy modules are materialized on ``X``; with ``reset`` every submodule
    with a ``reset_parameters`` method redraws its parameters from torch's
    generator seeded by one draw of ``rng`` (in a forked generator state, so
    the global torch seed is untouched).  Returns the module and the names
    of its trained parameters (those with ``requires_grad``).
    """
    torch = import_torch()
    if not isinstance(module, torch.nn.Module):
        raise TypeError(
            f"module must be a torch.nn.Module, got {type(module).__name__}."
        )
    module = copy.deepcopy(module).double()
    seed = int(rng.randint(np.iinfo(np.int32).max))
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        lazy = torch.nn.parameter.is_lazy
        if any(lazy(p) for p in module.parameters()):
            module(torch.tensor(X))
        if reset:
            for sub in module.modules():
                if callable(getattr(sub, "reset_parameters", None)):
                    sub.reset_parameters()
    names = [name for name, p in module.named_parameters() if p.requires_grad]
    if not names:
        raise ValueError("module has no trainable parameters (requires_grad).")
    return module, names


class _TorchPoint(Point):
    """Loss and gradient by one backward pass; HVPs by double backward."""

    def __init__(self, model, theta, X, y):
        torch = import_torch()
        self.model, n = model, X.shape[0]
        flat = torch.tensor(theta, dtype=torch.float64)  # a copy, never a view
        self._params = [p.detach().requires_grad_() for p in model.views(flat)]
        params = dict(zip(model.names, self._params, strict=True))
        self._out = torch.func.functional_call(model.module, params, (X,))
        if model.loss == "squared_error":
            residual = self._out.reshape(n, -1) - y.reshape(n, -1)
            loss = torch.sum(residual * residual) / (2.0 * n)
            self.residual_max = float(residual.detach().abs().max())
        else:
            loss = model.loss(self._out, y)
            if not (isinstance(loss, torch.Tensor) and loss.numel() == 1):
                raise ValueError(
                    "loss must return a scalar tensor (the mean training loss), "
                    f"got {type(loss).__name__} "
                    f"{tuple(getattr(loss, 'shape', ()))}."
                )
            loss = loss.reshape(())
        self._loss, self.loss = loss, float(loss.detach())
        if model.loss != "squared_error":
            # The root of twice the loss: the RMS residual of a squared error.
            self.residual_max = float(np.sqrt(2.0 * max(self.loss, 0.0)))
        self._grad = self._graph = self._jacobian = None

    def _flat(self, tensors):
        return np.concatenate([t.detach().reshape(-1).numpy() for t in tensors])

    def _grads(self, outputs, grad_outputs=None, create_graph=False):
        """d(outputs)/d(params) (zeros for unused parameters); keeps the graph."""
        torch = import_torch()
        return torch.autograd.grad(
            outputs,
            self._params,
            grad_outputs,
            retain_graph=True,
            create_graph=create_graph,
            allow_unused=True,
            materialize_grads=True,
        )

    def gradient(self):
        if self._grad is None:
            # its own backward pass (never the create_graph one of hvp): the
            # step does not depend on whether this point was measured
            self._grad = self._flat(self._grads(self._loss))
        return self._grad

    def _vector(self, vec):
        torch = import_torch()
        vec = np.ascontiguousarray(vec, dtype=np.float64)
        return self.model.views(torch.from_numpy(vec))

    def hvp(self, vec):
        if self._graph is None:  # the differentiable gradient, once per point
            self._graph = self._grads(self._loss, create_graph=True)
        pairs = [
            (g, v)
            for g, v in zip(self._graph, self._vector(vec), strict=True)
            if g.requires_grad
        ]
        if not pairs:  # a loss linear in the parameters
            return np.zeros(self.model.n_params)
        outputs, vectors = zip(*pairs, strict=True)
        return self._flat(self._grads(outputs, vectors))

    def gauss_newton(self, vec):
        """``J^T H_f J v``: ``J`` the output Jacobian, ``H_f`` the loss
        Hessian in the outputs (``I / n`` for the squared error)."""
        torch = import_torch()
        if self._jacobian is None:
            # J^T u is linear in u: differentiating it in u gives J v
            dummy = torch.zeros_like(self._out, requires_grad=True)
            transposed = self._grads(self._out, dummy, create_graph=True)
            (slope,) = torch.autograd.grad(self._loss, self._out, create_graph=True)
            self._jacobian = dummy, transposed, slope
        dummy, transposed, slope = self._jacobian
        pairs = [
            (j, v)
            for j, v in zip(transposed, self._vector(vec), strict=True)
            if j.requires_grad
        ]
        if not pairs or not slope.requires_grad:
            return np.zeros(self.model.n_params)
        outputs, vectors = zip(*pairs, strict=True)
        (jv,) = torch.autograd.grad(outputs, dummy, vectors, retain_graph=True)
        (hjv,) = torch.autograd.grad(slope, self._out, jv, retain_graph=True)
        return self._flat(self._grads(self._out, hjv))


class TorchModel(Model):
    """An engine model: a float64 module and its loss on ``(X, y)``.

    Parameters
    ----------
    module : torch.nn.Module
        In float64; its parameters are replaced by ``theta`` at each point
        (:func:`torch.func.functional_call`), the module is not modified.
    names : list of str
        The trained parameters, in the order of ``theta``.
    loss : "squared_error" or callable
        See :class:`TorchRegressor`.
    X, y : ndarray
        Inputs and targets.
    """

    def __init__(self, module, names, loss, X, y):
        torch = import_torch()
        self.module, self.names, self.loss = module, names, loss
        params = dict(module.named_parameters())
        self.shapes = [tuple(params[name].shape) for name in names]
        self.bounds = np.cumsum([0] + [int(np.prod(s)) for s in self.shapes])
        self.n_params = int(self.bounds[-1])
        self.X, self.y = torch.tensor(X), torch.tensor(y)
        self.target_max = float(np.max(np.abs(y))) if np.size(y) else 0.0
        if loss == "squared_error":
            self._check_output_shape(X, y)

    def _check_output_shape(self, X, y):
        torch = import_torch()
        with torch.no_grad():
            out = self.module(self.X[:1])
        n_outputs = 1 if y.ndim == 1 else int(np.prod(y.shape[1:]))
        if out.shape[0] != 1 or out.numel() != n_outputs:
            raise ValueError(
                f"module outputs shape {tuple(out.shape)} for one sample of shape "
                f"{tuple(self.X.shape[1:])}, while y has {n_outputs} output(s) per "
                "sample: loss='squared_error' compares one output with each target."
            )

    def views(self, flat):
        """Views of a flat tensor shaped like the trained parameters."""
        b = self.bounds
        return [flat[b[i] : b[i + 1]].view(s) for i, s in enumerate(self.shapes)]

    def theta(self):
        """The module's trained parameters as one flat float64 vector."""
        params = dict(self.module.named_parameters())
        return np.concatenate(
            [params[name].detach().reshape(-1).numpy() for name in self.names]
        ).astype(np.float64)

    def set_theta(self, theta):
        """Write ``theta`` into the module's trained parameters."""
        torch = import_torch()
        params = dict(self.module.named_parameters())
        values = self.views(torch.from_numpy(np.ascontiguousarray(theta)))
        with torch.no_grad():
            for name, value in zip(self.names, values, strict=True):
                params[name].copy_(value)

    def point(self, theta, rows=None):
        X, y = self.X, self.y
        if rows is not None:
            torch = import_torch()
            rows = torch.as_tensor(np.asarray(rows, dtype=np.int64))
            X, y = X[rows], y[rows]
        return _TorchPoint(self, theta, X, y)


class TorchRegressor(HessianMixin, RegressorMixin, BaseEstimator):
    """Your own model, given as a PyTorch module.

    ``fit`` trains a float64 copy of ``module`` on ``loss`` with the training
    engine of every sharpsk estimator: the same traces (``sharpness_trace_``,
    ``loss_curve_``, ``stability_threshold_``, ...), optimizers, schedules,
    warm starts, Lyapunov exponents, scans and ``hessian_operator``.
    Gradients come from one backward pass per step and Hessian-vector
    products from a double backward (the gradient's graph is built once per
    measured step).  Needs the ``torch`` extra
    (``pip install "sharpsk[torch]"``).

    Parameters
    ----------
    module : torch.nn.Module
        The network, mapping a batch ``X`` (a float64 tensor of shape
        ``(n_samples, n_features)``) to the outputs.  Never modified: ``fit``
        trains a deep copy converted to float64 (``module_``).  Its
        parameters with ``requires_grad`` are trained, the others (and the
        buffers) stay as they are.  Lazy layers (``torch.nn.LazyLinear``)
        are materialized on ``X``.
    loss : "squared_error" or callable, default="squared_error"
        ``"squared_error"``: ``L = sum((f - y)^2) / (2 n)`` over samples and
        outputs (as :class:`MLPRegressor`), a 1-D ``y`` being one output.
        A callable ``loss(output, y) -> scalar tensor``: the mean training
        loss, from the module's output and the targets (a float64 tensor
        shaped like the ``y`` given to ``fit``).
    reset_parameters : bool, default=True
        Redraw the parameters from ``random_state``: every submodule with a
        ``reset_parameters`` method is reset with torch's generator seeded
        from it.  False starts from the module's own parameters (e.g. copied
        or pretrained weights); so do layers without ``reset_parameters``.
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
    compute_ntk : bool, default=False
        Also track the top eigenvalue of the Gauss-Newton matrix
        ``J^T H_f J`` (the NTK's, ``J`` the Jacobian of the outputs and
        ``H_f`` the loss Hessian in them; ``I / n`` for the squared error).
    compute_lyapunov : bool, default=False
        Also estimate the largest Lyapunov exponent (one more product per
        step), as :class:`MLPRegressor` does.
    %(optimizer)s
    warm_start : bool, default=False
        Continue the previous fit, appending to every trace.
    blas_threads : int or None, default=1
        Threads of torch (and of BLAS) during the fit and ``predict``; None
        leaves them as they are.
    k : int, default=1
        Eigenvalues tracked at the top of the Hessian spectrum: with ``k > 1``
        every record also holds the top ``k`` (``top_eigenvalues_trace_``),
        from :func:`sharpsk.hessian.eigenpairs` warm-started at the previous
        eigenvectors (about ``k`` times the products of one).
    random_state : int, RandomState instance or None, default=None
        Seeds the parameters (through ``reset_parameters``) and the Lyapunov
        tangent.
    verbose : int, default=0
        Print a one-line summary of each fit when positive.

    Attributes
    ----------
    module_ : torch.nn.Module
        The trained float64 copy of ``module``.
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
    ntk_trace_ : ndarray of shape (n_records,) or None
        Top Gauss-Newton eigenvalue (with ``compute_ntk``).
    stability_threshold_ : float or ndarray of shape (n_records,)
        What the tracked sharpness is compared with (``2 / eta`` for GD).
    learning_rate_ : float or ndarray of shape (n_records,)
        The step size used.
    initial_sharpness_ : float
        ``lambda_H`` at initialization.
    n_iter_ : int
        Steps completed.
    diverged_ : bool
        Whether the run blew up (its loss not finite, or its largest
        residual, the root of twice the loss for a callable ``loss``, past
        ``1e6`` times the initial one or the targets' scale).
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
    AutogradRegressor : Your own model as a loss written with autograd.
    MLPRegressor : The fully connected network with analytic HVPs (faster).

    Notes
    -----
    The parameters are trained as they are (no parameterization scalings),
    flattened in the order of ``module.named_parameters()``.  The module is
    called in the mode it is given (``module.train()`` or ``.eval()``): the
    loss must be a deterministic function of the parameters, so switch
    dropout off.  ``X`` reaches the module as given, of shape
    ``(n_samples, n_features)``: reshape inside it (e.g. with
    ``torch.nn.Unflatten`` for images).

    Clones, pickles and scans with process-based joblib backends pickle the
    module (and a callable ``loss``): define its class at the top level of
    an importable module; for a class defined in a notebook or script use
    the default ``loky`` backend (it pickles it by value with cloudpickle) or
    ``n_jobs=1``.

    Examples
    --------
    >>> import numpy as np
    >>> from torch import nn
    >>> from sharpsk import TorchRegressor
    >>> X = np.random.default_rng(0).normal(size=(50, 3))
    >>> y = np.sin(X[:, 0])
    >>> net = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))
    >>> est = TorchRegressor(net, learning_rate=1.0,
    ...                      lr_units="initial_sharpness", max_iter=40,
    ...                      record_every=10, random_state=0).fit(X, y)
    >>> est.steps_
    array([ 0, 10, 20, 30, 40])
    >>> bool(est.loss_curve_[-1] < est.loss_curve_[0])
    True
    >>> est.predict(X[:2]).shape
    (2,)
    """

    _parameter_constraints: dict = {
        "module": [HasMethods(["named_parameters", "forward"])],
        "loss": [StrOptions({"squared_error"}), callable],
        "reset_parameters": ["boolean"],
        **{
            name: constraint
            for name, constraint in GD_PARAMETER_CONSTRAINTS.items()
            if name not in ("parameterization", "init_scale")  # the user's model
        },
        "lr_units": [StrOptions({"absolute", "initial_sharpness"})],
        "sharpness_tol": [Interval(Real, 0, 1, closed="neither")],
        "compute_ntk": ["boolean"],
        "compute_lyapunov": ["boolean"],
    }

    def __init__(
        self,
        module,
        *,
        loss="squared_error",
        reset_parameters=True,
        learning_rate=0.01,
        lr_units="absolute",
        max_iter=200,
        record_every=1,
        sharpness_tol=1e-6,
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
        self.module = module
        self.loss = loss
        self.reset_parameters = reset_parameters
        self.learning_rate = learning_rate
        self.lr_units = lr_units
        self.max_iter = max_iter
        self.record_every = record_every
        self.sharpness_tol = sharpness_tol
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
        """Train a float64 copy of ``module`` and record the traces.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training inputs.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Targets.

        Returns
        -------
        self : TorchRegressor
            The fitted estimator.
        """
        import_torch()
        warm = self.warm_start and hasattr(self, "_engine_state")
        X, y = validate_regression_data(self, X, y, reset=not warm)
        with torch_threads(self.blas_threads):
            if warm:
                module, names = self.module_, self._names
                rng_tangent = self._engine_state["tangent"]
            else:
                rng = check_random_state(self.random_state)
                module, names = initialize_module(
                    self.module, X, rng, self.reset_parameters
                )
                rng_tangent = draw_streams(rng)[1]
            model = TorchModel(module, names, self.loss, X, y)
            run = train(
                model,
                None if warm else model.theta(),
                optimizer=make_estimator_optimizer(self),
                learning_rate=self.learning_rate,
                lr_units=self.lr_units,
                max_iter=self.max_iter,
                record_every=self.record_every,
                sharpness_tol=self.sharpness_tol,
                compute_ntk=self.compute_ntk,
                compute_lyapunov=self.compute_lyapunov,
                rng_tangent=rng_tangent,
                resume=self._engine_state["run"] if warm else None,
                blas_threads=self.blas_threads,
                k=self.k,
            )
            model.set_theta(run["theta"])
        self.module_, self._names = module, names
        self._engine_state = {"run": run["state"], "tangent": rng_tangent}
        store_run(self, run, warm=warm, compute_lyapunov=self.compute_lyapunov)
        if self.diverged_:
            warn_divergence(self, self.n_iter_)
        if self.verbose:
            print(
                f"[TorchRegressor] steps={self.n_iter_} diverged={self.diverged_} "
                f"lambda_H0={self.initial_sharpness_:.6g} "
                f"final loss={self.loss_curve_[-1]:.6g} HVPs={self.n_hvp_}"
            )
        return self

    def _engine_model(self, X, y):
        model = TorchModel(self.module_, self._names, self.loss, X, y)
        return model, self._engine_state["run"]["theta"]

    def predict(self, X):
        """The trained module's output on ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Inputs.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            ``module_(X)``, one row per sample (flattened), 1-D for one
            output.
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        torch = import_torch()
        with torch_threads(self.blas_threads), torch.no_grad():
            out = self.module_(torch.tensor(X))
        out = np.array(out.detach().numpy(), dtype=np.float64)
        out = out.reshape(X.shape[0], -1)
        return out[:, 0] if out.shape[1] == 1 else out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


TorchRegressor.__doc__ = TorchRegressor.__doc__.replace("%(optimizer)s", OPTIMIZER_DOC)
