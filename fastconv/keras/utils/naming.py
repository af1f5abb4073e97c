"""Name lookups shared by the `get`/`deserialize` functions of fastconv.keras.

Keras resolves strings, configs and objects the same way in every module
(activations, initializers, losses, ...); these helpers keep the messages
identical across them.
"""
import re


def to_snake_case(name):
    """'GlorotUniform' -> 'glorot_uniform', 'MeanSquaredError' -> 'mean_squared_error'."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()


def lookup(identifier, table, kind):
    """Returns `table[identifier]` or raises Keras's "Could not interpret" ValueError.

    Args:
        identifier: the name a user passed.
        table: dict from accepted names to objects.
        kind: what is looked up, for the message ("activation function", "loss", ...).
    """
    try:
        return table[identifier]
    except (KeyError, TypeError):
        known = ", ".join(sorted(k for k in table if isinstance(k, str)))
        raise ValueError(
            f"Could not interpret {kind} identifier: {identifier!r}. Known names: {known}. "
            f"Received: identifier={identifier!r}"
        ) from None


def check_config(config, kind):
    """Validates a `{"class_name": ..., "config": {...}}` dict and returns its parts."""
    if "class_name" not in config:
        raise ValueError(
            f"A {kind} config must be a dict with a 'class_name' key. Received: config={config!r}"
        )
    return config["class_name"], dict(config.get("config") or {})
