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


class ObjectRegistry:
    """serialize / deserialize / get for one kind of configurable object (Keras's pattern).

    Args:
        kind: for messages, e.g. "constraint".
        by_name: accepted names (class names and aliases) -> classes.
        base: instantiate a class passed to `get` when it subclasses this.
    """

    def __init__(self, kind, by_name, base=None):
        self.kind, self.by_name, self.base = kind, by_name, base

    def serialize(self, obj):
        """`{"class_name": ..., "config": {...}}`."""
        return {"class_name": type(obj).__name__, "config": obj.get_config()}

    def deserialize(self, config, custom_objects=None):
        """Inverse of `serialize`; `custom_objects` maps class names to user classes."""
        class_name, kwargs = check_config(config, self.kind)
        table = dict(self.by_name, **(custom_objects or {}))
        return lookup(class_name, table, self.kind).from_config(kwargs)

    def get(self, identifier):
        """None, a name (Keras defaults), a serialized dict, a class, or an object/callable as is."""
        if identifier is None:
            return None
        if isinstance(identifier, dict):
            return self.deserialize(identifier)
        if isinstance(identifier, str):
            return lookup(identifier, self.by_name, self.kind)()
        if self.base is not None and isinstance(identifier, type) and issubclass(identifier, self.base):
            return identifier()
        if callable(identifier):
            return identifier
        raise ValueError(
            f"Could not interpret {self.kind} identifier: {identifier!r}. Received: identifier={identifier!r}"
        )
