"""fastconv keeps freed memory for the next batch: training steps reuse pages, no faults."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc"),
    pytest.mark.skipif(os.environ.get("FASTCONV_SANITIZED") == "1",
                       reason="AddressSanitizer replaces malloc: mallopt does nothing there"),
]

STEPS = """
    import json, resource
    import numpy as np
    import fastconv
    from fastconv.benchmarks.training import fashion_mnist_net
    rng = np.random.default_rng(0)
    x = rng.random((128, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, 128)
    model = fashion_mnist_net()
    for _ in range(3):
        model.train_on_batch(x, y)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(3):
        model.train_on_batch(x, y)
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 3
    print(json.dumps(dict(kept=fastconv._heap.kept, faults=faults,
                          memory=fastconv.info.config()["memory"])))
"""


def _run_steps(**environ):
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("MALLOC_") and key != "GLIBC_TUNABLES"}
    env.update(environ)
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(STEPS)], env=env,
                            capture_output=True, text=True, timeout=300, check=True)
    return json.loads(result.stdout.splitlines()[-1])


def test_training_steps_reuse_freed_memory_instead_of_faulting_in_fresh_pages():
    report = _run_steps()
    assert report["kept"] and "128 MB" in report["memory"]
    # glibc's defaults fault in ~7,000 fresh pages per step of this network (28 MB)
    assert report["faults"] < 100, report


def test_the_opt_out_keeps_glibcs_defaults_which_fault_every_step():
    report = _run_steps(FASTCONV_KEEP_FREED_MEMORY="0")
    assert not report["kept"] and report["memory"] == "system defaults"
    assert report["faults"] > 1000, report


def test_the_users_own_malloc_settings_win():
    report = _run_steps(MALLOC_TRIM_THRESHOLD_="1000000")
    assert not report["kept"]
