"""Plots of sharpness dynamics in the style of seaborn's function API.

Every axes-level function takes its data first (a tidy
:class:`pandas.DataFrame` such as ``scan.to_frame()``, a ``results_``-style
dict of equal-length 1-D arrays such as a saved scan, or a fitted estimator /
scan where that is natural), everything else as keywords, draws on ``ax``
(default: the current Axes) and returns that Axes.  As in seaborn, ``x``,
``y`` and ``hue`` are column names or vectors (one value per row); ``hue``
may be any column, coloured by ``palette`` in ``hue_order`` (numbers through
a colormap scaled by ``hue_norm``), with a ``legend`` that is ``"auto"``,
``"brief"``, ``"full"`` or False.  Run labels keep their fixed
:data:`LABEL_COLORS`.  A ``color`` keyword colours a plot without ``hue``,
so the functions work with :meth:`seaborn.FacetGrid.map_dataframe`.
:func:`scanplot` is the figure-level function: one facet per value of a
scan's parameter columns, the way :func:`seaborn.relplot` facets.

This module imports matplotlib and seaborn, so ``import sharpsk`` does not
import it: use ``from sharpsk import plotting`` or
``from sharpsk.plotting import ...``.

Artists that tests and users may want to find again carry a ``gid``
(``artist.get_gid()``): ``"sharpness"``, ``"ntk"``, ``"edge"`` (the
``2 / eta`` line), ``"loss"``, ``"points"``, ``"zero"``, ``"line"``,
``"phases"``, ``"field"``, ``"fixed_points_stable"``,
``"fixed_points_unstable"``, ``"nullcline"``, ``"eos_manifold"``,
``"unreachable"``, ``"trajectory"``, ``"start"``.

The loss twin axis of :func:`plot_sharpness`, the colour bar of
:func:`plot_uv_vector_field` and the outside legend of
:func:`plot_phase_diagram` need room at the right of the figure: save with
``fig.savefig(..., bbox_inches="tight")`` or create the figure with
``layout="constrained"``.
"""

import inspect
import warnings
from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.colors import (
    BoundaryNorm,
    Colormap,
    ListedColormap,
    LogNorm,
    Normalize,
    to_rgba_array,
)
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import LogLocator, MaxNLocator
from seaborn.palettes import QUAL_PALETTES
from sklearn.exceptions import NotFittedError

from ._dynamics import GD, eos_manifold_ntk
from ._engine import LR_UNITS
from ._maps import uv_step

__all__ = [
    "LABEL_COLORS",
    "plot_bifurcation",
    "plot_lyapunov",
    "plot_phase_diagram",
    "plot_sharpness",
    "plot_spectral_density",
    "plot_uv_vector_field",
    "scanplot",
]

#: Fixed colour of each run label (Okabe-Ito colour-blind-safe palette):
#: converge blue, eos bluish green, periodic orange, chaotic vermillion,
#: diverge grey.  Every plot colours labels with these; pass a ``palette``
#: dict to override some of them.
LABEL_COLORS = {
    "converge": "#0072B2",
    "eos": "#009E73",
    "periodic": "#E69F00",
    "chaotic": "#D55E00",
    "diverge": "#999999",
}

_AXIS_LABELS = {
    "learning_rate": r"learning rate $\eta$",
    "step": "step",
    "lyapunov": "largest Lyapunov exponent",
    "sharpness": r"sharpness $\lambda^{\mathrm{H}}$",
    "ntk": r"NTK $\lambda$",
}

_LEGEND_MODES = ("auto", "brief", "full")
_BRIEF_TICKS = 6  # seaborn's: "auto" lists at most this many numeric levels


# --------------------------------------------------------------------------
# Data handling shared by the plots
# --------------------------------------------------------------------------


def _as_frame(data, func):
    """A DataFrame from a DataFrame, a dict of columns or a fitted scan.

    None gives an empty frame: the variables are then vectors (see
    :func:`_assign`).
    """
    if isinstance(data, pd.DataFrame):
        return data
    if data is None:
        return pd.DataFrame()
    if not isinstance(data, Mapping):
        if hasattr(data, "results_"):
            data = data.results_
        elif hasattr(data, "fit"):
            raise NotFittedError(
                f"{func}: this {type(data).__name__} is not fitted yet; call fit first."
            )
        else:
            raise TypeError(
                f"{func}: data must be a pandas DataFrame, a dict of 1-D arrays or "
                f"a fitted scan, got {type(data).__name__}."
            )
        if isinstance(data, pd.DataFrame):
            return data
    columns, scalars = {}, {}
    for key, value in data.items():
        if isinstance(value, (pd.DataFrame, Mapping)):
            continue  # nested tables (e.g. trace tails) are not columns
        ndim = np.ndim(value)
        if ndim == 1:
            columns[key] = np.asarray(value)
        elif ndim == 0:
            scalars[key] = value  # run-wide metadata, broadcast to every row
    lengths = {key: len(value) for key, value in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(
            f"{func}: the 1-D arrays of data must have equal lengths, got {lengths}."
        )
    frame = pd.DataFrame(columns)
    for key, value in scalars.items():
        if key not in frame:
            frame[key] = value
    return frame


def _assign(frame, func, **variables):
    """Resolve each variable, a column name or a vector, to a column name.

    As in seaborn: a string (or other scalar) names a column of ``frame``; a
    list, array or Series holds one value per row (matched by position) and
    is added to a copy of ``frame``, named after the Series or, unnamed,
    ``"_<variable>"`` (no axis label).  Returns the frame and the list of
    column names in the order of ``variables`` (None stays None).
    """
    names = {}
    for key, value in variables.items():
        if value is None or isinstance(value, str) or np.ndim(value) == 0:
            names[key] = value
            continue
        vector = np.asarray(value)
        if vector.ndim != 1:
            raise ValueError(
                f"{func}: {key} must be a column name or a 1-D vector, got an "
                f"array of shape {vector.shape}."
            )
        if len(frame.columns) == 0 and len(frame) == 0:
            frame = pd.DataFrame(index=pd.RangeIndex(len(vector)))
        if len(vector) != len(frame):
            raise ValueError(
                f"{func}: {key} has {len(vector)} values but data has "
                f"{len(frame)} rows."
            )
        name = getattr(value, "name", None)
        names[key] = name if isinstance(name, str) else f"_{key}"
        frame = frame.copy()
        frame[names[key]] = vector
    for key, name in names.items():
        if name is not None and name not in frame.columns:
            where = (
                "data has no columns (pass data, or vectors for the variables)"
                if len(frame.columns) == 0
                else f"available columns: {list(frame.columns)}"
            )
            raise ValueError(
                f"{func}: could not interpret {key}={name!r}: it is not a column "
                f"of data; {where}."
            )
    return frame, list(names.values())


def _require(frame, columns, func, why=""):
    """Raise a ValueError naming the first column missing from ``frame``."""
    for name in columns:
        if name is not None and name not in frame.columns:
            reason = f" (needed by {why})" if why else ""
            raise ValueError(
                f"{func}: column {name!r} not found in data{reason}; available "
                f"columns: {list(frame.columns)}."
            )


def _param_axes(frame, exclude=()):
    """The ``param_<name>`` columns of a scan that take more than one value."""
    return [
        c
        for c in frame.columns
        if isinstance(c, str)
        and c.startswith("param_")
        and c not in exclude
        and frame[c].nunique(dropna=False) > 1
    ]


def _x_units(lr_units, normalize, func, data=None):
    """The x-axis units: ``lr_units``, or the deprecated ``normalize``; by
    default those of a fitted scan given as ``data`` (its ``lr_units_``)."""
    if not (isinstance(normalize, str) and normalize == "deprecated"):
        warnings.warn(
            f"{func}: normalize was renamed lr_units in 0.2 (the vocabulary of "
            "the estimators and the scan) and will be removed in 0.3.",
            FutureWarning,
            stacklevel=3,
        )
        lr_units = normalize
    if lr_units is None:
        lr_units = getattr(data, "lr_units_", None) or "absolute"
    if lr_units not in LR_UNITS:
        raise ValueError(
            f"{func}: lr_units must be one of {LR_UNITS}, got {lr_units!r}."
        )
    return lr_units


def _normalized_x(frame, x, lr_units, func):
    """``frame[x]``, optionally in units of eta_c or of the initial sharpness.

    Returns the values and the axis label.
    """
    values = frame[x].to_numpy(dtype=float)
    if lr_units == "absolute":
        return values, _axis_label(x)
    column = "critical_learning_rate" if lr_units == "critical" else "initial_sharpness"
    _require(frame, [column], func, why=f"lr_units={lr_units!r}")
    reference = frame[column].to_numpy(dtype=float)
    if not np.any(np.isfinite(reference) & (reference > 0)):
        raise ValueError(
            f"{func}: lr_units={lr_units!r} needs a positive {column!r}, but "
            "the column has none (it is NaN when the estimator does not define "
            "it, e.g. critical_learning_rate off a single UV example)."
        )
    if lr_units == "critical":
        return values / reference, r"$\eta\,/\,\eta_c$"
    return values * reference, r"$c = \eta\,\lambda^{\mathrm{H}}_0$"


# --------------------------------------------------------------------------
# Colour: seaborn's hue rules, with fixed colours for the run labels
# --------------------------------------------------------------------------


def _is_numeric(values):
    """Whether hue values are numbers (booleans are categories)."""
    series = pd.Series(values)
    if pd.api.types.is_bool_dtype(series):
        return False
    if pd.api.types.is_numeric_dtype(series):
        return True
    present = series.dropna()
    return len(present) > 0 and _all_numbers(present)


def _all_numbers(column):
    """Whether an object column holds real numbers only."""
    return all(
        isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
        for v in column
    )


def _legend_mode(legend, func):
    """seaborn's ``legend``: True is ``"auto"``, False none."""
    if legend is True:
        return "auto"
    if legend is False or (isinstance(legend, str) and legend in _LEGEND_MODES):
        return legend
    raise ValueError(
        f"{func}: legend must be True, False, 'auto', 'brief' or 'full', got "
        f"{legend!r}."
    )


def _palette_colors(palette, n, func):
    """``n`` colours of a named palette or a list (seaborn's color_palette)."""
    try:
        return sns.color_palette(palette, n)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{func}: palette={palette!r}: {exc}") from None


class _HueMap:
    """One colour per value of a hue variable, by seaborn's rules.

    Run labels (categories among which ``"converge"``, ``"eos"``... appear)
    keep :data:`LABEL_COLORS`, updated by a ``palette`` dict, in their
    canonical order.  Numbers map through a colormap (``palette``, default
    seaborn's ``"ch:"``) scaled by ``norm``, unless a list or dict
    ``palette``, a qualitative palette name or an ``order`` makes them
    categories (seaborn ignores ``hue_order`` for numbers; here it means
    "these values, in this order").  Categories get the colours of
    ``palette`` (default: the colour cycle) in ``order`` (default: sorted
    numbers, else order of appearance).

    ``categories=True`` makes numbers categories unless ``norm`` is given
    (lines of a few runs, told apart by the colour cycle).

    ``levels`` are the categories (or the sorted values) and ``lookup`` their
    colours; ``palette`` and ``norm`` reproduce the same mapping on a subset
    of the data (for facets).
    """

    def __init__(self, values, palette, order, norm, func, categories=False):
        values = pd.Series(np.asarray(values))
        present = list(pd.unique(values.dropna()))
        numeric = _is_numeric(values)
        if norm is not None and not numeric:
            raise ValueError(f"{func}: hue_norm needs numbers as hue values.")
        categories = (
            categories
            or order is not None
            or isinstance(palette, (dict, list, tuple))
            or (isinstance(palette, str) and palette in QUAL_PALETTES)
        )
        self.numeric = numeric and (norm is not None or not categories)
        self.norm = None
        if self.numeric:
            self._numeric(values, palette, norm, func)
            return
        labels = any(v in LABEL_COLORS for v in present)
        if labels:
            if palette is None or isinstance(palette, dict):
                palette = {**LABEL_COLORS, **(palette or {})}
            known = palette if isinstance(palette, dict) else LABEL_COLORS
            levels = [k for k in known if k in present]
            levels += [v for v in present if v not in known]
        elif numeric:
            levels = sorted(present)
        else:
            levels = present
        self.levels = levels = list(levels if order is None else order)
        if isinstance(palette, dict):
            missing = [v for v in levels if v not in palette]
            missing = [v.item() if isinstance(v, np.generic) else v for v in missing]
            if missing:
                what = "label" if labels else "hue"
                has = ", known labels are " if labels else ", the palette has "
                raise ValueError(
                    f"{func}: no colour for {what} value(s) {missing}{has}"
                    f"{list(palette)} (pass palette={{value: colour}} to add "
                    "some)."
                )
            colors = [palette[v] for v in levels]
        elif palette is None and len(levels) > len(sns.color_palette()):
            colors = _palette_colors("husl", len(levels), func)
        else:
            colors = _palette_colors(palette, len(levels), func)
        self.lookup = dict(zip(levels, to_rgba_array(colors), strict=True))
        self.palette = self.lookup

    def _numeric(self, values, palette, norm, func):
        if palette is None:
            palette = "ch:"
        if isinstance(palette, Colormap):
            self.cmap = palette
        else:
            try:
                self.cmap = sns.color_palette(palette, as_cmap=True)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"{func}: palette={palette!r}: {exc}") from None
        if norm is None:
            norm = Normalize()
        elif isinstance(norm, tuple):
            norm = Normalize(*norm)
        elif not isinstance(norm, Normalize):
            raise ValueError(
                f"{func}: hue_norm must be None, a (vmin, vmax) tuple or a "
                f"matplotlib Normalize, got {norm!r}."
            )
        numbers = values.to_numpy(dtype=float)
        finite = numbers[np.isfinite(numbers)]
        if not norm.scaled() and finite.size:
            norm.autoscale_None(finite)
        self.norm, self.palette = norm, self.cmap
        self.levels = list(np.unique(finite))
        self.lookup = dict(zip(self.levels, self.cmap(norm(self.levels)), strict=True))

    def colors(self, values):
        """RGBA row per value, and whether it is drawn (a level, a finite number)."""
        values = np.asarray(values)
        if self.numeric:
            numbers = values.astype(float)
            drawn = np.isfinite(numbers)
            return self.cmap(self.norm(np.where(drawn, numbers, 0.0))), drawn
        codes = pd.Index(self.levels).get_indexer(values)
        table = np.array(list(self.lookup.values())).reshape(-1, 4)
        return table[np.maximum(codes, 0)], codes >= 0

    def legend_entries(self, legend, values):
        """``(text, colour)`` pairs of the levels among the drawn ``values``.

        Many numbers (``"brief"``, or ``"auto"`` past six levels) give a few
        round values across the colormap's range instead, as in seaborn.
        """
        if legend is False or len(values) == 0:
            return []
        if not self.numeric:
            present = set(pd.unique(np.asarray(values)))
            return [(_fmt(k), c) for k, c in self.lookup.items() if k in present]
        levels = np.unique(np.asarray(values, dtype=float))
        if legend == "brief" or (legend == "auto" and len(levels) > _BRIEF_TICKS):
            vmin, vmax = self.norm.vmin, self.norm.vmax
            if isinstance(self.norm, LogNorm):
                locator = LogLocator(numticks=_BRIEF_TICKS)
            else:
                locator = MaxNLocator(nbins=_BRIEF_TICKS)
            ticks = locator.tick_values(vmin, vmax)
            levels = ticks[(ticks >= vmin) & (ticks <= vmax)]
        return [(_fmt(v), self.cmap(self.norm(v))) for v in levels]


def _hue(frame, hue, palette, hue_order, hue_norm, func, categories=False):
    """The hue mapping of ``frame[hue]``, its colour per row and drawn rows."""
    if hue is None:
        return None, None, np.ones(len(frame), dtype=bool)
    hue_map = _HueMap(frame[hue], palette, hue_order, hue_norm, func, categories)
    rgba, drawn = hue_map.colors(frame[hue])
    return hue_map, rgba, drawn


def _hue_legend(ax, hue_map, legend, values, title, handle, **kwargs):
    """A legend of the hue levels among ``values``: markers, patches or lines."""
    entries = hue_map.legend_entries(legend, values)
    if not entries:
        return None
    make = {
        "marker": lambda c: Line2D(
            [], [], ls="none", marker="o", color=c, markeredgewidth=0
        ),
        "patch": lambda c: Patch(facecolor=c, edgecolor="none"),
        "line": lambda c: Line2D([], [], color=c, lw=1.5),
    }[handle]
    handles = [make(c) for _, c in entries]
    texts = [t for t, _ in entries]
    return ax.legend(handles, texts, title=title or None, **kwargs)


def _axis_label(name):
    """Axis label of a column: known names typeset, ``param_`` dropped; none
    for an unnamed vector."""
    if name in _AXIS_LABELS:
        return _AXIS_LABELS[name]
    return _hue_title(name)


def _hue_title(hue):
    """Legend title of a hue column: its name without ``param_``."""
    name = str(hue)
    if name.startswith("_"):
        return ""
    return name[len("param_") :] if name.startswith("param_") else name


def _get_ax(ax):
    return plt.gca() if ax is None else ax


def _fmt(value):
    """Short text of a group key (``0.5``, ``1e-03``, ``"ntk"``)."""
    if isinstance(value, (float, np.floating)):
        return f"{value:g}"
    return str(value)


# --------------------------------------------------------------------------
# Sharpness traces
# --------------------------------------------------------------------------


def _step_size(estimator):
    """The step size ``eta`` a regressor ran with.

    ``learning_rate_`` when fitted with a learning rate in other units (the
    MLP's ``lr_units``), else ``learning_rate``.
    """
    eta = getattr(estimator, "learning_rate_", None)
    eta = estimator.learning_rate if eta is None else eta
    return np.asarray(eta, dtype=float)  # one per record for a schedule


def _trace_frames(data, func, x, y, ntk, loss):
    """Sharpness and loss frames of a fitted regressor or of tidy data."""
    if hasattr(data, "fit") and not isinstance(data, (pd.DataFrame, Mapping)):
        if hasattr(data, "results_"):
            raise TypeError(
                f"{func}: a fitted {type(data).__name__} keeps the tails of its "
                "runs, not their traces: plot them with plot_bifurcation, or fit "
                "one run (e.g. the estimator at one learning rate) and plot that."
            )
        if not hasattr(data, "sharpness_trace_"):
            raise NotFittedError(
                f"{func}: this {type(data).__name__} is not fitted yet (no "
                "sharpness_trace_); call fit first."
            )
        steps = np.asarray(data.steps_)
        sharp = {x: steps, y: np.asarray(data.sharpness_trace_, dtype=float)}
        if getattr(data, "ntk_trace_", None) is not None:
            sharp[ntk] = np.asarray(data.ntk_trace_, dtype=float)
        sharp["learning_rate"] = _step_size(data)
        sharp["stability_threshold"] = np.asarray(
            getattr(data, "stability_threshold_", np.nan), dtype=float
        )
        if getattr(data, "preconditioned_sharpness_trace_", None) is not None:
            sharp["preconditioned"] = np.asarray(
                data.preconditioned_sharpness_trace_, dtype=float
            )
        loss_values = np.asarray(getattr(data, "loss_curve_", []), dtype=float)
        # The loss is recorded with the sharpness, or at every step from 0.
        loss_steps = steps if len(loss_values) == len(steps) else None
        if loss_steps is None:
            loss_steps = np.arange(len(loss_values))
        loss_frame = pd.DataFrame({x: loss_steps, loss: loss_values})
        loss_frame["learning_rate"] = sharp["learning_rate"]
        return pd.DataFrame(sharp), loss_frame
    frame = _as_frame(data, func)
    return frame, frame


def _edge_line(part, learning_rate, func):
    """The stability threshold of a run: a float, or one value per record.

    ``learning_rate`` (given) draws gradient descent's ``2 / eta``; else the
    run's ``stability_threshold`` column, else ``2 / eta`` of its
    ``learning_rate`` column.
    """
    if learning_rate is not None:
        return float(GD.stability_threshold(learning_rate))
    column = "stability_threshold"
    if column in part and not np.any(np.isnan(part[column])):  # inf: eta = 0
        values = part[column].to_numpy(dtype=float)
    else:
        _require(part, ["learning_rate"], func, why="the stability threshold line")
        etas = np.unique(part["learning_rate"].to_numpy(dtype=float))
        if len(etas) != 1:
            raise ValueError(
                f"{func}: column 'learning_rate' takes {len(etas)} values in one "
                "run and there is no 'stability_threshold' column; pass "
                "hue='learning_rate' or learning_rate=."
            )
        return float(GD.stability_threshold(etas[0]))
    if np.all(values == values[0]):
        return float(values[0])
    return values


def plot_sharpness(
    data=None,
    *,
    x="step",
    y="sharpness",
    ntk="ntk",
    loss="loss",
    learning_rate=None,
    hue=None,
    palette=None,
    hue_order=None,
    hue_norm=None,
    legend="auto",
    show_ntk=True,
    show_loss=True,
    show_edge=True,
    ax=None,
    **kwargs,
):
    """Plot the sharpness against step, with the ``2 / eta`` line and the loss.

    Parameters
    ----------
    data : fitted UVRegressor or MLPRegressor, DataFrame or dict of 1-D arrays
        A fitted regressor (its ``sharpness_trace_`` and ``ntk_trace_`` at
        ``steps_``, its ``loss_curve_``), or tidy data with one row per record
        and the columns named by ``x``, ``y``, ``ntk`` and ``loss``.  NaN
        entries are skipped, so the loss may be recorded at more steps than
        the sharpness.
    x, y : str or vector, default="step", "sharpness"
        Columns (or, with tidy data, vectors) of the step and of
        ``lambda_H``.
    ntk, loss : str, default="ntk", "loss"
        Columns of the NTK ``lambda`` and of the training loss, optional in
        the data.
    learning_rate : float, default=None
        The step size ``eta`` for the ``2 / eta`` line; by default the
        estimator's ``learning_rate_`` (or ``learning_rate``) or the data's
        ``learning_rate`` column (constant within each ``hue`` group).
    hue : str or vector, default=None
        Grouping of several runs (tidy data), one colour each (for example
        ``"learning_rate"``): all the lines of a run take its colour.
    palette : str, list, dict or Colormap, default=None
        Colours of the ``hue`` levels: the colour cycle by default, else a
        named palette (``"viridis"`` gives ordered shades), a list or a
        ``{value: colour}`` dict; run labels keep :data:`LABEL_COLORS`.
    hue_order : list, default=None
        Order (and subset) of the ``hue`` levels; by default sorted numbers,
        else order of appearance.
    hue_norm : tuple or Normalize, default=None
        Colour numeric ``hue`` through a colormap (``palette``, default
        seaborn's ``"ch:"``) over this range, as seaborn does; by default
        each level is a run with a colour of its own.
    legend : {"auto", "brief", "full"} or bool, default="auto"
        How to draw the legend: ``"brief"`` lists a few round values of a
        numeric ``hue``, ``"full"`` every level, ``"auto"`` picks; False
        draws none.
    show_ntk : bool, default=True
        Also plot the NTK ``lambda`` (dotted) when it is available.
    show_loss : bool, default=True
        Plot the loss on a twin y axis with a log scale (``get_label()`` of
        that Axes is ``"loss"``; find it in ``ax.figure.axes``).  Non-positive
        losses are skipped.
    show_edge : bool, default=True
        Draw the edge of stability ``lambda_H = 2 / eta`` (dashed).
    ax : matplotlib Axes, default=None
        Axes to draw on; the current Axes by default.
    **kwargs
        Passed to :meth:`~matplotlib.axes.Axes.plot` for the sharpness lines;
        ``color`` colours a single run.

    Returns
    -------
    ax : matplotlib Axes
        The Axes of the sharpness (the loss Axes is its twin).

    See Also
    --------
    plot_bifurcation : The long-time sharpness of many runs.
    scanplot : One panel per group of runs (``kind="sharpness"``).

    Examples
    --------
    >>> import numpy as np
    >>> from sharpsk import UVRegressor
    >>> import matplotlib.pyplot as plt
    >>> from sharpsk.plotting import plot_sharpness
    >>> X, y = np.full((1, 4), 0.5), np.array([1.0])
    >>> uv = UVRegressor(8, learning_rate=1.2, max_iter=60, random_state=0)
    >>> fig, ax = plt.subplots()
    >>> ax = plot_sharpness(uv.fit(X, y), ax=ax)
    >>> [line.get_gid() for line in ax.get_lines()]
    ['sharpness', 'ntk', 'edge']
    >>> float(ax.get_lines()[2].get_ydata()[0]) == 2 / 1.2
    True
    """
    func = "plot_sharpness"
    if learning_rate is not None and not (
        np.isscalar(learning_rate) and np.isfinite(learning_rate) and learning_rate > 0
    ):
        raise ValueError(
            f"{func}: learning_rate must be a positive number, got {learning_rate!r}."
        )
    legend = _legend_mode(legend, func)
    tidy = data is None or isinstance(data, (pd.DataFrame, Mapping))
    one_run = not tidy and hasattr(data, "sharpness_trace_")
    if one_run and not (isinstance(x, str) and isinstance(y, str) and hue is None):
        raise ValueError(
            f"{func}: a fitted {type(data).__name__} is one run: x and y name "
            "its columns and there is no hue; pass tidy data to plot vectors or "
            "several runs."
        )
    sharp, loss_frame = _trace_frames(data, func, x, y, ntk, loss)
    if tidy:
        sharp, (x, y, hue) = _assign(sharp, func, x=x, y=y, hue=hue)
        loss_frame = sharp
    # Each level is a run: numbers are categories too, unless hue_norm.
    hue_map, _, drawn = _hue(sharp, hue, palette, hue_order, hue_norm, func, True)
    ax = _get_ax(ax)
    has_ntk = show_ntk and ntk in sharp.columns
    has_loss = show_loss and loss in loss_frame.columns
    solo = hue is None
    if solo:
        groups = [(None, kwargs.pop("color", None), sharp, loss_frame)]
    else:
        kwargs.pop("color", None)  # hue colours the runs (seaborn's rule)
        values = sharp[hue].to_numpy()
        groups = [
            (key, color, sharp[values == key], loss_frame[values == key])
            for key, color in hue_map.lookup.items()
            if np.any(values[drawn] == key)
        ]
    loss_ax = None
    if has_loss:
        loss_ax = ax.twinx()
        loss_ax.set_label("loss")
        # Sharpness in front of the loss, legend on top of both.
        ax.set_zorder(loss_ax.get_zorder() + 1)
        ax.patch.set_visible(False)
    # One run: each line carries its own label.  Several: proxies name the
    # runs by colour and, in black, the line styles.
    names = {"sharpness": r"$\lambda^{\mathrm{H}}$", "ntk": r"$\lambda$ (NTK)"}
    names.update(edge="stability threshold", loss="loss")
    kwargs.setdefault("lw", 1.5)
    for _, color, part, loss_part in groups:
        part = part[np.isfinite(part[y].to_numpy(dtype=float))]
        label = names["sharpness"] if solo else "_sharpness"
        (line,) = ax.plot(
            part[x], part[y], label=label, gid="sharpness", color=color, **kwargs
        )
        color = line.get_color()
        if has_ntk:
            ax.plot(
                part[x],
                part[ntk],
                ls=":",
                color="C1" if solo else color,
                label=names["ntk"] if solo else "_ntk",
                gid="ntk",
            )
        if "preconditioned" in part:
            ax.plot(
                part[x],
                part["preconditioned"],
                ls="-.",
                color="C2" if solo else color,
                label=r"$\lambda_{\max}(P^{-1}H)$" if solo else "_preconditioned",
                gid="preconditioned",
            )
        if show_edge:
            threshold = _edge_line(part, learning_rate, func)
            style = {
                "ls": "--",
                "lw": 1.0,
                "color": "k" if solo else color,
                "label": names["edge"] if solo else "_edge",
                "gid": "edge",
            }
            if np.ndim(threshold) == 0:
                ax.axhline(threshold, **style)
            else:  # the learning rate changes during the run
                ax.step(part[x], threshold, where="post", **style)
        if has_loss:
            lp = loss_part[[x, loss]].dropna()
            lp = lp[lp[loss] > 0]
            loss_ax.plot(
                lp[x],
                lp[loss],
                lw=0.8,
                alpha=0.7,
                color="0.45" if solo else color,
                label=names["loss"] if solo else "_loss",
                gid="loss",
            )
    ax.set_xlabel(_axis_label(x))
    ax.set_ylabel(_axis_label(y))
    if loss_ax is not None:
        loss_ax.set_yscale("log")
        loss_ax.set_ylabel("loss")
    if legend is False:
        return ax
    handles, labels = ax.get_legend_handles_labels()
    if loss_ax is not None:
        more = loss_ax.get_legend_handles_labels()
        handles, labels = handles + more[0], labels + more[1]
    if not solo:
        title = _hue_title(hue)
        for text, color in hue_map.legend_entries(legend, sharp[hue][drawn]):
            handles.append(Line2D([], [], color=color, lw=1.5))
            labels.append(f"{title} = {text}" if title else text)
        styles = [("sharpness", "-"), ("ntk", ":"), ("edge", "--"), ("loss", "-")]
        shown = {"sharpness": True, "ntk": has_ntk, "edge": show_edge}
        shown["loss"] = has_loss
        for name, ls in styles:
            if shown[name]:
                lw = 0.8 if name == "loss" else 1.2
                handles.append(Line2D([], [], color="k", ls=ls, lw=lw))
                labels.append(names[name])
    ax.legend(handles, labels, loc="best", fontsize="small")
    return ax


# --------------------------------------------------------------------------
# Learning-rate scans
# --------------------------------------------------------------------------


def _tail_frame(data, results, func):
    """The tidy tail-of-trace table, with the per-run columns of ``results``.

    A fitted scan gives its ``trace_tails_`` and ``results_``.  The tail table
    has a ``run`` column (row of ``results``); the columns of ``results`` it
    lacks (``label``, ``critical_learning_rate``, ``initial_sharpness``...)
    are copied to each of its rows.
    """
    if not isinstance(data, (pd.DataFrame, Mapping)) and hasattr(data, "trace_tails_"):
        if results is None:
            results = data.results_
        data = data.trace_tails_
    frame = _as_frame(data, func)
    if results is None:
        return frame
    results = _as_frame(results, func)
    _require(frame, ["run"], func, why="joining results")
    run = frame["run"].to_numpy()
    if len(run) and not (0 <= run.min() and run.max() < len(results)):
        raise ValueError(
            f"{func}: the tail table's 'run' column points outside results "
            f"({len(results)} runs)."
        )
    extra = [c for c in results.columns if c not in frame.columns]
    if extra:
        joined = results[extra].iloc[run].reset_index(drop=True)
        frame = pd.concat([frame.reset_index(drop=True), joined], axis=1)
    return frame


def plot_bifurcation(
    data=None,
    *,
    x="learning_rate",
    y="sharpness",
    scaled=True,
    lr_units=None,
    hue=None,
    results=None,
    palette=None,
    hue_order=None,
    hue_norm=None,
    legend="auto",
    show_edge=True,
    rasterized=None,
    ax=None,
    normalize="deprecated",
    **kwargs,
):
    """Bifurcation diagram: the long-time sharpness against the learning rate.

    Each recorded step of the tail of each run is one small dot at
    ``(learning rate, eta * lambda_H)``: one dot per learning rate where the
    run converges, two on the period-2 (EoS) orbit, a band where it is chaotic.

    Parameters
    ----------
    data : DataFrame, dict of 1-D arrays or fitted LearningRateScan
        Tidy tail-of-trace data, one row per (run, recorded step), with the
        columns named by ``x`` and ``y`` (and ``learning_rate`` when ``scaled``
        or for the ``2 / eta`` curve), such as a scan's ``trace_tails_``.  A
        fitted scan contributes its ``trace_tails_`` joined with its
        ``results_``.
    x : str or vector, default="learning_rate"
        Column (or vector) of the horizontal axis.
    y : str or vector, default="sharpness"
        Column (or vector) of the sharpness ``lambda_H`` (or any other
        observable).
    scaled : bool, default=True
        Plot ``learning_rate * y`` (so the edge of stability is at ``eta``
        times the run's threshold: 2 for gradient descent) rather than ``y``
        itself.
    lr_units : {None, "absolute", "initial_sharpness", "critical"}, default=None
        Units of the x axis (the estimators' vocabulary).  None: those of a
        fitted scan given as ``data`` (its ``lr_units_``), else
        ``"absolute"``, which plots ``x`` as it is; ``"initial_sharpness"``
        multiplies it by the ``initial_sharpness`` column (``c = eta
        lambda_H0``); ``"critical"`` divides it by the
        ``critical_learning_rate`` column.
    hue : str or vector, default=None
        Column (or vector) colouring the dots, any column: ``"label"`` (run
        labels in :data:`LABEL_COLORS`), a ``param_<name>`` column...; black
        dots by default.
    results : DataFrame or dict of 1-D arrays, default=None
        The scan's per-run ``results_``, joined to ``data`` on its ``run``
        column: the columns ``data`` lacks (``label``,
        ``critical_learning_rate``, ``initial_sharpness``) become available to
        ``hue`` and ``lr_units``.  Use it with saved tables.
    palette : str, list, dict or Colormap, default=None
        Colours of the ``hue`` levels, by seaborn's rules: a named palette,
        a list, a ``{value: colour}`` dict (for labels: overriding some of
        :data:`LABEL_COLORS`) or a colormap for numbers.
    hue_order : list, default=None
        Order (and subset) of the ``hue`` levels; makes numbers categories.
    hue_norm : tuple or Normalize, default=None
        Range of the colormap for numeric ``hue``.
    legend : {"auto", "brief", "full"} or bool, default="auto"
        How to draw the ``hue`` legend (levels present, in ``hue_order``):
        ``"brief"`` lists a few round values of a numeric ``hue``, ``"full"``
        every level, ``"auto"`` picks; False draws none.
    show_edge : bool, default=True
        Draw the edge of stability: the line ``eta * lambda_H = 2`` when
        ``scaled``, else the curve ``lambda_H = 2 / eta``.
    rasterized : bool, default=None
        Rasterize the dots (vector output stays small); by default when there
        are more than 5000 of them.
    ax : matplotlib Axes, default=None
        Axes to draw on; the current Axes by default.
    normalize : str or None, default="deprecated"
        Deprecated alias of ``lr_units`` (removed in 0.3).
    **kwargs
        Passed to :meth:`~matplotlib.axes.Axes.scatter` (default ``s=2``);
        ``color`` colours the dots without ``hue``.

    Returns
    -------
    ax : matplotlib Axes
        The Axes drawn on.

    See Also
    --------
    scanplot : One bifurcation diagram per parameter value
        (``kind="bifurcation"``).

    Examples
    --------
    A scan of the single-example UV model through its route to chaos
    (``eta_c = 1`` here):

    >>> import numpy as np
    >>> import matplotlib.pyplot as plt
    >>> from sharpsk import LearningRateScan, UVRegressor
    >>> from sharpsk.plotting import plot_bifurcation
    >>> X, y = np.ones((1, 4)) / 2.0, np.array([1.0])
    >>> uv = UVRegressor(width=1, max_iter=500, random_state=3)
    >>> scan = LearningRateScan(uv, learning_rates=np.linspace(0.5, 1.5, 21),
    ...                         progress=False).fit(X, y)
    >>> fig, ax = plt.subplots()
    >>> ax = plot_bifurcation(scan, lr_units="critical", hue="label", ax=ax)
    >>> len(ax.collections[0].get_offsets()) == len(scan.trace_tails_["run"])
    True
    >>> [t.get_text() for t in ax.get_legend().get_texts()]
    ['converge', 'eos', 'periodic', 'chaotic']

    Saved tables work the same way, e.g.
    ``plot_bifurcation(pd.read_csv("tails.csv"), results=pd.read_csv(
    "results.csv"), lr_units="critical")``.
    """
    func = "plot_bifurcation"
    legend = _legend_mode(legend, func)
    frame = _tail_frame(data, results, func)
    frame, (x, y, hue) = _assign(frame, func, x=x, y=y, hue=hue)
    if scaled or (show_edge and not scaled):
        _require(frame, ["learning_rate"], func, why="scaled=True or the 2/eta curve")
    xv, xlabel = _normalized_x(
        frame, x, _x_units(lr_units, normalize, func, data), func
    )
    yv = frame[y].to_numpy(dtype=float)
    eta = (
        frame["learning_rate"].to_numpy(dtype=float)
        if "learning_rate" in frame
        else None
    )
    threshold = None
    if eta is not None:
        threshold = (
            frame["stability_threshold"].to_numpy(dtype=float)
            if "stability_threshold" in frame
            else GD.stability_threshold(eta)
        )
    if scaled:
        yv = eta * yv
    hue_map, rgba, drawn = _hue(frame, hue, palette, hue_order, hue_norm, func)
    keep = np.isfinite(xv) & np.isfinite(yv) & drawn
    ax = _get_ax(ax)
    kwargs.setdefault("s", 2.0)
    kwargs.setdefault("linewidths", 0)
    if hue is None:
        kwargs.setdefault("color", "k")
    else:
        kwargs.pop("color", None)  # hue colours the dots (seaborn's rule)
        kwargs["c"] = rgba[keep]
    if rasterized is None:
        rasterized = int(keep.sum()) > 5000
    points = ax.scatter(xv[keep], yv[keep], rasterized=rasterized, **kwargs)
    points.set_gid("points")
    if show_edge:
        if scaled:
            # eta times the threshold: 2 for gradient descent
            for i, edge in enumerate(np.unique(np.round(eta * threshold, 12))):
                ax.axhline(
                    edge,
                    ls="--",
                    lw=1.0,
                    color="0.4",
                    gid="edge",
                    label=rf"$\eta\lambda = {edge:g}$" if i == 0 else "_edge",
                )
        else:
            curve = pd.DataFrame({"x": xv, "edge": threshold}).drop_duplicates()
            curve = curve.sort_values("x")
            ax.plot(
                curve["x"],
                curve["edge"],
                ls="--",
                lw=1.0,
                color="0.4",
                gid="edge",
                label="stability threshold",
            )
    if hue is not None:
        _hue_legend(
            ax,
            hue_map,
            legend,
            frame[hue].to_numpy()[keep],
            _hue_title(hue),
            "marker",
            loc="best",
            fontsize="small",
        )
    ax.set_xlabel(xlabel)
    name = _axis_label(y)
    ax.set_ylabel(
        r"$\eta\,\lambda^{\mathrm{H}}$"
        if scaled and y == "sharpness"
        else (f"learning rate × {name}" if scaled else name)
    )
    return ax


def _snap(values, rtol=1e-9):
    """``values`` with near-equal ones (within ``rtol``) made equal.

    A grid converted to other units (``eta / eta_c`` of ``eta = r eta_c``)
    comes back within rounding of itself, differently on each row; one grid
    column per value, not one per rounding.
    """
    values = np.asarray(values, dtype=float)
    order = np.argsort(values, kind="stable")
    v = values[order]
    new = np.ones(v.size, dtype=bool)
    new[1:] = np.diff(v) > rtol * np.maximum(np.abs(v[1:]), np.abs(v[:-1]))
    out = np.empty_like(values)
    out[order] = v[np.flatnonzero(new)[np.cumsum(new) - 1]]
    return out


def _cell_edges(values, log):
    """Edges of the cells centred on sorted unique ``values``."""
    v = np.log(values) if log else np.asarray(values, dtype=float)
    if len(v) == 1:
        half = 0.1 if log else (0.1 * abs(v[0]) or 0.5)
        edges = np.array([v[0] - half, v[0] + half])
    else:
        mid = 0.5 * (v[1:] + v[:-1])
        edges = np.concatenate([[2 * v[0] - mid[0]], mid, [2 * v[-1] - mid[-1]]])
    return np.exp(edges) if log else edges


def _is_geometric(values):
    """Whether sorted positive ``values`` are closer to log- than linear spacing."""
    v = np.asarray(values, dtype=float)
    if len(v) < 3 or np.any(v <= 0):
        return False
    lin, geo = np.diff(v), np.diff(np.log(v))
    return np.std(geo) / np.mean(geo) < np.std(lin) / np.mean(lin)


def plot_phase_diagram(
    data=None,
    *,
    x="learning_rate",
    y=None,
    hue="label",
    lr_units=None,
    palette=None,
    hue_order=None,
    hue_norm=None,
    legend="auto",
    log_x="auto",
    log_y="auto",
    ax=None,
    normalize="deprecated",
    **kwargs,
):
    """Phase diagram: the run label on a learning-rate × parameter grid.

    Each run is one cell of a grid centred on the scanned values, coloured by
    its label with the fixed :data:`LABEL_COLORS` (or by any other ``hue``);
    cells that were not run stay blank, and so do runs without finite
    coordinates.  With ``y=None`` a one-dimensional scan is drawn as a strip.
    The legend lists the levels present, outside the Axes on the right (save
    with ``bbox_inches="tight"`` or a constrained layout).

    Parameters
    ----------
    data : DataFrame, dict of 1-D arrays or fitted LearningRateScan
        One row per run with the columns named by ``x``, ``y`` and ``hue``.
    x : str or vector, default="learning_rate"
        Column (or vector) of the horizontal axis.
    y : str or vector, default=None
        Column (or vector) of the second scanned parameter (width, init
        scale, parameterization...); numbers give a numeric axis, anything
        else one row per value in order of appearance.  None uses the data's
        ``param_<name>`` column if exactly one of them takes several values
        (a 2-D :class:`~sharpsk.LearningRateScan`), draws a strip if none
        does, and asks for ``y`` if several do.
    hue : str or vector, default="label"
        Column (or vector) colouring the cells: the run labels, or any
        other column (numbers through a colormap, e.g. ``"lyapunov"``).
    lr_units : {None, "absolute", "initial_sharpness", "critical"}, default=None
        Units of the x axis (the estimators' vocabulary).  None: those of a
        fitted scan given as ``data`` (its ``lr_units_``), else
        ``"absolute"``, which plots ``x`` as it is; ``"initial_sharpness"``
        multiplies it by the ``initial_sharpness`` column (``c = eta
        lambda_H0``); ``"critical"`` divides it by the
        ``critical_learning_rate`` column.
    palette : str, list, dict or Colormap, default=None
        Colours of the ``hue`` levels, by seaborn's rules: a named palette,
        a list, a ``{value: colour}`` dict (for labels: overriding some of
        :data:`LABEL_COLORS`) or a colormap for numbers.
    hue_order : list, default=None
        Order (and subset: other cells stay blank) of the ``hue`` levels;
        makes numbers categories.
    hue_norm : tuple or Normalize, default=None
        Range of the colormap for numeric ``hue``.
    legend : {"auto", "brief", "full"} or bool, default="auto"
        How to draw the legend: ``"brief"`` lists a few round values of a
        numeric ``hue``, ``"full"`` every level, ``"auto"`` picks; False
        draws none.
    log_x, log_y : bool or "auto", default="auto"
        Log scale (and geometric cell edges) for an axis; ``"auto"`` picks it
        when the values are positive and closer to geometric than to linear
        spacing.
    ax : matplotlib Axes, default=None
        Axes to draw on; the current Axes by default.
    normalize : str or None, default="deprecated"
        Deprecated alias of ``lr_units`` (removed in 0.3).
    **kwargs
        Passed to :meth:`~matplotlib.axes.Axes.pcolormesh` (a ``color``, as
        :class:`seaborn.FacetGrid` passes, is ignored: ``hue`` colours the
        cells).

    Returns
    -------
    ax : matplotlib Axes
        The Axes drawn on.

    Raises
    ------
    ValueError
        If a column is missing, two runs share a grid cell, or a label has no
        colour.

    See Also
    --------
    scanplot : One phase diagram per value of further parameters
        (``kind="phase"``).

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> from sharpsk.plotting import LABEL_COLORS, plot_phase_diagram
    >>> runs = {"learning_rate": [0.1, 0.2, 0.1, 0.2],
    ...         "width": [8, 8, 64, 64],
    ...         "label": ["converge", "eos", "converge", "chaotic"]}
    >>> fig, ax = plt.subplots()
    >>> ax = plot_phase_diagram(runs, y="width", ax=ax)
    >>> [t.get_text() for t in ax.get_legend().get_texts()]
    ['converge', 'eos', 'chaotic']
    """
    func = "plot_phase_diagram"
    legend = _legend_mode(legend, func)
    frame = _as_frame(data, func)
    frame, (x, y, hue) = _assign(frame, func, x=x, y=y, hue=hue)
    if frame.empty:
        raise ValueError(f"{func}: data has no rows (no runs to place).")
    if hue is None:
        raise ValueError(f"{func}: hue is required: it colours the cells.")
    if y is None:
        params = _param_axes(frame, exclude=[x])
        if len(params) > 1:
            raise ValueError(
                f"{func}: {len(params)} parameter columns take several values "
                f"({params}); pass y= one of them and facet the others "
                "(scanplot(..., col=...)) or plot one subset at a time."
            )
        y = params[0] if params else None
    xv, xlabel = _normalized_x(
        frame, x, _x_units(lr_units, normalize, func, data), func
    )
    categories = None
    if y is None:
        yv = np.zeros(len(frame))
    elif pd.api.types.is_numeric_dtype(frame[y]) or _all_numbers(frame[y]):
        yv = frame[y].to_numpy(dtype=float)
    else:  # categorical (e.g. the parameterization): rows in order of appearance
        categories = list(pd.unique(frame[y].to_numpy(dtype=object)))
        yv = np.array([categories.index(v) for v in frame[y]], dtype=float)
    finite = np.isfinite(xv) & np.isfinite(yv)  # e.g. a NaN eta_c: no cell
    frame, xv, yv = frame[finite], xv[finite], yv[finite]
    cells = pd.DataFrame({"x": xv, "y": yv})
    duplicated = cells.duplicated()
    if duplicated.any():
        first = frame[duplicated.to_numpy()].iloc[0]
        where = f"{x} = {_fmt(first[x])}"
        if y is not None:
            where += f", {y} = {_fmt(first[y])}"
        raise ValueError(
            f"{func}: {int(duplicated.sum())} run(s) share a grid cell with "
            f"another (e.g. at {where}); aggregate them (one label per cell) or "
            "plot one subset at a time."
        )
    hue_map, _, drawn = _hue(frame, hue, palette, hue_order, hue_norm, func)
    values = frame[hue].to_numpy()
    if hue_map.numeric:
        cell_values = np.where(drawn, values, np.nan).astype(float)
        kwargs.update(cmap=hue_map.cmap, norm=hue_map.norm)
    else:  # the code of each level, coloured through a listed colormap
        codes = pd.Index(hue_map.levels).get_indexer(values)
        cell_values = np.where(drawn, codes, np.nan)
        n = len(hue_map.levels)
        kwargs["cmap"] = ListedColormap(list(hue_map.lookup.values()) or ["w"])
        kwargs["norm"] = BoundaryNorm(np.arange(n + 1) - 0.5, max(n, 1))
    kwargs.pop("color", None)
    xv, yv = _snap(xv), _snap(yv)
    xs, ys = np.unique(xv), np.unique(yv)
    grid = np.full((len(ys), len(xs)), np.nan)
    grid[np.searchsorted(ys, yv), np.searchsorted(xs, xv)] = cell_values
    logx = _is_geometric(xs) if log_x == "auto" else bool(log_x)
    logy = categories is None and y is not None
    logy = logy and (_is_geometric(ys) if log_y == "auto" else bool(log_y))
    ax = _get_ax(ax)
    mesh = ax.pcolormesh(
        _cell_edges(xs, logx),
        _cell_edges(ys, logy),
        np.ma.masked_invalid(grid),
        **kwargs,
    )
    mesh.set_gid("phases")
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    if y is None:
        ax.set_yticks([])
    else:
        ax.set_ylabel(_axis_label(y))
    if categories is not None:
        ax.set_yticks(ys, [str(c) for c in categories])
    _hue_legend(
        ax,
        hue_map,
        legend,
        values[drawn],
        _hue_title(hue),
        "patch",
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        borderaxespad=0.0,
        fontsize="small",
    )
    return ax


def plot_lyapunov(
    data=None,
    *,
    x="learning_rate",
    y="lyapunov",
    hue="label",
    lr_units=None,
    palette=None,
    hue_order=None,
    hue_norm=None,
    legend="auto",
    show_line=True,
    ax=None,
    normalize="deprecated",
    **kwargs,
):
    """Largest Lyapunov exponent against the learning rate, with the zero line.

    Points are coloured by run label (:data:`LABEL_COLORS`) or by any other
    ``hue``; runs without a finite exponent (diverged ones) are left out.
    Positive exponents are chaos.

    Parameters
    ----------
    data : DataFrame, dict of 1-D arrays or fitted LearningRateScan
        One row per run with the columns named by ``x``, ``y`` and ``hue``.
    x : str or vector, default="learning_rate"
        Column (or vector) of the horizontal axis.
    y : str or vector, default="lyapunov"
        Column (or vector) of the exponent.
    hue : str, vector or None, default="label"
        Column (or vector) colouring the points: the run labels, a
        ``param_<name>`` column, any other column; None draws black points.
    lr_units : {None, "absolute", "initial_sharpness", "critical"}, default=None
        Units of the x axis (the estimators' vocabulary).  None: those of a
        fitted scan given as ``data`` (its ``lr_units_``), else
        ``"absolute"``, which plots ``x`` as it is; ``"initial_sharpness"``
        multiplies it by the ``initial_sharpness`` column (``c = eta
        lambda_H0``); ``"critical"`` divides it by the
        ``critical_learning_rate`` column.
    palette : str, list, dict or Colormap, default=None
        Colours of the ``hue`` levels, by seaborn's rules: a named palette,
        a list, a ``{value: colour}`` dict (for labels: overriding some of
        :data:`LABEL_COLORS`) or a colormap for numbers.
    hue_order : list, default=None
        Order (and subset) of the ``hue`` levels; makes numbers categories.
    hue_norm : tuple or Normalize, default=None
        Range of the colormap for numeric ``hue``.
    legend : {"auto", "brief", "full"} or bool, default="auto"
        How to draw the ``hue`` legend (levels present, in ``hue_order``):
        ``"brief"`` lists a few round values of a numeric ``hue``, ``"full"``
        every level, ``"auto"`` picks; False draws none.
    show_line : bool, default=True
        Join the points (sorted by ``x``) with a thin grey line (gid
        ``"line"``), one per value of the other ``param_<name>`` columns.
    ax : matplotlib Axes, default=None
        Axes to draw on; the current Axes by default.
    normalize : str or None, default="deprecated"
        Deprecated alias of ``lr_units`` (removed in 0.3).
    **kwargs
        Passed to :meth:`~matplotlib.axes.Axes.scatter` (default ``s=10``);
        ``color`` colours the points without ``hue``.

    Returns
    -------
    ax : matplotlib Axes
        The Axes drawn on.

    See Also
    --------
    scanplot : One panel per parameter value (``kind="lyapunov"``).

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> from sharpsk.plotting import plot_lyapunov
    >>> runs = {"learning_rate": [1.0, 1.1, 1.2, 1.3],
    ...         "lyapunov": [-0.5, -0.1, 0.3, float("nan")],
    ...         "label": ["converge", "eos", "chaotic", "diverge"]}
    >>> fig, ax = plt.subplots()
    >>> ax = plot_lyapunov(runs, ax=ax)
    >>> len(ax.collections[0].get_offsets())   # the diverged run is left out
    3
    """
    func = "plot_lyapunov"
    legend = _legend_mode(legend, func)
    frame = _as_frame(data, func)
    frame, (x, y, hue) = _assign(frame, func, x=x, y=y, hue=hue)
    xv, xlabel = _normalized_x(
        frame, x, _x_units(lr_units, normalize, func, data), func
    )
    yv = frame[y].to_numpy(dtype=float)
    keep = np.isfinite(xv) & np.isfinite(yv)
    if len(frame) and not keep.any():
        raise ValueError(
            f"{func}: no run has a finite {y!r}: exponents are measured for "
            "the UV model on one example, or by estimators fitted with "
            "compute_lyapunov=True (diverged runs have none)."
        )
    hue_map, rgba, drawn = _hue(frame, hue, palette, hue_order, hue_norm, func)
    ax = _get_ax(ax)
    ax.axhline(0.0, color="k", lw=0.8, gid="zero")
    if show_line and keep.any():
        # One line per value of the other scanned parameters (2-D scans).
        rows = np.flatnonzero(keep)
        params = _param_axes(frame.iloc[rows], exclude=[x])
        groups = [np.arange(len(rows))]
        if params:
            by = frame.iloc[rows].groupby(params, sort=False, dropna=False)
            groups = by.indices.values()
        for group in groups:
            line = rows[group][np.argsort(xv[rows[group]], kind="stable")]
            ax.plot(xv[line], yv[line], color="0.6", lw=0.7, zorder=1, gid="line")
    keep &= drawn
    kwargs.setdefault("s", 10.0)
    kwargs.setdefault("zorder", 2)
    if hue is None:
        kwargs.setdefault("color", "k")
    else:
        kwargs.pop("color", None)  # hue colours the points (seaborn's rule)
        kwargs["c"] = rgba[keep]
    points = ax.scatter(xv[keep], yv[keep], **kwargs)
    points.set_gid("points")
    if hue is not None:
        _hue_legend(
            ax,
            hue_map,
            legend,
            frame[hue].to_numpy()[keep],
            _hue_title(hue),
            "marker",
            loc="best",
            fontsize="small",
        )
    ax.set_xlabel(xlabel)
    ax.set_ylabel(_axis_label(y))
    return ax


# --------------------------------------------------------------------------
# Figure-level: one facet per parameter value
# --------------------------------------------------------------------------

_KINDS = {
    "phase": plot_phase_diagram,
    "lyapunov": plot_lyapunov,
    "bifurcation": plot_bifurcation,
    "sharpness": plot_sharpness,
}


def scanplot(
    data=None,
    *,
    kind="phase",
    row=None,
    col=None,
    col_wrap=None,
    height=3.0,
    aspect=1.5,
    facet_kws=None,
    **kwargs,
):
    """Figure-level plot of a scan: one panel per value of its parameters.

    The way :func:`seaborn.relplot` facets a scatter plot, this draws one
    axes-level plot (``kind``) per value of ``row`` and ``col``, typically
    the ``param_<name>`` columns of a scan over several estimator
    parameters, on a :class:`seaborn.FacetGrid`.  The colours of ``hue`` are
    resolved once over all the data, so a value has the same colour in every
    panel, and one legend is drawn for the figure.

    Parameters
    ----------
    data : fitted LearningRateScan, DataFrame or dict of 1-D arrays
        A fitted scan (its ``results_``; for ``kind="bifurcation"`` its
        ``trace_tails_`` joined with them), ``scan.to_frame()``, a saved
        ``results_``, or, for ``kind="sharpness"``, tidy traces.
    kind : {"phase", "lyapunov", "bifurcation", "sharpness"}, default="phase"
        The plot in each panel: :func:`plot_phase_diagram`,
        :func:`plot_lyapunov`, :func:`plot_bifurcation` or
        :func:`plot_sharpness`.
    row, col : str or vector, default=None
        Columns (or vectors) whose values make the rows and columns of the
        grid, e.g. ``"param_width"``.
    col_wrap : int, default=None
        Wrap the columns at this many panels (not with ``row``).
    height : float, default=3.0
        Height of each panel, in inches.
    aspect : float, default=1.5
        Width of each panel over its height.
    facet_kws : dict, default=None
        Passed to :class:`seaborn.FacetGrid` (``sharex``, ``sharey``,
        ``margin_titles``...).
    **kwargs
        Passed to the axes-level function of ``kind``, with its defaults:
        ``x``, ``y``, ``hue``, ``palette``, ``hue_order``, ``hue_norm``,
        ``legend``, ``lr_units`` (default: the scan's ``lr_units_``), and
        artist keywords.  With ``kind="phase"`` and ``y=None``, ``y`` is the
        one ``param_<name>`` column besides ``row`` and ``col`` that takes
        several values, if any.

    Returns
    -------
    grid : seaborn.FacetGrid
        The grid (``grid.axes``, ``grid.figure``, ``grid.legend``).

    See Also
    --------
    seaborn.relplot : The figure-level function this one follows.

    Examples
    --------
    A scan of the UV model over the learning rate and the width, one
    bifurcation diagram per width:

    >>> import numpy as np
    >>> from sharpsk import LearningRateScan, UVRegressor
    >>> from sharpsk.plotting import scanplot
    >>> X, y = np.full((1, 4), 0.5), np.array([1.0])
    >>> scan = LearningRateScan(
    ...     UVRegressor(max_iter=200, random_state=0),
    ...     learning_rates=np.linspace(0.5, 2.0, 7),
    ...     param_name="width",
    ...     param_values=[1, 4, 16],
    ...     progress=False,
    ... ).fit(X, y)
    >>> g = scanplot(scan, kind="bifurcation", col="param_width", hue="label")
    >>> g.axes.shape
    (1, 3)
    >>> [ax.get_title() for ax in g.axes.flat]
    ['width = 1', 'width = 4', 'width = 16']

    With more parameter columns, e.g. ``param_width`` and
    ``param_init_scale``, ``scanplot(scan, col="param_init_scale")`` draws
    one phase diagram (learning rate × width) per initialization scale.
    """
    func = "scanplot"
    if kind not in _KINDS:
        raise ValueError(f"{func}: kind must be one of {list(_KINDS)}, got {kind!r}.")
    if "ax" in kwargs:
        raise TypeError(
            f"{func}: draws a figure of its own and takes no ax; call "
            f"{_KINDS[kind].__name__} to draw on one Axes."
        )
    plot = _KINDS[kind]
    defaults = {
        name: p.default
        for name, p in inspect.signature(plot).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    runs = None  # every run, when the panels plot only some (bounded) ones
    if kind == "bifurcation":
        results = kwargs.pop("results", None)
        frame = _tail_frame(data, results, func)
        if results is None and not isinstance(data, (pd.DataFrame, Mapping)):
            results = getattr(data, "results_", None)
        runs = None if results is None else _as_frame(results, func)
    elif kind == "sharpness" and hasattr(data, "fit"):
        raise TypeError(
            f"{func}: kind='sharpness' facets tidy traces (one row per record); "
            f"got a {type(data).__name__}: plot one run with plot_sharpness, "
            "the tails of a scan with kind='bifurcation'."
        )
    else:
        frame = _as_frame(data, func)
    if "lr_units" in defaults:
        kwargs["lr_units"] = _x_units(
            kwargs.get("lr_units"), kwargs.pop("normalize", "deprecated"), func, data
        )
    kwargs["legend"] = _legend_mode(kwargs.get("legend", defaults["legend"]), func)
    variables = {k: kwargs.pop(k, defaults[k]) for k in ("x", "y", "hue")}
    frame, names = _assign(frame, func, row=row, col=col, **variables)
    row, col = names[:2]
    variables = dict(zip(variables, names[2:], strict=True))
    if kind == "phase" and variables["y"] is None:
        params = _param_axes(frame, exclude=[variables["x"], row, col])
        if len(params) > 1:
            raise ValueError(
                f"{func}: {len(params)} parameter columns besides row and col "
                f"take several values ({params}); pass y= one of them and row= "
                "or col= the others."
            )
        variables["y"] = params[0] if params else None
    hue = variables["hue"]
    hue_map = None
    if hue is not None:
        # One mapping for every panel, as relplot does.
        hue_map = _HueMap(
            frame[hue],
            kwargs.get("palette"),
            kwargs.get("hue_order"),
            kwargs.get("hue_norm"),
            func,
            categories=kind == "sharpness",
        )
        kwargs["palette"] = hue_map.palette
        kwargs["hue_order"] = None if hue_map.numeric else hue_map.levels
        kwargs["hue_norm"] = hue_map.norm
    facet_kws = dict(facet_kws or {})
    for key, name in (("row", row), ("col", col)):
        if runs is not None and name in runs.columns:
            # A panel for every value, even if all its runs diverged.
            values = list(pd.unique(runs[name].dropna()))
            order = sorted(values) if _is_numeric(values) else values
            facet_kws.setdefault(f"{key}_order", order)
    grid = sns.FacetGrid(
        frame,
        row=row,
        col=col,
        col_wrap=col_wrap,
        height=height,
        aspect=aspect,
        **facet_kws,
    )
    labels, entries = {}, {}
    exponents = None
    if kind == "lyapunov":
        exponents = variables["y"]
        some = np.isfinite(frame[exponents].to_numpy(dtype=float)).any()
        exponents = exponents if some else None  # else plot_lyapunov says why

    def draw(**kws):
        part = kws["data"][exponents] if exponents is not None else None
        if part is not None and not np.isfinite(part.to_numpy(dtype=float)).any():
            return  # a panel of diverged runs only stays empty
        ax = plot(**kws)
        labels.setdefault("x", ax.get_xlabel())
        labels.setdefault("y", ax.get_ylabel())
        # The panels' legends (FacetGrid drops them) make one figure legend.
        panel = ax.get_legend()
        if panel is not None:
            labels.setdefault("title", panel.get_title().get_text())
            for text, handle in zip(panel.texts, panel.legend_handles, strict=True):
                entries.setdefault(text.get_text(), handle)
            panel.remove()

    grid.map_dataframe(draw, **variables, **kwargs)
    # map_dataframe labels the axes with the column names: typeset them again.
    grid.set_axis_labels(labels.get("x", ""), labels.get("y", ""))
    templates = {}
    for key, name in (("row", row), ("col", col)):
        if name is not None:
            label = _hue_title(name).replace("{", "{{").replace("}", "}}")
            templates[f"{key}_template"] = f"{label} = {{{key}_name}}"
    grid.set_titles(**templates)
    if entries:  # levels in hue order ("0.5" or "name = 0.5"), then the rest
        order = [_fmt(k) for k in hue_map.lookup] if hue_map is not None else []
        rank = {text: i for i, text in enumerate(order)}
        texts = sorted(
            entries,
            key=lambda t: rank.get(t, rank.get(t.rpartition(" = ")[2], len(rank))),
        )
        title = labels.get("title") or None
        grid.add_legend(legend_data=entries, label_order=texts, title=title)
    return grid


# --------------------------------------------------------------------------
# The UV model in function space
# --------------------------------------------------------------------------


def _trajectory_arrays(trajectory, kappa, learning_rate):
    """``(delta_f, ntk)`` arrays of a fitted UVRegressor or of given arrays."""
    func = "plot_uv_vector_field"
    if hasattr(trajectory, "fit") and not isinstance(trajectory, Mapping):
        if not hasattr(trajectory, "residual_trace_"):
            raise NotFittedError(
                f"{func}: the trajectory {type(trajectory).__name__} is not fitted "
                "yet; call fit first."
            )
        fitted_kappa = float(getattr(trajectory, "kappa_", np.nan))
        if not np.isfinite(fitted_kappa):
            raise ValueError(
                f"{func}: trajectory was fitted on several examples; the "
                "function-space picture needs a single-example fit."
            )
        fitted_eta = np.unique(_step_size(trajectory))
        if fitted_eta.size != 1:
            raise ValueError(
                f"{func}: trajectory's learning rate changes during the run; the "
                "function-space picture needs a constant one."
            )
        for name, mine, theirs in (
            ("kappa", kappa, fitted_kappa),
            ("learning_rate", learning_rate, float(fitted_eta[0])),
        ):
            if not np.isclose(mine, theirs, rtol=1e-9, atol=0.0):
                raise ValueError(
                    f"{func}: {name}={mine:g} but the trajectory was fitted with "
                    f"{name}={theirs:g}."
                )
        return (
            np.asarray(trajectory.residual_trace_, dtype=float),
            np.asarray(trajectory.ntk_trace_, dtype=float),
        )
    if isinstance(trajectory, (Mapping, pd.DataFrame)):
        missing = [k for k in ("delta_f", "ntk") if k not in trajectory]
        if missing:
            raise ValueError(
                f"{func}: trajectory has no {missing[0]!r} entry; it needs "
                "'delta_f' and 'ntk'."
            )
        delta_f, ntk = trajectory["delta_f"], trajectory["ntk"]
    else:
        arr = np.asarray(trajectory, dtype=float)
        if arr.ndim == 2 and arr.shape[1] == 2 and arr.shape[0] != 2:
            arr = arr.T
        if arr.ndim != 2 or arr.shape[0] != 2:
            raise ValueError(
                f"{func}: trajectory must be a fitted UVRegressor, a pair "
                f"(delta_f, ntk) of 1-D arrays or an (n, 2) array; got shape "
                f"{arr.shape}."
            )
        delta_f, ntk = arr
    delta_f = np.asarray(delta_f, dtype=float).ravel()
    ntk = np.asarray(ntk, dtype=float).ravel()
    if delta_f.shape != ntk.shape:
        raise ValueError(
            f"{func}: trajectory delta_f and ntk lengths differ "
            f"({delta_f.size} != {ntk.size})."
        )
    return delta_f, ntk


def _span(values, pad=0.05):
    lo, hi = float(np.min(values)), float(np.max(values))
    width = hi - lo if hi > lo else max(abs(hi), 1.0)
    return lo - pad * width, hi + pad * width


def _ntk_nullcline(eta, y, delta_f_lim, ntk_lim, n=801):
    """The curve ``delta_lambda = 0`` off the line of minima, within the view.

    ``delta_lambda = eta kappa delta_f (delta_f (eta lambda - 4) - 4 y)``
    vanishes at ``lambda = 4 (delta_f + y) / (eta delta_f)``, that is at
    ``delta_f = 4 y / (eta lambda - 4)``: two branches, split at the pole
    ``lambda = 4 / eta``, each monotone in ``lambda``.  It is sampled evenly
    in both coordinates (the curve is steep in one and flat in the other);
    points outside the view are NaN, which also breaks the line at the pole.
    """
    (x0, x1), (y0, y1) = delta_f_lim, ntk_lim
    pole = 4.0 / eta
    if y == 0:  # delta_lambda = eta kappa delta_f**2 (eta lambda - 4)
        return np.array([x0, x1]), np.array([pole, pole])
    df = np.linspace(x0, x1, n)
    df = df[df != 0]
    lam = np.concatenate([np.linspace(y0, y1, n), 4.0 * (df + y) / (eta * df), [pole]])
    lam = np.unique(lam[(lam >= y0) & (lam <= y1)])
    with np.errstate(divide="ignore"):
        df = 4.0 * y / (eta * lam - 4.0)
    out = ~((df >= x0) & (df <= x1))  # the pole gives inf: out too
    df[out], lam[out] = np.nan, np.nan
    return df, lam


def plot_uv_vector_field(
    *,
    kappa,
    y,
    learning_rate,
    trajectory=None,
    delta_f_lim=None,
    ntk_lim=None,
    kind="quiver",
    n_grid=21,
    colorbar=True,
    ax=None,
    **kwargs,
):
    """The UV model's one-step map in the ``(delta_f, lambda)`` plane.

    One gradient-descent step maps ``(delta_f, lambda)`` to
    :func:`sharpsk._maps.uv_step` of it.  The plot shows

    * the one-step displacement as arrows of equal length (``kind="quiver"``,
      coloured by the log10 of its length as a fraction of the view) or as
      streamlines (``kind="stream"``);
    * the line of fixed points ``delta_f = 0`` (the minima): solid where they
      are stable, ``eta * lambda < 2``, dashed above ``lambda = 2 / eta``;
    * the other nullcline of ``delta_lambda``,
      ``lambda = 4 (delta_f + y) / (eta delta_f)`` (where
      ``f = -eta lambda y / (4 - eta lambda)``): the sharpness grows between
      it and the line of minima, on the side of ``y``, and falls elsewhere;
    * the EoS manifold ``lambda = 2 sqrt(kappa) |delta_f + y|`` (``Q = 0``),
      the lower edge of the reachable states (shaded below it);
    * the ``trajectory`` (each recorded step a dot, the start a star).

    Parameters
    ----------
    kappa : float
        ``s**2 |x|**2`` of the example (``UVRegressor.kappa_``), positive.
    y : float
        The target.
    learning_rate : float
        The step size ``eta``, positive.
    trajectory : fitted UVRegressor, (delta_f, ntk) pair, (n, 2) array or dict, \
            default=None
        A run to overlay: a single-example :class:`~sharpsk.UVRegressor`
        fitted with this ``kappa`` and ``learning_rate`` (its
        ``residual_trace_`` and ``ntk_trace_``), arrays, or a dict/DataFrame
        with ``delta_f`` and ``ntk``.
    delta_f_lim, ntk_lim : (float, float), default=None
        The view.  By default it spans the minima ``delta_f = 0``, the zero of
        the function ``delta_f = -y`` and the trajectory, and ``lambda`` from
        0 past ``2 / eta``.
    kind : {"quiver", "stream"}, default="quiver"
        Arrows on an ``n_grid × n_grid`` grid, or streamlines.
    n_grid : int, default=21
        Grid points per axis.
    colorbar : bool, default=True
        Add a colour bar of the displacement length.
    ax : matplotlib Axes, default=None
        Axes to draw on; the current Axes by default.
    **kwargs
        Passed to :meth:`~matplotlib.axes.Axes.quiver` or
        :meth:`~matplotlib.axes.Axes.streamplot`.

    Returns
    -------
    ax : matplotlib Axes
        The Axes drawn on.

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> from sharpsk.plotting import plot_uv_vector_field
    >>> fig, ax = plt.subplots()
    >>> ax = plot_uv_vector_field(kappa=1.0, y=1.0, learning_rate=0.8, n_grid=9,
    ...                           colorbar=False, ax=ax)
    >>> stable = [a for a in ax.get_lines() if a.get_gid() == "fixed_points_stable"]
    >>> float(max(stable[0].get_ydata())) == 2 / 0.8
    True
    """
    func = "plot_uv_vector_field"
    for name, value in (("kappa", kappa), ("learning_rate", learning_rate)):
        if not (np.isscalar(value) and np.isfinite(value) and value > 0):
            raise ValueError(
                f"{func}: {name} must be a positive number, got {value!r}."
            )
    if not (np.isscalar(y) and np.isfinite(y)):
        raise ValueError(f"{func}: y must be a finite number, got {y!r}.")
    if kind not in ("quiver", "stream"):
        raise ValueError(f"{func}: kind must be 'quiver' or 'stream', got {kind!r}.")
    if int(n_grid) < 2:
        raise ValueError(f"{func}: n_grid must be at least 2, got {n_grid!r}.")
    eta, kappa, y, n_grid = float(learning_rate), float(kappa), float(y), int(n_grid)
    edge = GD.stability_threshold(eta)
    traj = None
    if trajectory is not None:
        traj = _trajectory_arrays(trajectory, kappa, eta)
        finite = np.isfinite(traj[0]) & np.isfinite(traj[1])
        traj = (traj[0][finite], traj[1][finite])

    # The view: minima, the zero of f, the trajectory; lambda from 0 past 2/eta.
    if delta_f_lim is None:
        scale = abs(y) if y != 0 else 1.0 / (eta * np.sqrt(kappa))
        xs = [-y - scale, -y + scale, -scale, scale]
        if traj is not None and traj[0].size:
            xs += [traj[0].min(), traj[0].max()]
        delta_f_lim = _span(xs)
    if ntk_lim is None:
        ys = [0.0, 1.25 * edge]
        if traj is not None and traj[1].size:
            ys.append(traj[1].max())
        ntk_lim = (0.0, _span(ys)[1])
    (x0, x1), (y0, y1) = delta_f_lim, ntk_lim
    if not (x0 < x1 and y0 < y1):
        raise ValueError(
            f"{func}: delta_f_lim and ntk_lim must be increasing pairs, got "
            f"{delta_f_lim!r} and {ntk_lim!r}."
        )
    ax = _get_ax(ax)

    # One-step displacement on a grid; unreachable states (Q < 0) are masked.
    gx, gy = np.linspace(x0, x1, n_grid), np.linspace(y0, y1, n_grid)
    DF, LAM = np.meshgrid(gx, gy)
    with np.errstate(over="ignore", invalid="ignore"):
        new_df, new_lam = uv_step(DF, LAM, eta, kappa, y)
        u, v = new_df - DF, new_lam - LAM
        frac = np.hypot(u / (x1 - x0), v / (y1 - y0))  # fraction of the view
    mask = (LAM < eos_manifold_ntk(DF, kappa, y)) | ~(frac > 0) | ~np.isfinite(frac)
    with np.errstate(divide="ignore", invalid="ignore"):
        color = np.log10(np.where(mask, np.nan, frac))
    kwargs.setdefault("cmap", "viridis")
    if kind == "quiver":
        length = 0.6 / (n_grid - 1)  # arrows of equal length on screen
        with np.errstate(divide="ignore", invalid="ignore"):
            U = np.where(mask, np.nan, u / frac * length)
            V = np.where(mask, np.nan, v / frac * length)
        keep = ~mask
        kwargs.setdefault("width", 0.003)
        kwargs.setdefault("alpha", 0.8)
        field = ax.quiver(
            DF[keep],
            LAM[keep],
            U[keep],
            V[keep],
            color[keep],
            angles="xy",
            scale_units="xy",
            scale=1.0,
            pivot="mid",
            **kwargs,
        )
        mappable = field
    else:
        kwargs.setdefault("linewidth", 0.7)
        kwargs.setdefault("density", 1.2)
        # Unit speed on screen: the map's step sizes span decades.
        with np.errstate(divide="ignore", invalid="ignore"):
            us = np.ma.masked_array(u / frac, mask)
            vs = np.ma.masked_array(v / frac, mask)
        field = ax.streamplot(
            gx,
            gy,
            us,
            vs,
            color=np.ma.masked_invalid(color),
            **kwargs,
        )
        mappable = field.lines
    mappable.set_gid("field")
    if colorbar and np.any(~mask):
        ax.figure.colorbar(
            mappable, ax=ax, label=r"$\log_{10}$ step length / view", pad=0.02
        )

    # Unreachable states below the EoS manifold, and the manifold itself.
    fine = np.linspace(x0, x1, 801)
    manifold = eos_manifold_ntk(fine, kappa, y)
    ax.fill_between(
        fine,
        y0,
        np.minimum(manifold, y1),
        color="0.85",
        lw=0,
        zorder=0,
        gid="unreachable",
        label="unreachable ($Q < 0$)",
    )
    ax.plot(
        fine,
        manifold,
        color="k",
        lw=1.2,
        gid="eos_manifold",
        label=r"EoS manifold $\lambda = 2\sqrt{\kappa}\,|f|$",
    )
    # Minima: stable below 2/eta, unstable above.
    ax.plot(
        [0.0, 0.0],
        [min(y0, edge), edge],
        color=LABEL_COLORS["converge"],
        lw=2.5,
        gid="fixed_points_stable",
        label=r"stable minima $\eta\lambda < 2$",
    )
    ax.plot(
        [0.0, 0.0],
        [edge, max(y1, edge)],
        color=LABEL_COLORS["chaotic"],
        lw=2.5,
        ls="--",
        gid="fixed_points_unstable",
        label=r"unstable minima $\eta\lambda > 2$",
    )
    null_df, null_lam = _ntk_nullcline(eta, y, (x0, x1), (y0, y1))
    ax.plot(
        null_df,
        null_lam,
        color=LABEL_COLORS["periodic"],
        lw=1.5,
        ls="-.",
        gid="nullcline",
        label=r"$\Delta\lambda = 0$",
    )
    if traj is not None:
        ax.plot(
            traj[0],
            traj[1],
            "-o",
            color="k",
            lw=0.5,
            ms=2.5,
            alpha=0.8,
            gid="trajectory",
            label="trajectory",
        )
        if traj[0].size:
            ax.plot(
                traj[0][:1],
                traj[1][:1],
                ls="none",
                marker="*",
                ms=11,
                color="k",
                gid="start",
                label="start",
            )
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_xlabel(r"residual $\Delta f = f - y$")
    ax.set_ylabel(r"NTK $\lambda$")
    ax.legend(loc="best", fontsize="x-small", framealpha=0.9)
    return ax


# --------------------------------------------------------------------------
# Hessian spectra
# --------------------------------------------------------------------------


def plot_spectral_density(
    density, *, sigma=None, grid=None, ax=None, log=True, **kwargs
):
    """The Hessian's spectral density from stochastic Lanczos quadrature.

    Each quadrature node is broadened into a Gaussian of standard deviation
    ``sigma`` (as in Ghorbani, Krishnan & Xiao, 2019), so outliers such as
    the sharpness show as small separate bumps, best seen on a log scale.

    Parameters
    ----------
    density : SpectralDensity
        The result of :func:`sharpsk.hessian.spectral_density`.
    sigma : float, default=None
        Width of the Gaussians; None: ``density.default_sigma()`` (1 % of the
        range of the nodes).
    grid : array-like of shape (n_points,), default=None
        Eigenvalues at which to evaluate it; None: 1000 points from the
        smallest to the largest node, widened by ``5 * sigma`` on each side.
    ax : matplotlib Axes, default=None
        Axes to draw on; the current Axes by default.
    log : bool, default=True
        Logarithmic density axis, showing eight decades below the peak.
    **kwargs
        Passed to :meth:`~matplotlib.axes.Axes.plot` (the line has gid
        ``"density"``).

    Returns
    -------
    ax : matplotlib Axes
        The Axes drawn on.

    See Also
    --------
    sharpsk.hessian.spectral_density : The quadrature this function draws.

    Examples
    --------
    >>> import numpy as np
    >>> import matplotlib.pyplot as plt
    >>> from sharpsk.hessian import spectral_density
    >>> from sharpsk.plotting import plot_spectral_density
    >>> A = np.diag(np.r_[np.linspace(-1.0, 1.0, 199), 20.0])  # one outlier
    >>> sd = spectral_density(A, n_probes=3, n_lanczos=40, random_state=0)
    >>> fig, ax = plt.subplots()
    >>> ax = plot_spectral_density(sd, ax=ax)
    >>> line = [a for a in ax.get_lines() if a.get_gid() == "density"][0]
    >>> bool(line.get_xdata().max() > 20.0), ax.get_yscale()
    (True, 'log')
    """
    func = "plot_spectral_density"
    if not (hasattr(density, "density") and hasattr(density, "nodes")):
        raise TypeError(
            f"{func}: density must be the SpectralDensity returned by "
            f"sharpsk.hessian.spectral_density, got {type(density).__name__}."
        )
    if sigma is None:
        sigma = density.default_sigma()
    if grid is None:
        lo, hi = float(np.min(density.nodes)), float(np.max(density.nodes))
        if isinstance(sigma, (int, float, np.integer, np.floating)):
            pad = 5.0 * float(sigma)  # an invalid sigma is reported below
        else:
            pad = 0.0
        grid = np.linspace(lo - pad, hi + pad, 1000)
    grid = np.asarray(grid, dtype=float)
    if grid.ndim != 1:
        raise ValueError(f"{func}: grid must be 1-D, got shape {grid.shape}.")
    values = density.density(grid, sigma)
    ax = _get_ax(ax)
    kwargs.setdefault("lw", 1.2)
    ax.plot(grid, values, gid="density", **kwargs)
    if log:
        ax.set_yscale("log")
        peak = float(np.max(values)) if values.size else 0.0
        if peak > 0:
            ax.set_ylim(peak * 1e-8, peak * 3.0)
    ax.set_xlabel(r"eigenvalue $\lambda$")
    ax.set_ylabel("spectral density")
    return ax
