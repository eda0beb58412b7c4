"""
Optimizers at the edge of stability
===================================

Gradient descent on a quadratic is stable while ``eta lambda_H < 2``, and on
real networks the sharpness ``lambda_H`` rises to ``2 / eta`` and hovers
there.  Every optimizer has such a stability threshold of its own, and the
regressors report it as ``stability_threshold_``:

* heavy-ball **momentum** is stable up to ``lambda_H = (2 + 2 beta) / eta``,
  1.9 times gradient descent's edge at ``beta = 0.9``;
* **Adam** is stable while the *preconditioned* sharpness
  ``lambda_max(P^-1 H)`` stays below ``(2 + 2 beta_1) / ((1 - beta_1) eta)``,
  ``38 / eta`` at ``beta_1 = 0.9`` (recorded as
  ``preconditioned_sharpness_trace_``).

The user guide derives these thresholds (:doc:`../user_guide/optimizers`).
The same one-hidden-layer tanh MLP as in
:ref:`sphx_glr_auto_examples_plot_mlp_digits_eos.py`
(:class:`~sharpsk.MLPRegressor`, 200 digits, squared loss on one-hot targets,
``init_scale=0.25``, the sharpness measured every 5 steps) shows that each
optimizer trains at *its own* edge of stability.  Finally, ``warm_start``
continues a run with a new learning rate: the experiment of Cohen et al.
(2021) in which the sharpness follows the edge when it moves.

Every fit below takes about a second.
"""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from sharpsk import MLPRegressor
from sharpsk.datasets import load_digits_onehot
from sharpsk.plotting import plot_sharpness

# sphinx_gallery_thumbnail_number = 3

X, Y = load_digits_onehot(n_samples=200, random_state=0)


def fit_mlp(max_iter, **params):
    """Full-batch training of the (32,) tanh MLP, every trace every 5 steps."""
    params = {"init_scale": 0.25, "record_every": 5, "random_state": 0, **params}
    return MLPRegressor((32,), max_iter=max_iter, **params).fit(X, Y)


def edge_ratio(run):
    """The tracked sharpness over the run's stability threshold, per record."""
    tracked = run.preconditioned_sharpness_trace_
    if tracked is None:  # gradient descent and the momentum methods track lambda_H
        tracked = run.sharpness_trace_
    return tracked / run.stability_threshold_


# %%
# Heavy-ball momentum: the edge moves up to ``(2 + 2 beta) / eta``
# ----------------------------------------------------------------
# Heavy ball (sklearn's form ``v <- beta v - eta g``, ``theta <- theta + v``)
# with ``beta = 0.9`` against plain gradient descent, both at ``eta = 0.7``
# from the same initialization.  Gradient descent sharpens to ``2 / eta =
# 2.86`` and hovers a few percent above it.  Momentum takes larger effective
# steps (``eta / (1 - beta)`` once the velocity has built up), so it trains
# much faster -- its loss ends more than an order of magnitude lower -- yet
# it too stops sharpening at its own threshold, ``3.8 / eta = 5.43``, 1.9
# times higher.  Divided by ``stability_threshold_`` (right) both runs sit
# at 1: the edge of stability is a property of the optimizer, and the
# network finds it.

ETA = 0.7
runs = {
    name: fit_mlp(500, learning_rate=ETA, optimizer=name) for name in ("gd", "momentum")
}
for name, run in runs.items():
    tail = edge_ratio(run)[run.steps_ >= 200]
    print(
        f"{name:>8}: threshold {run.stability_threshold_:.3f}; lambda_H "
        f"{run.sharpness_trace_[0]:.2f} -> mean over steps 200-500 "
        f"{run.sharpness_trace_[run.steps_ >= 200].mean():.2f}; edge ratio "
        f"{tail.mean():.3f} +- {tail.std():.3f}; loss {run.loss_curve_[-1]:.4f}"
    )

tidy = pd.concat(
    [
        pd.DataFrame(
            {
                "step": run.steps_,
                "sharpness": run.sharpness_trace_,
                "loss": run.loss_curve_,
                "stability_threshold": run.stability_threshold_,
                "optimizer": name,
            }
        )
        for name, run in runs.items()
    ],
    ignore_index=True,
)
fig, (ax, ax_ratio) = plt.subplots(1, 2, figsize=(12, 4), layout="constrained")
plot_sharpness(tidy, hue="optimizer", ax=ax)
ax.set_title(rf"$\eta = {ETA}$: each optimizer sharpens to its own threshold")
for i, (name, run) in enumerate(runs.items()):
    ax_ratio.plot(run.steps_, edge_ratio(run), color=f"C{i}", lw=1.2, label=name)
ax_ratio.axhline(1.0, color="k", ls="--", lw=1)
ax_ratio.set_ylim(0, 1.8)
ax_ratio.set_xlabel("step")
ax_ratio.set_ylabel(r"$\lambda^{\mathrm{H}}$ / stability_threshold_")
ax_ratio.set_title(r"GD at $2/\eta$, heavy ball at $(2+2\beta)/\eta$")
ax_ratio.legend()
plt.show()

# %%
# Adam: the *preconditioned* sharpness sits at ``38 / eta``
# ---------------------------------------------------------
# Adam divides each coordinate's step by a preconditioner ``P`` built from the
# second moment of the gradient.  On a quadratic with ``P`` frozen it is heavy
# ball with the Hessian replaced by ``P^-1 H``, so what is held at the edge is
# ``lambda_max(P^-1 H)``, at ``(2 + 2 beta_1) / ((1 - beta_1) eta)``, that is
# ``38 / eta``: Cohen et al. (2022)'s *adaptive edge of stability*.  The
# regressors record it as ``preconditioned_sharpness_trace_`` (the
# dash-dotted line; ``P`` is that of the step taken from each record, bias
# corrections included).  At ``eta = 0.01`` and ``0.03`` it rises to its
# threshold within about 150 steps and stays there: tripling ``eta`` divides
# it by three.  The raw sharpness ``lambda_H`` is not pinned to anything: it
# levels off between 6 and 7 at both learning rates, far below ``2 / eta``
# (200 and 67).  At step 0 the second moment holds a single squared gradient,
# so the first step divides each coordinate by the size of its own gradient
# (a sign-descent step) and the preconditioned sharpness starts far above the
# threshold.

adam = {eta: fit_mlp(400, learning_rate=eta, optimizer="adam") for eta in (0.01, 0.03)}
for eta, run in adam.items():
    late = run.steps_ >= 200
    pre = run.preconditioned_sharpness_trace_[late]
    print(
        f"adam eta = {eta}: threshold 38/eta = {run.stability_threshold_:.0f}; "
        f"steps 200-400: lambda_max(P^-1 H) = {pre.mean():.0f} (edge ratio "
        f"{edge_ratio(run)[late].mean():.3f} +- {edge_ratio(run)[late].std():.3f}), "
        f"lambda_H = {run.sharpness_trace_[late].mean():.2f}; "
        f"loss {run.loss_curve_[-1]:.5f}"
    )

fig, axes = plt.subplots(1, 2, figsize=(12, 4), layout="constrained", sharey=True)
for ax, (eta, run) in zip(axes, adam.items(), strict=True):
    plot_sharpness(run, ax=ax)
    ax.set_yscale("log")
    ax.set_title(rf"Adam, $\eta = {eta}$: threshold $38/\eta$")
plt.show()

# %%
# Changing the learning rate mid-run: the sharpness follows the edge
# ------------------------------------------------------------------
# With ``warm_start=True`` a second ``fit`` continues the run -- weights,
# optimizer state, step count and the eigensolver's warm starts -- and appends
# to every trace; a run split into two fits is bit-identical to one long
# run.  Changing ``learning_rate`` in between repeats the experiment of Cohen
# et al. (2021, section 3):
#
# * 300 steps at ``eta = 1``: the run hovers just above its edge,
#   ``2 / eta = 2``;
# * ``eta`` lowered to 0.5: the edge moves up to 4, the sharpness now sits at
#   half of it and *progressive sharpening resumes* until it reaches the new
#   edge;
# * ``eta`` raised to 0.65: the edge drops below the current sharpness, the
#   run is unstable, the loss spikes, and a catapult throws the sharpness back
#   down to the new edge -- where it hovers again.
#
# ``learning_rate_`` and ``stability_threshold_`` are now per-record arrays,
# drawn as a step line.

split = fit_mlp(150, learning_rate=1.0, warm_start=True).fit(X, Y)  # 150 + 150
whole = fit_mlp(300, learning_rate=1.0)
print(
    "two warm fits of 150 steps == one fit of 300 steps:",
    np.array_equal(split.sharpness_trace_, whole.sharpness_trace_)
    and np.array_equal(split.coefs_[0], whole.coefs_[0]),
)

est = fit_mlp(300, learning_rate=1.0, warm_start=True)
phases = [(0, 300, 1.0)]
for eta, n_steps in ((0.5, 600), (0.65, 200)):
    start = est.steps_[-1]
    est.set_params(learning_rate=eta, max_iter=n_steps).fit(X, Y)
    phases.append((start, start + n_steps, eta))
ratio = edge_ratio(est)
for start, stop, eta in phases:
    part = ratio[(est.steps_ > start) & (est.steps_ <= stop)]
    print(
        f"steps {start:4d}-{stop:4d}, eta = {eta:<4}: edge ratio "
        f"{part[0]:.2f} at step {start + 5}, max {part.max():.2f}, "
        f"mean of the last 10 records {part[-10:].mean():.3f}"
    )
print(
    f"{est.n_iter_} steps, {est.steps_.size} records; learning_rate_ takes the "
    f"values {np.unique(est.learning_rate_).tolist()}"
)

fig, (ax, ax_ratio) = plt.subplots(
    2, 1, figsize=(10, 6.5), sharex=True, layout="constrained"
)
# The traces as a table, with the threshold of every record (a step line).
plot_sharpness(
    {
        "step": est.steps_,
        "sharpness": est.sharpness_trace_,
        "loss": est.loss_curve_,
        "stability_threshold": est.stability_threshold_,
    },
    ax=ax,
)
ax.set_title(
    r"$\eta$ = 1, then 0.5, then 0.65: $\lambda^{\mathrm{H}}$ follows $2/\eta$"
)
ax_ratio.plot(est.steps_, ratio, lw=1.2)
ax_ratio.axhline(1.0, color="k", ls="--", lw=1)
ax_ratio.set_xlabel("step")
ax_ratio.set_ylabel(r"$\eta\,\lambda^{\mathrm{H}} / 2$")
for a in (ax, ax_ratio):
    for start, _, _ in phases[1:]:
        a.axvline(start, color="0.6", lw=0.8, ls=":")
plt.show()
