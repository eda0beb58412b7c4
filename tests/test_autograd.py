"""AutogradRegressor: your own model through the training engine."""

import pickle
import warnings

import autograd.numpy as anp
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone

from sharpsk import (
    AutogradRegressor,
    DivergenceWarning,
    LearningRateScan,
    MLPRegressor,
)
from sharpsk._parameterization import resolve_parameterization
from sharpsk.datasets import load_digits_onehot

SIZES = (64, 16, 10)


def mlp_loss(params, X, Y):
    """A tanh MLP with squared error, as MLPRegressor's (SP) network."""
    mult = resolve_parameterization("sp").get_scalings(list(SIZES))["multiplier"]
    W0, b0, W1, b1 = params
    h = anp.tanh(mult[0] * anp.dot(X, W0) + b0)
    out = mult[1] * anp.dot(h, W1) + b1
    return 0.5 * anp.sum((out - Y) ** 2) / X.shape[0]


def mlp_forward(params, X):
    mult = resolve_parameterization("sp").get_scalings(list(SIZES))["multiplier"]
    W0, b0, W1, b1 = params
    return mult[1] * np.tanh(mult[0] * X @ W0 + b0) @ W1 + b1


def mlp_init(n_features, n_outputs, rng):
    """MLPRegressor's draws: (fan_out, fan_in) normals, transposed; zero biases."""
    std = resolve_parameterization("sp").get_scalings(list(SIZES))["init_std"]
    params = []
    for i, (fan_in, fan_out) in enumerate(zip(SIZES[:-1], SIZES[1:], strict=True)):
        params.append(
            np.ascontiguousarray(rng.normal(0.0, std[i], (fan_out, fan_in)).T)
        )
        params.append(np.zeros(fan_out))
    return params


@pytest.fixture(scope="module")
def digits():
    return load_digits_onehot(n_samples=80, random_state=0)


@pytest.mark.parametrize("optimizer", ["gd", "momentum", "adam"])
def test_an_autograd_mlp_reproduces_mlp_regressor(digits, optimizer):
    X, Y = digits
    kw = dict(
        learning_rate=0.05 if optimizer == "adam" else 1.0,
        lr_units="absolute" if optimizer == "adam" else "initial_sharpness",
        max_iter=30,
        record_every=3,
        optimizer=optimizer,
        sharpness_tol=1e-10,
        compute_lyapunov=True,
        random_state=0,
    )
    ours = AutogradRegressor(mlp_loss, mlp_init, forward=mlp_forward, **kw).fit(X, Y)
    ref = MLPRegressor((16,), **kw).fit(X, Y)
    assert_array_equal(ours.steps_, ref.steps_)
    assert_allclose(ours.loss_curve_, ref.loss_curve_, rtol=1e-10)
    assert_allclose(ours.sharpness_trace_, ref.sharpness_trace_, rtol=1e-8)
    assert_allclose(ours.stability_threshold_, ref.stability_threshold_, rtol=1e-10)
    assert_allclose(ours.tangent_log_growth_, ref.tangent_log_growth_, rtol=1e-6)
    if optimizer == "adam":
        assert_allclose(
            ours.preconditioned_sharpness_trace_,
            ref.preconditioned_sharpness_trace_,
            rtol=1e-7,
        )
    assert_allclose(ours.predict(X), ref.predict(X), rtol=1e-9, atol=1e-12)


def _dict_loss(params, X, y):
    return 0.5 * anp.mean((anp.tanh(anp.dot(X, params["w"])) @ params["v"] - y) ** 2)


def _dict_init(n_features, n_outputs, rng):
    return {
        "w": rng.normal(size=(n_features, 6)) / np.sqrt(n_features),
        "v": rng.normal(size=6) / np.sqrt(6),
    }


def test_dict_parameters_hessian_and_warm_start():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y = np.sin(X[:, 0]) + 0.5 * X[:, 1]
    base = AutogradRegressor(
        _dict_loss, _dict_init, learning_rate=0.5, max_iter=20, random_state=0
    )
    one = clone(base).fit(X, y)
    assert set(one.params_) == {"w", "v"} and one.params_["w"].shape == (3, 6)
    # the Hessian operator is the tracked one (dense ground truth)
    H = one.hessian_operator(X, y)
    dense = H @ np.eye(H.shape[0])
    assert_allclose(np.linalg.eigvalsh(dense)[-1], one.sharpness_trace_[-1], rtol=1e-6)
    # a run split in two is the long run, bit for bit
    split = clone(base).set_params(max_iter=8, warm_start=True).fit(X, y)
    split.set_params(max_iter=12).fit(X, y)
    for name in ("steps_", "loss_curve_", "sharpness_trace_"):
        assert_array_equal(getattr(split, name), getattr(one, name))
    with pytest.raises(AttributeError, match="forward="):
        one.predict(X)
    # picklable with module-level functions
    again = pickle.loads(pickle.dumps(one))
    assert_array_equal(again.sharpness_trace_, one.sharpness_trace_)


def test_divergence_is_a_result():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 3)), rng.normal(size=40)
    est = AutogradRegressor(_dict_loss, _dict_init, learning_rate=1e4, max_iter=50)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est.set_params(random_state=0).fit(X, y)
    assert [w.category for w in caught] == [DivergenceWarning]
    assert est.diverged_ and np.all(np.isfinite(est.loss_curve_))


def test_scan_labels_an_autograd_model(digits):
    X, Y = digits
    est = AutogradRegressor(mlp_loss, mlp_init, max_iter=150, random_state=0)
    scan = LearningRateScan(
        est,
        learning_rates=[0.5, 1.5, 50.0],
        lr_units="initial_sharpness",
        n_jobs=2,
        progress=False,
    ).fit(X, Y)
    assert scan.labels_[0] == "converge" and scan.labels_[-1] == "diverge"


def test_bad_init_is_named():
    X, y = np.ones((3, 2)), np.ones(3)
    with pytest.raises(TypeError, match="init must return a list, tuple or dict"):
        AutogradRegressor(_dict_loss, lambda n, m, rng: np.ones(3)).fit(X, y)
