"""
UV model quick start
====================

Fit the single-example UV model at learning rates across the critical learning
rate ``eta_c`` and print what the sharpness does at the end of training: a
stable minimum below ``eta_c``, then the period-2 edge-of-stability orbit,
period 4, chaos, a period-3 window and finally divergence.
"""

import warnings

import numpy as np

from sharpsk import DivergenceWarning, UVRegressor

X, y = np.ones((1, 4)) / 2.0, np.array([1.0])
base = UVRegressor(width=512, max_iter=0, init_scale=0.1, random_state=0).fit(X, y)
eta_c = base.critical_learning_rate_

print(f"eta_c = {eta_c:.4f}, lambda_H0 = {base.initial_sharpness_:.4f}")
print(f"{'eta/eta_c':>9}  {'last 6 values of eta * lambda_H':<44} diverged")
for ratio in (0.5, 0.95, 1.05, 1.25, 1.4, 1.7, 2.0):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DivergenceWarning)  # divergence is a result
        uv = base.set_params(learning_rate=ratio * eta_c, max_iter=4000).fit(X, y)
    tail = np.array2string(uv.learning_rate * uv.sharpness_trace_[-6:], precision=3)
    print(f"{ratio:>9.2f}  {tail:<44} {uv.diverged_}")
