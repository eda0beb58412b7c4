"""Tests of ``sharpsk.hessian`` against dense ground truth."""

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy.sparse.linalg import LinearOperator

from sharpsk import MLPRegressor, UVRegressor
from sharpsk._maps import uv_sharpness
from sharpsk.datasets import load_digits_onehot, make_uv_example
from sharpsk.hessian import (
    EigenpairsResult,
    SpectralDensity,
    TraceEstimate,
    eigenpairs,
    spectral_density,
    trace,
)

UV_TARGET = 10.0  # eta = 0.3 is then beyond eta_c: a large residual after 20 steps


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


def clustered_matrix(n=200, seed=0):
    """Negative eigenvalues, a top cluster within 1e-3, a large negative one."""
    rng = np.random.default_rng(seed)
    top = [10.0, 9.999, 9.998, 9.99, 9.9, 9.5]
    bulk = rng.uniform(-8.0, 5.0, n - len(top) - 1)
    return spectrum_matrix(np.concatenate([top, bulk, [-9.995]]), seed + 100)


def wanted(values, which, k):
    """The ``k`` eigenvalues ``which`` selects, in its order."""
    if which == "LA":
        return np.sort(values)[::-1][:k]
    return values[np.argsort(-np.abs(values), kind="stable")][:k]


def dense_of(H):
    D = H @ np.eye(H.shape[0])
    return 0.5 * (D + D.T)


@pytest.fixture(scope="module")
def mlp():
    """The digits MLP: (estimator, Hessian operator, dense Hessian)."""
    X, Y = load_digits_onehot(n_samples=60, random_state=0)
    est = MLPRegressor((8,), max_iter=20, random_state=0).fit(X, Y)
    H = est.hessian_operator(X, Y)
    return est, H, dense_of(H)


@pytest.fixture(scope="module")
def uv():
    """The single-example UV model: (Hessian, closed-form spectrum, lambda_H)."""
    X, y = make_uv_example(5, target=UV_TARGET, random_state=0)
    est = UVRegressor(6, max_iter=20, learning_rate=0.3, random_state=0).fit(X, y)
    assert not est.diverged_
    delta_f, ntk, kappa = est.residual_trace_[-1], est.ntk_trace_[-1], est.kappa_
    lam = float(uv_sharpness(delta_f, ntk, kappa, UV_TARGET))
    width, d = 6, 5
    pm = np.sqrt(kappa) * abs(delta_f)
    spectrum = np.concatenate(
        [
            [lam, ntk - lam],
            np.full(width - 1, pm),
            np.full(width - 1, -pm),
            np.zeros(width * (d - 1)),
        ]
    )
    assert pm > 1.0  # a spectrum with +-sqrt(kappa)|delta_f| well away from 0
    return est.hessian_operator(X, y), np.sort(spectrum), lam


# -----------------------------------------------------------------------------
# eigenpairs
# -----------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["LA", "LM"])
@pytest.mark.parametrize("k", [1, 3, 5])
def test_eigenpairs_random_symmetric(k, which):
    A = clustered_matrix()
    true = np.linalg.eigvalsh(A)
    res = eigenpairs(A, k, which=which, tol=1e-6, random_state=0)
    assert isinstance(res, EigenpairsResult) and res.converged
    assert res.eigenvalues.shape == (k,) and res.eigenvectors.shape == (200, k)
    # the residual test bounds the error by tol * |lambda|; it is far smaller
    assert_allclose(res.eigenvalues, wanted(true, which, k), rtol=1e-6, atol=0)
    resid = A @ res.eigenvectors - res.eigenvectors * res.eigenvalues
    assert_allclose(np.linalg.norm(resid, axis=0), res.residual_norms, atol=1e-12)
    assert np.all(res.residual_norms <= 1e-6 * np.abs(res.eigenvalues))
    assert_allclose(res.eigenvectors.T @ res.eigenvectors, np.eye(k), atol=1e-10)


def test_eigenpairs_lm_finds_the_negative_end():
    A = clustered_matrix()
    res = eigenpairs(A, 5, which="LM", random_state=0)
    assert -9.995 in np.round(res.eigenvalues, 8)
    la = eigenpairs(A, 5, which="LA", random_state=0)
    assert np.all(la.eigenvalues > 9.0)
    assert np.all(np.diff(la.eigenvalues) <= 0)
    assert np.all(np.diff(np.abs(res.eigenvalues)) <= 0)


@pytest.mark.parametrize("k", [1, 3])
def test_eigenpairs_callable_counts_products(k):
    A = clustered_matrix(seed=1)
    hvp = Counter(A)
    res = eigenpairs(hvp, k, n=200, random_state=0)
    assert res.n_hvp == hvp.calls > 0
    lin = LinearOperator(A.shape, matvec=lambda v: A @ v, dtype=float)
    res_op = eigenpairs(lin, k, random_state=0)
    assert res_op.n_hvp == res.n_hvp
    assert_allclose(res_op.eigenvalues, res.eigenvalues, rtol=1e-12)
    counted = Counter(A)
    assert eigenpairs(
        LinearOperator(A.shape, matvec=counted, dtype=float), k, random_state=0
    ).n_hvp == (counted.calls)


def test_eigenpairs_dense_array_and_linear_operator_agree():
    A = clustered_matrix(seed=2)
    lin = LinearOperator(A.shape, matvec=lambda v: A @ v, dtype=float)
    assert_allclose(
        eigenpairs(A, 3, random_state=0).eigenvalues,
        eigenpairs(lin, 3, random_state=0).eigenvalues,
        rtol=1e-12,
    )


def test_eigenpairs_repeated_top_eigenvalue_needs_a_block():
    # lambda = 5 three times: a block of k = 3 finds all three copies
    rng = np.random.default_rng(3)
    values = np.concatenate([[5.0, 5.0, 5.0], rng.uniform(-4.0, 4.0, 297)])
    A = spectrum_matrix(values, 4)
    res = eigenpairs(A, 3, random_state=0)
    assert_allclose(res.eigenvalues, [5.0, 5.0, 5.0], rtol=1e-8)
    assert_allclose(res.eigenvectors.T @ res.eigenvectors, np.eye(3), atol=1e-8)


def test_eigenpairs_warm_start_and_budget():
    A = clustered_matrix(seed=5)
    values, vectors = np.linalg.eigh(A)
    warm = eigenpairs(A, 1, v0=vectors[:, -1], random_state=0)
    assert warm.n_hvp == 1 and warm.converged
    assert_allclose(warm.eigenvalues, values[-1:], rtol=1e-12)
    warm3 = eigenpairs(A, 3, v0=vectors[:, -3:], random_state=0)
    assert warm3.n_hvp == 3 and warm3.converged
    short = eigenpairs(A, 2, max_matvec=4, random_state=0)
    assert short.n_hvp == 4 and not short.converged
    assert np.all(short.eigenvalues <= values[-1] + 1e-12)  # Ritz values: below


def test_eigenpairs_dense_path():
    A = np.array([[2.0, 1.0, 0.0], [1.0, -3.0, 0.5], [0.0, 0.5, 1.0]])
    true = np.linalg.eigvalsh(A)
    for which in ("LA", "LM"):
        res = eigenpairs(A, 2, which=which)
        assert res.n_hvp == 3 and res.converged
        assert_allclose(res.eigenvalues, wanted(true, which, 2), rtol=1e-12)
    A6 = spectrum_matrix([3.0, 2.0, 1.0, -1.0, -4.0, 0.5], 0)
    res = eigenpairs(Counter(A6), 5, n=6)  # n <= k + 1: dense
    assert res.n_hvp == 6
    assert_allclose(res.eigenvalues, wanted(np.linalg.eigvalsh(A6), "LA", 5))


def test_eigenpairs_block_size_one():
    A = clustered_matrix(seed=6)
    res = eigenpairs(A, 5, random_state=0, block_size=1)
    assert res.converged
    assert_allclose(res.eigenvalues, wanted(np.linalg.eigvalsh(A), "LA", 5), rtol=1e-6)


def test_eigenpairs_reproducible():
    A = clustered_matrix(seed=7)
    a = eigenpairs(A, 3, random_state=42)
    b = eigenpairs(A, 3, random_state=np.random.RandomState(42))
    assert_array_equal(a.eigenvalues, b.eigenvalues)
    assert_array_equal(a.eigenvectors, b.eigenvectors)
    assert a.n_hvp == b.n_hvp


def test_eigenpairs_mlp_hessian(mlp):
    est, H, D = mlp
    true = np.linalg.eigvalsh(D)
    res = eigenpairs(H, random_state=0)
    assert_allclose(res.eigenvalues[0], true[-1], rtol=1e-10)
    assert_allclose(res.eigenvalues[0], est.sharpness_trace_[-1], rtol=1e-6)
    assert true[0] < 0  # a Hessian with negative eigenvalues
    for which in ("LA", "LM"):
        res5 = eigenpairs(H, 5, which=which, random_state=0)
        assert res5.converged
        assert_allclose(res5.eigenvalues, wanted(true, which, 5), rtol=1e-8)
        resid = D @ res5.eigenvectors - res5.eigenvectors * res5.eigenvalues
        assert np.linalg.norm(resid, axis=0).max() <= 1e-6 * true[-1]


@pytest.mark.parametrize("block_size", [None, 1])
def test_eigenpairs_uv_closed_form(uv, block_size):
    H, spectrum, lam = uv
    assert_allclose(np.linalg.eigvalsh(dense_of(H)), spectrum, atol=1e-10)
    kw = {"random_state": 0, "block_size": block_size}
    res = eigenpairs(H, 1, **kw)
    assert_allclose(res.eigenvalues, [lam], rtol=1e-10)
    # LA: lambda_H, then +sqrt(kappa)|delta_f| five times (a repeated eigenvalue)
    la = eigenpairs(H, 6, which="LA", **kw)
    assert la.converged
    assert_allclose(la.eigenvalues, wanted(spectrum, "LA", 6), rtol=1e-8)
    # LM: lambda_H, then the ten eigenvalues +-sqrt(kappa)|delta_f|
    lm = eigenpairs(H, 11, which="LM", **kw)
    assert lm.converged
    assert_allclose(np.sort(lm.eigenvalues), np.sort(spectrum[np.r_[:5, -6:0]]))
    D = dense_of(H)
    for res in (la, lm):
        resid = D @ res.eigenvectors - res.eigenvectors * res.eigenvalues
        assert np.linalg.norm(resid, axis=0).max() <= 1e-6 * lam


# -----------------------------------------------------------------------------
# trace
# -----------------------------------------------------------------------------
def hutchinson_sd(D):
    """Exact standard deviation of one Rademacher quadratic form ``z.T D z``."""
    return np.sqrt(2.0 * (np.sum(D * D) - np.sum(np.diag(D) ** 2)))


def test_trace_mlp_within_standard_errors(mlp):
    _, H, D = mlp
    est, err = trace(H, n_samples=400, random_state=0)
    assert abs(est - np.trace(D)) <= 3 * err
    # the standard error estimates the exact one to within its own noise
    assert_allclose(err, hutchinson_sd(D) / np.sqrt(400), rtol=0.25)


def test_trace_standard_error_coverage(mlp):
    _, H, D = mlp
    exact, sd = np.trace(D), hutchinson_sd(D)
    results = [trace(H, n_samples=100, random_state=s) for s in range(40)]
    z = np.array([(r.estimate - exact) / r.standard_error for r in results])
    errors = np.array([r.standard_error for r in results])
    # 2-sigma coverage ~95 %: at least 33 of 40 (binomial tail ~ 1e-3)
    assert np.sum(np.abs(z) <= 2) >= 33
    assert_allclose(np.mean(errors), sd / 10, rtol=0.15)


def test_trace_hutchpp_beats_hutchinson():
    rng = np.random.default_rng(8)
    values = np.concatenate([[1000.0, 500.0, 200.0, 100.0], rng.uniform(-1, 1, 196)])
    A = spectrum_matrix(values, 9)
    hutch = [trace(A, n_samples=60, random_state=s) for s in range(10)]
    hpp = [trace(A, n_samples=60, method="hutch++", random_state=s) for s in range(10)]
    err_h = np.sqrt(np.mean([(r.estimate - values.sum()) ** 2 for r in hutch]))
    err_pp = np.sqrt(np.mean([(r.estimate - values.sum()) ** 2 for r in hpp]))
    assert err_pp < err_h / 20
    for r in hpp:
        assert abs(r.estimate - values.sum()) <= 4 * r.standard_error


def test_trace_hutchpp_exact_when_the_sketch_spans_the_space():
    A = clustered_matrix(n=10)
    hvp = Counter(A)
    est, err = trace(hvp, n=10, n_samples=30, method="hutch++", random_state=0)
    assert_allclose(est, np.trace(A), rtol=1e-12)
    assert err == 0.0 and hvp.calls == 20


def test_trace_counts_and_reproducibility():
    A = clustered_matrix(n=50)
    hvp = Counter(A)
    res = trace(hvp, n=50, n_samples=37, random_state=3)
    assert isinstance(res, TraceEstimate) and hvp.calls == 37
    assert_allclose(res, trace(A, n_samples=37, random_state=3), rtol=1e-12)
    assert res != trace(A, n_samples=37, random_state=4)
    hvp = Counter(A)
    trace(hvp, n=50, n_samples=37, method="hutch++", random_state=3)
    assert hvp.calls == 37


# -----------------------------------------------------------------------------
# spectral density
# -----------------------------------------------------------------------------
def test_spectral_density_moments_mlp(mlp):
    _, H, D = mlp
    n, n_probes = D.shape[0], 30
    sd = spectral_density(H, n_probes=n_probes, n_lanczos=40, random_state=0)
    assert isinstance(sd, SpectralDensity)
    assert sd.nodes.shape == sd.weights.shape == (n_probes, 40)
    assert sd.n_hvp == n_probes * 40
    assert_allclose(sd.weights.sum(axis=1), 1.0, rtol=1e-12)
    assert np.all(sd.weights >= 0)
    # moment j of each probe is z.T D**j z / n (Gauss rule exact for j < 80):
    # over n_probes probes, unbiased with the Hutchinson standard error
    for j, Dj in ((1, D), (2, D @ D)):
        moment = np.mean(np.sum(sd.weights * sd.nodes**j, axis=1))
        tol = 4 * hutchinson_sd(Dj) / np.sqrt(n_probes) / n
        assert abs(moment - np.trace(Dj) / n) <= tol
    # the extreme nodes are the extreme eigenvalues
    true = np.linalg.eigvalsh(D)
    assert_allclose(sd.nodes.max(), true[-1], rtol=1e-8)
    assert_allclose(sd.nodes.min(), true[0], rtol=1e-6)


def test_spectral_density_invariant_krylov_space(uv):
    # the UV Hessian has 5 distinct eigenvalues: Lanczos stops early, the
    # nodes are then exact eigenvalues and the padding has weight 0
    H, spectrum, _ = uv
    sd = spectral_density(H, n_probes=3, n_lanczos=30, random_state=0)
    assert sd.n_hvp < 3 * 30
    assert_allclose(sd.weights.sum(axis=1), 1.0, rtol=1e-12)
    nodes = sd.nodes[sd.weights > 1e-10]
    gaps = np.abs(nodes[:, None] - np.unique(spectrum.round(12))[None]).min(axis=1)
    assert gaps.max() <= 1e-8
    mean = np.mean(np.sum(sd.weights * sd.nodes, axis=1)) * H.shape[0]
    assert np.isfinite(mean)


def test_spectral_density_evaluation():
    A = np.diag(np.linspace(-1.0, 1.0, 300))
    sd = spectral_density(A, n_probes=5, n_lanczos=300, random_state=0)
    assert sd.nodes.shape == (5, 300)  # capped at n
    grid = np.linspace(-2.0, 2.0, 4001)
    dens = sd.density(grid, sigma=0.05)
    assert dens.shape == grid.shape and np.all(dens >= 0)
    assert_allclose(np.sum(dens) * (grid[1] - grid[0]), 1.0, rtol=1e-6)
    # n = n_lanczos: the rule is exact, the density a broadened uniform law
    inside = np.abs(grid) < 0.8
    assert_allclose(dens[inside], 0.5, rtol=0.02)
    assert sd.density(np.zeros((2, 3))).shape == (2, 3)
    assert_allclose(sd.default_sigma(), 0.02, rtol=1e-8)


def test_spectral_density_object():
    sd = SpectralDensity([[-1.0, 2.0], [0.0, 3.0]], [[0.25, 0.75], [1.0, 0.0]], 4)
    assert repr(sd) == "SpectralDensity(n_probes=2, n_nodes=2, n_hvp=4)"
    assert sd.nodes.dtype == sd.weights.dtype == np.float64
    grid = np.linspace(-10.0, 13.0, 23001)
    dens = sd.density(grid, sigma=0.5)
    # mean over probes of the moments: (1.25 + 0) / 2
    assert_allclose(np.sum(dens * grid) * (grid[1] - grid[0]), 0.625, rtol=1e-8)
    for nodes, weights, match in [
        ([1.0, 2.0], [0.5, 0.5], "nodes"),
        ([[1.0, 2.0]], [[1.0]], "weights"),
        ([[1.0, np.inf]], [[0.5, 0.5]], "finite"),
        ([[1.0, 2.0]], [[1.5, -0.5]], "non-negative"),
    ]:
        with pytest.raises(ValueError, match=match):
            SpectralDensity(nodes, weights)


def test_spectral_density_reproducible_and_callable():
    A = clustered_matrix(n=60)
    a = spectral_density(A, n_probes=3, n_lanczos=10, random_state=1)
    b = spectral_density(
        lambda v: A @ v, n=60, n_probes=3, n_lanczos=10, random_state=1
    )
    assert_allclose(a.nodes, b.nodes, rtol=1e-12)
    assert_allclose(a.weights, b.weights, rtol=1e-10, atol=1e-14)
    c = spectral_density(A, n_probes=3, n_lanczos=10, random_state=2)
    assert not np.allclose(a.nodes, c.nodes)


# -----------------------------------------------------------------------------
# Errors
# -----------------------------------------------------------------------------
def _square():
    return clustered_matrix(n=20)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda A: eigenpairs(np.zeros((3, 4))), "square"),
        (lambda A: eigenpairs(np.zeros(5)), "square"),
        (lambda A: eigenpairs(A, n=21), "n=21"),
        (lambda A: eigenpairs(lambda v: A @ v), "n is required"),
        (lambda A: eigenpairs(lambda v: A @ v, n=0), "n must"),
        (lambda A: eigenpairs(lambda v: A @ v, n=2.5), "n must"),
        (lambda A: eigenpairs(A, 20), "k must"),
        (lambda A: eigenpairs(A, 0), "k must"),
        (lambda A: eigenpairs(A, which="SA"), "which"),
        (lambda A: eigenpairs(A, tol=0.0), "tol"),
        (lambda A: eigenpairs(A, 3, max_matvec=2), "max_matvec"),
        (lambda A: eigenpairs(A, v0=np.ones(19)), "v0"),
        (lambda A: eigenpairs(A, v0=np.zeros(20)), "v0"),
        (lambda A: eigenpairs(A, block_size=0), "block_size"),
        (lambda A: eigenpairs(lambda v: np.ones(3), n=20), "shape"),
        (lambda A: eigenpairs(lambda v: v * np.nan, n=20), "non-finite"),
        (lambda A: trace(A, n_samples=1), "n_samples"),
        (lambda A: trace(A, n_samples=3, method="hutch++"), "n_samples"),
        (lambda A: trace(A, method="exact"), "method"),
        (lambda A: trace(np.ones((2, 3))), "square"),
        (lambda A: spectral_density(A, n_probes=0), "n_probes"),
        (lambda A: spectral_density(A, n_lanczos=-1), "n_lanczos"),
        (
            lambda A: spectral_density(A, n_probes=1, n_lanczos=3).density([0.0], 0),
            "sigma",
        ),
        (
            lambda A: spectral_density(A, n_probes=1, n_lanczos=3).density([np.nan]),
            "grid",
        ),
    ],
)
def test_errors_name_the_culprit(call, match):
    with pytest.raises(ValueError, match=match):
        call(_square())


def test_operator_type_error():
    with pytest.raises(TypeError, match="operator"):
        eigenpairs("not an operator")


# -----------------------------------------------------------------------------
# plot_spectral_density
# -----------------------------------------------------------------------------
def test_plot_spectral_density(mlp, tmp_path):
    import matplotlib.pyplot as plt

    from sharpsk.plotting import plot_spectral_density

    _, H, D = mlp
    sd = spectral_density(H, n_probes=3, n_lanczos=30, random_state=0)
    fig, ax = plt.subplots()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = plot_spectral_density(sd, ax=ax, color="C3")
    assert out is ax and ax.get_yscale() == "log"
    (line,) = [a for a in ax.get_lines() if a.get_gid() == "density"]
    x, y = line.get_data()
    assert x.min() < np.linalg.eigvalsh(D)[0] and x.max() > sd.nodes.max()
    assert_allclose(y, sd.density(x), rtol=1e-12)
    path = tmp_path / "density.png"
    fig.savefig(path, dpi=60)
    assert path.stat().st_size > 1000
    grid = np.linspace(-5.0, 15.0, 50)
    plt.figure()  # the current Axes: a new one
    ax2 = plot_spectral_density(sd, grid=grid, sigma=0.5, log=False)
    (line,) = [a for a in ax2.get_lines() if a.get_gid() == "density"]
    assert_allclose(line.get_ydata(), sd.density(grid, 0.5))
    assert ax2.get_yscale() == "linear"
    with pytest.raises(TypeError, match="density"):
        plot_spectral_density(np.zeros(3))
