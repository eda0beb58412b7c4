"""LearningRateScan: labels from the equations, batched == per-run, n_jobs and
Dask invariance, resume after an interruption, progress and warnings."""

import warnings

import joblib
import numpy as np
import pytest
from joblib.memory import CacheWarning
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import (
    check_get_params_invariance,
    check_no_attributes_set_in_init,
    check_param_validation,
    check_set_params,
)

from sharpsk import LearningRateScan, UVRegressor, classify_run
from sharpsk._dynamics import default_tail, uv_lyapunov
from sharpsk._maps import _UVStepper, uv_sharpness, uv_simulate, uv_step
from sharpsk._scan import _fit_and_label
from sharpsk._uv_batched import _sharpness_into

# One example with |x| = 1; width 1 and the NTK parameterization give
# kappa = 1 and y = 1, so eta_c = 1 and eta / eta_c = y_tilde.  Seed 3 starts
# near f = 0 with a small NTK (progressive sharpening, then the attractor).
X1, Y1 = np.ones((1, 4)) / 2.0, np.array([1.0])
UV1 = UVRegressor(width=1, max_iter=2000, random_state=3)


def assert_results_equal(a, b):
    assert list(a) == list(b)
    for key in a:
        assert_array_equal(np.asarray(a[key]), np.asarray(b[key]), err_msg=key)


def multi_example_data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3, 2))
    return X, X @ np.array([1.0, -0.5])


# --------------------------------------------------------------------------
# Kernels behind the batched engine
# --------------------------------------------------------------------------


def test_inplace_kernels_round_like_the_reference(rng):
    n = 1000
    eta, kappa, y = rng.uniform(0.2, 2, n), rng.uniform(0.1, 2, n), rng.normal(size=n)
    df, ntk = rng.normal(size=n), rng.uniform(0.1, 3, n)
    a, b = df.copy(), ntk.copy()
    stepper = _UVStepper(eta, kappa, y, np.full(n, np.inf))
    out, buf = np.empty(n), np.empty(n)
    with np.errstate(all="ignore"):
        for t in range(31):  # no flush before step 32
            assert_array_equal(
                _sharpness_into(a, b, 4.0 * kappa, 2.0 * y, out, buf),
                uv_sharpness(df, ntk, kappa, y),
            )
            df, ntk = uv_step(df, ntk, eta, kappa, y)
            stepper.step(a, b, t)
            assert_array_equal(a, df)
            assert_array_equal(b, ntk)


def test_simulate_flushes_converged_residuals():
    # A converged run reaches exactly 0 (an exact fixed point) instead of
    # crawling through subnormal numbers; the NTK is untouched by it.
    sim = uv_simulate(-1.0, 1.0, [0.5, 0.9], 1.0, 1.0, 5000)
    assert np.all(sim["delta_f"][-1] == 0.0)
    ref_df, ref_ntk = -1.0, 1.0
    for _ in range(5000):
        ref_df, ref_ntk = uv_step(ref_df, ref_ntk, 0.9, 1.0, 1.0)
    assert sim["ntk"][-1, 1] == ref_ntk and abs(ref_df) < 1e-200
    # Batched and single runs agree bit for bit.
    one = uv_simulate(-1.0, 1.0, 0.9, 1.0, 1.0, 5000)
    assert_array_equal(one["ntk"], sim["ntk"][:, 1])


# --------------------------------------------------------------------------
# Labels follow the equations
# --------------------------------------------------------------------------


def test_uv_labels_follow_the_equations():
    # Below eta_c a stable minimum exists; just above it the period-2 orbit;
    # after the next doubling (y_tilde = 1.236...) period 4; chaos with a
    # positive exponent; beyond the attractor's reach, divergence.
    lrs = [0.5, 0.9, 1.1, 1.2, 1.25, 1.5, 2.5]
    scan = LearningRateScan(UV1, learning_rates=lrs, progress=False).fit(X1, Y1)
    r = scan.results_
    assert scan.engine_ == "batched"
    assert_allclose(r["critical_learning_rate"], 1.0)
    assert scan.labels_.tolist() == [
        "converge",
        "converge",
        "eos",
        "eos",
        "periodic",
        "chaotic",
        "diverge",
    ]
    assert r["period"].tolist() == [1, 1, 2, 2, 4, 0, 0]
    assert r["lyapunov"][5] > 0.3 and np.all(r["lyapunov"][2:5] < 0)
    assert np.isnan(r["lyapunov"][6]) and r["final_loss"][6] == np.inf
    assert r["diverged"].tolist() == [False] * 6 + [True]
    assert r["n_iter"][6] < 2000 and np.all(r["n_iter"][:6] == 2000)
    # A converged run sits at a stable minimum (eta lambda_H < 2); the EoS
    # orbit straddles 2.
    assert np.all(r["eta_sharpness_max"][:2] < 2)
    assert r["eta_sharpness_min"][2] < 2 < r["eta_sharpness_max"][2]
    # Same initialization everywhere.
    assert np.unique(r["initial_sharpness"]).size == 1
    assert_allclose(r["c"], np.asarray(lrs) * r["initial_sharpness"])


def test_lazy_limit_in_units_of_initial_sharpness():
    # Wide NTK network: y_tilde -> 0, so c = eta lambda_H0 alone decides
    # (c < 2 converge, 2 < c < 4 catapult, c > 4 diverge).
    uv = UVRegressor(width=4096, max_iter=1500, random_state=0)
    scan = LearningRateScan(
        uv,
        learning_rates=[1.5, 3.0, 4.5],
        lr_units="initial_sharpness",
        progress=False,
    ).fit(X1, Y1)
    r = scan.results_
    assert_allclose(scan.learning_rates_ * r["initial_sharpness"], [1.5, 3.0, 4.5])
    assert_array_equal(r["c"], [1.5, 3.0, 4.5])
    assert scan.labels_.tolist() == ["converge", "converge", "diverge"]
    assert r["catapult"].tolist() == [False, True, False]
    assert r["eta_sharpness_max"][1] < 2 < r["max_eta_sharpness"][1]


# --------------------------------------------------------------------------
# Batched == per-run; generic estimators
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"record_every": 3, "max_iter": 1000},
        {"max_iter": 40},  # shorter than the default tail
    ],
)
def test_batched_equals_per_run(params):
    uv = clone(UV1).set_params(**params)
    lrs = np.linspace(0.3, 2.2, 40)
    kw = {"learning_rates": lrs, "progress": False, "n_tail_points": 16}
    a = LearningRateScan(uv, engine="batched", **kw).fit(X1, Y1)
    b = LearningRateScan(uv, engine="per_run", **kw).fit(X1, Y1)
    assert (a.engine_, b.engine_) == ("batched", "per_run")
    assert len(set(a.results_["label"])) >= 3
    assert_results_equal(a.results_, b.results_)
    assert_results_equal(a.trace_tails_, b.trace_tails_)
    assert b.n_warnings_ == int(np.sum(b.results_["diverged"]))  # one each


def test_batched_equals_per_run_two_axes_and_normalized():
    kw = {
        "learning_rates": [0.5, 1.0, 2.0, 3.0],
        "lr_units": "initial_sharpness",
        "param_name": "init_scale",
        "param_values": [0.5, 1.0, 1.5],
        "progress": False,
    }
    uv = UVRegressor(width=2, max_iter=600, random_state=1)
    a = LearningRateScan(uv, **kw).fit(X1, Y1)
    b = LearningRateScan(uv, engine="per_run", **kw).fit(X1, Y1)
    assert a.engine_ == "batched"
    assert_results_equal(a.results_, b.results_)
    assert_results_equal(a.trace_tails_, b.trace_tails_)
    assert a.labels_.shape == (3, 4) and a.learning_rates_.shape == (3, 4)
    assert_array_equal(a.results_["param_init_scale"], np.repeat([0.5, 1.0, 1.5], 4))
    # Each row is the 1-D scan at that value.
    row = LearningRateScan(
        clone(uv).set_params(init_scale=1.5),
        learning_rates=kw["learning_rates"],
        lr_units="initial_sharpness",
        progress=False,
    ).fit(X1, Y1)
    assert_array_equal(a.labels_[2], row.labels_)
    assert_array_equal(a.learning_rates_[2], row.learning_rates_)


def test_per_run_summary_is_classify_run():
    est = clone(UV1).set_params(learning_rate=1.1)
    analysis = {
        "tail": None,
        "max_period": 64,
        "rtol": 1e-6,
        "edge_band": (0.875, 1.25),
        "lyapunov_tol": 1e-3,
    }
    out = _fit_and_label(est, X1, Y1, analysis=analysis, n_tail_points=8)
    T = default_tail(est.loss_curve_.size)
    init = est.function_space_state(X1, Y1)
    lam = uv_lyapunov(
        est.residual_trace_[-T],
        est.ntk_trace_[-T],
        1.1,
        init["kappa"],
        init["y"],
        2000 - est.steps_[-T],
        discard=(2000 - est.steps_[-T]) // 8,
    )
    ref = classify_run(
        est.loss_curve_,
        est.sharpness_trace_,
        1.1,
        lyapunov=lam,
        orbit=est.residual_trace_,
    )
    for key in ref:
        if key != "tail":
            assert out[key] == ref[key] or (np.isnan(out[key]) and np.isnan(ref[key]))
    assert_array_equal(out["tail_sharpness"], est.sharpness_trace_[-8:])


class QuadraticGD(RegressorMixin, BaseEstimator):
    """GD on L = h theta**2 / 2 (sharpness h): a non-UV estimator.

    Converges for eta h < 2, diverges for eta h > 2 (ground truth).
    """

    def __init__(self, curvature=1.0, *, learning_rate=0.1, max_iter=100):
        self.curvature = curvature
        self.learning_rate = learning_rate
        self.max_iter = max_iter

    def fit(self, X, y):
        theta, loss = 1.0, []
        bound = 1e6 * 0.5 * self.curvature  # 1e6 times the initial loss
        for _ in range(self.max_iter + 1):
            loss.append(0.5 * self.curvature * theta**2)
            if not loss[-1] <= bound:
                break
            theta *= 1.0 - self.learning_rate * self.curvature
        self.diverged_ = not loss[-1] <= bound
        self.loss_curve_ = np.array(loss[:-1] if self.diverged_ else loss)
        self.sharpness_trace_ = np.full(self.loss_curve_.size, self.curvature)
        self.steps_ = np.arange(self.loss_curve_.size)
        self.n_iter_ = self.loss_curve_.size - 1
        self.initial_sharpness_ = self.curvature
        self.learning_rate_ = self.learning_rate
        self.stability_threshold_ = 2.0 / self.learning_rate
        self.lyapunov_exponent_ = np.log(abs(1.0 - self.learning_rate * self.curvature))
        return self

    def predict(self, X):
        return np.zeros(len(X))


def test_generic_estimator_and_second_axis():
    scan = LearningRateScan(
        QuadraticGD(max_iter=3000),
        learning_rates=[0.5, 1.5, 1.99, 2.01, 3.0],
        lr_units="initial_sharpness",
        param_name="curvature",
        param_values=[1.0, 4.0],
        progress=False,
    ).fit(np.zeros((2, 1)), np.zeros(2))
    assert scan.engine_ == "per_run" and scan.init_seed_ is None
    expected = ["converge"] * 3 + ["diverge"] * 2
    assert scan.labels_.tolist() == [expected, expected]
    r = scan.results_
    assert_allclose(r["learning_rate"] * r["param_curvature"], r["c"])
    assert_allclose(r["lyapunov"][:3], np.log(np.abs(1 - np.array([0.5, 1.5, 1.99]))))
    assert r["catapult"].tolist()[:3] == [False, False, False]
    assert np.all(np.isnan(r["critical_learning_rate"]))


# --------------------------------------------------------------------------
# Parallel backends, Dask, memory, progress, warnings
# --------------------------------------------------------------------------


def per_run_scan(**kw):
    # Three examples: the parameter-space engine, so one fit per run.
    X, y = multi_example_data()
    uv = UVRegressor(width=4, max_iter=150, random_state=0)
    kw = {"progress": False, **kw}
    scan = LearningRateScan(
        uv, learning_rates=[0.5, 3.2, 4.0, 10.0], n_tail_points=4, **kw
    )
    return scan.fit(X, y)


def test_results_do_not_depend_on_n_jobs_or_backend():
    ref = per_run_scan(n_jobs=1)
    assert ref.engine_ == "per_run"
    assert ref.labels_.tolist() == ["converge"] * 3 + ["diverge"]
    assert ref.results_["catapult"].tolist() == [False, True, True, False]
    assert_results_equal(ref.results_, per_run_scan(n_jobs=2).results_)
    with joblib.parallel_config(backend="threading"):
        other = per_run_scan(n_jobs=2)
    assert_results_equal(ref.results_, other.results_)
    assert_results_equal(ref.trace_tails_, other.trace_tails_)


def test_dask_backend_matches_sequential(tmp_path):
    """The same scan on a local Dask cluster of two worker processes."""
    distributed = pytest.importorskip("distributed")
    import dask

    ref = per_run_scan(n_jobs=1)
    with (
        dask.config.set({"temporary-directory": str(tmp_path)}),
        distributed.LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster),
    ):
        with joblib.parallel_config(backend="dask"):
            scan = per_run_scan()
    assert_results_equal(ref.results_, scan.results_)
    assert_results_equal(ref.trace_tails_, scan.trace_tails_)


FITTED = []  # learning rates of the fits that ran (max_iter > 0)
INTERRUPT = {"at": None}


class FlakyUV(UVRegressor):
    """A UVRegressor that can be told to interrupt at one learning rate."""

    def fit(self, X, y):
        if self.max_iter > 0:
            if self.learning_rate == INTERRUPT["at"]:
                raise KeyboardInterrupt
            FITTED.append(self.learning_rate)
        return super().fit(X, y)


def test_memory_resumes_an_interrupted_scan(tmp_path):
    X, y = multi_example_data()
    lrs = [0.05, 0.1, 0.2, 0.3, 0.4, 0.6]
    est = FlakyUV(width=4, max_iter=60, random_state=0)
    scan = LearningRateScan(
        est, learning_rates=lrs, memory=str(tmp_path), progress=False
    )
    FITTED.clear()
    INTERRUPT["at"] = 0.3
    try:
        with pytest.raises(KeyboardInterrupt):
            scan.fit(X, y)
    finally:
        INTERRUPT["at"] = None
    assert FITTED == [0.05, 0.1, 0.2]
    FITTED.clear()
    scan.fit(X, y)  # resume: only the missing runs
    assert FITTED == [0.3, 0.4, 0.6] and scan.n_cached_ == 3
    FITTED.clear()
    again = clone(scan).set_params(memory=joblib.Memory(str(tmp_path), verbose=0))
    again.fit(X, y)
    assert FITTED == [] and again.n_cached_ == 6
    fresh = clone(scan).set_params(memory=None).fit(X, y)
    assert_results_equal(again.results_, fresh.results_)


def test_memory_caches_batched_scan(tmp_path):
    kw = {"learning_rates": [0.5, 1.1, 1.5], "progress": False}
    first = LearningRateScan(UV1, memory=tmp_path, **kw).fit(X1, Y1)
    second = LearningRateScan(UV1, memory=tmp_path, **kw).fit(X1, Y1)
    assert (first.n_cached_, second.n_cached_) == (0, 3)  # runs, not blocks
    assert_results_equal(first.results_, second.results_)


def test_progress_line(capsys):
    LearningRateScan(UV1, learning_rates=[0.5, 1.1], progress=True).fit(X1, Y1)
    assert "[LearningRateScan] 2/2 runs" in capsys.readouterr().err
    per_run_scan(progress=True)
    assert "[LearningRateScan] 4/4 runs" in capsys.readouterr().err
    per_run_scan(progress=False, verbose=1)
    captured = capsys.readouterr()
    assert captured.err == "" and "diverge=1" in captured.out


def test_divergence_is_a_result_and_warnings_do_not_flood():
    lrs = np.linspace(2.0, 3.0, 5)  # all diverge
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scan = LearningRateScan(
            UV1, learning_rates=lrs, engine="per_run", progress=False
        ).fit(X1, Y1)
    assert caught == []
    assert scan.labels_.tolist() == ["diverge"] * 5
    assert scan.n_warnings_ == 5  # one DivergenceWarning per run, silenced
    assert scan.trace_tails_["run"].size == 0


def test_same_init_and_seeds():
    X, y = multi_example_data()
    est = UVRegressor(width=4, max_iter=5)  # random_state=None
    a = LearningRateScan(
        est, learning_rates=[0.1, 0.2, 0.3], random_state=0, progress=False
    ).fit(X, y)
    assert np.unique(a.results_["initial_sharpness"]).size == 1
    b = LearningRateScan(
        est, learning_rates=[0.1, 0.2, 0.3], random_state=0, progress=False
    ).fit(X, y)
    assert a.init_seed_ == b.init_seed_
    assert_results_equal(a.results_, b.results_)
    c = LearningRateScan(
        est,
        learning_rates=[0.1, 0.2, 0.3],
        same_init=False,
        random_state=0,
        progress=False,
    ).fit(X, y)
    assert np.unique(c.results_["initial_sharpness"]).size == 3
    assert c.init_seed_.shape == (3,)
    # An integer random_state of the estimator is kept.
    d = LearningRateScan(
        clone(est).set_params(random_state=7), learning_rates=[0.1], progress=False
    ).fit(X, y)
    assert d.init_seed_ == 7


# --------------------------------------------------------------------------
# Validation and sklearn conventions
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"learning_rates": [0.1, -1.0]}, "learning_rates"),
        ({"learning_rates": []}, "learning_rates"),
        ({"learning_rates": [[0.1]]}, "learning_rates"),
        ({"param_name": "width"}, "param_values"),
        ({"param_name": "nope", "param_values": [1]}, "param_name"),
        ({"param_name": "learning_rate", "param_values": [1]}, "param_name"),
        ({"param_name": "width", "param_values": []}, "param_values"),
        ({"edge_band": (2.5, 1.5)}, "edge_band"),
        ({"engine": "batched"}, "engine='batched'"),
    ],
)
def test_bad_input(kw, match):
    X, y = multi_example_data()
    with pytest.raises(ValueError, match=match):
        LearningRateScan(UV1, progress=False, **kw).fit(X, y)


def test_bad_estimator_and_parameters():
    with pytest.raises(ValueError, match="learning_rate"):
        LearningRateScan(_NoLR(), progress=False).fit(np.zeros((1, 1)), np.zeros(1))
    with pytest.raises(InvalidParameterError, match="engine"):
        LearningRateScan(UV1, engine="fast").fit(X1, Y1)


class _NoLR(BaseEstimator):
    def __init__(self, alpha=1.0):
        self.alpha = alpha

    def fit(self, X, y):
        return self


def test_sklearn_conventions():
    scan = LearningRateScan(UV1, learning_rates=[0.5, 1.1], progress=False)
    name = type(scan).__name__
    check_no_attributes_set_in_init(name, scan)
    check_get_params_invariance(name, scan)
    check_set_params(name, scan)
    check_param_validation(name, scan)
    assert clone(scan).get_params()["estimator"].get_params() == UV1.get_params()
    scan.fit(X1, Y1)
    assert scan.n_features_in_ == 4 and scan.n_runs_ == 2
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(scan.results_)
    assert df.shape == (2, len(scan.results_))
    tails = pd.DataFrame(scan.trace_tails_)
    assert set(tails["run"]) == {0, 1}
    # The period-2 orbit shows two sharpness values in the bifurcation table.
    eos = tails[tails["run"] == 1]["sharpness"].round(10).unique()
    assert eos.size == 2


def test_estimator_lr_units_mean_normalized_scan():
    """MLPRegressor(lr_units="initial_sharpness") scans c like the scan's units."""
    from sharpsk import MLPRegressor
    from sharpsk.datasets import load_digits_onehot

    X, y = load_digits_onehot(n_samples=40, random_state=0)
    mlp = MLPRegressor((6,), max_iter=15, record_every=5, random_state=0)
    by_scan = LearningRateScan(
        mlp, learning_rates=[0.5, 1.5], lr_units="initial_sharpness", progress=False
    ).fit(X, y)
    by_units = LearningRateScan(
        clone(mlp).set_params(lr_units="initial_sharpness"),
        learning_rates=[0.5, 1.5],
        progress=False,
    ).fit(X, y)
    for key in ("learning_rate", "c", "final_loss", "eta_sharpness_mean"):
        np.testing.assert_array_equal(by_units.results_[key], by_scan.results_[key])
    np.testing.assert_allclose(
        by_scan.results_["learning_rate"] * by_scan.results_["initial_sharpness"],
        [0.5, 1.5],
        rtol=1e-12,
    )


def test_normalize_critical_units():
    """lr_units='critical' and UVRegressor(lr_units='critical') scan eta/eta_c."""
    X, y = np.ones((1, 4)) / 2.0, np.array([1.0])
    uv = UVRegressor(width=512, init_scale=0.1, max_iter=1500, random_state=0)
    ratios = np.array([0.5, 1.1, 1.25, 1.5, 2.1])
    eta_c = clone(uv).set_params(max_iter=0).fit(X, y).critical_learning_rate_
    ref = LearningRateScan(uv, learning_rates=ratios * eta_c, progress=False)
    ref.fit(X, y)
    by_normalize = LearningRateScan(
        uv, learning_rates=ratios, lr_units="critical", progress=False
    ).fit(X, y)
    by_units = LearningRateScan(
        clone(uv).set_params(lr_units="critical"),
        learning_rates=ratios,
        progress=False,
    ).fit(X, y)
    for scan in (by_normalize, by_units):
        assert_allclose(scan.results_["learning_rate"], ratios * eta_c, rtol=1e-15)
        assert scan.labels_.tolist() == ref.labels_.tolist()
    assert ref.labels_.tolist() == ["converge", "eos", "periodic", "chaotic", "diverge"]
    with pytest.raises(ValueError, match="critical"):
        LearningRateScan(
            uv, learning_rates=[1.0], lr_units="critical", progress=False
        ).fit(np.ones((2, 4)), np.ones(2))


def test_batched_scan_caches_blocks(tmp_path, monkeypatch):
    """A batched scan interrupted after its first block resumes from it."""
    import sharpsk._scan as scan_module
    import sharpsk._uv as uv_module

    monkeypatch.setattr(uv_module, "_MAX_BLOCK", 4)
    X, y = np.ones((1, 4)) / 2.0, np.array([1.0])
    uv = UVRegressor(width=64, init_scale=0.1, max_iter=300, random_state=0)
    rates = np.linspace(0.5, 1.5, 10)

    def make_scan(memory=None):
        return LearningRateScan(
            uv,
            learning_rates=rates,
            lr_units="critical",
            memory=memory,
            progress=False,
        )

    ref = make_scan().fit(X, y)

    def interrupt(self, n=1):  # Ctrl-C once the first block is done (and cached)
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(scan_module._Progress, "update", interrupt)
        with pytest.raises(KeyboardInterrupt):
            make_scan(str(tmp_path)).fit(X, y)
    resumed = make_scan(str(tmp_path)).fit(X, y)
    assert resumed.engine_ == "batched"
    assert resumed.n_cached_ == 4  # the first block of 4 runs (of 4, 4, 2)
    again = make_scan(str(tmp_path)).fit(X, y)
    assert again.n_cached_ == 10
    for key in ("learning_rate", "label", "period", "lyapunov", "final_loss"):
        assert_array_equal(resumed.results_[key], ref.results_[key])
        assert_array_equal(again.results_[key], ref.results_[key])


def test_random_state_axis_uses_its_seeds():
    # Regression (issue 13): every value ran from the scan's shared seed.
    X, y = multi_example_data()
    est = UVRegressor(width=4, max_iter=5)
    scan = LearningRateScan(
        est,
        learning_rates=[0.1, 0.2],
        param_name="random_state",
        param_values=[0, 1, 2],
        random_state=0,
        progress=False,
    ).fit(X, y)
    for seed, lam0 in zip(
        scan.results_["param_random_state"],
        scan.results_["initial_sharpness"],
        strict=True,
    ):
        ref = clone(est).set_params(random_state=int(seed), max_iter=0).fit(X, y)
        assert lam0 == ref.initial_sharpness_
    assert np.unique(scan.results_["initial_sharpness"]).size == 3
    assert list(scan.init_seed_) == [0, 1, 2]


def test_lr_units_axis_is_refused():
    # Regression (issue 13): the two engines disagreed on an lr_units axis.
    with pytest.raises(ValueError, match="lr_units"):
        LearningRateScan(
            UV1, param_name="lr_units", param_values=["critical"], progress=False
        ).fit(X1, Y1)


def test_deprecated_normalize_and_eos_band():
    X, y = multi_example_data()
    est = UVRegressor(width=4, max_iter=40, random_state=0)
    new = LearningRateScan(
        est,
        learning_rates=[0.5, 1.5],
        lr_units="initial_sharpness",
        edge_band=(0.9, 1.2),
        progress=False,
    ).fit(X, y)
    with pytest.warns(FutureWarning) as record:
        old = LearningRateScan(
            est,
            learning_rates=[0.5, 1.5],
            normalize=True,
            eos_band=(1.8, 2.4),
            progress=False,
        ).fit(X, y)
    messages = [str(w.message) for w in record]
    assert any("eos_band" in m for m in messages)
    assert any("normalize" in m for m in messages)
    assert_results_equal(new.results_, old.results_)


def test_corrupt_cache_entry_is_recomputed_and_not_counted(tmp_path):
    # Regression (issue 13): joblib logged a long traceback and n_cached_
    # counted the corrupt entry as cached.
    import pickle

    X, y = multi_example_data()
    est = UVRegressor(width=4, max_iter=20, random_state=0)
    kw = {"learning_rates": [0.1, 0.2, 0.3], "memory": tmp_path, "progress": False}
    first = LearningRateScan(est, **kw).fit(X, y)
    blocks = sorted(tmp_path.rglob("*.pkl"))
    runs = [b for b in blocks if "tails" in pickle.loads(b.read_bytes())[1]]
    assert len(blocks) == 4 and len(runs) == 3  # one init fit, three runs
    runs[0].write_bytes(b"garbage")
    with pytest.warns(CacheWarning, match="corrupt cache entry") as record:
        again = LearningRateScan(est, **kw).fit(X, y)
    assert len(record) == 1
    assert again.n_cached_ == 2
    assert_results_equal(first.results_, again.results_)
    assert LearningRateScan(est, **kw).fit(X, y).n_cached_ == 3  # stored anew


def test_cache_warnings_are_shown_not_counted(tmp_path, monkeypatch):
    # Regression (issue 13): on a full disk the scan's own warning capture
    # swallowed the "Unable to cache" warnings (counted in n_warnings_).
    from sharpsk._runstore import RunStore

    def full_disk(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(RunStore, "_write", full_disk)
    X, y = multi_example_data()
    est = UVRegressor(width=4, max_iter=20, random_state=0)
    with pytest.warns(CacheWarning, match="Unable to cache") as record:
        scan = LearningRateScan(
            est, learning_rates=[0.1, 0.2], memory=tmp_path, progress=False
        ).fit(X, y)
    assert len(record) == 1  # one warning, not one per run
    assert scan.n_warnings_ == 0 and scan.n_cached_ == 0


def test_trace_tails_built_when_read():
    import pickle

    from sklearn.exceptions import NotFittedError

    scan = LearningRateScan(
        UVRegressor(width=1, max_iter=300, random_state=3),
        learning_rates=[0.5, 1.5, 40.0],
        lr_units="critical",
        n_tail_points=8,
    )
    with pytest.raises(NotFittedError):
        _ = scan.trace_tails_
    X, y = np.ones((1, 4)) / 2.0, np.array([1.0])
    scan.fit(X, y)
    table = scan.trace_tails_
    assert scan.trace_tails_ is table  # built once
    assert table["run"].tolist() == [0] * 8 + [1] * 8  # run 2 diverged
    assert_array_equal(
        table["eta_sharpness"], table["learning_rate"] * table["sharpness"]
    )
    copy = pickle.loads(pickle.dumps(scan))
    assert_array_equal(copy.trace_tails_["sharpness"], table["sharpness"])
    scan.set_params(learning_rates=[0.5]).fit(X, y)  # a refit: its own table
    assert scan.trace_tails_["run"].tolist() == [0] * 8
