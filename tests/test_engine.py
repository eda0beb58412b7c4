"""The training engine: warm starts, schedules, thread limits, divergence."""

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from threadpoolctl import threadpool_info

import sharpsk._engine as engine_module
from sharpsk import (
    DivergenceWarning,
    LearningRateScan,
    LinearWarmup,
    MLPRegressor,
    UVRegressor,
)
from sharpsk._engine import limit_blas_threads, resolve_learning_rate
from sharpsk.datasets import load_digits_onehot

TRACES = (
    "steps_",
    "loss_curve_",
    "sharpness_trace_",
    "hvp_trace_",
    "sharpness_converged_",
)


@pytest.fixture(scope="module")
def digits():
    return load_digits_onehot(n_samples=60, random_state=0)


def _assert_same_run(a, b, names):
    for name in names:
        assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


@pytest.mark.parametrize("optimizer", ["gd", "momentum", "nesterov", "rmsprop", "adam"])
def test_warm_start_split_run_is_bit_identical(digits, optimizer):
    X, Y = digits
    base = MLPRegressor(
        (8,),
        learning_rate=0.05 if optimizer in ("rmsprop", "adam") else 0.3,
        optimizer=optimizer,
        max_iter=30,
        compute_ntk=True,
        compute_lyapunov=True,
        random_state=0,
    )
    one = clone(base).fit(X, Y)
    split = clone(base).set_params(max_iter=12, warm_start=True).fit(X, Y)
    split.set_params(max_iter=18).fit(X, Y)
    names = TRACES + ("ntk_trace_", "tangent_log_growth_")
    if optimizer in ("rmsprop", "adam"):
        names += ("preconditioned_sharpness_trace_",)
    _assert_same_run(one, split, names)
    assert split.n_iter_ == one.n_iter_ == 30
    assert split.lyapunov_exponent_ == one.lyapunov_exponent_
    for p, q in zip(one.coefs_, split.coefs_, strict=True):
        assert_array_equal(p, q)
    assert_array_equal(one.predict(X), split.predict(X))


@pytest.mark.parametrize("engine", ["function", "parameter"])
def test_uv_warm_start_split_run_is_bit_identical(engine):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(1, 5)), np.array([1.0])
    base = UVRegressor(
        16,
        learning_rate=0.3,
        lr_units="critical",
        max_iter=300,
        record_every=3,
        engine=engine,
        random_state=0,
    )
    one = clone(base).fit(x, y)
    split = clone(base).set_params(max_iter=99, warm_start=True).fit(x, y)
    split.set_params(max_iter=201).fit(x, y)
    _assert_same_run(one, split, TRACES + ("ntk_trace_", "residual_trace_"))
    assert split.engine_ == engine
    assert_allclose(split.predict(x), one.predict(x), rtol=1e-12)


def test_warm_start_off_refits_from_scratch(digits):
    X, Y = digits
    est = MLPRegressor((8,), learning_rate=0.3, max_iter=10, random_state=0)
    a = clone(est).fit(X, Y)
    est.fit(X, Y).fit(X, Y)
    _assert_same_run(a, est, TRACES)


def test_warm_start_after_divergence_keeps_the_traces(digits):
    X, Y = digits
    est = MLPRegressor((8,), learning_rate=50.0, max_iter=10, warm_start=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est.set_params(random_state=0).fit(X, Y)
        first = est.steps_.copy()
        est.fit(X, Y)
    assert [w.category for w in caught] == [DivergenceWarning] * 2
    assert est.diverged_ and est.steps_.size == first.size
    assert np.all(np.isfinite(est.loss_curve_))


def test_warm_start_checks_outputs(digits):
    X, Y = digits
    est = MLPRegressor((4,), max_iter=2, warm_start=True, random_state=0).fit(X, Y)
    with pytest.raises(ValueError, match="outputs"):
        est.fit(X, Y[:, :3])


# --------------------------------------------------------------------------
# Schedules
# --------------------------------------------------------------------------


def test_linear_warmup():
    schedule = LinearWarmup(0.4, 4, start=0.1)
    assert_allclose(
        [schedule(t) for t in range(6)], [0.1, 0.175, 0.25, 0.325, 0.4, 0.4]
    )
    assert schedule == LinearWarmup(0.4, 4, start=0.1)
    for bad in [{"peak": 0.0, "n_steps": 3}, {"peak": 1.0, "n_steps": 0}]:
        with pytest.raises(ValueError, match=next(iter(k for k in bad if not bad[k]))):
            LinearWarmup(**bad)


def test_schedule_equals_piecewise_warm_started_runs(digits):
    """A schedule is GD with the learning rate of each step, and the threshold
    follows it record by record."""
    X, Y = digits

    def schedule(t):
        return 0.3 if t < 10 else 0.1

    sched = MLPRegressor((8,), learning_rate=schedule, max_iter=20, random_state=0)
    sched.fit(X, Y)
    split = MLPRegressor(
        (8,), learning_rate=0.3, max_iter=10, warm_start=True, random_state=0
    ).fit(X, Y)
    split.set_params(learning_rate=0.1).fit(X, Y)
    _assert_same_run(sched, split, TRACES)
    assert_array_equal(sched.learning_rate_, [0.3] * 10 + [0.1] * 11)
    assert_allclose(sched.stability_threshold_, 2.0 / sched.learning_rate_, rtol=0)
    # the scan labels a scheduled run with its final threshold
    assert isinstance(split.stability_threshold_, np.ndarray)


def test_schedule_in_initial_sharpness_units(digits):
    X, Y = digits
    est = MLPRegressor(
        (8,),
        learning_rate=LinearWarmup(1.0, 5),
        lr_units="initial_sharpness",
        max_iter=8,
        random_state=0,
    ).fit(X, Y)
    assert_allclose(
        est.learning_rate_ * est.initial_sharpness_,
        [0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.0, 1.0, 1.0],
        rtol=1e-12,
        atol=1e-15,
    )


def test_bad_schedule_names_learning_rate(digits):
    X, Y = digits
    est = MLPRegressor((4,), learning_rate=lambda t: -1.0, max_iter=3)
    with pytest.raises(ValueError, match="learning_rate schedule returned -1.0"):
        est.fit(X, Y)


def test_uv_function_engine_refuses_schedules():
    X, y = np.ones((1, 3)), np.ones(1)
    uv = UVRegressor(4, learning_rate=LinearWarmup(0.1, 3), max_iter=5)
    assert uv.fit(X, y).engine_ == "parameter"
    with pytest.raises(ValueError, match="constant learning_rate"):
        uv.set_params(engine="function").fit(X, y)
    with pytest.raises(ValueError, match="optimizer='adam'"):
        UVRegressor(4, optimizer="adam", engine="function").fit(X, y)


# --------------------------------------------------------------------------
# Cohen et al.: the sharpness follows a changed learning rate to its new edge
# --------------------------------------------------------------------------


def test_sharpness_adapts_to_a_changed_learning_rate():
    """Lowering eta mid-run lets the sharpness rise to the new 2/eta;
    raising it throws the sharpness above the new 2/eta and a catapult brings
    it back to the edge (Cohen et al. 2021, section 3)."""
    X, Y = load_digits_onehot(n_samples=200, random_state=0)
    est = MLPRegressor(
        (32,),
        learning_rate=1.0,
        init_scale=0.25,
        max_iter=300,
        record_every=5,
        warm_start=True,
        random_state=0,
    ).fit(X, Y)

    def ratio(after):
        keep = est.steps_ > after
        threshold = np.broadcast_to(est.stability_threshold_, est.steps_.shape)
        return est.sharpness_trace_[keep] / threshold[keep]

    assert 1.0 < ratio(200).mean() < 1.25  # at the edge for eta = 1
    est.set_params(learning_rate=0.5, max_iter=600).fit(X, Y)
    low = ratio(300)
    assert low[0] < 0.65  # the edge moved up: 2 / 0.5
    assert np.all(np.diff(low[:80]) > 0)  # progressive sharpening...
    assert 0.95 < low[-10:].mean() < 1.1  # ...to the new edge
    est.set_params(learning_rate=0.65, max_iter=200).fit(X, Y)
    high = ratio(900)
    assert high[0] > 1.25  # above the new, lower edge
    assert high[8:].max() < 1.1  # a catapult brings it back
    assert 0.95 < high[-10:].mean() < 1.1
    assert not est.diverged_ and est.n_iter_ == 1100


# --------------------------------------------------------------------------
# Divergence, units, threads
# --------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [1e154, 1e155])
def test_overflowing_targets_are_a_diverged_run(scale):
    # Regression (issue 13): y * 1e154 gave diverged_=False with an inf loss,
    # and 1e155 raised "v0 must be finite" from the eigensolver.
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(20, 3)), rng.normal(size=20) * scale
    est = MLPRegressor((8,), max_iter=3, random_state=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est.fit(X, y)
    assert [w.category for w in caught] == [DivergenceWarning]
    assert "overflows" in str(caught[0].message)
    assert est.diverged_ and est.n_iter_ == 0
    scan = LearningRateScan(
        MLPRegressor((8,), max_iter=3, random_state=0),
        learning_rates=[0.1, 0.2],
        progress=False,
    ).fit(X, y)
    assert list(scan.labels_) == ["diverge", "diverge"]


def test_resolve_learning_rate():
    assert resolve_learning_rate(0.3, "absolute") == 0.3
    assert (
        resolve_learning_rate(1.0, "initial_sharpness", initial_sharpness=4.0) == 0.25
    )
    assert resolve_learning_rate(0.5, "critical", critical_learning_rate=2.0) == 1.0
    assert_allclose(
        resolve_learning_rate(
            np.array([1.0, 2.0]),
            "initial_sharpness",
            initial_sharpness=np.array([2.0, 4.0]),
        ),
        [0.5, 0.5],
    )
    with pytest.raises(ValueError, match="positive, finite initial sharpness"):
        resolve_learning_rate(1.0, "initial_sharpness", initial_sharpness=0.0)
    with pytest.raises(ValueError, match="critical learning rate"):
        resolve_learning_rate(1.0, "critical")
    with pytest.raises(ValueError, match="floating-point range"):
        resolve_learning_rate(1e300, "initial_sharpness", initial_sharpness=1e-300)
    with pytest.raises(ValueError, match="lr_units"):
        resolve_learning_rate(1.0, "c")


def _blas_threads():
    return {
        info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"
    }


def test_blas_threads_are_limited_and_change_no_number(digits):
    with limit_blas_threads(1):
        assert _blas_threads() <= {1}
    X, Y = digits
    est = MLPRegressor((8,), learning_rate=0.3, max_iter=10, random_state=0)
    one = clone(est).fit(X, Y)
    free = clone(est).set_params(blas_threads=None).fit(X, Y)
    _assert_same_run(one, free, TRACES)


def test_sharpness_every_is_deprecated(digits):
    X, Y = digits
    est = MLPRegressor((4,), max_iter=6, random_state=0)
    with pytest.warns(FutureWarning, match="record_every"):
        old = clone(est).set_params(sharpness_every=3).fit(X, Y)
    new = clone(est).set_params(record_every=3).fit(X, Y)
    _assert_same_run(old, new, TRACES)


def test_memory_grows_with_what_ran_not_with_max_iter():
    # Regression (issue 13): per-step arrays were preallocated for max_iter
    # (10**9 raised MemoryError even for a run diverging at step 1).
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(10, 3)), rng.normal(size=10)
    est = MLPRegressor((4,), learning_rate=1e4, max_iter=10**12, random_state=0)
    with pytest.warns(DivergenceWarning):
        est.fit(X, y)
    assert est.diverged_ and est.n_iter_ < 5 and est.steps_.size <= 6


def test_warm_start_may_switch_optimizer_and_options(digits):
    X, Y = digits
    est = MLPRegressor((8,), learning_rate=0.1, max_iter=5, warm_start=True)
    est.set_params(random_state=0).fit(X, Y)
    est.set_params(optimizer="adam", compute_lyapunov=True).fit(X, Y)
    assert est.n_iter_ == 10 and est.steps_.size == 11
    assert est.tangent_log_growth_.size == 5
    pre = est.preconditioned_sharpness_trace_  # NaN before adam took over
    assert pre.size == 11 and np.isnan(pre[:6]).all() and np.isfinite(pre[6:]).all()
    assert_allclose(est.stability_threshold_[-1], 38.0 / 0.1, rtol=1e-12)


# --------------------------------------------------------------------------
# Bad input: one clear error naming the culprit (issue 13)
# --------------------------------------------------------------------------


def test_string_targets_name_y():
    X = np.ones((3, 2))
    for est in (UVRegressor(4, max_iter=2), MLPRegressor((4,), max_iter=2)):
        with pytest.raises(ValueError, match="y must be numeric"):
            est.fit(X, np.array(["a", "b", "c"]))


def test_boolean_width_is_refused():
    with pytest.raises(ValueError, match="width must be a positive integer"):
        UVRegressor(width=True, max_iter=2).fit(np.ones((3, 2)), np.ones(3))


def test_learning_rates_as_a_set_is_refused():
    with pytest.raises(ValueError, match="learning_rates .* got a set"):
        LearningRateScan(
            UVRegressor(4, max_iter=2), learning_rates={0.1, 0.5}, progress=False
        ).fit(np.ones((3, 2)), np.ones(3))


def test_scanning_an_estimator_off_the_protocol_says_so():
    from sklearn.neural_network import MLPRegressor as SklearnMLP

    with pytest.raises(TypeError, match="does not follow the scan protocol"):
        LearningRateScan(SklearnMLP(), learning_rates=[0.1], progress=False).fit(
            np.ones((3, 2)), np.ones(3)
        )


@pytest.mark.parametrize(
    "kw, X, y",
    [
        ({}, np.ones((1, 2)) * 1e100, np.ones(1)),
        ({}, np.ones((1, 2)), np.ones(1) * 1e100),
        ({"init_scale": 1e200}, np.ones((1, 2)), np.ones(1)),
    ],
)
def test_overflow_is_one_divergence_warning(kw, X, y):
    # Regression (issue 13): RuntimeWarnings leaked from single-example fits.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = UVRegressor(4, max_iter=50, **kw).fit(X, y)
    assert [w.category for w in caught] == [DivergenceWarning]
    assert est.diverged_


@pytest.mark.parametrize("engine", ["batched", "per_run"])
def test_huge_learning_rates_in_a_scan_leak_no_warning(engine):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scan = LearningRateScan(
            UVRegressor(4, max_iter=50, random_state=0),
            learning_rates=[0.1, 1e300],
            engine=engine,
            progress=False,
        ).fit(np.ones((1, 2)), np.ones(1))
    assert caught == []
    assert scan.labels_[1] == "diverge"


@pytest.mark.parametrize("parameterization", ["sp", "ntk", "mup"])
def test_hessian_operator_is_the_tracked_hessian(parameterization):
    """Its top eigenvalue is the last sharpness record, on both estimators and
    both UV engines (the coordinates of the stability threshold)."""
    X, Y = load_digits_onehot(n_samples=40, random_state=0)
    mlp = MLPRegressor(
        (5,),
        max_iter=10,
        learning_rate=0.3,
        sharpness_tol=1e-10,
        parameterization=parameterization,
        random_state=0,
    ).fit(X, Y)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(1, 3)), np.ones(1)
    fitted = [(mlp, X, Y)] + [
        (
            UVRegressor(
                6,
                max_iter=20,
                learning_rate=0.3,
                engine=engine,
                parameterization=parameterization,
                random_state=0,
            ).fit(x, y),
            x,
            y,
        )
        for engine in ("function", "parameter")
    ]
    for est, X_, Y_ in fitted:
        H = est.hessian_operator(X_, Y_)
        dense = H @ np.eye(H.shape[0])
        assert_allclose(dense, dense.T, atol=1e-12)
        assert_allclose(
            np.linalg.eigvalsh(dense)[-1], est.sharpness_trace_[-1], rtol=1e-8
        )
    with pytest.raises(ValueError, match="outputs"):
        mlp.hessian_operator(X, Y[:, :2])


@pytest.mark.parametrize("lr_units", ["absolute", "initial_sharpness", "critical"])
def test_uv_warm_start_uses_the_new_learning_rate(lr_units):
    # Regression: the function engine kept the first fit's step size.
    X, y = np.ones((1, 4)) / 2.0, np.array([1.0])
    runs = {}
    for engine in ("function", "parameter"):
        est = UVRegressor(
            8,
            learning_rate=0.1,
            lr_units=lr_units,
            max_iter=2,
            engine=engine,
            warm_start=True,
            random_state=0,
        ).fit(X, y)
        runs[engine] = est.set_params(learning_rate=0.3, max_iter=3).fit(X, y)
    a, b = runs["function"], runs["parameter"]
    assert_allclose(a.loss_curve_, b.loss_curve_, rtol=1e-9)
    assert_allclose(a.learning_rate_, b.learning_rate_, rtol=1e-12)
    assert a.learning_rate_[-1] == pytest.approx(3 * a.learning_rate_[0])


def test_top_k_eigenvalues_along_a_run(digits):
    """k > 1: every record holds the top k of the dense spectrum, the
    sharpness is their first, and a warm start continues them."""
    X, Y = digits
    est = MLPRegressor(
        (6,),
        learning_rate=0.3,
        max_iter=12,
        record_every=4,
        k=4,
        sharpness_tol=1e-9,
        warm_start=True,
        random_state=0,
    ).fit(X, Y)
    top = est.top_eigenvalues_trace_
    assert top.shape == (4, 4)
    assert_array_equal(top[:, 0], est.sharpness_trace_)
    H = est.hessian_operator(X, Y)
    dense = np.linalg.eigvalsh(H @ np.eye(H.shape[0]))[::-1][:4]
    assert_allclose(top[-1], dense, rtol=1e-7)
    one = clone(est).set_params(k=1, warm_start=False).fit(X, Y)
    assert one.top_eigenvalues_trace_ is None
    assert_allclose(one.sharpness_trace_, est.sharpness_trace_, rtol=1e-7)
    est.fit(X, Y)  # warm: four more records of four
    assert est.top_eigenvalues_trace_.shape == (7, 4)
    with pytest.raises(ValueError, match="k changed"):
        est.set_params(k=2).fit(X, Y)
    est.set_params(k=4).fit(X, Y)  # the refused fit changed nothing
    assert est.top_eigenvalues_trace_.shape == (10, 4) and est.n_iter_ == 36
    # the UV model on one example leaves the exact map for the engine
    uv = UVRegressor(3, max_iter=5, k=2, random_state=0).fit(np.ones((1, 2)), [1.0])
    assert uv.engine_ == "parameter" and uv.top_eigenvalues_trace_.shape == (6, 2)
    with pytest.raises(ValueError, match="k=9 eigenvalues need more than 9"):
        UVRegressor(2, max_iter=1, k=9).fit(np.ones((1, 2)), [1.0])


# --------------------------------------------------------------------------
# The float32 Hessian matvec of MLPModel points (sgemm accumulation, factored
# curvature terms, buffers shared by the points of a model)
# --------------------------------------------------------------------------
@pytest.mark.parametrize("activation", ["identity", "logistic", "tanh", "relu"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize(
    "loss, sizes",
    [
        ("squared_error", [4, 6, 5, 3]),
        ("squared_error", [4, 3]),  # no hidden layer
        ("log_loss", [4, 7, 3]),
        ("binary_log_loss", [4, 5, 6, 1]),
    ],
)
def test_float32_matvec_matches_float64_and_the_list_kernel(
    random_net, activation, bias, loss, sizes
):
    from sharpsk._mlp_kernels import mlp_hvp, mlp_matvec, mlp_point

    rng = np.random.default_rng(3)
    params, mults = random_net(rng, sizes, bias)
    X = rng.normal(size=(11, sizes[0]))
    if loss == "binary_log_loss":
        Y = rng.integers(0, 2, (11, 1)).astype(float)
    else:
        Y = np.eye(sizes[-1])[rng.integers(0, sizes[-1], 11)]
    point = mlp_point(params, X, Y, mults, activation, loss)
    exact, n = mlp_matvec(point)
    fast, _ = mlp_matvec(point, dtype=np.float32)
    H = np.column_stack([exact(e) for e in np.eye(n)])
    H32 = np.column_stack([fast(e) for e in np.eye(n)])
    scale = np.abs(H).max()
    assert_allclose(H32, H, rtol=0, atol=2e-6 * scale)
    # the list kernel's float32 products (the R-passes without the fusions)
    shapes = [p.shape for p in params]
    for v in rng.normal(size=(3, n)):
        parts = np.split(v, np.cumsum([p.size for p in params])[:-1])
        vecs = [part.reshape(s) for part, s in zip(parts, shapes, strict=True)]
        listed = np.concatenate(
            [h.ravel() for h in mlp_hvp(point, vecs, dtype=np.float32)]
        )
        assert_allclose(fast(v), listed, rtol=0, atol=2e-6 * np.abs(listed).max())


def test_float32_buffers_shared_by_points_change_no_number(digits):
    """Points of one model write their float32 copies (and the factored
    curvature terms) into the arrays of the previous point: going back to an
    earlier point, or to a measurement batch of another size, gives the
    numbers of a fresh model bit for bit."""
    from sharpsk._mlp_kernels import MLPModel

    X, Y = digits
    X, Y = X[:60], Y[:60]
    est = MLPRegressor((7, 5), random_state=0)
    params, mults, _ = est._initialize(X.shape[1], Y.shape[1], np.random.RandomState(0))
    shapes = [p.shape for p in params]
    theta = np.concatenate([p.ravel() for p in params])
    rng = np.random.default_rng(0)
    thetas = [theta, theta + 0.1 * rng.normal(size=theta.size)]
    vecs = rng.normal(size=(2, theta.size))
    shared = MLPModel(X, Y, shapes, mults, "tanh")
    rows = np.arange(0, 60, 3)
    sequence = [(0, None), (1, None), (0, rows), (0, None), (1, rows), (1, None)]
    for k, r in sequence:
        got = [shared.point(thetas[k], r).hvp32(v) for v in vecs]
        fresh = MLPModel(X, Y, shapes, mults, "tanh").point(thetas[k], r)
        for v, g in zip(vecs, got, strict=True):
            assert_array_equal(g, fresh.hvp32(v))
    # the float32 product is the float64 one to float32 precision
    point = shared.point(thetas[1])
    exact = point.hvp(vecs[0])
    assert_allclose(point.hvp32(vecs[0]), exact, atol=1e-5 * np.abs(exact).max())


@pytest.mark.parametrize("a_order", ["C", "F"])
@pytest.mark.parametrize("b_order", ["C", "F"])
@pytest.mark.parametrize("alpha, beta", [(1.0, 0.0), (0.5, 1.0), (2.0, -1.5)])
def test_gemm_in_place(a_order, b_order, alpha, beta):
    from sharpsk._mlp_kernels import _gemm

    rng = np.random.default_rng(0)
    a = np.asarray(rng.normal(size=(7, 4)), dtype=np.float32, order=a_order)
    b = np.asarray(rng.normal(size=(4, 5)), dtype=np.float32, order=b_order)
    c = rng.normal(size=(7, 5)).astype(np.float32)
    expected = alpha * (a.astype(float) @ b.astype(float)) + beta * c
    out = _gemm(a, b, c, alpha, beta)
    assert out is c and c.dtype == np.float32
    assert_allclose(c, expected, rtol=1e-5, atol=1e-5)


def test_traces_are_allocated_once(monkeypatch):
    # A run's traces are sized to its schedule: no reallocation while it runs
    # (each doubling held the old and the new array, and the memory benchmark
    # saw the peak grow 2.1 times as fast as the traces).
    grown = []

    class Counting(engine_module._Record):
        def append(self, value):
            if self.data is not None and self.n == len(self.data):
                grown.append(self.n)
            super().append(value)

    monkeypatch.setattr(engine_module, "_Record", Counting)
    X, Y = np.eye(4)[:, :3], np.eye(4)[:, :2]
    fit = MLPRegressor((3,), max_iter=300, record_every=1, random_state=0).fit(X, Y)
    assert fit.sharpness_trace_.size == 301 and grown == []
