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
        P_t = opt.preconditioner(state, grad)
        assert_allclose(P_t, P, rtol=1e-9)  # frozen
        theta, state = opt.update(theta, grad, eta, state)
        z = [_matrix(name, eta * lam[i] / P_t[i], beta_1) @ z[i] for i in range(2)]
    assert_allclose(theta, [zi[0] for zi in z], rtol=1e-11)
    growth = np.abs(theta / [1e-20, -2e-20]) ** (1.0 / n_steps)
    rho = _radius(_matrix(name, eta * frac * threshold, beta_1))
    assert (rho < 1.0) == (frac < 1.0)
    assert np.all(growth < 1.0) if frac < 1 else np.all(growth > 1.0)


# --------------------------------------------------------------------------
# 2. End to end on a quadratic: the linear model's exact Hessian
# --------------------------------------------------------------------------
@pytest.fixture
def linear_data(rng):
    """A well-conditioned realizable least-squares problem (2 outputs)."""
    X = rng.normal(size=(40, 5))
    Y = X @ rng.normal(size=(5, 2))
    return X, Y


def _linear(**kwargs):
    return MLPRegressor(
        (), activation="identity", fit_intercept=False, random_state=0, **kwargs
    )


@pytest.mark.parametrize(
    "name, beta", [("gd", 0.9), ("momentum", 0.5), ("momentum", 0.9), ("nesterov", 0.9)]
)
def test_linear_model_converges_below_and_diverges_above_threshold(
    linear_data, name, beta
):
    X, Y = linear_data
    lam = np.linalg.eigvalsh(X.T @ X / X.shape[0])[-1]
    edge = _edge(name, beta)
    for frac in (0.95, 1.05):
        est = _linear(
            optimizer=name,
            momentum=beta,
            learning_rate=frac * edge / lam,
            max_iter=600,
            record_every=10,
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            est.fit(X, Y)
        assert_allclose(est.sharpness_trace_, lam, rtol=1e-9)
        assert_allclose(est.learning_rate_, frac * edge / lam, rtol=1e-15)
        assert isinstance(est.stability_threshold_, float)
        assert_allclose(est.stability_threshold_, edge / est.learning_rate_, rtol=1e-14)
        assert_allclose(est.sharpness_trace_ / est.stability_threshold_, frac, rtol=1e-9)
        assert est.preconditioned_sharpness_trace_ is None
        assert np.all(np.isfinite(est.loss_curve_))
        assert np.all(np.isfinite(est.sharpness_trace_))
        categories = [w.category for w in caught]
        if frac < 1:
            assert not est.diverged_ and est.n_iter_ == 600
            assert DivergenceWarning not in categories
            assert est.loss_curve_[-1] < 1e-12 * est.loss_curve_[0]
        else:
            assert est.diverged_ and 0 < est.n_iter_ < 600
            assert categories.count(DivergenceWarning) == 1
            assert est.steps_[-1] == est.n_iter_  # the last finite state closes
            assert est.loss_curve_[-1] > 1e6 * est.loss_curve_[0]


def test_linear_model_units_of_initial_sharpness(linear_data):
    """``lr_units="initial_sharpness"``: ``learning_rate`` is ``eta lambda_0``,
    so the heavy ball's edge is ``learning_rate = 2 + 2 beta`` on a quadratic."""
    X, Y = linear_data
    lam = np.linalg.eigvalsh(X.T @ X / X.shape[0])[-1]
    est = _linear(
        optimizer="momentum",
        momentum=0.9,
        learning_rate=0.95 * 3.8,
        lr_units="initial_sharpness",
        max_iter=10,
    ).fit(X, Y)
    assert_allclose(est.initial_sharpness_, lam, rtol=1e-9)
    assert_allclose(est.learning_rate_, 0.95 * 3.8 / lam, rtol=1e-9)
    assert_allclose(est.stability_threshold_ / lam, 1 / 0.95, rtol=1e-9)


@pytest.mark.parametrize("name", ADAPTIVE)
def test_linear_model_preconditioned_sharpness(linear_data, name):
    """On a quadratic ``H`` is known exactly; ``P`` is rebuilt from the
    optimizer's own recurrences on the closed-form gradient."""
    X, Y = linear_data
    n = X.shape[0]
    est = _linear(optimizer=name, learning_rate=0.01, max_iter=6).fit(X, Y)
    init = _linear(optimizer=name, learning_rate=0.01, max_iter=0).fit(X, Y)
    W = init.coefs_[0].copy()
    opt = make_optimizer(name)
    state = opt.init_state(W.size)
    H1 = X.T @ X / n
    H = np.kron(H1, np.eye(2))  # W raveled in C order: (feature, output)
    assert_allclose(est.sharpness_trace_, np.linalg.eigvalsh(H1)[-1], rtol=1e-9)
    for t in range(7):
        grad = (X.T @ (X @ W - Y) / n).ravel()
        d = 1.0 / np.sqrt(opt.preconditioner(state, grad))
        expected = np.linalg.eigvalsh(d[:, None] * H * d[None, :])[-1]
        assert_allclose(est.preconditioned_sharpness_trace_[t], expected, rtol=1e-6)
        if t < 6:
            theta, state = opt.update(W.ravel(), grad, 0.01, state)
            W = theta.reshape(W.shape)
    assert_allclose(est.coefs_[0], W, rtol=1e-12)
