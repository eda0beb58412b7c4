"""Pure eigen kernels: the top eigenvalue of a Hessian (the *sharpness*).

Everything here takes a loss (a function of a list of arrays) or a symmetric
operator given as a flat ``matvec`` and returns plain numpy values:

* :func:`flatten_params` / :func:`unflatten_params` convert between the list
  of parameter arrays that autograd differentiates and one flat vector;
* :func:`gradient_and_hvp` records ONE forward/backward pass and returns the
  gradient together with a flat Hessian-vector-product (HVP) closure that
  reuses it (``autograd.differential_operators.make_hvp``), so a
  gradient-descent step and its sharpness measurement share the pass;
* :func:`hessian_dense` builds the exact Hessian from ``P`` HVPs;
* :func:`top_eigenpair` finds the largest *algebraic* eigenvalue of a
  symmetric operator: a warm-started Lanczos with full reorthogonalization
  (default), or scipy's LOBPCG / ARPACK, or a dense eigendecomposition;
* :func:`top_hessian_eigenpair` puts the two together.

The loss is the only code autograd differentiates; write it with
``autograd.numpy`` (``import autograd.numpy as anp``).  No autograd object is
ever returned except the HVP closure of :func:`gradient_and_hvp`.
"""

import warnings
from typing import NamedTuple

import numpy as np
from autograd.differential_operators import make_hvp
from scipy.linalg import LinAlgError
from scipy.linalg.blas import dgemv as _dgemv
from scipy.sparse.linalg import (
    ArpackError,
    ArpackNoConvergence,
    LinearOperator,
    eigsh,
    lobpcg,
)
from sklearn.utils import check_random_state

__all__ = [
    "EigenResult",
    "TopEigenTracker",
    "flatten_params",
    "gradient_and_hvp",
    "hessian_dense",
    "top_eigenpair",
    "top_hessian_eigenpair",
    "unflatten_params",
]

_EPS = np.finfo(np.float64).eps
_OPERATOR_METHODS = ("lanczos", "lobpcg", "arpack", "dense")
_HESSIAN_METHODS = ("auto",) + _OPERATOR_METHODS
# Default Krylov dimension cap of the Lanczos path (memory: cap * n floats).
_DEFAULT_MAX_MATVEC = 200
# Below this size LOBPCG/ARPACK are not applicable (scipy itself falls back to
# a dense solver with a warning); we build the matrix from n matvecs instead.
_SMALL_N = 5
# Safety factors on the Kato-Temple estimate after two products (see
# _lanczos): Krylov basis {q, A q}, and a basis whose second vector is a warm
# start for the second eigenvector (its Ritz value is then a fair lambda_2).
_TWO_VECTOR_SAFETY = 10.0
_TWO_BLOCK_SAFETY = 3.0
# Smallest basis a random (cold) start may stop at: below it, a start with a
# small component along the top eigenvector can "converge" to lambda_2 (on a
# digits MLP at the edge of stability: 46 of 600 cold starts at tol=1e-4 with
# no minimum, 1 with 20 products, none with 30).
_COLD_MIN_MATVEC = 30
# Float32 products (TopEigenTracker.update's matvec32) are used from this
# tolerance up: they moved the eigenvalue by 3e-10 to 1.3e-8 (relative) on a
# digits MLP Hessian and by 1.2e-7 on a 3-parameter linear model; a product
# by 2e-7.  Every _FLOAT32_CHECK-th update a float64 product checks that the
# shift is below _FLOAT32_SHIFT * tol (else float64 from then on).
_FLOAT32_MIN_TOL = 1e-5
_FLOAT32_CHECK = 100
_FLOAT32_SHIFT = 0.1
# Second Gram-Schmidt pass when the first one shrinks a vector below this.
_DGKS = 1.0 / np.sqrt(2.0)
# Extra warm-start columns whose part orthogonal to the basis is shorter than
# this (they are unit vectors) add too little to pay for a product.
_BLOCK_MIN_NEW = 0.05


class EigenResult(NamedTuple):
    """Top eigenpair of a symmetric operator.

    Attributes
    ----------
    eigenvalue : float
        Estimate of the largest algebraic eigenvalue (NaN if the operator
        returned non-finite values).
    eigenvector : ndarray of shape (n,)
        Flat unit-norm float64 eigenvector estimate.
    n_hvp : int
        Number of matrix-vector (Hessian-vector) products spent.
    converged : bool
        Whether the stopping criterion was met within the budget.
    """

    eigenvalue: float
    eigenvector: np.ndarray
    n_hvp: int
    converged: bool


# ----------------------------------------------------------------------------
# Parameter lists <-> flat vectors
# ----------------------------------------------------------------------------
def _as_param_list(params, name="params"):
    if isinstance(params, np.ndarray) or not isinstance(params, (list, tuple)):
        raise TypeError(
            f"{name} must be a list or tuple of arrays, got {type(params).__name__}."
        )
    return [np.asarray(p, dtype=np.float64) for p in params]


def flatten_params(params):
    """Concatenate a list of arrays into one flat float64 vector.

    Parameters
    ----------
    params : list or tuple of array-like
        Parameter arrays of any shapes (scalars allowed).

    Returns
    -------
    vec : ndarray of shape (P,)
        The raveled arrays one after another (C order), ``P`` the total size.

    Examples
    --------
    >>> import numpy as np
    >>> from sharpsk._sharpness import flatten_params
    >>> flatten_params([np.array([[1, 2], [3, 4]]), np.array([5.0])])
    array([1., 2., 3., 4., 5.])
    """
    arrays = _as_param_list(params)
    if not arrays:
        return np.empty(0, dtype=np.float64)
    return np.concatenate([a.ravel() for a in arrays])


def unflatten_params(vec, like):
    """Split a flat vector into arrays shaped like ``like``.

    Inverse of :func:`flatten_params`.

    Parameters
    ----------
    vec : array-like of shape (P,)
        Flat vector, ``P`` the total size of ``like``.
    like : list or tuple of array-like
        Arrays whose shapes are used (their values are ignored).

    Returns
    -------
    params : list of ndarray
        New float64 arrays (copies, not views of ``vec``).

    Examples
    --------
    >>> import numpy as np
    >>> from sharpsk._sharpness import unflatten_params
    >>> unflatten_params(np.arange(5.0), [np.zeros((2, 2)), np.zeros(1)])
    [array([[0., 1.],
           [2., 3.]]), array([4.])]
    """
    shapes = [np.shape(p) for p in _as_param_list(like, name="like")]
    sizes = [int(np.prod(s)) for s in shapes]
    vec = np.asarray(vec, dtype=np.float64)
    if vec.ndim != 1 or vec.size != sum(sizes):
        raise ValueError(
            f"vec must be a 1-D array of size {sum(sizes)} (the total size of "
            f"like), got shape {vec.shape}."
        )
    out, start = [], 0
    for shape, size in zip(shapes, sizes, strict=True):
        out.append(vec[start : start + size].reshape(shape).copy())
        start += size
    return out


# ----------------------------------------------------------------------------
# Autograd: gradient, Hessian-vector products, dense Hessian
# ----------------------------------------------------------------------------
def gradient_and_hvp(loss, params):
    """Gradient and a reusable Hessian-vector-product closure, in one pass.

    The forward pass of ``loss`` and the backward pass giving its gradient are
    recorded once (``autograd.differential_operators.make_hvp``); each call of
    the returned closure is then one reverse pass through that record, i.e.
    one exact Hessian-vector product, with no new forward pass.  One call per
    gradient-descent step therefore gives both the step and the sharpness.

    Parameters
    ----------
    loss : callable
        ``loss(params) -> scalar``, written with ``autograd.numpy``.
    params : list or tuple of array-like
        Point at which to differentiate (converted to float64 arrays).

    Returns
    -------
    grad : list of ndarray
        Gradient of ``loss`` at ``params``, same shapes as ``params``.
    hvp : callable
        ``hvp(v) -> H @ v`` for a flat ``v`` of shape (P,), returning shape
        (P,); ``H`` is the Hessian at ``params`` (a private copy is kept,
        so later in-place updates of ``params`` do not affect it).  It keeps
        the recorded computation alive: do not store it on estimators (not
        picklable).

    Examples
    --------
    >>> import numpy as np
    >>> import autograd.numpy as anp
    >>> from sharpsk._sharpness import gradient_and_hvp
    >>> loss = lambda p: anp.sum(p[0] ** 3) + p[0][0] * p[1][0]
    >>> grad, hvp = gradient_and_hvp(loss, [np.array([1.0, 2.0]), np.array([3.0])])
    >>> grad
    [array([ 6., 12.]), array([1.])]
    >>> hvp(np.array([1.0, 0.0, 0.0]))  # first column of the Hessian
    array([6., 0., 1.])
    """
    if not callable(loss):
        raise TypeError(f"loss must be callable, got {type(loss).__name__}.")
    # private copies: updating the caller's arrays in place later must not
    # change what the recorded pass (and so the closure) refers to
    params = [p.copy() for p in _as_param_list(params)]
    size = sum(p.size for p in params)
    vjp, grad = make_hvp(loss)(params)
    grad = [np.asarray(g, dtype=np.float64) for g in grad]

    def hvp(vec):
        vec = np.asarray(vec, dtype=np.float64)
        if vec.shape != (size,):
            raise ValueError(
                f"hvp expects a flat vector of shape ({size},), got {vec.shape}."
            )
        return flatten_params(vjp(unflatten_params(vec, params)))

    return grad, hvp


def _dense_from_matvec(matvec, n):
    """``(A, finite)``: the matrix of ``matvec`` from ``n`` products, symmetrized."""
    cols = np.empty((n, n))
    eye = np.eye(n)
    for i in range(n):
        cols[i] = matvec(eye[i])
    finite = bool(np.all(np.isfinite(cols)))
    if finite:
        cols = 0.5 * (cols + cols.T)  # exact up to round-off; enforce symmetry
    return cols, finite


def hessian_dense(loss, params):
    """Exact dense Hessian of ``loss`` at ``params`` (flattened order).

    Built column by column from ``P`` exact Hessian-vector products of
    :func:`gradient_and_hvp` (one recorded forward/backward pass), then
    symmetrized ``(H + H.T) / 2`` to remove round-off asymmetry.

    Parameters
    ----------
    loss : callable
        ``loss(params) -> scalar``, written with ``autograd.numpy``.
    params : list or tuple of array-like
        Point at which to differentiate.

    Returns
    -------
    hessian : ndarray of shape (P, P)
        ``hessian[i, j] = d^2 loss / d w_i d w_j`` with
        ``w = flatten_params(params)``.

    Examples
    --------
    >>> import numpy as np
    >>> import autograd.numpy as anp
    >>> from sharpsk._sharpness import hessian_dense
    >>> loss = lambda p: p[0][0] ** 2 * p[1][0]
    >>> hessian_dense(loss, [np.array([3.0]), np.array([2.0])])
    array([[4., 6.],
           [6., 0.]])
    """
    params = _as_param_list(params)
    _, hvp = gradient_and_hvp(loss, params)
    n = sum(p.size for p in params)
    return _dense_from_matvec(hvp, n)[0]


# ----------------------------------------------------------------------------
# Top eigenpair of a symmetric operator
# ----------------------------------------------------------------------------
class _BudgetExhausted(Exception):
    pass


class _CountingOperator:
    """Counts matvecs, enforces a budget, remembers the best Rayleigh quotient.

    ``track_best=False`` skips the last (two products per call): only scipy's
    solvers, which can stop anywhere, need it.
    """

    def __init__(self, matvec, n, budget, track_best=True):
        self.matvec, self.n, self.budget = matvec, n, budget
        self.track_best = track_best
        self.count = 0
        self.best_value, self.best_vector = -np.inf, None
        self.finite = True

    def __call__(self, vec):
        if self.count >= self.budget:
            raise _BudgetExhausted
        vec = np.asarray(vec, dtype=np.float64).reshape(-1)
        out = np.asarray(self.matvec(vec.copy()), dtype=np.float64)  # a copy:
        # matvec may write into its argument, vec may be a row of the basis
        self.count += 1
        if out.shape != (self.n,):
            raise ValueError(
                f"matvec must return an array of shape ({self.n},), got {out.shape}."
            )
        # one sweep when finite (a huge finite entry makes out @ out overflow:
        # then the elementwise test decides)
        if not np.isfinite(out @ out) and not np.all(np.isfinite(out)):
            self.finite = False
            return out
        if not self.track_best:
            return out
        norm2 = vec @ vec
        if norm2 > 0:
            value = (vec @ out) / norm2
            if value > self.best_value:
                self.best_value, self.best_vector = value, vec / np.sqrt(norm2)
        return out

    def matmat(self, block):
        block = np.asarray(block)
        if block.ndim == 1:
            return self(block)
        return np.column_stack([self(block[:, j]) for j in range(block.shape[1])])


def _check_tol(tol):
    if (
        isinstance(tol, bool)
        or not isinstance(tol, (int, float, np.integer, np.floating))
        or not np.isfinite(tol)
        or not 0 < tol < 1
    ):
        raise ValueError(
            f"tol must be a float in the open interval (0, 1), got {tol!r}."
        )
    return float(tol)


def _check_positive_int(value, name, allow_zero=False):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}.")
    if value < (0 if allow_zero else 1):
        bound = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{name} must be a {bound} integer, got {value!r}.")
    return int(value)


def _check_v0(v0, n, random_state):
    if v0 is None:
        v0 = check_random_state(random_state).standard_normal(n)
        return v0 / np.linalg.norm(v0)
    if isinstance(v0, (list, tuple)):
        v0 = flatten_params(v0)
    v0 = np.asarray(v0, dtype=np.float64)
    if v0.shape != (n,):
        raise ValueError(f"v0 must have shape ({n},), got {v0.shape}.")
    if not np.all(np.isfinite(v0)):
        raise ValueError("v0 must be finite (it contains NaN or inf).")
    norm = np.linalg.norm(v0)
    if norm == 0:
        raise ValueError("v0 must be a nonzero vector.")
    return v0 / norm


def _check_extra_starts(extra, n):
    """Unit vectors (contiguous) from the columns of ``extra``; zero columns dropped.

    ``extra`` of shape (n, m) or (n,), or None (no columns).
    """
    if extra is None:
        return []
    extra = np.asarray(extra, dtype=np.float64)
    if extra.ndim == 1:
        extra = extra[:, None]
    if extra.ndim != 2 or extra.shape[0] != n:
        raise ValueError(
            f"extra_starts must have shape ({n}, m) or ({n},), got {extra.shape}."
        )
    if not np.all(np.isfinite(extra)):
        raise ValueError("extra_starts must be finite (it contains NaN or inf).")
    columns = []
    for j in range(extra.shape[1]):
        col = np.ascontiguousarray(extra[:, j])
        norm = np.linalg.norm(col)
        if norm > 0:
            columns.append(col / norm)
    return columns


def _orient(vec, ref, inplace=False):
    """Unit ``vec`` with the sign making ``vec @ ref >= 0``.

    ``inplace``: scale ``vec`` itself (a new array of the caller's).
    """
    scale = 1.0 / np.sqrt(vec @ vec)
    if vec @ ref < 0:
        scale = -scale
    if inplace:
        vec *= scale
        return vec
    return vec * scale


def _nan_result(v0, n_mv):
    return EigenResult(float("nan"), v0.copy(), n_mv, False)


class _Ritz(NamedTuple):
    """Internal result of :func:`_lanczos`: the public one plus the runner-up."""

    result: EigenResult
    second_value: float
    second_vector: np.ndarray | None


def _project_out(vec, basis, coef):
    """``vec -= basis.T @ coef`` in place (BLAS ``dgemv`` on the transposed rows).

    ``basis.T`` of C-ordered rows is a Fortran-ordered matrix, so scipy's
    ``dgemv`` reads the rows where they are and writes into ``vec``: no
    temporary (a new 85,000-long vector per call, and the subtraction, cost
    more than the product itself).
    """
    out = _dgemv(-1.0, basis.T, coef, beta=1.0, y=vec, overwrite_y=1)
    if out is not vec:  # pragma: no cover - scipy made a copy after all
        vec[:] = out


def _orthogonalize_into(vec, basis, norm2=None):
    """Orthogonalize ``vec`` (modified in place) against the rows of ``basis``.

    Classical Gram-Schmidt, repeated once when the first pass removed most of
    ``vec`` (the DGKS test: norm down by more than ``1 / sqrt(2)``), which
    keeps the basis orthonormal to working precision ("twice is enough"), so
    the Ritz values carry no ghost copies.  A Lanczos residual is orthogonal
    to the basis up to round-off and passes once.  ``norm2``: ``vec @ vec``
    if known.  Returns the norm of the result.  (``.dot`` rather than ``@``:
    numpy's matmul of a few rows by a vector does not call BLAS and was 4x
    slower on 85,000-long rows.)
    """
    before = np.sqrt(vec @ vec if norm2 is None else norm2)
    _project_out(vec, basis, basis.dot(vec))
    norm = np.sqrt(vec @ vec)
    if norm < _DGKS * before:
        _project_out(vec, basis, basis.dot(vec))
        norm = np.sqrt(vec @ vec)
    return float(norm)


class _Workspace:
    """Storage of :func:`_lanczos`: basis, products and projected matrix.

    Rows ``[:k]`` of ``basis`` and ``images`` are the basis vectors and their
    products; ``resid`` holds a residual.  Allocated for ``capacity`` vectors
    and doubled when full, so a run that fits never reallocates; a
    :class:`TopEigenTracker` keeps its workspace from update to update (no
    allocation, no page faults on fresh memory).  Only rows that a run writes
    are read: the capacity changes no number.
    """

    def __init__(self, n, capacity):
        self.n = n
        self.basis = np.empty((capacity, n))
        self.images = np.empty((capacity, n))
        self.gram = np.empty((capacity, capacity))
        self.resid = np.empty(n)  # the top Ritz vector's residual

    @property
    def capacity(self):
        return self.basis.shape[0]

    def reserve(self, size):
        """Make room for ``size`` vectors, keeping the filled rows."""
        if size <= self.capacity:
            return
        cap = max(size, 2 * self.capacity)
        old = self.capacity
        for name in ("basis", "images"):
            grown = np.empty((cap, self.n))
            grown[:old] = getattr(self, name)
            setattr(self, name, grown)
        gram = np.empty((cap, cap))
        gram[:old, :old] = self.gram
        self.gram = gram


# First capacity of a workspace (vectors); a warm update uses 2-10.
_WORKSPACE_CAPACITY = 16


def _lanczos(op, block, tol, min_matvec=1, workspace=None):
    """Rayleigh-Ritz on a growing orthonormal basis; see top_eigenpair.

    ``block`` is a list of unit vectors.  The basis starts with the first one;
    after every product that does not meet the test it grows by the next one
    with a part of norm >= ``_BLOCK_MIN_NEW`` orthogonal to it, or
    else by the residual of the top Ritz vector.  From a single vector that is
    Lanczos with full reorthogonalization (the residual spans the next Krylov
    direction).  The test is not applied before ``min_matvec`` products,
    except on an invariant subspace (nothing new can be found).  ``workspace``
    (a :class:`_Workspace` of size ``n``) is used and grown as needed; None
    allocates one.  The residual and the next basis vector are formed in the
    workspace, in place: the Ritz vector itself is formed only at the end.
    """
    first = block[0]
    n = first.size
    max_k = min(op.budget - op.count, n)
    if max_k < 1:
        return _Ritz(_best_seen(op, first), float("nan"), None)
    pending = list(block[1:])
    if workspace is None:
        workspace = _Workspace(n, min(max_k + 1, _WORKSPACE_CAPACITY))
    second_from_block = False
    anorm = 0.0
    workspace.reserve(1)
    workspace.basis[0] = first
    for k in range(max_k):
        basis, images, gram = workspace.basis, workspace.images, workspace.gram
        w = op(basis[k])  # op passes a copy to matvec
        if not op.finite:
            return _Ritz(_nan_result(first, op.count), float("nan"), None)
        images[k] = w
        active = basis[: k + 1]
        # projected matrix V^T A V, one new row and column per product
        gram[k, : k + 1] = gram[: k + 1, k] = active.dot(w)
        values, vectors = np.linalg.eigh(gram[: k + 1, : k + 1])
        theta, c = float(values[-1]), vectors[:, -1]
        anorm = max(anorm, abs(values[0]), abs(values[-1]))
        # residual A y - theta y of the Ritz vector y = V^T c, formed in the
        # workspace as W^T c - V^T (theta c) (y itself is not formed)
        resid = workspace.resid
        np.dot(c, images[: k + 1], out=resid)
        _project_out(resid, active, theta * c)
        rho2 = float(resid @ resid)
        rho = np.sqrt(rho2)  # ||A y - theta y||
        err = rho
        if k > 0 and values[-1] > values[-2]:
            # Kato-Temple: lambda_1 - theta <= rho^2 / (theta - lambda_2), with
            # the second Ritz value standing in for lambda_2.  From two vectors
            # that stand-in is far too low when the second vector is A q (the
            # estimate is then a lower bound of the true error, by
            # Cauchy-Schwarz), less so when it is a warm start for the second
            # eigenvector; the factors were tuned on MLP Hessians along
            # gradient descent, edge of stability included.
            safety = 1.0
            if k == 1:
                safety = _TWO_BLOCK_SAFETY if second_from_block else _TWO_VECTOR_SAFETY
            err = min(rho, safety * rho2 / (values[-1] - values[-2]))
        floor = 16 * _EPS * anorm  # round-off floor (e.g. theta == 0)
        converged = err <= tol * abs(theta) or err <= floor
        done = converged and k + 1 >= min_matvec
        # next basis vector, written into basis[k + 1]: a useful warm-start
        # column, else the residual (not needed, and not computed, when done)
        found, from_block = False, False
        if not done and k + 1 < n:
            workspace.reserve(k + 2)
            basis = workspace.basis
            active, nxt = basis[: k + 1], basis[k + 1]
        while pending and not found and not done and k + 1 < n:
            cand = pending.pop(0)
            coef = active.dot(cand)
            norm2 = float(cand @ cand)
            # the part orthogonal to the basis, from Pythagoras: a column
            # that is too short is dropped without being formed
            left2 = norm2 - float(coef @ coef)
            if norm2 > 0 and left2 >= (_BLOCK_MIN_NEW**2) * norm2:
                nxt[:] = cand
                _project_out(nxt, active, coef)
                norm = np.sqrt(nxt @ nxt)
                if norm < _DGKS * np.sqrt(norm2):
                    _project_out(nxt, active, active.dot(nxt))
                    norm = np.sqrt(nxt @ nxt)
                if norm > 0 and norm >= _BLOCK_MIN_NEW * np.sqrt(norm2):
                    nxt *= 1.0 / norm
                    found, from_block = True, True
        if not found and not done and k + 1 < n:
            norm = _orthogonalize_into(resid, active, rho2)
            if norm > floor and norm > 0:
                np.multiply(resid, 1.0 / norm, out=nxt)
                found = True
        done = done or not found  # or an invariant subspace (or k + 1 == n)
        if done or k + 1 == max_k:
            vec = _orient(c.dot(active), first, inplace=True)
            second = (
                (
                    float(values[-2]),
                    _orient(vectors[:, -2].dot(active), first, inplace=True),
                )
                if k > 0
                else (float("nan"), None)
            )
            return _Ritz(EigenResult(theta, vec, op.count, bool(done)), *second)
        if k == 0:
            second_from_block = from_block
    raise AssertionError("unreachable")  # pragma: no cover


def _dense(op, n, v0, given):
    try:
        mat, finite = _dense_from_matvec(op, n)
    except _BudgetExhausted:
        return _best_seen(op, v0)
    if not finite:
        return _nan_result(v0, op.count)
    values, vectors = np.linalg.eigh(mat)
    vec = vectors[:, -1]
    ref = v0
    if not given:  # deterministic sign: largest component positive
        ref = np.zeros(n)
        ref[np.argmax(np.abs(vec))] = 1.0
    return EigenResult(float(values[-1]), _orient(vec, ref), op.count, True)


def _best_seen(op, ref):
    """Budget exhausted inside scipy: best Rayleigh quotient among probed vectors."""
    if op.best_vector is None:
        return _nan_result(ref, op.count)
    return EigenResult(
        float(op.best_value), _orient(op.best_vector, ref), op.count, False
    )


def _lobpcg(op, n, v0, tol):
    try:
        w0 = op(v0)
        if not op.finite:
            return _nan_result(v0, op.count)
        # LOBPCG's tolerance is absolute on the residual norm: scale it by
        # ||A v0||, which is ~|lambda_1| for a good start and never exceeds ||A||.
        scale = float(np.linalg.norm(w0))
        linop = LinearOperator((n, n), matvec=op, matmat=op.matmat, dtype=float)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            values, vectors, history = lobpcg(
                linop,
                v0.reshape(n, 1),
                tol=tol * scale,
                maxiter=op.budget,
                largest=True,
                retResidualNormsHistory=True,
            )
    except _BudgetExhausted:
        return _best_seen(op, v0)
    except (ValueError, LinAlgError):
        if op.finite:
            raise
        return _nan_result(v0, op.count)  # non-finite products broke LOBPCG
    if not op.finite or not np.all(np.isfinite(values)):
        return _nan_result(v0, op.count)
    residual = float(np.ravel(history[-1])[0]) if len(history) else np.inf
    converged = residual <= tol * max(abs(float(values[0])), scale)
    return EigenResult(
        float(values[0]), _orient(vectors[:, 0], v0), op.count, bool(converged)
    )


def _arpack(op, n, v0, tol):
    linop = LinearOperator((n, n), matvec=op, dtype=float)
    ncv = min(n, 20)
    try:
        values, vectors = eigsh(
            linop,
            k=1,
            which="LA",
            v0=v0,
            tol=tol,
            ncv=ncv,
            maxiter=max(1, op.budget // max(ncv - 1, 1) + 1),
        )
        converged = True
    except _BudgetExhausted:
        return _best_seen(op, v0)
    except ArpackNoConvergence as exc:
        if exc.eigenvalues is None or len(exc.eigenvalues) == 0:
            return _best_seen(op, v0)
        values, vectors, converged = exc.eigenvalues, exc.eigenvectors, False
    except ArpackError:
        if not op.finite:
            return _nan_result(v0, op.count)
        # ARPACK cannot extend a Krylov space that is invariant (e.g. a zero or
        # low-rank operator, error -9999): Lanczos handles that breakdown.
        return _lanczos(op, [v0], tol).result
    if not op.finite or not np.all(np.isfinite(values)):
        return _nan_result(v0, op.count)
    i = int(np.argmax(values))
    return EigenResult(
        float(values[i]), _orient(vectors[:, i], v0), op.count, converged
    )


def top_eigenpair(
    matvec,
    n,
    *,
    v0=None,
    tol=1e-6,
    max_matvec=None,
    method="lanczos",
    random_state=None,
    min_matvec=None,
    extra_starts=None,
):
    """Largest algebraic eigenvalue of a symmetric operator given by products.

    Parameters
    ----------
    matvec : callable
        ``matvec(v) -> A @ v`` for flat ``v`` of shape (n,); ``A`` symmetric.
    n : int
        Dimension of the operator.
    v0 : array-like of shape (n,), default=None
        Start vector (need not be normalized), typically the previous
        eigenvector when tracking a slowly changing operator.  None: a random
        unit vector from ``random_state`` (a *cold* start).
    tol : float, default=1e-6
        Relative tolerance on the eigenvalue, in (0, 1): the aim is
        ``|eigenvalue - lambda_1| <= tol * |lambda_1|``. ``"lanczos"`` stops at
        the first product after which its error estimate for the top Ritz value
        ``theta`` is at most ``tol * |theta|`` (and at least ``min_matvec``
        products were spent). With ``rho = ||A y - theta y||`` the residual norm
        of the Ritz vector ``y`` (from the stored products: no extra product)
        and ``theta_2`` the second-largest Ritz value, the estimate is ``rho``
        after one product and ``min(rho, c * rho**2 / (theta - theta_2))`` after
        ``k >= 2`` products, with ``c = 10`` for ``k = 2`` (``c = 3`` when the
        second basis vector is an ``extra_starts`` column) and ``c = 1`` after.
        ``rho`` bounds the distance from ``theta`` to *some* eigenvalue, and
        once ``theta > lambda_2`` also ``lambda_1 - theta <= rho**2 / (theta -
        lambda_2)`` (Kato-Temple; ``lambda_1 - theta >= 0`` always). The unknown
        gap is estimated by ``theta - theta_2``, which overestimates it
        (``theta_2 <= lambda_2``), badly so with only two basis vectors, hence
        ``c``. So with a reasonable gap the returned eigenvalue is within about
        ``tol`` (relative) of the top eigenvalue, and a start vector that is
        already an eigenvector stops after one product. ``"arpack"`` uses
        ARPACK's relative residual test ``rho <= tol * |theta|``, ``"lobpcg"``
        the residual test ``rho <= tol * ||A v0||`` (both stricter); ``"dense"``
        is exact and ignores ``tol``.
    max_matvec : int, default=None
        Budget of products.  None: ``min(n, 200)`` for ``"lanczos"`` (the
        basis and its products are stored, ``2 * max_matvec * n`` floats),
        ``20 * n`` capped at 10000 for ``"lobpcg"``/``"arpack"``, ``n`` for
        ``"dense"``.  When it is reached the best estimate so far is returned
        with ``converged=False`` (no exception).
    method : {"lanczos", "lobpcg", "arpack", "dense"}, default="lanczos"
        ``"lanczos"``: this module's Lanczos with full reorthogonalization
        (no restarts) started at ``v0``, written as Rayleigh-Ritz on a
        growing basis so that ``extra_starts`` can join it.  ``"lobpcg"``:
        :func:`scipy.sparse.linalg.lobpcg` with ``largest=True``.
        ``"arpack"``: :func:`scipy.sparse.linalg.eigsh` with ``which="LA"``.
        ``"dense"``: the matrix from ``n`` products and
        :func:`numpy.linalg.eigh`.  ``"arpack"`` hands over to ``"lanczos"``
        when ARPACK cannot build its factorization (an invariant Krylov
        space, e.g. a zero operator).  ``"lobpcg"`` and ``"arpack"`` use
        ``"dense"`` when ``n < 5``.
    random_state : int, RandomState instance or None, default=None
        Seeds the random start vector when ``v0`` is None.
    min_matvec : int, default=None
        ``"lanczos"`` does not stop before this many products (unless the
        basis spans an invariant subspace or the budget ends).  None:
        ``min(n, 30)`` for a cold start, which may otherwise settle on
        ``lambda_2`` (see Notes), 2 for a warm start with ``extra_starts``,
        1 otherwise.
    extra_starts : array-like of shape (n, m) or (n,), default=None
        ``"lanczos"`` only: further warm-start directions, e.g. the previous
        second Ritz vector (a guard against an eigenvalue overtaking the one
        ``v0`` tracks) or older eigenvectors.  After each product that does
        not pass the test the basis grows by the next column whose part
        orthogonal to the basis has at least 5 % of its norm (the others are
        skipped at no cost), and only then by the Krylov direction.  See
        :class:`TopEigenTracker`, which builds them.

    Returns
    -------
    result : EigenResult
        ``(eigenvalue, eigenvector, n_hvp, converged)``; the eigenvector has
        unit norm and non-negative overlap with ``v0`` when given.  If
        ``matvec`` returns non-finite values the eigenvalue is NaN and
        ``converged`` False.

    Notes
    -----
    The largest *algebraic* eigenvalue is returned, not the largest in
    magnitude: a Hessian may have large negative eigenvalues.

    Limits.  The top Ritz value never exceeds the top eigenvalue, and a
    Krylov method only sees directions present in its start vector.

    * If ``v0`` is (numerically) orthogonal to the top eigenvector the
      recurrence breaks down in an invariant subspace and returns, as
      converged, the top eigenvalue *of that subspace*.
    * When another eigenvalue overtakes the one a warm start tracks, the new
      top direction, with component ``c`` in ``v0``, is found only if the
      Krylov space picks it up before the test passes: after one product
      ``rho`` already contains ``|c| (lambda_new - theta)``, so it can be
      missed only when that is below ``tol * |theta|``; after more products
      the Krylov polynomial amplifies ``c``.  Gradient descent moves the
      Hessian continuously, so ``c`` is rarely tiny, but the returned value
      is then only a lower bound.
    * When the two top eigenvalues are closer than about ``tol`` (relative)
      the returned eigenvalue may be the second one: its error is then below
      their gap, but the eigenvector is a mixture of the two.
    * A cold (random) start can converge to ``lambda_2`` first when, by
      chance, it has a much smaller component along the top eigenvector and
      ``lambda_2`` is close.  Along a digits MLP run (P = 2410, ``tol=1e-4``,
      catapult then edge of stability) this happened in 46 of 600 cold starts
      that stopped at the first passed test (errors up to 2.3 %, the gap),
      in 1 with at least 20 products and in none with 30: hence the default
      ``min_matvec`` of cold starts.

    Cost, measured along that run with ``tol=1e-4`` and the previous
    eigenvector as ``v0``: 2.3 products per step before the edge of
    stability and 4.4 at it, where several eigenvalues crowd within a few
    percent of ``2 / eta``, swap order and the top eigenvector turns by
    about 0.1 rad per step; in 300 of 1200 steps the result was then more
    than ``tol`` too low (up to 2.5 %: a missed overtaking eigenvalue).
    :class:`TopEigenTracker`'s extra starts removed those errors (3.0 and
    4.1 products).  Cold starts cost 30 products there.

    Examples
    --------
    >>> import numpy as np
    >>> from sharpsk._sharpness import top_eigenpair
    >>> A = np.diag([1.0, -5.0, 3.0, 2.0])
    >>> res = top_eigenpair(lambda v: A @ v, 4, random_state=0)
    >>> round(res.eigenvalue, 10), res.converged
    (3.0, True)
    >>> warm = top_eigenpair(lambda v: A @ v, 4, v0=res.eigenvector)
    >>> warm.n_hvp
    1
    """
    return _top_eigenpair(
        matvec, n, v0, tol, max_matvec, method, random_state, min_matvec, extra_starts
    ).result


def _top_eigenpair(
    matvec,
    n,
    v0,
    tol,
    max_matvec,
    method,
    random_state,
    min_matvec,
    extra_starts,
    workspace=None,
    extra_rows=None,
):
    """:func:`top_eigenpair`, returning a :class:`_Ritz` (runner-up included).

    ``workspace``: a :class:`_Workspace` for the Lanczos path (None: a new one).
    ``extra_rows``: unit vectors used as ``extra_starts`` without checks (the
    tracker's own Ritz vectors); ``v0``, when given, is then taken as it is
    too (a unit vector).
    """
    if not callable(matvec):
        raise TypeError(f"matvec must be callable, got {type(matvec).__name__}.")
    n = _check_positive_int(n, "n")
    tol = _check_tol(tol)
    if method not in _OPERATOR_METHODS:
        raise ValueError(f"method must be one of {_OPERATOR_METHODS}, got {method!r}.")
    if max_matvec is None:
        if method == "lanczos":
            max_matvec = min(n, _DEFAULT_MAX_MATVEC)
        elif method == "dense":
            max_matvec = n
        else:
            max_matvec = min(20 * n, 10000)
    max_matvec = _check_positive_int(max_matvec, "max_matvec")
    given = v0 is not None
    if not (given and extra_rows is not None):
        v0 = _check_v0(v0, n, random_state)
    if extra_rows is None:
        extra = _check_extra_starts(extra_starts, n)
    else:
        extra = list(extra_rows)
    if min_matvec is None:
        # a warm start with extra columns always looks at the first of them:
        # an exact (old) eigenvector would otherwise pass the test alone
        min_matvec = min(n, 2 if extra else 1)
        if not given:
            min_matvec = min(n, _COLD_MIN_MATVEC)
    min_matvec = _check_positive_int(min_matvec, "min_matvec")
    op = _CountingOperator(matvec, n, max_matvec, track_best=method != "lanczos")
    nan = float("nan")
    with np.errstate(over="ignore", invalid="ignore"):
        if method == "lanczos":
            return _lanczos(op, [v0, *extra], tol, min_matvec, workspace)
        if method == "dense" or n < _SMALL_N:
            return _Ritz(_dense(op, n, v0, given), nan, None)
        if method == "lobpcg":
            return _Ritz(_lobpcg(op, n, v0, tol), nan, None)
        return _Ritz(_arpack(op, n, v0, tol), nan, None)


class TopEigenTracker:
    """Top eigenpair of a symmetric operator that changes from call to call.

    Made for measuring the sharpness at every step of gradient descent: each
    :meth:`update` is a :func:`top_eigenpair` Lanczos run warm-started from a
    block of what the previous calls found, the last top eigenvector, the
    last *second* Ritz vector and the top eigenvector of the call before.
    The second Ritz vector makes an eigenvalue overtaking the tracked one
    visible after two products, and gives the stopping test a fair estimate
    of ``lambda_2``; the eigenvector of two calls back is the natural
    predictor at the edge of stability, where gradient descent oscillates
    with period two and the Hessian nearly repeats every other step.  A
    block column adds a product only where it is not already (to 5 %) in the
    basis, so a slowly turning eigenvector still costs about two products.
    Given a float32 version of the operator (``matvec32`` of :meth:`update`)
    and ``tol >= 1e-5``, the products are float32 and the Rayleigh-Ritz step
    float64, checked against a float64 product every 100 updates.

    Only arrays are stored: the last vectors, and a workspace for the basis
    and its products (``2 * 16 * n`` floats, doubled when a run needs more)
    kept from update to update, so that an update allocates no large array;
    the workspace is not pickled.  Never store a tracker on an estimator,
    create one per tracking run.

    Parameters
    ----------
    tol : float, default=1e-4
        Relative tolerance on the eigenvalue, see :func:`top_eigenpair`.
    max_matvec : int, default=None
        Budget of products per update, see :func:`top_eigenpair`.
    random_state : int, RandomState instance or None, default=None
        Seeds the random start of the first (cold) update, and of any update
        after :meth:`reset` or a change of dimension.

    Attributes
    ----------
    n_updates_ : int
        Number of :meth:`update` calls since the last reset.

    See Also
    --------
    top_eigenpair : one measurement.

    Notes
    -----
    Measured along full-batch gradient descent of a tanh MLP on 500 digits
    (64-32-10, P = 2410, ``tol=1e-4``, 1200 steps, catapult then edge of
    stability), against eigenvalues converged to 1e-12: 3.0 products per
    update before the edge of stability and 4.1 at it, with no error above
    ``tol``; warm starts from the previous eigenvector alone took 2.3 and
    4.4 but returned an eigenvalue more than ``tol`` too low in 300 of 1200
    steps (up to 2.5 %, an overtaking eigenvalue missed).

    On 1000 digits with a 64-256-256-10 tanh MLP (P = 85,002, one thread,
    ``tol=1e-4``, 220 steps at ``eta = 4 / lambda_0``: catapult, progressive
    sharpening, edge of stability from step 62; ``benchmarks/run.py --only
    eos_tracking``): 4.5 products and 53 to 55 ms per update with float32
    products (61 ms in the same session before the in-place residual below
    and the float32 kernel's BLAS accumulation; 104 ms before float32
    products and the workspace, same products, float64), largest error
    4.9e-5 against eigenvalues converged to 1e-10 at the benchmark's
    snapshots (every 20 steps); checked at every step, one update of the 220
    (step 138) was 1.14e-4 off, the second Ritz value standing in for a
    ``lambda_2`` it underestimated (a safety factor of 1.5 on the estimate
    after three products removes it, for 5 % more products).  A tracked
    ``MLPRegressor.fit`` took 4.2 times a plain one (4.6 before).
    Warm-started ``torch.lobpcg`` on float64 PyTorch HVPs took 18.4 products
    and about 420 ms at the same accuracy; a PyHessian-style power iteration
    3.0 products and 63 ms, but up to 3.8 % low.  A float32 product costs
    about a third of a float64 one there (8.5 vs 27 ms) and moved the
    eigenvalue by 3e-10 to 1.3e-8 (relative) along a 400-step run of the
    same setup.  The Lanczos bookkeeping (reorthogonalization, residual,
    Ritz vectors) costs about 1.2 ms per product at this size, 1.5 ms when
    the residual and the next basis vector were new arrays rather than
    written in place by BLAS ``dgemv``; with numpy's ``@`` of a few rows by a
    vector (no BLAS) and a basis allocated per update it cost 15 to 30 ms,
    and 660 ms per product of a cold start at P = 1.1 million (width 1024),
    then 120 ms.

    The stopping test is Kato-Temple's (see :func:`top_eigenpair`), which
    overestimates the error about tenfold here: the residual of a warm start
    is mostly along the bulk of the spectrum, far below ``lambda_1``, where
    the bound divides by the gap to ``lambda_2``.  An oracle stopping at the
    first product within ``tol`` would take 2.0 instead of 3.4 products per
    update during progressive sharpening and 4.5 instead of 7.8 in the
    hardest stretch of the edge of stability (steps 180-300 of the 400-step
    run).  A cluster version of the bound (the top two Ritz pairs' residuals
    over the gap to the third Ritz value) saved no product there, and on the
    220-step run it returned errors up to 1.8e-4.  Other block columns did
    not pay either (220-step run, 4.53 products per update as it is): the
    current gradient as a fourth column, 5.5; the last residual direction,
    5.4; the column of two calls back dropped, 5.1; in its place the
    extrapolation ``2 v(t-2) - v(t-4)``, 4.4 but with six times as many
    errors above ``tol / 2``; the two extra columns swapped, 4.4 but errors
    up to 3e-4.

    Examples
    --------
    >>> import numpy as np
    >>> from sharpsk._sharpness import TopEigenTracker
    >>> tracker = TopEigenTracker(tol=1e-8, random_state=0)
    >>> for t in range(3):
    ...     A = np.diag([1.0, 2.0, 3.0 - t, 2.5])  # 3.0 is overtaken at t=1
    ...     res = tracker.update(lambda v: A @ v, 4)
    ...     print(round(res.eigenvalue, 8))
    3.0
    2.5
    2.5
    """

    def __init__(self, *, tol=1e-4, max_matvec=None, random_state=None):
        self.tol = tol
        self.max_matvec = max_matvec
        self.random_state = random_state
        self.reset()

    def reset(self):
        """Forget the history: the next update starts cold.

        Returns
        -------
        self : TopEigenTracker
            The tracker.
        """
        self._top, self._second = [], None
        self._workspace = None
        # float32 products stay allowed until a float64 check finds them too
        # coarse; None: no check yet since the reset
        self._float32, self._since_check = True, None
        self.n_updates_ = 0
        return self

    def update(self, matvec, n, *, matvec32=None):
        """Top eigenpair of the current operator.

        Parameters
        ----------
        matvec : callable
            ``matvec(v) -> A @ v`` for flat ``v`` of shape (n,).
        n : int
            Dimension of the operator (a new dimension resets the tracker).
        matvec32 : callable, default=None
            The same product computed in float32 arithmetic (float64 in and
            out), e.g. ``mlp_matvec(point, dtype=np.float32)``.  Used instead of
            ``matvec`` when ``tol >= 1e-5``; the Rayleigh-Ritz step stays in
            float64.  Each first update after a reset, and every 100th after,
            checks it: one float64 product of the returned eigenvector
            replaces the eigenvalue by its float64 Rayleigh quotient, and if
            float32 had moved it by more than ``tol / 10`` (relative) the
            tracker uses ``matvec`` from then on.  See Notes.

        Returns
        -------
        result : EigenResult
            As :func:`top_eigenpair`; the eigenvector is oriented like the
            previous one.
        """
        tol = _check_tol(self.tol)
        if self._top and self._top[-1].size != n:
            self.reset()
        v0, extra = None, []
        if self._top:
            v0 = self._top[-1]
            if self._second is not None:
                extra.append(self._second)
            if len(self._top) > 1:
                extra.append(self._top[0])
        if self._workspace is None or self._workspace.n != n:
            self._workspace = _Workspace(n, min(n, _WORKSPACE_CAPACITY))
        use32 = matvec32 is not None and self._float32 and tol >= _FLOAT32_MIN_TOL
        ritz = _top_eigenpair(
            matvec32 if use32 else matvec,
            n,
            v0,
            tol,
            self.max_matvec,
            "lanczos",
            self.random_state,
            None,
            None,
            self._workspace,
            extra,
        )
        res = ritz.result
        self.n_updates_ += 1
        if use32 and np.isfinite(res.eigenvalue):
            res = self._check_float32(matvec, res, tol)
        if np.isfinite(res.eigenvalue):
            self._top = [*self._top[-1:], res.eigenvector]
            second = ritz.second_vector
            # (a unit vector: its square norm is finite unless an entry is not)
            ok = second is not None and bool(np.isfinite(second @ second))
            self._second = second if ok else None
        return res

    def __getstate__(self):
        # the workspace is scratch memory (2 * 16 * n floats): not pickled
        return {**self.__dict__, "_workspace": None}

    def _check_float32(self, matvec, res, tol):
        """On a check update, the float64 Rayleigh quotient of the result."""
        due = self._since_check is None or self._since_check + 1 >= _FLOAT32_CHECK
        budget = self.max_matvec
        if budget is None:
            budget = min(res.eigenvector.size, _DEFAULT_MAX_MATVEC)
        if not due or res.n_hvp >= budget:
            self._since_check = (self._since_check or 0) + 1
            return res
        vec = res.eigenvector
        image = np.asarray(matvec(vec.copy()), dtype=np.float64)
        self._since_check = 0
        exact = float(vec @ image)  # the eigenvector has unit norm
        if not np.isfinite(exact):
            self._float32 = False
            return res._replace(n_hvp=res.n_hvp + 1)
        if abs(exact - res.eigenvalue) > _FLOAT32_SHIFT * tol * abs(exact):
            self._float32 = False
        return res._replace(eigenvalue=exact, n_hvp=res.n_hvp + 1)


def top_hessian_eigenpair(
    loss,
    params,
    *,
    method="auto",
    v0=None,
    tol=1e-6,
    dense_max_size=400,
    max_matvec=None,
    random_state=None,
    hvp=None,
):
    """Sharpness: the largest algebraic eigenvalue of the Hessian of a loss.

    Parameters
    ----------
    loss : callable
        ``loss(params) -> scalar``, written with ``autograd.numpy``.
    params : list or tuple of array-like
        Point at which the Hessian is taken; ``P`` its total size.
    method : {"auto", "dense", "lanczos", "lobpcg", "arpack"}, default="auto"
        ``"auto"``: ``"dense"`` when ``P <= dense_max_size``, else
        ``"lanczos"``.  ``"dense"`` builds the exact Hessian from ``P``
        Hessian-vector products and uses :func:`numpy.linalg.eigh` (``n_hvp``
        reports ``P``); the others are as in :func:`top_eigenpair`.
    v0 : array-like of shape (P,) or list of arrays shaped like params, \
default=None
        Warm start (e.g. the previous step's eigenvector); None: random.
    tol : float, default=1e-6
        Relative tolerance on the eigenvalue, see :func:`top_eigenpair`.
    dense_max_size : int, default=400
        Largest ``P`` for which ``"auto"`` goes dense.
    max_matvec : int, default=None
        Budget of Hessian-vector products, see :func:`top_eigenpair`.
    random_state : int, RandomState instance or None, default=None
        Seeds the random start vector when ``v0`` is None.
    hvp : callable, default=None
        An existing flat HVP closure at ``params``, e.g. the second output of
        :func:`gradient_and_hvp`, so that nothing is recomputed.  None: one is
        built here (one forward and one backward pass).

    Returns
    -------
    result : EigenResult
        ``(eigenvalue, eigenvector, n_hvp, converged)``, the eigenvector flat
        in the order of :func:`flatten_params`.

    See Also
    --------
    gradient_and_hvp : gradient and HVP closure from one recorded pass.
    top_eigenpair : the generic operator version.

    Examples
    --------
    >>> import numpy as np
    >>> import autograd.numpy as anp
    >>> from sharpsk._sharpness import gradient_and_hvp, top_hessian_eigenpair
    >>> def loss(p):
    ...     U, v = p
    ...     return 0.5 * (anp.dot(v, anp.dot(U, np.ones(3))) - 1.0) ** 2
    >>> rng = np.random.default_rng(0)
    >>> params = [rng.normal(size=(4, 3)), rng.normal(size=4)]
    >>> dense = top_hessian_eigenpair(loss, params)  # P = 16 <= 400: exact
    >>> dense.n_hvp
    16
    >>> grad, hvp = gradient_and_hvp(loss, params)
    >>> lz = top_hessian_eigenpair(
    ...     loss, params, method="lanczos", hvp=hvp, random_state=0)
    >>> bool(abs(lz.eigenvalue - dense.eigenvalue) <= 1e-6 * dense.eigenvalue)
    True
    """
    if not callable(loss):
        raise TypeError(f"loss must be callable, got {type(loss).__name__}.")
    params = _as_param_list(params)
    size = sum(p.size for p in params)
    if size == 0:
        raise ValueError("params must contain at least one scalar parameter.")
    if method not in _HESSIAN_METHODS:
        raise ValueError(f"method must be one of {_HESSIAN_METHODS}, got {method!r}.")
    dense_max_size = _check_positive_int(
        dense_max_size, "dense_max_size", allow_zero=True
    )
    if hvp is None:
        _, hvp = gradient_and_hvp(loss, params)
    elif not callable(hvp):
        raise TypeError(f"hvp must be callable or None, got {type(hvp).__name__}.")
    if method == "auto":
        method = "dense" if size <= dense_max_size else "lanczos"
    return top_eigenpair(
        hvp,
        size,
        v0=v0,
        tol=tol,
        max_matvec=max_matvec,
        method=method,
        random_state=random_state,
    )
