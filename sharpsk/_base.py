"""What the gradient-descent regressors share: parameters and divergence."""

import warnings
from numbers import Integral, Real

from sklearn.utils._param_validation import Interval

from ._parameterization import _PARAMETERIZATION_CONSTRAINT

__all__ = ["DivergenceWarning"]


class DivergenceWarning(UserWarning):
    """Gradient descent diverged at the requested learning rate.

    Divergence is a result, not an error: the estimator sets ``diverged_ = True``,
    keeps the finite prefix of every trace and emits this warning once per fit.
    Silence it with ``warnings.simplefilter("ignore", DivergenceWarning)``.
    """


# Parameters every gradient-descent regressor of sharpsk has, with one meaning.
GD_PARAMETER_CONSTRAINTS = {
    "learning_rate": [Interval(Real, 0, None, closed="neither")],
    "max_iter": [Interval(Integral, 0, None, closed="left")],
    "parameterization": _PARAMETERIZATION_CONSTRAINT,
    "init_scale": [Interval(Real, 0, None, closed="neither")],
    "random_state": ["random_state"],
    "verbose": ["verbose"],
}


def warn_divergence(estimator, n_iter):
    """The single warning a fit emits when its run diverged."""
    eta = getattr(estimator, "learning_rate_", estimator.learning_rate)
    warnings.warn(
        f"{type(estimator).__name__} diverged after {n_iter} steps at learning "
        f"rate {eta:g}; diverged_ is True and the traces hold the finite prefix "
        "of the run.",
        DivergenceWarning,
        stacklevel=4,
    )
