"""fastconv.autotune and its on-disk cache: round trip, corruption, foreign files, concurrency."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastconv
from fastconv import algorithms
from fastconv._geometry import conv2d_geometry
from fastconv.algorithms import tuning
from fastconv.testing import CONV_CASES, conv_inputs

CASE = next(c for c in CONV_CASES if c.id == "wide_channels")


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTCONV_CACHE_DIR", str(tmp_path))
    tuning.clear_memory()
    yield tmp_path
    tuning.clear_memory()


def _geom():
    x, w, _ = conv_inputs(CASE)
    return conv2d_geometry(x.shape, w.shape, **CASE.kwargs)


def test_autotune_measures_and_stores_winners(cache_dir):
    x, w, _ = conv_inputs(CASE)
    report = fastconv.autotune(x, w, repeats=2, **CASE.kwargs)
    assert set(report) == set(algorithms.OPS)
    for op, entry in report.items():
        assert entry["winner"] == min(entry["seconds"], key=entry["seconds"].get)
        assert "reference" not in entry["seconds"]
        assert algorithms.select(op, _geom(), np.float32).name == entry["winner"]
    stored = json.loads((cache_dir / "autotune.json").read_text())
    assert stored["format"] == tuning.FORMAT and len(stored["entries"]) == 3


def _rule(op):
    return algorithms.auto.builtin_choice(op, _geom())


def test_a_later_process_uses_the_cache(cache_dir):
    # Record a choice the built-in rule would not make, then ask a new process.
    key = tuning.case_key("forward", _geom(), np.dtype(np.float32), fastconv.get_num_threads())
    other = "direct" if algorithms.auto.builtin_choice("forward", _geom()) != "direct" else "im2col"
    tuning.record({key: other})
    script = textwrap.dedent(f"""
        import numpy as np, fastconv
        from fastconv import algorithms
        from fastconv._geometry import conv2d_geometry
        from fastconv.testing import CONV_CASES, conv_inputs
        case = [c for c in CONV_CASES if c.id == {CASE.id!r}][0]
        x, w, _ = conv_inputs(case)
        geom = conv2d_geometry(x.shape, w.shape, **case.kwargs)
        print(algorithms.select("forward", geom, np.float32).name)
    """)
    out = subprocess.run([sys.executable, "-W", "error", "-c", script], capture_output=True, text=True,
                         env=dict(os.environ), timeout=120)
    assert out.stdout.strip() == other, out.stderr


@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe\x00", b"[1, 2, 3]",
                                     b'{"format": "fastconv-autotune", "version": 99, "entries": {}}'])
def test_corrupted_cache_is_ignored_with_a_warning(cache_dir, content):
    (cache_dir / "autotune.json").write_bytes(content)
    x, w, b = conv_inputs(CASE)
    with pytest.warns(fastconv.AutotuneCacheWarning, match="ignoring the autotune cache"):
        out = fastconv.conv2d(x, w, b, **CASE.kwargs)
    np.testing.assert_allclose(out, fastconv.conv2d(x, w, b, algorithm="reference", **CASE.kwargs),
                               rtol=1e-4, atol=1e-4)


def test_foreign_cache_is_ignored_with_a_warning(cache_dir):
    key = tuning.case_key("forward", _geom(), np.dtype(np.float32), fastconv.get_num_threads())
    foreign = {"format": tuning.FORMAT, "version": tuning.VERSION,
               "machine": dict(tuning.machine_fingerprint(), cpu="another CPU"),
               "entries": {key: "direct"}}
    (cache_dir / "autotune.json").write_text(json.dumps(foreign))
    with pytest.warns(fastconv.AutotuneCacheWarning, match="another machine"):
        assert algorithms.select("forward", _geom(), np.float32).name == _rule("forward")


def test_missing_cache_directory_warns(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTCONV_CACHE_DIR", str(tmp_path / "nowhere"))
    tuning.clear_memory()
    with pytest.warns(fastconv.AutotuneCacheWarning, match="does not exist"):
        algorithms.select("forward", _geom(), np.float32)


def test_unknown_algorithm_in_cache_falls_back_to_the_rule(cache_dir):
    key = tuning.case_key("forward", _geom(), np.dtype(np.float32), fastconv.get_num_threads())
    tuning.record({key: "no_such_algorithm"})
    assert algorithms.select("forward", _geom(), np.float32).name == _rule("forward")


def test_concurrent_writers_keep_every_entry(cache_dir):
    script = textwrap.dedent("""
        import sys
        from fastconv.algorithms import tuning
        writer = sys.argv[1]
        for i in range(25):
            tuning.record({f"writer{writer}-entry{i}": "direct"})
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, str(n)], env=dict(os.environ))
             for n in range(4)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    entries = json.loads((cache_dir / "autotune.json").read_text())["entries"]
    assert {f"writer{n}-entry{i}" for n in range(4) for i in range(25)} <= set(entries)
    assert not [f for f in os.listdir(cache_dir) if f.endswith(".tmp")]


def test_autotune_rejects_bad_arguments():
    x, w, _ = conv_inputs(CASE)
    with pytest.raises(ValueError, match="ops may only name"):
        fastconv.autotune(x, w, ops=("backward",))
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        fastconv.autotune(x.shape, w.shape, dtype=np.int32)
    with pytest.raises(ValueError, match="stride must be positive"):
        fastconv.autotune(x.shape, w.shape, stride=0)
