"""sharpsk.plotting: every function rendered to PNG (Agg), asserted on its artists."""

import subprocess
import sys

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import seaborn as sns
from matplotlib.colors import to_rgba
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.exceptions import NotFittedError

from sharpsk import LearningRateScan, UVRegressor
from sharpsk._dynamics import LABELS
from sharpsk._maps import uv_sharpness, uv_simulate, uv_step
from sharpsk.plotting import (
    LABEL_COLORS,
    plot_bifurcation,
    plot_lyapunov,
    plot_phase_diagram,
    plot_sharpness,
    plot_uv_vector_field,
    scanplot,
)


def _render(ax, tmp_path, name):
    """Save the figure of ``ax`` to PNG (a real draw) and check the file."""
    path = tmp_path / f"{name}.png"
    ax.figure.savefig(path, dpi=60, bbox_inches="tight")
    assert path.stat().st_size > 1000
    return path


def _by_gid(ax, gid):
    return [a for a in ax.get_children() if a.get_gid() == gid]


def _legend(ax):
    legend = ax.get_legend()
    return [t.get_text() for t in legend.get_texts()], legend.legend_handles


def _handle_color(handle):
    if hasattr(handle, "get_markerfacecolor") and handle.get_marker() not in (
        None,
        "None",
        "",
    ):
        return to_rgba(handle.get_markerfacecolor())
    return to_rgba(handle.get_facecolor())


def _one_example(y=1.0):
    return np.full((1, 4), 0.5), np.array([y])


@pytest.fixture(scope="module")
def uv_scan():
    """A hand-made single-example UV scan in eta / eta_c in [0.6, 1.6].

    The columns follow the scan's ``results_`` (one row per learning rate)
    and its tidy tail table (one row per learning rate and tail step).
    """
    kappa, y, delta_f0, ntk0 = 1.0, 1.0, -1.0, 0.3
    eta_c = 1.0 / (np.sqrt(kappa) * abs(y))
    etas = np.linspace(0.6, 1.6, 41) * eta_c
    sim = uv_simulate(delta_f0, ntk0, etas, kappa, y, 600, record_from=584)
    sharp = uv_sharpness(sim["delta_f"], sim["ntk"], kappa, y)
    n_tail = sharp.shape[0]
    tail = pd.DataFrame(
        {
            "learning_rate": np.tile(etas, n_tail),
            "step": np.repeat(sim["steps"], len(etas)),
            "sharpness": sharp.ravel(),
            "critical_learning_rate": eta_c,
            "initial_sharpness": float(uv_sharpness(delta_f0, ntk0, kappa, y)),
        }
    )
    labels = np.array(LABELS, dtype=object)[np.arange(len(etas)) % len(LABELS)]
    results = {
        "learning_rate": etas,
        "label": labels,
        "lyapunov": np.where(labels == "diverge", np.nan, np.linspace(-1, 1, 41)),
        "critical_learning_rate": np.full(len(etas), eta_c),
        "initial_sharpness": np.full(len(etas), tail["initial_sharpness"][0]),
    }
    return {"tail": tail, "results": results, "eta_c": eta_c}


# --------------------------------------------------------------------------
# Module-level contracts
# --------------------------------------------------------------------------


def test_label_colors_one_fixed_distinct_colour_per_label():
    assert tuple(LABEL_COLORS) == tuple(LABELS)
    rgba = {to_rgba(c) for c in LABEL_COLORS.values()}
    assert len(rgba) == len(LABELS)


def test_importing_sharpsk_does_not_import_matplotlib():
    code = "import sys, sharpsk; print('matplotlib' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------
# plot_sharpness
# --------------------------------------------------------------------------


def test_plot_sharpness_of_a_fitted_uv_regressor(tmp_path):
    X, y = _one_example()
    uv = UVRegressor(8, learning_rate=1.2, max_iter=80, random_state=0).fit(X, y)
    fig, ax = plt.subplots()
    assert plot_sharpness(uv, ax=ax) is ax
    _render(ax, tmp_path, "sharpness_uv")
    (sharp,) = _by_gid(ax, "sharpness")
    (ntk,) = _by_gid(ax, "ntk")
    (edge,) = _by_gid(ax, "edge")
    assert_array_equal(sharp.get_xdata(), uv.steps_)
    assert_allclose(sharp.get_ydata(), uv.sharpness_trace_, rtol=0, atol=0)
    assert_allclose(ntk.get_ydata(), uv.ntk_trace_, rtol=0, atol=0)
    assert_allclose(edge.get_ydata(), [2 / 1.2, 2 / 1.2], rtol=1e-15)
    # The loss lives on a log-scaled twin Axes sharing the step axis.
    (loss_ax,) = [a for a in fig.axes if a.get_label() == "loss"]
    assert loss_ax.get_yscale() == "log"
    assert loss_ax.get_ylabel() == "loss"
    (loss,) = _by_gid(loss_ax, "loss")
    positive = uv.loss_curve_ > 0
    assert_allclose(loss.get_ydata(), uv.loss_curve_[positive], rtol=0)
    assert ax.get_xlabel() == "step"
    assert ax.get_ylabel() == r"sharpness $\lambda^{\mathrm{H}}$"
    texts, _ = _legend(ax)
    sharp = r"$\lambda^{\mathrm{H}}$"
    assert texts == [sharp, r"$\lambda$ (NTK)", "stability threshold", "loss"]


def test_plot_sharpness_switches_and_a_loss_recorded_every_step(tmp_path):
    class Fitted:  # the MLP's layout: sharpness every 5 steps, loss every step
        learning_rate = 2.0  # in units of the initial sharpness (lr_units)
        learning_rate_ = 0.25  # the step size eta it ran with
        ntk_trace_ = None
        steps_ = np.arange(0, 21, 5)
        sharpness_trace_ = np.array([4.0, 5.0, 7.0, 8.0, 8.0])
        loss_curve_ = np.exp(-0.1 * np.arange(21))

        def fit(self):
            return self

    fig, ax = plt.subplots()
    plot_sharpness(Fitted(), ax=ax)  # ntk_trace_ is None: no NTK line
    _render(ax, tmp_path, "sharpness_mlp")
    assert _by_gid(ax, "ntk") == []
    (loss_ax,) = [a for a in fig.axes if a.get_label() == "loss"]
    (loss,) = _by_gid(loss_ax, "loss")
    assert_array_equal(loss.get_xdata(), np.arange(21))
    (edge,) = _by_gid(ax, "edge")
    assert edge.get_ydata()[0] == 8.0

    fig, ax = plt.subplots()
    plot_sharpness(Fitted(), ax=ax, show_loss=False, show_edge=False)
    assert len(fig.axes) == 1 and _by_gid(ax, "edge") == []


def test_plot_sharpness_tidy_data_with_hue(tmp_path):
    etas = [0.5, 1.0, 2.0]
    frame = pd.concat(
        [
            pd.DataFrame(
                {
                    "step": np.arange(10),
                    "sharpness": np.linspace(1, 2 / eta, 10),
                    "loss": np.geomspace(1, 1e-3, 10),
                    "learning_rate": eta,
                }
            )
            for eta in etas
        ]
    )
    fig, ax = plt.subplots()
    plot_sharpness(frame, hue="learning_rate", ax=ax)
    _render(ax, tmp_path, "sharpness_hue")
    sharp, edges = _by_gid(ax, "sharpness"), _by_gid(ax, "edge")
    assert len(sharp) == len(edges) == 3
    assert_allclose([e.get_ydata()[0] for e in edges], [2 / e for e in etas])
    for s, e in zip(sharp, edges, strict=True):
        assert to_rgba(s.get_color()) == to_rgba(e.get_color())
    # Each run a colour of the cycle, also for numbers (C0, C1, C2 as before).
    cycle = [to_rgba(f"C{i}") for i in range(3)]
    assert [to_rgba(s.get_color()) for s in sharp] == cycle
    texts, handles = _legend(ax)
    assert texts[:3] == [f"learning_rate = {eta:g}" for eta in etas]
    assert [to_rgba(h.get_color()) for h in handles[:3]] == cycle
    sharp = r"$\lambda^{\mathrm{H}}$"
    assert texts[3:] == [sharp, "stability threshold", "loss"]  # style key
    # With hue_norm, numbers go through a colormap, as in seaborn.
    fig, ax = plt.subplots()
    plot_sharpness(frame, hue="learning_rate", hue_norm=(0.0, 4.0), ax=ax)
    cmap = sns.color_palette("ch:", as_cmap=True)
    colors = [to_rgba(s.get_color()) for s in _by_gid(ax, "sharpness")]
    assert_allclose(colors, cmap(np.divide(etas, 4.0)), rtol=0, atol=1e-12)


def test_plot_sharpness_bad_input():
    frame = pd.DataFrame({"step": [0, 1], "sharpness": [1.0, 2.0]})
    with pytest.raises(ValueError, match="'learning_rate'"):
        plot_sharpness(frame)
    with pytest.raises(ValueError, match="'lambda_H'"):
        plot_sharpness(frame, y="lambda_H", learning_rate=0.1)
    frame["learning_rate"] = [0.1, 0.2]
    with pytest.raises(ValueError, match="hue='learning_rate'"):
        plot_sharpness(frame)
    with pytest.raises(NotFittedError, match="UVRegressor"):
        plot_sharpness(UVRegressor())
    with pytest.raises(TypeError, match="list"):
        plot_sharpness([1.0, 2.0])


# --------------------------------------------------------------------------
# plot_bifurcation
# --------------------------------------------------------------------------


def test_plot_bifurcation_points_units_and_edge(uv_scan, tmp_path):
    tail, eta_c = uv_scan["tail"], uv_scan["eta_c"]
    finite = np.isfinite(tail["sharpness"].to_numpy())
    eta = tail["learning_rate"].to_numpy()[finite]
    sharp = tail["sharpness"].to_numpy()[finite]

    fig, ax = plt.subplots()
    plot_bifurcation(tail, ax=ax)
    _render(ax, tmp_path, "bifurcation")
    (points,) = _by_gid(ax, "points")
    offsets = points.get_offsets()
    assert len(offsets) == finite.sum()
    assert_allclose(offsets[:, 0], eta, rtol=0)
    assert_allclose(offsets[:, 1], eta * sharp, rtol=1e-15)
    (edge,) = _by_gid(ax, "edge")
    assert_array_equal(edge.get_ydata(), [2.0, 2.0])
    assert ax.get_xlabel() == r"learning rate $\eta$"
    assert ax.get_ylabel() == r"$\eta\,\lambda^{\mathrm{H}}$"
    assert not points.get_rasterized()  # few points: vector output

    fig, ax = plt.subplots()
    plot_bifurcation(tail, lr_units="critical", ax=ax)
    assert_allclose(ax.collections[0].get_offsets()[:, 0], eta / eta_c, rtol=1e-15)
    assert ax.get_xlabel() == r"$\eta\,/\,\eta_c$"

    fig, ax = plt.subplots()
    plot_bifurcation(tail, lr_units="initial_sharpness", scaled=False, ax=ax)
    lam0 = tail["initial_sharpness"][0]
    offsets = ax.collections[0].get_offsets()
    assert_allclose(offsets[:, 0], eta * lam0, rtol=1e-15)
    assert_allclose(offsets[:, 1], sharp, rtol=0)
    # Unscaled, the edge is the curve lambda_H = 2 / eta in the same units.
    (edge,) = _by_gid(ax, "edge")
    assert_allclose(edge.get_ydata(), 2.0 / (edge.get_xdata() / lam0), rtol=1e-12)
    assert len(edge.get_xdata()) == len(np.unique(eta))
    _render(ax, tmp_path, "bifurcation_unscaled")


def test_plot_bifurcation_hue_and_rasterization(tmp_path):
    n = 6000
    rng = np.random.default_rng(0)
    labels = np.array(["converge", "eos", "chaotic"])[rng.integers(0, 3, n)]
    frame = pd.DataFrame(
        {"learning_rate": rng.uniform(0.1, 1, n), "sharpness": 1.0, "label": labels}
    )
    fig, ax = plt.subplots()
    plot_bifurcation(frame, hue="label", ax=ax)
    _render(ax, tmp_path, "bifurcation_hue")
    (points,) = _by_gid(ax, "points")
    assert points.get_rasterized()
    expected = np.array([to_rgba(LABEL_COLORS[v]) for v in labels])
    assert_allclose(points.get_facecolors(), expected, rtol=0, atol=0)
    texts, handles = _legend(ax)
    assert texts == ["converge", "eos", "chaotic"]
    assert [_handle_color(h) for h in handles] == [
        to_rgba(LABEL_COLORS[t]) for t in texts
    ]


def test_plot_bifurcation_bad_input(uv_scan):
    tail = uv_scan["tail"]
    with pytest.raises(ValueError, match="lr_units.*'eta_c'"):
        plot_bifurcation(tail, lr_units="eta_c")
    with pytest.raises(ValueError, match="'critical_learning_rate'"):
        plot_bifurcation(
            tail.drop(columns="critical_learning_rate"), lr_units="critical"
        )
    with pytest.raises(ValueError, match="'lambda_H'"):
        plot_bifurcation(tail, y="lambda_H")
    with pytest.raises(ValueError, match="'label'"):
        plot_bifurcation(tail, hue="label")


# --------------------------------------------------------------------------
# plot_phase_diagram
# --------------------------------------------------------------------------


def _cell_colors(ax):
    ax.figure.canvas.draw()
    (mesh,) = _by_gid(ax, "phases")
    return mesh, np.asarray(mesh.get_facecolors())


def test_plot_phase_diagram_grid_colours_and_legend(tmp_path):
    etas, widths = np.geomspace(0.01, 1.0, 5), np.array([8, 32, 128])
    E, W = np.meshgrid(etas, widths)
    labels = np.array(LABELS, dtype=object)[np.arange(E.size) % 5]
    keep = np.arange(E.size) != 7  # one cell never run
    runs = {
        "learning_rate": E.ravel()[keep],
        "width": W.ravel()[keep],
        "label": labels[keep],
    }
    fig, ax = plt.subplots()
    assert plot_phase_diagram(runs, y="width", ax=ax) is ax
    _render(ax, tmp_path, "phase")
    mesh, colors = _cell_colors(ax)
    assert mesh.get_array().shape == (3, 5)
    expected = np.array([to_rgba(LABEL_COLORS[v]) for v in labels])
    expected[7] = (0, 0, 0, 0)  # the missing cell is blank
    assert_allclose(colors, expected, rtol=0, atol=1e-12)
    # Cells are centred on the scanned values, in log space here.
    coords = mesh.get_coordinates()
    centres = np.sqrt(coords[0, 1:, 0] * coords[0, :-1, 0])
    assert_allclose(centres, etas, rtol=1e-12)
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    texts, handles = _legend(ax)
    assert texts == list(LABELS)
    assert [_handle_color(h) for h in handles] == [
        to_rgba(LABEL_COLORS[t]) for t in texts
    ]
    assert ax.get_xlabel() == r"learning rate $\eta$" and ax.get_ylabel() == "width"


def test_plot_phase_diagram_strip_of_a_1d_scan(uv_scan, tmp_path):
    results = uv_scan["results"]
    fig, ax = plt.subplots(figsize=(6, 1.5))
    plot_phase_diagram(results, lr_units="critical", ax=ax)
    _render(ax, tmp_path, "phase_strip")
    mesh, colors = _cell_colors(ax)
    assert mesh.get_array().shape == (1, len(results["learning_rate"]))
    expected = [to_rgba(LABEL_COLORS[v]) for v in results["label"]]
    assert_allclose(colors, expected, rtol=0, atol=1e-12)
    assert list(ax.get_yticks()) == []
    # Linear spacing in eta / eta_c: linear axis, cells centred on the values.
    assert ax.get_xscale() == "linear"
    edges = mesh.get_coordinates()[0, :, 0]
    assert_allclose(
        0.5 * (edges[1:] + edges[:-1]),
        results["learning_rate"] / uv_scan["eta_c"],
        rtol=1e-12,
    )


def test_plot_phase_diagram_palette_and_bad_input():
    runs = pd.DataFrame({"learning_rate": [0.1, 0.2], "label": ["eos", "weird"]})
    with pytest.raises(ValueError, match="'weird'"):
        plot_phase_diagram(runs)
    fig, ax = plt.subplots()
    plot_phase_diagram(runs, palette={"weird": "black"}, ax=ax)
    texts, handles = _legend(ax)
    assert texts == ["eos", "weird"]
    assert _handle_color(handles[1]) == to_rgba("black")
    with pytest.raises(ValueError, match="'width'"):
        plot_phase_diagram(runs, y="width")
    # A run without a finite coordinate gets no cell; none at all is an error.
    runs["critical_learning_rate"] = [np.nan, 0.1]
    fig, ax = plt.subplots()
    plot_phase_diagram(runs, lr_units="critical", palette={"weird": "k"}, ax=ax)
    assert _by_gid(ax, "phases")[0].get_array().shape == (1, 1)
    runs["critical_learning_rate"] = np.nan
    with pytest.raises(ValueError, match="positive 'critical_learning_rate'"):
        plot_phase_diagram(runs, lr_units="critical", palette={"weird": "k"})
    with pytest.raises(ValueError, match="share a grid cell"):
        plot_phase_diagram(pd.concat([runs, runs]), palette={"weird": "k"})
    with pytest.raises(ValueError, match="lr_units"):
        plot_phase_diagram(runs, lr_units="c", palette={"weird": "k"})


def test_results_dicts_scalars_nested_tables_and_lengths():
    runs = {
        "learning_rate": np.array([0.5, 1.0]),
        "lyapunov": np.array([-0.2, 0.1]),
        "label": np.array(["converge", "chaotic"], dtype=object),
        "critical_learning_rate": 0.5,  # a scalar is broadcast
        "tail": {"step": [1, 2, 3]},  # a nested table is not a column
        "traces": np.zeros((2, 3)),  # nor a 2-D array
    }
    fig, ax = plt.subplots()
    plot_lyapunov(runs, lr_units="critical", ax=ax)
    assert_allclose(ax.collections[0].get_offsets()[:, 0], [1.0, 2.0])
    runs["lyapunov"] = np.array([0.1])
    with pytest.raises(ValueError, match="equal lengths"):
        plot_lyapunov(runs)


# --------------------------------------------------------------------------
# plot_lyapunov
# --------------------------------------------------------------------------


def test_plot_lyapunov_points_zero_line_and_colours(uv_scan, tmp_path):
    results = uv_scan["results"]
    fig, ax = plt.subplots()
    assert plot_lyapunov(results, ax=ax) is ax
    _render(ax, tmp_path, "lyapunov")
    finite = np.isfinite(results["lyapunov"])
    (points,) = _by_gid(ax, "points")
    offsets = points.get_offsets()
    assert len(offsets) == finite.sum()
    assert_allclose(offsets[:, 1], results["lyapunov"][finite], rtol=0)
    expected = [to_rgba(LABEL_COLORS[v]) for v in results["label"][finite]]
    assert_allclose(points.get_facecolors(), expected, rtol=0, atol=1e-12)
    (zero,) = _by_gid(ax, "zero")
    assert_array_equal(zero.get_ydata(), [0.0, 0.0])
    texts, handles = _legend(ax)
    assert texts == ["converge", "eos", "periodic", "chaotic"]  # diverge: no point
    assert [_handle_color(h) for h in handles] == [
        to_rgba(LABEL_COLORS[t]) for t in texts
    ]
    assert ax.get_ylabel() == "largest Lyapunov exponent"

    fig, ax = plt.subplots()
    plot_lyapunov(results, hue=None, lr_units="initial_sharpness", ax=ax)
    lam0 = results["initial_sharpness"][0]
    assert_allclose(
        ax.collections[0].get_offsets()[:, 0],
        results["learning_rate"][finite] * lam0,
        rtol=1e-15,
    )
    assert ax.get_legend() is None
    assert ax.get_xlabel() == r"$c = \eta\,\lambda^{\mathrm{H}}_0$"
    with pytest.raises(ValueError, match="'exponent'"):
        plot_lyapunov(results, y="exponent")


# --------------------------------------------------------------------------
# plot_uv_vector_field
# --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["quiver", "stream"])
def test_uv_vector_field_geometry(kind, tmp_path):
    kappa, y, eta = 0.5, -1.5, 0.4  # a negative target: signs matter
    fig, ax = plt.subplots()
    plot_uv_vector_field(kappa=kappa, y=y, learning_rate=eta, kind=kind, ax=ax)
    _render(ax, tmp_path, f"field_{kind}")
    edge = 2.0 / eta
    # Line of minima split at lambda = 2 / eta: stable below, unstable above.
    (stable,) = _by_gid(ax, "fixed_points_stable")
    (unstable,) = _by_gid(ax, "fixed_points_unstable")
    assert_array_equal(stable.get_xdata(), [0.0, 0.0])
    assert_array_equal(unstable.get_xdata(), [0.0, 0.0])
    assert max(stable.get_ydata()) == edge == min(unstable.get_ydata())
    assert stable.get_linestyle() != unstable.get_linestyle()
    # The EoS manifold lambda = 2 sqrt(kappa) |delta_f + y|.
    (manifold,) = _by_gid(ax, "eos_manifold")
    df = np.asarray(manifold.get_xdata())
    assert_allclose(
        manifold.get_ydata(), 2 * np.sqrt(kappa) * np.abs(df + y), rtol=1e-14
    )
    # The other nullcline: one step of the exact map leaves lambda unchanged.
    (null,) = _by_gid(ax, "nullcline")
    nd, nl = np.asarray(null.get_xdata()), np.asarray(null.get_ydata())
    on = np.isfinite(nl)
    assert on.sum() > 50
    _, new_ntk = uv_step(nd[on], nl[on], eta, kappa, y)
    assert_allclose(new_ntk, nl[on], rtol=1e-12, atol=1e-12)
    ylo, yhi = ax.get_ylim()
    assert ylo == 0.0 and yhi > edge
    assert ax.get_xlim()[0] < min(0.0, -y) and ax.get_xlim()[1] > max(0.0, -y)
    assert ax.get_xlabel() == r"residual $\Delta f = f - y$"
    assert len(fig.axes) == 2  # the colour bar


def test_uv_vector_field_arrows_follow_the_map(tmp_path):
    kappa, y, eta = 1.0, 1.0, 0.8
    fig, ax = plt.subplots()
    plot_uv_vector_field(
        kappa=kappa, y=y, learning_rate=eta, n_grid=11, colorbar=False, ax=ax
    )
    (field,) = _by_gid(ax, "field")
    xy = np.asarray(field.get_offsets())
    # Arrows only on reachable states, lambda >= 2 sqrt(kappa) |f|.
    assert np.all(xy[:, 1] >= 2 * np.sqrt(kappa) * np.abs(xy[:, 0] + y))
    assert 20 < len(xy) < 121
    new_df, new_ntk = uv_step(xy[:, 0], xy[:, 1], eta, kappa, y)
    d = np.column_stack([new_df - xy[:, 0], new_ntk - xy[:, 1]])
    a = np.column_stack([field.U, field.V])
    cos = np.sum(a * d, axis=1) / (
        np.linalg.norm(a, axis=1) * np.linalg.norm(d, axis=1)
    )
    assert_allclose(cos, 1.0, rtol=0, atol=1e-12)
    # Equal lengths on screen: each arrow spans the same fraction of the view.
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    frac = np.hypot(field.U / (x1 - x0), field.V / (y1 - y0))
    assert_allclose(frac, 0.06, rtol=1e-12)
    assert len(fig.axes) == 1
    _render(ax, tmp_path, "field_arrows")


def test_uv_vector_field_trajectory_from_a_fit_and_from_arrays(tmp_path):
    X, y = _one_example()
    uv = UVRegressor(8, max_iter=200, init_scale=0.2, random_state=0)
    kappa = uv.function_space_state(X, y)["kappa"]
    uv.set_params(learning_rate=1.1 / np.sqrt(kappa))  # eta = 1.1 eta_c: EoS
    uv.fit(X, y)
    fig, ax = plt.subplots()
    plot_uv_vector_field(
        kappa=uv.kappa_, y=1.0, learning_rate=uv.learning_rate, trajectory=uv, ax=ax
    )
    _render(ax, tmp_path, "field_trajectory")
    (traj,) = _by_gid(ax, "trajectory")
    assert_allclose(traj.get_xdata(), uv.residual_trace_, rtol=0)
    assert_allclose(traj.get_ydata(), uv.ntk_trace_, rtol=0)
    (start,) = _by_gid(ax, "start")
    assert_allclose(start.get_xydata(), [[uv.residual_trace_[0], uv.ntk_trace_[0]]])
    # The view contains the whole run.
    assert ax.get_ylim()[1] >= uv.ntk_trace_.max()
    assert ax.get_xlim()[0] <= uv.residual_trace_.min()
    texts, _ = _legend(ax)
    assert "trajectory" in texts and len(texts) == 7

    states = np.column_stack([uv.residual_trace_, uv.ntk_trace_])
    for trajectory in (
        states,
        states.T,
        {"delta_f": states[:, 0], "ntk": states[:, 1]},
    ):
        fig, ax = plt.subplots()
        plot_uv_vector_field(
            kappa=uv.kappa_,
            y=1.0,
            learning_rate=uv.learning_rate,
            trajectory=trajectory,
            colorbar=False,
            ax=ax,
        )
        (traj,) = _by_gid(ax, "trajectory")
        assert_allclose(traj.get_xydata(), states, rtol=0)


def test_uv_vector_field_bad_input():
    X, y = _one_example()
    uv = UVRegressor(8, learning_rate=0.5, max_iter=5, random_state=0).fit(X, y)
    common = {"y": 1.0, "learning_rate": 0.5}
    with pytest.raises(ValueError, match="kappa=2.*kappa="):
        plot_uv_vector_field(kappa=2.0, trajectory=uv, **common)
    with pytest.raises(ValueError, match="learning_rate"):
        plot_uv_vector_field(kappa=uv.kappa_, y=1.0, learning_rate=0.6, trajectory=uv)
    with pytest.raises(ValueError, match="kappa must be a positive"):
        plot_uv_vector_field(kappa=-1.0, **common)
    with pytest.raises(ValueError, match="kind"):
        plot_uv_vector_field(kappa=1.0, kind="arrows", **common)
    with pytest.raises(ValueError, match="'ntk'"):
        plot_uv_vector_field(kappa=1.0, trajectory={"delta_f": [0.1]}, **common)
    with pytest.raises(ValueError, match="shape"):
        plot_uv_vector_field(kappa=1.0, trajectory=np.zeros((3, 3)), **common)
    with pytest.raises(ValueError, match="increasing"):
        plot_uv_vector_field(kappa=1.0, delta_f_lim=(1.0, -1.0), **common)
    with pytest.raises(NotFittedError):
        plot_uv_vector_field(kappa=1.0, trajectory=UVRegressor(), **common)


def test_plot_sharpness_of_a_fitted_mlp(tmp_path):
    mlp_module = pytest.importorskip("sharpsk._mlp")
    from sharpsk.datasets import load_digits_onehot

    X, Y = load_digits_onehot(n_samples=100, random_state=0)
    mlp = mlp_module.MLPRegressor(
        (16,),
        learning_rate=1.5,
        lr_units="initial_sharpness",
        max_iter=20,
        record_every=5,
        random_state=0,
    ).fit(X, Y)
    fig, ax = plt.subplots(layout="constrained")
    plot_sharpness(mlp, ax=ax)
    _render(ax, tmp_path, "sharpness_mlp_real")
    (edge,) = _by_gid(ax, "edge")
    assert_allclose(edge.get_ydata()[0], 2.0 / mlp.learning_rate_, rtol=1e-15)
    (sharp,) = _by_gid(ax, "sharpness")
    assert_array_equal(sharp.get_xdata(), mlp.steps_)
    (loss_ax,) = [a for a in fig.axes if a.get_label() == "loss"]
    (loss,) = _by_gid(loss_ax, "loss")
    assert_array_equal(loss.get_xdata(), mlp.steps_)


# --------------------------------------------------------------------------
# A real LearningRateScan: its results_ and trace_tails_ plot as they are
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scan():
    from sharpsk import LearningRateScan

    X, y = _one_example()
    uv = UVRegressor(width=1, max_iter=1000, random_state=3)
    rates = np.linspace(0.5, 2.0, 16)
    return LearningRateScan(uv, learning_rates=rates, progress=False).fit(X, y)


def test_scan_bifurcation_with_results_joined(scan, tmp_path):
    eta_c = scan.results_["critical_learning_rate"][0]
    tails = scan.trace_tails_
    fig, ax = plt.subplots()
    plot_bifurcation(scan, lr_units="critical", hue="label", ax=ax)
    _render(ax, tmp_path, "scan_bifurcation")
    (points,) = _by_gid(ax, "points")
    offsets = points.get_offsets()
    assert len(offsets) == len(tails["run"])
    assert_allclose(offsets[:, 0], tails["learning_rate"] / eta_c, rtol=1e-15)
    assert_allclose(offsets[:, 1], tails["eta_sharpness"], rtol=1e-15)
    run_labels = scan.results_["label"][tails["run"]]
    expected = [to_rgba(LABEL_COLORS[v]) for v in run_labels]
    assert_allclose(points.get_facecolors(), expected, rtol=0, atol=1e-12)
    # The same from saved tables: the tail alone lacks eta_c, results add it.
    saved_tails = pd.DataFrame(tails)
    with pytest.raises(ValueError, match="'critical_learning_rate'"):
        plot_bifurcation(saved_tails, lr_units="critical")
    fig, ax = plt.subplots()
    plot_bifurcation(
        saved_tails, results=pd.DataFrame(scan.results_), lr_units="critical", ax=ax
    )
    assert_allclose(ax.collections[0].get_offsets(), offsets, rtol=0)
    # The tail's own eta * lambda_H column plots the same points unscaled.
    fig, ax = plt.subplots()
    plot_bifurcation(tails, y="eta_sharpness", scaled=False, show_edge=False, ax=ax)
    assert_allclose(ax.collections[0].get_offsets()[:, 1], offsets[:, 1], rtol=0)


def test_scan_phase_strip_lyapunov_and_results_dict(scan, tmp_path):
    fig, axes = plt.subplots(2, 1, figsize=(6, 5), layout="constrained")
    plot_phase_diagram(scan, lr_units="initial_sharpness", ax=axes[0])
    plot_lyapunov(scan.results_, ax=axes[1])
    _render(axes[0], tmp_path, "scan_strip_lyapunov")
    mesh, colors = _cell_colors(axes[0])
    expected = [to_rgba(LABEL_COLORS[v]) for v in scan.results_["label"]]
    assert_allclose(colors, expected, rtol=0, atol=1e-12)
    edges = mesh.get_coordinates()[0, :, 0]
    assert_allclose(0.5 * (edges[1:] + edges[:-1]), scan.results_["c"], rtol=1e-12)
    finite = np.isfinite(scan.results_["lyapunov"])
    assert len(axes[1].collections[0].get_offsets()) == finite.sum()


def test_scan_2d_phase_diagram_numeric_and_categorical(tmp_path):
    from sharpsk import LearningRateScan

    X, y = _one_example()
    rates = np.linspace(0.5, 2.0, 6)
    uv = UVRegressor(width=1, max_iter=300, random_state=3)
    scan = LearningRateScan(
        uv, learning_rates=rates, param_name="init_scale", param_values=[0.5, 1, 2]
    )
    scan.set_params(progress=False).fit(X, y)
    fig, ax = plt.subplots()
    plot_phase_diagram(scan, ax=ax)  # y defaults to the scan's param_ column
    _render(ax, tmp_path, "scan_phase_numeric")
    mesh, colors = _cell_colors(ax)
    assert mesh.get_array().shape == (3, 6)
    expected = [to_rgba(LABEL_COLORS[v]) for v in scan.labels_.ravel()]
    assert_allclose(colors, expected, rtol=0, atol=1e-12)
    assert ax.get_ylabel() == "init_scale"

    uv = UVRegressor(width=4, max_iter=100, random_state=3)
    scan = LearningRateScan(
        uv,
        learning_rates=rates,
        param_name="parameterization",
        param_values=["ntk", "sp", "mup"],
        progress=False,
    ).fit(X, y)
    fig, ax = plt.subplots()
    plot_phase_diagram(scan.results_, y="param_parameterization", ax=ax)
    _render(ax, tmp_path, "scan_phase_categorical")
    mesh, colors = _cell_colors(ax)
    assert mesh.get_array().shape == (3, 6)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["ntk", "sp", "mup"]
    assert_allclose(ax.get_yticks(), [0, 1, 2])
    expected = [to_rgba(LABEL_COLORS[v]) for v in scan.labels_.ravel()]
    assert_allclose(colors, expected, rtol=0, atol=1e-12)
    assert ax.get_ylabel() == "parameterization"


def test_plot_normalize_is_deprecated(uv_scan):
    tail = uv_scan["tail"]
    fig, ax = plt.subplots()
    with pytest.warns(FutureWarning, match="lr_units"):
        plot_bifurcation(tail, normalize="critical", ax=ax)
    new = plt.subplots()[1]
    plot_bifurcation(tail, lr_units="critical", ax=new)
    assert_array_equal(
        ax.collections[0].get_offsets(), new.collections[0].get_offsets()
    )


def test_plot_bad_input_names_the_culprit():
    # Regression (issue 13): a ZeroDivisionError and an IndexError before.
    uv = UVRegressor(4, max_iter=5).fit(np.ones((1, 2)), np.ones(1))
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="learning_rate must be a positive"):
            plot_sharpness(uv, learning_rate=bad)
    empty = pd.DataFrame({"learning_rate": [], "label": []})
    with pytest.raises(ValueError, match="no rows"):
        plot_phase_diagram(empty)


def test_plot_sharpness_of_a_schedule_and_a_warm_restart():
    # Regression: learning_rate_ per record crashed plot_sharpness, and the
    # infinite threshold of eta = 0 (a warm-up from 0) hid the edge line.
    from sharpsk import LinearWarmup, MLPRegressor
    from sharpsk.datasets import load_digits_onehot

    X, Y = load_digits_onehot(n_samples=40, random_state=0)
    warm = MLPRegressor(
        (5,), max_iter=20, learning_rate=LinearWarmup(0.5, 10), random_state=0
    ).fit(X, Y)
    fig, ax = plt.subplots()
    plot_sharpness(warm, ax=ax)
    (edge,) = _by_gid(ax, "edge")
    assert_allclose(edge.get_ydata(), warm.stability_threshold_)
    assert np.isinf(edge.get_ydata()[0])
    est = MLPRegressor((5,), max_iter=5, learning_rate=0.5, warm_start=True)
    est.set_params(random_state=0).fit(X, Y)
    est.set_params(learning_rate=0.25).fit(X, Y)
    fig, ax = plt.subplots()
    plot_sharpness(est, ax=ax)
    (edge,) = _by_gid(ax, "edge")
    assert_allclose(np.unique(edge.get_ydata()), [4.0, 8.0])


def test_plots_say_why_they_cannot_draw(uv_scan):
    # Regression (issue 12): an empty Axes without a word, and "not fitted"
    # for a fitted scan.
    runs = pd.DataFrame(
        {
            "learning_rate": [0.1, 0.2],
            "lyapunov": [np.nan, np.nan],
            "label": ["eos"] * 2,
        }
    )
    with pytest.raises(ValueError, match="compute_lyapunov=True"):
        plot_lyapunov(runs)
    scan = LearningRateScan(
        UVRegressor(4, max_iter=20, random_state=0),
        learning_rates=[0.1],
        progress=False,
    ).fit(np.ones((1, 2)), np.ones(1))
    with pytest.raises(TypeError, match="plot_bifurcation"):
        plot_sharpness(scan)


def test_scan_plots_use_the_scan_units_by_default():
    # Regression (issue 12): a scan run in eta/eta_c was plotted against eta.
    scan = LearningRateScan(
        UVRegressor(4, max_iter=50, random_state=0),
        learning_rates=[0.5, 0.9, 1.1],
        lr_units="critical",
        progress=False,
    ).fit(np.ones((1, 2)), np.ones(1))
    assert scan.lr_units_ == "critical"
    for plot in (plot_phase_diagram, plot_bifurcation, plot_lyapunov):
        fig, ax = plt.subplots()
        plot(scan, ax=ax)
        assert ax.get_xlabel() == r"$\eta\,/\,\eta_c$", plot.__name__
        fig, ax = plt.subplots()
        plot(scan, lr_units="absolute", ax=ax)
        assert "eta_c" not in ax.get_xlabel()


# --------------------------------------------------------------------------
# seaborn's API (issue 12): hue on any column, palettes, hue_order, legend,
# vectors, FacetGrid.map_dataframe and the figure-level scanplot
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def grid_scan():
    """Tidy results and tails of a UV scan over eta x width x init_scale.

    Two 2-D scans (``param_width``) stacked with a ``param_init_scale``
    column: the layout of a scan over several parameters at once.
    """
    X, y = _one_example()
    results, tails = [], []
    for scale in (0.5, 1.0):
        scan = LearningRateScan(
            UVRegressor(max_iter=300, init_scale=scale, random_state=3),
            learning_rates=np.linspace(0.5, 2.0, 6),
            param_name="width",
            param_values=[1, 4, 16],
            progress=False,
        ).fit(X, y)
        runs = pd.DataFrame(scan.results_).assign(param_init_scale=scale)
        tail = pd.DataFrame(scan.trace_tails_).assign(param_init_scale=scale)
        tail["label"] = scan.results_["label"][tail["run"]]
        results.append(runs)
        tails.append(tail)
    return {
        "results": pd.concat(results, ignore_index=True),
        "tails": pd.concat(tails, ignore_index=True),
    }


def _colors(artist):
    return np.asarray(artist.get_facecolors())


def test_hue_on_a_numeric_param_column_uses_a_colormap(grid_scan):
    # Regression (issue 12): hue="param_width" raised (only labels had colours).
    runs = grid_scan["results"]
    finite = np.isfinite(runs["lyapunov"]).to_numpy()
    width = runs["param_width"].to_numpy()[finite]
    fig, ax = plt.subplots()
    plot_lyapunov(runs, hue="param_width", ax=ax)
    (points,) = _by_gid(ax, "points")
    cmap = sns.color_palette("ch:", as_cmap=True)  # seaborn's numeric default
    expected = cmap((width - 1.0) / (16.0 - 1.0))
    assert_allclose(_colors(points), expected, rtol=0, atol=1e-12)
    texts, handles = _legend(ax)
    assert texts == ["1", "4", "16"]  # three levels: all of them ("auto")
    assert ax.get_legend().get_title().get_text() == "width"
    assert [_handle_color(h) for h in handles] == [
        tuple(cmap((w - 1.0) / 15.0)) for w in (1, 4, 16)
    ]
    # One grey line per width (the other scanned parameter), not a zigzag.
    lines = _by_gid(ax, "line")
    assert len(lines) == 3 * 2  # each width at each init scale
    for line in lines:
        assert np.all(np.diff(line.get_xdata()) > 0)


def test_named_palettes_continuous_and_qualitative(grid_scan):
    # Regression (issue 12): palette="viridis" raised.
    runs = grid_scan["results"]
    width = runs["param_width"].to_numpy()
    fig, ax = plt.subplots()
    plot_phase_diagram(
        runs[runs["param_init_scale"] == 1.0],
        hue="param_width",
        palette="viridis",
        ax=ax,
    )
    mesh, colors = _cell_colors(ax)
    viridis = sns.color_palette("viridis", as_cmap=True)
    cells = np.sort(np.unique(width))  # rows of the grid: widths 1, 4, 16
    expected = np.repeat(viridis((cells - 1.0) / 15.0), 6, axis=0)
    assert_allclose(colors, expected, rtol=0, atol=1e-12)
    # A qualitative palette makes the numbers categories, one colour each.
    fig, ax = plt.subplots()
    plot_lyapunov(runs, hue="param_width", palette="Set2", ax=ax)
    finite = np.isfinite(runs["lyapunov"]).to_numpy()
    set2 = dict(zip([1, 4, 16], sns.color_palette("Set2", 3), strict=True))
    expected = [to_rgba(set2[w]) for w in width[finite]]
    assert_allclose(_colors(_by_gid(ax, "points")[0]), expected, rtol=0, atol=1e-12)
    texts, handles = _legend(ax)
    assert texts == ["1", "4", "16"]
    assert [_handle_color(h) for h in handles] == [to_rgba(set2[w]) for w in (1, 4, 16)]
    with pytest.raises(ValueError, match="palette='nope'"):
        plot_lyapunov(runs, hue="param_width", palette="nope")
    with pytest.raises(ValueError, match=r"no colour for hue value\(s\) \[16\]"):
        plot_lyapunov(runs, hue="param_width", palette={1: "r", 4: "b"})
    with pytest.raises(ValueError, match="hue_norm needs numbers"):
        plot_lyapunov(runs, hue_norm=(0, 1))


def test_label_hue_keeps_the_fixed_colours_in_every_order(grid_scan):
    runs = grid_scan["tails"]
    fig, ax = plt.subplots()
    order = ["chaotic", "converge", "eos"]
    plot_bifurcation(runs, hue="label", hue_order=order, ax=ax)
    (points,) = _by_gid(ax, "points")
    labels = runs["label"].to_numpy()
    shown = np.isin(labels, order) & np.isfinite(runs["sharpness"]).to_numpy()
    assert len(points.get_offsets()) == shown.sum()  # hue_order also subsets
    expected = [to_rgba(LABEL_COLORS[v]) for v in labels[shown]]
    assert_allclose(_colors(points), expected, rtol=0, atol=1e-12)
    texts, handles = _legend(ax)
    assert texts == order
    assert [_handle_color(h) for h in handles] == [
        to_rgba(LABEL_COLORS[t]) for t in order
    ]
    # A named palette replaces the fixed colours, in the labels' own order.
    fig, ax = plt.subplots()
    plot_bifurcation(runs, hue="label", palette="Set2", ax=ax)
    texts, handles = _legend(ax)
    assert texts == [v for v in LABELS if v in set(labels)]
    set2 = sns.color_palette("Set2", len(texts))
    assert [_handle_color(h) for h in handles] == [to_rgba(c) for c in set2]
    # A dict overrides one label; the others keep theirs.
    fig, ax = plt.subplots()
    plot_bifurcation(runs, hue="label", palette={"eos": "black"}, ax=ax)
    texts, handles = _legend(ax)
    assert _handle_color(handles[texts.index("eos")]) == to_rgba("black")
    assert _handle_color(handles[texts.index("chaotic")]) == to_rgba(
        LABEL_COLORS["chaotic"]
    )


def test_hue_order_on_numbers_and_legend_modes(grid_scan):
    # Regression (issue 12): hue_order and legend=False raised.
    runs = grid_scan["results"]
    fig, ax = plt.subplots()
    plot_lyapunov(runs, hue="param_width", hue_order=[16, 1], ax=ax)
    texts, handles = _legend(ax)
    assert texts == ["16", "1"]  # categories, in the given order
    cycle = sns.color_palette(n_colors=2)
    assert [_handle_color(h) for h in handles] == [to_rgba(c) for c in cycle]
    widths = runs["param_width"].to_numpy()
    finite = np.isfinite(runs["lyapunov"]).to_numpy()
    shown = finite & (widths != 4)
    assert len(_by_gid(ax, "points")[0].get_offsets()) == shown.sum()

    for plot, kws in [
        (plot_lyapunov, {}),
        (plot_phase_diagram, {"y": "param_width"}),
        (plot_bifurcation, {"hue": "label"}),
    ]:
        data = grid_scan["tails" if plot is plot_bifurcation else "results"]
        data = data[data["param_init_scale"] == 0.5]
        fig, ax = plt.subplots()
        plot(data, legend=False, ax=ax, **kws)
        assert ax.get_legend() is None, plot.__name__
    # Many numbers: "auto" and "brief" list a few round values, "full" all.
    counts = {}
    for legend in ("auto", "brief", "full"):
        fig, ax = plt.subplots()
        plot_lyapunov(runs, hue="lyapunov", legend=legend, ax=ax)
        texts, _ = _legend(ax)
        counts[legend] = len(texts)
    assert counts["full"] == len(np.unique(runs["lyapunov"][finite]))
    assert counts["auto"] == counts["brief"] < counts["full"]
    with pytest.raises(ValueError, match="legend must be"):
        plot_lyapunov(runs, legend="some")


def test_vectors_for_x_y_and_hue(grid_scan):
    # Regression (issue 12): an array as x raised.
    runs = grid_scan["results"]
    runs = runs[runs["param_init_scale"] == 0.5]
    finite = np.isfinite(runs["lyapunov"]).to_numpy()
    c = runs["c"].to_numpy()
    fig, ax = plt.subplots()
    plot_lyapunov(runs, x=c, ax=ax)
    assert_allclose(_by_gid(ax, "points")[0].get_offsets()[:, 0], c[finite])
    assert ax.get_xlabel() == ""  # an unnamed vector: no label, as in seaborn
    fig, ax = plt.subplots()
    plot_lyapunov(runs, x=pd.Series(2 * c, name="twice c"), ax=ax)
    assert ax.get_xlabel() == "twice c"
    # Without data, every variable is a vector.
    exps = runs["lyapunov"].to_numpy()
    fig, ax = plt.subplots()
    plot_lyapunov(x=c, y=exps, hue=runs["label"].to_list(), ax=ax)
    (points,) = _by_gid(ax, "points")
    assert_allclose(points.get_offsets(), np.column_stack([c, exps])[finite])
    expected = [to_rgba(LABEL_COLORS[v]) for v in runs["label"][finite]]
    assert_allclose(_colors(points), expected, rtol=0, atol=1e-12)
    assert ax.get_legend().get_title().get_text() == ""
    fig, ax = plt.subplots()
    plot_sharpness(x=np.arange(5), y=np.linspace(1, 2, 5), learning_rate=1.0, ax=ax)
    assert_array_equal(_by_gid(ax, "sharpness")[0].get_xdata(), np.arange(5))
    with pytest.raises(ValueError, match="x has 3 values but data has 18 rows"):
        plot_lyapunov(runs, x=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="hue must be a column name or a 1-D"):
        plot_lyapunov(runs, hue=np.zeros((18, 2)))
    with pytest.raises(ValueError, match="could not interpret hue='colour'"):
        plot_lyapunov(runs, hue="colour")
    with pytest.raises(ValueError, match="could not interpret x='learning_rate'"):
        plot_lyapunov(y=exps)
    X, y = _one_example()
    uv = UVRegressor(4, learning_rate=0.5, max_iter=5, random_state=0).fit(X, y)
    with pytest.raises(ValueError, match="one run"):
        plot_sharpness(uv, hue="learning_rate")


def test_plot_sharpness_palette_hue_order_and_no_legend():
    frame = pd.DataFrame(
        {
            "step": np.tile(np.arange(5), 3),
            "sharpness": np.linspace(1, 2, 15),
            "learning_rate": 0.5,
            "optimizer": np.repeat(["gd", "momentum", "adam"], 5),
        }
    )
    fig, ax = plt.subplots()
    order = ["adam", "gd"]
    plot_sharpness(frame, hue="optimizer", hue_order=order, palette="dark", ax=ax)
    lines = _by_gid(ax, "sharpness")
    dark = sns.color_palette("dark", 2)
    assert [to_rgba(line.get_color()) for line in lines] == [to_rgba(c) for c in dark]
    assert_array_equal(lines[0].get_ydata(), frame["sharpness"][10:])  # adam
    texts, _ = _legend(ax)
    assert texts[:2] == ["optimizer = adam", "optimizer = gd"]
    fig, ax = plt.subplots()
    plot_sharpness(frame, hue="optimizer", legend=False, ax=ax)
    assert ax.get_legend() is None


def test_facetgrid_map_dataframe(grid_scan):
    # Regression (issue 12): map_dataframe(plot_lyapunov) failed on color.
    runs = grid_scan["results"]
    g = sns.FacetGrid(runs, col="param_init_scale")
    g.map_dataframe(plot_lyapunov, x="learning_rate", y="lyapunov")
    for ax, (scale, part) in zip(
        g.axes.flat, runs.groupby("param_init_scale"), strict=True
    ):
        (points,) = _by_gid(ax, "points")
        part = part[np.isfinite(part["lyapunov"])]
        assert len(points.get_offsets()) == len(part), scale
        expected = [to_rgba(LABEL_COLORS[v]) for v in part["label"]]
        assert_allclose(_colors(points), expected, rtol=0, atol=1e-12)
    # Without hue, FacetGrid's colour colours the points.
    g = sns.FacetGrid(runs, col="param_width")
    g.map_dataframe(plot_lyapunov, hue=None, color="C3")
    for ax in g.axes.flat:
        assert np.all(_colors(_by_gid(ax, "points")[0]) == to_rgba("C3"))
    g = sns.FacetGrid(grid_scan["tails"], row="param_init_scale", col="param_width")
    g.map_dataframe(plot_bifurcation)
    assert all(len(_by_gid(ax, "points")) == 1 for ax in g.axes.flat)
    g = sns.FacetGrid(runs, col="param_init_scale")
    g.map_dataframe(plot_phase_diagram, y="param_width")
    assert all(_by_gid(ax, "phases") for ax in g.axes.flat)


def test_scanplot_facets_by_the_parameter_columns(grid_scan, tmp_path):
    runs = grid_scan["results"]
    g = scanplot(runs, col="param_init_scale", height=2)
    assert isinstance(g, sns.FacetGrid)
    assert g.axes.shape == (1, 2)
    assert [ax.get_title() for ax in g.axes.flat] == [
        "init_scale = 0.5",
        "init_scale = 1.0",
    ]
    # Each panel is the phase diagram of its runs: eta x width.
    for ax, (_, part) in zip(
        g.axes.flat, runs.groupby("param_init_scale"), strict=True
    ):
        mesh, colors = _cell_colors(ax)
        assert mesh.get_array().shape == (3, 6)
        expected = [to_rgba(LABEL_COLORS[v]) for v in part["label"]]
        assert_allclose(colors, expected, rtol=0, atol=1e-12)
        assert ax.get_legend() is None  # one legend, for the figure
    assert g.axes[0, 0].get_ylabel() == "width"
    assert g.axes[0, 1].get_ylabel() == ""  # inner panels, as in relplot
    assert g.axes[0, 0].get_xlabel() == r"learning rate $\eta$"
    legend_texts = [t.get_text() for t in g.legend.get_texts()]
    assert legend_texts == [v for v in LABELS if v in set(runs["label"])]
    g.savefig(tmp_path / "scanplot.png", dpi=50)

    # Rows and columns, and a numeric hue with one colour scale for all panels.
    g = scanplot(
        runs,
        kind="lyapunov",
        row="param_init_scale",
        col="param_width",
        hue="learning_rate",
        palette="viridis",
        height=1.5,
    )
    assert g.axes.shape == (2, 3)
    assert g.axes[1, 2].get_title() == "init_scale = 1.0 | width = 16"
    viridis = sns.color_palette("viridis", as_cmap=True)
    for ax in g.axes.flat:
        (points,) = _by_gid(ax, "points")
        eta = points.get_offsets()[:, 0]
        assert_allclose(_colors(points), viridis((eta - 0.5) / 1.5), atol=1e-12)
    assert [t.get_text() for t in g.legend.get_texts()] == [
        "0.5",
        "0.8",
        "1.1",
        "1.4",
        "1.7",
        "2",
    ]
    # Wrapped columns; the tails of each run for a bifurcation diagram.
    g = scanplot(
        grid_scan["tails"],
        kind="bifurcation",
        col="param_width",
        col_wrap=2,
        hue="label",
        height=1.5,
    )
    assert g.axes.shape == (3,)
    assert [ax.get_title() for ax in g.axes] == ["width = 1", "width = 4", "width = 16"]
    assert g.axes[0].get_ylabel() == r"$\eta\,\lambda^{\mathrm{H}}$"
    # Tidy traces, one line per run coloured by its learning rate.
    tails = grid_scan["tails"]
    tails = tails[tails["param_init_scale"] == 0.5]
    g = scanplot(
        tails, kind="sharpness", col="param_width", hue="learning_rate", height=1.5
    )
    for ax, (_, part) in zip(g.axes.flat, tails.groupby("param_width"), strict=True):
        assert len(_by_gid(ax, "sharpness")) == part["learning_rate"].nunique()
    texts = [t.get_text() for t in g.legend.get_texts()]
    etas = np.unique(tails["learning_rate"])
    assert texts[: len(etas)] == [f"learning_rate = {eta:g}" for eta in etas]


def test_scanplot_of_a_fitted_scan_and_bad_input(grid_scan):
    X, y = _one_example()
    scan = LearningRateScan(
        UVRegressor(max_iter=200, random_state=3),
        learning_rates=[0.5, 0.9, 1.1, 1.3],
        lr_units="critical",
        param_name="width",
        param_values=[1, 4, 16],
        progress=False,
    ).fit(X, y)
    assert np.all(scan.labels_[2] == "diverge")  # width 16: no tail at all
    g = scanplot(scan, kind="bifurcation", col="param_width", hue="label")
    assert g.axes.shape == (1, 3)  # still a panel for width 16, empty
    assert g.axes[0, 2].get_title() == "width = 16"
    assert _by_gid(g.axes[0, 2], "points") == []
    assert g.axes[0, 0].get_xlabel() == r"$\eta\,/\,\eta_c$"  # the scan's units
    points = [_by_gid(ax, "points")[0] for ax in g.axes.flat[:2]]
    assert sum(len(p.get_offsets()) for p in points) == len(scan.trace_tails_["run"])
    # No finite exponent in a panel: it stays empty (alone, plot_lyapunov says why).
    g = scanplot(scan, kind="lyapunov", col="param_width")
    assert [len(_by_gid(ax, "points")) for ax in g.axes.flat] == [1, 1, 0]
    runs = grid_scan["results"]
    with pytest.raises(ValueError, match="kind must be one of"):
        scanplot(runs, kind="scatter")
    with pytest.raises(ValueError, match="could not interpret col='param_depth'"):
        scanplot(runs, col="param_depth")
    with pytest.raises(ValueError, match="2 parameter columns.*pass y="):
        scanplot(runs)  # two parameter axes and no facet: which one is y?
    with pytest.raises(ValueError, match="pass y="):
        plot_phase_diagram(runs)
    with pytest.raises(TypeError, match="takes no ax"):
        scanplot(runs, col="param_width", ax=plt.gca())
    with pytest.raises(TypeError, match="kind='bifurcation'"):
        scanplot(scan, kind="sharpness")


def test_phase_diagram_cells_survive_unit_rounding():
    # Regression: eta / eta_c (or eta * lambda_H0) of a grid differs from the
    # grid by rounding, differently per row, which split columns into slivers
    # and left blank cells.
    from sharpsk.plotting import _snap

    grid = np.linspace(0.1, 3.0, 12)
    rows = np.concatenate([grid * (1 + 1e-15), grid * (1 - 1e-15)])
    snapped = _snap(rows)
    assert np.unique(snapped).size == 12
    assert_allclose(snapped[:12], grid, rtol=1e-14)
    assert np.unique(_snap(np.array([1.0, 1.0 + 1e-6]))).size == 2
    frame = pd.DataFrame(
        {
            "learning_rate": rows,
            "param_width": np.repeat([2, 4], 12),
            "label": ["converge"] * 24,
        }
    )
    ax = plot_phase_diagram(frame, y="param_width")
    mesh = ax.collections[0]
    cells = mesh.get_array()
    assert cells.size == 24 and cells.count() == 24  # 2 x 12, none blank
    plt.close("all")
