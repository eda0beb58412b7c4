"""Optimizers against ground truth: closed-form iteration matrices on quadratics,
stability thresholds, tangent maps through the optimizer state, the
preconditioned sharpness, and the edge of stability of momentum and Adam."""

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from sharpsk import DivergenceWarning, MLPRegressor, UVRegressor
from sharpsk._engine import train
from sharpsk._mlp_kernels import MLPModel
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


@pytest.mark.parametrize(
    "name, beta_1", [("rmsprop", 0.9), ("adam", 0.0), ("adam", 0.5), ("adam", 0.9)]
)
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
        assert_allclose(
            est.sharpness_trace_ / est.stability_threshold_, frac, rtol=1e-9
        )
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
    """``lr_units="initial_sharpness"``: ``learning_rate`` is ``eta lambda_H0``,
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


# --------------------------------------------------------------------------
# 3. Tangent maps through (theta, optimizer state)
# --------------------------------------------------------------------------
def _tiny_tanh_model(rng):
    X, Y = rng.normal(size=(7, 3)), rng.normal(size=(7, 2))
    shapes = [(3, 4), (4,), (4, 2), (2,)]
    return MLPModel(X, Y, shapes, [1.0, 1.0, 0.7, 1.0], "tanh")


def _pack(opt, theta, state):
    return np.concatenate([theta] + [state[k] for k in opt.state_arrays()])


def _unpack(opt, z, state, n):
    out = dict(state)
    for i, k in enumerate(opt.state_arrays(), start=1):
        out[k] = z[i * n : (i + 1) * n]
    return z[:n], out


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_tangent_is_the_derivative_of_the_step(rng, name):
    model = _tiny_tanh_model(rng)
    n = model.n_params
    opt = make_optimizer(name, momentum=0.8, beta_1=0.85, beta_2=0.95)
    eta = 0.05
    theta = 0.7 * rng.normal(size=n)
    state = opt.init_state(n)
    for _ in range(4):  # non-zero velocity / moments
        theta, state = opt.update(theta, model.point(theta).gradient(), eta, state)
    for k in opt.state_arrays():
        assert np.all(np.abs(state[k]) > 0)

    def step(z):
        th, st = _unpack(opt, z, state, n)
        new_theta, new_state = opt.update(th, model.point(th).gradient(), eta, st)
        return _pack(opt, new_theta, new_state)

    z0 = _pack(opt, theta, state)
    # theta along a Gaussian, the state arrays along relative Gaussian changes
    # (the second moment stays positive)
    vec = rng.normal(size=z0.size)
    vec[n:] *= np.abs(z0[n:])
    point = model.point(theta)
    grad = point.gradient()
    new_state = opt.update(theta, grad, eta, state)[1]
    tangent = opt.tangent(vec.copy(), state, new_state, grad, point.hvp, eta)
    h = 1e-6
    fd = (step(z0 + h * vec) - step(z0 - h * vec)) / (2 * h)
    assert tangent.shape == z0.shape
    assert_allclose(tangent, fd, rtol=1e-5, atol=1e-8 * np.max(np.abs(fd)))
    # the state part is not trivial: the tangent depends on it
    if opt.state_arrays():
        other = vec.copy()
        other[n:] = 0.0
        pushed = opt.tangent(other, state, new_state, grad, point.hvp, eta)
        assert np.max(np.abs(pushed[:n] - tangent[:n])) > 1e-3 * np.max(np.abs(fd))


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_engine_lyapunov_tangent_carries_the_state(rng, name):
    """The engine's tangent has ``n_params * (1 + n_state_arrays)`` entries and
    its log growth matches a replay of ``optimizer.tangent``."""
    model = _tiny_tanh_model(rng)
    n = model.n_params
    opt = make_optimizer(name)
    theta0 = 0.7 * rng.normal(size=n)
    eta = 0.05 if name in HEAVY else 0.005
    out = train(
        model,
        theta0,
        optimizer=opt,
        learning_rate=eta,
        max_iter=8,
        record_every=4,
        compute_lyapunov=True,
        rng_tangent=np.random.RandomState(3),
    )
    size = n * (1 + len(opt.state_arrays()))
    assert out["state"]["tangent"].shape == (size,)
    vec = np.random.RandomState(3).standard_normal(size)
    vec /= np.linalg.norm(vec)
    theta, state, growth = theta0, opt.init_state(n), []
    for _ in range(8):
        point = model.point(theta)
        grad = point.gradient()
        new_theta, new_state = opt.update(theta, grad, eta, state)
        vec = opt.tangent(vec, state, new_state, grad, point.hvp, eta)
        growth.append(np.log(np.linalg.norm(vec)))
        vec /= np.linalg.norm(vec)
        theta, state = new_theta, new_state
    assert_allclose(out["growth"], growth, rtol=1e-12)
    assert_array_equal(out["theta"], theta)


# --------------------------------------------------------------------------
# 4. Preconditioned sharpness of a tiny MLP against dense eigensolves
# --------------------------------------------------------------------------
@pytest.mark.parametrize("name", ADAPTIVE)
def test_preconditioned_sharpness_of_a_tiny_mlp(rng, name):
    X, Y = rng.normal(size=(12, 4)), rng.normal(size=(12, 2))
    kw = dict(
        hidden_layer_sizes=(5,),
        activation="tanh",
        optimizer=name,
        learning_rate=0.01,
        record_every=1,
        random_state=0,
    )
    est = MLPRegressor(max_iter=10, **kw).fit(X, Y)
    init = MLPRegressor(max_iter=0, **kw).fit(X, Y)  # SP: raw = trained
    assert init.scalings_["multiplier"].tolist() == [1.0, 1.0]
    shapes = [(4, 5), (5,), (5, 2), (2,)]
    model = MLPModel(X, Y, shapes, [1.0] * 4, "tanh")
    theta = np.concatenate(
        [
            a.ravel()
            for W, b in zip(init.coefs_, init.intercepts_, strict=True)
            for a in (W, b)
        ]
    )
    n = model.n_params
    assert n == 37
    opt = make_optimizer(name)
    state = opt.init_state(n)
    assert_array_equal(est.steps_, np.arange(11))
    raw, precond = [], []
    for t in range(11):
        point = model.point(theta)
        grad = point.gradient()
        H = _dense_hessian(point.hvp, n)
        d = 1.0 / np.sqrt(opt.preconditioner(state, grad))
        raw.append(np.linalg.eigvalsh(H)[-1])
        precond.append(np.linalg.eigvalsh(d[:, None] * H * d[None, :])[-1])
        assert_allclose(est.loss_curve_[t], point.loss, rtol=1e-12)
        theta, state = opt.update(theta, grad, 0.01, state)
    assert_allclose(est.sharpness_trace_, raw, rtol=1e-6)
    assert_allclose(est.preconditioned_sharpness_trace_, precond, rtol=1e-6)
    # a different quantity from the raw sharpness, compared with its threshold
    assert np.all(np.abs(np.array(precond) / raw - 1) > 0.1)
    assert_allclose(est.stability_threshold_, _edge(name) / 0.01, rtol=1e-14)


# --------------------------------------------------------------------------
# 5. Parameterizations with optimizers
# --------------------------------------------------------------------------
@pytest.fixture
def small_data(rng):
    return rng.normal(size=(20, 4)), rng.normal(size=(20, 2))


@pytest.mark.parametrize("parameterization", ["sp", "ntk", "mup"])
@pytest.mark.parametrize("name", ["momentum", "nesterov"])
def test_zero_momentum_is_gd(small_data, parameterization, name):
    X, Y = small_data
    kw = dict(
        hidden_layer_sizes=(16,),
        parameterization=parameterization,
        learning_rate=0.05,
        max_iter=30,
        record_every=3,
        random_state=0,
    )
    gd = MLPRegressor(**kw).fit(X, Y)
    heavy = MLPRegressor(optimizer=name, momentum=0.0, **kw).fit(X, Y)
    for attr in ("sharpness_trace_", "loss_curve_", "steps_"):
        assert_allclose(getattr(heavy, attr), getattr(gd, attr), rtol=1e-12)
    for a, b in zip(
        heavy.coefs_ + heavy.intercepts_, gd.coefs_ + gd.intercepts_, strict=True
    ):
        assert_allclose(a, b, rtol=1e-12, atol=1e-15)
    assert heavy.stability_threshold_ == gd.stability_threshold_ == 2.0 / 0.05


def test_mup_momentum_is_heavy_ball_on_raw_weights_with_layer_rates(small_data):
    """Heavy ball is linear in the gradient, so the trained variables
    ``theta / sqrt(lr_scale)`` stepped with ``eta`` are the raw weights stepped
    with ``eta * lr_scale`` per layer (output bias: scale 1)."""
    X, Y = small_data
    eta, beta, n_steps = 0.004, 0.9, 12
    kw = dict(
        hidden_layer_sizes=(16,),
        parameterization="mup",
        optimizer="momentum",
        momentum=beta,
        learning_rate=eta,
        random_state=0,
    )
    init = MLPRegressor(max_iter=0, **kw).fit(X, Y)
    est = MLPRegressor(max_iter=n_steps, **kw).fit(X, Y)
    m, c = init.scalings_["multiplier"], init.scalings_["lr_scale"]
    assert c.tolist() == [16.0, 16.0]  # muP rescales both layers here
    assert_allclose(est.stability_threshold_, (2 + 2 * beta) / eta, rtol=1e-14)
    assert np.isfinite(est.sharpness_trace_).all() and not est.diverged_
    raw = [init.coefs_[0] / m[0], init.intercepts_[0]]
    raw += [init.coefs_[1] / m[1], init.intercepts_[1]]
    shapes = [a.shape for a in raw]
    model = MLPModel(X, Y, shapes, [m[0], 1.0, m[1], 1.0], "tanh")
    rates = np.concatenate(
        [
            np.full(a.size, eta * s)
            for a, s in zip(raw, [c[0], c[0], c[1], 1.0], strict=True)
        ]
    )
    theta = np.concatenate([a.ravel() for a in raw])
    velocity = np.zeros_like(theta)
    for _ in range(n_steps):
        velocity = beta * velocity - rates * model.point(theta).gradient()
        theta = theta + velocity
    W0, b0, W1, b1 = model.unflatten(theta)
    assert_allclose(est.coefs_[0], m[0] * W0, rtol=1e-10)
    assert_allclose(est.intercepts_[0], b0, rtol=1e-10, atol=1e-14)
    assert_allclose(est.coefs_[1], m[1] * W1, rtol=1e-10)
    assert_allclose(est.intercepts_[1], b1, rtol=1e-10, atol=1e-14)
    # the reported sharpness is that of the trained variables:
    # lambda_max(C^1/2 H_raw C^1/2) with C the per-parameter scales
    root = np.sqrt(rates / eta)
    H = _dense_hessian(model.point(theta).hvp, theta.size)
    expected = np.linalg.eigvalsh(root[:, None] * H * root[None, :])[-1]
    assert_allclose(est.sharpness_trace_[-1], expected, rtol=1e-6)


@pytest.mark.parametrize("parameterization", ["ntk", "mup"])
def test_uv_heavy_ball_zero_momentum_matches_the_exact_map(parameterization):
    """UV on one example: the exact function-space GD map and the parameter
    engine running heavy ball with ``beta = 0`` agree."""
    X, y = np.array([[1.0, -0.5, 0.25]]), np.array([0.7])
    kw = dict(
        width=12,
        parameterization=parameterization,
        learning_rate=1.5,
        lr_units="initial_sharpness",
        max_iter=40,
        record_every=4,
        random_state=0,
    )
    exact = UVRegressor(**kw).fit(X, y)
    heavy = UVRegressor(optimizer="momentum", momentum=0.0, **kw).fit(X, y)
    assert exact.engine_ == "function" and heavy.engine_ == "parameter"
    assert not exact.diverged_ and not heavy.diverged_
    assert exact.loss_curve_[-1] < 1e-12 * exact.loss_curve_[0]
    for attr in ("sharpness_trace_", "ntk_trace_", "steps_", "learning_rate_"):
        assert_allclose(getattr(heavy, attr), getattr(exact, attr), rtol=1e-9)
    assert_allclose(
        heavy.loss_curve_,
        exact.loss_curve_,
        rtol=1e-9,
        atol=1e-12 * exact.loss_curve_[0],
    )
    assert_allclose(heavy.stability_threshold_, exact.stability_threshold_)
    fast = UVRegressor(optimizer="momentum", momentum=0.5, **kw).fit(X, y)
    assert_allclose(fast.stability_threshold_, 3.0 / fast.learning_rate_, rtol=1e-14)


# --------------------------------------------------------------------------
# 6. Edge of stability on digits: each optimizer at its own threshold
# --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits():
    return load_digits_onehot(n_samples=200, random_state=0)


def _digits_fit(X, Y, **kwargs):
    est = MLPRegressor(
        (32,), init_scale=0.25, record_every=5, max_iter=500, random_state=0, **kwargs
    )
    return est.fit(X, Y)


def test_heavy_ball_hovers_at_its_threshold_on_digits(digits):
    """Heavy ball (beta = 0.9, eta = 0.8): the sharpness rises to (2 + 2 beta)
    / eta = 4.75 and hovers there (observed tail mean ratio 0.967, range
    [0.944, 1.016]), far above GD's 2 / eta = 2.5, where GD at the same
    step size hovers (observed eta * lambda_H = 2.16)."""
    X, Y = digits
    eta = 0.8
    est = _digits_fit(X, Y, optimizer="momentum", momentum=0.9, learning_rate=eta)
    assert not est.diverged_ and est.n_iter_ == 500
    assert_allclose(est.stability_threshold_, 3.8 / eta, rtol=1e-14)
    ratio = est.sharpness_trace_ / est.stability_threshold_
    tail = est.steps_ >= 250
    assert ratio[0] < 0.4  # progressive sharpening up to the edge
    assert 0.9 <= ratio[tail].mean() <= 1.3
    assert 0.85 <= ratio[tail].min() and ratio[tail].max() <= 1.3
    assert (eta * est.sharpness_trace_[tail]).mean() > 1.5 * 2.0
    assert est.loss_curve_[-1] < 1e-2 * est.loss_curve_[0]
    gd = _digits_fit(X, Y, learning_rate=eta)
    gd_edge = (eta * gd.sharpness_trace_[gd.steps_ >= 250]).mean()
    assert 1.8 <= gd_edge <= 2.6
    assert (eta * est.sharpness_trace_[tail]).mean() > 1.3 * gd_edge


def test_adam_preconditioned_sharpness_hovers_at_its_threshold_on_digits(digits):
    """Adam (eta = 0.01): lambda_max(P^-1 H) hovers at 38 / eta (observed tail
    mean of eta lambda_P / 38: 1.004, range [0.971, 1.028]) while the raw
    sharpness stays far below it (eta lambda_H / 38 ~ 0.0017) and the ratio
    lambda_P / lambda_H moves (between 282 and 636 after step 0)."""
    X, Y = digits
    eta = 0.01
    est = _digits_fit(X, Y, optimizer="adam", learning_rate=eta)
    assert not est.diverged_ and est.n_iter_ == 500
    assert_allclose(est.stability_threshold_, 38.0 / eta, rtol=1e-14)
    tail = est.steps_ >= 250
    precond = est.preconditioned_sharpness_trace_ * eta / 38.0
    raw = est.sharpness_trace_ * eta / 38.0
    assert 0.8 <= precond[tail].mean() <= 1.3
    assert 0.7 <= precond[tail].min() and precond[tail].max() <= 1.4
    assert raw.max() < 0.01
    assert raw[tail].mean() > 3 * raw[0]  # raw sharpening (observed x5.0)
    ratio = precond[1:] / raw[1:]
    assert ratio.max() / ratio.min() > 1.5
    assert est.loss_curve_[-1] < 1e-2 * est.loss_curve_[0]


# --------------------------------------------------------------------------
# 7. Reproducibility
# --------------------------------------------------------------------------
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_same_seed_same_traces(small_data, name):
    X, Y = small_data
    kw = dict(
        hidden_layer_sizes=(8,),
        optimizer=name,
        learning_rate=0.05 if name in HEAVY else 0.005,
        max_iter=20,
        record_every=2,
        compute_lyapunov=True,
        random_state=3,
    )
    a, b = MLPRegressor(**kw).fit(X, Y), MLPRegressor(**kw).fit(X, Y)
    attrs = ["sharpness_trace_", "loss_curve_", "steps_", "tangent_log_growth_"]
    if name in ADAPTIVE:
        attrs.append("preconditioned_sharpness_trace_")
    for attr in attrs:
        assert_array_equal(getattr(a, attr), getattr(b, attr))
    for u, v in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_, strict=True):
        assert_array_equal(u, v)
    c = MLPRegressor(**{**kw, "random_state": 4}).fit(X, Y)
    assert not np.array_equal(c.loss_curve_, a.loss_curve_)


@pytest.mark.parametrize("name", ["adam", "rmsprop"])
def test_adaptive_optimizers_apply_the_per_layer_learning_rate_scale(name):
    """Regression: under muP, Adam/RMSProp on the lr-normalised coordinates
    gave each raw weight the step eta * sqrt(lr_scale) (and epsilon /
    sqrt(lr_scale)) instead of the documented eta * lr_scale."""
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(20, 4)), rng.normal(size=(20, 2))
    eta = 0.003
    kw = dict(
        hidden_layer_sizes=(16,),
        parameterization="mup",
        optimizer=name,
        learning_rate=eta,
        fit_intercept=False,
        random_state=0,
    )
    init = MLPRegressor(max_iter=0, **kw).fit(X, Y)
    est = MLPRegressor(max_iter=5, **kw).fit(X, Y)
    mult, c = init.scalings_["multiplier"], init.scalings_["lr_scale"]
    assert np.all(c > 1)  # the case that went wrong
    raw = np.concatenate(
        [(W / m).ravel() for W, m in zip(init.coefs_, mult, strict=True)]
    )
    got = np.concatenate(
        [(W / m).ravel() for W, m in zip(est.coefs_, mult, strict=True)]
    )
    shapes = [W.shape for W in init.coefs_]
    model = MLPModel(X, Y, shapes, list(mult), "tanh")
    rates = np.concatenate(
        [np.full(W.size, eta * s) for W, s in zip(init.coefs_, c, strict=True)]
    )
    opt = make_optimizer(name)  # plain Adam/RMSProp on the raw weights
    theta, state = raw.copy(), opt.init_state(raw.size)
    for _ in range(5):
        theta, state = opt.update(theta, model.point(theta).gradient(), rates, state)
    assert_allclose(got, theta, rtol=1e-10, atol=1e-14)
