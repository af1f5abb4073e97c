"""Images per second of the Fashion-MNIST benchmark network: fastconv.keras against PyTorch.

The network (Zalando's Fashion-MNIST benchmark table, 2 conv layers): Conv2D 32 5x5
same relu, MaxPooling 2, Conv2D 64 5x5 same relu, MaxPooling 2, Flatten, Dense 1024
relu, Dropout 0.4, Dense 10 softmax; Adam; batch 128; synthetic data of MNIST's shape.
"""
import numpy as np

from .timing import interleaved, torch_or_none

BATCH = 128


def fashion_mnist_net():
    """The benchmark network in fastconv.keras (channels_last), compiled with Adam."""
    from ..keras import layers
    from ..keras.models import Sequential

    model = Sequential([
        layers.Conv2D(32, 5, padding="same", activation="relu", input_shape=(28, 28, 1)),
        layers.MaxPooling2D(2),
        layers.Conv2D(64, 5, padding="same", activation="relu"),
        layers.MaxPooling2D(2),
        layers.Flatten(),
        layers.Dense(1024, activation="relu"),
        layers.Dropout(0.4),
        layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def _torch_net(torch):
    nn = torch.nn
    model = nn.Sequential(
        nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 1024), nn.ReLU(), nn.Dropout(0.4), nn.Linear(1024, 10))
    return model, torch.optim.Adam(model.parameters(), lr=1e-3), nn.CrossEntropyLoss()


def run_training_benchmark(threads, rounds=5, with_torch=True, progress=print):
    """Rows {mode, contender, seconds, images_per_second} for training and inference steps."""
    rng = np.random.default_rng(0)
    x = rng.random((BATCH, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, BATCH)
    model = fashion_mnist_net()
    contenders = {"fastconv": {"training": lambda: model.train_on_batch(x, y),
                               "inference": lambda: model.predict_on_batch(x)}}
    torch = torch_or_none(threads) if with_torch else None
    if torch is not None:
        net, optimizer, loss_fn = _torch_net(torch)
        xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
        yt = torch.from_numpy(y)

        def torch_step():
            net.train()
            optimizer.zero_grad()
            loss = loss_fn(net(xt), yt)
            loss.backward()
            optimizer.step()

        def torch_inference():
            net.eval()
            with torch.no_grad():
                return torch.softmax(net(xt), dim=1)

        contenders["torch"] = {"training": torch_step, "inference": torch_inference}
    rows = []
    for mode in ("training", "inference"):
        seconds = interleaved({name: fns[mode] for name, fns in contenders.items()}, rounds)
        rows += [dict(mode=mode, contender=name, seconds=s, images_per_second=BATCH / s)
                 for name, s in seconds.items()]
        progress(f"  fashion_mnist_net {mode:9s} done")
    return rows


def training_table(rows):
    index = {(r["mode"], r["contender"]): r for r in rows}
    table = [("network", "mode", "impl", "ms/batch", "images/s", "x torch")]
    for r in rows:
        torch_row = index.get((r["mode"], "torch"))
        table.append(("fashion_mnist_net (batch 128)", r["mode"], r["contender"], f"{r['seconds'] * 1e3:.1f}",
                      f"{r['images_per_second']:.0f}",
                      f"{torch_row['seconds'] / r['seconds']:.2f}" if torch_row else "-"))
    return table
