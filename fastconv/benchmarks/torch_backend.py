"""Images per second of a small ResNet, forward + backward: stock PyTorch against fastconv.torch.

The model (CIFAR-style, 32x32 RGB inputs, batch 64): a 3x3 stem convolution and two
residual stages of one basic block each (the second strided, with a 1x1 projection
shortcut), global average pooling and a linear classifier. The fastconv contender is
`fastconv.torch.convert` of the same model: identical weights, every Conv2d and the
global pooling on fastconv's kernels, BatchNorm, ReLU and Linear still torch's.
Both run with the same thread count, interleaved, in both memory formats.
"""
import numpy as np

from .. import _config
from .timing import interleaved

BATCH = 64
IMAGE_SIZE = 32
WIDTHS = (32, 64)
MEMORY_FORMATS = ("NCHW", "channels_last")


def _resnet(torch, widths=WIDTHS, classes=10):
    nn = torch.nn

    class BasicBlock(nn.Module):
        def __init__(self, in_channels, out_channels, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(out_channels)
            self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(out_channels)
            self.shortcut = nn.Sequential()
            if stride != 1 or in_channels != out_channels:
                self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                              nn.BatchNorm2d(out_channels))

        def forward(self, x):
            out = torch.relu(self.bn1(self.conv1(x)))
            return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))

    first, second = widths
    return nn.Sequential(
        nn.Conv2d(3, first, 3, 1, 1, bias=False), nn.BatchNorm2d(first), nn.ReLU(inplace=True),
        BasicBlock(first, first, 1), BasicBlock(first, second, 2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(second, classes),
    )


def run_resnet_benchmark(threads, rounds=5, progress=print):
    """Rows {model, memory_format, contender, threads, batch, seconds, images_per_second}.

    One measurement is a forward and backward pass of a batch (no optimiser step);
    torch and fastconv alternate round by round and each reports its median.
    """
    import torch

    import fastconv.torch as fastconv_torch

    previous_torch_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    rows = []
    try:
        with _config.num_threads(threads):
            for memory_format in MEMORY_FORMATS:
                fmt = torch.channels_last if memory_format == "channels_last" else torch.contiguous_format
                torch.manual_seed(0)
                stock = _resnet(torch).to(memory_format=fmt).train()
                converted = fastconv_torch.convert(stock).train()
                rng = np.random.default_rng(0)
                x = rng.standard_normal((BATCH, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
                x = torch.from_numpy(x).contiguous(memory_format=fmt)
                y = torch.from_numpy(rng.integers(0, 10, BATCH))

                def step(model):
                    model.zero_grad(set_to_none=True)
                    torch.nn.functional.cross_entropy(model(x), y).backward()

                seconds = interleaved({"torch": lambda: step(stock), "fastconv": lambda: step(converted)},
                                      rounds)
                rows += [dict(model="resnet_small", memory_format=memory_format, contender=name,
                              threads=threads, batch=BATCH, seconds=s, images_per_second=BATCH / s)
                         for name, s in seconds.items()]
                progress(f"  resnet_small {memory_format:13s} done")
    finally:
        torch.set_num_threads(previous_torch_threads)
    return rows


def resnet_table(rows):
    """Text table rows: one line per (memory format, contender), with the speed-up over torch."""
    index = {(r["memory_format"], r["contender"]): r for r in rows}
    table = [("network", "memory format", "impl", "ms/batch", "images/s", "x torch")]
    for r in rows:
        torch_row = index.get((r["memory_format"], "torch"))
        name = f"resnet_small fwd+bwd (batch {r['batch']}, {r['threads']} threads)"
        table.append((name, r["memory_format"], r["contender"], f"{r['seconds'] * 1e3:.1f}",
                      f"{r['images_per_second']:.0f}",
                      f"{torch_row['seconds'] / r['seconds']:.2f}" if torch_row else "-"))
    return table
