"""ex05 — convolutions: clipped ReLU, output lengths, masking (7 points)."""
from __future__ import annotations

import pytest
import torch

from autograder.checks import mistakes as M
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
                     hints=M.hints("clipped_relu", inp, **kw))


def _len_hints(L, k, s, p, d):
    return M.hints("conv_output_length", L, k, s, p, d)


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
                 R.conv_output_length(lengths, 11, 2, 5), fn="conv_output_length", what=what, rtol=0, atol=0,
                 hints=_len_hints(lengths, 11, 2, 5, 1))


@pytest.mark.points(2)
def test_mask_time(sub):
    """mask_time: zero the frames t >= lengths[b] of (B, C, F, T)"""
    g = I.gen(9)
    x = torch.randn(3, 2, 4, 10, generator=g)
    x_inf = x.clone()
    x_inf[1, 0, 2, 8] = float("inf")
    for xx, lens in ((x, [10, 6, 1]), (x, [3, 10, 0]), (x_inf, [10, 6, 2])):
        lengths = torch.tensor(lens)
        what = f"x of shape (3, 2, 4, 10){' with an inf in the padding' if xx is x_inf else ''}, lengths={lens}"
        check_tensor(sub.call("mask_time", xx, lengths, _what=what), R.mask_time(xx, lengths), fn="mask_time",
                     what=what, rtol=0, atol=0, hints=M.hints("mask_time", xx, lengths))
