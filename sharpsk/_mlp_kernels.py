"""Fully connected networks as pure kernels and as an engine model.

The kernels here are pure functions of arrays.  A network is a list
``params = [W_0, b_0, W_1, b_1, ...]`` (biases omitted when there are none;
a bias is recognised by being 1-D) and a list of scalar ``multipliers`` of the
same length; layer ``l`` computes ``z_l = m_W * h_l @ W_l + m_b * b_l`` with
``W_l`` of shape ``(fan_in, fan_out)``, hidden layers apply the activation and
the last layer is linear: its outputs ``f(X)`` (logits for the log losses)
enter a loss of the table :data:`~sharpsk._losses.LOSS_FUNCTIONS`, by default
the squared error ``L = sum((f(X) - Y)**2) / (2 * n_samples)``.

Gradients and Hessian-vector products are analytic: backpropagation and
Pearlmutter's R-operator, both reusing the forward pass stored in a *point*
(:func:`mlp_point`), so that the gradient step and every Hessian-vector
product of a sharpness measurement at the same parameters share it.  The
loss enters only through its output gradient (where backpropagation starts)
and its output-space Hessian (where the backward R-pass starts).
:func:`mlp_loss` is the same loss written with ``autograd.numpy``, for the
tests and for benchmarks against autograd.

:class:`MLPModel` is their view for the training engine
(:func:`sharpsk._engine.train`); the estimators (:mod:`sharpsk._mlp`) and the
batched scan engine (:mod:`sharpsk._mlp_batched`) both build on this module.
"""

import autograd.numpy as anp
import numpy as np
from scipy.linalg.blas import sgemm as _sgemm
from scipy.special import expit

from ._engine import Model, Point
from ._losses import get_loss

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
    >>> from sharpsk._mlp_kernels import mlp_predict
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


def mlp_loss(params, X, Y, multipliers, activation, loss="squared_error"):
    """The training loss (by default squared error), differentiable by autograd.

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
    loss : {"squared_error", "log_loss", "binary_log_loss"}, \
            default="squared_error"
        A key of :data:`~sharpsk._losses.LOSS_FUNCTIONS` (its ``reference``).

    Returns
    -------
    loss : float
        The loss, a mean over samples (for the squared error the half
        squared error, summed over outputs).

    Examples
    --------
    >>> import numpy as np
    >>> from autograd import grad
    >>> from sharpsk._mlp_kernels import mlp_loss
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
    return get_loss(loss).reference(h, Y)


def mlp_point(
    params, X, Y, multipliers, activation, loss="squared_error", *, forward=None
):
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
    loss : {"squared_error", "log_loss", "binary_log_loss"} or Loss, \
            default="squared_error"
        An entry of :data:`~sharpsk._losses.LOSS_FUNCTIONS`.
    forward : tuple, default=None
        ``(hs, output)``: the activations ``[X, h_1, ...]`` and the output of
        this very forward pass when they were computed elsewhere (the
        batched engine's stacked pass computes the same numbers); no pass is
        made then.

    Returns
    -------
    point : dict
        ``"loss"`` (float), ``"output"`` ``f(X)`` and ``"residual"`` ``P -
        Y`` of shape ``(n_samples, n_outputs)``, with ``P`` the loss's
        prediction (``f(X)`` itself for the squared error, the softmax or
        logistic probabilities for the log losses), and the cached
        activations used by :func:`mlp_gradient`, :func:`mlp_hvp` and
        :func:`mlp_matvec`.

    Examples
    --------
    >>> import numpy as np
    >>> from sharpsk._mlp_kernels import mlp_point
    >>> pt = mlp_point([np.array([[2.0]])], np.ones((2, 1)), np.zeros((2, 1)),
    ...                [1.0], "tanh")
    >>> pt["loss"], pt["residual"].ravel()
    (2.0, array([2., 2.]))
    """
    loss = get_loss(loss)
    layers = _layers(params, multipliers)
    if forward is not None:
        hs, out = forward
    else:
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
    pred = loss.prediction(out)
    return {
        "params": params,
        "layers": layers,
        "activation": activation,
        "loss_function": loss,
        "targets": Y,
        "hs": hs,
        "output": out,
        "prediction": pred,
        "residual": pred - Y,
        "loss": loss.value(out, Y),
    }


def _backward(point):
    """Backpropagation; caches ``delta_l = dL/dz_l`` and ``g_l = dL/dh_l``."""
    if "grads" in point:
        return
    layers, hs = point["layers"], point["hs"]
    delta = point["loss_function"].gradient(point["prediction"], point["targets"])
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
    >>> from sharpsk._mlp_kernels import mlp_gradient, mlp_point
    >>> pt = mlp_point([np.array([[2.0]])], np.ones((2, 1)), np.zeros((2, 1)),
    ...                [1.0], "tanh")
    >>> mlp_gradient(pt)
    [array([[2.]])]
    """
    _backward(point)
    return point["grads"]


def _cast(src, dst, dtype):
    """``src`` in ``dtype``, written into ``dst`` when it has the shape."""
    if dst is None or dst.shape != src.shape:
        return src.astype(dtype)
    np.copyto(dst, src, casting="same_kind")
    return dst


def _hvp_arrays(point, dtype, gauss_newton, buffers=None, factored=False):
    """What the R-passes read from a point, in ``dtype``.

    float64: the stored arrays themselves.  float32: copies made on the first
    product at the point (the multipliers stay Python floats, which keep
    float32 arrays float32) and the curvature terms computed in float32; kept
    on the point, or with ``buffers`` (a dict shared by the points of one
    network, see :func:`mlp_matvec`) written into the arrays of the previous
    point, and made again when another point has used them since.

    ``factored`` (float32, not Gauss-Newton): the curvature terms divided by
    ``sigma'`` (``g * sigma'' / sigma'``, e.g. ``-2 g h`` for tanh), under
    ``"factored"``, as :func:`_r_operator_buffered` uses them; the full
    terms are then not computed.
    """
    _backward(point)
    if dtype == np.float64:
        return {
            "layers": point["layers"],
            "hs": point["hs"],
            "deltas": point["deltas"],
            "derivs": point["derivs"],
            "curvature": None if gauss_newton else _curvature_terms(point),
            "prediction": point["prediction"],
        }
    key = f"arrays_{np.dtype(dtype).name}"
    if buffers is None:
        store, token = point, None
    else:
        # a token object, not id(point): ids are reused after collection
        store, token = buffers, point.setdefault("token", object())
    if key not in store or (token is not None and store["owner"] is not token):
        old = store.get(key) or {"layers": [], "hs": [], "deltas": [], "derivs": {}}
        old_layers = old["layers"] + [(None, 0, None, 0)] * len(point["layers"])
        old_hs = old["hs"] + [None] * len(point["hs"])
        old_deltas = old["deltas"] + [None] * len(point["deltas"])
        store[key] = {
            "layers": [
                (
                    _cast(W, oW, dtype),
                    m_w,
                    None if b is None else _cast(b, ob, dtype),
                    m_b,
                )
                for (W, m_w, b, m_b), (oW, _, ob, _) in zip(
                    point["layers"], old_layers, strict=False
                )
            ],
            "hs": [
                _cast(h, o, dtype) for h, o in zip(point["hs"], old_hs, strict=False)
            ],
            # delta_0 is not read by the R-passes (no layer below the first)
            "deltas": [
                None if i == 0 else _cast(d, o, dtype)
                for i, (d, o) in enumerate(
                    zip(point["deltas"], old_deltas, strict=False)
                )
            ],
            "derivs": {
                i: None if d is None else _cast(d, old["derivs"].get(i), dtype)
                for i, d in point["derivs"].items()
            },
            "old_curvature": old.get("curvature") or old.get("old_curvature"),
            "curvature": None,
            "old_factored": old.get("factored") or old.get("old_factored"),
            "factored": None,
            "prediction": point["prediction"].astype(dtype),
        }
        store["owner"] = token
    arrays = store[key]
    if factored:
        if arrays["factored"] is None:
            arrays["factored"] = _factored_terms(point, arrays, dtype)
        return arrays
    if not gauss_newton and arrays["curvature"] is None:
        terms, old = {}, arrays.pop("old_curvature", None) or {}
        for i, d1 in arrays["derivs"].items():
            if point["activation"] not in ("tanh", "logistic"):  # sigma'' = 0
                terms[i] = None
                continue
            g = _cast(point["gs"][i], old.get(i), dtype)
            # g * sigma'' in place (sigma'' from the float32 h and sigma')
            if point["activation"] == "tanh":
                g *= arrays["hs"][i]
                g *= d1
                g *= -2.0
            else:
                g *= _second_derivative(point["activation"], arrays["hs"][i], d1)
            terms[i] = g
        arrays["curvature"] = terms
    return arrays


def _factored_terms(point, arrays, dtype):
    """``g * sigma'' / sigma'`` per hidden layer, in ``dtype`` (None: no term).

    ``-2 g h`` for tanh and ``g (1 - 2 h)`` for the logistic function, from
    the ``dtype`` copy of ``h``; written into the arrays of the previous point
    when there are some.
    """
    terms, old = {}, arrays.pop("old_factored", None) or {}
    activation = point["activation"]
    for i in arrays["derivs"]:
        if activation not in ("tanh", "logistic"):  # sigma'' = 0
            terms[i] = None
            continue
        g = _cast(point["gs"][i], old.get(i), dtype)
        h = arrays["hs"][i]
        if activation == "tanh":
            g *= h
            g *= -2.0
        else:
            g *= 1.0 - 2.0 * h
        terms[i] = g
    return terms


def _gemm(a, b, c, alpha=1.0, beta=0.0):
    """``c = alpha * a @ b + beta * c`` in place (float32 BLAS ``sgemm``).

    ``c`` C-contiguous; ``a`` and ``b`` C- or Fortran-contiguous (e.g. the
    transpose of a C-contiguous array).  numpy's matmul has no ``beta``: a
    sum of two products costs it a temporary and a pass to add it.
    """
    # c^T = alpha * b^T a^T + beta * c^T, all Fortran-ordered views
    b_t, trans_b = (b.T, 0) if b.T.flags.f_contiguous else (b, 1)
    a_t, trans_a = (a.T, 0) if a.T.flags.f_contiguous else (a, 1)
    out = _sgemm(
        alpha,
        b_t,
        a_t,
        beta=beta,
        c=c.T,
        trans_a=trans_b,
        trans_b=trans_a,
        overwrite_c=1,
    )
    if not np.shares_memory(out, c):  # pragma: no cover - scipy copied c
        c[...] = out.T
    return c


def _r_operator_buffered(point, vecs, dtype, buffers, out):
    """:func:`_r_operator` (Hessian, not Gauss-Newton) for the flat matvec.

    The same R-passes, with ``buffers`` for the temporaries and the product
    written into ``out``, arranged to spare passes over the activations:
    sums of two matrix products accumulate in BLAS (``beta = 1``, the bias
    is the initial value), the multipliers are BLAS's ``alpha``, and the
    backward R-pass computes ``sigma' * (R delta W^T + delta V^T + (g
    sigma'' / sigma') Rz)``, one product by ``sigma'`` instead of two
    (about 7 % of a float32 product on a 64-256-256-10 network).
    """
    arrays = _hvp_arrays(point, dtype, False, buffers, factored=True)
    layers, hs = arrays["layers"], arrays["hs"]
    deltas, derivs = arrays["deltas"], arrays["derivs"]
    factored = arrays["factored"]
    n_layers = len(layers)

    def buf(shape, key):
        return _scratch(buffers, key, shape, dtype)

    dirs = _split_directions(layers, vecs)
    # Forward R-pass: Rz_l = m_W (h_l V_l + Rh_l W_l) + m_b u_l.
    rhs, rzs, rh = [None] * n_layers, [None] * n_layers, None
    for i, (W, m_w, _, m_b) in enumerate(layers):
        V, u = dirs[i]
        rz = buf((hs[i].shape[0], V.shape[1]), ("rz", i))
        beta = 0.0
        if u is not None:
            np.multiply(u, m_b, out=rz)  # broadcast over the samples
            beta = 1.0
        _gemm(hs[i], V, rz, m_w, beta)
        if rh is not None:
            _gemm(rh, W, rz, m_w, 1.0)
        rzs[i] = rz
        if i < n_layers - 1:
            d1 = derivs[i + 1]
            rh = (
                rz
                if d1 is None
                else np.multiply(d1, rz, out=buf(rz.shape, ("rh", i + 1)))
            )
            rhs[i + 1] = rh
    # Backward R-pass, from the output Hessian acting on R f.
    rdelta = point["loss_function"].hessian_action(arrays["prediction"], rzs[-1])
    j = len(vecs)
    for i in range(n_layers - 1, -1, -1):
        W, m_w, b, m_b = layers[i]
        V, _ = dirs[i]
        j -= 1 if b is None else 2
        # the weight parts (fan_in x fan_out, small) with numpy's matmul, which
        # was 10 % faster than scipy's sgemm on these transposed products
        rgW = np.matmul(hs[i].T, rdelta, out=out[j])
        if i > 0:
            rgW += np.matmul(rhs[i].T, deltas[i], out=buf(rgW.shape, ("rhsT", i)))
        if m_w != 1.0:
            rgW *= m_w
        if b is not None:
            rgb = np.sum(rdelta, axis=0, out=out[j + 1])
            if m_b != 1.0:
                rgb *= m_b
        if i == 0:
            break
        rg = buf((rdelta.shape[0], W.shape[0]), ("rg", i))
        beta = 0.0
        if factored[i] is not None:
            np.multiply(factored[i], rzs[i - 1], out=rg)
            beta = 1.0
        _gemm(rdelta, W.T, rg, m_w, beta)
        _gemm(deltas[i], V.T, rg, m_w, 1.0)
        if derivs[i] is not None:
            rg *= derivs[i]
        rdelta = rg
    return out


def mlp_hvp(point, vecs, *, gauss_newton=False, dtype=None):
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
        Return the Gauss-Newton product ``J^T H_out J v`` instead (drops the
        terms with the backpropagated errors and with ``sigma''``), with
        ``H_out`` the loss's output-space Hessian (``I / n_samples`` for the
        squared error).  Its top eigenvalue is that of the NTK Gram matrix
        ``J J^T / n_samples`` for the squared error, of ``H_out^(1/2) J J^T
        H_out^(1/2)`` in general.
    dtype : {None, numpy.float64, numpy.float32}, default=None
        Precision of the R-passes; None is float64.  float32 runs them on
        float32 copies of the stored passes (made on the first such product at
        the point and kept on it) and returns float32 arrays: about 2.5 times
        faster on a 64-256-256-10 network, with relative errors of order
        ``1e-7`` in each entry.  The stored passes stay float64.

    Returns
    -------
    hvp : list of ndarray
        ``H v`` (or ``G v``), same shapes as ``params``, in ``dtype``.

    Examples
    --------
    >>> import numpy as np
    >>> from sharpsk._mlp_kernels import mlp_hvp, mlp_point
    >>> X, Y = np.array([[1.0, 2.0]]), np.array([[0.0]])
    >>> pt = mlp_point([np.array([[1.0], [1.0]])], X, Y, [1.0], "tanh")
    >>> mlp_hvp(pt, [np.array([[1.0], [0.0]])])  # linear model: H = X^T X
    [array([[1.],
           [2.]])]
    >>> mlp_hvp(pt, [np.array([[1.0], [0.0]])], dtype=np.float32)[0].dtype
    dtype('float32')
    """
    dtype = _check_hvp_dtype(dtype)
    if dtype != np.float64:
        vecs = [np.asarray(v, dtype=dtype) for v in vecs]
    return _r_operator(point, vecs, gauss_newton, dtype)


def _scratch(buffers, key, shape, dtype):
    """The array ``buffers[key]`` of ``shape``, made (again) if needed."""
    arr = buffers.get(key)
    if arr is None or arr.shape != shape:
        arr = buffers[key] = np.empty(shape, dtype=dtype)
    return arr


def _split_directions(layers, vecs):
    """``(V, u)`` per layer: the direction ``vecs`` split like the
    parameters (``u`` None for a layer without bias)."""
    dirs, j = [], 0
    for _, _, b, _ in layers:
        dirs.append((vecs[j], None if b is None else vecs[j + 1]))
        j += 1 if b is None else 2
    return dirs


def _r_operator(point, vecs, gauss_newton, dtype, buffers=None, out=None):
    """The R-passes of :func:`mlp_hvp` (``vecs`` already in ``dtype``).

    ``buffers``: a dict of reused arrays for the temporaries (None: new ones),
    ``out``: arrays shaped like the parameters to write the product into
    (None: new ones).  Both change where values are written, not how they
    are computed.  Reusing memory matters: a new 1 MB temporary is fresh
    pages from the system, and faulting them in cost as much as the float32
    products themselves (11.8 vs 8.7 ms per product on a 64-256-256-10
    network).
    """
    arrays = _hvp_arrays(point, dtype, gauss_newton, buffers)
    layers, hs = arrays["layers"], arrays["hs"]
    deltas, derivs = arrays["deltas"], arrays["derivs"]
    curvature = arrays["curvature"]
    n_layers = len(layers)

    def mm(a, b, key):
        if buffers is None:
            return a @ b
        shape = (a.shape[0], b.shape[1])
        return np.matmul(a, b, out=_scratch(buffers, key, shape, dtype))

    def mul(a, b, key):
        if buffers is None:
            return a * b
        return np.multiply(a, b, out=_scratch(buffers, key, a.shape, dtype))

    dirs = _split_directions(layers, vecs)
    # Forward R-pass: Rz_l = m_W (Rh_l W_l + h_l V_l) + m_b u_l.
    rhs, rzs, rh = [None] * n_layers, [None] * n_layers, None
    for i, (W, m_w, _, m_b) in enumerate(layers):
        V, u = dirs[i]
        rz = mm(hs[i], V, ("rz", i))
        if rh is not None:
            rz += mm(rh, W, ("rhW", i))
        if m_w != 1.0:
            rz *= m_w
        if u is not None:
            rz += m_b * u
        rzs[i] = rz
        if i < n_layers - 1:
            d1 = derivs[i + 1]
            rh = rz if d1 is None else mul(d1, rz, ("rh", i + 1))
            rhs[i + 1] = rh
    # Backward R-pass, from the output Hessian acting on R f.
    rdelta = point["loss_function"].hessian_action(arrays["prediction"], rzs[-1])
    result, j = [], len(vecs)
    for i in range(n_layers - 1, -1, -1):
        W, m_w, b, m_b = layers[i]
        V, _ = dirs[i]
        j -= 1 if b is None else 2
        if out is None:
            rgW = hs[i].T @ rdelta
        else:
            rgW = np.matmul(hs[i].T, rdelta, out=out[j])
        if i > 0 and not gauss_newton:
            rgW += mm(rhs[i].T, deltas[i], ("rhsT", i))
        if m_w != 1.0:
            rgW *= m_w
        if b is None:
            result = [rgW] + result
        elif out is None:
            result = [rgW, m_b * rdelta.sum(axis=0)] + result
        else:
            rgb = np.sum(rdelta, axis=0, out=out[j + 1])
            rgb *= m_b
            result = [rgW, rgb] + result
        if i > 0:
            rg = mm(rdelta, W.T, ("rg", i))
            if not gauss_newton:
                rg += mm(deltas[i], V.T, ("dVT", i))
            if m_w != 1.0:
                rg *= m_w
            if derivs[i] is not None:
                rg *= derivs[i]
            if not gauss_newton and curvature[i] is not None:
                # (g sigma'') Rz, as ((g * sigma'') * Rz) before: same rounding
                rg += mul(curvature[i], rzs[i - 1], ("curv", i))
            rdelta = rg
    return result


def _check_hvp_dtype(dtype):
    if dtype is None:
        return np.float64
    dtype = np.dtype(dtype).type
    if dtype not in (np.float64, np.float32):
        raise ValueError(f"dtype must be None, float64 or float32, got {dtype!r}.")
    return dtype


def mlp_matvec(point, *, gauss_newton=False, dtype=None, buffers=None):
    """Flat Hessian (or Gauss-Newton) matvec at a point, for eigensolvers.

    Parameters
    ----------
    point : dict
        From :func:`mlp_point`.
    gauss_newton : bool, default=False
        See :func:`mlp_hvp`.
    dtype : {None, numpy.float64, numpy.float32}, default=None
        Precision of the products, see :func:`mlp_hvp`; the matvec takes and
        returns float64 vectors whatever it is.
    buffers : dict, default=None
        float32 only: where the matvec keeps its float32 copies of the point
        and its temporaries (None: a new dict).  Pass the same dict for the
        successive points of one network (as :class:`MLPModel` does) and no
        product allocates memory after the first point; a matvec whose point
        is not the last one to use the dict copies its point in again.  Not
        for matvecs running at the same time (threads).

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
    >>> from sharpsk._mlp_kernels import mlp_matvec, mlp_point
    >>> X, Y = np.array([[1.0, 2.0]]), np.array([[0.0]])
    >>> pt = mlp_point([np.array([[1.0], [1.0]])], X, Y, [1.0], "tanh")
    >>> matvec, n = mlp_matvec(pt)
    >>> matvec(np.array([0.0, 1.0]))
    array([2., 4.])
    """
    dtype = _check_hvp_dtype(dtype)
    shapes = [p.shape for p in point["params"]]
    bounds = np.cumsum([0] + [int(np.prod(s)) for s in shapes])

    def views(flat):
        return [
            flat[a:b].reshape(s)
            for a, b, s in zip(bounds[:-1], bounds[1:], shapes, strict=True)
        ]

    if dtype == np.float64:

        def matvec(v):
            out = mlp_hvp(point, views(v), gauss_newton=gauss_newton)
            return np.concatenate([h.ravel() for h in out])

        return matvec, int(bounds[-1])

    # float32: the direction, the temporaries and the product in buffers kept
    # by the matvec (the returned float64 vector is new)
    buffers = {} if buffers is None else buffers
    size = int(bounds[-1])
    for key in ("flat_in", "flat_out"):
        if buffers.get(key) is None or buffers[key].shape != (size,):
            buffers[key] = np.empty(size, dtype)
    flat_in, flat_out = buffers["flat_in"], buffers["flat_out"]
    vecs, out = views(flat_in), views(flat_out)

    def matvec(v):
        np.copyto(flat_in, v, casting="unsafe")
        if gauss_newton:
            _r_operator(point, vecs, gauss_newton, dtype, buffers, out)
        else:
            _r_operator_buffered(point, vecs, dtype, buffers, out)
        return flat_out.astype(np.float64)

    return matvec, int(bounds[-1])


class _MLPPoint(Point):
    """The engine's view of :func:`mlp_point` (see :class:`~sharpsk._engine.Point`)."""

    def __init__(self, pt, buffers32=None):
        self.pt = pt
        # float32 scratch shared with the other points of the model (see
        # mlp_matvec): measuring at successive points allocates nothing
        self._buffers32 = buffers32
        self.loss = pt["loss"]
        # max |f - y| for the squared error, the largest |logit| for the log
        # losses (whose residual p - y is bounded): see _losses.Loss
        self.residual_max = pt["loss_function"].divergence_scale(
            pt["output"], pt["residual"]
        )
        self._matvecs = {}

    def gradient(self):
        return np.concatenate([g.ravel() for g in mlp_gradient(self.pt)])

    def _matvec(self, gauss_newton, dtype=None):
        key = (gauss_newton, dtype)
        if key not in self._matvecs:
            buffers = None if dtype is None else self._buffers32
            self._matvecs[key] = mlp_matvec(
                self.pt, gauss_newton=gauss_newton, dtype=dtype, buffers=buffers
            )[0]
        return self._matvecs[key]

    def hvp(self, vec):
        return self._matvec(False)(vec)

    def hvp32(self, vec):
        return self._matvec(False, np.float32)(vec)

    def gauss_newton(self, vec):
        return self._matvec(True)(vec)


class MLPModel(Model):
    """A fully connected network and its loss, as an engine model.

    Parameters
    ----------
    X, Y : ndarray
        Inputs and 2-D targets.
    shapes : list of tuple
        Shapes of ``[W_0, b_0, ...]`` in the flat parameter vector.
    multipliers : list of float
        One per entry of ``shapes``.
    activation : str
        Hidden-layer activation.
    loss : str, default="squared_error"
        A key of :data:`~sharpsk._losses.LOSS_FUNCTIONS`.
    """

    def __init__(self, X, Y, shapes, multipliers, activation, loss="squared_error"):
        self.X, self.Y, self.shapes = X, Y, shapes
        self.multipliers, self.activation, self.loss = multipliers, activation, loss
        self.bounds = np.cumsum([0] + [int(np.prod(sh)) for sh in shapes])
        self.n_params = int(self.bounds[-1])
        self.target_max = float(np.max(np.abs(Y))) if Y.size else 0.0
        self._buffers32 = {}  # float32 products' scratch, see _MLPPoint

    def __getstate__(self):
        return {**self.__dict__, "_buffers32": {}}  # scratch: not pickled

    def unflatten(self, theta):
        """Views of ``theta`` shaped like the parameters."""
        b = self.bounds
        return [theta[b[i] : b[i + 1]].reshape(sh) for i, sh in enumerate(self.shapes)]

    def point(self, theta, rows=None, forward=None):
        """The point at ``theta`` (on the samples ``rows``); ``forward``: its
        forward pass when already computed, see :func:`mlp_point`."""
        X, Y = (self.X, self.Y) if rows is None else (self.X[rows], self.Y[rows])
        return _MLPPoint(
            mlp_point(
                self.unflatten(theta),
                X,
                Y,
                self.multipliers,
                self.activation,
                self.loss,
                forward=forward,
            ),
            self._buffers32,
        )
