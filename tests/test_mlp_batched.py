"""The batched MLP engine against its ground truth: one fit per run.

Every number the kernel returns for a run must be that of fitting the
configured estimator and summarising it with the scan's per-run worker
(``_fit_and_label``): the labels equal, every float within rtol 1e-10 (in
practice bit for bit: the tests would catch chaotic runs drifting apart).
"""

import pickle
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone

from sharpsk import LearningRateScan, MLPClassifier, MLPRegressor
from sharpsk._mlp_batched import FrozenArray, mlp_batched_runs
from sharpsk._scan import _fit_and_label
from sharpsk.datasets import load_digits_onehot

ANALYSIS = {
    "tail": None,
    "max_period": 8,
    "rtol": 1e-6,
    "edge_band": (0.875, 1.25),
    "lyapunov_tol": 1e-2,
}
TAILS = ("tail_steps", "tail_sharpness", "tail_loss")


@pytest.fixture(scope="module")
def digits():
    X, Y = load_digits_onehot(n_samples=40, random_state=0)
    return X, Y


def _reg(**params):
    base = {
        "hidden_layer_sizes": (6,),
        "max_iter": 120,
        "record_every": 2,
        "random_state": 0,
        "init_scale": 0.5,
    }
    return MLPRegressor(**{**base, **params})


def _initial_sharpness(est, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return clone(est).set_params(max_iter=0).fit(X, y).initial_sharpness_


def _run_batched(configured, X, y, eta, n_tail_points=16, **kwargs):
    """Stack the configured estimators' engines as the scan does; one call."""
    engines = [est.batched_engine(X, y) for est in configured]
    assert all(engine is not None for engine in engines)
    kernel, key = engines[0].kernel, engines[0].key
    assert all(e.kernel is kernel and e.key == key for e in engines)
    assert len({hash(e.key) for e in engines}) == 1
    names = engines[0].state
    state = {name: np.array([e.state[name] for e in engines]) for name in names}
    return kernel(
        eta=np.asarray(eta, dtype=float),
        **state,
        **dict(key),
        analysis=ANALYSIS,
        n_tail_points=n_tail_points,
        **kwargs,
    )


def _per_run(configured, X, y, eta, n_tail_points=16):
    return [
        _fit_and_label(
            clone(est).set_params(learning_rate=float(e)),
            X,
            y,
            analysis=ANALYSIS,
            n_tail_points=n_tail_points,
        )
        for est, e in zip(configured, eta, strict=True)
    ]


def _assert_same(batched, reference):
    """Run ``r`` of the kernel's output equals ``reference[r]``, key by key."""
    assert len(batched["tails"]) == len(reference)
    assert set(batched) == set(reference[0]) - set(TAILS) | {"tails"}
    for r, ref in enumerate(reference):
        for key, expected in ref.items():
            if key in TAILS:
                got = batched["tails"][r][TAILS.index(key)]
            else:
                got = batched[key][r]
            if key == "label":
                assert got == expected, (r, key)
            elif isinstance(expected, bool | np.bool_):
                assert bool(got) == bool(expected), (r, key)
            elif key == "tail_steps" or isinstance(expected, int | np.integer):
                assert_array_equal(got, expected, err_msg=f"run {r}: {key}")
            else:
                assert_allclose(
                    got, expected, rtol=1e-10, atol=0, err_msg=f"run {r}: {key}"
                )


def _compare(est, X, y, c, n_tail_points=16):
    """Batched vs per-run at the learning rates ``c / lambda_H0``."""
    eta = np.asarray(c) / _initial_sharpness(est, X, y)
    configured = [clone(est) for _ in eta]
    out = _run_batched(configured, X, y, eta, n_tail_points)
    _assert_same(out, _per_run(configured, X, y, eta, n_tail_points))
    return out


def test_regressor_matches_per_run(digits):
    X, Y = digits
    out = _compare(_reg(), X, Y, [0.5, 2.0, 5.0, 8.0, 50.0])
    labels = set(out["label"])
    assert {"converge", "eos", "diverge"} <= labels, labels
    assert out["diverged"].tolist() == [False, False, False, True, True]
    assert out["label"].dtype == object
    # a diverged run's n_iter is its divergence step; one warning each
    assert out["n_iter"][-1] < 120 and out["n_warnings"].tolist() == [0, 0, 0, 1, 1]


def test_seeds_and_init_scales_in_one_batch(digits):
    X, Y = digits
    configs = [(0, 0.5), (1, 0.5), (2, 1.0), (0, 1.0), (3, 0.25), (1, 2.0)]
    configured = [_reg(random_state=s, init_scale=a) for s, a in configs]
    eta = np.array([0.3, 0.6, 0.9, 0.1, 0.5, 0.6])
    out = _run_batched(configured, X, Y, eta)
    _assert_same(out, _per_run(configured, X, Y, eta))
    starts = [est.batched_engine(X, Y).state["theta0"] for est in configured]
    assert not np.array_equal(starts[0], starts[1])  # seeds differ
    assert_allclose(starts[3], 2.0 * starts[0], rtol=1e-15)  # init_scale


@pytest.mark.parametrize(
    "params",
    [
        {"loss": "log_loss"},
        {"loss": "log_loss", "binary": True},
        {"loss": "squared_error", "activation": "relu", "parameterization": "mup"},
    ],
    ids=["softmax", "logistic", "squared-relu-mup"],
)
def test_classifier_matches_per_run(digits, params):
    X, Y = digits
    params = dict(params)
    y = Y.argmax(axis=1)
    if params.pop("binary", False):
        y = (y > 4).astype(int)
    clf = MLPClassifier((6,), max_iter=80, record_every=2, random_state=0, **params)
    _compare(clf, X, y, [0.5, 3.0, 30.0, 300.0])


@pytest.mark.parametrize(
    "params",
    [
        {"optimizer": "momentum", "momentum": 0.5},
        {"optimizer": "nesterov", "momentum": 0.3},
        {"sharpness_batch_size": 15},
        {"fit_intercept": False, "hidden_layer_sizes": (5, 4)},
        {"activation": "logistic", "parameterization": "ntk", "record_every": 7},
        {"compute_ntk": True, "batch_size": 1000, "warm_start": True},
        {"sharpness_tol": 1e-4},  # float32 products in the trackers
    ],
    ids=[
        "momentum",
        "nesterov",
        "measure-batch",
        "deep-no-bias",
        "logistic",
        "ignored",
        "float32-products",
    ],
)
def test_options_match_per_run(digits, params):
    X, Y = digits
    _compare(_reg(max_iter=60, **params), X, Y, [0.4, 2.5, 6.0, 40.0])


def test_full_traces_with_n_tail_points_none(digits):
    X, Y = digits
    est = _reg(max_iter=40, record_every=3)
    eta = np.array([0.5, 8.0, 50.0]) / _initial_sharpness(est, X, Y)
    configured = [clone(est) for _ in eta]
    out = _run_batched(configured, X, Y, eta, n_tail_points=None)
    _assert_same(out, _per_run(configured, X, Y, eta, n_tail_points=None))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fits = [clone(est).set_params(learning_rate=float(e)).fit(X, Y) for e in eta]
    for (steps, sharp, loss), fit in zip(out["tails"], fits, strict=True):
        # every record, a diverged run's finite prefix included
        assert_array_equal(steps, fit.steps_)
        assert_array_equal(sharp, fit.sharpness_trace_)
        assert_array_equal(loss, fit.loss_curve_)
    assert out["diverged"].tolist() == [False, True, True]
    assert out["tails"][2][0][-1] == out["n_iter"][2]  # closes at the last finite


def test_non_finite_start_is_a_divergence(digits):
    X, Y = digits
    Y = Y * 1e200  # the initial loss overflows
    est = _reg(max_iter=10)
    configured = [clone(est), clone(est)]
    out = _run_batched(configured, X, Y, [0.1, 0.2])
    _assert_same(out, _per_run(configured, X, Y, [0.1, 0.2]))
    assert np.isinf(out["final_loss"]).all()
    assert out["diverged"].all() and (out["n_iter"] == 0).all()


def test_chunks_change_no_number(digits):
    X, Y = digits
    est = _reg(max_iter=60)
    eta = np.array([0.1, 0.4, 0.7, 1.2, 5.0])
    configured = [clone(est) for _ in eta]
    a = _run_batched(configured, X, Y, eta)
    b = _run_batched(configured, X, Y, eta, chunk_size=2)
    for key in a:
        if key == "tails":
            for ta, tb in zip(a[key], b[key], strict=True):
                for u, v in zip(ta, tb, strict=True):
                    assert_array_equal(u, v)
        else:
            assert_array_equal(a[key], b[key], err_msg=key)


def test_runs_from_one_start_share_the_first_measurement(digits, monkeypatch):
    # three runs from one start and one from another, one run per chunk:
    # two cold measurements at step 0, and the numbers of one fit per run
    import sharpsk._mlp_batched as batched

    X, Y = digits
    calls = []

    class Counting(batched.TopEigenTracker):
        def update(self, *args, **kwargs):
            calls.append(self)
            return super().update(*args, **kwargs)

    monkeypatch.setattr(batched, "TopEigenTracker", Counting)
    est = _reg(max_iter=0)
    configured = [clone(est), clone(est), _reg(max_iter=0, random_state=3), clone(est)]
    eta = np.array([0.1, 0.2, 0.3, 0.4])
    out = _run_batched(configured, X, Y, eta, chunk_size=1)
    assert len(calls) == 2
    _assert_same(out, _per_run(configured, X, Y, eta))
    # across chunks, with later records of their own
    est = _reg(max_iter=20, record_every=5)
    configured = [clone(est) for _ in range(3)]
    eta = np.array([0.5, 3.0, 8.0]) / _initial_sharpness(est, X, Y)
    out = _run_batched(configured, X, Y, eta, chunk_size=2)
    _assert_same(out, _per_run(configured, X, Y, eta))


@pytest.mark.parametrize(
    "params",
    [
        {"optimizer": "adam"},
        {"optimizer": "rmsprop"},
        {"batch_size": 10},
        {"compute_lyapunov": True},
        {"k": 2},
        {"verbose": 1},
        {"sharpness_every": 5},
    ],
)
def test_unsupported_configurations_return_none(digits, params):
    X, Y = digits
    assert _reg(**params).batched_engine(X, Y) is None


def test_a_warm_fitted_estimator_returns_none(digits):
    X, Y = digits
    est = _reg(max_iter=2, warm_start=True)
    assert est.batched_engine(X, Y) is not None  # nothing to continue yet
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, Y)
    assert est.batched_engine(X, Y) is None


def test_batched_engine_leaves_the_estimator_unfitted(digits):
    X, Y = digits
    est = MLPClassifier((4,), random_state=0)
    assert est.batched_engine(X, Y.argmax(axis=1)) is not None
    assert not [name for name in vars(est) if name.endswith("_")]


def test_defaults_offer_an_engine(digits):
    # a new estimator parameter the batched engine does not know makes it
    # return None: this fails until the engine accounts for it
    X, Y = digits
    assert MLPRegressor().batched_engine(X, Y) is not None
    assert MLPClassifier().batched_engine(X, Y.argmax(axis=1)) is not None


def test_auto_only_where_it_pays(digits):
    X, Y = digits
    assert _reg(record_every=10).batched_engine(X, Y).auto
    assert not _reg(record_every=1).batched_engine(X, Y).auto
    X_big, Y_big = load_digits_onehot(n_samples=500, random_state=0)
    assert (
        not _reg(record_every=10)
        .set_params(hidden_layer_sizes=(64,))
        .batched_engine(X_big, Y_big)
        .auto
    )


def test_engine_keys_group_one_architecture(digits):
    X, Y = digits
    a = _reg(random_state=0).batched_engine(X, Y)
    b = _reg(random_state=5, init_scale=2.0).batched_engine(X, Y)
    assert a.key == b.key and hash(a.key) == hash(b.key)
    for other in (
        _reg(hidden_layer_sizes=(7,)),
        _reg(max_iter=99),
        _reg(parameterization="mup"),
    ):
        assert other.batched_engine(X, Y).key != a.key
    assert _reg().batched_engine(X[:-1], Y[:-1]).key != a.key  # other data


def test_frozen_array():
    x = np.arange(6.0).reshape(2, 3)
    a, b = FrozenArray(x), FrozenArray(x.copy())
    x[0, 0] = 99.0  # copied: the wrapper does not change
    assert a == b and hash(a) == hash(b) and a != FrozenArray(x)
    assert_array_equal(np.asarray(a), np.arange(6.0).reshape(2, 3))
    assert not np.asarray(a).flags.writeable
    c = pickle.loads(pickle.dumps(a))
    assert c == a and hash(c) == hash(a)


def test_kernel_checks_measure_rows(digits):
    X, Y = digits
    engine = _reg().batched_engine(X, Y)
    kwargs = {**dict(engine.key), "sharpness_batch_size": 10}
    with pytest.raises(ValueError, match="measure_rows"):
        mlp_batched_runs(
            eta=np.array([0.1]),
            theta0=engine.state["theta0"][None],
            **kwargs,
            analysis=ANALYSIS,
            n_tail_points=4,
        )


@pytest.mark.parametrize(
    "name, values",
    # architectures of several shapes: one group of stacked runs each
    [("init_scale", [0.5, 1.0]), ("hidden_layer_sizes", [(6,), (9,)])],
)
def test_scan_batched_equals_per_run(digits, name, values):
    X, Y = digits
    kw = {
        "learning_rates": [0.5, 2.0, 5.0, 8.0],
        "lr_units": "initial_sharpness",
        "param_name": name,
        "param_values": values,
        "max_period": 8,
        "progress": False,
    }
    est = _reg(max_iter=60, record_every=10)
    auto = LearningRateScan(est, **kw).fit(X, Y)
    per_run = LearningRateScan(est, engine="per_run", **kw).fit(X, Y)
    assert auto.engine_ == "batched" and per_run.engine_ == "per_run"
    assert set(auto.results_) == set(per_run.results_)
    for key, value in per_run.results_.items():
        if value.dtype == object:
            assert_array_equal(auto.results_[key], value, err_msg=key)
        else:
            assert_allclose(auto.results_[key], value, rtol=1e-10, err_msg=key)
    for key, value in per_run.trace_tails_.items():
        if value.dtype == object:  # a parameter of tuples
            assert_array_equal(auto.trace_tails_[key], value, err_msg=key)
        else:
            assert_allclose(auto.trace_tails_[key], value, rtol=1e-10, err_msg=key)
    assert auto.n_warnings_ == per_run.n_warnings_


def test_huge_learning_rates_leak_no_warning(digits):
    X, Y = digits
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scan = LearningRateScan(
            _reg(max_iter=30, record_every=10),
            learning_rates=[0.1, 1e300],
            engine="batched",
            progress=False,
        ).fit(X, Y)
    assert caught == []
    assert scan.engine_ == "batched" and scan.labels_[1] == "diverge"
