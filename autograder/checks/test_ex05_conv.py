"""ex05 — convolutions: clipped ReLU, output lengths, masking (7 points)."""
from __future__ import annotations

import pytest
import torch

from autograder.checks import _inputs as I
from autograder.checks._inputs import R
from autograder.checks._support import check_tensor, check_value

pytestmark = pytest.mark.exercise("ex05")


@pytest.mark.points(2)
def test_clipped_relu(sub):
    """clipped_relu: min(max(x, 0), 20), and a custom ceiling"""
    x = torch.linspace(-30, 30, 60).reshape(3, 20)
    x64 = torch.randn(4, 5, generator=I.gen(5), dtype=torch.float64) * 15
    for inp, kw in [(x, {}), (x, {"ceiling": 5.0}), (x64, {})]:
        c = kw.get("ceiling", 20.0)
        what = f"x={'linspace(-30, 30)' if inp is x else 'a float64 tensor'}{', ceiling=%g' % c if kw else ''}"
        check_tensor(sub.call("clipped_relu", inp, _what=what, **kw), R.clipped_relu(inp, **kw), fn="clipped_relu",
                     what=what, rtol=0, atol=0,
                     hints=[(lambda i=inp: i.clamp_min(0), "the ReLU is not clipped: min(max(x, 0), 20)"),
                            (lambda i=inp, c=c: i.clamp(-c, c), "the lower bound is 0, not -ceiling"),
                            (lambda i=inp: i.clamp(0, 20), "use the ceiling argument, not a fixed 20")])


def _len_hints(L, k, s, p, d):
    span = d * (k - 1) + 1
    return [
        (lambda: (L + 2 * p - span) // s, "off by one: floor((L + 2p - d(k-1) - 1) / s) + 1 (the +1 counts the "
                                          "first window)"),
        (lambda: -(-(L + 2 * p - span) // s) + 1, "round DOWN (floor), not up"),
        (lambda: (L + 2 * p - k) // s + 1, "the dilation spreads the kernel over d(k-1)+1 frames"),
        (lambda: (L - span) // s + 1, "the padding is added on both sides: L + 2p"),
    ]


@pytest.mark.points(3)
def test_conv_output_length(sub):
    """conv_output_length: ints over kernel, stride, padding, dilation; and int tensors"""
    grid = [(100, 11, 2, 5, 1), (100, 11, 1, 5, 1), (7, 3, 1, 0, 1), (8, 3, 2, 1, 1), (9, 3, 3, 0, 1),
            (50, 3, 1, 2, 2), (50, 5, 2, 0, 3), (1, 1, 1, 0, 1), (161, 41, 2, 20, 1), (81, 21, 2, 10, 1)]
    for L, k, s, p, d in grid:
        what = f"length={L}, kernel_size={k}, stride={s}, padding={p}, dilation={d}"
        check_value(sub.call("conv_output_length", L, k, stride=s, padding=p, dilation=d, _what=what),
                    R.conv_output_length(L, k, s, p, d), fn="conv_output_length", what=what,
                    hints=_len_hints(L, k, s, p, d))
    lengths = torch.tensor([100, 57, 12, 11])
    what = "length=tensor([100, 57, 12, 11]), kernel_size=11, stride=2, padding=5"
    check_tensor(sub.call("conv_output_length", lengths, 11, stride=2, padding=5, _what=what),
                 R.conv_output_length(lengths, 11, 2, 5), fn="conv_output_length", what=what, rtol=0, atol=0)


@pytest.mark.points(2)
def test_mask_time(sub):
    """mask_time: zero the frames t >= lengths[b] of (B, C, F, T)"""
    g = I.gen(9)
    x = torch.randn(3, 2, 4, 10, generator=g)
    for lens in ([10, 6, 1], [3, 10, 0]):
        lengths = torch.tensor(lens)
        what = f"x of shape (3, 2, 4, 10), lengths={lens}"
        mask_gt = torch.arange(10)[None, :] <= lengths[:, None]
        check_tensor(sub.call("mask_time", x, lengths, _what=what), R.mask_time(x, lengths), fn="mask_time",
                     what=what, rtol=0, atol=0,
                     hints=[(lambda: x * mask_gt[:, None, None, :], "off by one: keep frames t < lengths[b], "
                                                                    "zero t >= lengths[b]"),
                            (lambda: x, "nothing was masked"),
                            (lambda: x * (torch.arange(4)[None, :] < lengths[:, None]).clamp(max=1)[:, None, :, None],
                             "you masked the frequency axis; time is the LAST axis")])
