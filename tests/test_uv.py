"""UVRegressor: both engines, ground-truth Hessians, divergence, bad input."""

import pickle
import warnings

import numpy as np
import pytest
from autograd import grad
from autograd import numpy as anp
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.utils._param_validation import InvalidParameterError

from sharpsk import DivergenceWarning, UVRegressor
from sharpsk._sharpness import hessian_dense
from sharpsk._uv import uv_hvp, uv_residual

TRACES = ("sharpness_trace_", "ntk_trace_", "loss_curve_", "residual_trace_")


def _uv_loss(params, X, y, s):
    U, v = params
    r = s * anp.dot(anp.dot(X, U.T), v) - y
    return 0.5 * anp.mean(r**2)


def _one_example(d=3, y=1.0, seed=0):
    x = np.random.default_rng(seed).normal(size=(1, d))
    return x / np.linalg.norm(x), np.array([y])


def _eos_learning_rate(est, X, y, y_tilde):
    """Learning rate with the scaled target eta sqrt(kappa) |y| = y_tilde."""
    kappa = est.function_space_state(X, y)["kappa"]
    return y_tilde / (np.sqrt(kappa) * abs(y[0]))


@pytest.mark.parametrize(
    "width, parameterization, init_scale, y_value, regime",
    [
        (4, "ntk", 1.0, 1.0, 0.5),  # converge
        (64, "ntk", 1.0, 10.0, 0.9),  # converge, close to eta_c
        (16, "sp", 0.7, 2.0, 0.95),
        (32, "mup", 1.0, 1.0, 0.6),
        (8, "ntk", 0.3, 3.0, 1.05),  # EoS: period-2 orbit above eta_c
        (128, "ntk", 0.2, 5.0, 1.1),
    ],
)
def test_engines_agree_on_single_example(
    width, parameterization, init_scale, y_value, regime
):
    X, y = _one_example(y=y_value)
    est = UVRegressor(
        width,
        parameterization=parameterization,
        init_scale=init_scale,
        random_state=3,
        max_iter=300,
    )
    est.set_params(learning_rate=_eos_learning_rate(est, X, y, regime))
    fun = clone(est).set_params(engine="function").fit(X, y)
    par = clone(est).set_params(engine="parameter").fit(X, y)
    assert fun.engine_ == "function" and par.engine_ == "parameter"
    assert not fun.diverged_ and not par.diverged_
    assert_array_equal(fun.steps_, par.steps_)
    for name in TRACES:
        scale = np.max(np.abs(getattr(par, name)))
        assert_allclose(
            getattr(fun, name),
            getattr(par, name),
            rtol=1e-10,
            atol=1e-10 * scale,
            err_msg=name,
        )
    assert_allclose(fun.U_, par.U_, rtol=1e-8, atol=1e-10)
    assert_allclose(fun.v_, par.v_, rtol=1e-8, atol=1e-10)
    assert_allclose(fun.predict(X), par.predict(X), rtol=1e-10)
    if regime > 1:  # above eta_c: no convergence, period-2 orbit straddling 2/eta
        eta_lh = fun.learning_rate * fun.sharpness_trace_[-40:]
        assert np.ptp(fun.residual_trace_[-40:]) > 1e-3
        assert eta_lh.min() < 2 < eta_lh.max()
        assert_allclose(
            fun.residual_trace_[-40::2], fun.residual_trace_[-40], rtol=1e-6
        )
    else:
        assert abs(fun.residual_trace_[-1]) < 1e-6


def test_sharpness_matches_dense_hessian_single_example():
    X, y = _one_example(d=4, y=0.8)
    est = UVRegressor(6, learning_rate=0.4, max_iter=3, random_state=1).fit(X, y)
    # In the middle of training the residual is far from zero.
    H = hessian_dense(lambda p: _uv_loss(p, X, y, est.output_scale_), [est.U_, est.v_])
    assert_allclose(est.sharpness_trace_[-1], np.linalg.eigvalsh(H)[-1], rtol=1e-12)
    assert abs(est.residual_trace_[-1]) > 1e-2


@pytest.mark.parametrize("parameterization", ["ntk", "sp"])
def test_multi_example_traces_against_ground_truth(rng, parameterization):
    X, y = rng.normal(size=(7, 3)), rng.normal(size=7)
    est = UVRegressor(
        5,
        learning_rate=0.05,
        max_iter=25,
        record_every=4,
        parameterization=parameterization,
        random_state=0,
        sharpness_tol=1e-10,
    ).fit(X, y)
    assert est.engine_ == "parameter"
    assert_array_equal(est.steps_, [0, 4, 8, 12, 16, 20, 24, 25])
    s = est.output_scale_
    H = hessian_dense(lambda p: _uv_loss(p, X, y, s), [est.U_, est.v_])
    assert_allclose(est.sharpness_trace_[-1], np.linalg.eigvalsh(H)[-1], rtol=1e-8)
    # NTK: top eigenvalue of J J^T / N from the Jacobian of f.
    J = np.hstack(
        [s * np.einsum("k,ij->ikj", est.v_, X).reshape(7, -1), s * X @ est.U_.T]
    )
    assert_allclose(est.ntk_trace_[-1], np.linalg.eigvalsh(J @ J.T / 7)[-1], rtol=1e-10)
    assert_allclose(
        est.loss_curve_[-1], 0.5 * np.mean((est.predict(X) - y) ** 2), rtol=1e-12
    )


def test_parameter_engine_is_plain_gradient_descent(rng):
    """Raw GD with autograd on the raw weights, muP learning-rate scale included."""
    X, y = rng.normal(size=(5, 2)), rng.normal(size=5)
    width, eta, steps = 8, 0.03, 15
    est = UVRegressor(
        width, learning_rate=eta, max_iter=steps, parameterization="mup", random_state=4
    )
    est0 = clone(est).set_params(max_iter=0).fit(X, y)
    U, v, s = est0.U_, est0.v_, est0.output_scale_
    assert s == pytest.approx(1 / width)
    g = grad(_uv_loss)
    for _ in range(steps):
        gU, gv = g([U, v], X, y, s)
        U, v = U - eta * width * gU, v - eta * width * gv  # muP: lr eta * n
    est.fit(X, y)
    assert_allclose(est.U_, U, rtol=1e-12)
    assert_allclose(est.v_, v, rtol=1e-12)
    # Sharpness is reported where GD uses the plain learning rate: n * raw.
    H = hessian_dense(lambda p: _uv_loss(p, X, y, s), [U, v])
    assert_allclose(
        est.sharpness_trace_[-1], width * np.linalg.eigvalsh(H)[-1], rtol=1e-6
    )


def test_hvp_matches_dense_hessian(rng):
    X, y = rng.normal(size=(4, 3)), rng.normal(size=4)
    U, v, s = rng.normal(size=(5, 3)), rng.normal(size=5), 0.6
    dU, dv = rng.normal(size=(5, 3)), rng.normal(size=5)
    r, A = uv_residual(U, v, X, y, s)
    hU, hv = uv_hvp(U, v, X, r, A, s, dU, dv)
    H = hessian_dense(lambda p: _uv_loss(p, X, y, s), [U, v])
    assert_allclose(
        np.concatenate([hU.ravel(), hv]),
        H @ np.concatenate([dU.ravel(), dv]),
        rtol=1e-10,
    )


def test_function_engine_invariants():
    """Q = lambda^2 - 4 kappa f^2 never grows, and lambda_H >= lambda at minima."""
    X, y = _one_example(y=2.0)
    est = UVRegressor(256, learning_rate=1.2, max_iter=500, random_state=0)
    est.fit(X, y)
    f = est.residual_trace_ + y[0]
    q = est.ntk_trace_**2 - 4 * est.kappa_ * f**2
    assert np.all(q >= -1e-12) and np.all(np.diff(q) <= 1e-12)
    assert_allclose(est.sharpness_trace_[-1], est.ntk_trace_[-1], rtol=1e-9)
    assert est.critical_learning_rate_ == pytest.approx(1 / (np.sqrt(est.kappa_) * 2.0))


def test_record_every_subsamples_the_same_run():
    X, y = _one_example()
    full = UVRegressor(32, learning_rate=0.8, max_iter=101, random_state=0).fit(X, y)
    sub = clone(full).set_params(record_every=10).fit(X, y)
    assert_array_equal(sub.steps_, list(range(0, 101, 10)) + [101])
    for name in TRACES:
        assert_array_equal(getattr(sub, name), getattr(full, name)[sub.steps_])


@pytest.mark.parametrize("engine", ["function", "parameter"])
def test_divergence_is_a_result(engine):
    X, y = _one_example()
    est = UVRegressor(
        16, learning_rate=50.0, max_iter=400, engine=engine, random_state=0
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est.fit(X, y)
    assert est.diverged_ and est.n_iter_ < 400
    assert [w.category for w in caught] == [DivergenceWarning]
    for name in TRACES:
        trace = getattr(est, name)
        assert np.all(np.isfinite(trace)) and len(trace) == len(est.steps_)
    assert est.steps_[-1] == est.n_iter_
    assert np.all(np.isfinite(est.predict(X)))


def test_reproducible_pickle_and_clone():
    X, y = _one_example()
    a = UVRegressor(20, random_state=7, max_iter=50).fit(X, y)
    b = UVRegressor(20, random_state=7, max_iter=50).fit(X, y)
    assert_array_equal(a.sharpness_trace_, b.sharpness_trace_)
    c = pickle.loads(pickle.dumps(a))
    assert_array_equal(c.predict(X), a.predict(X))
    assert clone(a).get_params() == a.get_params()


@pytest.mark.parametrize(
    "params, match",
    [
        ({"width": 0}, "width"),
        ({"learning_rate": -1.0}, "learning_rate"),
        ({"parameterization": "foo"}, "parameterization"),
        ({"engine": "gpu"}, "engine"),
        ({"record_every": 0}, "record_every"),
    ],
)
def test_invalid_parameters_name_the_culprit(params, match):
    X, y = _one_example()
    with pytest.raises(InvalidParameterError, match=match):
        UVRegressor(**params).fit(X, y)


def test_bad_data_errors(rng):
    X, y = rng.normal(size=(3, 2)), rng.normal(size=3)
    est = UVRegressor(4, max_iter=2)
    with pytest.raises(ValueError, match="NaN"):
        est.fit(np.where(X == X[0, 0], np.nan, X), y)
    with pytest.raises(ValueError, match="infinity|inf"):
        est.fit(X, np.r_[np.inf, y[1:]])
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        est.fit(X, y[:2])
    with pytest.raises(ValueError, match="0 sample"):
        est.fit(X[:0], y[:0])
    with pytest.raises(ValueError, match="engine='function'"):
        UVRegressor(4, engine="function").fit(X, y)
    est.fit(X, y)
    with pytest.raises(ValueError, match="features"):
        est.predict(rng.normal(size=(2, 5)))


def test_learning_rate_units():
    """lr_units converts learning_rate to eta exactly, on one or many examples."""
    X, y = _one_example(y=2.0)
    base = UVRegressor(64, max_iter=200, init_scale=0.2, random_state=0)
    init = clone(base).set_params(max_iter=0).fit(X, y)
    eta_c, lam0 = init.critical_learning_rate_, init.initial_sharpness_
    crit = clone(base).set_params(learning_rate=1.1, lr_units="critical").fit(X, y)
    absolute = clone(base).set_params(learning_rate=1.1 * eta_c).fit(X, y)
    assert crit.learning_rate_ == pytest.approx(1.1 * eta_c, rel=1e-15)
    assert_allclose(crit.sharpness_trace_, absolute.sharpness_trace_, rtol=1e-12)
    rel = clone(base).set_params(learning_rate=1.5, lr_units="initial_sharpness")
    assert rel.fit(X, y).learning_rate_ * lam0 == pytest.approx(1.5, rel=1e-15)

    rng = np.random.default_rng(0)
    Xm, ym = rng.normal(size=(6, 3)), rng.normal(size=6)
    multi = UVRegressor(5, max_iter=5, random_state=0, lr_units="initial_sharpness")
    multi.set_params(learning_rate=1.0).fit(Xm, ym)
    assert multi.learning_rate_ * multi.initial_sharpness_ == pytest.approx(1.0, 1e-6)
    with pytest.raises(ValueError, match="lr_units='critical'"):
        multi.set_params(lr_units="critical").fit(Xm, ym)


def test_pipeline_with_parameterization_transformer(rng):
    """Transformer + estimator = the textbook NTK first layer W x / sqrt(d)."""
    from sklearn.pipeline import make_pipeline

    from sharpsk import ParameterizationTransformer

    X, y = rng.normal(size=(6, 9)), rng.normal(size=6)
    uv = UVRegressor(16, learning_rate=0.2, max_iter=20, random_state=0)
    pipe = make_pipeline(ParameterizationTransformer("ntk"), uv).fit(X, y)
    direct = clone(uv).fit(X / 3.0, y)
    fitted = pipe[-1]
    assert_allclose(fitted.sharpness_trace_, direct.sharpness_trace_, rtol=1e-12)
    assert_allclose(pipe.predict(X), direct.predict(X / 3.0), rtol=1e-12)
    # f = s v^T U x / sqrt(d) with s = 1 / sqrt(width) and U, v ~ N(0, 1).
    manual = (X / 3.0) @ fitted.U_.T @ fitted.v_ / 4.0
    assert_allclose(pipe.predict(X), manual, rtol=1e-12)


@pytest.mark.parametrize("engine", ["function", "parameter"])
def test_divergence_closes_traces_with_last_finite_state(engine):
    X, y = _one_example()
    est = UVRegressor(
        16,
        learning_rate=2.0,
        lr_units="critical",
        max_iter=400,
        record_every=7,
        engine=engine,
        random_state=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DivergenceWarning)
        est.fit(X, y)
    assert est.diverged_ and est.n_iter_ % 7 != 0
    assert_array_equal(est.steps_, list(range(0, est.n_iter_, 7)) + [est.n_iter_])
    full = clone(est).set_params(record_every=1, engine="function")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DivergenceWarning)
        full.fit(X, y)
    assert_allclose(est.sharpness_trace_, full.sharpness_trace_[est.steps_], rtol=1e-9)


def test_function_engine_memory_does_not_grow_with_steps():
    """Only the recorded steps are stored; the weights come from a 2x2 map."""
    import tracemalloc

    X, y = _one_example()
    base = UVRegressor(64, init_scale=0.1, random_state=0)
    eta = 1.3 * clone(base).set_params(max_iter=0).fit(X, y).critical_learning_rate_
    peaks = []
    for steps in (1000, 10000):
        est = clone(base).set_params(
            learning_rate=eta, max_iter=steps, record_every=steps // 4
        )
        est.fit(X, y)  # first-call allocations (validation caches) out of the way
        tracemalloc.start()
        est.fit(X, y)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert not est.diverged_ and len(est.steps_) == 5
    # Storing every step would add at least 9000 x 2 float64 to the peak.
    assert peaks[1] - peaks[0] < 9000 * 16 / 4


def test_n_hvp_like_mlp_regressor():
    # UVRegressor reports its Hessian-vector products as MLPRegressor does
    # (the sum of hvp_trace_, over a warm start too).
    X, y = np.ones((1, 4)) / 2, np.array([1.0])
    for engine in ("function", "parameter"):
        est = UVRegressor(width=4, max_iter=20, random_state=0, engine=engine)
        est.fit(X, y)
        assert est.n_hvp_ == int(est.hvp_trace_.sum())
        est.set_params(warm_start=True, max_iter=10).fit(X, y)
        assert est.n_hvp_ == int(est.hvp_trace_.sum())
