"""
Sharpness phenomena of the UV model
===================================

A two-layer linear network ``f(x) = s v^T U x`` trained by gradient descent on
a *single* example already shows the sharpness phenomena of real networks
(Kalra, He & Barkeshli, ICLR 2025):

* **progressive sharpening**: the sharpness ``lambda_H`` (top eigenvalue of the
  loss Hessian) grows while the output ``f`` grows toward the target ``y``;
* the **edge of stability** (EoS): above the critical learning rate
  ``eta_c = 1 / (sqrt(kappa) |y|)`` no minimum is stable, and the sharpening
  stops at ``2 / eta``, where the run settles on an orbit straddling it;
* **early sharpness reduction**: when the initial output ``f_0`` is larger
  than ``y``, or of the opposite sign, the sharpness falls early in training,
  more so at larger learning rates;
* the **catapult**: at ``2 < c = eta lambda_H0 < 4`` the loss spikes, the
  sharpness collapses below ``2 / eta`` and the run then converges.

Which of these happens is set by the initialization (its scale, and the size
and sign of ``f_0`` relative to ``y``) and by the learning rate.  With one
example the run is exactly a two-dimensional map of ``(f - y, lambda)``
(``lambda`` is the NTK), so every fit below takes milliseconds at any width.
"""

import warnings

import matplotlib.pyplot as plt
import numpy as np

from sharpsk import DivergenceWarning, LearningRateScan, UVRegressor
from sharpsk.datasets import make_uv_example
from sharpsk.plotting import LABEL_COLORS, plot_sharpness, plot_uv_vector_field

# sphinx_gallery_thumbnail_number = 5

# One example with |x| = 1 and target y = 1; NTK parameterization, width 10,
# so kappa = s^2 |x|^2 = 1 / 10 and eta_c = sqrt(10) / |y|.
X, y = make_uv_example(10, target=1.0, random_state=0)
WIDTH = 10


def fit_uv(init_scale, seed, *, eta=None, c=None, max_iter=200, target=y):
    """Fit the UV model at a learning rate ``eta`` or ``c = eta lambda_H0``."""
    uv = UVRegressor(WIDTH, max_iter=0, init_scale=init_scale, random_state=seed).fit(
        X, target
    )
    if c is not None:  # c is the learning rate in units of 1 / lambda_H0
        eta = c / uv.initial_sharpness_
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DivergenceWarning)  # divergence is a result
        return uv.set_params(learning_rate=eta, max_iter=max_iter).fit(X, target)


small = UVRegressor(WIDTH, max_iter=0, init_scale=0.1, random_state=0).fit(X, y)
eta_c = small.critical_learning_rate_
print(f"kappa = {small.kappa_:.3f}, eta_c = {eta_c:.3f}")
print(
    f"small init (init_scale=0.1): f_0 = {small.residual_trace_[0] + 1:+.3f}, "
    f"lambda_H0 = {small.initial_sharpness_:.3f}"
)

# %%
# Small initialization: progressive sharpening, then a minimum or the EoS
# -----------------------------------------------------------------------
# With ``init_scale=0.1`` the network starts with ``f_0`` close to 0 and a
# small NTK ``lambda`` (dotted).  As ``f`` grows toward ``y`` the NTK grows
# with it: gradient flow keeps ``Q = lambda**2 - 4 kappa f**2`` constant, so
# a small start ends near the sharpest minima, ``lambda ~ 2 sqrt(kappa) |y|``.
# (In the first steps ``lambda_H`` is not the NTK but the residual's own
# curvature, about ``sqrt(kappa) |f - y|``, which shrinks with the residual.)
#
# * Left, ``eta = 0.5 eta_c``: that minimum is linearly stable
#   (``eta lambda_H = 2 eta / eta_c = 1 < 2``); the sharpness saturates below
#   the dashed ``2 / eta`` line and the loss (grey, right axis) falls to zero.
# * Right, ``eta = 1.1 eta_c``: every reachable minimum is unstable.  The
#   sharpness climbs to ``2 / eta`` and the run settles on a period-2 orbit
#   straddling it: the edge of stability.  The loss stops decreasing but
#   stays bounded.


def loss_axes(ax):
    """The twin Axes on which :func:`plot_sharpness` drew the loss."""
    shared = ax.get_shared_x_axes()
    return next(
        a for a in ax.figure.axes if a.get_label() == "loss" and shared.joined(ax, a)
    )


sharpening = fit_uv(0.1, 0, eta=0.5 * eta_c, max_iter=40)
eos = fit_uv(0.1, 0, eta=1.1 * eta_c, max_iter=40)

fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
plot_sharpness(sharpening, ax=axes[0], marker=".")
loss_axes(axes[0]).set_ylim(1e-12, 10)  # the loss reaches exactly 0
axes[0].set_title(r"$\eta = 0.5\,\eta_c$: sharpening, then a stable minimum")
plot_sharpness(eos, ax=axes[1], marker=".")
axes[1].set_title(r"$\eta = 1.1\,\eta_c$: sharpening into the EoS")
plt.show()

# %%
# Large initialization: early sharpness reduction, set by ``f_0`` against ``y``
# -----------------------------------------------------------------------------
# The NTK's one-step change is
# ``delta_lambda = eta kappa delta_f (delta_f (eta lambda - 4) - 4 y)``: for
# small ``eta lambda`` it is positive only while ``f`` lies between 0 (more
# precisely ``-eta lambda y / (4 - eta lambda)``) and ``y``.  Below, one set of
# initial weights (``init_scale=1``, output ``f_0 = -1.8``) is trained toward
# three targets, at ``c = eta lambda_H0 = 1`` (learning rates in units of the
# initial sharpness; ``c = 2`` is the initial stability edge):
#
# * ``y = -4``: ``f_0`` lies between 0 and ``y``, ``|f|`` grows -- progressive
#   sharpening, as with a small initialization;
# * ``y = -1``: same sign but ``|f_0| > |y|``, ``|f|`` shrinks -- mild early
#   sharpness reduction;
# * ``y = +1``: opposite signs, ``f`` must cross 0 -- strong early sharpness
#   reduction, about a third of ``lambda_H`` is gone after a few steps.

targets = {"y = -4": -4.0, "y = -1": -1.0, "y = +1": 1.0}
fig, axes = plt.subplots(1, 3, figsize=(14, 3.6), layout="constrained")
print("init_scale=1, seed 3, c = 1:")
for ax, (name, target) in zip(axes, targets.items(), strict=True):
    run = fit_uv(1.0, 3, c=1.0, max_iter=25, target=np.array([target]))
    f0 = run.residual_trace_[0] + target
    lam = run.sharpness_trace_
    print(f"  {name}: f_0 = {f0:+.2f}, lambda_H {lam[0]:.2f} -> {lam[-1]:.2f}")
    plot_sharpness(run, ax=ax, marker=".", show_loss=False)
    ax.set_ylim(0, None)
    ax.set_title(
        rf"$f_0 = {f0:.1f}$, ${name}$: $\lambda^{{\mathrm{{H}}}}$ "
        rf"{lam[0]:.2f} $\to$ {lam[-1]:.2f}"
    )
plt.show()

# %%
# The catapult
# ------------
# In the lazy regime (``f_0`` already close to ``y``, so the residual is
# small) nothing happens to the sharpness below ``c = 2``.  Above it the
# initial state is linearly unstable: the residual grows, the loss spikes by
# orders of magnitude (a *catapult*), and the large residual drives the NTK
# down -- ``delta_lambda`` is negative and of order ``eta kappa delta_f**2``
# -- until ``eta lambda_H < 2``; the run then converges at that much flatter
# minimum.  Between ``c = 2`` and ``c = 4`` this is the lazy limit's catapult
# phase; beyond ``c = 4`` the run diverges.

print("init_scale=1, seed 0, y = 1:")
runs = {c: fit_uv(1.0, 0, c=c, max_iter=40) for c in (1.9, 3.0)}
fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
for ax, (c, run) in zip(axes, runs.items(), strict=True):
    es = run.learning_rate * run.sharpness_trace_
    spike = run.loss_curve_.max() / run.loss_curve_[0]
    print(
        f"  c = {c}: eta lambda_H {es[0]:.2f} -> {es[-1]:.2f}, loss spike x{spike:.0f}"
    )
    plot_sharpness(run, ax=ax, marker=".")
    loss_axes(ax).set_ylim(1e-12, None)
    ax.set_ylim(0, None)
    ax.set_title(rf"$c = {c}$" + (": catapult" if c > 2 else ": lazy convergence"))
plt.show()
catapult = runs[3.0]
reduction = fit_uv(1.0, 3, c=1.0, max_iter=25)

# %%
# The same runs in function space
# -------------------------------
# :func:`~sharpsk.plotting.plot_uv_vector_field` draws the one-step map in the
# plane of the residual ``delta_f = f - y`` and the NTK ``lambda``, with a
# run on top (a star marks its start).  The vertical line ``delta_f = 0`` is
# the line of minima: solid (stable) below ``lambda = 2 / eta``, dashed
# above.  States below the black EoS manifold ``lambda = 2 sqrt(kappa) |f|``
# (shaded) are unreachable.  The dash-dotted nullcline of ``lambda`` separates
# where it grows (between the nullcline and the minima, on the side of ``y``)
# from where it falls.
#
# * EoS run: from ``lambda ~ 0`` the trajectory climbs through the growth
#   region until it reaches the unstable part of the line of minima, then hops
#   between two points on either side of it, on the EoS manifold.
# * Sharpness reduction (``y = +1``): the run starts at ``f_0 < 0``, on the
#   far side of the nullcline, and slides down while crossing ``f = 0``.
# * Catapult: the first steps overshoot to large residuals (the loss spike)
#   in the falling region, and the run comes back to a stable minimum far
#   below ``2 / eta``.

fig, axes = plt.subplots(1, 3, figsize=(16, 4.6), layout="constrained")
panels = (
    (eos, r"EoS, $\eta = 1.1\,\eta_c$"),
    (reduction, r"sharpness reduction, $c = 1$"),
    (catapult, r"catapult, $c = 3$"),
)
for i, (ax, (run, title)) in enumerate(zip(axes, panels, strict=True)):
    plot_uv_vector_field(
        kappa=run.kappa_,
        y=1.0,
        learning_rate=run.learning_rate,
        trajectory=run,
        colorbar=i == 2,
        alpha=0.5,
        ax=ax,
    )
    ax.set_title(title)
    handles, names = ax.get_legend_handles_labels()
    ax.get_legend().remove()  # one legend for the three panels, below them
fig.legend(handles, names, loc="outside lower center", ncol=4, fontsize="small")
plt.show()

# %%
# The whole picture: final sharpness against learning rate and init scale
# -------------------------------------------------------------------------
# A :class:`~sharpsk.LearningRateScan` runs every learning rate at once (the
# single-example UV model is vectorised) and labels each run.  Plotted is the
# sharpness at the end of training relative to the initial one (the tail mean
# of ``eta lambda_H`` divided by ``c``) against ``c``, for four init scales of
# one seed (``f_0`` of the opposite sign to ``y``); colours are the run labels
# and each curve ends where its runs start to diverge.
#
# * Small init (0.1, 0.3): the ratio is above 1 -- progressive sharpening.
#   Once ``eta > eta_c`` (here ``c ~ 1`` and ``c ~ 1.6``) the runs stop
#   converging: EoS, then periodic and chaotic orbits, then divergence.
# * Large init (1, 1.5): the ratio is below 1 at every ``c`` -- sharpness
#   reduction -- and it falls as ``c`` grows.  Past ``c = 2`` (dashed) every
#   run is a catapult that still converges, up to ``c = 4``.

scales = [0.1, 0.3, 1.0, 1.5]
scan = LearningRateScan(
    UVRegressor(WIDTH, max_iter=1000, random_state=3),
    learning_rates=np.linspace(0.05, 4.0, 80),
    lr_units="initial_sharpness",
    param_name="init_scale",
    param_values=scales,
    progress=False,
).fit(X, y)
res = scan.results_

fig, ax = plt.subplots(figsize=(8, 4.2), layout="constrained")
for scale in scales:
    rows = res["param_init_scale"] == scale
    c, ratio = res["c"][rows], res["eta_sharpness_mean"][rows] / res["c"][rows]
    ax.plot(c, ratio, color="0.6", lw=1.0, zorder=1)
    ax.scatter(
        c, ratio, s=14, zorder=2, c=[LABEL_COLORS[k] for k in res["label"][rows]]
    )
    # Name each curve at an end where it stands apart from the others.
    at = 0 if scale < 1 else np.flatnonzero(np.isfinite(ratio))[-1]
    ax.annotate(
        f"init_scale = {scale:g}",
        (c[at], ratio[at]),
        xytext=(0, 7),
        textcoords="offset points",
        ha="left" if at == 0 else "right",
        fontsize="small",
    )
ax.axhline(1.0, color="k", lw=0.8)
ax.axvline(2.0, color="0.5", ls="--", lw=0.8)
ax.set_yscale("log")
ax.set_xlabel(r"$c = \eta\,\lambda^{\mathrm{H}}_0$")
ax.set_ylabel(r"final $\lambda^{\mathrm{H}}$ / initial $\lambda^{\mathrm{H}}$")
present = [k for k in LABEL_COLORS if k in set(res["label"]) and k != "diverge"]
handles = [
    plt.Line2D([], [], ls="none", marker="o", color=LABEL_COLORS[k]) for k in present
]
ax.legend(handles, present, title="run label", loc="upper right", fontsize="small")
plt.show()
