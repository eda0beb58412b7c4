"""scikit-learn's own estimator checks over every public estimator."""

import pytest
from sklearn.utils.estimator_checks import (
    check_param_validation,
    parametrize_with_checks,
)

from sharpsk import (
    LearningRateScan,
    MLPClassifier,
    MLPRegressor,
    ParameterizationTransformer,
    UVRegressor,
)

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
