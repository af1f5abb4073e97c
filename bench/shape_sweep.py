"""fastconv "auto" against PyTorch on common CNN layer shapes outside the public suite.

    python bench/shape_sweep.py                 # every shape, both layouts, all three ops
    python bench/shape_sweep.py --layers dw_3x3_c32_56,grouped_g32_c128_28 --rounds 9

Each op is timed like `fastconv bench` (interleaved with PyTorch round by round, after a
warm-up), reported as the median and the fastest round: on a shared machine the fastest
round is the steadier figure. The last lines are geometric means of the ratios.
"""
import argparse
import statistics

import numpy as np

from fastconv.benchmarks.conv import OPS, _fastconv_ops, _torch_ops
from fastconv.benchmarks.timing import interleaved_samples, torch_or_none
from fastconv.testing import ConvCase, conv_inputs

C = ConvCase
SHAPES = [
    C("3x3_c16_32", 64, 16, 32, 32, 16, (3, 3), padding=1),
    C("3x3_c32_32", 32, 32, 32, 32, 32, (3, 3), padding=1),
    C("3x3_c64_28", 16, 64, 28, 28, 64, (3, 3), padding=1),
    C("3x3_c128_28", 8, 128, 28, 28, 128, (3, 3), padding=1),
    C("3x3_c128_14", 16, 128, 14, 14, 128, (3, 3), padding=1),
    C("3x3_c512_7", 8, 512, 7, 7, 512, (3, 3), padding=1),
    C("3x3_c64_56", 4, 64, 56, 56, 64, (3, 3), padding=1),
    C("3x3s2_c64_56", 16, 64, 56, 56, 128, (3, 3), stride=2, padding=1),
    C("3x3s2_c128_28", 16, 128, 28, 28, 256, (3, 3), stride=2, padding=1),
    C("3x3s2_c32_32", 32, 32, 32, 32, 64, (3, 3), stride=2, padding=1),
    C("1x1_c256_14", 16, 256, 14, 14, 64, (1, 1)),
    C("1x1_c64_28", 16, 64, 28, 28, 256, (1, 1)),
    C("1x1s2_c256_28", 16, 256, 28, 28, 512, (1, 1), stride=2),
    C("5x5_c64k16_14", 64, 64, 14, 14, 16, (5, 5), padding=2),
    C("5x5_c32k64_28", 32, 32, 28, 28, 64, (5, 5), padding=2),
    C("5x5_c16k32_14", 64, 16, 14, 14, 32, (5, 5), padding=2),
    C("5x5_c6k16_lenet", 128, 6, 14, 14, 16, (5, 5)),
    C("7x7s2_stem", 8, 3, 224, 224, 64, (7, 7), stride=2, padding=3),
    C("first_3x3_c3_32", 64, 3, 32, 32, 32, (3, 3), padding=1),
    C("first_3x3s2_c3_112", 8, 3, 112, 112, 32, (3, 3), stride=2, padding=1),
    C("dilated_3x3_c16_32", 32, 16, 32, 32, 16, (3, 3), padding=2, dilation=2),
    C("dw_3x3_c32_56", 16, 32, 56, 56, 32, (3, 3), padding=1, groups=32),
    C("dw_3x3s2_c96_56", 16, 96, 56, 56, 96, (3, 3), stride=2, padding=1, groups=96),
    C("dw_3x3_c384_14", 16, 384, 14, 14, 384, (3, 3), padding=1, groups=384),
    C("grouped_g32_c128_28", 16, 128, 28, 28, 128, (3, 3), padding=1, groups=32),
]


def geometric_mean(values):
    return float(np.exp(np.mean(np.log(values))))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", help="comma-separated shape names (default: all)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch = torch_or_none(args.threads)
    if torch is None:
        raise SystemExit("PyTorch is not installed: pip install torch==2.13.0")
    import fastconv
    fastconv.set_num_threads(args.threads)
    wanted = set(args.layers.split(",")) if args.layers else None
    unknown = (wanted or set()) - {case.id for case in SHAPES}
    if unknown:
        raise SystemExit(f"unknown layers {sorted(unknown)}; known: {[c.id for c in SHAPES]}")
    medians, fastest = [], []
    print(f"{'layer':22s} layout  op           auto ms (fastest)  torch ms (fastest)  x torch (fastest)")
    for case in SHAPES:
        if wanted and case.id not in wanted:
            continue
        for data_format in ("NCHW", "NHWC"):
            x, weight, bias = conv_inputs(case, np.float32, data_format)
            ours = _fastconv_ops(case, x, weight, bias, data_format, "auto")
            theirs = _torch_ops(torch, case, x, weight, bias, data_format)
            for op in OPS:
                s = interleaved_samples({"auto": ours[op], "torch": theirs[op]}, args.rounds)
                med = {k: statistics.median(v) for k, v in s.items()}
                low = {k: min(v) for k, v in s.items()}
                medians.append(med["torch"] / med["auto"])
                fastest.append(low["torch"] / low["auto"])
                print(f"{case.id:22s} {data_format}    {op:11s}  {med['auto']*1e3:7.2f} ({low['auto']*1e3:6.2f})"
                      f"   {med['torch']*1e3:7.2f} ({low['torch']*1e3:6.2f})"
                      f"   {medians[-1]:5.2f} ({fastest[-1]:5.2f})", flush=True)
    print(f"geometric mean x torch over {len(medians)} measurements: medians {geometric_mean(medians):.2f} "
          f"(min {min(medians):.2f}), fastest rounds {geometric_mean(fastest):.2f} (min {min(fastest):.2f})")


if __name__ == "__main__":
    main()
