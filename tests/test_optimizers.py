"""Optimizers against ground truth: closed-form iteration matrices on quadratics,
stability thresholds, tangent maps through the optimizer state, the
preconditioned sharpness, and the edge of stability of momentum and Adam."""

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from sharpsk import DivergenceWarning, MLPRegressor, UVRegressor
from sharpsk._engine import train
from sharpsk._mlp import MLPModel
from sharpsk._optimizers import OPTIMIZERS, make_optimizer
from sharpsk.datasets import load_digits_onehot

BETAS = (0.0, 0.5, 0.9)
HEAVY = ("gd", "momentum", "nesterov")
ADAPTIVE = ("rmsprop", "adam")


def _edge(name, beta=0.9, beta_1=0.9):
    """``eta`` times the threshold, from the closed forms (not from the code)."""
    return {
        "gd": 2.0,
        "momentum": 2.0 + 2.0 * beta,
        "nesterov": (2.0 + 2.0 * beta) / (1.0 + 2.0 * beta),
        "rmsprop": 2.0,
        "adam": (2.0 + 2.0 * beta_1) / (1.0 - beta_1),
    }[name]


def _matrix(name, a, beta):
    """Iteration matrix on ``L = lambda x^2 / 2`` with ``a = eta * lambda``.

    Coordinates: ``x`` (gd, rmsprop); ``(x, v)`` with ``v`` the velocity
    (momentum, nesterov); ``(x, m / lambda)`` with ``m`` the un-corrected first
    moment (adam, ``beta = beta_1``).  For the adaptive methods ``a = eta *
    lambda / P`` is ``eta`` times the preconditioned sharpness.
    """
    if name in ("gd", "rmsprop"):
        return np.array([[1.0 - a]])
    if name == "momentum":
        # v' = b v - a x ; x' = x + v'
        return np.array([[1.0 - a, beta], [-a, beta]])
    if name == "nesterov":
        # v' = b v - a x ; x' = x + b v' - a x
        return np.array([[1.0 - a * (1.0 + beta), beta * beta], [-a, beta]])
    # adam: u = m / lambda; u' = b u + (1 - b) x ; x' = x - a u'
    return np.array([[1.0 - a * (1.0 - beta), -a * beta], [1.0 - beta, beta]])


def _start(name, x):
    """State vector of :func:`_matrix` at ``x`` with zero velocity / moment."""
    z = np.zeros(1 if name in ("gd", "rmsprop") else 2)
    z[0] = x
    return z


def _radius(M):
    return float(np.max(np.abs(np.linalg.eigvals(M))))


def _dense_hessian(hvp, n):
    H = np.column_stack([hvp(e) for e in np.eye(n)])
    return 0.5 * (H + H.T)


# --------------------------------------------------------------------------
# 1. Closed-form iteration matrices on quadratics
# --------------------------------------------------------------------------
@pytest.mark.parametrize("beta", BETAS)
def test_stability_threshold_formulas(beta):
    eta = 0.37
    for name in OPTIMIZERS:
        opt = make_optimizer(name, momentum=beta, beta_1=beta)
        assert opt.adaptive == (name in ADAPTIVE)
        assert_allclose(opt.edge(), _edge(name, beta, beta), rtol=1e-15)
        assert_allclose(
            opt.stability_threshold(eta), _edge(name, beta, beta) / eta, rtol=1e-15
        )
    # the usual hyper-parameters
    assert_allclose(make_optimizer("momentum").stability_threshold(0.1), 38.0)
    assert_allclose(make_optimizer("nesterov").stability_threshold(0.1), 38.0 / 2.8)
    assert_allclose(make_optimizer("adam").stability_threshold(1.0), 38.0)
    assert_allclose(make_optimizer("adam").stability_threshold(0.01), 3800.0)
    assert_allclose(make_optimizer("rmsprop").stability_threshold(0.5), 4.0)
    # arrays of learning rates broadcast
    assert_allclose(
        make_optimizer("momentum").stability_threshold(np.array([0.1, 0.2])),
        [38.0, 19.0],
    )
    with pytest.raises(ValueError, match="optimizer must be one of"):
        make_optimizer("sgd")


@pytest.mark.parametrize("name", HEAVY)
@pytest.mark.parametrize("beta", BETAS)
def test_update_is_the_iteration_matrix(rng, name, beta):
    """Three independent 1-D quadratics: ``update`` is ``M(eta lambda)^t``."""
    lam = np.array([0.3, 1.7, 4.2])
    eta = 0.37
    opt = make_optimizer(name, momentum=beta)
    theta = rng.normal(size=3)
    state = opt.init_state(3)
    z = [_start(name, x) for x in theta]
    for _ in range(15):
        theta, state = opt.update(theta, lam * theta, eta, state)
        z = [_matrix(name, eta * lam[i], beta) @ z[i] for i in range(3)]
        assert_allclose(theta, [zi[0] for zi in z], rtol=1e-12, atol=1e-14)
        if name != "gd":
            assert_allclose(state["velocity"], [zi[1] for zi in z], rtol=1e-12)


@pytest.mark.parametrize("name", ADAPTIVE)
@pytest.mark.parametrize("beta_1", BETAS)
def test_adaptive_update_is_the_iteration_matrix(rng, name, beta_1):
    """With ``P_t = preconditioner(state, grad)`` (bias corrections included)
    each step of ``update`` is the matrix ``M(eta lambda / P_t)``."""
    lam = np.array([0.3, 1.7, 4.2])
    eta = 0.02
    opt = make_optimizer(name, beta_1=beta_1, beta_2=0.99)
    theta = rng.normal(size=3)
    state = opt.init_state(3)
    z = [_start(name, x) for x in theta]
    for t in range(1, 16):
        grad = lam * theta
        P = opt.preconditioner(state, grad)
        # the closed form of P (sklearn/Kingma-Ba conventions)
        second = 0.99 * state["second"] + 0.01 * grad**2
        if name == "adam":
            expected = (1 - beta_1**t) * (np.sqrt(second / (1 - 0.99**t)) + 1e-8)
        else:
            expected = np.sqrt(second) + 1e-8
        assert_allclose(P, expected, rtol=1e-14)
        theta, state = opt.update(theta, grad, eta, state)
        assert state["t"] == t
        z = [_matrix(name, eta * lam[i] / P[i], beta_1) @ z[i] for i in range(3)]
        assert_allclose(theta, [zi[0] for zi in z], rtol=1e-12, atol=1e-14)
        if name == "adam":
            assert_allclose(state["first"], lam * [zi[1] for zi in z], rtol=1e-12)


@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("beta", BETAS)
def test_spectral_radius_crosses_one_at_the_threshold(name, beta):
    eta = 0.05
    opt = make_optimizer(name, momentum=beta, beta_1=beta)
    threshold = float(opt.stability_threshold(eta))
    below = _radius(_matrix(name, eta * 0.99 * threshold, beta))
    at = _radius(_matrix(name, eta * threshold, beta))
    above = _radius(_matrix(name, eta * 1.01 * threshold, beta))
    assert below < 1.0 < above
    assert_allclose(at, 1.0, rtol=1e-12)
    # and stability everywhere below: the threshold is the first crossing
    for frac in np.linspace(0.01, 0.99, 50):
        assert _radius(_matrix(name, eta * frac * threshold, beta)) < 1.0


@pytest.mark.parametrize("name", ADAPTIVE)
@pytest.mark.parametrize("frac", [0.99, 1.01])
def test_frozen_preconditioner_update_decays_or_grows(name, frac):
    """The real ``update`` with a frozen ``P``: beta_2 -> 1, ``s >> g^2`` and
    bias corrections at 1 (``t`` huge) keep ``P = sqrt(s) + eps`` fixed, and
    the iterates follow the constant matrix at ``frac`` times the threshold."""
    eta, beta_1 = 0.01, 0.9
    opt = make_optimizer(name, beta_1=beta_1, beta_2=1.0 - 1e-12, epsilon=1e-8)
    s = np.array([4.0, 0.25])  # P = (2, 0.5)
    P = np.sqrt(s) + 1e-8
    threshold = float(opt.stability_threshold(eta))
    lam = frac * threshold * P  # preconditioned sharpness frac * threshold
    theta = np.array([1e-20, -2e-20])
    state = opt.init_state(2)
    state["t"] = 10**15
    state["second"] = s.copy()
    z = [_start(name, x) for x in theta]
    n_steps = 120
    for _ in range(n_steps):
        grad = lam * theta
        assert_allclose(opt.preconditioner(state, grad), P, rtol=1e-10)
        theta, state = opt.update(theta, grad, eta, state)
        z = [_matrix(name, eta * lam[i] / P[i], beta_1) @ z[i] for i in range(2)]
    assert_allclose(theta, [zi[0] for zi in z], rtol=1e-8)
    growth = np.abs(theta / [1e-20, -2e-20]) ** (1.0 / n_steps)
    rho = _radius(_matrix(name, eta * frac * threshold, beta_1))
    assert (rho < 1.0) == (frac < 1.0)
    assert np.all(growth < 1.0) if frac < 1 else np.all(growth > 1.0)
