"""Tests of the eigen kernels in ``sharpsk._sharpness`` against ground truth."""

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from sharpsk._maps import uv_sharpness
from sharpsk._sharpness import (
    EigenResult,
    TopEigenTracker,
    flatten_params,
    gradient_and_hvp,
    hessian_dense,
    top_eigenpair,
    top_hessian_eigenpair,
    unflatten_params,
)

METHODS = ["lanczos", "lobpcg", "arpack", "dense"]


class Counter:
    """A matvec that counts its calls (the ground truth for ``n_hvp``)."""

    def __init__(self, A):
        self.A, self.calls = A, 0

    def __call__(self, v):
        self.calls += 1
        return self.A @ v


def spectrum_matrix(eigenvalues, seed):
    """Symmetric matrix with the given spectrum and random eigenvectors."""
    n = len(eigenvalues)
    Q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(n, n)))
    return (Q * np.asarray(eigenvalues)) @ Q.T


def random_symmetric(n, seed, negative=False):
    """Random symmetric matrix; ``negative``: a dominant negative eigenvalue."""
    rng = np.random.default_rng(seed)
    eigenvalues = np.concatenate([[5.0, 3.5], rng.uniform(-3.0, 3.0, n - 2)])
    if negative:
        eigenvalues[-1] = -40.0  # |lambda_min| >> lambda_max
    return spectrum_matrix(eigenvalues, seed + 1000)


# -----------------------------------------------------------------------------
# Flat vectors <-> parameter lists
# -----------------------------------------------------------------------------
def test_flatten_unflatten_roundtrip():
    rng = np.random.default_rng(0)
    params = [rng.normal(size=(3, 2)), np.array(1.5), rng.normal(size=4)]
    vec = flatten_params(params)
    assert vec.shape == (11,) and vec.dtype == np.float64
    back = unflatten_params(vec, params)
    assert [b.shape for b in back] == [(3, 2), (), (4,)]
    for a, b in zip(params, back, strict=True):
        assert_allclose(b, a, rtol=0, atol=0)
    assert_allclose(flatten_params(back), vec, rtol=0, atol=0)
    back[0][0, 0] = 99.0  # copies, not views
    assert vec[0] == params[0][0, 0]


def test_flatten_params_empty_and_int():
    assert flatten_params([]).shape == (0,)
    assert flatten_params([np.array([1, 2])]).dtype == np.float64


def test_unflatten_wrong_size_raises():
    with pytest.raises(ValueError, match="vec"):
        unflatten_params(np.zeros(5), [np.zeros((2, 2))])


def test_params_must_be_a_sequence():
    with pytest.raises(TypeError, match="params"):
        flatten_params(np.zeros(3))


# -----------------------------------------------------------------------------
# top_eigenpair on explicit matrices
# -----------------------------------------------------------------------------
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("negative", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_top_eigenpair_random_symmetric(method, negative, seed):
    n = 40
    A = random_symmetric(n, seed, negative=negative)
    eigenvalues = np.linalg.eigvalsh(A)
    top = eigenvalues[-1]
    assert np.isclose(top, 5.0)
    counter = Counter(A)
    res = top_eigenpair(counter, n, method=method, tol=1e-10, random_state=seed)
    assert isinstance(res, EigenResult)
    assert res.converged
    # the LARGEST ALGEBRAIC eigenvalue, not the largest in magnitude
    assert_allclose(res.eigenvalue, top, rtol=1e-8)
    assert res.eigenvector.shape == (n,) and res.eigenvector.dtype == np.float64
    assert_allclose(np.linalg.norm(res.eigenvector), 1.0, rtol=1e-12)
    residual = np.linalg.norm(A @ res.eigenvector - res.eigenvalue * res.eigenvector)
    assert residual <= 1e-4 * abs(top)
    assert res.n_hvp == counter.calls
    if method == "dense":
        assert res.n_hvp == n


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("n", [1, 2, 3, 4, 6])
def test_top_eigenpair_small_n(method, n):
    A = random_symmetric(n, 3, negative=True) if n > 2 else np.diag([-7.0, 2.0][:n])
    top = np.linalg.eigvalsh(A)[-1]
    counter = Counter(A)
    res = top_eigenpair(counter, n, method=method, tol=1e-10, random_state=0)
    assert res.converged
    assert_allclose(res.eigenvalue, top, rtol=1e-8, atol=1e-12)
    assert res.n_hvp == counter.calls
    if method == "lanczos":
        assert res.n_hvp <= n  # the Krylov space is full after n products


@pytest.mark.parametrize("method", METHODS)
def test_top_eigenpair_zero_operator(method):
    res = top_eigenpair(lambda v: np.zeros_like(v), 7, method=method, random_state=0)
    assert res.eigenvalue == 0.0
    assert res.converged
    assert_allclose(np.linalg.norm(res.eigenvector), 1.0, rtol=1e-12)
    if method == "lanczos":
        assert res.n_hvp == 1


def test_lanczos_exact_warm_start_takes_one_matvec():
    A = random_symmetric(50, 4, negative=True)
    values, vectors = np.linalg.eigh(A)
    counter = Counter(A)
    res = top_eigenpair(counter, 50, v0=-3.0 * vectors[:, -1], tol=1e-10)
    assert res.n_hvp == counter.calls == 1
    assert res.converged
    assert_allclose(res.eigenvalue, values[-1], rtol=1e-12)
    # oriented like v0
    assert_allclose(res.eigenvector, -vectors[:, -1], atol=1e-12)


@pytest.mark.parametrize("angle", [1e-3, 1e-2])
def test_lanczos_perturbed_warm_start_takes_few(angle):
    n, tol = 200, 1e-4
    A = random_symmetric(n, 5, negative=True)
    values, vectors = np.linalg.eigh(A)
    rng = np.random.default_rng(6)
    w = rng.normal(size=n)
    w -= (w @ vectors[:, -1]) * vectors[:, -1]
    v0 = np.cos(angle) * vectors[:, -1] + np.sin(angle) * w / np.linalg.norm(w)
    warm = top_eigenpair(lambda v: A @ v, n, v0=v0, tol=tol)
    cold = top_eigenpair(lambda v: A @ v, n, tol=tol, random_state=0)
    assert warm.converged and warm.n_hvp <= 3
    assert warm.n_hvp < cold.n_hvp
    for res in (warm, cold):
        assert abs(res.eigenvalue - values[-1]) <= tol * values[-1]
        assert res.eigenvalue <= values[-1] * (1 + 1e-14)  # Ritz values from below


def test_lanczos_invariant_subspace_breakdown():
    # documented limit: a start inside an invariant subspace sees only it
    A = np.diag([1.0, 2.0, 3.0, 10.0, -4.0])
    v0 = np.array([1.0, 1.0, 0.0, 0.0, 0.0])
    res = top_eigenpair(lambda v: A @ v, 5, v0=v0, tol=1e-10)
    assert res.converged and res.n_hvp == 2
    assert_allclose(res.eigenvalue, 2.0, rtol=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_budget_exhausted_returns_best_estimate(method):
    n = 60
    A = random_symmetric(n, 7)
    top = np.linalg.eigvalsh(A)[-1]
    counter = Counter(A)
    res = top_eigenpair(
        counter, n, method=method, tol=1e-12, max_matvec=4, random_state=0
    )
    assert not res.converged
    assert res.n_hvp == counter.calls <= 4
    assert np.isfinite(res.eigenvalue)
    assert res.eigenvalue <= top * (1 + 1e-12)  # a Rayleigh quotient: below top
    assert_allclose(np.linalg.norm(res.eigenvector), 1.0, rtol=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_non_finite_operator_is_a_result(method):
    def matvec(v):
        return np.full_like(v, np.inf)

    res = top_eigenpair(matvec, 6, method=method, random_state=0)
    assert np.isnan(res.eigenvalue)
    assert not res.converged
    assert res.eigenvector.shape == (6,)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"tol": 0.0}, "tol"),
        ({"tol": -1e-3}, "tol"),
        ({"tol": float("nan")}, "tol"),
        ({"tol": 1.0}, "tol"),
        ({"tol": "small"}, "tol"),
        ({"method": "power"}, "method"),
        ({"v0": np.ones(4)}, "v0"),
        ({"v0": np.ones((5, 1))}, "v0"),
        ({"v0": np.array([1.0, np.nan, 0, 0, 0])}, "v0"),
        ({"v0": np.zeros(5)}, "v0"),
        ({"max_matvec": 0}, "max_matvec"),
        ({"max_matvec": 2.5}, "max_matvec"),
    ],
)
def test_top_eigenpair_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        top_eigenpair(lambda v: v, 5, **kwargs)


def test_top_eigenpair_validation_n_and_matvec():
    with pytest.raises(ValueError, match="n"):
        top_eigenpair(lambda v: v, 0)
    with pytest.raises(TypeError, match="matvec"):
        top_eigenpair(np.eye(3), 3)
    with pytest.raises(ValueError, match="matvec"):
        top_eigenpair(lambda v: np.ones(4), 3)


def test_random_state_reproducible():
    A = random_symmetric(30, 8)
    a = top_eigenpair(lambda v: A @ v, 30, tol=1e-3, random_state=3)
    b = top_eigenpair(lambda v: A @ v, 30, tol=1e-3, random_state=3)
    assert a.eigenvalue == b.eigenvalue and a.n_hvp == b.n_hvp
    assert_allclose(a.eigenvector, b.eigenvector, rtol=0, atol=0)


def test_warm_tracking_slowly_changing_matrices():
    # H_t = H + t dt E: warm starts from the previous eigenvector
    n, tol = 120, 1e-4
    rng = np.random.default_rng(9)
    H = spectrum_matrix(np.concatenate([[10.0, 8.0], rng.uniform(-6, 6, n - 2)]), 9)
    E = rng.normal(size=(n, n))
    E = (E + E.T) / np.sqrt(2 * n)
    v, n_hvp, errors = None, [], []
    for t in range(25):
        Ht = H + 0.02 * t * E
        top = np.linalg.eigvalsh(Ht)[-1]
        res = top_eigenpair(lambda x, Ht=Ht: Ht @ x, n, v0=v, tol=tol, random_state=0)
        v = res.eigenvector
        if t > 0:
            n_hvp.append(res.n_hvp)
        errors.append(abs(res.eigenvalue - top) / top)
    assert np.mean(n_hvp) <= 3.0
    assert max(errors) <= 3 * tol


# -----------------------------------------------------------------------------
# Autograd: gradient, HVP, dense Hessian
# -----------------------------------------------------------------------------
B_QUARTIC = np.array([[2.0, 0.5, 0.0], [0.5, 1.0, -0.3], [0.0, -0.3, 0.7]])


def quartic_loss(p):
    w, M = p
    return (
        0.25 * anp.sum(w**4)
        + 0.5 * anp.dot(w, anp.dot(B_QUARTIC, w))
        + anp.sum(M**2) * w[0]
    )


def quartic_hessian(w, M):
    """Hand-written Hessian of ``quartic_loss`` in flattened order (w, M)."""
    H = np.zeros((7, 7))
    H[:3, :3] = np.diag(3.0 * w**2) + B_QUARTIC
    H[0, 3:] = H[3:, 0] = 2.0 * M.ravel()
    H[3:, 3:] = 2.0 * w[0] * np.eye(4)
    return H


def quartic_params():
    rng = np.random.default_rng(10)
    return [rng.normal(size=3), rng.normal(size=(2, 2))]


def test_hessian_dense_matches_analytic():
    params = quartic_params()
    H = hessian_dense(quartic_loss, params)
    assert H.shape == (7, 7)
    assert_allclose(H, quartic_hessian(*params), rtol=1e-12, atol=1e-12)
    assert_allclose(H, H.T, rtol=0, atol=0)


def mlp_problem(seed=0, n_samples=8, n_in=3, n_hidden=4):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_samples, n_in))
    y = np.sin(X @ rng.normal(size=n_in))[:, None]
    params = [
        rng.normal(size=(n_in, n_hidden)),
        0.1 * rng.normal(size=n_hidden),
        rng.normal(size=(n_hidden, 1)),
        0.1 * rng.normal(size=1),
    ]

    def loss(p):
        W1, b1, W2, b2 = p
        out = anp.dot(anp.tanh(anp.dot(X, W1) + b1), W2) + b2
        return 0.5 * anp.mean((out - y) ** 2)

    return loss, params


def test_hessian_dense_matches_finite_differences():
    loss, params = mlp_problem()
    H = hessian_dense(loss, params)
    w0 = flatten_params(params)
    grad = autograd.grad(loss)

    def flat_grad(w):
        return flatten_params(grad(unflatten_params(w, params)))

    h = 1e-5
    fd = np.empty_like(H)
    for j in range(w0.size):
        e = np.zeros_like(w0)
        e[j] = h
        fd[:, j] = (flat_grad(w0 + e) - flat_grad(w0 - e)) / (2 * h)
    assert_allclose(H, fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("problem", ["quartic", "mlp"])
def test_gradient_and_hvp(problem):
    if problem == "quartic":
        loss, params = quartic_loss, quartic_params()
    else:
        loss, params = mlp_problem(1)
    calls = []

    def counted_loss(p):
        calls.append(1)
        return loss(p)

    grad, hvp = gradient_and_hvp(counted_loss, params)
    assert len(calls) == 1
    expected = autograd.grad(loss)(params)
    for g, e, p in zip(grad, expected, params, strict=True):
        assert g.shape == p.shape
        assert_allclose(g, e, rtol=1e-13, atol=1e-15)
    H = hessian_dense(loss, params)
    rng = np.random.default_rng(11)
    for _ in range(3):
        v = rng.normal(size=H.shape[0])
        assert_allclose(hvp(v), H @ v, rtol=1e-12, atol=1e-13)
    assert len(calls) == 1  # the HVPs reuse the recorded forward pass
    v = rng.normal(size=H.shape[0])
    expected_hv = H @ v
    for p in params:
        p += 1.0  # in-place updates after the call do not leak into the closure
    assert_allclose(hvp(v), expected_hv, rtol=1e-12, atol=1e-13)
    with pytest.raises(ValueError, match="hvp"):
        hvp(np.ones(H.shape[0] + 1))


# -----------------------------------------------------------------------------
# top_hessian_eigenpair
# -----------------------------------------------------------------------------
def uv_problem(n, d, seed, y=1.3, s=0.7):
    rng = np.random.default_rng(seed)
    U, v, x = rng.normal(size=(n, d)), rng.normal(size=n), rng.normal(size=d)

    def loss(p):
        return 0.5 * (s * anp.dot(p[1], anp.dot(p[0], x)) - y) ** 2

    return loss, [U, v], x, y, s


@pytest.mark.parametrize(
    "n, d, seed, y",
    [(1, 1, 0, 1.3), (1, 3, 1, -0.4), (4, 3, 2, 1.3), (6, 2, 3, 0.2), (5, 5, 4, -2.0)],
)
def test_uv_sharpness_closed_form(n, d, seed, y):
    loss, params, x, y, s = uv_problem(n, d, seed, y=y)
    U, v = params
    f = s * v @ U @ x
    df = f - y
    kappa = s**2 * (x @ x)
    lam = s**2 * ((U @ x) @ (U @ x) + (v @ v) * (x @ x))
    disc = lam**2 + 4 * kappa * df * (3 * df + 2 * y)
    lam_h = 0.5 * (lam + np.sqrt(disc))  # science.md section 2.1

    dense = top_hessian_eigenpair(loss, params, method="dense")
    lanczos = top_hessian_eigenpair(
        loss, params, method="lanczos", tol=1e-10, random_state=0
    )
    assert dense.n_hvp == n * d + n
    assert_allclose(dense.eigenvalue, lam_h, rtol=1e-12)
    assert_allclose(lanczos.eigenvalue, lam_h, rtol=1e-9)
    assert_allclose(uv_sharpness(df, lam, kappa, y), lam_h, rtol=1e-12)

    # Full spectrum.  science.md lists the others as +-sqrt(kappa)|df| and 0;
    # the dense Hessian shows they are: lam - lam_h (the partner root of the
    # same quadratic; trace(H) = lam), +-sqrt(kappa)|df| each n-1 times (none
    # when n = 1), and 0 n(d-1) times.
    spectrum = np.linalg.eigvalsh(hessian_dense(loss, params))
    mu = np.sqrt(kappa) * abs(df)
    expected = np.sort(
        np.concatenate(
            [
                [lam_h, lam - lam_h],
                np.full(n - 1, mu),
                np.full(n - 1, -mu),
                np.zeros(n * (d - 1)),
            ]
        )
    )
    assert_allclose(spectrum, expected, rtol=1e-10, atol=1e-12)
    assert_allclose(spectrum.sum(), lam, rtol=1e-10)


def test_uv_sharpness_at_a_minimum_is_the_ntk():
    loss, params, x, y, s = uv_problem(3, 2, 5)
    U, v = params
    v = v * y / (s * v @ U @ x)  # f = y exactly
    lam = s**2 * ((U @ x) @ (U @ x) + (v @ v) * (x @ x))
    res = top_hessian_eigenpair(loss, [U, v], method="dense")
    assert_allclose(res.eigenvalue, lam, rtol=1e-12)


@pytest.mark.parametrize("method", ["lanczos", "lobpcg", "arpack"])
def test_mlp_iterative_matches_dense(method):
    loss, params = mlp_problem(2, n_samples=12, n_in=4, n_hidden=6)
    tol = 1e-6
    dense = top_hessian_eigenpair(loss, params, method="dense")
    top = np.linalg.eigvalsh(hessian_dense(loss, params))[-1]
    assert_allclose(dense.eigenvalue, top, rtol=1e-12)
    res = top_hessian_eigenpair(loss, params, method=method, tol=tol, random_state=0)
    assert res.converged
    assert abs(res.eigenvalue - top) <= tol * abs(top)
    assert abs(res.eigenvector @ dense.eigenvector) >= 1 - 1e-4


def test_top_hessian_eigenpair_auto_and_hvp_reuse():
    loss, params = mlp_problem(3)
    size = flatten_params(params).size
    calls = []

    def counted_loss(p):
        calls.append(1)
        return loss(p)

    auto = top_hessian_eigenpair(counted_loss, params)
    assert auto.n_hvp == size and auto.converged  # P <= dense_max_size: dense
    grad, hvp = gradient_and_hvp(counted_loss, params)
    n_calls = len(calls)
    iterative = top_hessian_eigenpair(
        counted_loss, params, hvp=hvp, dense_max_size=0, tol=1e-8, random_state=0
    )
    assert len(calls) == n_calls  # nothing recomputed
    assert iterative.n_hvp < size
    assert_allclose(iterative.eigenvalue, auto.eigenvalue, rtol=1e-8)
    # warm start given as a parameter list, already the eigenvector
    warm = top_hessian_eigenpair(
        loss,
        params,
        method="lanczos",
        v0=unflatten_params(auto.eigenvector, params),
        tol=1e-8,
    )
    assert warm.n_hvp == 1
    assert_allclose(warm.eigenvalue, auto.eigenvalue, rtol=1e-12)


def test_top_hessian_eigenpair_validation():
    loss, params = mlp_problem(0)
    with pytest.raises(ValueError, match="method"):
        top_hessian_eigenpair(loss, params, method="power")
    with pytest.raises(ValueError, match="tol"):
        top_hessian_eigenpair(loss, params, tol=0.0)
    with pytest.raises(ValueError, match="v0"):
        top_hessian_eigenpair(loss, params, v0=np.ones(3))
    with pytest.raises(ValueError, match="dense_max_size"):
        top_hessian_eigenpair(loss, params, dense_max_size=-1)
    with pytest.raises(ValueError, match="params"):
        top_hessian_eigenpair(loss, [])
    with pytest.raises(TypeError, match="loss"):
        top_hessian_eigenpair(None, params)


def test_mlp_gradient_descent_tracking():
    # 30 GD steps of a tanh MLP at eta = 1.9 / lambda_H0 with warm starts
    loss, params = mlp_problem(4, n_samples=30, n_in=4, n_hidden=8)
    tol = 1e-4
    top0 = np.linalg.eigvalsh(hessian_dense(loss, params))[-1]
    eta = 1.9 / top0
    v, n_hvp, errors = None, [], []
    for t in range(30):
        grad, hvp = gradient_and_hvp(loss, params)
        top = np.linalg.eigvalsh(hessian_dense(loss, params))[-1]
        res = top_hessian_eigenpair(
            loss, params, method="lanczos", hvp=hvp, v0=v, tol=tol, random_state=t
        )
        v = res.eigenvector
        if t > 0:
            n_hvp.append(res.n_hvp)
        errors.append(abs(res.eigenvalue - top) / top)
        params = [p - eta * g for p, g in zip(params, grad, strict=True)]
    assert max(errors) <= tol
    assert np.mean(n_hvp) <= 4.0  # cold starts cost 6-10 here


# -----------------------------------------------------------------------------
# Cold-start minimum, extra warm-start directions, TopEigenTracker
# -----------------------------------------------------------------------------
def matrix_hiding_top(n, overlap, seed):
    """Spectrum 5.1, 5.0, U(-1, 4); top eigenvector has ``overlap`` with the
    random start vector of ``random_state=0``."""
    v = np.random.RandomState(0).standard_normal(n)
    v /= np.linalg.norm(v)
    rng = np.random.default_rng(seed)
    w = rng.normal(size=n)
    w -= (w @ v) * v
    q1 = overlap * v + np.sqrt(1 - overlap**2) * w / np.linalg.norm(w)
    Q, _ = np.linalg.qr(np.column_stack([q1, rng.normal(size=(n, n - 1))]))
    values = np.concatenate([[5.1, 5.0], rng.uniform(-1.0, 4.0, n - 2)])
    return (Q * values) @ Q.T


def test_cold_start_minimum_dimension_finds_hidden_top():
    # a random start nearly orthogonal to the top eigenvector first converges
    # to lambda_2 (2 % below): stopping at the first passed test accepts it
    n, tol = 300, 1e-4
    A = matrix_hiding_top(n, 3e-3, seed=2)
    top = np.linalg.eigvalsh(A)[-1]
    early = top_eigenpair(lambda v: A @ v, n, tol=tol, random_state=0, min_matvec=1)
    assert early.converged and early.n_hvp < 30
    assert_allclose(early.eigenvalue, 5.0, rtol=1e-3)  # the documented failure
    res = top_eigenpair(lambda v: A @ v, n, tol=tol, random_state=0)
    assert res.converged and res.n_hvp == 30
    assert abs(res.eigenvalue - top) <= tol * top


def test_min_matvec_is_respected_and_validated():
    A = random_symmetric(40, 11)
    vec = np.linalg.eigh(A)[1][:, -1] + 1e-4 * np.random.default_rng(0).normal(size=40)
    assert top_eigenpair(lambda v: A @ v, 40, v0=vec).n_hvp < 5
    counter = Counter(A)
    res = top_eigenpair(counter, 40, v0=vec, min_matvec=5)
    assert res.n_hvp == counter.calls == 5 and res.converged
    assert_allclose(res.eigenvalue, np.linalg.eigvalsh(A)[-1], rtol=1e-8)
    # breakdown: an invariant subspace ends the run whatever the minimum
    D = np.diag([1.0, 2.0, 3.0, 10.0, -4.0])
    res = top_eigenpair(lambda v: D @ v, 5, v0=[1.0, 1.0, 0, 0, 0], min_matvec=4)
    assert res.n_hvp == 2 and res.converged
    with pytest.raises(ValueError, match="min_matvec"):
        top_eigenpair(lambda v: v, 5, min_matvec=0)


def overtaking_pair(n, seed, lam_old, lam_new):
    """Matrix with eigenpairs (lam_old, q_old), (lam_new, q_new), rest below 3."""
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    values = np.concatenate([[lam_old, lam_new], rng.uniform(-3.0, 3.0, n - 2)])
    return (Q * values) @ Q.T, Q[:, 0], Q[:, 1]


def test_extra_starts_reveal_an_overtaking_eigenvalue():
    # the tracked eigenvector is still an exact eigenvector, but another
    # eigenvalue has overtaken it: v0 alone stops after one product on the
    # old one (a documented limit); the old second Ritz vector as an extra
    # start shows the new top after two products
    n, tol = 80, 1e-6
    A, q_old, q_new = overtaking_pair(n, 12, 5.0, 5.2)
    alone = top_eigenpair(lambda v: A @ v, n, v0=q_old, tol=tol)
    assert alone.n_hvp == 1 and alone.converged
    assert_allclose(alone.eigenvalue, 5.0, rtol=1e-12)
    counter = Counter(A)
    res = top_eigenpair(counter, n, v0=q_old, extra_starts=q_new, tol=tol)
    assert res.n_hvp == counter.calls == 2 and res.converged
    assert_allclose(res.eigenvalue, 5.2, rtol=1e-12)
    assert abs(res.eigenvector @ q_new) >= 1 - 1e-12


def test_extra_starts_inside_the_basis_cost_nothing():
    n = 60
    A = random_symmetric(n, 13)
    values, vectors = np.linalg.eigh(A)
    v0 = vectors[:, -1] + 0.01 * vectors[:, 0]
    plain = top_eigenpair(lambda v: A @ v, n, v0=v0, tol=1e-8)
    # v0 itself (and a zero column) as extra starts: below 5 % new, skipped
    extra = np.column_stack([2.0 * v0, np.zeros(n)])
    res = top_eigenpair(lambda v: A @ v, n, v0=v0, extra_starts=extra, tol=1e-8)
    assert res.n_hvp == max(plain.n_hvp, 2)
    assert abs(res.eigenvalue - values[-1]) <= 1e-8 * values[-1]


def test_extra_start_threshold_five_percent_new():
    """A column is used when its part orthogonal to the basis has at least 5 %
    of its norm (decided from the projection coefficients alone: a column
    below it costs no product and changes no number)."""
    from sharpsk._sharpness import _CountingOperator, _lanczos

    n = 60
    A = random_symmetric(n, 21)
    rng = np.random.default_rng(2)
    v0 = rng.normal(size=n)
    v0 /= np.linalg.norm(v0)
    perp = rng.normal(size=n)
    perp -= (perp @ v0) * v0
    perp /= np.linalg.norm(perp)

    def run(block):
        op = _CountingOperator(lambda v: A @ v, n, 200)
        seen = []

        def record(v):
            seen.append(v.copy())
            return A @ v

        op.matvec = record
        return _lanczos(op, block, 1e-10, 2), seen

    plain, plain_seen = run([v0])
    for share, used in [(0.04, False), (0.06, True)]:
        col = np.sqrt(1 - share**2) * v0 + share * perp
        ritz, seen = run([v0, col])
        if used:  # the second basis vector is the column's new part
            assert_allclose(abs(seen[1] @ perp), 1.0, rtol=1e-12)
        else:  # skipped: the plain Lanczos run, bit for bit
            assert ritz.result.eigenvalue == plain.result.eigenvalue
            assert ritz.result.n_hvp == plain.result.n_hvp
            assert_array_equal(np.array(seen), np.array(plain_seen))
        assert_allclose(ritz.result.eigenvalue, np.linalg.eigvalsh(A)[-1], 1e-10)
    # a zero column (the tracker never passes one) is skipped, not divided by 0
    ritz, seen = run([v0, np.zeros(n)])
    assert ritz.result.eigenvalue == plain.result.eigenvalue
    assert_array_equal(np.array(seen), np.array(plain_seen))


@pytest.mark.parametrize(
    "extra, match",
    [
        (np.ones((4, 2)), "extra_starts"),
        (np.ones((5, 2, 1)), "extra_starts"),
        (np.full((5, 1), np.nan), "extra_starts"),
    ],
)
def test_extra_starts_validation(extra, match):
    with pytest.raises(ValueError, match=match):
        top_eigenpair(lambda v: v, 5, v0=np.ones(5), extra_starts=extra)


def test_tracker_follows_period_two_swaps():
    # an edge-of-stability caricature: the top two eigenvalues alternate
    # order every step while their eigenvectors turn and the matrix drifts
    n, tol = 150, 1e-4
    rng = np.random.default_rng(14)
    Q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    bulk = rng.uniform(-2.0, 3.0, n - 3)
    E = rng.normal(size=(n, n))
    E = (E + E.T) / np.sqrt(2 * n)
    tracker = TopEigenTracker(tol=tol, random_state=0)
    v = None
    errors, plain_errors, n_hvp = [], [], []
    for t in range(40):
        angle = 0.05 * t
        c, s = np.cos(angle), np.sin(angle)
        R = Q.copy()
        R[:, 0], R[:, 1] = c * Q[:, 0] + s * Q[:, 1], -s * Q[:, 0] + c * Q[:, 1]
        top3 = [5.2, 5.0, 4.9] if t % 2 else [5.0, 5.2, 4.9]
        A = (R * np.concatenate([top3, bulk])) @ R.T + 0.01 * t * E
        top = np.linalg.eigvalsh(A)[-1]
        res = tracker.update(lambda x, A=A: A @ x, n)
        plain = top_eigenpair(lambda x, A=A: A @ x, n, v0=v, tol=tol, random_state=0)
        v = plain.eigenvector
        errors.append((top - res.eigenvalue) / top)
        plain_errors.append((top - plain.eigenvalue) / top)
        if t:
            n_hvp.append(res.n_hvp)
    assert tracker.n_updates_ == 40
    assert max(errors) <= 3 * tol
    assert min(errors) >= -1e-12  # Ritz values from below
    assert max(plain_errors) > 100 * tol  # v0 alone misses swaps
    assert np.mean(n_hvp) <= 6


def test_tracker_resets_on_new_dimension_and_pickles():
    import pickle

    tracker = TopEigenTracker(tol=1e-8, random_state=0)
    A = random_symmetric(20, 15)
    first = tracker.update(lambda v: A @ v, 20)
    assert first.n_hvp == 20  # cold: the minimum covers the whole space
    assert tracker.update(lambda v: A @ v, 20).n_hvp == 2
    B = random_symmetric(30, 16)
    res = tracker.update(lambda v: B @ v, 30)
    assert tracker.n_updates_ == 1  # reset, then cold
    assert_allclose(res.eigenvalue, np.linalg.eigvalsh(B)[-1], rtol=1e-8)
    clone = pickle.loads(pickle.dumps(tracker))
    assert clone.update(lambda v: B @ v, 30).n_hvp == 2


# -----------------------------------------------------------------------------
# Float32 products, the reusable workspace
# -----------------------------------------------------------------------------
class Float32Counter(Counter):
    """``A @ v`` in float32 arithmetic (float64 in and out), counted."""

    def __init__(self, A, noise=0.0):
        super().__init__(A.astype(np.float32))
        self.noise = noise

    def __call__(self, v):
        self.calls += 1
        out = (self.A @ v.astype(np.float32)).astype(np.float64)
        return out * (1.0 + self.noise)  # noise: a product off by that much


@pytest.mark.parametrize("seed", range(3))
def test_tracker_float32_products_against_dense(seed):
    A = random_symmetric(60, seed)
    top = np.linalg.eigvalsh(A)[-1]
    tol = 1e-5
    exact, fast = Counter(A), Float32Counter(A)
    tracker = TopEigenTracker(tol=tol, random_state=0)
    for t in range(12):
        step = A + 0.02 * t * np.diag(np.linspace(-1.0, 1.0, 60))
        exact.A = step
        fast.A = step.astype(np.float32)
        before = exact.calls
        res = tracker.update(exact, 60, matvec32=fast)
        dense = np.linalg.eigvalsh(step)[-1]
        assert abs(res.eigenvalue - dense) <= tol * abs(dense)
        # float64: one product on the first (check) update, none after
        assert exact.calls - before == (1 if t == 0 else 0)
    assert fast.calls > 0 and tracker._float32
    # below 1e-5 the float32 products are not used
    tight = TopEigenTracker(tol=1e-8, random_state=0)
    fast.calls = 0
    res = tight.update(Counter(A), 60, matvec32=fast)
    assert fast.calls == 0
    assert_allclose(res.eigenvalue, top, rtol=1e-8)


def test_tracker_drops_float32_products_that_are_too_coarse():
    A = random_symmetric(40, 3)
    tol = 1e-4
    exact, coarse = Counter(A), Float32Counter(A, noise=1e-4)  # shift 1e-4 > tol/10
    tracker = TopEigenTracker(tol=tol, random_state=0)
    res = tracker.update(exact, 40, matvec32=coarse)
    assert not tracker._float32
    # the checked eigenvalue is the float64 Rayleigh quotient of the result
    v = res.eigenvector
    assert_allclose(res.eigenvalue, v @ A @ v, rtol=1e-14)
    top = np.linalg.eigvalsh(A)[-1]
    assert abs(res.eigenvalue - top) <= tol * abs(top)
    calls = coarse.calls
    res = tracker.update(exact, 40, matvec32=coarse)
    assert coarse.calls == calls  # float64 from then on
    assert_allclose(res.eigenvalue, top, rtol=tol)


def test_tracker_checks_float32_every_hundred_updates():
    A = random_symmetric(60, 4)
    exact, fast = Counter(A), Float32Counter(A)
    tracker = TopEigenTracker(tol=1e-4, random_state=0)
    checks = []
    for _ in range(201):
        before = exact.calls
        tracker.update(exact, 60, matvec32=fast)
        checks.append(exact.calls - before)
    assert np.flatnonzero(checks).tolist() == [0, 100, 200]
    tracker.reset()
    before = exact.calls
    tracker.update(exact, 60, matvec32=fast)
    assert exact.calls - before == 1  # a reset checks again
    # no check when the budget is spent (the cold start covers n = 30)
    small, fast_small = Counter(A[:30, :30]), Float32Counter(A[:30, :30])
    tracker = TopEigenTracker(tol=1e-4, random_state=0)
    assert tracker.update(small, 30, matvec32=fast_small).n_hvp == 30
    assert small.calls == 0


def test_lanczos_workspace_size_and_reuse_change_no_number():
    from sharpsk._sharpness import _CountingOperator, _lanczos, _Workspace

    A = random_symmetric(80, 7)
    rng = np.random.default_rng(1)
    block = [rng.normal(size=80) for _ in range(3)]
    block = [b / np.linalg.norm(b) for b in block]
    results = []
    for capacity, dirty in [(1, False), (3, False), (64, False), (64, True)]:
        work = _Workspace(80, capacity)
        if dirty:  # rows left by an earlier run are never read
            work.basis[:] = np.nan
            work.images[:] = np.nan
            work.gram[:] = np.nan
            work.resid[:] = np.nan
        op = _CountingOperator(lambda v: A @ v, 80, 200)
        ritz = _lanczos(op, block, 1e-12, 1, work)
        assert work.capacity >= ritz.result.n_hvp
        results.append(ritz)
    for ritz in results[1:]:
        assert ritz.result.eigenvalue == results[0].result.eigenvalue
        assert ritz.result.n_hvp == results[0].result.n_hvp
        assert_allclose(ritz.result.eigenvector, results[0].result.eigenvector, 0, 0)
        assert ritz.second_value == results[0].second_value
    assert_allclose(results[0].result.eigenvalue, np.linalg.eigvalsh(A)[-1], 1e-12)


def test_tracker_keeps_its_workspace_but_does_not_pickle_it():
    import pickle

    A = random_symmetric(50, 8)
    tracker = TopEigenTracker(tol=1e-8, random_state=0)
    tracker.update(lambda v: A @ v, 50)
    work = tracker._workspace
    tracker.update(lambda v: A @ v, 50)
    assert tracker._workspace is work
    clone = pickle.loads(pickle.dumps(tracker))
    assert clone._workspace is None
    a, b = tracker.update(lambda v: A @ v, 50), clone.update(lambda v: A @ v, 50)
    assert a.eigenvalue == b.eigenvalue and a.n_hvp == b.n_hvp
