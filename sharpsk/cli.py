"""The ``sharpsk`` command: a demo of the route to chaos and learning-rate scans.

``sharpsk demo`` runs the main job on built-in data (the single-example UV
model, nothing to download); ``sharpsk scan`` scans the learning rate of a UV
or MLP model from the command line.  Bad arguments give a one-line error and
exit status 2; failures while running give a one-line error and status 1.
"""

import argparse
import importlib.util
import os
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from ._dynamics import LABELS
from ._optimizers import OPTIMIZERS
from ._version import __version__

#: The demo problem: one example with |x| = 1, y = 1, a wide UV model at small
#: initialization, so that every phase of the route to chaos is reachable
#: before the attractor is destroyed (eta_c = sqrt(width) / (|x| |y|)).
DEMO = {
    "width": 512,
    "init_scale": 0.1,
    "n_features": 4,
    "ratio_min": 0.5,
    "ratio_max": 2.0,
    "n_rates": 600,
    "steps": 4000,
}


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad arguments on one line, without usage text,
    and shows every option's default in ``--help``."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


class _Fail(Exception):
    """A user-facing failure, reported on one line."""


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not np.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number")
    return value


def _int_tuple(text):
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of integers"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} needs positive layer sizes")
    return values


def _values(text):
    """Comma-separated parameter values: ints, floats or strings."""
    out = []
    for item in (v.strip() for v in text.split(",") if v.strip()):
        for cast in (int, float):
            try:
                out.append(cast(item))
                break
            except ValueError:
                continue
        else:
            out.append(item)
    if not out:
        raise argparse.ArgumentTypeError(f"{text!r} holds no values")
    return out


def build_parser():
    """The argument parser of the ``sharpsk`` command."""
    parser = _Parser(
        prog="sharpsk",
        description="Sharpness dynamics of gradient descent: edge of stability, "
        "progressive sharpening and the route to chaos.",
    )
    parser.add_argument("--version", action="version", version=f"sharpsk {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    demo = sub.add_parser(
        "demo",
        help="scan the UV model through the route to chaos (no data needed)",
        description="Scan the learning rate of the single-example UV model from "
        "a stable minimum through the edge of stability, period doubling and "
        "chaos to divergence; write the scan table (CSV) and figures (PNG) to "
        "--out and print a summary of the labels.",
    )
    demo.add_argument(
        "--out", default="sharpsk-demo", help="output folder (its parent must exist)"
    )
    demo.add_argument(
        "--n-rates",
        type=_positive_int,
        default=DEMO["n_rates"],
        help="number of learning rates",
    )
    demo.add_argument(
        "--steps",
        type=_positive_int,
        default=DEMO["steps"],
        help="gradient-descent steps per run",
    )
    demo.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress line (there is none when stderr is not a terminal)",
    )

    scan = sub.add_parser(
        "scan",
        help="learning-rate scan of a UV or MLP model",
        description="Fit one run per learning rate, label each run (converge, "
        "eos, periodic, chaotic, diverge) and write the table as CSV.",
    )
    scan.add_argument(
        "--model",
        choices=("uv", "mlp"),
        default="uv",
        help="the two-layer linear UV model or a tanh/relu MLP",
    )
    scan.add_argument(
        "--data",
        default=None,
        metavar="{example,digits,teacher,FILE}",
        help="training data: the single UV example (default for uv), a digits "
        "subset with one-hot targets (default for mlp), teacher-student data, "
        "or your own .csv (a header row; --target names the target columns) "
        "or .npz file (arrays X and y)",
    )
    scan.add_argument(
        "--target",
        default=None,
        help="target column(s) of a .csv --data, comma separated (default: the "
        "last column)",
    )
    scan.add_argument(
        "--n-samples",
        type=_positive_int,
        default=200,
        help="samples of the digits or teacher data",
    )
    scan.add_argument("--width", type=_positive_int, default=512, help="UV width")
    scan.add_argument(
        "--hidden",
        type=_int_tuple,
        default=(32,),
        help="MLP hidden layer sizes, comma separated",
    )
    scan.add_argument(
        "--activation",
        choices=("tanh", "relu", "identity"),
        default="tanh",
        help="MLP hidden activation",
    )
    scan.add_argument(
        "--parameterization",
        choices=("sp", "ntk", "mup"),
        default=None,
        help="width scaling of init, multipliers and learning rates (default ntk "
        "for uv, sp for mlp)",
    )
    scan.add_argument(
        "--init-scale",
        type=_positive_float,
        default=None,
        help=f"initialization scale (default {DEMO['init_scale']} for uv, 1 for mlp)",
    )
    scan.add_argument(
        "--lr-min",
        type=_positive_float,
        required=True,
        help="smallest learning rate, in --units",
    )
    scan.add_argument(
        "--lr-max",
        type=_positive_float,
        required=True,
        help="largest learning rate, in --units",
    )
    scan.add_argument(
        "--n-rates", type=_positive_int, default=50, help="number of learning rates"
    )
    scan.add_argument(
        "--log", action="store_true", help="log-spaced rates (default linear)"
    )
    scan.add_argument(
        "--units",
        choices=("absolute", "initial_sharpness", "critical"),
        default="absolute",
        help="learning rates as eta, as c = eta * lambda_H0, or as eta / eta_c "
        "(the UV model on one example)",
    )
    scan.add_argument(
        "--optimizer",
        choices=OPTIMIZERS,
        default="gd",
        help="update rule; the labels use its stability threshold",
    )
    scan.add_argument(
        "--momentum",
        type=float,
        default=0.9,
        help="beta of momentum and nesterov",
    )
    scan.add_argument("--steps", type=_positive_int, default=1000, help="steps per run")
    scan.add_argument(
        "--param-name",
        default=None,
        help="a second scanned estimator parameter (e.g. width, init_scale)",
    )
    scan.add_argument(
        "--param-values",
        type=_values,
        default=None,
        help="its values, comma separated",
    )
    scan.add_argument(
        "--n-jobs",
        type=int,
        default=1,
        help="parallel runs (-1: all cores; none start when all runs are cached)",
    )
    scan.add_argument(
        "--cache",
        default=None,
        help="folder caching finished runs: a rerun computes only what is missing",
    )
    scan.add_argument(
        "--random-state", type=int, default=0, help="seed of the initialization"
    )
    scan.add_argument(
        "--out",
        default="scan.csv",
        help="CSV file to write, or a .parquet dataset (a folder) to which "
        "finished runs are streamed as they finish (needs pyarrow); its folder "
        "must exist",
    )
    scan.add_argument(
        "--plot",
        default=None,
        help="PNG file: a phase diagram (with --param-name) or a bifurcation diagram",
    )
    scan.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress line (there is none when stderr is not a terminal)",
    )
    return parser


def _check_output(path, flag, directory=False):
    """Refuse an output the command could not write, before computing it.

    ``path`` may not exist yet, but its parent folder must (nothing is created
    at a mistyped location) and be writable.
    """
    path = Path(path)
    if path.exists() and path.is_dir() != directory:
        kind = "a folder" if path.is_dir() else "a file"
        raise _Fail(
            f"{flag} {path} is {kind}; give a {'folder' if directory else 'file'}"
        )
    parent = path.absolute().parent
    if not parent.is_dir():
        what = "is a file" if parent.exists() else "does not exist"
        raise _Fail(f"{flag} {path}: the folder {parent} {what}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise _Fail(f"{flag} {path}: the folder {parent} is not writable")


def _progress(args):
    """A progress line only on a terminal: in a log, ``\\r`` updates would
    pile up into one long line."""
    return not args.no_progress and sys.stderr.isatty()


def _uv_problem(n_features, width, init_scale, random_state=0, **params):
    from ._uv import UVRegressor

    X = np.full((1, n_features), 1.0 / np.sqrt(n_features))
    y = np.array([1.0])
    est = UVRegressor(width, init_scale=init_scale, random_state=random_state, **params)
    return est, X, y


def _table(scan):
    """The scan's results as a DataFrame, with eta / eta_c when it is defined."""

    frame = scan.to_frame().drop(columns="params", errors="ignore")
    eta_c = frame["critical_learning_rate"]
    if np.isfinite(eta_c).all():
        frame.insert(1, "eta_over_eta_c", frame["learning_rate"] / eta_c)
    return frame


def _summary(frame, x):
    """Contiguous runs of one label along ``x``, as printable lines."""
    lines = [f"{'label':<10} {'from':>10} {'to':>10} {'runs':>6}   ({x})"]
    labels, xs = frame["label"].to_numpy(), frame[x].to_numpy()
    start = 0
    for i in range(1, len(labels) + 1):
        if i == len(labels) or labels[i] != labels[start]:
            lines.append(
                f"{labels[start]:<10} {xs[start]:>10.4g} {xs[i - 1]:>10.4g} "
                f"{i - start:>6}"
            )
            start = i
    counts = ", ".join(f"{k}: {int((labels == k).sum())}" for k in LABELS)
    return "\n".join(lines + [f"total {len(labels)} runs ({counts})"])


def run_demo(args):
    """``sharpsk demo``: the route to chaos of the single-example UV model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from . import plotting
    from ._scan import LearningRateScan

    out = Path(args.out)
    _check_output(out, "--out", directory=True)
    t0 = time.perf_counter()
    est, X, y = _uv_problem(
        DEMO["n_features"], DEMO["width"], DEMO["init_scale"], max_iter=args.steps
    )
    ratios = np.linspace(DEMO["ratio_min"], DEMO["ratio_max"], args.n_rates)
    scan = LearningRateScan(
        est,
        learning_rates=ratios,
        lr_units="critical",
        progress=_progress(args),
    ).fit(X, y)
    frame = _table(scan)
    eta_c = frame["critical_learning_rate"].iloc[0]
    out.mkdir(exist_ok=True)  # only once there is something to write
    frame.to_csv(out / "scan.csv", index=False)
    tails = pd.DataFrame(scan.trace_tails_)
    tails.to_csv(out / "trace_tails.csv", index=False)

    fig, axes = plt.subplots(
        3, 1, figsize=(8, 9), sharex=True, gridspec_kw={"height_ratios": (3, 3, 1)}
    )
    plotting.plot_bifurcation(tails, results=frame, lr_units="critical", ax=axes[0])
    plotting.plot_lyapunov(frame, lr_units="critical", ax=axes[1])
    plotting.plot_phase_diagram(frame, lr_units="critical", ax=axes[2])
    axes[0].legend(loc="upper left", fontsize="small")  # names the edge line
    for ax in axes:  # shared axes, each panel readable on its own
        ax.xaxis.set_tick_params(labelbottom=True)
    fig.suptitle(f"UV model, width {DEMO['width']}: the route to chaos")
    fig.tight_layout()
    fig.savefig(out / "route_to_chaos.png", dpi=120)
    plt.close(fig)

    # One run per regime: the sharpness trace of each.
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    for ax, ratio in zip(axes.flat, (0.9, 1.1, 1.25, 1.5), strict=True):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            run = est.set_params(learning_rate=ratio * eta_c, max_iter=60).fit(X, y)
        plotting.plot_sharpness(run, ax=ax)
        nearest = (frame["eta_over_eta_c"] - ratio).abs().idxmin()
        ax.set_title(rf"$\eta\,/\,\eta_c = {ratio}$: {frame.loc[nearest, 'label']}")
    # one legend for the four panels, below them, covering no curve
    legend = axes.flat[0].get_legend()
    handles = legend.legend_handles
    texts = [t.get_text() for t in legend.get_texts()]
    for ax in axes.flat:
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.legend(handles, texts, loc="lower center", ncol=len(texts), frameon=False)
    fig.savefig(out / "sharpness_traces.png", dpi=120)
    plt.close(fig)

    elapsed = time.perf_counter() - t0
    print(
        f"sharpsk demo: UV model (width {DEMO['width']}, one example), "
        f"{args.n_rates} learning rates x {args.steps} steps, eta_c = {eta_c:.4g}, "
        f"{elapsed:.1f} s"
    )
    print(_summary(frame, "eta_over_eta_c"))
    print(
        f"wrote {out / 'scan.csv'}, {out / 'trace_tails.csv'}, "
        f"{out / 'route_to_chaos.png'}, {out / 'sharpness_traces.png'}"
    )
    return 0


def _scan_problem(args):
    """Estimator and data for ``sharpsk scan``."""
    if args.model == "uv":
        data = args.data or "example"
        params = {
            "parameterization": args.parameterization or "ntk",
            "max_iter": args.steps,
            "optimizer": args.optimizer,
            "momentum": args.momentum,
        }
        # Small initialization: the UV model reaches its EoS manifold (see demo).
        init = DEMO["init_scale"] if args.init_scale is None else args.init_scale
        if data == "example":
            return _uv_problem(DEMO["n_features"], args.width, init, **params)
        from ._uv import UVRegressor

        est = UVRegressor(
            args.width, init_scale=init, random_state=args.random_state, **params
        )
    else:
        from ._mlp import MLPRegressor

        data = args.data or "digits"
        est = MLPRegressor(
            hidden_layer_sizes=args.hidden,
            activation=args.activation,
            parameterization=args.parameterization or "sp",
            init_scale=1.0 if args.init_scale is None else args.init_scale,
            max_iter=args.steps,
            optimizer=args.optimizer,
            momentum=args.momentum,
            random_state=args.random_state,
        )
        if data == "example":
            raise _Fail("--data example is the UV problem; use digits or teacher")
    X, y = _load_data(data, args)
    if args.model == "uv" and np.ndim(y) > 1 and np.shape(y)[1] > 1:
        raise _Fail(
            f"--model uv has one output, but --data {data} has {np.shape(y)[1]} "
            "target columns: use --model mlp (or --target to pick one column "
            "of a .csv)"
        )
    if np.ndim(y) > 1 and np.shape(y)[1] == 1:
        y = y[:, 0]  # one target column: a 1-D y, as the estimators expect
    return est, X, y


def _load_data(data, args):
    """``(X, y)`` of ``--data``: a built-in set, or a .csv / .npz file."""
    from . import datasets

    if data == "digits":
        return datasets.load_digits_onehot(
            n_samples=args.n_samples, random_state=args.random_state
        )
    if data == "teacher":
        return datasets.make_teacher_student(
            n_samples=args.n_samples, random_state=args.random_state
        )
    path = Path(data)
    if path.suffix not in (".csv", ".npz"):
        raise _Fail(f"--data {data}: not example, digits, teacher or a .csv/.npz file")
    if not path.is_file():
        raise _Fail(f"--data {data}: no such file")
    if path.suffix == ".npz":
        with np.load(path) as arrays:
            missing = [k for k in ("X", "y") if k not in arrays]
            if missing:
                raise _Fail(
                    f"--data {data}: the .npz file holds {sorted(arrays)}, "
                    f"not {missing}"
                )
            return np.asarray(arrays["X"], float), np.asarray(arrays["y"], float)
    import pandas as pd

    frame = pd.read_csv(path)
    target = [frame.columns[-1]] if args.target is None else args.target.split(",")
    missing = [t for t in target if t not in frame.columns]
    if missing:
        raise _Fail(
            f"--target {missing[0]!r} is not a column of {data} "
            f"(columns: {list(frame.columns)})"
        )
    try:
        X = frame.drop(columns=target).to_numpy(dtype=float)
        y = frame[target].to_numpy(dtype=float)
    except ValueError as exc:
        raise _Fail(f"--data {data}: not all columns are numbers ({exc})") from None
    return X, y


def run_scan(args):
    """``sharpsk scan``: a learning-rate scan written to CSV."""
    import pandas as pd

    from ._scan import LearningRateScan

    if args.lr_max < args.lr_min:
        raise _Fail("--lr-max must not be smaller than --lr-min")
    if (args.param_name is None) != (args.param_values is None):
        raise _Fail("--param-name and --param-values go together")
    parquet = Path(args.out).suffix == ".parquet"
    _check_output(args.out, "--out", directory=parquet)
    if parquet and importlib.util.find_spec("pyarrow") is None:
        raise _Fail(
            f"--out {args.out}: writing Parquet needs pyarrow "
            "(pip install 'sharpsk[parquet]')"
        )
    if args.plot:
        _check_output(args.plot, "--plot")
    est, X, y = _scan_problem(args)
    space = np.geomspace if args.log else np.linspace
    rates = space(args.lr_min, args.lr_max, args.n_rates)
    t0 = time.perf_counter()
    scan = LearningRateScan(
        est,
        learning_rates=rates,
        lr_units=args.units,
        param_name=args.param_name,
        param_values=args.param_values,
        n_jobs=args.n_jobs,
        memory=args.cache,
        results_file=args.out if parquet else None,
        progress=_progress(args),
    ).fit(X, y)
    frame = _table(scan)
    out = Path(args.out)
    if not parquet:
        frame.to_csv(out, index=False)
    x = {"critical": "eta_over_eta_c", "initial_sharpness": "c"}.get(
        args.units, "learning_rate"
    )
    if args.param_name is None:
        print(_summary(frame, x))
    else:
        print(pd.crosstab(frame[f"param_{args.param_name}"], frame["label"]))
    print(
        f"{len(frame)} runs in {time.perf_counter() - t0:.1f} s "
        f"({scan.engine_} engine, {scan.n_cached_} cached); wrote {out}"
    )
    if args.plot:
        _scan_plot(scan, frame, args)
        print(f"wrote {args.plot}")
    return 0


def _scan_plot(scan, frame, args):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from . import plotting

    fig, ax = plt.subplots(figsize=(8, 5))
    if args.param_name is not None:
        plotting.plot_phase_diagram(
            frame, y=f"param_{args.param_name}", lr_units=args.units, ax=ax
        )
    else:
        plotting.plot_bifurcation(scan, lr_units=args.units, ax=ax)
    fig.tight_layout()
    fig.savefig(args.plot, dpi=120)
    plt.close(fig)


# The library's parameter names and the flags that set them.
_FLAGS = {
    "lr_units": "--units",
    "learning_rates": "--lr-min/--lr-max",
    "width": "--width",
    "hidden_layer_sizes": "--hidden",
    "init_scale": "--init-scale",
    "parameterization": "--parameterization",
    "optimizer": "--optimizer",
    "momentum": "--momentum",
    "param_name": "--param-name",
    "param_values": "--param-values",
    "max_iter": "--steps",
    "n_jobs": "--n-jobs",
    "memory": "--cache",
}
_PARAMETER = re.compile(
    r"\b(" + "|".join(_FLAGS) + r")(?:=(['\"]?)([^'\",;:)\s]*)\2|\b)"
)


def _as_flags(message):
    """A library message in the command's words: ``--units critical`` for
    ``lr_units='critical'``."""

    def flag(match):
        name, value = match.group(1), match.group(3)
        return _FLAGS[name] + ("" if value is None else f" {value}")

    return _PARAMETER.sub(flag, message)


def main(argv=None):
    """Entry point of the ``sharpsk`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return (run_demo if args.command == "demo" else run_scan)(args)
    except KeyboardInterrupt:
        # end a progress line first, if one is on the terminal
        start = "\n" if sys.stderr.isatty() else ""
        print(f"{start}sharpsk: interrupted", file=sys.stderr)
        return 130
    except (_Fail, ValueError, TypeError, OSError, MemoryError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        message = _as_flags(message)
        print(f"sharpsk {args.command}: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
