"""The `fastconv` command: `fastconv bench` (the main job), `fastconv train` and `fastconv info`."""
import argparse
import json
import os
import sys
import time


def _bench(args):
    import fastconv
    from fastconv import benchmarks
    from fastconv.benchmarks import report
    from fastconv.testing import POOL_SUITE_LAYERS, SUITE_LAYERS

    known = [c.id for c in SUITE_LAYERS + POOL_SUITE_LAYERS]
    layers = args.layers.split(",") if args.layers else None
    for name in layers or []:
        if name not in known:
            sys.exit(f"fastconv bench: unknown layer {name!r}; choose from {', '.join(known)}")
    algorithm_names = args.algorithms.split(",") if args.algorithms else None
    for name in algorithm_names or []:
        if name not in fastconv.list_algorithms() + ["auto"]:
            sys.exit(f"fastconv bench: unknown algorithm {name!r}; choose from "
                     f"{', '.join(fastconv.list_algorithms() + ['auto'])}")
    if args.threads:
        fastconv.set_num_threads(args.threads)
    threads = fastconv.get_num_threads()
    started = time.perf_counter()
    fastconv.show_config()
    sgemm, copy = benchmarks.sgemm_gflops(), benchmarks.copy_gbytes()
    print(f"ceilings:           sgemm {sgemm:.0f} GFLOP/s, memory copy {copy:.1f} GB/s")
    if os.environ.get("OPENBLAS_CORETYPE"):
        print(f"note:               OPENBLAS_CORETYPE={os.environ['OPENBLAS_CORETYPE']} makes OpenBLAS "
              "use that CPU's kernels, not this one's; unset it to measure this CPU's own")
    torch = benchmarks.timing.torch_or_none(threads)
    print(f"comparator:         PyTorch {torch.__version__}, {threads} threads" if torch else
          "comparator:         PyTorch is not installed; `pip install 'fastconv[bench]'` adds the comparison")
    if args.training:
        from fastconv.benchmarks import training
        rows = training.run_training_benchmark(threads, rounds=args.rounds or 5,
                                               with_torch=torch is not None, progress=print)
        print()
        print(report.render(training.training_table(rows), args.markdown))
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(dict(config=fastconv.info.config(), training=rows), fh, indent=1)
        return
    ops = benchmarks.conv.OPS if (args.backward or args.full) else ("forward",)
    rounds = args.rounds or (7 if args.full else 5)
    progress = (lambda line: print(line, flush=True)) if not args.quiet else (lambda line: None)
    results = dict(config=fastconv.info.config(), sgemm_gflops=sgemm, copy_gbytes=copy)
    conv_layers = [c.id for c in SUITE_LAYERS if layers is None or c.id in layers]
    pool_layers = [c.id for c in POOL_SUITE_LAYERS if layers is None or c.id in layers]
    tables = []
    if conv_layers:
        results["conv"] = benchmarks.run_conv_suite(conv_layers, algorithm_names, ops, rounds=rounds,
                                                    threads=threads, with_torch=torch is not None,
                                                    progress=progress)
        tables.append(report.conv_table(results["conv"], sgemm))
    if pool_layers:
        results["pooling"] = benchmarks.run_pool_suite(pool_layers, rounds=rounds, threads=threads,
                                                       with_torch=torch is not None, progress=progress)
        tables.append(report.pool_table(results["pooling"], copy))
    if not layers and torch is not None:  # the whole suite: the torch-backend model too
        from fastconv.benchmarks import torch_backend
        results["resnet"] = torch_backend.run_resnet_benchmark(threads, rounds=rounds, progress=progress)
        tables.append(torch_backend.resnet_table(results["resnet"]))
    for table in tables:
        print()
        print(report.render(table, args.markdown))
    print()
    print("\n".join(report.summary(results.get("conv", []), results.get("pooling", []))))
    print(f"({time.perf_counter() - started:.0f} s)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)
    if args.plot and results.get("conv"):
        report.plot(results["conv"], args.plot)
        print(f"plot written to {args.plot}")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="fastconv", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    bench = commands.add_parser("bench", help="time every algorithm on the public layer suite")
    bench.add_argument("--layers", help="comma-separated convolution or pooling suite layers "
                                        "(default: all, and the torch-backend ResNet)")
    bench.add_argument("--algorithms", help="comma-separated algorithms (default: all compiled + auto)")
    bench.add_argument("--backward", action="store_true", help="also time both gradients")
    bench.add_argument("--full", action="store_true", help="forward and backward, more rounds")
    bench.add_argument("--training", action="store_true",
                       help="images/s training and inference of the Fashion-MNIST net, fastconv vs PyTorch")
    bench.add_argument("--threads", type=int, help="threads for fastconv and PyTorch (default: all cores)")
    bench.add_argument("--rounds", type=int, help="interleaved timing rounds per median (default 5)")
    bench.add_argument("--json", metavar="FILE", help="also write every measurement to FILE")
    bench.add_argument("--plot", metavar="FILE.png", help="bar chart of GFLOP/s per layer and algorithm")
    bench.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    bench.add_argument("--quiet", action="store_true", help="no progress lines")
    commands.add_parser("info", help="print the build and machine configuration")
    from fastconv.train import cli as train_cli
    train_cli.add_parser(commands)
    args = parser.parse_args(argv)
    if args.command == "bench":
        _bench(args)
    elif args.command == "train":
        sys.exit(train_cli.run(args))
    else:
        from fastconv.info import show_config
        show_config()


if __name__ == "__main__":
    main()
