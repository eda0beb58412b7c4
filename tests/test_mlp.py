"""MLPRegressor and its kernels: exact derivatives, dense Hessians, the UV model,
the muP coordinate check and the edge of stability on digits."""

import pickle
import warnings

import numpy as np
import pytest
from autograd import grad, jacobian
from autograd import numpy as anp
from autograd.test_util import check_grads
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.utils._param_validation import InvalidParameterError

from sharpsk import (
    DivergenceWarning,
    MLPRegressor,
    ParameterizationTransformer,
    UVRegressor,
)
from sharpsk._engine import _initial_tangent, draw_streams
from sharpsk._maps import recorded_steps
from sharpsk._mlp_kernels import (
    ACTIVATIONS,
    MLPModel,
    mlp_gradient,
    mlp_hvp,
    mlp_loss,
    mlp_matvec,
    mlp_point,
    mlp_predict,
)
from sharpsk._sharpness import (
    TopEigenTracker,
    flatten_params,
    hessian_dense,
    unflatten_params,
)
from sharpsk.datasets import load_digits_onehot, make_teacher_student, make_uv_example

TRACES = ("sharpness_trace_", "loss_curve_", "steps_", "hvp_trace_")


def _raw_problem(est):
    """Raw weights, raw multipliers and per-parameter lr scales of a fit."""
    mult = est.scalings_["multiplier"]
    lr_scale = est.scalings_["lr_scale"]
    params, mults, scales = [], [], []
    for i, (W, b) in enumerate(zip(est.coefs_, est.intercepts_, strict=True)):
        params += [W / mult[i], b]
        mults += [mult[i], 1.0]
        scales += [lr_scale[i], 1.0 if i == len(est.coefs_) - 1 else lr_scale[i]]
    return params, mults, scales


# --------------------------------------------------------------------------
# Kernels against autograd and finite differences
# --------------------------------------------------------------------------
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("bias", [True, False])
def test_gradient_and_hvp_are_exact(random_net, rng, activation, bias):
    params, mults = random_net(rng, [3, 5, 4, 2], bias)
    X, Y = rng.normal(size=(6, 3)), rng.normal(size=(6, 2))
    point = mlp_point(params, X, Y, mults, activation)

    def loss(p):
        return mlp_loss(p, X, Y, mults, activation)

    assert point["loss"] == pytest.approx(loss(params), rel=1e-14)
    assert_allclose(
        flatten_params(mlp_gradient(point)),
        flatten_params(grad(loss)(params)),
        rtol=1e-12,
        atol=1e-14,
    )
    H = hessian_dense(loss, params)
    matvec, n = mlp_matvec(point)
    assert n == H.shape[0]
    H_analytic = np.column_stack([matvec(e) for e in np.eye(n)])
    assert_allclose(H_analytic, H, rtol=1e-11, atol=1e-12 * np.abs(H).max())
    # The analytic HVP against central differences of the analytic gradient.
    v = rng.normal(size=n)
    eps = 1e-6
    g = [
        flatten_params(
            mlp_gradient(
                mlp_point(
                    unflatten_params(flatten_params(params) + s * eps * v, params),
                    X,
                    Y,
                    mults,
                    activation,
                )
            )
        )
        for s in (1, -1)
    ]
    assert_allclose(matvec(v), (g[0] - g[1]) / (2 * eps), rtol=1e-6, atol=1e-7)
    if activation != "relu":  # relu's kink makes second differences meaningless
        check_grads(loss, modes=["rev"], order=2)(params)


def test_gauss_newton_product_is_ntk(random_net, rng):
    params, mults = random_net(rng, [3, 6, 2])
    X, Y = rng.normal(size=(5, 3)), rng.normal(size=(5, 2))
    point = mlp_point(params, X, Y, mults, "tanh")
    flat = flatten_params(params)

    def outputs(w):
        p = unflatten_params_ag(w, params)
        h = X
        for i in range(0, len(p), 2):
            z = mults[i] * anp.dot(h, p[i]) + mults[i + 1] * p[i + 1]
            h = z if i == len(p) - 2 else anp.tanh(z)
        return h.ravel()

    J = jacobian(outputs)(flat)
    matvec, n = mlp_matvec(point, gauss_newton=True)
    G = np.column_stack([matvec(e) for e in np.eye(n)])
    assert_allclose(G, J.T @ J / 5, rtol=1e-11, atol=1e-13)
    assert mlp_hvp(point, [np.zeros_like(p) for p in params], gauss_newton=True)[
        0
    ].shape == (3, 6)


def unflatten_params_ag(w, like):
    """Autograd-friendly split of a flat vector (slices, no copies)."""
    out, start = [], 0
    for p in like:
        out.append(w[start : start + p.size].reshape(p.shape))
        start += p.size
    return out


def test_predict_kernel_matches_loss_kernel(random_net, rng):
    params, mults = random_net(rng, [4, 3, 2])
    X = rng.normal(size=(7, 4))
    coefs = [mults[0] * params[0], mults[2] * params[2]]
    intercepts = [mults[1] * params[1], mults[3] * params[3]]
    out = mlp_predict(coefs, intercepts, X, "logistic")[-1]
    point = mlp_point(params, X, np.zeros((7, 2)), mults, "logistic")
    assert_allclose(out, point["residual"], rtol=1e-14)


# --------------------------------------------------------------------------
# The estimator against ground truth
# --------------------------------------------------------------------------
@pytest.mark.parametrize("parameterization", ["sp", "ntk", "mup"])
def test_sharpness_and_ntk_match_dense_eigvalsh(rng, parameterization):
    X, Y = rng.normal(size=(9, 3)), rng.normal(size=(9, 2))
    est = MLPRegressor(
        (5, 4),
        learning_rate=0.05,
        max_iter=7,
        record_every=3,
        parameterization=parameterization,
        sharpness_tol=1e-10,
        compute_ntk=True,
        random_state=0,
    ).fit(X, Y)
    assert_array_equal(est.steps_, [0, 3, 6, 7])
    params, mults, scales = _raw_problem(est)
    H = hessian_dense(lambda p: mlp_loss(p, X, Y, mults, "tanh"), params)
    # Reported in the coordinates theta / sqrt(lr_scale) (class Notes).
    root = np.sqrt(
        np.concatenate(
            [np.full(p.size, s) for p, s in zip(params, scales, strict=True)]
        )
    )
    H_phi = root[:, None] * H * root[None, :]
    assert_allclose(est.sharpness_trace_[-1], np.linalg.eigvalsh(H_phi)[-1], rtol=1e-9)
    assert np.all(est.sharpness_converged_)

    def outputs(w):
        p = unflatten_params_ag(w, params)
        h = X
        for i in range(0, len(p), 2):
            z = mults[i] * anp.dot(h, p[i]) + p[i + 1]
            h = z if i == len(p) - 2 else anp.tanh(z)
        return h.ravel()

    J = jacobian(outputs)(flatten_params(params)) * root
    assert_allclose(est.ntk_trace_[-1], np.linalg.eigvalsh(J @ J.T / 9)[-1], rtol=1e-9)
    assert_allclose(
        est.loss_curve_[-1], 0.5 * np.sum((est.predict(X) - Y) ** 2) / 9, rtol=1e-12
    )


def test_fit_is_plain_gradient_descent_on_raw_weights(rng):
    """Autograd GD on the raw weights with muP's per-layer learning rates."""
    X, y = rng.normal(size=(6, 3)), rng.normal(size=6)
    est = MLPRegressor(
        (8, 8),
        parameterization="mup",
        learning_rate=0.05,
        max_iter=12,
        random_state=2,
    )
    params, mults, scales = _raw_problem(clone(est).set_params(max_iter=0).fit(X, y))
    assert scales == [8.0, 8.0, 8.0, 8.0, 8.0, 1.0]  # width-scaled except output bias
    loss = grad(lambda p: mlp_loss(p, X, y[:, None], mults, "tanh"))
    losses = []
    for _ in range(12):
        losses.append(mlp_loss(params, X, y[:, None], mults, "tanh"))
        params = [
            p - 0.05 * s * g
            for p, s, g in zip(params, scales, loss(params), strict=True)
        ]
    est.fit(X, y)
    fitted, _, _ = _raw_problem(est)
    for a, b in zip(fitted, params, strict=True):
        assert_allclose(a, b, rtol=1e-10, atol=1e-13)
    assert_allclose(est.loss_curve_[:-1], losses, rtol=1e-12)
    assert len(est.loss_curve_) == est.n_iter_ + 1 == 13


@pytest.mark.parametrize("parameterization", ["ntk", "sp", "mup"])
@pytest.mark.parametrize("single", [True, False])
def test_linear_one_hidden_layer_is_the_uv_model(rng, parameterization, single):
    if single:
        X, y = make_uv_example(4, target=1.5, random_state=0)
    else:
        X, y = rng.normal(size=(7, 3)), rng.normal(size=7)
    eta = 0.3 / 16 if parameterization == "mup" else 0.05
    uv = UVRegressor(
        16,
        learning_rate=eta,
        max_iter=40,
        parameterization=parameterization,
        random_state=3,
        sharpness_tol=1e-12,
    ).fit(X, y)
    mlp = MLPRegressor(
        (16,),
        activation="identity",
        fit_intercept=False,
        learning_rate=eta,
        max_iter=40,
        parameterization=parameterization,
        random_state=3,
        sharpness_tol=1e-12,
        compute_ntk=True,
    ).fit(X, y)
    assert not uv.diverged_ and not mlp.diverged_
    assert_array_equal(uv.steps_, mlp.steps_)
    for name in ("sharpness_trace_", "ntk_trace_", "loss_curve_"):
        ref = getattr(uv, name)
        assert_allclose(
            getattr(mlp, name),
            ref,
            rtol=1e-10,
            atol=1e-10 * np.abs(ref).max(),
            err_msg=name,
        )
    mult = mlp.scalings_["multiplier"]
    assert_allclose(mlp.coefs_[0] / mult[0], uv.U_.T, rtol=1e-9, atol=1e-12)
    assert_allclose(mlp.coefs_[1][:, 0] / mult[1], uv.v_, rtol=1e-9, atol=1e-12)
    assert_allclose(mlp.predict(X), uv.predict(X), rtol=1e-10, atol=1e-12)


def test_lyapunov_exponent_of_a_quadratic_loss():
    """Constant Hessian: the exponent is max_i log|1 - eta lambda_i| exactly."""
    Q = np.linalg.qr(np.random.default_rng(1).normal(size=(30, 30)))[0][:, :3]
    X = np.sqrt(30) * Q * np.sqrt([1.0, 0.5, 0.2])  # X^T X / N = diag(1, .5, .2)
    y = X @ np.array([1.0, -2.0, 0.5])
    for eta, expected in [(1.5, np.log(0.7)), (1.9, np.log(0.9))]:
        est = MLPRegressor(
            (),
            fit_intercept=False,
            learning_rate=eta,
            max_iter=200,
            record_every=50,
            compute_lyapunov=True,
            random_state=0,
        ).fit(X, y)
        assert_allclose(est.sharpness_trace_, 1.0, rtol=1e-10)
        assert_allclose(est.lyapunov_exponent_, expected, rtol=1e-8)
        assert est.tangent_log_growth_.shape == (200,)
        assert est.n_hvp_ == est.hvp_trace_.sum() + 200


def test_lyapunov_exponent_tracks_the_tangent_map(rng):
    """Against dense Jacobians I - eta H_t along the same trajectory."""
    X, Y = rng.normal(size=(8, 2)), rng.normal(size=(8, 2))
    steps = 40
    est = MLPRegressor(
        (4,),
        learning_rate=1.8,
        lr_units="initial_sharpness",
        max_iter=steps,
        compute_lyapunov=True,
        record_every=steps,
        random_state=0,
    ).fit(X, Y)
    eta = est.learning_rate_
    params, mults, _ = _raw_problem(clone(est).set_params(max_iter=0).fit(X, Y))
    # The same start vector, from the documented random streams.
    seeded = np.random.RandomState(0)
    est._initialize(2, 2, seeded)
    v = _initial_tangent(draw_streams(seeded)[1], sum(p.size for p in params))
    growth = []
    for _ in range(steps):
        point = mlp_point(params, X, Y, mults, "tanh")
        H = hessian_dense(lambda p: mlp_loss(p, X, Y, mults, "tanh"), params)
        v = v - eta * H @ v
        growth.append(np.log(np.linalg.norm(v)))
        v /= np.linalg.norm(v)
        params = [p - eta * g for p, g in zip(params, mlp_gradient(point), strict=True)]
    assert_allclose(est.tangent_log_growth_, growth, rtol=1e-8, atol=1e-10)
    assert est.lyapunov_exponent_ == pytest.approx(np.mean(growth[steps // 2 :]))


# --------------------------------------------------------------------------
# Width: the muP coordinate check
# --------------------------------------------------------------------------
def _activation_change(parameterization, width, X, y, eta, steps=3):
    """RMS change of each layer's activation after a few GD steps.

    The estimator's own initialization, in its training coordinates, where GD
    uses the plain learning rate (``fit`` is checked against raw-weight GD in
    ``test_fit_is_plain_gradient_descent_on_raw_weights``); skipping ``fit``
    spares sharpness measurements on a million parameters.
    """
    est = MLPRegressor((width, width), parameterization=parameterization)
    params, mults, _ = est._initialize(X.shape[1], 1, np.random.RandomState(0))
    Y = y[:, None]

    def activations(params):
        point = mlp_point(params, X, Y, mults, "tanh")
        return point["hs"][1:] + [point["residual"]]

    before = activations(params)
    for _ in range(steps):
        grads = mlp_gradient(mlp_point(params, X, Y, mults, "tanh"))
        params = [p - eta * g for p, g in zip(params, grads, strict=True)]
    after = activations(params)
    return np.array(
        [np.sqrt(np.mean((u - v) ** 2)) for u, v in zip(before, after, strict=True)]
    )


def test_mup_coordinate_check():
    X, y = make_teacher_student(32, 8, random_state=0)
    X_mup = ParameterizationTransformer("mup").fit_transform(X)  # |x| = O(1)
    widths = [64, 256, 1024]
    mup = np.array([_activation_change("mup", w, X_mup, y, 0.5) for w in widths])
    sp = np.array([_activation_change("sp", w, X, y, 0.05) for w in widths])
    # muP: every layer's change (two hidden layers and the output) is O(1).
    assert np.all(mup > 0.03)
    assert_allclose(mup / mup[0], 1.0, atol=0.2)
    # SP at a fixed learning rate: the later layers' changes grow with width.
    assert np.all(np.diff(sp[:, 1:], axis=0) > 0)
    assert sp[-1, 2] / sp[0, 2] > 8


# --------------------------------------------------------------------------
# Real data: the edge of stability on digits
# --------------------------------------------------------------------------
def test_digits_progressive_sharpening_and_edge_of_stability():
    """Small init (outputs << targets): lambda_H rises to 2/eta and stays there."""
    X, Y = load_digits_onehot(200, random_state=0)
    eta = 0.5
    est = MLPRegressor(
        (32,),
        learning_rate=eta,
        max_iter=600,
        record_every=5,
        init_scale=0.25,
        random_state=0,
    ).fit(X, Y)
    c, steps, loss = eta * est.sharpness_trace_, est.steps_, est.loss_curve_
    assert not est.diverged_ and np.all(est.sharpness_converged_)
    # Progressive sharpening from c0 ~ 0.66 up to the stability edge, loss
    # decreasing monotonically on the way.
    assert c[0] < 0.8
    assert np.all(np.diff(c[steps <= 150]) > 0)
    assert c[steps <= 200].max() > 1.9
    assert np.all(np.diff(loss[steps <= 150]) < 0)
    # Edge of stability: lambda_H hovers just above 2/eta ...
    tail = steps >= 400
    assert 2.0 < c[tail].mean() < 2.15
    assert np.all((c[tail] > 1.95) & (c[tail] < 2.3))
    # ... while the loss keeps falling, non-monotonically.
    assert np.sum(np.diff(loss[tail]) > 0) > 5
    assert loss[-1] < 0.7 * loss[tail][0] and loss[tail][0] < 0.1 * loss[0]


def test_digits_early_sharpness_reduction():
    """Unit init: outputs start larger than the one-hot targets (|f0| > |y| in
    the UV picture), so lambda_H first falls, at a small learning rate and with
    a monotonically decreasing loss (no catapult)."""
    X, Y = load_digits_onehot(200, random_state=0)
    est = MLPRegressor(
        (32,), learning_rate=0.05, max_iter=200, record_every=10, random_state=0
    ).fit(X, Y)
    f0 = clone(est).set_params(max_iter=0).fit(X, Y).predict(X)
    assert np.sqrt(np.mean(f0**2)) > np.sqrt(np.mean(Y**2))
    c = est.learning_rate_ * est.sharpness_trace_
    assert c[0] < 0.5
    assert np.all(np.diff(est.sharpness_trace_) < 0)
    assert est.sharpness_trace_[-1] < 0.8 * est.initial_sharpness_
    assert np.all(np.diff(est.loss_curve_) < 0)


# --------------------------------------------------------------------------
# Options, invariants, bad input
# --------------------------------------------------------------------------
def test_lr_units_initial_sharpness(rng):
    X, y = make_teacher_student(40, 5, random_state=1)
    rel = MLPRegressor(
        (6,),
        learning_rate=1.2,
        lr_units="initial_sharpness",
        max_iter=30,
        random_state=0,
    ).fit(X, y)
    assert rel.learning_rate_ * rel.initial_sharpness_ == pytest.approx(1.2)
    ab = (
        clone(rel)
        .set_params(learning_rate=rel.learning_rate_, lr_units="absolute")
        .fit(X, y)
    )
    assert ab.learning_rate_ == rel.learning_rate_
    for name in TRACES:
        assert_array_equal(getattr(ab, name), getattr(rel, name))
    flat = MLPRegressor((), fit_intercept=False, lr_units="initial_sharpness")
    with pytest.raises(ValueError, match="initial_sharpness"):
        flat.fit(np.zeros((3, 2)), np.ones(3))  # zero Hessian


def test_measurements_do_not_change_the_run(rng):
    X, Y = rng.normal(size=(30, 4)), rng.normal(size=(30, 3))
    base = MLPRegressor(
        (7,), learning_rate=0.1, max_iter=25, random_state=0, sharpness_tol=1e-10
    ).fit(X, Y)
    for params in [
        {"record_every": 4},
        {"compute_ntk": True},
        {"compute_lyapunov": True},
        {"sharpness_batch_size": 10},
        {"batch_size": 30},  # one batch: full-batch gradient descent
    ]:
        other = clone(base).set_params(**params).fit(X, Y)
        for a, b in zip(
            other.coefs_ + other.intercepts_,
            base.coefs_ + base.intercepts_,
            strict=True,
        ):
            assert_array_equal(a, b, err_msg=str(params))
        assert_array_equal(
            other.loss_curve_, base.loss_curve_[other.steps_], err_msg=str(params)
        )
    sub = clone(base).set_params(record_every=4).fit(X, Y)
    assert_array_equal(sub.steps_, recorded_steps(25, 4))
    assert_allclose(sub.sharpness_trace_, base.sharpness_trace_[sub.steps_], rtol=1e-8)
    meas = clone(base).set_params(sharpness_batch_size=10).fit(X, Y)
    assert not np.allclose(meas.sharpness_trace_, base.sharpness_trace_)
    whole = clone(base).set_params(sharpness_batch_size=30).fit(X, Y)
    assert_array_equal(whole.sharpness_trace_, base.sharpness_trace_)


def test_sgd_is_reproducible_and_trains(rng):
    X, y = make_teacher_student(60, 4, random_state=0)
    est = MLPRegressor(
        (16,),
        learning_rate=0.1,
        max_iter=120,
        batch_size=16,
        record_every=20,
        sharpness_batch_size=30,
        random_state=5,
    )
    a, b = clone(est).fit(X, y), clone(est).fit(X, y)
    for name in TRACES:
        assert_array_equal(getattr(a, name), getattr(b, name))
    gd = clone(est).set_params(batch_size=None).fit(X, y)
    assert not np.allclose(a.loss_curve_, gd.loss_curve_)
    assert a.loss_curve_[-1] < 0.5 * a.loss_curve_[0]
    assert len(a.loss_curve_) == len(a.steps_) == 7


def test_divergence_is_a_result(rng):
    X, Y = rng.normal(size=(20, 3)), rng.normal(size=(20, 2))
    est = MLPRegressor(
        (8,),
        learning_rate=30.0,
        max_iter=200,
        record_every=7,
        compute_lyapunov=True,
        random_state=0,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est.fit(X, Y)
    assert [w.category for w in caught] == [DivergenceWarning]
    assert est.diverged_ and est.n_iter_ < 200
    assert est.steps_[-1] == est.n_iter_ and est.steps_[0] == 0
    assert len(est.loss_curve_) == len(est.steps_)
    assert len(est.tangent_log_growth_) == est.n_iter_
    for name in ("sharpness_trace_", "loss_curve_", "tangent_log_growth_"):
        assert np.all(np.isfinite(getattr(est, name))), name
    assert np.all(np.isfinite(est.predict(X)))


def test_reproducible_pickle_clone_and_memory(rng):
    X, Y = rng.normal(size=(15, 3)), rng.normal(size=(15, 2))
    est = MLPRegressor(
        (10,), learning_rate=0.2, max_iter=40, random_state=7, compute_ntk=True
    )
    a, b = clone(est).fit(X, Y), clone(est).fit(X, Y)
    for name in TRACES + ("ntk_trace_",):
        assert_array_equal(getattr(a, name), getattr(b, name))
    c = pickle.loads(pickle.dumps(a))
    assert_array_equal(c.predict(X), a.predict(X))
    assert c.predict(X).shape == (15, 2)
    assert clone(a).get_params() == a.get_params()
    # Traces are scalars per recorded step; weights stored once.
    n_params = sum(
        W.size + v.size for W, v in zip(a.coefs_, a.intercepts_, strict=True)
    )
    stored = sum(
        np.size(v)
        for k, v in vars(a).items()
        if k.endswith("_") and isinstance(v, np.ndarray)
    )
    assert stored <= 6 * (a.max_iter + 1) and n_params > 50


@pytest.mark.parametrize(
    "params, error, match",
    [
        ({"hidden_layer_sizes": [4, 0]}, ValueError, "hidden_layer_sizes"),
        ({"activation": "gelu"}, InvalidParameterError, "activation"),
        ({"learning_rate": 0.0}, InvalidParameterError, "learning_rate"),
        ({"lr_units": "relative"}, InvalidParameterError, "lr_units"),
        ({"batch_size": 0}, InvalidParameterError, "batch_size"),
        ({"record_every": 0}, InvalidParameterError, "record_every"),
        ({"parameterization": "xyz"}, InvalidParameterError, "parameterization"),
    ],
)
def test_invalid_parameters_name_the_culprit(params, error, match):
    with pytest.raises(error, match=match):
        MLPRegressor(**params).fit(np.ones((3, 2)), np.ones(3))


def test_bad_data_errors():
    est = MLPRegressor((3,), max_iter=2)
    with pytest.raises(ValueError, match="NaN"):
        est.fit([[np.nan, 1.0]], [1.0])
    with pytest.raises(ValueError, match="inconsistent"):
        est.fit(np.ones((3, 2)), np.ones(4))
    est.fit(np.ones((3, 2)), np.ones(3))
    with pytest.raises(ValueError, match="features"):
        est.predict(np.ones((2, 5)))


def test_verbose_reports_progress(capsys):
    X, Y = load_digits_onehot(n_samples=40, random_state=0)
    MLPRegressor((4,), max_iter=20, record_every=5, verbose=2, random_state=0).fit(X, Y)
    lines = capsys.readouterr().out.strip().splitlines()
    progress = [line for line in lines if "step " in line and "/20:" in line]
    assert [line.split()[2] for line in progress] == [
        f"{t}/20:" for t in range(0, 21, 2)
    ]
    assert lines[-1].startswith("[MLPRegressor] steps=20")


# --------------------------------------------------------------------------
# Float32 Hessian-vector products; tracking along an edge-of-stability run
# --------------------------------------------------------------------------
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("loss", ["squared_error", "log_loss"])
def test_float32_hvp_against_dense_hessian(random_net, rng, activation, loss):
    params, mults = random_net(rng, [4, 6, 5, 3])
    X = rng.normal(size=(9, 4))
    Y = np.eye(3)[rng.integers(0, 3, 9)]
    point = mlp_point(params, X, Y, mults, activation, loss)
    H = hessian_dense(lambda p: mlp_loss(p, X, Y, mults, activation, loss), params)
    exact, n = mlp_matvec(point)
    H64 = np.column_stack([exact(e) for e in np.eye(n)])
    matvec, _ = mlp_matvec(point, dtype=np.float32)
    H32 = np.column_stack([matvec(e) for e in np.eye(n)])
    assert H32.dtype == np.float64  # float64 in and out
    scale = np.abs(H).max()
    assert_allclose(H32, H, rtol=0, atol=1e-5 * scale)
    top, top32 = np.linalg.eigvalsh(H)[-1], np.linalg.eigvalsh((H32 + H32.T) / 2)[-1]
    assert abs(top32 - top) <= 1e-5 * scale
    # the list kernel returns float32 arrays; float64 is the stored pass's
    vecs = [np.ones_like(p) for p in params]
    assert all(h.dtype == np.float32 for h in mlp_hvp(point, vecs, dtype="float32"))
    assert_array_equal(np.column_stack([exact(e) for e in np.eye(n)]), H64)
    assert all(p.dtype == np.float64 for p in point["hs"])
    with pytest.raises(ValueError, match="dtype"):
        mlp_hvp(point, vecs, dtype=np.float16)


def test_tracked_sharpness_along_an_edge_of_stability_run_is_within_tol():
    """80 GD steps at eta = 4 / lambda_0 (catapult, then the edge of stability:
    eta * lambda_H around 2, top eigenvalues a few percent apart, swapping):
    the tracker with float32 products against eigvalsh of the dense Hessian
    at every step, and MLPRegressor's trace is the same."""
    X, Y = load_digits_onehot(n_samples=100, n_classes=3, random_state=0)
    X = X[:, np.argsort(-X.var(axis=0))[:8]]
    est = MLPRegressor(
        (16,),
        learning_rate=4.0,
        lr_units="initial_sharpness",
        max_iter=80,
        sharpness_tol=1e-4,
        random_state=0,
    ).fit(X, Y)
    params, mults, _ = est._initialize(8, 3, np.random.RandomState(0))
    model = MLPModel(X, Y, [p.shape for p in params], mults, "tanh")
    n, tol = model.n_params, 1e-4
    theta = np.concatenate([p.ravel() for p in params])
    tracker = TopEigenTracker(tol=tol, random_state=0)
    calls32 = [0]
    values, dense, eta = [], [], est.learning_rate_
    for _ in range(81):
        point = model.point(theta)

        def hvp32(v, point=point):
            calls32[0] += 1
            return point.hvp32(v)

        values.append(tracker.update(point.hvp, n, matvec32=hvp32).eigenvalue)
        H = np.column_stack([point.hvp(e) for e in np.eye(n)])
        dense.append(np.linalg.eigvalsh((H + H.T) / 2)[-1])
        theta = theta - eta * point.gradient()
    values, dense = np.array(values), np.array(dense)
    assert_allclose(values, dense, rtol=tol, atol=0)
    assert calls32[0] > 5 * 80 and tracker._float32  # float32 products, kept
    assert eta * dense[0] > 3.9  # unstable start: a catapult, then
    assert np.all(np.abs(eta * dense[30:] - 2.0) < 0.3)  # the edge of stability
    assert_array_equal(est.sharpness_trace_, values)
