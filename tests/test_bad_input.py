"""Bad arguments give a clear ValueError/TypeError naming what was received."""
import numpy as np
import pytest

import fastconv

X = np.zeros((2, 3, 8, 8), np.float32)
W = np.zeros((4, 3, 3, 3), np.float32)
B = np.zeros(4, np.float32)
OUT = np.zeros((2, 4, 6, 6), np.float32)
POOLED = np.zeros((2, 3, 4, 4), np.float32)
INDICES = np.zeros((2, 3, 4, 4), np.int64)
HUGE = [2**31, 2**63 - 1]


def conv(**kw):
    args = dict(x=X, weight=W, bias=B)
    args.update(kw)
    return lambda: fastconv.conv2d(**args)


def conv_bwd(**kw):
    args = dict(grad_output=OUT, x=X, weight=W)
    args.update(kw)
    return lambda: fastconv.conv2d_backward(**args)


def maxpool(**kw):
    args = dict(x=X, kernel_size=2)
    args.update(kw)
    return lambda: fastconv.max_pool2d(**args)


def maxpool_bwd(**kw):
    args = dict(grad_output=POOLED, x=X, indices=INDICES, kernel_size=2)
    args.update(kw)
    return lambda: fastconv.max_pool2d_backward(**args)


def avgpool(**kw):
    args = dict(x=X, kernel_size=2)
    args.update(kw)
    return lambda: fastconv.avg_pool2d(**args)


def avgpool_bwd(**kw):
    args = dict(grad_output=POOLED, x=X, kernel_size=2)
    args.update(kw)
    return lambda: fastconv.avg_pool2d_backward(**args)


BAD = {
    # conv2d: size arguments
    "stride_zero": (conv(stride=(0, 1)), ValueError, r"stride must be positive\. Received: stride=\(0, 1\)"),
    "stride_negative": (conv(stride=-1), ValueError, "stride must be positive"),
    "stride_float": (conv(stride=1.5), TypeError, "stride=1.5"),
    "stride_bool": (conv(stride=True), TypeError, "stride=True"),
    "stride_three": (conv(stride=(1, 1, 1)), ValueError, r"Received: stride=\(1, 1, 1\)"),
    "stride_string": (conv(stride="2"), TypeError, "stride='2'"),
    "padding_negative": (conv(padding=-1), ValueError, "padding must be non-negative"),
    "padding_pair_negative": (conv(padding=((0, -1), (0, 0))), ValueError, "padding must be non-negative"),
    "padding_mode": (conv(padding="full"), ValueError, "padding='full'"),
    "padding_three": (conv(padding=(1, 1, 1)), ValueError, r"padding=\(1, 1, 1\)"),
    "padding_float": (conv(padding=0.5), TypeError, "padding=0.5"),
    "dilation_zero": (conv(dilation=0), ValueError, "dilation must be positive"),
    "groups_zero": (conv(groups=0), ValueError, "groups must be positive"),
    "groups_negative": (conv(groups=-3), ValueError, "groups must be positive"),
    "groups_not_dividing": (conv(weight=np.zeros((4, 1, 3, 3), np.float32), groups=3), ValueError,
                            "groups must divide"),
    "groups_weight_mismatch": (conv(groups=3, weight=np.zeros((3, 3, 3, 3), np.float32), bias=None),
                               ValueError, "per group"),
    "weight_channels": (conv(weight=np.zeros((4, 2, 3, 3), np.float32)), ValueError, "per group"),
    "kernel_too_large": (conv(weight=np.zeros((4, 3, 9, 3), np.float32)), ValueError,
                         "larger than the padded input"),
    "dilated_kernel_too_large": (conv(dilation=4), ValueError, "larger than the padded input"),
    "zero_size_kernel": (conv(weight=np.zeros((4, 3, 0, 3), np.float32)), ValueError, "non-zero"),
    "zero_output_channels": (conv(weight=np.zeros((0, 3, 3, 3), np.float32), bias=None), ValueError,
                             "non-zero"),
    "zero_channels": (conv(x=np.zeros((2, 0, 8, 8), np.float32)), ValueError, "non-zero"),
    "bias_length": (conv(bias=np.zeros(5, np.float32)), ValueError, r"bias\.shape=\(5,\)"),
    "bias_rank": (conv(bias=np.zeros((4, 1), np.float32)), ValueError, "bias must be 1-D"),
    "x_rank": (conv(x=np.zeros((3, 8, 8), np.float32)), ValueError, r"x must be 4-D .* Received: x\.shape"),
    "weight_rank": (conv(weight=np.zeros((4, 3, 3), np.float32)), ValueError, "weight must be 4-D"),
    "x_int": (conv(x=X.astype(np.int64)), TypeError, r"x\.dtype=int64"),
    "x_complex": (conv(x=X.astype(np.complex64)), TypeError, r"x\.dtype=complex64"),
    "x_object": (conv(x=X.astype(object)), TypeError, r"x\.dtype=object"),
    "x_float16": (conv(x=X.astype(np.float16)), TypeError, r"x\.dtype=float16"),
    "x_bool": (conv(x=X.astype(bool)), TypeError, r"x\.dtype=bool"),
    "mixed_dtypes": (conv(x=X.astype(np.float64)), TypeError, r"x\.dtype=float64, weight\.dtype=float32"),
    "mixed_bias_dtype": (conv(bias=B.astype(np.float64)), TypeError, r"bias\.dtype=float64"),
    "data_format": (conv(data_format="NCWH"), ValueError, "data_format='NCWH'"),
    "algorithm": (conv(algorithm="fft"), ValueError, "algorithm='fft'"),
    "not_an_array": (conv(x="image"), TypeError, "dtype"),
    # conv2d_backward
    "grad_output_shape": (conv_bwd(grad_output=np.zeros((2, 4, 5, 6), np.float32)), ValueError,
                          r"grad_output\.shape=\(2, 4, 5, 6\)"),
    "grad_output_rank": (conv_bwd(grad_output=np.zeros((2, 4, 36), np.float32)), ValueError, "4-D"),
    "grad_output_dtype": (conv_bwd(grad_output=OUT.astype(np.float64)), TypeError, "grad_output.dtype"),
    "needs_unknown": (conv_bwd(needs=("input", "x")), ValueError, "needs may only name"),
    "needs_type": (conv_bwd(needs=3), TypeError, "needs=3"),
    # pooling
    "pool_kernel_zero": (maxpool(kernel_size=0), ValueError, "kernel_size must be positive"),
    "pool_stride_zero": (maxpool(stride=0), ValueError, "stride must be positive"),
    "pool_padding_too_large": (maxpool(kernel_size=2, padding=2), ValueError, "at most half the kernel"),
    "pool_padding_negative": (maxpool(padding=-1), ValueError, "non-negative"),
    "pool_dilation_zero": (maxpool(dilation=0), ValueError, "dilation must be positive"),
    "pool_kernel_too_large": (maxpool(kernel_size=9), ValueError, "larger than the padded input"),
    "pool_window_all_padding": (maxpool(x=np.zeros((2, 3, 1, 8), np.float32), kernel_size=2, dilation=2,
                                        padding=1), ValueError, "hold no input pixel"),
    "pool_rank": (maxpool(x=np.zeros((3, 8, 8), np.float32)), ValueError, "4-D"),
    "pool_int": (maxpool(x=X.astype(np.int32)), TypeError, "int32"),
    "pool_zero_height": (maxpool(x=np.zeros((2, 3, 0, 8), np.float32)), ValueError, "non-zero"),
    "pool_data_format": (maxpool(data_format="HWC"), ValueError, "data_format"),
    "avg_divisor_zero": (avgpool(divisor_override=0), ValueError, "divisor_override must be positive"),
    "avg_divisor_float": (avgpool(divisor_override=2.5), TypeError, "divisor_override"),
    "avg_padding_too_large": (avgpool(kernel_size=3, padding=2), ValueError, "at most half"),
    "indices_shape": (maxpool_bwd(indices=np.zeros((2, 3, 4, 5), np.int64)), ValueError, r"indices\.shape"),
    "indices_negative": (maxpool_bwd(indices=np.full((2, 3, 4, 4), -1)), ValueError, "indices must lie in"),
    "indices_too_large": (maxpool_bwd(indices=np.full((2, 3, 4, 4), 64)), ValueError, "indices must lie in"),
    "indices_float": (maxpool_bwd(indices=INDICES.astype(np.float32)), TypeError, "integer"),
    "pool_grad_output_shape": (maxpool_bwd(grad_output=np.zeros((2, 3, 3, 4), np.float32)), ValueError,
                               r"grad_output\.shape"),
    "avg_grad_output_shape": (avgpool_bwd(grad_output=np.zeros((2, 3, 4, 5), np.float32)), ValueError,
                              r"grad_output\.shape"),
    "avg_grad_output_dtype": (avgpool_bwd(grad_output=POOLED.astype(np.float64)), TypeError, "dtype"),
    "global_grad_shape": (lambda: fastconv.global_avg_pool2d_backward(np.zeros((2, 4), np.float32), X),
                          ValueError, "grad_output.shape"),
}
for value in HUGE:
    for name in ("stride", "padding", "dilation", "groups"):
        BAD[f"{name}_{value}"] = (conv(**{name: value}), ValueError, f"{name} is too large")
    BAD[f"pool_kernel_{value}"] = (maxpool(kernel_size=value), ValueError, "kernel_size is too large")
    BAD[f"pool_stride_{value}"] = (maxpool(stride=(1, value)), ValueError, "stride is too large")
    BAD[f"avg_divisor_{value}"] = (avgpool(divisor_override=value), ValueError, "too large")


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_argument_raises_clear_error(name):
    call, error, pattern = BAD[name]
    with pytest.raises(error, match=pattern) as info:
        call()
    assert "Received" in str(info.value)


@pytest.mark.parametrize("shape_fn", ["conv2d_output_shape", "pool2d_output_shape"])
def test_shape_functions_validate_too(shape_fn):
    with pytest.raises(ValueError, match="stride must be positive"):
        if shape_fn == "conv2d_output_shape":
            fastconv.conv2d_output_shape(X.shape, W.shape, stride=0)
        else:
            fastconv.pool2d_output_shape(X.shape, 2, stride=0)


def test_batch_of_zero_is_legal():
    out = fastconv.conv2d(X[:0], W, B)
    assert out.shape == (0, 4, 6, 6)
    assert fastconv.max_pool2d(X[:0], 2).shape == (0, 3, 4, 4)
