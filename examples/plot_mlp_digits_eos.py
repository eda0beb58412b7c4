"""
Edge of stability in an MLP on digits
=====================================

The UV model's predictions carry over to real networks (Kalra, He &
Barkeshli, ICLR 2025).  Here a one-hidden-layer tanh MLP
(:class:`~sharpsk.MLPRegressor`) is trained by full-batch gradient descent on
200 of scikit-learn's 8x8 digits, with the squared loss on one-hot targets
(:func:`sharpsk.datasets.load_digits_onehot`), the protocol of Cohen et al.
(2021).  The sharpness ``lambda_H`` is measured every 5 steps by a Lanczos
eigensolver on exact Hessian-vector products, warm-started from the previous
eigenvector.  We see

* **progressive sharpening**: ``lambda_H`` rises steadily during training;
* the **edge of stability**: it stops at ``2 / eta`` and hovers there, while
  the loss keeps falling, non-monotonically;
* **early sharpness reduction** from a large initialization, before the
  sharpening sets in.

Each fit takes a fraction of a second to about a second on a laptop CPU.
"""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from sharpsk import MLPRegressor
from sharpsk.datasets import load_digits_onehot
from sharpsk.plotting import plot_sharpness

# sphinx_gallery_thumbnail_number = 2

X, Y = load_digits_onehot(n_samples=200, random_state=0)
print(f"X {X.shape}, Y {Y.shape}")


def fit_mlp(learning_rate, init_scale, max_iter):
    """Full-batch GD on the digits, sharpness every 5 steps."""
    return MLPRegressor(
        (32,),
        learning_rate=learning_rate,
        init_scale=init_scale,
        max_iter=max_iter,
        record_every=5,
        random_state=0,
    ).fit(X, Y)


def tidy(runs, key):
    """One row per sharpness record, the loss alongside (NaN where not measured)."""
    frames = []
    for value, run in runs.items():
        frames.append(
            pd.DataFrame(
                {
                    "step": run.steps_,
                    "sharpness": run.sharpness_trace_,
                    "loss": run.loss_curve_,
                    "learning_rate": run.learning_rate,
                    key: value,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


# %%
# Progressive sharpening to ``2 / eta``, at several learning rates
# ----------------------------------------------------------------
# With ``init_scale=0.25`` the network starts flat (``lambda_H0 ~ 1.3``).  At
# each learning rate the sharpness rises until it reaches that run's own
# ``2 / eta`` (left, dashed, same colour), overshoots it briefly, and then
# stays there: the larger the learning rate, the earlier the sharpening is
# stopped.  In units of the learning rate (right) all runs collapse onto
# ``eta lambda_H ~ 2`` (a few percent above it, as Cohen et al. observed
# too).  This is the edge of stability -- gradient descent
# regulates the curvature to the largest value it tolerates -- and the UV
# model's picture of it: progressive sharpening drives the run toward the
# unstable part of the line of minima, and the run stays pinned at its edge.

etas = (0.4, 0.5, 1.0)
eos_runs = {eta: fit_mlp(eta, 0.25, 800) for eta in etas}
for eta, run in eos_runs.items():
    tail = run.sharpness_trace_[run.steps_ >= 500]
    print(
        f"eta = {eta}: lambda_H {run.sharpness_trace_[0]:.2f} -> mean over steps "
        f"500-800 {tail.mean():.2f} (2/eta = {2 / eta:.2f}); loss "
        f"{run.loss_curve_[0]:.3f} -> {run.loss_curve_[-1]:.4f}"
    )

fig, (ax, ax_scaled) = plt.subplots(1, 2, figsize=(12, 4), layout="constrained")
plot_sharpness(tidy(eos_runs, "eta"), hue="learning_rate", show_loss=False, ax=ax)
ax.set_ylim(0, 6.5)
ax.set_title(r"$\lambda^{\mathrm{H}}$ rises to $2/\eta$")
for i, (eta, run) in enumerate(eos_runs.items()):
    ax_scaled.plot(run.steps_, eta * run.sharpness_trace_, color=f"C{i}", lw=1.2)
ax_scaled.axhline(2.0, color="k", ls="--", lw=1)
ax_scaled.set_xlabel("step")
ax_scaled.set_ylabel(r"$\eta\,\lambda^{\mathrm{H}}$")
ax_scaled.set_title(r"... so every run hovers at $\eta\lambda^{\mathrm{H}} \approx 2$")
fig.suptitle("tanh MLP (32 hidden units), 200 digits, init_scale = 0.25")
plt.show()

# %%
# At the edge: the loss keeps falling, but not monotonically
# ----------------------------------------------------------
# The run at ``eta = 0.5``, with the loss on the right axis.  The sharpness
# crosses ``2 / eta`` around step 160, but nothing happens at first: the
# unstable direction starts from a tiny component and needs about a hundred
# steps to grow (meanwhile ``lambda_H`` overshoots to ``eta lambda_H ~ 2.6``).
# Then the loss spikes, the sharpness is thrown back to ``2 / eta`` -- a
# catapult -- and from then on ``eta lambda_H`` hovers near 2 while the loss
# goes up and down in slow bumps, yet keeps decreasing over longer windows.
# Quadratic theory would call this regime unstable; in the network it is how
# training proceeds.

run = eos_runs[0.5]
loss, steps = run.loss_curve_, run.steps_  # one record every 5 steps
ups = np.diff(loss) > 0
edge_ratio = run.sharpness_trace_ / run.stability_threshold_
crossed = steps[np.argmax(edge_ratio > 1)]
first_up = np.argmax(ups)
es = run.learning_rate * run.sharpness_trace_[steps >= 400]
print(
    f"eta = 0.5: eta lambda_H first above 2 at step {crossed}, loss first "
    f"increases at step {steps[first_up + 1]}; after that it increases on "
    f"{ups[first_up:].mean():.0%} of the records"
)
print(f"steps 400-800: eta lambda_H = {es.mean():.3f} +- {es.std():.3f}")
at = {t: loss[np.searchsorted(steps, t)] for t in (300, 500, 800)}
print(f"loss at steps 300, 500, 800: {at[300]:.4f}, {at[500]:.4f}, {at[800]:.4f}")

fig, ax = plt.subplots(figsize=(9, 4), layout="constrained")
plot_sharpness(run, ax=ax, marker=".", ms=3)
ax.set_title(r"$\eta = 0.5$: sharpness (left axis) and loss (right axis)")
plt.show()

# %%
# Early sharpness reduction from a large initialization
# -----------------------------------------------------
# The UV model predicts that the sharpness falls early in training when the
# initial outputs are large (``|f_0| > |y|``): a large ``init_scale`` gives
# large random outputs on the one-hot targets.  At ``eta = 0.2``:
#
# * ``init_scale=0.25``: small outputs, progressive sharpening from the start;
# * ``init_scale=1``: ``lambda_H`` first drops by 30 %, mostly within the
#   first ~30 steps while the outputs shrink toward the targets; it then
#   stays flat and progressive sharpening takes over after step ~150.
#   (At ``eta = 0.05`` the drop is smaller: as in the UV model, the
#   reduction grows with the learning rate.)

reduction = {scale: fit_mlp(0.2, scale, 600) for scale in (0.25, 1.0)}
for scale, run in reduction.items():
    sharp = run.sharpness_trace_
    k = np.argmin(sharp)
    print(
        f"init_scale = {scale}: lambda_H {sharp[0]:.2f} -> min {sharp[k]:.2f} at step "
        f"{run.steps_[k]} -> {sharp[-1]:.2f} at step {run.steps_[-1]}"
    )
small_lr = fit_mlp(0.05, 1.0, 200).sharpness_trace_
print(f"init_scale = 1, eta = 0.05: lambda_H {small_lr[0]:.2f} -> {small_lr[-1]:.2f}")

fig, ax = plt.subplots(figsize=(9, 4), layout="constrained")
plot_sharpness(tidy(reduction, "init_scale"), hue="init_scale", ax=ax)
ax.set_ylim(0, 11)
ax.set_title(r"$\eta = 0.2$: early sharpness reduction at init_scale = 1")
plt.show()
