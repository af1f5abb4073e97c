"""Tensors <-> NumPy arrays for fastconv's kernels, sharing memory wherever the layout allows.

A contiguous (NCHW) tensor is handed over as `tensor.numpy()`; a channels_last tensor
as `tensor.permute(0, 2, 3, 1).numpy()`, which is a C-contiguous (N, H, W, C) array,
and runs on the NHWC kernels. Results come back with `torch.from_numpy`, permuted back
for NHWC, so outputs keep the input's memory format. Only tensors contiguous in
neither format are copied (into the format their strides are closest to).
"""
import torch

_DTYPE_CASES = {
    torch.float16: "half precision (torch.float16)",
    torch.bfloat16: "half precision (torch.bfloat16)",
    torch.complex64: "complex tensors (torch.complex64)",
    torch.complex128: "complex tensors (torch.complex128)",
}


def check_tensor(tensor, name, op):
    """Raise for what fastconv cannot compute: other devices, layouts and dtypes."""
    if tensor.device.type != "cpu":
        raise NotImplementedError(
            f"fastconv.torch.{op} runs on CPU tensors only; {tensor.device.type.upper()} tensors "
            f"are not supported. Received: {name}.device={tensor.device}"
        )
    if tensor.layout != torch.strided:
        raise NotImplementedError(
            f"fastconv.torch.{op} supports dense (strided) tensors only. "
            f"Received: {name}.layout={tensor.layout}"
        )
    if tensor.dtype not in (torch.float32, torch.float64):
        case = _DTYPE_CASES.get(tensor.dtype, f"{tensor.dtype} tensors")
        raise TypeError(
            f"fastconv.torch.{op} supports float32 and float64 tensors; {case} "
            f"is not supported. Received: {name}.dtype={tensor.dtype}"
        )


def _strides_like_channels_last(tensor):
    """PyTorch's own rule (c10 is_channels_last_strides_2d) for 4-D tensors; ambiguous -> False."""
    sizes, strides = tensor.shape, tensor.stride()
    if strides[1] == 0:
        return False
    smallest = 0
    for d in (1, 3, 2, 0):
        if sizes[d] == 0 or strides[d] < smallest:
            return False
        if d == 0 and smallest == strides[1]:
            return False
        smallest = strides[d] * (sizes[d] if sizes[d] > 1 else 1)
    return True


def data_format_of(tensor):
    """"NHWC" for channels_last tensors, else "NCHW" (as torch's suggest_memory_format)."""
    channels_last = tensor.is_contiguous(memory_format=torch.channels_last)
    if channels_last and not tensor.is_contiguous():
        return "NHWC"
    return "NHWC" if _strides_like_channels_last(tensor) else "NCHW"


def _numpy(tensor):
    return tensor.detach().resolve_conj().resolve_neg().numpy()


def to_array(tensor, data_format):
    """A C-contiguous array in data_format's layout; no copy when the tensor already is one."""
    if data_format == "NHWC":
        return _numpy(tensor.contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1))
    return _numpy(tensor.contiguous())


def weight_to_array(weight, data_format):
    """(K, C/g, kh, kw) for NCHW; (kh, kw, C/g, K) for NHWC (a small copy unless stored so)."""
    if data_format == "NHWC":
        return _numpy(weight.permute(2, 3, 1, 0).contiguous())
    return _numpy(weight.contiguous())


def vector_to_array(vector):
    return None if vector is None else _numpy(vector.contiguous())


def _wrap(array, shape, strides):
    """A tensor on the array's memory that is not a view (so in-place ops on it are allowed)."""
    base = torch.from_numpy(array)
    return torch.empty(0, dtype=base.dtype).set_(base.untyped_storage(), 0, shape, strides)


def from_array(array, data_format):
    """The tensor of a kernel's result, in NCHW shape; channels_last memory for NHWC."""
    if data_format == "NHWC":
        n, h, w, c = array.shape
        return _wrap(array, (n, c, h, w), (h * w * c, 1, w * c, c))
    return torch.from_numpy(array)


def weight_from_array(array, data_format):
    """A weight gradient in torch's (K, C/g, kh, kw) shape."""
    if data_format == "NHWC":
        kh, kw, c, k = array.shape
        return _wrap(array, (k, c, kh, kw), (1, k, kw * c * k, c * k))
    return torch.from_numpy(array)


def check_no_double_backward(op):
    """Our backward is not differentiable: refuse to build a graph through it."""
    if torch.is_grad_enabled():
        raise NotImplementedError(
            f"fastconv.torch.{op} does not support gradients of gradients (double backward, "
            "create_graph=True); use torch.nn.functional for that computation."
        )
