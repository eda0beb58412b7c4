"""The installed ``sharpsk`` command, run in a subprocess."""

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import sharpsk

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
    for args in ((), ("--help",), ("demo", "--help"), ("scan", "--help")):
        res = run(*args)
        assert "usage: sharpsk" in res.stdout
        assert res.returncode == (2 if not args else 0)


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
            (
                "scan",
                "--model",
                "mlp",
                "--units",
                "critical",
                "--lr-min",
                "0.5",
                "--lr-max",
                "1",
                "--steps",
                "1",
                "--n-rates",
                "1",
            ),
            1,
            "critical",
        ),
    ],
)
def test_bad_arguments_one_line_no_traceback(args, status, culprit):
    res = run(*args)
    assert res.returncode == status
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr
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


def test_scan_uv_critical_units_with_plot(tmp_path):
    out, png = tmp_path / "uv.csv", tmp_path / "uv.png"
    res = run(
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
        "--no-progress",
    )
    assert res.returncode == 0, res.stderr
    frame = pd.read_csv(out)
    assert len(frame) == 8 and frame["label"].iloc[0] == "converge"
    assert png.stat().st_size > 0


def test_scan_mlp_cached_rerun(tmp_path):
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
    first = run(*args)
    assert first.returncode == 0, first.stderr
    before = pd.read_csv(tmp_path / "mlp.csv")
    second = run(*args)
    assert second.returncode == 0, second.stderr
    assert "3 cached" in second.stdout
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "mlp.csv"), before)


def test_outputs_are_checked_before_computing(tmp_path, capsys):
    # Regression (issue 13): a bad --out was found only after the whole scan.
    from sharpsk.cli import main

    afile = tmp_path / "a.csv"
    afile.write_text("x")
    scan = ["scan", "--lr-min", "0.1", "--lr-max", "1", "--no-progress"]
    cases = [
        (scan + ["--out", str(tmp_path)], "is a folder"),
        (scan + ["--out", str(afile / "b.csv")], "is a file, not a folder"),
        (scan + ["--out", str(tmp_path / "ok.csv"), "--plot", str(tmp_path)], "--plot"),
        (["demo", "--out", str(afile), "--no-progress"], "is a file"),
        (["scan", "--width", str(10**13), "--lr-min", "0.1", "--lr-max", "1"], "width"),
    ]
    for args, culprit in cases:
        assert main(args) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and culprit in err[0], err
    assert not (tmp_path / "ok.csv").exists()  # nothing computed, nothing written


def test_demo_creates_its_folder_only_with_results(tmp_path, capsys, monkeypatch):
    from sharpsk import cli

    def fail(*args, **kwargs):
        raise ValueError("no scan today")

    monkeypatch.setattr("sharpsk._scan.LearningRateScan.fit", fail)
    out = tmp_path / "new" / "demo"
    assert cli.main(["demo", "--out", str(out), "--no-progress"]) == 1
    assert "no scan today" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()
