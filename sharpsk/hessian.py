"""Spectra of Hessians, or of any symmetric operator, from products alone.

Every function takes the operator in one of two forms, so that Hessians from
other libraries plug in unchanged:

* anything with a square ``shape`` that :func:`scipy.sparse.linalg.aslinearoperator`
  accepts: a :class:`~scipy.sparse.linalg.LinearOperator` (such as
  ``estimator.hessian_operator(X, y)`` of :class:`~sharpsk.MLPRegressor` and
  :class:`~sharpsk.UVRegressor`), a dense array or a sparse matrix;
* a callable ``hvp(v) -> A @ v`` on flat float64 vectors of shape ``(n,)``
  together with its size ``n``, e.g. a wrapped curvlinops, ``torch.func`` or
  JAX Hessian-vector product.

The operator is assumed symmetric (it is not checked: that would cost
products).  Only products are used, and each function reports or documents how
many it spent:

* :func:`eigenpairs`: the ``k`` largest algebraic (``"LA"``) or largest
  magnitude (``"LM"``) eigenpairs, by block Lanczos with full
  reorthogonalization (the sharpness is ``eigenpairs(H).eigenvalues[0]``);
* :func:`trace`: Hutchinson's or the Hutch++ trace estimate with its standard
  error;
* :func:`spectral_density`: stochastic Lanczos quadrature, the whole spectrum
  as a density (Ghorbani, Krishnan & Xiao, 2019).
"""

from typing import NamedTuple

import numpy as np
from scipy.linalg import eigh_tridiagonal
from scipy.sparse.linalg import aslinearoperator
from sklearn.utils import check_random_state

from ._sharpness import _COLD_MIN_MATVEC, _DEFAULT_MAX_MATVEC, _SMALL_N, _check_tol

__all__ = [
    "EigenpairsResult",
    "SpectralDensity",
    "TraceEstimate",
    "eigenpairs",
    "spectral_density",
    "trace",
]

_EPS = np.finfo(np.float64).eps
_WHICH = ("LA", "LM")
_TRACE_METHODS = ("hutchinson", "hutch++")
# ARPACK's relative residual test uses max(|theta|, eps**(2/3)): eigenvalues
# far below the operator's norm are tested against eps**(2/3) * ||A||.
_EPS23 = _EPS ** (2.0 / 3.0)
# A residual (or its part new to the basis) shorter than this, relative, is
# round-off: it is not used as a search direction.
_NEW_DIRECTION = 1e-8
# Lanczos steps of the spectral density stop when beta < this * ||T||: the
# Krylov space is then invariant (a degenerate spectrum) to working precision.
_BREAKDOWN = 1e-10


# ----------------------------------------------------------------------------
# Operators: a LinearOperator (or array) or a callable with its size
# ----------------------------------------------------------------------------
def _check_int(value, name, minimum=1):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}.")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


class _Operator:
    """Counted products ``A @ v`` and ``A @ V`` of a validated operator."""

    def __init__(self, operator, n):
        self.count = 0
        if hasattr(operator, "shape"):
            try:
                linop = aslinearoperator(operator)
            except (TypeError, ValueError) as exc:
                raise TypeError(
                    "operator must be a LinearOperator, an array, a sparse matrix "
                    f"or a callable, got {type(operator).__name__}."
                ) from exc
            shape = tuple(linop.shape)
            if len(shape) != 2 or shape[0] != shape[1]:
                raise ValueError(f"operator must be square, got shape {shape}.")
            if n is not None and _check_int(n, "n") != shape[0]:
                raise ValueError(
                    f"n={n!r} does not match the operator's shape {shape}; "
                    "leave n=None for a LinearOperator."
                )
            self.n = _check_int(shape[0], "the operator's size")
            self._matvec, self._matmat = linop.matvec, linop.matmat
        elif callable(operator):
            if n is None:
                raise ValueError(
                    "n is required when operator is a callable (the size of the "
                    "vectors it multiplies)."
                )
            self.n = _check_int(n, "n")
            self._matvec, self._matmat = operator, None
        else:
            raise TypeError(
                "operator must be a LinearOperator, an array, a sparse matrix or "
                f"a callable hvp(v) with n, got {type(operator).__name__}."
            )

    def _checked(self, out, shape):
        out = np.asarray(out, dtype=np.float64)
        if out.size != np.prod(shape):
            raise ValueError(
                f"operator returned an array of shape {out.shape}, expected {shape}."
            )
        out = out.reshape(shape)
        if not np.all(np.isfinite(out)):
            raise ValueError("operator returned non-finite values (NaN or inf).")
        return out

    def matvec(self, vec):
        self.count += 1
        return self._checked(self._matvec(np.array(vec, dtype=np.float64)), (self.n,))

    def matmat(self, block):
        """``A @ block`` for ``block`` of shape (n, b): b products."""
        if self._matmat is None:
            return np.column_stack([self.matvec(col) for col in block.T])
        self.count += block.shape[1]
        out = self._matmat(np.array(block, dtype=np.float64))
        return self._checked(out, block.shape)

    def dense(self):
        """The matrix from ``n`` products, symmetrized."""
        mat = self.matmat(np.eye(self.n))
        return 0.5 * (mat + mat.T)


def _rademacher(rng, shape):
    return rng.randint(0, 2, size=shape).astype(np.float64) * 2.0 - 1.0


# ----------------------------------------------------------------------------
# Eigenpairs
# ----------------------------------------------------------------------------
class EigenpairsResult(NamedTuple):
    """Extreme eigenpairs of a symmetric operator, from :func:`eigenpairs`.

    A named tuple: its fields are also attributes.

    Parameters
    ----------
    eigenvalues : ndarray of shape (k,)
        Descending (``which="LA"``) or by descending magnitude (``"LM"``).
    eigenvectors : ndarray of shape (n, k)
        Orthonormal columns, column ``i`` for ``eigenvalues[i]``; the sign
        makes each column's largest-magnitude entry positive.
    residual_norms : ndarray of shape (k,)
        ``||A x_i - lambda_i x_i||`` of each pair.
    n_hvp : int
        Products (Hessian-vector products) spent.
    converged : bool
        Whether every pair met the stopping test within the budget.
    """

    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    residual_norms: np.ndarray
    n_hvp: int
    converged: bool


def _wanted_order(values, which):
    """Indices of ``values`` in the order of ``which`` (ties: larger first)."""
    if which == "LA":
        return np.argsort(-values, kind="stable")
    return np.lexsort((-values, -np.abs(values)))


def _fix_signs(vectors):
    rows = np.argmax(np.abs(vectors), axis=0)
    signs = np.sign(vectors[rows, np.arange(vectors.shape[1])])
    return vectors * np.where(signs == 0, 1.0, signs)


def _check_v0(v0, n):
    """Start block as unit rows of shape (m, n), or None."""
    if v0 is None:
        return None
    v0 = np.asarray(v0, dtype=np.float64)
    if v0.ndim == 1:
        v0 = v0[:, None]
    if v0.ndim != 2 or v0.shape[0] != n or v0.shape[1] == 0:
        raise ValueError(f"v0 must have shape ({n},) or ({n}, m), got {v0.shape}.")
    if not np.all(np.isfinite(v0)):
        raise ValueError("v0 must be finite (it contains NaN or inf).")
    q, r = np.linalg.qr(v0)
    if np.any(np.abs(np.diag(r)) <= _NEW_DIRECTION * np.linalg.norm(v0, axis=0)):
        raise ValueError("v0 must have linearly independent, nonzero columns.")
    return q.T


def _new_directions(candidates, basis, size, rng):
    """Up to ``size`` orthonormal rows orthogonal to ``basis`` (rows).

    The candidates (rows, e.g. Ritz residuals: the next block Krylov
    directions) come first; where they are in the span of the basis (an
    invariant subspace) random vectors take their place, so that a
    degenerate eigenvalue's further copies can still be found.
    """
    new = []

    def add(vec):
        norm = np.linalg.norm(vec)
        if norm == 0:
            return
        vec = vec / norm
        for _ in range(2):  # Gram-Schmidt twice is enough
            vec = vec - basis.T @ (basis @ vec)
            for q in new:
                vec = vec - (q @ vec) * q
        norm = np.linalg.norm(vec)
        if norm > _NEW_DIRECTION:
            new.append(vec / norm)

    for vec in candidates:
        if len(new) == size:
            break
        add(vec)
    for _ in range(10 * size):
        if len(new) == size:
            break
        add(rng.standard_normal(basis.shape[1]))
    return np.array(new).reshape(-1, basis.shape[1])


def _block_lanczos(op, k, which, tol, budget, start, min_basis, rng):
    """Rayleigh-Ritz on a block Krylov basis with full reorthogonalization.

    Each step multiplies a block of ``b`` orthonormal vectors, computes the
    Ritz pairs of ``V.T A V`` on the whole basis and their residuals
    ``A y - theta y`` from the stored products (no extra product).  Those
    residuals span the next block Krylov directions; the next block is made
    of the residuals of the unconverged wanted pairs, then of the following
    Ritz pairs, orthogonalized twice against the basis.
    """
    n, b = op.n, start.shape[0]
    cap = min(budget, n)
    basis, images = np.empty((cap, n)), np.empty((cap, n))
    gram = np.empty((cap, cap))
    block, m, anorm = start, 0, 0.0
    while True:
        nb = block.shape[0]
        basis[m : m + nb] = block
        images[m : m + nb] = op.matmat(block.T).T
        gram[: m + nb, m : m + nb] = basis[: m + nb] @ images[m : m + nb].T
        gram[m : m + nb, :m] = gram[:m, m : m + nb].T
        m += nb
        # the new diagonal block is symmetric only up to round-off
        values, vectors = np.linalg.eigh(0.5 * (gram[:m, :m] + gram[:m, :m].T))
        anorm = max(anorm, float(np.max(np.abs(values))))
        order = _wanted_order(values, which)
        used = order[: min(m, k + b)]
        coef = vectors[:, used]
        ritz = coef.T @ basis[:m]
        resid = coef.T @ images[:m] - values[used, None] * ritz
        rnorm = np.linalg.norm(resid, axis=1)
        floor = 16 * _EPS * anorm * np.sqrt(m)  # round-off level of a residual
        thresh = tol * np.maximum(np.abs(values[used]), _EPS23 * anorm)
        ok = (rnorm <= thresh) | (rnorm <= floor)
        conv = bool(m >= k and ok[:k].all())
        if (conv and m >= min_basis) or m == cap:
            break
        # unconverged wanted pairs first, then the next ones; residuals at
        # round-off level carry no direction
        pick = np.concatenate([np.flatnonzero(~ok[:k]), np.arange(k, used.size)])
        pick = pick[rnorm[pick] > floor]
        block = _new_directions(resid[pick], basis[:m], min(b, cap - m), rng)
        if block.shape[0] == 0:  # pragma: no cover - needs m == n
            break
    conv = conv or m == n  # Rayleigh-Ritz on the whole space is exact
    vecs = _fix_signs(ritz[:k].T / np.linalg.norm(ritz[:k], axis=1))
    return EigenpairsResult(values[used[:k]], vecs, rnorm[:k], op.count, conv)


def _dense_eigenpairs(op, k, which):
    mat = op.dense()
    values, vectors = np.linalg.eigh(mat)
    idx = _wanted_order(values, which)[:k]
    vecs = _fix_signs(vectors[:, idx])
    rnorm = np.linalg.norm(mat @ vecs - vecs * values[idx], axis=0)
    return EigenpairsResult(values[idx], vecs, rnorm, op.count, True)


def eigenpairs(
    operator,
    k=1,
    *,
    n=None,
    which="LA",
    tol=1e-6,
    max_matvec=None,
    v0=None,
    random_state=None,
    block_size=None,
):
    """The ``k`` extreme eigenpairs of a symmetric operator, from products.

    Block Lanczos with full reorthogonalization and no restarts, written as
    Rayleigh-Ritz on a growing orthonormal basis: each step multiplies a
    block of ``block_size`` vectors (``k`` by default), so an eigenvalue
    repeated up to ``block_size`` times is found with its multiplicity (a
    single-vector Krylov space holds one vector of each eigenspace).

    Parameters
    ----------
    operator : LinearOperator, array-like, sparse matrix or callable
        The symmetric operator ``A``: anything with a square ``shape`` that
        :func:`scipy.sparse.linalg.aslinearoperator` accepts (e.g.
        ``estimator.hessian_operator(X, y)``), or a callable ``hvp(v) -> A @ v``
        on flat vectors of shape (n,), with ``n`` given.
    k : int, default=1
        Number of eigenpairs, ``1 <= k < n``.
    n : int, default=None
        Size of the operator; required with a callable, checked against the
        shape otherwise.
    which : {"LA", "LM"}, default="LA"
        ``"LA"``: largest algebraic eigenvalues (the sharpness is the top
        one; Hessians have negative eigenvalues too).  ``"LM"``: largest in
        magnitude.
    tol : float, default=1e-6
        Relative tolerance in (0, 1).  A Ritz pair ``(theta, y)`` passes when
        ``||A y - theta y|| <= tol * max(|theta|, eps**(2/3) * ||A||)``, with
        ``||A||`` estimated by the largest Ritz value in magnitude (ARPACK's
        test); ``theta`` is then within the residual norm of an eigenvalue,
        and usually far closer (its error is quadratic in the residual).  The
        method stops when the ``k`` wanted pairs pass.
    max_matvec : int, default=None
        Budget of products, at least ``k``.  None: ``min(n, max(200,
        20 * k))``.  The basis and its products are stored (``2 * max_matvec
        * n`` floats).  When it is spent the best pairs so far are returned
        with ``converged=False``.
    v0 : array-like of shape (n,) or (n, m), default=None
        Start vector(s), e.g. the eigenvectors of a previous call (a warm
        start: the method may then stop after one block).  It makes the first
        block, completed with random columns; with ``block_size=None`` the
        block widens to hold all its columns, else the columns beyond
        ``block_size`` are ignored.  None: a random block and at least
        ``min(n, max(30, 3 * k, 8 * k // block_size))`` products, so that an
        unlucky start does not settle on the wrong eigenvalues.
    random_state : int, RandomState instance or None, default=None
        Seeds the random start vectors (and the fresh directions taken when
        the Krylov space becomes invariant).
    block_size : int, default=None
        Vectors per block step; None: ``k`` (and at least the number of
        columns of ``v0``).  ``1`` is single-vector Lanczos: about half the
        products for ``k = 5`` on an MLP Hessian, but a repeated eigenvalue
        may then be returned once where it should appear several times.

    Returns
    -------
    result : EigenpairsResult
        ``(eigenvalues, eigenvectors, residual_norms, n_hvp, converged)``.

    Raises
    ------
    ValueError
        If the operator is not square, ``n`` does not match it, ``k`` is not
        in ``[1, n - 1]``, ``which`` is unknown, ``tol`` is not in (0, 1),
        ``max_matvec < k``, ``v0`` has the wrong shape, ``block_size`` is not
        a positive integer, or the operator returns non-finite values.

    See Also
    --------
    scipy.sparse.linalg.eigsh : ARPACK's implicitly restarted Lanczos.
    trace : The sum of all eigenvalues.
    spectral_density : The whole spectrum as a density.

    Notes
    -----
    When ``n < 5`` or ``n <= k + 1`` the matrix is built from ``n`` products
    and decomposed densely (``n_hvp == n``; ``tol`` and ``max_matvec`` are
    not used).

    A Krylov method sees only directions present in its start block: a start
    (numerically) orthogonal to an eigenvector never finds its eigenvalue, and
    eigenvalues closer than about ``tol`` may be returned in either order
    with mixed eigenvectors.  When the basis spans an invariant subspace the
    next block is random (orthogonal to it), so eigenvalues repeated more
    than ``k`` times are still found, one copy per block step.

    Cost at the default ``tol=1e-6`` on digits MLP Hessians (P = 610 and
    2410, five random starts each): ``k=1`` took 30 products (the cold-start
    floor; the residual test alone passes after 16 to 25), as many as
    :func:`scipy.sparse.linalg.eigsh` (21 to 31); ``k=5`` took 65 to 85
    with the default block and 30 to 41 with ``block_size=1`` (``eigsh``:
    35 to 47).  The eigenvalue errors were below ``1e-12`` (relative).

    Examples
    --------
    >>> import numpy as np
    >>> from sharpsk.hessian import eigenpairs
    >>> A = np.diag(np.arange(-20.0, 10.0))  # eigenvalues -20 .. 9
    >>> res = eigenpairs(A, k=3, random_state=0)
    >>> res.eigenvalues.round(8), res.converged
    (array([9., 8., 7.]), True)
    >>> eigenpairs(A, k=2, which="LM", random_state=0).eigenvalues.round(8)
    array([-20., -19.])

    A callable Hessian-vector product needs its size:

    >>> res = eigenpairs(lambda v: A @ v, n=30, random_state=0)
    >>> round(float(res.eigenvalues[0]), 8), res.eigenvectors.shape
    (9.0, (30, 1))
    """
    op = _Operator(operator, n)
    n = op.n
    k = _check_int(k, "k")
    if k >= n:
        raise ValueError(f"k must be smaller than the operator's size n={n}, got {k}.")
    if not isinstance(which, str) or which not in _WHICH:
        raise ValueError(f"which must be one of {_WHICH}, got {which!r}.")
    tol = _check_tol(tol)
    if max_matvec is None:
        max_matvec = min(n, max(_DEFAULT_MAX_MATVEC, 20 * k))
    max_matvec = _check_int(max_matvec, "max_matvec")
    if max_matvec < k:
        raise ValueError(
            f"max_matvec must be at least k={k} (one product per wanted pair), "
            f"got {max_matvec}."
        )
    start = _check_v0(v0, n)
    if block_size is not None:
        _check_int(block_size, "block_size")
    rng = check_random_state(random_state)
    if n < _SMALL_N or n <= k + 1:
        return _dense_eigenpairs(op, k, which)
    if block_size is None:
        b = k if start is None else max(k, start.shape[0])
    else:
        b = _check_int(block_size, "block_size")
    b = min(b, max_matvec, n)
    if start is None:
        start = np.empty((0, n))
        # a floor against settling on lambda_2 first (a start with little of
        # the top eigenvector); wider for thin blocks, which find the top k
        # one by one (digits MLP, tol=1e-2: 1 in 300 cold single-vector
        # starts missed one of the top 5 after 30 products, none after 40)
        min_basis = min(n, max(_COLD_MIN_MATVEC, 3 * k, (8 * k) // b))
    else:
        start = start[:b]
        min_basis = b
    start = np.concatenate([start, _new_directions([], start, b - len(start), rng)])
    return _block_lanczos(op, k, which, tol, max_matvec, start, min_basis, rng)


# ----------------------------------------------------------------------------
# Trace
# ----------------------------------------------------------------------------
class TraceEstimate(NamedTuple):
    """A stochastic trace estimate, from :func:`trace`.

    A named tuple: ``estimate, standard_error = trace(...)``.

    Parameters
    ----------
    estimate : float
        The estimate of ``trace(A)``.
    standard_error : float
        Its estimated standard error: the sample standard deviation of the
        quadratic forms over the square root of their number (0 when the
        estimate is exact).
    """

    estimate: float
    standard_error: float


def _mean_and_error(samples):
    mean = float(np.mean(samples))
    return mean, float(np.std(samples, ddof=1) / np.sqrt(len(samples)))


def trace(operator, *, n=None, n_samples=100, method="hutchinson", random_state=None):
    """Stochastic estimate of the trace of a symmetric operator.

    Parameters
    ----------
    operator : LinearOperator, array-like, sparse matrix or callable
        The operator ``A``, as in :func:`eigenpairs` (a callable needs ``n``).
    n : int, default=None
        Size of the operator; required with a callable.
    n_samples : int, default=100
        Number of products.  ``"hutchinson"`` needs at least 2, ``"hutch++"``
        at least 4.
    method : {"hutchinson", "hutch++"}, default="hutchinson"
        ``"hutchinson"``: the mean of ``z.T A z`` over Rademacher vectors
        ``z`` (entries +-1), unbiased with variance
        ``2 (||A||_F**2 - sum(diag(A)**2)) / n_samples``.  ``"hutch++"``
        (Meyer, Musco, Musco & Woodruff, 2021): a third of the products
        sketch the range of ``A`` (``Q = orth(A S)``), a third give the exact
        ``trace(Q.T A Q)``, the rest estimate the trace of the deflated
        ``(I - Q Q.T) A (I - Q Q.T)`` by Hutchinson; far more accurate when a
        few large eigenvalues dominate the Frobenius norm, as in Hessians.
    random_state : int, RandomState instance or None, default=None
        Seeds the probe vectors.

    Returns
    -------
    result : TraceEstimate
        ``(estimate, standard_error)``; for ``"hutch++"`` the standard error
        is that of its Hutchinson part (the sketched part is exact given the
        sketch), and 0 when the sketch spans the whole space.

    Raises
    ------
    ValueError
        If ``n_samples`` is too small, ``method`` is unknown, the operator is
        not square, ``n`` does not match it or products are not finite.

    See Also
    --------
    spectral_density : Its first moment is the trace divided by ``n``.

    References
    ----------
    .. [1] M. F. Hutchinson, "A stochastic estimator of the trace of the
       influence matrix for Laplacian smoothing splines", Communications in
       Statistics - Simulation and Computation 18 (1989).
    .. [2] R. A. Meyer, C. Musco, C. Musco and D. P. Woodruff, "Hutch++:
       optimal stochastic trace estimation", SOSA 2021.

    Examples
    --------
    Three large eigenvalues dominate this spectrum, as in a Hessian:

    >>> import numpy as np
    >>> from sharpsk.hessian import trace
    >>> rng = np.random.default_rng(0)
    >>> Q, _ = np.linalg.qr(rng.normal(size=(100, 100)))
    >>> A = (Q * np.r_[1000.0, 500.0, 200.0, rng.uniform(-1, 1, 97)]) @ Q.T
    >>> round(float(np.trace(A)), 1)
    1700.5
    >>> est, err = trace(A, n_samples=30, random_state=0)
    >>> round(est, 1), round(err, 1)
    (1622.2, 195.1)
    >>> est, err = trace(A, n_samples=30, method="hutch++", random_state=0)
    >>> round(est, 1), round(err, 1)
    (1701.0, 2.3)
    """
    op = _Operator(operator, n)
    n = op.n
    if not isinstance(method, str) or method not in _TRACE_METHODS:
        raise ValueError(f"method must be one of {_TRACE_METHODS}, got {method!r}.")
    minimum = 2 if method == "hutchinson" else 4
    n_samples = _check_int(n_samples, "n_samples", minimum=minimum)
    rng = check_random_state(random_state)
    if method == "hutchinson":
        probes = _rademacher(rng, (n, n_samples))
        samples = np.einsum("ij,ij->j", probes, op.matmat(probes))
        return TraceEstimate(*_mean_and_error(samples))
    n_sketch = n_samples // 3
    q, _ = np.linalg.qr(op.matmat(_rademacher(rng, (n, n_sketch))))
    exact = float(np.einsum("ij,ij->", q, op.matmat(q)))
    if q.shape[1] == n:  # the sketch spans the space: the trace is exact
        return TraceEstimate(exact, 0.0)
    probes = _rademacher(rng, (n, n_samples - 2 * n_sketch))
    probes -= q @ (q.T @ probes)
    samples = np.einsum("ij,ij->j", probes, op.matmat(probes))
    mean, error = _mean_and_error(samples)
    return TraceEstimate(exact + mean, error)


# ----------------------------------------------------------------------------
# Spectral density: stochastic Lanczos quadrature
# ----------------------------------------------------------------------------
class SpectralDensity:
    """Stochastic Lanczos quadrature of a symmetric operator's spectrum.

    Probe ``p`` gives a Gauss quadrature rule: nodes ``nodes[p]`` (Ritz
    values) and weights ``weights[p]`` summing to 1, whose moments
    ``sum(weights[p] * nodes[p]**j)`` equal ``v.T A**j v`` for the probe's
    unit vector ``v`` and ``j < 2 * n_lanczos``; ``n`` times their mean over
    probes estimates ``trace(A**j)``.  The density is the average of the
    probes' rules, ``mean_p sum_i weights[p, i] delta(x - nodes[p, i])``;
    :meth:`density` broadens it into a curve.

    Made by :func:`spectral_density`; build one directly to plot the nodes
    and weights of another tool (e.g. PyHessian's ``density()`` lists).

    Parameters
    ----------
    nodes : array-like of shape (n_probes, n_nodes)
        Quadrature nodes of each probe.
    weights : array-like of shape (n_probes, n_nodes)
        Non-negative quadrature weights, each row summing to 1.
    n_hvp : int, default=0
        Products spent computing them.

    Attributes
    ----------
    nodes : ndarray of shape (n_probes, n_nodes)
        Quadrature nodes, float64.  From :func:`spectral_density`: ascending,
        and a probe whose Krylov space became invariant early has fewer
        nodes, its row padded with its largest node with weight 0.
    weights : ndarray of shape (n_probes, n_nodes)
        Quadrature weights, float64.
    n_hvp : int
        Products spent.

    See Also
    --------
    spectral_density : Computes it.
    sharpsk.plotting.plot_spectral_density : Draws it.

    Examples
    --------
    >>> import numpy as np
    >>> from sharpsk.hessian import SpectralDensity
    >>> sd = SpectralDensity([[-1.0, 2.0]], [[0.5, 0.5]])
    >>> sd
    SpectralDensity(n_probes=1, n_nodes=2, n_hvp=0)
    >>> # 0.5 N(2; -1, 1) + 0.5 N(2; 2, 1), N the normal density
    >>> round(float(sd.density(2.0, sigma=1.0)), 6)
    0.201687
    """

    def __init__(self, nodes, weights, n_hvp=0):
        nodes = np.array(nodes, dtype=np.float64)
        weights = np.array(weights, dtype=np.float64)
        if nodes.ndim != 2 or nodes.size == 0:
            raise ValueError(
                f"nodes must be a non-empty 2-D array, got shape {nodes.shape}."
            )
        if weights.shape != nodes.shape:
            raise ValueError(
                f"weights must have the shape of nodes {nodes.shape}, got "
                f"{weights.shape}."
            )
        if not (np.all(np.isfinite(nodes)) and np.all(np.isfinite(weights))):
            raise ValueError("nodes and weights must be finite.")
        if np.any(weights < 0):
            raise ValueError("weights must be non-negative.")
        self.nodes, self.weights = nodes, weights
        self.n_hvp = _check_int(n_hvp, "n_hvp", minimum=0)

    def __repr__(self):
        n_probes, n_nodes = self.nodes.shape
        return (
            f"SpectralDensity(n_probes={n_probes}, n_nodes={n_nodes}, "
            f"n_hvp={self.n_hvp})"
        )

    def default_sigma(self):
        """The default width of :meth:`density`: 1 % of the nodes' range.

        About the resolution of ``n_lanczos = 80`` quadrature nodes in the
        bulk of the spectrum.

        Returns
        -------
        sigma : float
            ``0.01 * (max(nodes) - min(nodes))``, or ``0.01 * max(|nodes|)``
            (1.0 if that is zero) when all nodes coincide.
        """
        spread = float(np.max(self.nodes) - np.min(self.nodes))
        if spread == 0:
            spread = float(np.max(np.abs(self.nodes))) or 100.0
        return 0.01 * spread

    def density(self, grid, sigma=None):
        """The density broadened by a Gaussian of standard deviation ``sigma``.

        Parameters
        ----------
        grid : array-like
            Points (eigenvalues) at which to evaluate it, any shape.
        sigma : float, default=None
            Standard deviation of the Gaussian replacing each node; None:
            :meth:`default_sigma`.

        Returns
        -------
        density : ndarray, shape of ``grid``
            ``mean_p sum_i weights[p, i] N(grid; nodes[p, i], sigma**2)``,
            which integrates to 1 over the real line when each row of
            ``weights`` sums to 1.

        Raises
        ------
        ValueError
            If ``sigma`` is not a positive number or ``grid`` not finite.
        """
        if sigma is None:
            sigma = self.default_sigma()
        if (
            isinstance(sigma, bool)
            or not isinstance(sigma, (int, float, np.integer, np.floating))
            or not np.isfinite(sigma)
            or sigma <= 0
        ):
            raise ValueError(f"sigma must be a positive number, got {sigma!r}.")
        grid = np.asarray(grid, dtype=np.float64)
        if not np.all(np.isfinite(grid)):
            raise ValueError("grid must be finite (it contains NaN or inf).")
        nodes = self.nodes.ravel()
        weights = self.weights.ravel() / self.nodes.shape[0]
        keep = weights > 0
        nodes, weights = nodes[keep], weights[keep]
        flat = grid.ravel()
        out = np.empty(flat.size)
        chunk = max(1, 2**20 // max(nodes.size, 1))  # bounded memory
        norm = 1.0 / (sigma * np.sqrt(2.0 * np.pi))
        for i in range(0, flat.size, chunk):
            z = (flat[i : i + chunk, None] - nodes) / sigma
            out[i : i + chunk] = np.exp(-0.5 * z * z) @ weights * norm
        return out.reshape(grid.shape)


def _lanczos_quadrature(op, probe, steps):
    """Nodes and weights of the Gauss rule of one unit probe (full reorth)."""
    n = op.n
    basis = np.empty((steps, n))
    alpha, beta = np.empty(steps), np.empty(steps)
    vec, scale = probe, 0.0
    m = steps
    for j in range(steps):
        basis[j] = vec
        w = op.matvec(vec)
        alpha[j] = vec @ w
        for _ in range(2):  # full reorthogonalization, twice
            w = w - basis[: j + 1].T @ (basis[: j + 1] @ w)
        beta[j] = np.linalg.norm(w)
        scale = max(scale, abs(alpha[j]) + beta[j] + (beta[j - 1] if j else 0.0))
        if j + 1 == steps or beta[j] <= _BREAKDOWN * scale:
            m = j + 1
            break
        vec = w / beta[j]
    if m == 1:
        return alpha[:1], np.ones(1)
    nodes, vectors = eigh_tridiagonal(alpha[:m], beta[: m - 1])
    weights = vectors[0] ** 2
    return nodes, weights / weights.sum()


def spectral_density(operator, *, n=None, n_probes=10, n_lanczos=80, random_state=None):
    """Spectral density of a symmetric operator by stochastic Lanczos quadrature.

    For each of ``n_probes`` random unit vectors ``v`` (normalized Rademacher),
    ``n_lanczos`` steps of Lanczos with full reorthogonalization from ``v``
    give a tridiagonal ``T = U diag(nodes) U.T``; the nodes and the weights
    ``U[0, :]**2`` form the Gauss quadrature rule of the measure
    ``sum_i (v . x_i)**2 delta(x - lambda_i)``, whose expectation over ``v``
    is the spectral density ``(1/n) sum_i delta(x - lambda_i)`` (Ghorbani,
    Krishnan & Xiao, 2019; the method of PyHessian).

    Parameters
    ----------
    operator : LinearOperator, array-like, sparse matrix or callable
        The operator ``A``, as in :func:`eigenpairs` (a callable needs ``n``).
    n : int, default=None
        Size of the operator; required with a callable.
    n_probes : int, default=10
        Number of random probe vectors.
    n_lanczos : int, default=80
        Lanczos steps (products) per probe, capped at ``n`` (the rule is then
        exact).  A step stops early when the Krylov space is invariant.
    random_state : int, RandomState instance or None, default=None
        Seeds the probes.

    Returns
    -------
    density : SpectralDensity
        ``(nodes, weights, n_hvp)``; evaluate the broadened density with
        ``density.density(grid, sigma)`` and plot it with
        :func:`sharpsk.plotting.plot_spectral_density`.

    Raises
    ------
    ValueError
        If ``n_probes`` or ``n_lanczos`` is not a positive integer, the
        operator is not square, ``n`` does not match it or products are not
        finite.

    See Also
    --------
    eigenpairs : The extreme eigenvalues, accurately.
    trace : The trace, ``n`` times the first moment of the density.

    Notes
    -----
    The moments of the density of order ``j < 2 * n_lanczos`` are unbiased
    estimates of ``trace(A**j) / n``, with the variance of a Hutchinson
    estimate with ``n_probes`` probes.  The extreme nodes converge to the
    extreme eigenvalues (each probe finds them with weight about ``1 / n``);
    the bulk is resolved to about the width of the spectrum over
    ``n_lanczos``, which sets a sensible ``sigma``.

    References
    ----------
    .. [1] B. Ghorbani, S. Krishnan and Y. Xiao, "An investigation into neural
       net optimization via Hessian eigenvalue density", ICML 2019.
    .. [2] Z. Yao, A. Gholami, K. Keutzer and M. W. Mahoney, "PyHessian:
       neural networks through the lens of the Hessian", IEEE BigData 2020.

    Examples
    --------
    >>> import numpy as np
    >>> from sharpsk.hessian import spectral_density
    >>> A = np.diag(np.linspace(-1.0, 1.0, 200))
    >>> sd = spectral_density(A, n_probes=4, n_lanczos=30, random_state=0)
    >>> sd.nodes.shape, sd.n_hvp
    ((4, 30), 120)
    >>> sd.weights.sum(axis=1).round(12)
    array([1., 1., 1., 1.])
    >>> grid = np.linspace(-1.5, 1.5, 3001)
    >>> mass = sd.density(grid, sigma=0.05).sum() * (grid[1] - grid[0])
    >>> round(float(mass), 6)
    1.0
    """
    op = _Operator(operator, n)
    n = op.n
    n_probes = _check_int(n_probes, "n_probes")
    steps = min(_check_int(n_lanczos, "n_lanczos"), n)
    rng = check_random_state(random_state)
    nodes, weights = np.empty((n_probes, steps)), np.zeros((n_probes, steps))
    for p in range(n_probes):
        probe = _rademacher(rng, n) / np.sqrt(n)
        theta, w = _lanczos_quadrature(op, probe, steps)
        nodes[p, : theta.size], nodes[p, theta.size :] = theta, theta[-1]
        weights[p, : w.size] = w
    return SpectralDensity(nodes, weights, op.count)
