"""The exact function-space map against parameter-space gradient descent."""

import numpy as np
import pytest
from autograd import grad
from autograd import numpy as anp
from numpy.testing import assert_allclose

from sharpsk._maps import (
    eos_map,
    uv_jacobian,
    uv_sharpness,
    uv_simulate,
    uv_step,
)
from sharpsk._sharpness import hessian_dense


def _uv_loss(params, x, y, s):
    U, v = params
    return 0.5 * (s * anp.dot(v, anp.dot(U, x)) - y) ** 2


def _state(U, v, x, y, s):
    a = U @ x
    return s * v @ a - y, s**2 * (a @ a + (v @ v) * (x @ x)), s**2 * (x @ x)


@pytest.mark.parametrize(
    "n, d, s, eta, y",
    [(3, 2, 1.0, 0.3, 1.0), (50, 4, 50**-0.5, 0.9, -0.7), (20, 1, 0.05, 7.0, 2.0)],
)
def test_map_equals_parameter_space_gd(rng, n, d, s, eta, y):
    """Twenty GD steps on (U, v) reproduce the 2-D map to ~1e-12 relative."""
    U, v, x = rng.normal(size=(n, d)), rng.normal(size=n), rng.normal(size=d)
    x /= np.linalg.norm(x)
    g = grad(_uv_loss)
    df, lam, kappa = _state(U, v, x, y, s)
    for _ in range(20):
        gU, gv = g([U, v], x, y, s)
        U, v = U - eta * gU, v - eta * gv
        df, lam = uv_step(df, lam, eta, kappa, y)
        df_p, lam_p, _ = _state(U, v, x, y, s)
        assert_allclose([df, lam], [df_p, lam_p], rtol=1e-10, atol=1e-12)


def test_closed_form_sharpness_and_spectrum(rng):
    """lambda_H and the other eigenvalues +-sqrt(kappa)|df|, 0 vs dense eigvalsh."""
    n, d, s, y = 6, 3, 0.7, 0.4
    for _ in range(5):
        U, v, x = rng.normal(size=(n, d)), rng.normal(size=n), rng.normal(size=d)
        df, lam, kappa = _state(U, v, x, y, s)
        H = hessian_dense(lambda p, x=x: _uv_loss(p, x, y, s), [U, v])
        ev = np.linalg.eigvalsh(H)
        assert_allclose(ev[-1], uv_sharpness(df, lam, kappa, y), rtol=1e-12)
        # d2f/dU dv = s (I_n kron x) has singular values s|x| (n times), so the
        # residual term gives +-sqrt(kappa)|df| (n-1 times each after the rank-one
        # Gauss-Newton term takes one pair) and n d - n zeros (one may move).
        r = np.sqrt(kappa) * abs(df)
        assert np.min(np.abs(ev - r)) < 1e-10 * max(1, r)
        assert np.min(np.abs(ev + r)) < 1e-10 * max(1, r)
        assert np.sum(np.abs(ev) < 1e-10) >= n * d - n - 1
        assert np.sum(np.abs(ev - r) < 1e-9 * max(1, r)) >= n - 2


def test_jacobian_matches_finite_differences(rng):
    z = np.array([0.3, 2.5])
    eta, kappa, y = 0.7, 1.3, 0.8
    J = uv_jacobian(z[0], z[1], eta, kappa, y)
    h = 1e-6
    for j in range(2):
        dz = np.zeros(2)
        dz[j] = h
        plus = np.array(uv_step(*(z + dz), eta, kappa, y))
        minus = np.array(uv_step(*(z - dz), eta, kappa, y))
        assert_allclose(J[:, j], (plus - minus) / (2 * h), rtol=1e-7, atol=1e-9)


def test_conservation_law():
    """Q = lambda^2 - 4 kappa f^2 obeys Q' = Q (1 - eta^2 kappa df^2)^2."""
    df, lam, eta, kappa, y = 0.1, 3.0, 0.6, 1.2, 1.0
    for _ in range(30):
        q = lam**2 - 4 * kappa * (df + y) ** 2
        factor = (1 - eta**2 * kappa * df**2) ** 2
        df, lam = uv_step(df, lam, eta, kappa, y)
        assert_allclose(
            lam**2 - 4 * kappa * (df + y) ** 2, q * factor, rtol=1e-9, atol=1e-12
        )


def test_eos_manifold_reduces_to_cubic_map():
    """On Q = 0 the scaled 2-D map is the 1-D cubic map."""
    eta, kappa, y = 1.0, 1.0, 1.3
    yt = eta * np.sqrt(kappa) * y
    for g in (-0.4, 0.1, 0.35):
        df = g / (eta * np.sqrt(kappa))
        lam = 2 * np.sqrt(kappa) * abs(df + y)
        df_new, lam_new = uv_step(df, lam, eta, kappa, y)
        assert_allclose(eta * np.sqrt(kappa) * df_new, eos_map(g, yt), rtol=1e-12)
        assert_allclose(eta * lam_new, 2 * abs(eos_map(g, yt) + yt), rtol=1e-12)


def test_simulate_batch_equals_single_runs():
    etas = np.linspace(0.2, 2.6, 13)
    batch = uv_simulate(0.5, 2.0, etas, 1.0, 1.0, 300, record_every=7)
    assert batch["steps"][-1] == 300
    for i, eta in enumerate(etas):
        one = uv_simulate(0.5, 2.0, eta, 1.0, 1.0, 300, record_every=7)
        assert one["n_iter"] == batch["n_iter"][i]
        assert one["diverged"] == batch["diverged"][i]
        np.testing.assert_array_equal(one["delta_f"], batch["delta_f"][:, i])
        np.testing.assert_array_equal(one["ntk"], batch["ntk"][:, i])
    # Large learning rates blow up: flagged, with NaN past the last finite state.
    assert batch["diverged"][-1] and batch["n_iter"][-1] < 300
    assert np.isnan(batch["delta_f"][-1, -1])
