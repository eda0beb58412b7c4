"""TorchRegressor: a PyTorch module through the training engine."""

import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from numpy.testing import assert_allclose, assert_array_equal  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.utils.estimator_checks import (  # noqa: E402
    check_param_validation,
    parametrize_with_checks,
)
from torch import nn  # noqa: E402

from sharpsk import (  # noqa: E402
    AutogradRegressor,
    DivergenceWarning,
    LearningRateScan,
    MLPRegressor,
    TorchRegressor,
)
from sharpsk._torch import TorchModel, initialize_module  # noqa: E402
from sharpsk.datasets import load_digits_onehot  # noqa: E402


@pytest.fixture(scope="module")
def digits():
    return load_digits_onehot(n_samples=80, random_state=0)


class InOutMLP(nn.Module):
    """MLPRegressor's tanh network with its (fan_in, fan_out) weight layout,
    so that the flat parameters come in the same order and orientation."""

    def __init__(self, coefs, intercepts):
        super().__init__()
        self.W0, self.W1 = (nn.Parameter(torch.tensor(w)) for w in coefs)
        self.b0, self.b1 = (nn.Parameter(torch.tensor(b)) for b in intercepts)
        # named_parameters follows the order of assignment: W0, W1, b0, b1
        self._parameters = {k: self._parameters[k] for k in ("W0", "b0", "W1", "b1")}

    def forward(self, X):
        return torch.tanh(X @ self.W0 + self.b0) @ self.W1 + self.b1


def autograd_mlp_loss(params, X, Y):
    import autograd.numpy as anp

    W0, b0, W1, b1 = params
    out = anp.dot(anp.tanh(anp.dot(X, W0) + b0), W1) + b1
    return 0.5 * anp.sum((out - Y) ** 2) / X.shape[0]


@pytest.mark.parametrize("optimizer", ["gd", "momentum", "adam"])
def test_a_torch_mlp_reproduces_mlp_regressor(digits, optimizer):
    X, Y = digits
    kw = dict(
        learning_rate=0.05 if optimizer == "adam" else 1.0,
        lr_units="absolute" if optimizer == "adam" else "initial_sharpness",
        max_iter=30,
        record_every=3,
        optimizer=optimizer,
        sharpness_tol=1e-10,
        compute_ntk=optimizer == "gd",
        compute_lyapunov=True,
        random_state=0,
    )
    start = MLPRegressor((16,), activation="tanh", max_iter=0, random_state=0)
    start.fit(X, Y)
    # nn.Linear's (fan_out, fan_in) layout: another order of the parameters
    net = nn.Sequential(nn.Linear(64, 16), nn.Tanh(), nn.Linear(16, 10)).double()
    with torch.no_grad():
        for layer, W, b in zip(net[::2], start.coefs_, start.intercepts_, strict=True):
            layer.weight.copy_(torch.from_numpy(W.T))
            layer.bias.copy_(torch.from_numpy(b))
    ours = TorchRegressor(net, reset_parameters=False, **kw).fit(X, Y)
    ref = MLPRegressor((16,), activation="tanh", **kw).fit(X, Y)
    assert_array_equal(ours.steps_, ref.steps_)
    assert_allclose(ours.loss_curve_, ref.loss_curve_, rtol=1e-10)
    assert_allclose(ours.sharpness_trace_, ref.sharpness_trace_, rtol=1e-8)
    assert_allclose(ours.stability_threshold_, ref.stability_threshold_, rtol=1e-10)
    if optimizer == "gd":
        assert_allclose(ours.ntk_trace_, ref.ntk_trace_, rtol=1e-8)
    else:
        assert ours.ntk_trace_ is None
    if optimizer == "adam":
        assert_allclose(
            ours.preconditioned_sharpness_trace_,
            ref.preconditioned_sharpness_trace_,
            rtol=1e-7,
        )
    assert_allclose(ours.predict(X), ref.predict(X), rtol=1e-9, atol=1e-12)

    # The Lyapunov tangent starts from the same stream as an AutogradRegressor
    # whose init takes one draw (TorchRegressor's torch seed) and parameters
    # in the same order: the same growth.
    def init(n_features, n_outputs, rng):
        rng.randint(np.iinfo(np.int32).max)
        W0, W1 = start.coefs_
        b0, b1 = start.intercepts_
        return [W0, b0, W1, b1]

    module = InOutMLP(start.coefs_, start.intercepts_)
    assert [n for n, _ in module.named_parameters()] == ["W0", "b0", "W1", "b1"]
    del kw["compute_ntk"]
    ours = TorchRegressor(module, **kw).fit(X, Y)  # no reset_parameters: kept
    twin = AutogradRegressor(autograd_mlp_loss, init, **kw).fit(X, Y)
    assert_allclose(ours.loss_curve_, ref.loss_curve_, rtol=1e-10)
    assert_allclose(ours.tangent_log_growth_, twin.tangent_log_growth_, rtol=1e-6)
    assert_allclose(ours.lyapunov_exponent_, twin.lyapunov_exponent_, rtol=1e-6)


def tiny_conv_net():
    return nn.Sequential(
        nn.Unflatten(1, (1, 4, 4)),
        nn.Conv2d(1, 2, 3),
        nn.Tanh(),
        nn.Flatten(),
        nn.Linear(8, 2),
    )


@pytest.fixture(scope="module")
def conv_problem():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(6, 16))
    Y = rng.normal(size=(6, 2))
    module, names = initialize_module(
        tiny_conv_net(), X, np.random.RandomState(0), True
    )
    return TorchModel(module, names, "squared_error", X, Y), X, Y


def test_gradient_hvp_and_gauss_newton_against_finite_differences(conv_problem):
    model, X, Y = conv_problem
    theta = model.theta()
    n, eps = theta.size, 1e-5
    assert n == 2 * 9 + 2 + 2 * 8 + 2
    point = model.point(theta)
    eye = np.eye(n)
    steps = [(model.point(theta + eps * e), model.point(theta - eps * e)) for e in eye]
    fd_grad = np.array([(p.loss - m.loss) / (2 * eps) for p, m in steps])
    assert_allclose(point.gradient(), fd_grad, rtol=1e-7, atol=1e-10)
    fd_hess = np.array([(p.gradient() - m.gradient()) / (2 * eps) for p, m in steps])
    hess = np.array([point.hvp(e) for e in eye])
    assert_allclose(hess, hess.T, atol=1e-13)
    assert_allclose(hess, fd_hess, rtol=1e-6, atol=1e-8)

    # Gauss-Newton: J^T J / n with J the finite-difference output Jacobian
    def outputs(t):
        module = model.module
        model.set_theta(t)
        with torch.no_grad():
            out = module(model.X).numpy().ravel()
        return out

    jac = np.array([(outputs(theta + eps * e) - outputs(theta - eps * e)) for e in eye])
    jac = jac.T / (2 * eps)
    model.set_theta(theta)
    gn = np.array([point.gauss_newton(e) for e in eye])
    assert_allclose(gn, jac.T @ jac / X.shape[0], rtol=1e-6, atol=1e-9)


def _half_squared_error(out, y):
    """The squared error as a callable loss."""
    return 0.5 * torch.sum((out - y) ** 2) / out.shape[0]


def test_hessian_operator_and_a_callable_loss(conv_problem):
    _, X, Y = conv_problem
    kw = dict(learning_rate=0.5, max_iter=10, sharpness_tol=1e-10, compute_ntk=True)
    est = TorchRegressor(tiny_conv_net(), random_state=0, **kw).fit(X, Y)
    H = est.hessian_operator(X, Y)
    dense = H @ np.eye(H.shape[0])
    top = np.linalg.eigvalsh(dense)[-1]
    assert_allclose(top, est.sharpness_trace_[-1], rtol=1e-8)
    # the same loss written as a callable: the same run (the divergence
    # test watches the root of twice the loss instead of max |f - y|)
    other = TorchRegressor(
        tiny_conv_net(), loss=_half_squared_error, random_state=0, **kw
    ).fit(X, Y)
    assert_allclose(other.loss_curve_, est.loss_curve_, rtol=1e-12)
    assert_allclose(other.sharpness_trace_, est.sharpness_trace_, rtol=1e-9)
    assert_allclose(other.ntk_trace_, est.ntk_trace_, rtol=1e-9)
    assert_allclose(other.predict(X), est.predict(X), rtol=1e-12)


def test_reproducible_and_the_user_module_untouched(digits):
    X, Y = digits
    net = nn.Sequential(nn.Linear(64, 8), nn.Tanh(), nn.Linear(8, 10))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    torch_state = torch.random.get_rng_state()
    threads = torch.get_num_threads()
    est = TorchRegressor(net, learning_rate=1.0, max_iter=5, random_state=3)
    one, two = clone(est).fit(X, Y), clone(est).fit(X, Y)
    other = clone(est).set_params(random_state=4).fit(X, Y)
    assert_array_equal(one.sharpness_trace_, two.sharpness_trace_)
    assert_array_equal(one.loss_curve_, two.loss_curve_)
    assert one.loss_curve_[0] != other.loss_curve_[0]
    # the user's module and torch's global state are as they were
    assert est.module is net
    for k, v in net.state_dict().items():
        assert v.dtype == torch.float32
        assert torch.equal(v, before[k])
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    assert torch.get_num_threads() == threads
    assert one.module_ is not net and one.module_[0].weight.dtype == torch.float64
    assert_allclose(one.predict(X), one.module_(torch.tensor(X)).detach().numpy())


def test_warm_start_is_bit_identical_and_pickles(digits):
    X, Y = digits
    base = TorchRegressor(
        nn.Sequential(nn.Linear(64, 8), nn.Tanh(), nn.Linear(8, 10)),
        learning_rate=2.0,
        lr_units="initial_sharpness",
        optimizer="momentum",
        max_iter=20,
        random_state=0,
    )
    for record_every in (3, 1):
        long = clone(base).set_params(record_every=record_every).fit(X, Y)
        split = clone(long).set_params(max_iter=8, warm_start=True).fit(X, Y)
        split.set_params(max_iter=12).fit(X, Y)
        # the run does not depend on whether step 8 was measured (record_every=3)
        assert_array_equal(split.predict(X), long.predict(X))
        assert split.n_iter_ == long.n_iter_ == 20
    for name in ("steps_", "loss_curve_", "sharpness_trace_"):
        assert_array_equal(getattr(split, name), getattr(long, name))
    again = pickle.loads(pickle.dumps(split))
    assert_array_equal(again.predict(X), split.predict(X))
    H, H2 = split.hessian_operator(X, Y), again.hessian_operator(X, Y)
    v = np.random.default_rng(0).normal(size=H.shape[0])
    assert_array_equal(H @ v, H2 @ v)


def test_divergence_is_a_result(digits):
    X, Y = digits
    net = nn.Sequential(nn.Linear(64, 8), nn.Tanh(), nn.Linear(8, 10))
    est = TorchRegressor(net, learning_rate=1e3, max_iter=50, random_state=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est.fit(X, Y)
    assert [w.category for w in caught] == [DivergenceWarning]
    assert est.diverged_ and est.n_iter_ < 50
    assert np.all(np.isfinite(est.loss_curve_))


def test_frozen_parameters_and_lazy_layers():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(20, 3)), rng.normal(size=20)
    net = nn.Sequential(nn.LazyLinear(4), nn.Tanh(), nn.Linear(4, 1))
    net[2].bias.requires_grad_(False)
    est = TorchRegressor(net, learning_rate=0.3, max_iter=5, random_state=0)
    est.fit(X, y)
    assert est.hessian_operator(X, y).shape == (3 * 4 + 4 + 4,) * 2
    start = TorchRegressor(net, max_iter=0, random_state=0).fit(X, y)
    assert torch.equal(est.module_[2].bias, start.module_[2].bias)
    assert not torch.equal(est.module_[2].weight, start.module_[2].weight)
    assert est.predict(X).shape == (20,)


def test_bad_modules_and_losses_are_named():
    X, y = np.ones((4, 3)), np.ones(4)
    with pytest.raises(ValueError, match=r"module outputs shape \(1, 2\)"):
        TorchRegressor(nn.Linear(3, 2)).fit(X, y)
    with pytest.raises(ValueError, match="loss must return a scalar tensor"):
        TorchRegressor(nn.Linear(3, 2), loss=lambda out, y: out).fit(X, y)
    with pytest.raises(ValueError, match="no trainable parameters"):
        TorchRegressor(nn.Linear(3, 1).requires_grad_(False)).fit(X, y)


def test_import_sharpsk_does_not_import_torch():
    code = "import sys, sharpsk; assert 'torch' not in sys.modules, 'torch loaded'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_scan_labels_a_torch_model(digits):
    X, Y = digits
    net = nn.Sequential(nn.Linear(64, 16), nn.Tanh(), nn.Linear(16, 10))
    scan = LearningRateScan(
        TorchRegressor(net, max_iter=150, random_state=0),
        learning_rates=[0.5, 3.0, 50.0],
        lr_units="initial_sharpness",
        n_jobs=2,
        progress=False,
    ).fit(X, Y)
    assert list(scan.labels_) == ["converge", "eos", "diverge"]


# A lazy first layer takes any number of features, as the checks require.
CHECKED = TorchRegressor(
    nn.Sequential(nn.LazyLinear(6, bias=False), nn.Tanh(), nn.Linear(6, 1, bias=False)),
    learning_rate=1.0,
    lr_units="initial_sharpness",
    max_iter=60,
    record_every=30,
    random_state=0,
)

EXPECTED_FAILED_CHECKS = {
    "check_regressor_multioutput": "the module fixes the number of outputs",
    "check_estimators_overwrite_params": (
        "joblib.hash of a torch module depends on its tensors' memory addresses "
        "(torch pickles a storage with its address as key), so the check's deep "
        "copy hashes differently; test_reproducible_and_the_user_module_untouched "
        "compares the module's state instead"
    ),
}


@pytest.mark.filterwarnings("ignore::sharpsk.DivergenceWarning")
@parametrize_with_checks(
    [CHECKED], expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS
)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


def test_param_validation():
    check_param_validation("TorchRegressor", CHECKED)


def test_torch_runs_are_cached(digits, tmp_path):
    # Regression (issue 11): joblib.hash of a torch module depends on its
    # tensors' addresses, so a rerun found no run in the cache.
    X, Y = digits[0][:40], digits[1][:40]

    def scan(net):
        return LearningRateScan(
            TorchRegressor(net, max_iter=20, random_state=0),
            learning_rates=[0.5, 1.0],
            lr_units="initial_sharpness",
            memory=tmp_path,
            progress=False,
        ).fit(X, Y)

    def net(width=8):
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(64, width), nn.Tanh(), nn.Linear(width, 10))

    first = scan(net())
    again = scan(net())  # an equal module, other tensors
    assert (first.n_cached_, again.n_cached_) == (0, 2)
    assert_array_equal(first.results_["final_loss"], again.results_["final_loss"])
    assert scan(net(width=9)).n_cached_ == 0
