"""Workspace memory of VGG conv1_2 forward and backward (issue: at most 100 MB beyond the arrays).

    python bench/memory_vgg.py

Each (algorithm, batch) runs in a fresh process: after a small warm-up (JIT
compilation is not workspace) it records resident memory with the inputs, weight
and grad_output allocated, runs forward, input gradient and weight gradient
keeping all three results, and reports the peak resident memory above inputs plus
results: the scratch the algorithm needed (column buffers, per-thread copies,
temporaries).
"""
import json
import subprocess
import sys

PROBE = r"""
import json, resource, sys
import numpy as np
import fastconv
algorithm, batch = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(0)
# Warm-up on a small case: JIT compilation and library start-up are not workspace.
small = rng.standard_normal((2, 64, 8, 8), dtype=np.float32)
w_small = rng.standard_normal((64, 64, 3, 3), dtype=np.float32)
fastconv.conv2d_backward(fastconv.conv2d(small, w_small, padding=1, algorithm=algorithm), small, w_small,
                         padding=1, algorithm=algorithm)
x = rng.standard_normal((batch, 64, 224, 224), dtype=np.float32)
w = rng.standard_normal((64, 64, 3, 3), dtype=np.float32) * 0.05
go = rng.standard_normal((batch, 64, 224, 224), dtype=np.float32)
def rss_mb():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20
baseline = rss_mb()  # inputs, weight and grad_output
out = fastconv.conv2d(x, w, padding=1, algorithm=algorithm)
grad_input = fastconv.conv2d_backward(go, x, w, padding=1, needs=("input",), algorithm=algorithm)[0]
grad_weight = fastconv.conv2d_backward(go, x, w, padding=1, needs=("weight",), algorithm=algorithm)[1]
results = (out.nbytes + grad_input.nbytes + grad_weight.nbytes) / 2**20
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"baseline_mb": baseline + results, "peak_mb": peak}))
"""


def main():
    import fastconv
    algorithms = [a for a in fastconv.list_algorithms() if a != "reference"]
    print(f"{'algorithm':14s} {'batch':>5s} {'arrays MB':>10s} {'peak MB':>8s} {'workspace MB':>13s}")
    for batch in (1, 32):
        for algorithm in algorithms:
            out = subprocess.run([sys.executable, "-c", PROBE, algorithm, str(batch)], capture_output=True,
                                 text=True, check=True)
            r = json.loads(out.stdout)
            print(f"{algorithm:14s} {batch:5d} {r['baseline_mb']:10.0f} {r['peak_mb']:8.0f} "
                  f"{r['peak_mb'] - r['baseline_mb']:13.0f}")


if __name__ == "__main__":
    main()
