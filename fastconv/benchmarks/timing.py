"""Interleaved timing: medians over rounds, each round running every contender once."""
import statistics
import time


def median_seconds(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved_samples(contenders, rounds):
    """{name: [seconds of each round]}: every contender once per round, after one warm-up each."""
    for fn in contenders.values():
        fn()  # first-call costs: compilation, allocation, thread start
    samples = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, fn in contenders.items():
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return samples


def interleaved(contenders, rounds):
    """{name: median seconds} for {name: zero-argument callable}, after one warm-up each."""
    samples = interleaved_samples(contenders, rounds)
    return {name: statistics.median(times) for name, times in samples.items()}


def torch_or_none(threads):
    """torch with its thread count set like ours, or None when it is not installed."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    return torch
