"""The loss table, the MLP kernels with cross-entropy and MLPClassifier: exact
derivatives against autograd, dense Hessians, the classifier contract,
divergence, the scan, and the edge of stability with cross-entropy on digits."""

import pickle
import re
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
from autograd import grad, hessian, jacobian
from autograd import numpy as anp
from autograd.test_util import check_grads
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.metrics import log_loss

from sharpsk import DivergenceWarning, LearningRateScan, MLPClassifier
from sharpsk._losses import LOSS_FUNCTIONS, get_loss
from sharpsk._mlp_kernels import (
    ACTIVATIONS,
    _MLPPoint,
    mlp_gradient,
    mlp_loss,
    mlp_matvec,
    mlp_point,
)
from sharpsk._sharpness import flatten_params, hessian_dense
from sharpsk.datasets import load_digits_onehot

ROOT = Path(__file__).resolve().parents[1]
TRACES = ("steps_", "loss_curve_", "sharpness_trace_", "hvp_trace_")
CLASSIFICATION_LOSSES = ("log_loss", "binary_log_loss")


def _targets(rng, loss, n, k):
    """Targets of a loss: real, one-hot rows, or one 0/1 column."""
    if loss == "squared_error":
        return rng.normal(size=(n, k))
    if loss == "log_loss":
        return np.eye(k)[rng.integers(k, size=n)]
    return rng.integers(2, size=(n, 1)).astype(float)


def _outputs(params, mults, X, activation="tanh"):
    """Network outputs with autograd.numpy (weights and biases alternate)."""
    h = X
    for i in range(0, len(params), 2):
        z = mults[i] * anp.dot(h, params[i]) + mults[i + 1] * params[i + 1]
        h = z if i == len(params) - 2 else anp.tanh(z)
    return h


def _unflatten(w, like):
    out, start = [], 0
    for p in like:
        out.append(w[start : start + p.size].reshape(p.shape))
        start += p.size
    return out


# --------------------------------------------------------------------------
# The loss table against autograd
# --------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(LOSS_FUNCTIONS))
def test_loss_value_gradient_and_output_hessian_match_autograd(rng, name):
    loss = get_loss(name)
    k = 1 if name == "binary_log_loss" else 4
    F = 2.0 * rng.normal(size=(7, k))
    Y = _targets(rng, name, 7, k)
    P = loss.prediction(F)

    def ref(F):
        return loss.reference(F, Y)

    assert loss.value(F, Y) == pytest.approx(float(ref(F)), rel=1e-13)
    assert_allclose(loss.gradient(P, Y), grad(ref)(F), rtol=1e-12, atol=1e-15)
    H = hessian(ref)(F).reshape(F.size, F.size)
    R = rng.normal(size=F.shape)
    assert_allclose(
        loss.hessian_action(P, R).ravel(), H @ R.ravel(), rtol=1e-11, atol=1e-14
    )
    # The output Hessian is positive semi-definite: exact Gauss-Newton.
    assert np.linalg.eigvalsh(H)[0] > -1e-14


def test_log_losses_are_stable_and_saturate():
    """Huge logits: finite values, exact limits, a vanishing output Hessian."""
    ce, bce = get_loss("log_loss"), get_loss("binary_log_loss")
    F = np.array([[1000.0, -1000.0, 0.0], [0.0, 800.0, 0.0]])
    Y = np.eye(3)[[0, 0]]
    assert ce.value(F, Y) == pytest.approx(800.0 / 2)
    P = ce.prediction(F)
    assert_allclose(P.sum(axis=1), 1.0)
    assert_allclose(ce.hessian_action(P, np.ones_like(F)), 0.0, atol=1e-300)
    f = np.array([[-800.0], [800.0]])
    y = np.array([[0.0], [0.0]])
    assert bce.value(f, y) == pytest.approx(800.0 / 2)
    assert bce.divergence_scale(f, bce.prediction(f) - y) == 800.0
    soft = np.full((2, 3), 1.0 / 3)  # rows of probabilities, not only one-hot
    ref = grad(lambda F: ce.reference(F, soft))(F / 100)
    assert_allclose(ce.gradient(ce.prediction(F / 100), soft), ref, rtol=1e-12)


def test_get_loss_names_the_choices():
    assert get_loss(LOSS_FUNCTIONS["log_loss"]) is LOSS_FUNCTIONS["log_loss"]
    with pytest.raises(ValueError, match="binary_log_loss"):
        get_loss("hinge")


# --------------------------------------------------------------------------
# MLP kernels with cross-entropy against autograd
# --------------------------------------------------------------------------
@pytest.mark.parametrize("loss", CLASSIFICATION_LOSSES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_gradient_and_hvp_are_exact(random_net, rng, loss, activation):
    k = 1 if loss == "binary_log_loss" else 3
    params, mults = random_net(rng, [3, 5, 4, k])
    X, Y = rng.normal(size=(6, 3)), _targets(rng, loss, 6, k)
    point = mlp_point(params, X, Y, mults, activation, loss)

    def objective(p):
        return mlp_loss(p, X, Y, mults, activation, loss)

    assert point["loss"] == pytest.approx(float(objective(params)), rel=1e-13)
    assert_allclose(
        flatten_params(mlp_gradient(point)),
        flatten_params(grad(objective)(params)),
        rtol=1e-11,
        atol=1e-14,
    )
    H = hessian_dense(objective, params)
    matvec, n = mlp_matvec(point)
    H_analytic = np.column_stack([matvec(e) for e in np.eye(n)])
    assert_allclose(H_analytic, H, rtol=1e-10, atol=1e-12 * np.abs(H).max())
    if activation != "relu":  # relu's kink makes second differences meaningless
        check_grads(objective, modes=["rev"], order=2)(params)


@pytest.mark.parametrize("loss", CLASSIFICATION_LOSSES)
def test_gauss_newton_product_weights_the_ntk_by_the_output_hessian(
    random_net, rng, loss
):
    k = 1 if loss == "binary_log_loss" else 3
    params, mults = random_net(rng, [3, 6, k])
    X, Y = rng.normal(size=(5, 3)), _targets(rng, loss, 5, k)
    point = mlp_point(params, X, Y, mults, "tanh", loss)
    J = jacobian(lambda w: _outputs(_unflatten(w, params), mults, X).ravel())(
        flatten_params(params)
    )
    ref = get_loss(loss).reference
    F = _outputs(params, mults, X)
    H_out = hessian(lambda F: ref(F, Y))(F).reshape(F.size, F.size)
    matvec, n = mlp_matvec(point, gauss_newton=True)
    G = np.column_stack([matvec(e) for e in np.eye(n)])
    assert_allclose(G, J.T @ H_out @ J, rtol=1e-10, atol=1e-14)


def test_divergence_scale_of_cross_entropy_is_the_largest_logit(random_net, rng):
    params, mults = random_net(rng, [3, 4, 3])
    X, Y = rng.normal(size=(5, 3)), np.eye(3)[[0, 1, 2, 0, 1]]
    pt = mlp_point(params, X, Y, mults, "tanh", "log_loss")
    assert _MLPPoint(pt).residual_max == np.max(np.abs(pt["output"]))
    assert np.max(np.abs(pt["residual"])) <= 1.0  # p - y: useless as a bound
    sq = mlp_point(params, X, Y, mults, "tanh")
    assert _MLPPoint(sq).residual_max == np.max(np.abs(sq["output"] - Y))


# --------------------------------------------------------------------------
# The estimator against ground truth
# --------------------------------------------------------------------------
def _raw(est):
    """Raw weights and multipliers of an SP fit (its coordinates are raw)."""
    mult = est.scalings_["multiplier"]
    params, mults = [], []
    for i, (W, b) in enumerate(zip(est.coefs_, est.intercepts_, strict=True)):
        params += [W / mult[i], b]
        mults += [mult[i], 1.0]
    return params, mults


@pytest.mark.parametrize("n_classes", [2, 3])
def test_sharpness_ntk_and_hessian_operator_match_dense_eigvalsh(rng, n_classes):
    X = rng.normal(size=(12, 3))
    y = np.array(["ant", "bee", "cat"])[np.arange(12) % n_classes]
    est = MLPClassifier(
        (5, 4),
        learning_rate=0.5,
        max_iter=9,
        record_every=4,
        sharpness_tol=1e-10,
        compute_ntk=True,
        random_state=0,
    ).fit(X, y)
    assert_array_equal(est.steps_, [0, 4, 8, 9])
    loss = "binary_log_loss" if n_classes == 2 else "log_loss"
    Y = est._encode(y)
    assert Y.shape == (12, 1 if n_classes == 2 else 3)
    params, mults = _raw(est)
    H = hessian_dense(lambda p: mlp_loss(p, X, Y, mults, "tanh", loss), params)
    assert_allclose(est.sharpness_trace_[-1], np.linalg.eigvalsh(H)[-1], rtol=1e-9)
    assert np.all(est.sharpness_converged_)
    op = est.hessian_operator(X, y)
    assert_allclose(
        op @ np.eye(op.shape[0]), H, rtol=1e-10, atol=1e-12 * np.abs(H).max()
    )
    J = jacobian(lambda w: _outputs(_unflatten(w, params), mults, X).ravel())(
        flatten_params(params)
    )
    F = _outputs(params, mults, X)
    ref = get_loss(loss).reference
    H_out = hessian(lambda F: ref(F, Y))(F).reshape(F.size, F.size)
    assert_allclose(
        est.ntk_trace_[-1], np.linalg.eigvalsh(J.T @ H_out @ J)[-1], rtol=1e-9
    )
    # The recorded loss is scikit-learn's log_loss of the predicted probabilities.
    assert_allclose(est.loss_curve_[-1], log_loss(y, est.predict_proba(X)), rtol=1e-10)


# --------------------------------------------------------------------------
# The classifier contract
# --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits():
    X, Y = load_digits_onehot(n_samples=120, random_state=0)
    return X, np.array([f"digit {k}" for k in Y.argmax(axis=1)])


def test_string_labels_proba_and_score(digits):
    X, y = digits
    est = MLPClassifier((16,), learning_rate=0.5, max_iter=80, random_state=0)
    est.fit(X, y)
    assert_array_equal(est.classes_, sorted(set(y)))
    assert est.n_outputs_ == 10 and est.out_activation_ == "softmax"
    proba = est.predict_proba(X)
    assert proba.shape == (120, 10)
    assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    assert_allclose(est.predict_log_proba(X), np.log(proba), rtol=1e-10)
    assert_array_equal(est.predict(X), est.classes_[proba.argmax(axis=1)])
    assert est.score(X, y) > 0.95
    assert est.loss_curve_[-1] < 0.05 * est.loss_curve_[0]
    assert est.loss_curve_[0] == pytest.approx(np.log(10), rel=0.05)


def test_binary_problems_have_one_logistic_output(digits):
    X, y = digits
    y2 = np.where(np.isin(y, ["digit 0", "digit 1", "digit 2", "digit 3"]), 7, -7)
    est = MLPClassifier((8,), learning_rate=0.5, max_iter=60, random_state=0)
    est.fit(X, y2)
    assert_array_equal(est.classes_, [-7, 7])
    assert est.n_outputs_ == 1 and est.out_activation_ == "logistic"
    assert est.coefs_[-1].shape == (8, 1)
    proba = est.predict_proba(X)
    assert proba.shape == (120, 2)
    assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    assert_array_equal(est.predict(X), est.classes_[proba.argmax(axis=1)])
    assert_allclose(est.loss_curve_[-1], log_loss(y2, proba), rtol=1e-10)
    assert est.score(X, y2) > 0.95


def test_squared_error_trains_one_hot_outputs_without_probabilities(digits):
    X, y = digits
    est = MLPClassifier(
        (8,), loss="squared_error", learning_rate=0.5, max_iter=60, random_state=0
    )
    assert not hasattr(est, "predict_proba")
    est.fit(X, y)
    assert est.n_outputs_ == 10 and est.out_activation_ == "identity"
    assert not hasattr(est, "predict_proba") and not hasattr(est, "predict_log_proba")
    binary = clone(est).fit(X, y == "digit 3")
    assert binary.n_outputs_ == 2  # one-hot, the class of the largest output
    assert binary.score(X, y == "digit 3") > 0.9


def test_warm_start_split_run_is_bit_identical(digits):
    X, y = digits
    base = MLPClassifier((8,), learning_rate=0.5, max_iter=30, random_state=0)
    one = clone(base).fit(X, y)
    split = clone(base).set_params(max_iter=12, warm_start=True).fit(X, y)
    split.set_params(max_iter=18).fit(X, y)
    for name in TRACES:
        assert_array_equal(getattr(one, name), getattr(split, name), err_msg=name)
    assert_array_equal(one.predict_proba(X), split.predict_proba(X))
    with pytest.raises(ValueError, match="classes"):
        split.fit(X[y != "digit 0"], y[y != "digit 0"])


def test_reproducible_pickle_and_clone(digits):
    X, y = digits
    est = MLPClassifier((10,), learning_rate=0.3, max_iter=30, random_state=7)
    a, b = clone(est).fit(X, y), clone(est).fit(X, y)
    for name in TRACES:
        assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    c = pickle.loads(pickle.dumps(a))
    assert_array_equal(c.predict_proba(X), a.predict_proba(X))
    assert clone(a).get_params() == a.get_params()


def test_bad_labels_are_refused(digits):
    X, y = digits
    est = MLPClassifier((4,), max_iter=2)
    with pytest.raises(ValueError, match="1 class"):
        est.fit(X, np.full(len(y), "only"))
    with pytest.raises(ValueError, match="Unknown label type"):
        est.fit(X, np.linspace(0, 1, len(y)))
    est.fit(X, y)
    with pytest.raises(ValueError, match="not seen in fit"):
        est.hessian_operator(X[:2], ["digit 1", "digit 11"])


# --------------------------------------------------------------------------
# Divergence is a result; converging runs never trigger it
# --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "activation, learning_rate", [("tanh", 1e7), ("relu", 30.0), ("identity", 30.0)]
)
def test_divergence_is_a_result(digits, activation, learning_rate):
    X, y = digits
    est = MLPClassifier(
        (8,),
        activation=activation,
        learning_rate=learning_rate,
        max_iter=100,
        record_every=7,
        compute_lyapunov=True,
        random_state=0,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est.fit(X, y)
    assert [w.category for w in caught] == [DivergenceWarning]
    assert est.diverged_ and est.n_iter_ < 100
    assert est.steps_[-1] == est.n_iter_ and len(est.loss_curve_) == len(est.steps_)
    for name in ("sharpness_trace_", "loss_curve_", "tangent_log_growth_"):
        assert np.all(np.isfinite(getattr(est, name))), name
    assert np.all(np.isfinite(est.predict_proba(X)))


@pytest.mark.parametrize("activation", ["tanh", "relu", "identity"])
def test_converging_runs_never_trigger_divergence(digits, activation):
    """Long runs whose logits keep growing (the margins) and a large init."""
    X, y = digits
    for params in [
        {"learning_rate": 2.0, "max_iter": 3000},
        {"learning_rate": 0.1, "max_iter": 300, "init_scale": 5.0},
    ]:
        est = MLPClassifier(
            (8,), activation=activation, record_every=100, random_state=0, **params
        )
        with warnings.catch_warnings():
            warnings.simplefilter("error", DivergenceWarning)
            est.fit(X, y)
        assert not est.diverged_ and est.n_iter_ == params["max_iter"]
        assert est.loss_curve_[-1] < est.loss_curve_[0]


# --------------------------------------------------------------------------
# The learning-rate scan labels classifier runs (string labels)
# --------------------------------------------------------------------------
def test_scan_labels_classifier_runs():
    X, Y = load_digits_onehot(n_samples=200, random_state=0)
    y = np.array([f"digit {k}" for k in Y.argmax(axis=1)])
    scan = LearningRateScan(
        MLPClassifier(
            (16, 4, 16),
            init_scale=0.5,
            max_iter=200,
            sharpness_tol=1e-3,
            random_state=0,
        ),
        learning_rates=[0.05, 0.3, 1e7],
        progress=False,
    ).fit(X, y)
    assert list(scan.labels_) == ["converge", "eos", "diverge"]
    assert 0.875 < scan.results_["edge_ratio_mean"][1] < 1.25


# --------------------------------------------------------------------------
# Real data: cross-entropy's edge of stability on digits
# --------------------------------------------------------------------------
def _margins(est, X, y):
    """``f_y - max_{k != y} f_k`` of every sample, from the log-probabilities."""
    logp = est.predict_log_proba(X)
    idx = np.searchsorted(est.classes_, y)
    own = logp[np.arange(len(y)), idx]
    logp[np.arange(len(y)), idx] = -np.inf
    return own - logp.max(axis=1)


def test_digits_cross_entropy_sharpening_edge_and_late_decrease():
    """Sharpening to 2/eta, a period-2 orbit straddling the edge, then a steady
    decrease as the margins grow (as Cohen et al. 2021 saw with cross-entropy).

    A narrow (16, 4, 16) tanh network: its bottleneck makes it sharpen well past
    2 / eta before the 200 digits are fitted (a (32,) network fits them before
    its sharpness gets there).
    """
    X, Y = load_digits_onehot(n_samples=200, random_state=0)
    y = Y.argmax(axis=1)
    eta = 0.3
    est = MLPClassifier(
        (16, 4, 16),
        learning_rate=eta,
        init_scale=0.5,
        max_iter=150,
        sharpness_tol=1e-3,
        warm_start=True,
        random_state=0,
    ).fit(X, y)
    early = _margins(est, X, y)
    est.set_params(max_iter=850).fit(X, y)  # bit-identical to one long run
    late = _margins(est, X, y)
    c, steps, loss = eta * est.sharpness_trace_, est.steps_, est.loss_curve_
    assert not est.diverged_ and est.n_iter_ == 1000 and steps[-1] == 1000
    # Progressive sharpening from c0 ~ 0.16 to the edge by step ~115.
    assert c[0] < 0.2
    assert c[:50].mean() < c[50:100].mean() < c[100:150].mean()
    assert 100 < np.argmax(c > 1.9) < 130
    # At the edge (steps 110-230) eta * lambda_H averages about 2: it overshoots
    # to ~2.6, then a period-2 orbit straddles 2 while the loss goes up and down.
    assert 1.9 < c[(steps >= 110) & (steps < 230)].mean() < 2.4
    orbit = c[162:211]
    assert np.all(np.diff(orbit)[:-1] * np.diff(orbit)[1:] < 0)
    assert np.all(orbit[::2] > 2.0) and np.all(orbit[1::2] < 2.0)
    assert np.sum(np.diff(loss[150:211]) > 0) > 0
    # Late decrease: once every digit is classified (step 150) the margins grow
    # and lambda_H falls steadily, to below a quarter of 2 / eta.
    assert early.min() > 0 and np.median(late) > 2 * np.median(early)
    assert np.all(np.diff(c[250::50]) < 0)
    assert c[-1] < 0.5
    assert np.all(np.diff(loss[230:]) < 0)


def test_user_guide_examples_run(capsys):
    """The code of the user guide's classification page runs and prints what
    the page says."""
    text = (ROOT / "docs" / "user_guide" / "classification.rst").read_text()
    blocks = re.findall(r"\.\. code-block:: python\n\n((?:   .*\n|\n)+)", text)
    assert len(blocks) == 2
    namespace = {}
    for block in blocks:
        exec(compile(textwrap.dedent(block), "classification.rst", "exec"), namespace)
    out = capsys.readouterr().out
    assert "0.16 at step 0, first above 2 at step 118, 2.12 on average" in out
    assert "0.33 at step 1000" in out and "training accuracy 1.00" in out
    assert "['converge' 'eos' 'diverge']" in out
