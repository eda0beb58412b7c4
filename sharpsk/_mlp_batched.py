"""The batched engine of fully connected networks (scan protocol).

:class:`~sharpsk.MLPRegressor` and :class:`~sharpsk.MLPClassifier` offer it to
:class:`~sharpsk.LearningRateScan` through ``batched_engine(X, y)``: many runs
of one architecture (learning rates, seeds, initialization scales) trained at
once, their parameters stacked into ``(n_runs, n_params)`` arrays, with the
numbers of one fit per run, bit for bit.

How the identity is kept:

* the gradient step is :func:`sharpsk._mlp_kernels.mlp_point` and the backpropagation
  of :func:`sharpsk._mlp_kernels.mlp_gradient` written on stacked arrays with the same
  operations in the same order: ``numpy.matmul`` on ``(n_runs, n, h)`` stacks
  calls the BLAS product of the single run on every slice, and every reduction
  runs along the same axis and contiguity as in the single run;
* the step itself is the optimizer object's ``update`` (elementwise);
* every recorded value comes from the per-run code: at a recorded step each
  run's point is the :func:`sharpsk._mlp_kernels.mlp_point` dict of its
  parameter vector (its activations and output taken from the stacked
  forward pass, which computes the same numbers, its loss from the loss
  table), and its sharpness is a :class:`~sharpsk._sharpness.TopEigenTracker`
  of its own fed with that point's Hessian-vector products, as in
  :func:`sharpsk._engine.train`;
* runs starting from the same parameters (and measurement rows) measure
  their first record once: the other runs get a copy of that tracker and
  record, which is what measuring them would give (an update is a
  deterministic function of the tracker's state and the operator);
* the labels and tails are :func:`sharpsk._dynamics.summarize_run` of each
  run's traces, the function of the per-run scan worker.

A diverged run is recorded as the per-run engine records it (its last finite
state closes the traces) and leaves the batch.
"""

import copy
import hashlib

import numpy as np
from scipy.special import log_expit, log_softmax, softmax

from ._dynamics import summarize_run
from ._engine import limit_blas_threads
from ._losses import get_loss
from ._maps import divergence_bound
from ._mlp_kernels import MLPModel, _activate, _first_derivative
from ._optimizers import make_optimizer
from ._sharpness import TopEigenTracker

__all__ = ["FrozenArray", "batched_pays", "mlp_batched_runs"]

# Elements of the largest activation array of a chunk of runs (runs x samples
# x width) trained together: 256 KiB, so that a chunk's working set stays in
# the core's cache (stacks of several MiB stream through memory and lose to
# one run at a time).
_CHUNK_ELEMENTS = 2**15

# engine="auto" picks the batched engine for networks whose largest
# activation array (samples x width) has at most this many elements, with
# record_every >= _AUTO_MIN_RECORD_EVERY.  Measured (benchmarks/run.py,
# bench_mlp_batched): the batched step saves the per-run engine's Python
# overhead, which only small networks are dominated by; the sharpness
# measurements stay one tracker per run, so frequent records leave little to
# save (and cost a second forward pass at each record).
_AUTO_MAX_ELEMENTS = 2048
_AUTO_MIN_RECORD_EVERY = 10

# A loss whose batched value exceeds this is recomputed run by run with the
# loss table's own function, so that overflow decides divergence exactly as in
# the per-run engine (summation orders may differ in the last bits).
_LOSS_OVERFLOW_GUARD = 1e300


class FrozenArray:
    """A read-only array as a hashable static argument of a batched kernel.

    The scan groups runs by their engine's ``key`` (hashable ``(name,
    value)`` pairs); data arrays go in it wrapped in this.  Equal when the
    arrays are; ``numpy.asarray`` unwraps it.

    Parameters
    ----------
    array : array-like
        Copied.
    """

    __slots__ = ("array", "_hash")

    def __init__(self, array):
        array = np.array(array, copy=True)
        array.flags.writeable = False
        self.array = array
        digest = hashlib.sha1(np.ascontiguousarray(array).tobytes()).hexdigest()
        self._hash = hash((array.shape, array.dtype.str, digest))

    def __array__(self, dtype=None, copy=None):
        if dtype is None or np.dtype(dtype) == self.array.dtype:
            return self.array.copy() if copy else self.array
        return self.array.astype(dtype)

    def __hash__(self):
        return self._hash

    def __eq__(self, other):
        return (
            isinstance(other, FrozenArray)
            and self._hash == other._hash
            and np.array_equal(self.array, other.array)
        )

    def __getstate__(self):
        return {"array": self.array, "_hash": self._hash}

    def __setstate__(self, state):
        array = np.array(state["array"], copy=True)
        array.flags.writeable = False
        self.array, self._hash = array, state["_hash"]

    def __repr__(self):
        return f"FrozenArray(shape={self.array.shape}, dtype={self.array.dtype})"


# --------------------------------------------------------------------------
# The gradient step on stacked parameters
# --------------------------------------------------------------------------
class _Net:
    """Static description of the network: shapes, multipliers, loss."""

    def __init__(self, X, Y, shapes, multipliers, activation, loss):
        self.X, self.Y = X, Y
        self.n = X.shape[0]
        self.activation = activation
        self.loss = get_loss(loss)
        self.bounds = np.cumsum([0] + [int(np.prod(sh)) for sh in shapes])
        self.n_params = int(self.bounds[-1])
        # (W slice, W shape, m_W, b slice or None, m_b) per layer, as _layers
        self.layers, i = [], 0
        while i < len(shapes):
            w = (slice(self.bounds[i], self.bounds[i + 1]), tuple(shapes[i]))
            m_w = float(multipliers[i])
            i += 1
            if i < len(shapes) and len(shapes[i]) == 1:
                b = slice(self.bounds[i], self.bounds[i + 1])
                self.layers.append((*w, m_w, b, float(multipliers[i])))
                i += 1
            else:
                self.layers.append((*w, m_w, None, None))

    def weights(self, theta, i):
        """Layer ``i``'s weights of every run: a view ``(n_runs, fan_in, fan_out)``."""
        sl, shape, _, _, _ = self.layers[i]
        return theta[:, sl].reshape((theta.shape[0], *shape))

    def forward(self, theta):
        """:func:`~sharpsk._mlp_kernels.mlp_point` of every run (same rounding)."""
        hs = [self.X]
        n_layers = len(self.layers)
        for i, (_, _, m_w, b_sl, m_b) in enumerate(self.layers):
            z = np.matmul(hs[-1], self.weights(theta, i))
            if m_w != 1.0:
                z *= m_w
            if b_sl is not None:
                z += (m_b * theta[:, b_sl])[:, None, :]
            if i == n_layers - 1:
                out = z
            else:
                hs.append(_activate(self.activation, z))
        if self.loss.name == "log_loss":  # softmax along the outputs
            pred = softmax(out, axis=-1)
        else:
            pred = self.loss.prediction(out)
        residual = pred - self.Y
        return {"hs": hs, "output": out, "prediction": pred, "residual": residual}

    def loss_values(self, cache):
        """Loss of every run: the loss table's value, summed run by run."""
        F, Y, name = cache["output"], self.Y, self.loss.name
        R = F.shape[0]
        if name == "squared_error":
            r = F - Y
            values = 0.5 * np.sum((r * r).reshape(R, -1), axis=1) / self.n
        elif name == "log_loss":
            terms = Y * log_softmax(F, axis=-1)
            values = -np.sum(terms.reshape(R, -1), axis=1) / self.n
        elif name == "binary_log_loss":
            terms = Y * log_expit(F) + (1.0 - Y) * log_expit(-F)
            values = -np.sum(terms.reshape(R, -1), axis=1) / self.n
        else:  # a loss without a batched form
            values = np.full(R, np.inf)
        # near overflow (or not finite) the per-run function decides
        redo = ~(np.abs(values) <= _LOSS_OVERFLOW_GUARD)
        for j in np.flatnonzero(redo).tolist():
            values[j] = self.loss.value(F[j], Y)
        return values

    def divergence_scale(self, cache):
        """``residual_max`` of ``_MLPPoint`` (``_mlp_kernels``) for every run."""
        R = cache["output"].shape[0]
        if self.loss.name == "squared_error":
            values = cache["residual"]
        else:  # the log losses watch the logits (see _losses.Loss)
            values = cache["output"]
        return np.max(np.abs(values).reshape(R, -1), axis=1)

    def gradient(self, theta, cache):
        """Backpropagation of ``mlp_gradient`` (``_mlp_kernels``), flat per run."""
        hs = cache["hs"]
        # the loss table's dL/dF: (P - Y) / n_samples
        delta = cache["residual"] / self.n
        grad = np.empty_like(theta)
        for i in range(len(self.layers) - 1, -1, -1):
            w_sl, shape, m_w, b_sl, m_b = self.layers[i]
            g_w = grad[:, w_sl].reshape((theta.shape[0], *shape))
            np.matmul(np.swapaxes(hs[i], -1, -2), delta, out=g_w)
            if m_w != 1.0:
                g_w *= m_w
            if b_sl is not None:
                np.multiply(m_b, delta.sum(axis=-2), out=grad[:, b_sl])
            if i > 0:
                g = np.matmul(delta, np.swapaxes(self.weights(theta, i), -1, -2))
                if m_w != 1.0:
                    g *= m_w
                d1 = _first_derivative(self.activation, hs[i])
                delta = g if d1 is None else g * d1
        return grad

    def point(self, model, theta_r, cache, j):
        """Run ``j``'s :meth:`~sharpsk._mlp_kernels.MLPModel.point` at
        ``theta_r``, from the stacked forward pass ``cache`` (the same
        numbers as its own pass, see :meth:`forward`)."""
        hs = [self.X] + [h[j] for h in cache["hs"][1:]]
        return model.point(theta_r, forward=(hs, cache["output"][j]))


def _take(cache, keep):
    """The cache of the runs ``keep`` (a boolean mask)."""
    hs = cache["hs"]
    return {
        "hs": [hs[0]] + [h[keep] for h in hs[1:]],
        **{k: cache[k][keep] for k in ("output", "prediction", "residual")},
    }


def _train_chunk(
    net, model, theta, eta, optimizer, max_iter, record_every, tol, rows, starts
):
    """Train one chunk of runs; returns per-run traces, ``n_iter``, ``diverged``.

    ``starts``: a dict shared by the chunks of one call, the first tracker
    and record of every start measured so far.
    """
    R = theta.shape[0]
    trackers = [TopEigenTracker(tol=tol, random_state=0) for _ in range(R)]
    traces = [{"steps": [], "loss": [], "sharpness": []} for _ in range(R)]

    def measure(r, t, theta_r, cache, j):
        """The records of :func:`~sharpsk._engine.train` at step ``t``.

        ``theta_r`` is row ``j`` of the chunk's parameters, ``cache`` their
        forward pass.
        """
        point = net.point(model, theta_r, cache, j)
        mpoint = point if rows is None else model.point(theta_r, rows[r])
        sharp = np.nan
        if np.isfinite(mpoint.loss):
            sharp = (
                trackers[r]
                .update(mpoint.hvp, model.n_params, matvec32=mpoint.hvp32)
                .eigenvalue
            )
        traces[r]["steps"].append(t)
        traces[r]["loss"].append(point.loss)
        traces[r]["sharpness"].append(sharp)

    n_iter = np.full(R, int(max_iter))
    diverged = np.zeros(R, dtype=bool)
    idx = np.arange(R)
    cache = net.forward(theta)
    loss = net.loss_values(cache)
    bound = divergence_bound(net.divergence_scale(cache), model.target_max)
    # Runs starting from the same parameters (and measurement rows) share
    # their first record: a tracker's update is a deterministic function of
    # its state and its operator, so measuring once and copying the tracker
    # gives every such run the record and the tracker of measuring it.
    # ``starts`` (shared by the chunks) maps a start to its first tracker and
    # record.
    for r in range(R):
        start = theta[r].tobytes() + (b"" if rows is None else rows[r].tobytes())
        if start not in starts:
            measure(r, 0, theta[r], cache, r)
            starts[start] = (copy.deepcopy(trackers[r]), traces[r])
        tracker, record = starts[start]
        trackers[r] = copy.deepcopy(tracker)
        traces[r] = {name: list(values) for name, values in record.items()}
    # a non-finite start: one record, no step
    keep = np.isfinite(loss) & np.all(np.isfinite(theta), axis=1)
    if not keep.all():
        diverged[~keep], n_iter[~keep] = True, 0
        idx, theta, bound, cache = (
            idx[keep],
            theta[keep],
            bound[keep],
            _take(cache, keep),
        )
    eta_col = eta[idx, None]
    state = {
        key: np.repeat(np.asarray(value)[None], idx.size, axis=0)
        for key, value in optimizer.init_state(net.n_params).items()
    }
    t = 0
    while idx.size:
        if t != 0 and (t % record_every == 0 or t == max_iter):
            for j, r in enumerate(idx.tolist()):
                measure(r, t, theta[j], cache, j)
        if t == max_iter:
            break
        grad = net.gradient(theta, cache)
        new_theta, new_state = optimizer.update(theta, grad, eta_col, state)
        new_cache = net.forward(new_theta)
        ok = (net.divergence_scale(new_cache) <= bound) & np.isfinite(
            net.loss_values(new_cache)
        )
        ok &= np.all(np.isfinite(new_theta), axis=1)
        if not ok.all():
            for j in np.flatnonzero(~ok).tolist():
                r = int(idx[j])
                diverged[r], n_iter[r] = True, t
                if t % record_every != 0:  # the last finite state closes the traces
                    measure(r, t, theta[j], cache, j)
            idx, eta_col, bound = idx[ok], eta_col[ok], bound[ok]
            new_theta, new_cache = new_theta[ok], _take(new_cache, ok)
            new_state = {key: value[ok] for key, value in new_state.items()}
        theta, state, cache = new_theta, new_state, new_cache
        t += 1
    return traces, n_iter, diverged


def batched_pays(n_samples, widths, record_every):
    """Whether ``engine="auto"`` should pick the batched engine (measured).

    Parameters
    ----------
    n_samples : int
        Training samples.
    widths : sequence of int
        Output width of every layer.
    record_every : int
        Recording schedule.

    Returns
    -------
    pays : bool
    """
    return (
        n_samples * max(widths) <= _AUTO_MAX_ELEMENTS
        and record_every >= _AUTO_MIN_RECORD_EVERY
    )


def _chunk_size(n_samples, widths):
    return max(1, _CHUNK_ELEMENTS // max(1, n_samples * max(widths)))


def mlp_batched_runs(
    eta,
    theta0,
    *,
    X,
    Y,
    shapes,
    multipliers,
    activation,
    loss,
    optimizer="gd",
    momentum=0.9,
    max_iter,
    record_every,
    sharpness_tol,
    blas_threads=1,
    sharpness_batch_size=None,
    measure_rows=None,
    n_input_warnings=0,
    analysis,
    n_tail_points,
    chunk_size=None,
):
    """Many full-batch runs of one network at once, labelled as the scan does.

    The runs of :class:`~sharpsk.MLPRegressor` or
    :class:`~sharpsk.MLPClassifier` fits (full batch, a non-adaptive
    optimizer, a constant learning rate, one tracked eigenvalue), each
    summarised by :func:`~sharpsk._dynamics.summarize_run`: the numbers of
    fitting one estimator per run and calling the scan's per-run worker,
    bit for bit.

    Parameters
    ----------
    eta : ndarray of shape (n_runs,)
        Step size of each run.
    theta0 : ndarray of shape (n_runs, n_params)
        Initial flat parameters of each run (the engine's coordinates).
    X : array-like of shape (n_samples, n_features)
        Inputs (a :class:`FrozenArray` in the engine's key).
    Y : array-like of shape (n_samples, n_outputs)
        2-D float targets, as the estimator trains on them.
    shapes : sequence of tuple
        Shapes of ``[W_0, b_0, ...]`` in the flat parameter vector.
    multipliers : sequence of float
        One per entry of ``shapes``.
    activation : str
        Hidden-layer activation.
    loss : str
        A key of :data:`~sharpsk._losses.LOSS_FUNCTIONS`.
    optimizer : {"gd", "momentum", "nesterov"}, default="gd"
        Update rule; ``momentum`` is its ``beta``.
    momentum : float, default=0.9
        See ``optimizer``.
    max_iter, record_every : int
        Steps and recording schedule.
    sharpness_tol : float
        Tolerance of the tracked eigenvalue.
    blas_threads : int or None, default=1
        BLAS threads during the runs.
    sharpness_batch_size : int or None, default=None
        Size of the measurement batch (None: all samples).
    measure_rows : ndarray of shape (n_runs, sharpness_batch_size), default=None
        Sample indices of each run's measurement batch (required with
        ``sharpness_batch_size``).
    n_input_warnings : int, default=0
        Warnings validating the inputs raises in one fit (counted per run, as
        the per-run worker counts them).
    analysis : dict
        ``tail``, ``max_period``, ``rtol``, ``edge_band``, ``lyapunov_tol``.
    n_tail_points : int or None
        Records kept per run (None: all of them).
    chunk_size : int, default=None
        Runs trained together (None: as many as keep the activations of one
        chunk at about 256 KiB).  No number depends on it.

    Returns
    -------
    result : dict
        Arrays of shape (n_runs,) keyed like the per-run worker's result
        (``label``, ``period``, ... ``n_iter``, ``n_warnings``), and ``tails``:
        one ``(tail_steps, tail_sharpness, tail_loss)`` per run.
    """
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    eta = np.asarray(eta, dtype=np.float64).ravel()
    R = eta.size
    shapes = [tuple(int(s) for s in sh) for sh in shapes]
    net = _Net(X, Y, shapes, multipliers, activation, loss)
    theta0 = np.asarray(theta0, dtype=np.float64).reshape(R, net.n_params)
    model = MLPModel(X, Y, shapes, list(multipliers), activation, loss)
    opt = make_optimizer(optimizer, momentum=momentum)
    if opt.adaptive:
        raise ValueError(
            f"optimizer={optimizer!r}: the batched engine runs non-adaptive "
            "optimizers only (the adaptive ones track a preconditioned sharpness)."
        )
    if (sharpness_batch_size is None) != (measure_rows is None):
        raise ValueError(
            "measure_rows (the measurement batch of every run) must be given "
            "with sharpness_batch_size, and only with it."
        )
    if chunk_size is None:
        chunk_size = _chunk_size(net.n, [sh[-1] for sh in shapes])
    traces, n_iter, diverged, starts = [], [], [], {}
    with (
        limit_blas_threads(blas_threads),
        np.errstate(over="ignore", invalid="ignore", divide="ignore"),
    ):
        for first in range(0, R, int(chunk_size)):
            block = slice(first, first + int(chunk_size))
            rows = None if measure_rows is None else np.asarray(measure_rows)[block]
            tr, it, dv = _train_chunk(
                net,
                model,
                np.array(theta0[block]),
                eta[block],
                opt,
                int(max_iter),
                int(record_every),
                sharpness_tol,
                rows,
                starts,
            )
            traces += tr
            n_iter.append(it)
            diverged.append(dv)
    n_iter, diverged = np.concatenate(n_iter), np.concatenate(diverged)

    columns, tails = {}, []
    for r in range(R):
        eta_r = float(eta[r])
        summary = summarize_run(
            np.asarray(traces[r]["loss"], dtype=float),
            np.asarray(traces[r]["sharpness"], dtype=float),
            eta_r,
            float(opt.stability_threshold(eta_r)),
            np.asarray(traces[r]["steps"], dtype=np.int64),
            diverged=bool(diverged[r]),
            analysis=analysis,
            n_tail_points=n_tail_points,
        )
        tails.append(
            (
                summary.pop("tail_steps"),
                summary.pop("tail_sharpness"),
                summary.pop("tail_loss"),
            )
        )
        summary["n_iter"] = int(n_iter[r])
        # the per-run fit warns once when it diverges (DivergenceWarning)
        summary["n_warnings"] = int(n_input_warnings) + int(diverged[r])
        for key, value in summary.items():
            columns.setdefault(key, []).append(value)
    out = {}
    for key, values in columns.items():
        if key == "label":
            col = np.empty(R, dtype=object)
            col[:] = values
        else:
            col = np.asarray(values)
        out[key] = col
    out["tails"] = tails
    return out
