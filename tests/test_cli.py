"""The command line and the README's promises."""
import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _run(*args):
    return subprocess.run([sys.executable, "-m", "fastconv", *args], capture_output=True,
                          text=True, timeout=600)


def test_info():
    result = _run("info")
    assert result.returncode == 0, result.stderr
    for field in ("OpenMP", "threads:", "openmp idle:", "blas:", "numba:", "memory:", "algorithms:",
                  "autotune cache:"):
        assert field in result.stdout, field
    assert "direct" in result.stdout


def test_bench_one_layer_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    result = _run("bench", "--layers", "fmnist_conv1", "--algorithms", "direct", "--rounds", "1",
                  "--json", str(out))
    assert result.returncode == 0, result.stderr
    assert "sgemm" in result.stdout and "fmnist_conv1" in result.stdout
    data = json.loads(out.read_text())
    rows = data["conv"]
    assert {r["contender"] for r in rows} >= {"direct", "reference"}
    assert {r["data_format"] for r in rows} == {"NCHW", "NHWC"}
    assert all(r["seconds"] > 0 and r["flops"] > 0 for r in rows)
    assert data["sgemm_gflops"] > 0 and data["copy_gbytes"] > 0
    assert "geometric mean" in result.stdout


def test_bench_compares_the_best_numba_and_cython_algorithms():
    result = _run("bench", "--layers", "fmnist_conv1", "--algorithms", "direct,numba_direct",
                  "--rounds", "1", "--threads", "1", "--quiet")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if "Numba vs Cython" in line]
    assert len(lines) == 2 and "over 1 measurements" in lines[0], lines   # the forward


def test_numba_gap_takes_the_best_of_each_family():
    from fastconv.benchmarks.report import numba_gap
    rows = [dict(layer="l", data_format="NCHW", op="forward", contender=name, seconds=s)
            for name, s in (("direct", 2.0), ("im2col", 1.0), ("numba_direct", 3.0),
                            ("numba_im2col", 1.5), ("auto", 0.1), ("torch", 0.1))]
    assert numba_gap(rows) == ["conv2d Numba vs Cython NCHW: the best Numba algorithm takes 1.50x "
                               "the best Cython one's time (geometric mean; worst 1.50x, l forward) "
                               "over 1 measurements"]
    assert numba_gap([r for r in rows if not r["contender"].startswith("numba_")]) == []


def test_numba_gap_leaves_out_numba_algorithms_that_ran_another():
    from fastconv.benchmarks.report import numba_gap
    rows = [dict(layer="l", data_format="NHWC", op="forward", contender=name, seconds=s, runs=runs)
            for name, s, runs in (("direct", 1.0, "direct"), ("numba_winograd", 1.0, "direct"),
                                  ("numba_im2col", 1.2, "numba_im2col"))]
    assert numba_gap(rows) == ["conv2d Numba vs Cython NHWC: the best Numba algorithm takes 1.20x "
                               "the best Cython one's time (geometric mean; worst 1.20x, l forward) "
                               "over 1 measurements"]


def test_bench_rows_say_which_algorithm_ran():
    from fastconv.benchmarks.conv import run_conv_suite
    rows = run_conv_suite(layers=["resnet_1x1"], algorithm_names=["winograd", "numba_im2col"],
                          data_formats=("NCHW",), rounds=1, threads=1, with_torch=False,
                          progress=lambda _: None)
    runs = {r["contender"]: r["runs"] for r in rows}
    assert runs["numba_im2col"] == "numba_im2col" and runs["reference"] == "reference"
    assert runs["winograd"] != "winograd"     # Winograd declines a 1x1 layer


def test_bench_markdown_and_plot(tmp_path):
    pytest.importorskip("matplotlib")
    plot = tmp_path / "bench.png"
    result = _run("bench", "--layers", "fmnist_conv1", "--algorithms", "direct", "--rounds", "1",
                  "--markdown", "--plot", str(plot), "--threads", "1", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "| layer | layout | op |" in result.stdout
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_rejects_unknown_algorithm():
    result = _run("bench", "--algorithms", "fft")
    assert result.returncode != 0 and "unknown algorithm 'fft'" in result.stderr


def test_bench_rejects_unknown_layer():
    result = _run("bench", "--layers", "nope")
    assert result.returncode != 0 and "unknown layer 'nope'" in result.stderr


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci in (ROOT / "README.md").read_text()


def test_bench_training_reports_images_per_second(tmp_path):
    out = tmp_path / "training.json"
    result = _run("bench", "--training", "--rounds", "1", "--json", str(out))
    assert result.returncode == 0, result.stderr
    rows = json.loads(out.read_text())["training"]
    assert {(r["mode"], r["contender"]) for r in rows} >= {("training", "fastconv"), ("inference", "fastconv")}
    assert all(r["images_per_second"] > 0 for r in rows)
    assert "images/s" in result.stdout
