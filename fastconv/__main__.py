"""The `fastconv` command: `fastconv bench` (the main job) and `fastconv info`."""
import argparse
import json
import sys

from fastconv.info import show_config


def _bench(args):
    from fastconv import benchmarking
    from fastconv.testing import SUITE_LAYERS

    known = [c.id for c in SUITE_LAYERS]
    layers = args.layers.split(",") if args.layers else None
    for name in layers or []:
        if name not in known:
            sys.exit(f"fastconv bench: unknown layer {name!r}; choose from {', '.join(known)}")
    show_config()
    gemm, copy = benchmarking.sgemm_gflops(), benchmarking.copy_gbytes()
    print(f"ceilings: sgemm {gemm:.0f} GFLOP/s, memory copy {copy:.1f} GB/s")
    try:
        import torch
        print(f"comparator: PyTorch {torch.__version__}")
        with_torch = True
    except ImportError:
        print("comparator: PyTorch not installed (pip install 'fastconv[bench]' to compare)")
        with_torch = False
    ops = benchmarking.OPS if args.backward else ("forward",)
    results = benchmarking.run_suite(layers, args.algorithms.split(",") if args.algorithms else None,
                                     ops, rounds=args.rounds, with_torch=with_torch)
    _print_table(results, gemm)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(dict(sgemm_gflops=gemm, copy_gbytes=copy, results=results), fh, indent=1)


def _print_table(results, gemm):
    by_key = {(r["layer"], r["op"], r["contender"]): r for r in results}
    print(f"\n{'layer':16s} {'op':11s} {'algorithm':10s} {'ms':>9s} {'GFLOP/s':>8s} "
          f"{'%sgemm':>7s} {'x ref':>7s} {'x torch':>8s}")
    for r in results:
        if r["contender"] == "reference":
            continue
        gflops = r["flops"] / r["seconds"] / 1e9
        ref = by_key[(r["layer"], r["op"], "reference")]["seconds"] / r["seconds"]
        torch_row = by_key.get((r["layer"], r["op"], "torch"))
        vs_torch = f"{torch_row['seconds'] / r['seconds']:8.2f}" if torch_row else f"{'-':>8s}"
        print(f"{r['layer']:16s} {r['op']:11s} {r['contender']:10s} {r['seconds'] * 1e3:9.2f} "
              f"{gflops:8.1f} {100 * gflops / gemm:6.0f}% {ref:7.1f} {vs_torch}")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="fastconv", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    bench = commands.add_parser("bench", help="time every algorithm on the public layer suite")
    bench.add_argument("--layers", help="comma-separated layer names (default: all)")
    bench.add_argument("--algorithms", help="comma-separated algorithms (default: all compiled + auto)")
    bench.add_argument("--backward", action="store_true", help="also time both gradients")
    bench.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds (median)")
    bench.add_argument("--json", help="also write the results to this file")
    commands.add_parser("info", help="print the build and machine configuration")
    args = parser.parse_args(argv)
    if args.command == "bench":
        _bench(args)
    else:
        show_config()


if __name__ == "__main__":
    main()
