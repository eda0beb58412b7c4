"""The installed ``sharpsk`` command, run in a subprocess."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import sharpsk
from sharpsk.cli import main

SHARPSK = Path(sys.executable).with_name("sharpsk")
pytestmark = pytest.mark.skipif(
    not SHARPSK.exists(), reason="the sharpsk console script is not installed"
)


def run(*args, cwd=None):
    return subprocess.run(
        [str(SHARPSK), *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def test_version_and_help():
    res = run("--version")
    assert (
        res.returncode == 0 and res.stdout.strip() == f"sharpsk {sharpsk.__version__}"
    )
    # python -m sharpsk is the same command
    res = subprocess.run(
        [sys.executable, "-m", "sharpsk", "--help"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0 and "usage: sharpsk" in res.stdout


def in_process(capsys, *args):
    """``sharpsk ARGS`` in this process: (status, stdout, stderr)."""
    try:
        status = main(list(args))
    except SystemExit as exc:  # argparse
        status = exc.code
    out = capsys.readouterr()
    return status, out.out, out.err


def test_help_shows_every_default(capsys):
    for command in ((), ("demo",), ("scan",)):
        status, out, _ = in_process(capsys, *command, "--help")
        assert status == 0 and "usage: sharpsk" in out
    _, out, _ = in_process(capsys, "scan", "--help")
    for text in ("(default: 50)", "(default: gd)", "(default: absolute)", "--target"):
        assert text in " ".join(out.split()), text
    status, out, _ = in_process(capsys)
    assert status == 2 and "usage: sharpsk" in out


@pytest.mark.parametrize(
    "args, status, culprit",
    [
        (("scan", "--lr-min", "-1", "--lr-max", "2"), 2, "--lr-min"),
        (("scan", "--lr-min", "1"), 2, "--lr-max"),
        (("scan", "--lr-min", "1", "--lr-max", "2", "--model", "cnn"), 2, "--model"),
        (("demo", "--n-rates", "zero"), 2, "--n-rates"),
        (("frobnicate",), 2, "frobnicate"),
        (("scan", "--lr-min", "2", "--lr-max", "1", "--no-progress"), 1, "--lr-max"),
        (
            ("scan", "--lr-min", "1", "--lr-max", "2", "--param-name", "width"),
            1,
            "--param-values",
        ),
        (
            ("scan", "--model", "mlp", "--units", "critical", "--lr-min", "0.5")
            + ("--lr-max", "1", "--steps", "1", "--n-rates", "1"),
            1,
            "--units critical needs a positive, finite critical learning rate",
        ),
        (
            ("scan", "--model", "uv", "--data", "digits", "--lr-min", "0.1")
            + ("--lr-max", "1"),
            1,
            "--model uv has one output",
        ),
        (("scan", "--data", "nope.txt", "--lr-min", "0.1", "--lr-max", "1"), 1, "nope"),
        (
            ("scan", "--lr-min", "0.1", "--lr-max", "1", "--out", "/nonexistent/x.csv"),
            1,
            "/nonexistent does not exist",
        ),
    ],
)
def test_bad_arguments_one_line_no_traceback(capsys, args, status, culprit):
    got, _, err = in_process(capsys, *args)
    assert got == status
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    assert culprit in lines[0]


def test_demo_writes_table_and_figures(tmp_path):
    res = run(
        "demo",
        "--out",
        str(tmp_path),
        "--n-rates",
        "60",
        "--steps",
        "1500",
        "--no-progress",
    )
    assert res.returncode == 0, res.stderr
    frame = pd.read_csv(tmp_path / "scan.csv")
    assert len(frame) == 60
    # Below eta_c every run converges; the route to chaos follows above it.
    low = frame[frame["eta_over_eta_c"] < 0.95]
    assert (low["label"] == "converge").all()
    assert {"eos", "periodic", "chaotic", "diverge"} <= set(frame["label"])
    for name in ("route_to_chaos.png", "sharpness_traces.png", "trace_tails.csv"):
        assert (tmp_path / name).stat().st_size > 0
    assert "converge" in res.stdout and "chaotic" in res.stdout


def test_scan_uv_critical_units_with_plot(tmp_path, capsys):
    out, png = tmp_path / "uv.csv", tmp_path / "uv.png"
    status, _, err = in_process(
        capsys,
        "scan",
        "--model",
        "uv",
        "--units",
        "critical",
        "--lr-min",
        "0.5",
        "--lr-max",
        "1.2",
        "--n-rates",
        "8",
        "--steps",
        "800",
        "--init-scale",
        "0.1",
        "--out",
        str(out),
        "--plot",
        str(png),
    )
    assert status == 0, err
    assert "\r" not in err  # stderr is no terminal here: no progress line
    frame = pd.read_csv(out)
    assert len(frame) == 8 and frame["label"].iloc[0] == "converge"
    assert png.stat().st_size > 0


def test_scan_mlp_cached_rerun(tmp_path, capsys):
    args = (
        "scan",
        "--model",
        "mlp",
        "--hidden",
        "8",
        "--n-samples",
        "60",
        "--lr-min",
        "0.01",
        "--lr-max",
        "0.1",
        "--n-rates",
        "3",
        "--steps",
        "20",
        "--n-jobs",
        "2",
        "--cache",
        str(tmp_path / "cache"),
        "--out",
        str(tmp_path / "mlp.csv"),
        "--no-progress",
    )
    status, _, err = in_process(capsys, *args)
    assert status == 0, err
    before = pd.read_csv(tmp_path / "mlp.csv")
    status, out, err = in_process(capsys, *args)
    assert status == 0, err
    assert "3 cached" in out
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "mlp.csv"), before)


def test_outputs_are_checked_before_computing(tmp_path, capsys):
    # Regression (issue 13): a bad --out was found only after the whole scan.
    afile = tmp_path / "a.csv"
    afile.write_text("x")
    scan = ["scan", "--lr-min", "0.1", "--lr-max", "1", "--no-progress"]
    cases = [
        (scan + ["--out", str(tmp_path)], "is a folder"),
        (scan + ["--out", str(afile / "b.csv")], "a.csv is a file"),
        (scan + ["--out", str(tmp_path / "no" / "b.csv")], "does not exist"),
        (scan + ["--out", str(tmp_path / "ok.csv"), "--plot", str(tmp_path)], "--plot"),
        (["demo", "--out", str(afile), "--no-progress"], "is a file"),
        (
            ["scan", "--width", str(10**13), "--lr-min", "0.1", "--lr-max", "1"],
            "--width 10000000000000",
        ),
    ]
    for args, culprit in cases:
        assert main(args) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and culprit in err[0], err
    assert not (tmp_path / "ok.csv").exists()  # nothing computed, nothing written


def test_demo_creates_its_folder_only_with_results(tmp_path, capsys, monkeypatch):
    def fail(*args, **kwargs):
        raise ValueError("no scan today")

    monkeypatch.setattr("sharpsk._scan.LearningRateScan.fit", fail)
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--no-progress"]) == 1
    assert "no scan today" in capsys.readouterr().err
    assert not out.exists()


def test_scan_your_own_data(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 3))
    y = X @ np.array([1.0, -0.5, 0.2])
    csv = tmp_path / "data.csv"
    pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "t": y}).to_csv(
        csv, index=False
    )
    npz = tmp_path / "data.npz"
    np.savez(npz, X=X, y=y)
    tables = []
    for data, extra in ((csv, ["--target", "t"]), (csv, []), (npz, [])):
        out = tmp_path / f"{len(tables)}.csv"
        status, _, err = in_process(
            capsys,
            "scan",
            "--model",
            "mlp",
            "--hidden",
            "4",
            "--data",
            str(data),
            *extra,
            "--lr-min",
            "0.05",
            "--lr-max",
            "0.2",
            "--n-rates",
            "2",
            "--steps",
            "20",
            "--out",
            str(out),
        )
        assert status == 0, err
        tables.append(pd.read_csv(out))
    pd.testing.assert_frame_equal(tables[0], tables[1])
    pd.testing.assert_frame_equal(tables[0], tables[2])
    status, _, err = in_process(
        capsys,
        "scan",
        "--data",
        str(csv),
        "--target",
        "z",
        "--lr-min",
        "0.1",
        "--lr-max",
        "1",
    )
    assert status == 1 and "--target 'z' is not a column" in err


def test_scan_streams_to_parquet(tmp_path, capsys):
    pytest.importorskip("pyarrow")
    out = tmp_path / "uv.parquet"
    status, stdout, err = in_process(
        capsys,
        "scan",
        "--model",
        "uv",
        "--lr-min",
        "0.5",
        "--lr-max",
        "2.5",
        "--n-rates",
        "9",
        "--units",
        "critical",
        "--steps",
        "300",
        "--out",
        str(out),
        "--no-progress",
    )
    assert status == 0, err
    frame = pd.read_parquet(out)
    assert len(frame) == 9 and sorted(frame["run"]) == list(range(9))
    assert {"converge", "diverge"} <= set(frame["label"])
    assert f"wrote {out}" in stdout
