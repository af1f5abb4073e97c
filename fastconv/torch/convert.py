"""convert(model): swap fastconv's layers in for torch.nn's, keeping every weight."""
import copy

import torch

from . import modules

# Exact torch.nn classes only: a user subclass may override forward, so it is left alone.
_REPLACEMENTS = {
    torch.nn.Conv2d: modules.Conv2d,
    torch.nn.MaxPool2d: modules.MaxPool2d,
    torch.nn.AvgPool2d: modules.AvgPool2d,
    torch.nn.AdaptiveAvgPool2d: modules.AdaptiveAvgPool2d,
}


def _is_global(module):
    return module.output_size in (1, (1, 1), [1, 1])


def _replacement(module, algorithm):
    """The fastconv module for `module`, sharing its parameters, buffers and hooks; or None."""
    if isinstance(module, modules.Conv2d):
        if algorithm is not None:
            module.algorithm = algorithm
        return None
    cls = _REPLACEMENTS.get(type(module))
    if cls is None or (cls is modules.AdaptiveAvgPool2d and not _is_global(module)):
        return None
    new = cls.__new__(cls)
    # Same attributes; containers (parameter, buffer, module and hook dicts) copied
    # shallowly so the new module holds the very same Parameter objects.
    new.__dict__.update({key: copy.copy(value) if isinstance(value, (dict, set)) else value
                         for key, value in module.__dict__.items()})
    if cls is modules.Conv2d:
        new.algorithm = algorithm
    return new


def convert(model, inplace=False, algorithm=None):
    """Replace every supported torch.nn layer of `model` by its fastconv.torch twin.

    Supported: Conv2d (any padding_mode), MaxPool2d, AvgPool2d, and AdaptiveAvgPool2d
    with output_size 1. Other modules, subclasses of these classes, and adaptive
    pooling to other sizes are left as they are.

    Args:
        model: a torch.nn.Module (a supported layer itself is converted too).
        inplace: replace the submodules of `model` itself, sharing its Parameters;
            otherwise work on a deep copy and leave `model` untouched.
        algorithm: fastconv's convolution algorithm for every converted Conv2d
            (None: fastconv's default).

    Returns:
        The converted model (`model` itself when inplace, unless `model` is a layer
        that was replaced).
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module. Received: model of type {type(model).__name__}")
    if not inplace:
        model = copy.deepcopy(model)
    done = {}  # id(old) -> new, so a module shared by two parents stays shared

    def swap(module):
        if id(module) not in done:
            new = _replacement(module, algorithm)
            done[id(module)] = module if new is None else new
        return done[id(module)]

    for parent in list(model.modules()):
        for name, child in list(parent._modules.items()):
            if child is not None:
                new = swap(child)
                if new is not child:
                    setattr(parent, name, new)
    return swap(model)
