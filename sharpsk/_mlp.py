"""Fully connected networks trained by gradient descent, with sharpness tracking.

The kernels below are pure functions of arrays.  A network is a list
``params = [W_0, b_0, W_1, b_1, ...]`` (biases omitted when there are none;
a bias is recognised by being 1-D) and a list of scalar ``multipliers`` of the
same length; layer ``l`` computes ``z_l = m_W * h_l @ W_l + m_b * b_l`` with
``W_l`` of shape ``(fan_in, fan_out)``, hidden layers apply the activation and
the last layer is linear.  The loss is
``L = sum((f(X) - Y)**2) / (2 * n_samples)``.

Gradients and Hessian-vector products are analytic: backpropagation and
Pearlmutter's R-operator, both reusing the forward pass stored in a *point*
(:func:`mlp_point`), so that the gradient step and every Hessian-vector
product of a sharpness measurement at the same parameters share it.
:func:`mlp_loss` is the same loss written with ``autograd.numpy``, for the
tests and for benchmarks against autograd.
"""

from numbers import Integral, Real

import autograd.numpy as anp
import numpy as np
from scipy.special import expit
from sklearn.base import BaseEstimator, RegressorMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from ._base import GD_PARAMETER_CONSTRAINTS, warn_divergence
from ._maps import divergence_bound, recorded_steps
from ._parameterization import resolve_parameterization
from ._sharpness import TopEigenTracker

__all__ = ["MLPRegressor"]

ACTIVATIONS = ("identity", "logistic", "tanh", "relu")


# --------------------------------------------------------------------------
# Activations: value, and first and second derivatives from the value.
# --------------------------------------------------------------------------
def _activate(activation, z):
    if activation == "tanh":
        return np.tanh(z)
    if activation == "relu":
        return np.maximum(z, 0.0)
    if activation == "logistic":
        return expit(z)
    return z


def _activate_anp(activation, z):
    if activation == "tanh":
        return anp.tanh(z)
    if activation == "relu":
        return anp.maximum(z, 0.0)
    if activation == "logistic":
        return 0.5 * (anp.tanh(0.5 * z) + 1.0)
    return z


def _first_derivative(activation, h):
    """``sigma'(z)`` from ``h = sigma(z)``; None means 1."""
    if activation == "tanh":
        return 1.0 - h * h
    if activation == "logistic":
        return h * (1.0 - h)
    if activation == "relu":
        return (h > 0).astype(h.dtype)
    return None


def _second_derivative(activation, h, d1):
    """``sigma''(z)`` from ``h = sigma(z)`` and ``d1 = sigma'(z)``; None means 0.

    Only Hessian-vector products need it, so a gradient step does not pay for
    it (computed once per point, on the first product).
    """
    if activation == "tanh":
        return -2.0 * h * d1
    if activation == "logistic":
        return d1 * (1.0 - 2.0 * h)
    return None


def _layers(params, multipliers):
    """``[(W, m_W, b or None, m_b), ...]`` from the flat parameter list."""
    layers, i = [], 0
    while i < len(params):
        W, m_w = params[i], multipliers[i]
        i += 1
        if i < len(params) and params[i].ndim == 1:
            layers.append((W, m_w, params[i], multipliers[i]))
            i += 1
        else:
            layers.append((W, m_w, None, None))
    return layers


# --------------------------------------------------------------------------
# Pure kernels
# --------------------------------------------------------------------------
def mlp_predict(coefs, intercepts, X, activation):
    """Output of the network ``X -> ... -> X_L`` with explicit weight matrices.

    Parameters
    ----------
    coefs : list of ndarray
        ``coefs[l]`` of shape ``(fan_in, fan_out)``: the matrix layer ``l``
        applies (multipliers already included).
    intercepts : list of ndarray or None
        ``intercepts[l]`` of shape ``(fan_out,)``; None for no biases.
    X : ndarray of shape (n_samples, n_features)
        Inputs.
    activation : {"identity", "logistic", "tanh", "relu"}
        Hidden-layer activation (the output layer is linear).

    Returns
    -------
    activations : list of ndarray
        ``[X, h_1, ..., h_{L-1}, f]``: the input, every hidden layer's
        activation and the output, shape ``(n_samples, n_outputs)``.

    Examples
    --------
    >>> import numpy as np
    >>> from sharpsk._mlp import mlp_predict
    >>> coefs = [np.array([[1.0, -1.0]]), np.array([[2.0], [3.0]])]
    >>> mlp_predict(coefs, None, np.array([[1.0]]), "relu")[-1]
    array([[2.]])
    """
    hs = [X]
    n_layers = len(coefs)
    for i, W in enumerate(coefs):
        z = hs[-1] @ W
        if intercepts is not None:
            z = z + intercepts[i]
        hs.append(z if i == n_layers - 1 else _activate(activation, z))
    return hs


def mlp_loss(params, X, Y, multipliers, activation):
    """``sum((f(X) - Y)**2) / (2 n_samples)``, differentiable by autograd.

    Parameters
    ----------
    params : list of ndarray
        ``[W_0, b_0, W_1, b_1, ...]`` (biases optional, recognised as 1-D).
    X : ndarray of shape (n_samples, n_features)
        Inputs.
    Y : ndarray of shape (n_samples, n_outputs)
        Targets.
    multipliers : sequence of float
        One multiplier per entry of ``params``.
    activation : {"identity", "logistic", "tanh", "relu"}
        Hidden-layer activation.

    Returns
    -------
    loss : float
        The mean (over samples) half squared error, summed over outputs.

    Examples
    --------
    >>> import numpy as np
    >>> from autograd import grad
    >>> from sharpsk._mlp import mlp_loss
    >>> params = [np.array([[1.0], [2.0]])]
    >>> X, Y = np.array([[1.0, 1.0]]), np.array([[1.0]])
    >>> float(mlp_loss(params, X, Y, [0.5], "tanh"))
    0.125
    >>> grad(mlp_loss)(params, X, Y, [0.5], "tanh")[0]
    array([[0.25],
           [0.25]])
    """
    layers = _layers(params, multipliers)
    h = X
    for i, (W, m_w, b, m_b) in enumerate(layers):
        z = m_w * anp.dot(h, W)
        if b is not None:
            z = z + m_b * b
        h = z if i == len(layers) - 1 else _activate_anp(activation, z)
    r = h - Y
    return 0.5 * anp.sum(r * r) / X.shape[0]


def mlp_point(params, X, Y, multipliers, activation):
    """Forward pass at ``params``, stored for gradients and HVPs.

    Parameters
    ----------
    params : list of ndarray
        ``[W_0, b_0, W_1, b_1, ...]`` (biases optional).
    X : ndarray of shape (n_samples, n_features)
        Inputs.
    Y : ndarray of shape (n_samples, n_outputs)
        Targets.
    multipliers : sequence of float
        One multiplier per entry of ``params``.
    activation : {"identity", "logistic", "tanh", "relu"}
        Hidden-layer activation.

    Returns
    -------
    point : dict
        ``"loss"`` (float), ``"residual"`` ``f(X) - Y`` of shape
        ``(n_samples, n_outputs)``, and the cached activations used by
        :func:`mlp_gradient`, :func:`mlp_hvp` and :func:`mlp_matvec`.

    Examples
    --------
    >>> import numpy as np
    >>> from sharpsk._mlp import mlp_point
    >>> pt = mlp_point([np.array([[2.0]])], np.ones((2, 1)), np.zeros((2, 1)),
    ...                [1.0], "tanh")
    >>> pt["loss"], pt["residual"].ravel()
    (2.0, array([2., 2.]))
    """
    layers = _layers(params, multipliers)
    hs = [X]
    for i, (W, m_w, b, m_b) in enumerate(layers):
        z = hs[-1] @ W
        if m_w != 1.0:  # (x * 1.0 == x: skipping it changes no bit)
            z *= m_w
        if b is not None:
            z += m_b * b
        if i == len(layers) - 1:
            out = z
        else:
            hs.append(_activate(activation, z))
    r = out - Y
    return {
        "params": params,
        "layers": layers,
        "activation": activation,
        "hs": hs,
        "residual": r,
        "loss": 0.5 * float(np.sum(r * r)) / X.shape[0],
    }


def _backward(point):
    """Backpropagation; caches ``delta_l = dL/dz_l`` and ``g_l = dL/dh_l``."""
    if "grads" in point:
        return
    layers, hs = point["layers"], point["hs"]
    n_samples = hs[0].shape[0]
    delta = point["residual"] / n_samples
    n_layers = len(layers)
    deltas, gs, d1s, grads = [None] * n_layers, [None] * n_layers, {}, []
    for i in range(n_layers - 1, -1, -1):
        W, m_w, b, m_b = layers[i]
        deltas[i] = delta
        gW = hs[i].T @ delta
        if m_w != 1.0:
            gW *= m_w
        grad = [gW] if b is None else [gW, m_b * delta.sum(axis=0)]
        grads = grad + grads
        if i > 0:
            g = delta @ W.T
            if m_w != 1.0:
                g *= m_w
            gs[i] = g
            d1s[i] = _first_derivative(point["activation"], hs[i])
            delta = g if d1s[i] is None else g * d1s[i]
    point.update(grads=grads, deltas=deltas, gs=gs, derivs=d1s)


def _curvature_terms(point):
    """``g_l * sigma''(z_l)`` per hidden layer (None for piecewise-linear ones).

    The factor of the R-operator's second-derivative term that does not
    depend on the direction: computed on the first product at a point and
    reused by the next ones.
    """
    if "curvature" not in point:
        hs, gs, derivs = point["hs"], point["gs"], point["derivs"]
        terms = {}
        for i, d1 in derivs.items():
            d2 = _second_derivative(point["activation"], hs[i], d1)
            terms[i] = None if d2 is None else gs[i] * d2
        point["curvature"] = terms
    return point["curvature"]


def mlp_gradient(point):
    """Gradient of the loss at a point, by backpropagation.

    Parameters
    ----------
    point : dict
        From :func:`mlp_point`.

    Returns
    -------
    grads : list of ndarray
        Same shapes as ``params``.

    Examples
    --------
    >>> import numpy as np
    >>> from sharpsk._mlp import mlp_gradient, mlp_point
    >>> pt = mlp_point([np.array([[2.0]])], np.ones((2, 1)), np.zeros((2, 1)),
    ...                [1.0], "tanh")
    >>> mlp_gradient(pt)
    [array([[2.]])]
    """
    _backward(point)
    return point["grads"]


def mlp_hvp(point, vecs, *, gauss_newton=False):
    """Hessian-vector product at a point (Pearlmutter's R-operator).

    One forward R-pass propagates the directional derivatives of the
    pre-activations, one backward R-pass those of the backpropagated errors;
    the stored forward and backward passes are reused.  About twice the matrix
    products of one gradient.

    Parameters
    ----------
    point : dict
        From :func:`mlp_point`.
    vecs : list of ndarray
        Direction, same shapes as ``params``.
    gauss_newton : bool, default=False
        Return the Gauss-Newton product ``J^T J v / n_samples`` instead (drops
        the terms with the residual and with ``sigma''``).  Its top eigenvalue
        is that of the NTK Gram matrix ``J J^T / n_samples``.

    Returns
    -------
    hvp : list of ndarray
        ``H v`` (or ``G v``), same shapes as ``params``.

    Examples
    --------
    >>> import numpy as np
    >>> from sharpsk._mlp import mlp_hvp, mlp_point
    >>> X, Y = np.array([[1.0, 2.0]]), np.array([[0.0]])
    >>> pt = mlp_point([np.array([[1.0], [1.0]])], X, Y, [1.0], "tanh")
    >>> mlp_hvp(pt, [np.array([[1.0], [0.0]])])  # linear model: H = X^T X
    [array([[1.],
           [2.]])]
    """
    _backward(point)
    layers, hs = point["layers"], point["hs"]
    deltas, derivs = point["deltas"], point["derivs"]
    curvature = None if gauss_newton else _curvature_terms(point)
    n_samples = hs[0].shape[0]
    n_layers = len(layers)
    # Split the direction like the parameters.
    dirs, j = [], 0
    for _, _, b, _ in layers:
        dirs.append((vecs[j], None if b is None else vecs[j + 1]))
        j += 1 if b is None else 2
    # Forward R-pass: Rz_l = m_W (Rh_l W_l + h_l V_l) + m_b u_l.
    rhs, rzs, rh = [None] * n_layers, [None] * n_layers, None
    for i, (W, m_w, _, m_b) in enumerate(layers):
        V, u = dirs[i]
        rz = hs[i] @ V
        if rh is not None:
            rz += rh @ W
        if m_w != 1.0:
            rz *= m_w
        if u is not None:
            rz += m_b * u
        rzs[i] = rz
        if i < n_layers - 1:
            d1 = derivs[i + 1]
            rh = rz if d1 is None else d1 * rz
            rhs[i + 1] = rh
    # Backward R-pass.
    rdelta = rzs[-1] / n_samples
    out = []
    for i in range(n_layers - 1, -1, -1):
        W, m_w, b, m_b = layers[i]
        V, _ = dirs[i]
        rgW = hs[i].T @ rdelta
        if i > 0 and not gauss_newton:
            rgW += rhs[i].T @ deltas[i]
        if m_w != 1.0:
            rgW *= m_w
        out = ([rgW] if b is None else [rgW, m_b * rdelta.sum(axis=0)]) + out
        if i > 0:
            rg = rdelta @ W.T
            if not gauss_newton:
                rg += deltas[i] @ V.T
            if m_w != 1.0:
                rg *= m_w
            if derivs[i] is not None:
                rg *= derivs[i]
            if not gauss_newton and curvature[i] is not None:
                # (g sigma'') Rz, as ((g * sigma'') * Rz) before: same rounding
                rg += curvature[i] * rzs[i - 1]
            rdelta = rg
    return out


def mlp_matvec(point, *, gauss_newton=False):
    """Flat Hessian (or Gauss-Newton) matvec at a point, for eigensolvers.

    Parameters
    ----------
    point : dict
        From :func:`mlp_point`.
    gauss_newton : bool, default=False
        See :func:`mlp_hvp`.

    Returns
    -------
    matvec : callable
        ``matvec(v) -> H v`` for flat ``v`` of shape ``(n_params,)``, in the
        order of ``params`` (each array raveled in C order).
    n_params : int
        Total number of parameters.

    Examples
    --------
    >>> import numpy as np
    >>> from sharpsk._mlp import mlp_matvec, mlp_point
    >>> X, Y = np.array([[1.0, 2.0]]), np.array([[0.0]])
    >>> pt = mlp_point([np.array([[1.0], [1.0]])], X, Y, [1.0], "tanh")
    >>> matvec, n = mlp_matvec(pt)
    >>> matvec(np.array([0.0, 1.0]))
    array([2., 4.])
    """
    shapes = [p.shape for p in point["params"]]
    bounds = np.cumsum([0] + [int(np.prod(s)) for s in shapes])

    def matvec(v):
        vecs = [
            v[a:b].reshape(s)
            for a, b, s in zip(bounds[:-1], bounds[1:], shapes, strict=True)
        ]
        return np.concatenate(
            [h.ravel() for h in mlp_hvp(point, vecs, gauss_newton=gauss_newton)]
        )

    return matvec, int(bounds[-1])


def _params_finite(params):
    return all(np.isfinite(p).all() for p in params)


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


class MLPRegressor(RegressorMixin, BaseEstimator):
    """Fully connected network trained by gradient descent, tracking sharpness.

    ``fit`` runs plain gradient descent (full batch by default) on
    ``L = sum_i |f(x_i) - y_i|**2 / (2 n_samples)`` and records the loss at
    every step and the sharpness ``lambda_H`` (top eigenvalue of the loss
    Hessian) every ``sharpness_every`` steps, from a Lanczos eigensolver on
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
    fit_intercept : bool, default=True
        Whether every layer has a bias.  Biases start at 0 and have multiplier
        1; hidden-layer biases have the learning-rate scale of their layer, the
        output bias the scale 1 (see Notes).
    learning_rate : float, default=0.01
        Gradient-descent step size ``eta``, or ``c = eta * lambda_H0`` when
        ``lr_units="initial_sharpness"``.  Per-layer learning-rate scales of
        the parameterization are applied on top of it.  (Unlike sklearn's
        ``learning_rate``, a schedule name, this is a number: the schedule is
        constant.)
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
    sharpness_every : int, default=1
        Measure the sharpness every ``sharpness_every`` steps (the first and
        the last step are always measured).
    sharpness_tol : float, default=1e-6
        Relative tolerance of the Lanczos eigensolver.
    sharpness_batch_size : int or None, default=None
        None: the sharpness is that of the full training loss.  An int: that
        of the loss on a fixed measurement batch, the first
        ``sharpness_batch_size`` samples of one permutation drawn from
        ``random_state`` (cheaper on large data, and the usual choice with
        SGD).
    compute_ntk : bool, default=False
        Also record the top eigenvalue of the NTK Gram matrix divided by the
        number of samples (same measurement batch and steps; one more
        warm-started Lanczos on Gauss-Newton products).
    compute_lyapunov : bool, default=False
        Also estimate the largest Lyapunov exponent of the gradient-descent
        map: one tangent vector is pushed through ``(I - eta H_t)`` at every
        step (one Hessian-vector product per step) and renormalized.
    random_state : int, RandomState instance or None, default=None
        Seeds the initialization, the measurement batch, the tangent vector and
        the SGD shuffles.
    verbose : int, default=0
        Print a one-line summary of each fit when positive, and from 2 on also
        a progress line (step, loss, ``learning_rate_ * lambda_H``) every tenth
        of the run.

    Attributes
    ----------
    coefs_ : list of ndarray of shape (fan_in, fan_out)
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
    ntk_trace_ : ndarray of shape (n_records,) or None
        Top NTK eigenvalue at ``steps_`` (None unless ``compute_ntk``).
    loss_curve_ : ndarray of shape (n_iter_ + 1,)
        Training loss before each update, then after the last one.  (sklearn
        records one value per epoch.)
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
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during fit, when ``X`` has string column names.

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
    step.

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
    ...                    max_iter=50, sharpness_every=10, random_state=0)
    >>> mlp = mlp.fit(X, Y)
    >>> mlp.steps_
    array([ 0, 10, 20, 30, 40, 50])
    >>> bool(mlp.loss_curve_[-1] < mlp.loss_curve_[0])
    True
    >>> round(float(mlp.learning_rate_ * mlp.initial_sharpness_), 12)
    1.0
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
        "sharpness_every": [Interval(Integral, 1, None, closed="left")],
        "sharpness_tol": [Interval(Real, 0, 1, closed="neither")],
        "sharpness_batch_size": [Interval(Integral, 1, None, closed="left"), None],
        "compute_ntk": ["boolean"],
        "compute_lyapunov": ["boolean"],
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
        sharpness_every=1,
        sharpness_tol=1e-6,
        sharpness_batch_size=None,
        compute_ntk=False,
        compute_lyapunov=False,
        random_state=None,
        verbose=0,
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
        self.sharpness_every = sharpness_every
        self.sharpness_tol = sharpness_tol
        self.sharpness_batch_size = sharpness_batch_size
        self.compute_ntk = compute_ntk
        self.compute_lyapunov = compute_lyapunov
        self.random_state = random_state
        self.verbose = verbose

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
        X, y = validate_data(
            self, X, y, multi_output=True, y_numeric=True, dtype=np.float64
        )
        Y = _as_2d(y)
        rng = check_random_state(self.random_state)
        params, mults, scalings = self._initialize(X.shape[1], Y.shape[1], rng)
        run = _gd_run(
            params,
            mults,
            X,
            Y,
            activation=self.activation,
            learning_rate=self.learning_rate,
            lr_units=self.lr_units,
            max_iter=self.max_iter,
            batch_size=self.batch_size,
            sharpness_every=self.sharpness_every,
            sharpness_tol=self.sharpness_tol,
            sharpness_batch_size=self.sharpness_batch_size,
            compute_ntk=self.compute_ntk,
            compute_lyapunov=self.compute_lyapunov,
            rng=rng,
            report_every=max(1, self.max_iter // 10) if self.verbose >= 2 else 0,
        )
        params = run.pop("params")
        for name, value in run.items():
            setattr(self, name, value)
        self._set_weights(params, mults, scalings)
        self.n_layers_ = len(self.coefs_) + 1
        self.n_outputs_ = Y.shape[1]
        if self.diverged_:
            warn_divergence(self, self.n_iter_)
        if self.verbose:
            print(
                f"[MLPRegressor] steps={self.n_iter_} diverged={self.diverged_} "
                f"eta={self.learning_rate_:.6g} "
                f"lambda_H0={self.initial_sharpness_:.6g} "
                f"final loss={self.loss_curve_[-1]:.6g} HVPs={self.n_hvp_}"
            )
        return self

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
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            out = mlp_predict(self.coefs_, self.intercepts_, X, self.activation)[-1]
        return out.ravel() if out.shape[1] == 1 else out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


def _streams(rng):
    """Measurement-batch, tangent and shuffle generators, drawn after the init.

    Independent streams: toggling one option does not change the others.
    """
    return tuple(np.random.RandomState(s) for s in rng.randint(2**31 - 1, size=3))


def _initial_tangent(rng, n_params):
    """Unit Gaussian start of the Lyapunov tangent vector."""
    tangent = rng.standard_normal(n_params)
    return tangent / np.linalg.norm(tangent)


def _gd_run(
    params,
    mults,
    X,
    Y,
    *,
    activation,
    learning_rate,
    lr_units,
    max_iter,
    batch_size,
    sharpness_every,
    sharpness_tol,
    sharpness_batch_size,
    compute_ntk,
    compute_lyapunov,
    rng,
    report_every=0,
):
    """The gradient-descent loop of :class:`MLPRegressor` (see its docstring).

    ``report_every > 0`` prints a progress line every that many steps.
    """
    n_samples = X.shape[0]
    rng_measure, rng_tangent, rng_shuffle = _streams(rng)
    measure_idx = None
    if sharpness_batch_size is not None and sharpness_batch_size < n_samples:
        measure_idx = np.sort(rng_measure.permutation(n_samples)[:sharpness_batch_size])
    tangent = None
    if compute_lyapunov:
        tangent = _initial_tangent(rng_tangent, sum(p.size for p in params))
    sgd = batch_size is not None and batch_size < n_samples
    steps = recorded_steps(max_iter, sharpness_every)
    n_rec = len(steps)
    sharp, n_hvp = np.full(n_rec + 1, np.nan), np.zeros(n_rec + 1, dtype=int)
    conv, ntk = np.zeros(n_rec + 1, dtype=bool), np.full(n_rec + 1, np.nan)
    loss_curve = np.full(max_iter + 1, np.nan)
    log_growth = np.full(max_iter, np.nan) if compute_lyapunov else None
    # warm starts from the previous measurements (see TopEigenTracker)
    trackers = {
        kind: TopEigenTracker(tol=sharpness_tol, random_state=0)
        for kind in ("hessian", "ntk")
    }

    def measure(params, point, rec):
        if measure_idx is not None:
            point = mlp_point(params, X[measure_idx], Y[measure_idx], mults, activation)
        for kind in ("hessian", "ntk") if compute_ntk else ("hessian",):
            matvec, n = mlp_matvec(point, gauss_newton=kind == "ntk")
            res = trackers[kind].update(matvec, n)
            if kind == "ntk":
                ntk[rec] = res.eigenvalue
            else:
                sharp[rec], n_hvp[rec], conv[rec] = (
                    res.eigenvalue,
                    res.n_hvp,
                    res.converged,
                )

    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        point = mlp_point(params, X, Y, mults, activation)
        bound = divergence_bound(np.max(np.abs(point["residual"])), np.max(np.abs(Y)))
        eta = learning_rate
        order, cursor = None, n_samples
        rec, n_iter, diverged = 0, 0, False
        for t in range(max_iter + 1):
            loss_curve[t] = point["loss"]
            if rec < n_rec and steps[rec] == t:
                measure(params, point, rec)
                rec += 1
            if t == 0 and lr_units == "initial_sharpness":
                if not sharp[0] > 0:
                    raise ValueError(
                        "lr_units='initial_sharpness' needs a positive initial "
                        f"sharpness, got {float(sharp[0])!r}."
                    )
                eta = learning_rate / sharp[0]
            if report_every and t % report_every == 0:
                print(
                    f"[MLPRegressor] step {t}/{max_iter}: loss={point['loss']:.6g}, "
                    f"eta*lambda_H={eta * sharp[rec - 1]:.4g} (step {steps[rec - 1]})",
                    flush=True,
                )
            if t == max_iter:
                break
            step_point = point
            if sgd:
                if cursor >= n_samples:
                    order, cursor = rng_shuffle.permutation(n_samples), 0
                batch = order[cursor : cursor + batch_size]
                cursor += batch_size
                step_point = mlp_point(params, X[batch], Y[batch], mults, activation)
            grads = mlp_gradient(step_point)
            if compute_lyapunov:
                matvec, _ = mlp_matvec(step_point)
                tangent = tangent - eta * matvec(tangent)
                norm = np.linalg.norm(tangent)
                log_growth[t] = np.log(norm)
                tangent = tangent / norm
            new_params = [p - eta * g for p, g in zip(params, grads, strict=True)]
            new_point = mlp_point(new_params, X, Y, mults, activation)
            if not (
                np.max(np.abs(new_point["residual"])) <= bound  # NaN-safe
                and _params_finite(new_params)
            ):
                diverged = True
                break
            params, point = new_params, new_point
            n_iter += 1
        if diverged and (rec == 0 or steps[rec - 1] != n_iter):
            # Always measure the last (finite) state.
            steps = np.append(steps[:rec], n_iter)
            measure(params, point, rec)
            rec += 1
    out = {
        "params": params,
        "learning_rate_": float(eta),
        "steps_": np.asarray(steps[:rec]),
        "sharpness_trace_": sharp[:rec],
        "hvp_trace_": n_hvp[:rec],
        "sharpness_converged_": conv[:rec],
        "ntk_trace_": ntk[:rec] if compute_ntk else None,
        "loss_curve_": loss_curve[: n_iter + 1],
        "n_iter_": n_iter,
        "diverged_": diverged,
        "initial_sharpness_": float(sharp[0]),
        "n_hvp_": int(n_hvp[:rec].sum()) + (n_iter if compute_lyapunov else 0),
        "lyapunov_exponent_": None,
        "tangent_log_growth_": None,
    }
    if compute_lyapunov:
        growth = log_growth[:n_iter]
        out["tangent_log_growth_"] = growth
        out["lyapunov_exponent_"] = (
            float(np.mean(growth[n_iter // 2 :])) if n_iter else float("nan")
        )
    return out
