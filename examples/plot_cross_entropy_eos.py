"""
Cross-entropy at the edge of stability
======================================

Cohen et al. (2021) found the edge of stability with the cross-entropy loss
too, with one difference from the squared error: late in training, once the
training set is classified, the sharpness *decreases*.  Here
:class:`~sharpsk.MLPClassifier` trains the same tanh network on 200 of
scikit-learn's digits by full-batch gradient descent, with the cross-entropy
of its softmax (``loss="log_loss"``) and with the squared error on one-hot
targets (``loss="squared_error"``), and measures the sharpness ``lambda_H``
at every step.  We see

* **progressive sharpening** with both losses, up to ``2 / eta``;
* the **edge of stability**: ``eta lambda_H`` overshoots 2, then a period-2
  orbit straddles it while the loss goes up and down;
* the **late decrease** with cross-entropy only: as the margins grow the
  softmax saturates, its output Hessian ``diag(p) - p p^T`` vanishes and so
  does the sharpness, while the squared error's output Hessian stays the
  identity and its sharpness stays at the edge.

The network is narrow, with layers of 16, 4 and 16 tanh units: the
bottleneck makes it sharpen well past ``2 / eta`` before it fits the digits
(a network with one layer of 32 units fits them with cross-entropy before its
sharpness gets there).  Each fit of 1000 steps takes about two seconds.
"""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from sharpsk import MLPClassifier
from sharpsk.datasets import load_digits_onehot
from sharpsk.plotting import plot_sharpness

# sphinx_gallery_thumbnail_number = 2

X, Y = load_digits_onehot(n_samples=200, random_state=0)
y = Y.argmax(axis=1)  # the digit of each image, 0 .. 9
print(f"X {X.shape}, {len(np.unique(y))} classes")


def classifier(loss, learning_rate, max_iter=1000, **params):
    """Full-batch GD, the sharpness at every step (the orbit has period 2)."""
    return MLPClassifier(
        (16, 4, 16),
        loss=loss,
        learning_rate=learning_rate,
        init_scale=0.5,
        max_iter=max_iter,
        sharpness_tol=1e-3,
        random_state=0,
        **params,
    )


def margins(clf):
    """``f_y - max_{k != y} f_k`` of every training image (log-odds)."""
    logp = clf.predict_log_proba(X)
    rows = np.arange(len(y))
    own = logp[rows, y].copy()
    logp[rows, y] = -np.inf
    return own - logp.max(axis=1)


# %%
# One long cross-entropy run, in warm-started pieces
# --------------------------------------------------
# ``warm_start=True`` continues a fit where the previous one stopped, and a
# run split into pieces is bit-identical to one long run: stopping every 25
# steps lets us look at the margins along the way without changing the run.

eta = 0.3
ce = classifier("log_loss", eta, max_iter=25, warm_start=True)
margin_steps, margin_median, margin_min = [], [], []
for _ in range(40):
    ce.fit(X, y)
    m = margins(ce)
    margin_steps.append(ce.n_iter_)
    margin_median.append(np.median(m))
    margin_min.append(m.min())
margin_steps = np.array(margin_steps)

# %%
# Both losses sharpen to ``2 / eta``; only cross-entropy comes back down
# ----------------------------------------------------------------------
# At ``eta = 0.3`` and ``eta = 0.5`` (the run above is the first).  With
# cross-entropy (left) ``lambda_H`` starts far below the edge, rises to its
# run's ``2 / eta`` (dashed), overshoots it and is thrown back; then it falls
# for the rest of training.  With the squared error (right) the sharpness
# starts higher and rises more slowly: at ``eta = 0.5`` it reaches ``2 / eta``
# around step 300, overshoots until a catapult near step 440 and then hovers
# at the edge to the end; at ``eta = 0.3`` it levels off below the edge.
# Either way it does not decrease.

runs = {("log_loss", eta): ce}
for loss, rate in [("log_loss", 0.5), ("squared_error", 0.3), ("squared_error", 0.5)]:
    runs[loss, rate] = classifier(loss, rate).fit(X, y)

for (loss, rate), run in runs.items():
    c = rate * run.sharpness_trace_
    k = int(np.argmax(c > 1.9)) if np.any(c > 1.9) else None
    reached = f"first above 1.9 at step {run.steps_[k]}" if k else "never above 1.9"
    print(
        f"{loss:13s} eta = {rate}: eta lambda_H {c[0]:.2f} -> max {c.max():.2f} "
        f"({reached}) -> {c[-1]:.2f} at step {run.steps_[-1]}; training "
        f"accuracy {run.score(X, y):.3f}"
    )


def tidy(loss):
    """One row per record of the runs with ``loss``."""
    return pd.concat(
        [
            pd.DataFrame(
                {
                    "step": run.steps_,
                    "sharpness": run.sharpness_trace_,
                    "loss": run.loss_curve_,
                    "learning_rate": rate,
                }
            )
            for (name, rate), run in runs.items()
            if name == loss
        ],
        ignore_index=True,
    )


fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True, layout="constrained")
for ax, loss, title in zip(
    axes,
    ("log_loss", "squared_error"),
    ("cross-entropy: sharpening, edge, decrease", "squared error: stays at the edge"),
    strict=True,
):
    plot_sharpness(tidy(loss), hue="learning_rate", show_loss=False, ax=ax, lw=1)
    ax.set_title(title)
axes[0].set_ylim(0, 11)
fig.suptitle("tanh MLP (16, 4, 16), 200 digits, full-batch gradient descent")
plt.show()

# %%
# At the edge: overshoot, then a period-2 orbit around ``2 / eta``
# ----------------------------------------------------------------
# The first 400 steps of the cross-entropy run at ``eta = 0.3``, with the
# loss on the right axis.  ``eta lambda_H`` crosses 2 around step 120 but
# keeps rising, to about 2.6, while the unstable direction grows from a tiny
# component; then gradient descent settles on a period-2 orbit: the top
# Hessian eigenvalue alternates between values starting near 3 and 1 (in
# units of ``1 / eta``), the loss goes up and down, and the orbit's two
# sharpness values close in on 2 from both sides -- the UV model's picture of
# the edge of stability.  Meanwhile every digit gets classified (by step
# 150), and from step ~230 on the sharpness decreases and the loss falls
# monotonically.

steps, c = ce.steps_, eta * ce.sharpness_trace_
orbit = c[(steps >= 162) & (steps <= 210)]
ups = np.diff(ce.loss_curve_[(steps >= 150) & (steps <= 210)]) > 0
edge = (steps >= 110) & (steps < 230)
print(
    f"eta = 0.3: eta lambda_H first above 2 at step {steps[np.argmax(c > 2)]}, "
    f"max {c.max():.2f} at step {steps[np.argmax(c)]}; steps 110-230 mean "
    f"{c[edge].mean():.2f}"
)
print(
    f"period-2 orbit, steps 162-210: eta lambda_H alternates between "
    f"{orbit[::2].min():.2f}..{orbit[::2].max():.2f} and "
    f"{orbit[1::2].min():.2f}..{orbit[1::2].max():.2f}; the loss rises on "
    f"{ups.sum()} of the 60 steps from 150"
)

window = steps <= 400
first = pd.DataFrame(
    {
        "step": steps[window],
        "sharpness": ce.sharpness_trace_[window],
        "loss": ce.loss_curve_[window],
        "learning_rate": eta,
    }
)
fig, ax = plt.subplots(figsize=(9, 4), layout="constrained")
plot_sharpness(first, ax=ax, lw=1)
ax.set_title(r"cross-entropy, $\eta = 0.3$: sharpness (left) and loss (right)")
plt.show()

# %%
# Why the sharpness decreases: growing margins
# --------------------------------------------
# The gradient of the cross-entropy with respect to the outputs is ``(p -
# y) / n`` and its output Hessian ``(diag(p) - p p^T) / n``: both vanish as
# the probability ``p_y`` of each image's class approaches 1, i.e. as its
# *margin* ``f_y - max_{k != y} f_k`` grows.  After the edge of stability the
# network has classified every training image and keeps growing the margins,
# slowly (the loss is nearly flat); the curvature, which is the output Hessian
# seen through the network's Jacobian, falls with them.  The squared error's
# output Hessian is the identity whatever the fit, so nothing pulls its
# sharpness down.

at = np.searchsorted(steps, margin_steps)
for t in (150, 500, 1000):
    i = int(np.searchsorted(margin_steps, t))
    print(
        f"step {t}: median margin {margin_median[i]:.2f}, smallest "
        f"{margin_min[i]:.2f}, eta lambda_H {c[at[i]]:.2f}, loss "
        f"{ce.loss_curve_[at[i]]:.4f}"
    )

fig, ax = plt.subplots(figsize=(9, 4), layout="constrained")
ax.plot(steps, c, color="C0", lw=1, label=r"$\eta\,\lambda^{\mathrm{H}}$")
ax.axhline(2.0, color="k", ls="--", lw=1)
ax.set_xlabel("step")
ax.set_ylabel(r"$\eta\,\lambda^{\mathrm{H}}$", color="C0")
ax.set_ylim(0, 3.2)
ax_m = ax.twinx()
ax_m.plot(margin_steps, margin_median, "C3o-", ms=3, lw=1, label="median margin")
ax_m.plot(margin_steps, margin_min, "C3s:", ms=3, lw=1, label="smallest margin")
ax_m.set_ylabel("margin (log-odds)", color="C3")
ax_m.legend(loc="center right")
ax.set_title(r"cross-entropy, $\eta = 0.3$: the margins grow, the sharpness falls")
plt.show()
