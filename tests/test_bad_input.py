"""The bad-input table: each case, the exception and the words of its message.

One line per case a new user (or an unlucky one) hits; every message names
its culprit.  Divergence is not here: it is a result (see test_engine.py).
"""

import numpy as np
import pandas as pd
import pytest
from sklearn.utils._param_validation import InvalidParameterError

from sharpsk import LearningRateScan, LinearWarmup, MLPRegressor, UVRegressor
from sharpsk.plotting import plot_bifurcation, plot_phase_diagram, plot_sharpness

X3, Y3 = np.ones((3, 2)), np.ones(3)
X1, Y1 = np.ones((1, 2)), np.ones(1)


def _uv(**kw):
    return UVRegressor(4, max_iter=2, **kw)


def _scan(**kw):
    return LearningRateScan(_uv(), progress=False, **kw)


CASES = [
    # estimators: parameters
    (
        "uv width 0",
        lambda: _uv().set_params(width=0).fit(X3, Y3),
        InvalidParameterError,
        "width",
    ),
    (
        "uv width True",
        lambda: UVRegressor(width=True).fit(X3, Y3),
        ValueError,
        "width must be a positive integer",
    ),
    (
        "uv learning_rate -1",
        lambda: _uv(learning_rate=-1.0).fit(X3, Y3),
        InvalidParameterError,
        "learning_rate",
    ),
    (
        "uv optimizer sgd",
        lambda: _uv(optimizer="sgd").fit(X3, Y3),
        InvalidParameterError,
        "optimizer",
    ),
    (
        "mlp momentum 1",
        lambda: MLPRegressor(momentum=1.0).fit(X3, Y3),
        InvalidParameterError,
        "momentum",
    ),
    (
        "mlp hidden 0",
        lambda: MLPRegressor((0,)).fit(X3, Y3),
        ValueError,
        "hidden_layer_sizes",
    ),
    (
        "uv width 1e13",
        lambda: UVRegressor(10**13).fit(X3, Y3),
        ValueError,
        "width=10000000000000",
    ),
    (
        "mlp huge hidden",
        lambda: MLPRegressor((10**7, 10**7)).fit(X3, Y3),
        ValueError,
        "hidden_layer_sizes=(10000000, 10000000)",
    ),
    (
        "uv function engine, 3 samples",
        lambda: _uv(engine="function").fit(X3, Y3),
        ValueError,
        "engine='function' needs a single training example",
    ),
    (
        "uv function engine, adam",
        lambda: _uv(engine="function", optimizer="adam").fit(X1, Y1),
        ValueError,
        "optimizer='adam'",
    ),
    (
        "uv critical units, 3 samples",
        lambda: _uv(lr_units="critical").fit(X3, Y3),
        ValueError,
        "lr_units='critical' needs a single training example",
    ),
    (
        "uv critical units, y = 0",
        lambda: _uv(lr_units="critical").fit(X1, np.zeros(1)),
        ValueError,
        "critical learning rate",
    ),
    (
        "schedule returns -1",
        lambda: _uv(learning_rate=lambda t: -1.0).fit(X3, Y3),
        ValueError,
        "learning_rate schedule returned -1.0",
    ),
    ("warm-up of peak 0", lambda: LinearWarmup(0.0, 3), ValueError, "peak"),
    # estimators: data
    (
        "string y",
        lambda: _uv().fit(X3, np.array(["a", "b", "c"])),
        ValueError,
        "y must be numeric",
    ),
    ("NaN in X", lambda: _uv().fit(np.full((3, 2), np.nan), Y3), ValueError, "NaN"),
    (
        "X and y lengths",
        lambda: _uv().fit(X3, np.ones(4)),
        ValueError,
        "inconsistent numbers of samples",
    ),
    (
        "warm start, other outputs",
        lambda: (
            MLPRegressor((2,), max_iter=1, warm_start=True)
            .fit(X3, np.ones((3, 2)))
            .fit(X3, Y3)
        ),
        ValueError,
        "outputs",
    ),
    (
        "predict, other features",
        lambda: _uv().fit(X3, Y3).predict(np.ones((2, 5))),
        ValueError,
        "features",
    ),
    # the scan
    (
        "negative learning rate",
        lambda: _scan(learning_rates=[0.1, -1.0]).fit(X3, Y3),
        ValueError,
        "learning_rates",
    ),
    (
        "learning rates as a set",
        lambda: _scan(learning_rates={0.1, 0.5}).fit(X3, Y3),
        ValueError,
        "got a set",
    ),
    (
        "param_name without values",
        lambda: _scan(param_name="width").fit(X3, Y3),
        ValueError,
        "param_values",
    ),
    (
        "param_name lr_units",
        lambda: _scan(param_name="lr_units", param_values=["critical"]).fit(X3, Y3),
        ValueError,
        "lr_units",
    ),
    (
        "unknown param_name",
        lambda: _scan(param_name="nope", param_values=[1]).fit(X3, Y3),
        ValueError,
        "param_name='nope'",
    ),
    (
        "edge_band reversed",
        lambda: _scan(edge_band=(1.5, 1.0)).fit(X3, Y3),
        ValueError,
        "edge_band",
    ),
    (
        "batched engine on 3 samples",
        lambda: _scan(engine="batched").fit(X3, Y3),
        ValueError,
        "engine='batched'",
    ),
    (
        "critical units on 3 samples",
        lambda: _scan(lr_units="critical").fit(X3, Y3),
        ValueError,
        "critical",
    ),
    (
        "critical units, rate 1e308",
        lambda: _scan(lr_units="critical", learning_rates=[1e308]).fit(X1 * 1e-3, Y1),
        ValueError,
        "floating-point range",
    ),
    (
        "zero initial sharpness",
        lambda: LearningRateScan(
            _uv(init_scale=1e-200), lr_units="initial_sharpness", progress=False
        ).fit(X1, np.zeros(1)),
        ValueError,
        "initial sharpness; got [0.0]",
    ),
    (
        "sklearn estimator",
        lambda: LearningRateScan(
            __import__("sklearn.neural_network").neural_network.MLPRegressor(),
            progress=False,
        ).fit(X3, Y3),
        TypeError,
        "does not follow the scan protocol",
    ),
    # plots
    (
        "plot_sharpness learning_rate 0",
        lambda: plot_sharpness(_uv().fit(X1, Y1), learning_rate=0),
        ValueError,
        "learning_rate must be a positive",
    ),
    ("plot_sharpness unfitted", lambda: plot_sharpness(_uv()), Exception, "not fitted"),
    (
        "plot_phase_diagram empty",
        lambda: plot_phase_diagram(pd.DataFrame({"learning_rate": [], "label": []})),
        ValueError,
        "no rows",
    ),
    (
        "plot_bifurcation lr_units c",
        lambda: plot_bifurcation(
            pd.DataFrame({"learning_rate": [0.1], "sharpness": [1.0]}), lr_units="c"
        ),
        ValueError,
        "lr_units must be one of",
    ),
]


@pytest.mark.parametrize(
    "case, call, error, words", CASES, ids=[case[0] for case in CASES]
)
def test_bad_input_table(case, call, error, words):
    with pytest.raises(error) as info:
        call()
    first_line = str(info.value).strip().splitlines()[0]
    assert words in first_line, first_line
