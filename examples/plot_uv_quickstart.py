"""
UV model quick start
====================

Fit the single-example UV model at learning rates across the critical learning
rate ``eta_c`` and print what the sharpness does at the end of training: a
stable minimum below ``eta_c``, then the period-2 edge-of-stability orbit,
period 4, chaos, a period-3 window and finally divergence.
"""

import warnings

import matplotlib.pyplot as plt
import numpy as np

from sharpsk import DivergenceWarning, UVRegressor

X, y = np.ones((1, 4)) / 2.0, np.array([1.0])
base = UVRegressor(width=512, max_iter=0, init_scale=0.1, random_state=0).fit(X, y)
eta_c = base.critical_learning_rate_

print(f"eta_c = {eta_c:.4f}, lambda_H0 = {base.initial_sharpness_:.4f}")
print(f"{'eta/eta_c':>9}  {'last 6 values of eta * lambda_H':<44} diverged")
tails = {}
for ratio in (0.5, 0.95, 1.05, 1.25, 1.4, 1.7, 2.0):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DivergenceWarning)  # divergence is a result
        uv = base.set_params(learning_rate=ratio * eta_c, max_iter=4000).fit(X, y)
    tail = np.array2string(uv.learning_rate * uv.sharpness_trace_[-6:], precision=3)
    print(f"{ratio:>9.2f}  {tail:<44} {uv.diverged_}")
    if not uv.diverged_:
        tails[ratio] = uv.learning_rate * uv.sharpness_trace_[-64:]

# %%
# The same runs drawn: the last 64 values of :math:`\eta \lambda^{\mathrm{H}}`
# of each run that stayed bounded.  One value (a minimum, below the stability
# edge 2), two on either side of 2 (the edge of stability), four, a chaotic
# band, three; the run at :math:`2 \eta_c` diverged and has none.

fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
for ratio, tail in tails.items():
    ax.plot(np.full(tail.shape, ratio), tail, "o", ms=6, color="C0", alpha=0.6)
ax.axhline(2, color="C3", ls="--", lw=1.5, label="stability edge")
ax.axvline(1, color="0.5", ls=":", lw=1.5, label=r"$\eta_c$")
ax.set_xlim(0.35, 2.1)
ax.set_xlabel(r"$\eta / \eta_c$")
ax.set_ylabel(r"$\eta\,\lambda^{\mathrm{H}}$, last 64 steps")
ax.set_title("Sharpness at the end of training")
ax.legend(loc="upper left")
plt.show()
