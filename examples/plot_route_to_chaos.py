r"""
The route to chaos at the edge of stability
===========================================

Above the critical learning rate the UV model cannot converge: no reachable
minimum is linearly stable.  A run from a small initialization settles
instead on the edge-of-stability manifold, where gradient descent is a
one-dimensional cubic map, and as the learning rate grows that map goes
through a period-doubling cascade into chaos.

In the notation of the user guide (:ref:`route-to-chaos`): above
:math:`\eta_c = 1 / (\sqrt{\kappa}\, \lvert y \rvert)` the run settles on the
*EoS manifold* :math:`\lambda = 2 \sqrt{\kappa}\, \lvert f \rvert`, where
gradient descent reduces exactly to a cubic map of the scaled residual
:math:`g = \eta \sqrt{\kappa}\, \Delta f`,

.. math::

    g' &= g \left( 1 - 2 \tilde y + (\tilde y - 2)\, g + g^2 \right),

    \eta \lambda &= 2 (g + \tilde y),
    \qquad \tilde y = \eta \sqrt{\kappa}\, y = \eta / \eta_c .

As :math:`\eta` grows the map doubles its period into chaos, with periodic
windows inside the chaotic band, until the attractor is destroyed and
training diverges (Kalra, He & Barkeshli, ICLR 2025).  This example scans
2400 learning rates with :class:`~sharpsk.LearningRateScan` -- the
single-example UV model is iterated for all of them at once, in about a
second -- and draws the bifurcation diagram and the largest Lyapunov exponent
against :math:`\eta / \eta_c`.
"""

import matplotlib.pyplot as plt
import numpy as np

from sharpsk import LearningRateScan, UVRegressor
from sharpsk.datasets import make_uv_example
from sharpsk.plotting import plot_bifurcation, plot_lyapunov

# One example (|x| = 1, y = 1), width 10 in the NTK parameterization: kappa =
# 1/10 and eta_c = sqrt(10).  A small init_scale starts near f = 0 with a tiny
# NTK, so the run reaches the EoS manifold (see the phase-diagram example).
X, y = make_uv_example(10, target=1.0, random_state=0)
uv = UVRegressor(10, init_scale=0.01, max_iter=4000, random_state=0)
eta_c = uv.fit(X, y).critical_learning_rate_

ratios = np.linspace(0.6, 2.1, 2401)  # eta / eta_c
scan = LearningRateScan(
    uv, learning_rates=ratios * eta_c, n_tail_points=64, progress=False
).fit(X, y)
res = scan.results_
labels, periods = res["label"], res["period"]
print(f"eta_c = {eta_c:.4f}; {scan.n_runs_} runs ({scan.engine_} engine)")
print({name: int(np.sum(labels == name)) for name in np.unique(labels)})

# %%
# Bifurcation diagram and Lyapunov exponent
# -----------------------------------------
# Top: the last 64 values of :math:`\eta \lambda^{\mathrm{H}}` of every run
# that stayed bounded, coloured by the run's label; bottom: the run's largest
# Lyapunov exponent (from the exact tangent map of the two-dimensional UV
# map).
#
# * :math:`\eta < \eta_c`: one dot per learning rate -- the run converges to
#   a minimum with :math:`\eta \lambda^{\mathrm{H}} = 2 \eta / \eta_c` (the
#   dashed red line, the fixed point :math:`g = 0` of the cubic map) below
#   the stability edge 2.  The exponent is 0: the minima form a line, a
#   neutral direction.
# * :math:`\eta = \eta_c`: the minimum loses stability and a **period-2
#   orbit** straddling :math:`\eta \lambda^{\mathrm{H}} = 2` is born: the
#   edge of stability.
# * :math:`\eta \approx 1.24\, \eta_c`: period 4, then 8, 16, ... (the
#   exponent touches 0 at each doubling) accumulating at
#   :math:`\eta \approx 1.30\, \eta_c`.
# * Beyond: **chaotic bands** (positive exponent), interrupted by periodic
#   **windows** (negative exponent) -- the widest, period 3, near
#   :math:`1.45\, \eta_c`; a period-2 window near :math:`1.83\, \eta_c` is
#   labelled ``periodic`` because its orbit does not straddle the edge.
# * :math:`\eta = 2 \eta_c`: the attractor fills its whole interval and the
#   next learning rate **diverges** (no dots).

fig, (ax_b, ax_l) = plt.subplots(
    2, 1, figsize=(10, 7), sharex=True, height_ratios=(3, 2), layout="constrained"
)
plot_bifurcation(scan, lr_units="critical", hue="label", ax=ax_b, s=0.8, alpha=0.6)
below = ratios[ratios <= 1]
ax_b.plot(below, 2 * below, color="C3", ls="--", lw=1)
notes = {  # text: (point, text position), in (eta / eta_c, eta lambda_H)
    "period-2 EoS orbit": ((1.12, 3.1), (0.9, 4.2)),
    "period 4": ((1.27, 3.75), (1.12, 5.2)),
    "period-3 window": ((1.46, 5.1), (1.2, 7.6)),
    "chaotic band": ((1.66, 5.5), (1.52, 9.0)),
    "divergence": ((2.0, 1.0), (2.03, 1.0)),
}
for text, (xy, xytext) in notes.items():
    arrow = None if text == "divergence" else {"arrowstyle": "->", "lw": 0.8}
    ax_b.annotate(
        text,
        xy,
        xytext,
        arrowprops=arrow,
        fontsize="small",
        rotation=90 if arrow is None else 0,
    )
ax_b.set_ylim(0, 10.5)
ax_b.set_xlabel("")
plot_lyapunov(scan, lr_units="critical", hue="label", ax=ax_l, s=2, show_line=False)
ax_l.get_legend().remove()
ax_l.axhline(np.log(3), color="C3", ls="--", lw=1)
ax_l.annotate(r"$\ln 3$", (0.62, np.log(3)), xytext=(0, 3), textcoords="offset points")
ax_l.set_ylim(-1.5, 1.4)
plt.show()

# %%
# Cross-check 1: the first doubling is at :math:`\eta_c`
# ------------------------------------------------------
# On the EoS manifold the minimum :math:`g = 0` has multiplier
# :math:`1 - 2 \tilde y`: it crosses :math:`-1`, and the period-2 orbit is
# born, exactly at :math:`\tilde y = 1`, that is :math:`\eta = \eta_c`.  The
# scan agrees: its last converged and its first oscillating runs bracket
# :math:`\eta_c` to the grid spacing.  (Right at :math:`\eta_c` the multiplier
# is :math:`-1`, convergence becomes arbitrarily slow, and a run of 4000 steps
# just below :math:`\eta_c` still oscillates: it is labelled ``eos``.)
#
# The multiplier itself shows in the runs: close to a minimum the residual is
# multiplied by :math:`1 - \eta \lambda` per step.  Below, the measured
# late-time ratio :math:`\Delta f_{t+1} / \Delta f_t` of a few runs (dots)
# against :math:`1 - 2 \eta / \eta_c` (line); past :math:`\eta_c` the tail of
# :math:`\eta \lambda^{\mathrm{H}}` splits into the two branches of the
# period-2 orbit.

last_converged = ratios[labels == "converge"].max()
first_bounded = ratios[(labels != "converge") & (ratios > last_converged)].min()
print(
    f"last converged run at eta/eta_c = {last_converged:.4f}, "
    f"first non-converging at {first_bounded:.4f} (theory: 1)"
)
converged = labels == "converge"
gap = np.max(np.abs(res["eta_sharpness_mean"][converged] - 2 * ratios[converged]))
print(f"converged runs: max |eta lambda_H - 2 eta/eta_c| = {gap:.1e}")

probe = np.array([0.55, 0.6, 0.7, 0.8, 0.9, 0.95])
measured = []
for r in probe:
    run = uv.set_params(learning_rate=r * eta_c, max_iter=150).fit(X, y)
    df = run.residual_trace_
    t = np.flatnonzero(np.abs(df) > 1e-150)[-1]  # last step before underflow
    measured.append(df[t] / df[t - 1])
measured = np.array(measured)
print("eta/eta_c   measured   1 - 2 eta/eta_c")
for r, m in zip(probe, measured, strict=True):
    print(f"{r:9.2f}   {m:8.4f}   {1 - 2 * r:8.4f}")

fig, (ax_m, ax_z) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
grid = np.linspace(0.5, 1.05, 50)
ax_m.plot(grid, 1 - 2 * grid, color="C3", lw=1, label=r"$1 - 2\tilde y$")
ax_m.plot(probe, measured, "o", color="k", label="measured")
ax_m.axhline(-1, color="0.5", ls=":", lw=1)
ax_m.axvline(1, color="0.5", ls=":", lw=1)
ax_m.set_xlabel(r"$\tilde y = \eta/\eta_c$")
ax_m.set_ylabel("multiplier of the minimum")
ax_m.set_title(r"convergence rate: $\Delta f_{t+1} / \Delta f_t$")
ax_m.legend()
near = (ratios > 0.9) & (ratios < 1.25)
zoom = {key: value for key, value in scan.trace_tails_.items()}
keep = np.isin(zoom["run"], np.flatnonzero(near))
zoom = {key: value[keep] for key, value in zoom.items()}
plot_bifurcation(zoom, results=res, lr_units="critical", hue="label", ax=ax_z, s=1)
ax_z.axvline(1, color="0.5", ls=":", lw=1)
ax_z.set_title("the period-2 orbit is born at $\\eta_c$")
plt.show()

# %%
# Cross-check 2: the cascade is that of the cubic map
# ---------------------------------------------------
# Iterating the cubic map itself (a few lines of numpy, below) gives the
# same bifurcation diagram.  The map moves the NTK,
# :math:`\eta \lambda = 2 (g + \tilde y)`; on the manifold the sharpness has
# the closed form
#
# .. math::
#
#    \eta \lambda^{\mathrm{H}} = (g + \tilde y) + \lvert 2 g + \tilde y \rvert
#
# (the discriminant in the closed form of :math:`\lambda^{\mathrm{H}}` is
# then a perfect square), and that is what is drawn, in black, on top of the
# UV runs' tails (coloured): the two coincide wherever the attractor is
# unique.
#
# At :math:`\tilde y = 2` the map is :math:`g' = g^3 - 3 g`, conjugate to the
# Chebyshev polynomial :math:`T_3` on :math:`[-2, 2]`: fully chaotic, with
# Lyapunov exponent :math:`\ln 3` (dashed line in the first figure), and any
# larger learning rate throws :math:`g` out of the interval, to infinity.  The
# UV runs' exponents approach :math:`\ln 3` and they diverge from
# :math:`\eta = 2 \eta_c` on.


def cubic_map_tails(y_tilde, n_steps=3000, n_keep=32):
    """Last ``n_keep`` values of ``eta lambda_H`` on the EoS manifold."""
    g = np.full_like(y_tilde, 1e-3)
    tails = []
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(n_steps):
            g = g * (1 - 2 * y_tilde + (y_tilde - 2) * g + g * g)
            if t >= n_steps - n_keep:
                tails.append(g + y_tilde + np.abs(2 * g + y_tilde))
    return np.array(tails)


yt = np.linspace(1.15, 2.0, 1200)
tails = cubic_map_tails(yt)
cubic = {"y_tilde": np.tile(yt, len(tails)), "eta_sharpness": tails.ravel()}
top = (ratios >= 1.98) & (labels == "chaotic")
print(
    f"UV exponent for eta/eta_c in [1.98, 2): {np.mean(res['lyapunov'][top]):.3f} "
    f"(ln 3 = {np.log(3):.3f}); first diverged run at "
    f"eta/eta_c = {ratios[labels == 'diverge'].min():.4f} (theory: 2)"
)

fig, ax = plt.subplots(figsize=(10, 4.5), layout="constrained")
band = (ratios >= 1.15) & (ratios <= 2.0)
tails_uv = scan.trace_tails_
keep = np.isin(tails_uv["run"], np.flatnonzero(band))
plot_bifurcation(
    {key: value[keep] for key, value in tails_uv.items()},
    results=res,
    lr_units="critical",
    hue="label",
    ax=ax,
    s=4,
    alpha=0.5,
)
plot_bifurcation(
    cubic,
    x="y_tilde",
    y="eta_sharpness",
    scaled=False,
    show_edge=False,
    ax=ax,
    s=0.2,
    color="k",
)
ax.set_xlabel(r"$\eta/\eta_c$ (UV runs)  $=\ \tilde y$ (cubic map)")
ax.set_ylabel(r"$\eta\,\lambda^{\mathrm{H}}$")
ax.set_title("UV model (colours) and the cubic EoS map (black)")
plt.show()
