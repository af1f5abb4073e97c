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
    for field in ("OpenMP", "threads:", "blas:", "numba:", "memory:", "algorithms:", "autotune cache:"):
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
