"""scikit-learn's own estimator checks over every public estimator."""

import autograd.numpy as anp
import numpy as np
import pytest
from sklearn.utils.estimator_checks import (
    check_param_validation,
    parametrize_with_checks,
)

from sharpsk import (
    AutogradRegressor,
    LearningRateScan,
    MLPClassifier,
    MLPRegressor,
    ParameterizationTransformer,
    UVRegressor,
)


def _tanh_loss(params, X, y):
    """A one-hidden-layer tanh network with squared error, any output shape."""
    out = anp.dot(anp.tanh(anp.dot(X, params["w"])), params["v"])
    out = out[:, 0] if y.ndim == 1 else out
    return 0.5 * anp.mean(anp.sum(anp.reshape(out - y, (X.shape[0], -1)) ** 2, 1))


def _tanh_forward(params, X):
    out = np.tanh(X @ params["w"]) @ params["v"]
    return out[:, 0] if out.shape[1] == 1 else out


def _tanh_init(n_features, n_outputs, rng):
    return {
        "w": rng.normal(size=(n_features, 6)) / np.sqrt(n_features),
        "v": rng.normal(size=(6, n_outputs)) / np.sqrt(6),
    }


# Small, fast settings: the checks fit each estimator dozens of times.
ESTIMATORS = [
    UVRegressor(width=8, max_iter=100, learning_rate=0.1, random_state=0),
    MLPRegressor(
        (8,),
        learning_rate=1.0,
        lr_units="initial_sharpness",
        max_iter=60,
        record_every=30,
        random_state=0,
    ),
    MLPClassifier(
        (8,),
        learning_rate=1.0,
        lr_units="initial_sharpness",
        max_iter=60,
        record_every=30,
        random_state=0,
    ),
    MLPClassifier(
        (8,),
        loss="squared_error",
        learning_rate=1.0,
        lr_units="initial_sharpness",
        max_iter=60,
        record_every=30,
        random_state=0,
    ),
    AutogradRegressor(
        _tanh_loss,
        _tanh_init,
        forward=_tanh_forward,
        learning_rate=1.0,
        lr_units="initial_sharpness",
        max_iter=60,
        record_every=30,
        random_state=0,
    ),
    ParameterizationTransformer(),
    ParameterizationTransformer("sp"),
    ParameterizationTransformer("mup", base_width=16),
    LearningRateScan(
        UVRegressor(width=4, max_iter=30, random_state=0),
        learning_rates=[0.01, 0.05],
        progress=False,
    ),
]

# Every expected failure needs a reason; aim for none.
EXPECTED_FAILED_CHECKS = {}


@pytest.mark.filterwarnings("ignore::sharpsk.DivergenceWarning")
@parametrize_with_checks(
    ESTIMATORS,
    expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS.get(
        type(est).__name__, {}
    ),
)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: type(e).__name__)
def test_param_validation(estimator):
    check_param_validation(type(estimator).__name__, estimator)
