"""
Your own model at the edge of stability
=======================================

Any model whose loss is written with ``autograd.numpy`` trains through
sharpsk's engine as an :class:`~sharpsk.AutogradRegressor`: the same
sharpness traces, optimizers, labels and scans as the built-in networks
(:doc:`../user_guide/own_model`).

Here the model is a small network the built-in estimators do not offer: a
tanh layer with a *residual* (skip) connection, ``h = x W_in``, ``h' = h +
tanh(h W)``, ``f = h' W_out``, on 200 digits with squared error.  Full-batch
gradient descent shows the usual story: progressive sharpening up to
``2 / eta``, then the edge of stability.  A learning-rate scan labels it.
"""

import autograd.numpy as anp
import matplotlib.pyplot as plt
import numpy as np

from sharpsk import AutogradRegressor, LearningRateScan
from sharpsk.datasets import load_digits_onehot
from sharpsk.plotting import plot_phase_diagram, plot_sharpness

X, Y = load_digits_onehot(n_samples=200, random_state=0)
WIDTH = 16


def loss(params, X, Y):
    """Mean squared error of a residual tanh network."""
    h = anp.dot(X, params["in"])
    h = h + anp.tanh(anp.dot(h, params["hidden"]))
    out = anp.dot(h, params["out"])
    return 0.5 * anp.sum((out - Y) ** 2) / X.shape[0]


def init(n_features, n_outputs, rng):
    """Standard-parameterization weights, the output layer scaled down."""
    return {
        "in": rng.normal(size=(n_features, WIDTH)) / np.sqrt(n_features),
        "hidden": rng.normal(size=(WIDTH, WIDTH)) / np.sqrt(WIDTH),
        "out": 0.25 * rng.normal(size=(WIDTH, n_outputs)) / np.sqrt(WIDTH),
    }


def forward(params, X):
    h = X @ params["in"]
    return (h + np.tanh(h @ params["hidden"])) @ params["out"]


# %%
# Gradient descent at ``eta = 0.2``: the sharpness starts at ``0.65`` of
# ``2 / eta = 10``, rises past it, overshoots by a quarter, is thrown back
# and then hovers just above the edge while the loss keeps falling.

net = AutogradRegressor(
    loss,
    init,
    forward=forward,
    learning_rate=0.2,
    max_iter=800,
    record_every=5,
    random_state=0,
).fit(X, Y)
ratio = net.sharpness_trace_ / net.stability_threshold_
print(
    f"{net.initial_sharpness_:.3f} -> {net.sharpness_trace_[-1]:.3f} "
    f"(2 / eta = {net.stability_threshold_:.1f}); edge ratio over the last "
    f"100 steps {ratio[-20:].mean():.3f}; loss {net.loss_curve_[0]:.3f} -> "
    f"{net.loss_curve_[-1]:.4f}; R^2 {net.score(X, Y):.3f}"
)

fig, ax = plt.subplots(figsize=(8, 4), layout="constrained")
plot_sharpness(net, ax=ax, marker=".", ms=3)
ax.set_title("a residual tanh network written with autograd")
plt.show()

# %%
# A scan in units of the initial sharpness, ``c = eta lambda_H0``, 300 steps
# each: small rates converge before the sharpness reaches their edge; from
# ``c`` of about 1.3 the runs sharpen to it and stay (``eos``), also past
# ``c = 2``, where the start is unstable and the run first catapults to a
# flatter region; from ``c`` of about 6 they diverge.

scan = LearningRateScan(
    net.set_params(max_iter=300),
    learning_rates=np.geomspace(0.5, 16, 8),
    lr_units="initial_sharpness",
    n_jobs=2,
    progress=False,
).fit(X, Y)
for c, label in zip(scan.results_["c"], scan.labels_, strict=True):
    print(f"c = {c:6.2f}: {label}")

fig, ax = plt.subplots(figsize=(8, 1.8), layout="constrained")
plot_phase_diagram(scan, lr_units="initial_sharpness", ax=ax)
plt.show()
