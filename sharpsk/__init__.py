"""sharpsk: scikit-learn style estimators for sharpness dynamics.

The top eigenvalue of the training-loss Hessian (the *sharpness*) while a
network trains with gradient descent: early sharpness reduction, progressive
sharpening, the edge of stability and the period-doubling route to chaos
(Kalra, He & Barkeshli, ICLR 2025).

``sharpsk.hessian`` holds the Hessian-spectrum functions (top-k eigenpairs,
trace, spectral density); ``sharpsk.plotting`` is a separate public module
(it imports matplotlib, so ``import sharpsk`` does not load it).
"""

from . import hessian  # noqa: F401  (the module, documented as sharpsk.hessian)
from ._autograd import AutogradRegressor
from ._base import DivergenceWarning
from ._dynamics import (
    classify_run,
    detect_period,
    lyapunov_from_growth,
    series_lyapunov,
    tangent_lyapunov,
    uv_critical_learning_rate,
    uv_lyapunov,
)
from ._engine import LR_UNITS, LinearWarmup
from ._mlp import MLPClassifier, MLPRegressor
from ._parameterization import ParameterizationTransformer, parameterization_table
from ._scan import LearningRateScan
from ._torch import TorchRegressor  # imports torch only when it fits
from ._uv import UVRegressor
from ._version import __version__

__all__ = [
    "AutogradRegressor",
    "DivergenceWarning",
    "LR_UNITS",
    "LearningRateScan",
    "LinearWarmup",
    "classify_run",
    "detect_period",
    "lyapunov_from_growth",
    "series_lyapunov",
    "tangent_lyapunov",
    "uv_critical_learning_rate",
    "uv_lyapunov",
    "MLPClassifier",
    "MLPRegressor",
    "TorchRegressor",
    "UVRegressor",
    "ParameterizationTransformer",
    "parameterization_table",
    "__version__",
]
