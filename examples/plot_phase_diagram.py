"""
Phase diagrams: lazy training, catapults and the edge of stability
==================================================================

Whether gradient descent converges, catapults, reaches the edge of stability
(EoS) or diverges depends on the learning rate *and* on how the network is
initialized and parameterized (Kalra, He & Barkeshli, ICLR 2025).  Two
learning-rate scales compete in the single-example UV model:

* ``2 / lambda_H0``, the stability edge at initialization.  Learning rates
  are given here as ``c = eta lambda_H0``.  In the *lazy* regime, where the
  NTK barely moves, ``c < 2`` converges, ``2 < c < 4`` catapults (the loss
  spikes and the sharpness drops below ``2 / eta``) and ``c > 4`` diverges.
* ``eta_c = 1 / (sqrt(kappa) |y|)``, above which no reachable minimum is
  stable and a bounded run must live on the EoS manifold.  In units of ``c``
  it sits at ``c_c = eta_c lambda_H0``.

If ``c_c < 4`` the run meets ``eta_c`` while it can still stay bounded:
EoS, period doubling and chaos appear (*feature learning*: the sharpness
changes by O(1)).  If ``c_c > 4`` the lazy catapult-then-diverge picture is
all there is.  The scans below map the labels of
:class:`~sharpsk.LearningRateScan` on learning rate x width, learning rate x
init scale, and learning rate x parameterization (SP, NTK, muP); each scan
runs thousands of fits in well under a second.
"""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from sharpsk import LearningRateScan, UVRegressor
from sharpsk.datasets import make_uv_example
from sharpsk.plotting import plot_phase_diagram, scanplot

# sphinx_gallery_thumbnail_number = 2

X, y = make_uv_example(10, target=1.0, random_state=0)  # |x| = 1, y = 1
c_grid = np.linspace(0.05, 5.0, 100)  # learning rates in units of 1 / lambda_H0

# Converged runs whose eta lambda_H went above 2 on the way are catapults:
# give them their own colour (sky blue, next to the converged blue).
PALETTE = {"catapult": "#56B4E9"}


def phase_table(param_name, param_values, **estimator_params):
    """Scan ``c_grid`` x ``param_values``; one row per run, catapults labelled."""
    params = {"max_iter": 2000, "random_state": 0, **estimator_params}
    scan = LearningRateScan(
        UVRegressor(**params),
        learning_rates=c_grid,
        lr_units="initial_sharpness",
        param_name=param_name,
        param_values=param_values,
        progress=False,
    ).fit(X, y)
    table = pd.DataFrame(scan.results_)
    catapult = (table["label"] == "converge") & table["catapult"]
    table.loc[catapult, "label"] = "catapult"
    # eta_c in units of c: where the run meets the critical learning rate.
    table["c_critical"] = table["critical_learning_rate"] * table["initial_sharpness"]
    return table


def mark_thresholds(ax, table, y):
    """The lazy thresholds c = 2, 4 (dashed) and c_c (triangles) of each row."""
    for c in (2, 4):
        ax.axvline(c, color="w", ls="--", lw=1)
    rows = table.groupby(y, sort=False)["c_critical"].first()
    numeric = pd.api.types.is_numeric_dtype(rows.index)
    at = rows.index.to_numpy(dtype=float) if numeric else np.arange(len(rows))
    c_c = rows.to_numpy()
    inside = c_c <= c_grid[-1]
    ax.plot(c_c[inside], at[inside], "w^", ms=7, mec="k")
    # c_c beyond the chart: an arrow-like marker at the right edge.
    ax.plot(np.full((~inside).sum(), c_grid[-1]), at[~inside], "w>", ms=7, mec="k")
    ax.text(
        0.01,
        0.98,
        r"$\triangle$: $c_c = \eta_c\,\lambda^{\mathrm{H}}_0$",
        transform=ax.transAxes,
        va="top",
        color="w",
        fontsize="small",
    )
    for value, height in zip(c_c[~inside], at[~inside], strict=True):
        ax.annotate(
            f"{value:.0f}",
            (c_grid[-1], height),
            xytext=(-9, 0),
            textcoords="offset points",
            ha="right",
            va="center",
            fontsize="x-small",
            color="w",
        )


# %%
# Width: the NTK parameterization becomes lazy
# --------------------------------------------
# NTK parameterization, ``init_scale=0.3``, widths 2 to 8192.  The initial
# NTK hardly depends on the width, but ``kappa = |x|**2 / n`` does, so
# ``eta_c = sqrt(n) / |y|`` and, at large width, ``c_c`` (white triangles;
# a right-pointing one with its value when off the chart) grow like
# ``sqrt(n)``.
#
# * Narrow networks (``c_c < 4``): beyond ``c_c`` the EoS band (green), the
#   period-doubling cascade (orange) and chaos (vermillion) open up before
#   the runs diverge (grey).
# * Wide networks (``c_c > 4``, here from width 1024 on): lazy training --
#   converge up to ``c = 2``, catapult (sky blue) up to ``c = 4``, diverge
#   beyond.  They diverge before ever reaching ``eta_c``: the EoS manifold is
#   out of reach.
#
# Runs labelled catapult just below ``c = 2`` (or ``c_c``) are converged runs
# whose ``eta lambda_H`` went above 2 on the way: progressive sharpening
# overshot the edge, and the run came back.

widths = [2**k for k in range(1, 14)]
by_width = phase_table("width", widths, init_scale=0.3)

fig, ax = plt.subplots(figsize=(9, 4.2), layout="constrained")
plot_phase_diagram(by_width, x="c", y="param_width", palette=PALETTE, ax=ax)
mark_thresholds(ax, by_width, "param_width")
ax.set_xlabel(r"$c = \eta\,\lambda^{\mathrm{H}}_0$")
ax.set_ylabel("width $n$ (NTK)")
ax.set_title("NTK parameterization, init_scale = 0.3")
plt.show()

# %%
# Init scale: small initializations learn features
# ------------------------------------------------
# Same model at width 256, with the init scale from 0.01 to 3.  A small
# initialization starts with ``f_0 ~ 0`` and a tiny NTK: the sharpness must
# grow by a large factor before the run can converge (progressive sharpening),
# so in units of the *initial* sharpness ``eta_c`` comes early, ``c_c ~ 1``.
# The run then climbs onto the EoS manifold and follows the route to chaos.
# As the init scale grows, ``c_c`` moves right past 4 and the lazy
# converge / catapult / diverge sequence takes over.

scales = np.geomspace(0.01, 3.0, 14).round(3)
by_scale = phase_table("init_scale", scales, width=256)

fig, ax = plt.subplots(figsize=(9, 4.2), layout="constrained")
plot_phase_diagram(by_scale, x="c", y="param_init_scale", palette=PALETTE, ax=ax)
mark_thresholds(ax, by_scale, "param_init_scale")
ax.set_xlabel(r"$c = \eta\,\lambda^{\mathrm{H}}_0$")
ax.set_ylabel("init_scale (NTK, width 256)")
ax.set_title("NTK parameterization, width 256")
plt.show()

# %%
# Parameterization: SP, NTK and muP
# ---------------------------------
# Width 1024, ``init_scale=0.3``, one row per parameterization (see
# :class:`~sharpsk.ParameterizationTransformer`):
#
# * **SP** (output multiplier 1, ``v ~ N(0, 1/n)``): ``kappa = |x|**2``, but
#   ``lambda_H0`` grows like ``n / d``, so ``c_c`` is large -- lazy, and the
#   largest stable learning rate ``eta`` shrinks with width.
# * **NTK** (multiplier ``1/sqrt(n)``): ``c_c`` grows like ``sqrt(n)`` and is
#   past 4 at this width -- lazy too.
# * **muP** (multiplier ``1/n``, learning rate ``eta n``): ``f_0 -> 0`` and
#   ``c_c ~ 1`` at every width: the run reaches ``eta_c`` well before the lazy
#   divergence at ``c = 4`` and shows the EoS and the route to chaos, however
#   wide the network.  This is the width-independent feature learning muP is
#   designed for.

by_param = phase_table(
    "parameterization", ["sp", "ntk", "mup"], width=1024, init_scale=0.3
)
print(
    by_param.groupby("param_parameterization", sort=False)[
        ["initial_sharpness", "critical_learning_rate", "c_critical"]
    ]
    .first()
    .round(3)
)

fig, ax = plt.subplots(figsize=(9, 2.8), layout="constrained")
plot_phase_diagram(by_param, x="c", y="param_parameterization", palette=PALETTE, ax=ax)
mark_thresholds(ax, by_param, "param_parameterization")
ax.set_xlabel(r"$c = \eta\,\lambda^{\mathrm{H}}_0$")
ax.set_ylabel("")
ax.set_title("width 1024, init_scale = 0.3")
plt.show()

# %%
# The muP phase diagram does not depend on width
# ----------------------------------------------
# Repeating the width scan under muP: from width ~16 on every row shows the
# same sequence at the same ``c`` -- converge, EoS from ``c_c ~ 1`` on, the
# cascade, chaos, divergence -- because muP keeps ``f_0``, ``lambda_H0`` and
# ``eta_c`` of order one as the width grows (only the narrowest networks,
# whose random initial weights fluctuate most, differ).  Compare with the
# first diagram, where the NTK rows turn lazy as the width grows.

mup = phase_table("width", widths, init_scale=0.3, parameterization="mup")

fig, ax = plt.subplots(figsize=(9, 4.2), layout="constrained")
plot_phase_diagram(mup, x="c", y="param_width", palette=PALETTE, ax=ax)
mark_thresholds(ax, mup, "param_width")
ax.set_xlabel(r"$c = \eta\,\lambda^{\mathrm{H}}_0$")
ax.set_ylabel(r"width $n$ ($\mu$P)")
ax.set_title(r"$\mu$P, init_scale = 0.3")
plt.show()

# %%
# Side by side: one panel per parameterization
# --------------------------------------------
# :func:`~sharpsk.plotting.scanplot` facets a table of runs by its
# ``param_<name>`` columns, the way :func:`seaborn.relplot` does: one phase
# diagram per value of ``col`` (or ``row``), the same colours in every panel
# and one legend for the figure.  Here the NTK and muP width scans above,
# stacked with a ``param_parameterization`` column; a scan over several
# parameters at once gives such a table directly.  ``kind`` picks the plot
# in each panel (``"phase"``, ``"lyapunov"``, ``"bifurcation"``,
# ``"sharpness"``).

both = pd.concat(
    [
        by_width.assign(param_parameterization="NTK"),
        mup.assign(param_parameterization="muP"),
    ],
    ignore_index=True,
)
grid = scanplot(
    both,
    x="c",
    y="param_width",
    col="param_parameterization",
    palette=PALETTE,
    height=3.6,
    aspect=1.1,
)
grid.set_axis_labels(r"$c = \eta\,\lambda^{\mathrm{H}}_0$", "width $n$")
plt.show()
