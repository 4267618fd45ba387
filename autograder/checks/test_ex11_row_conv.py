"""ex11 — row convolution (6 points)."""
from __future__ import annotations

import pytest
import torch

from autograder.checks import mistakes as M
from autograder.checks import _inputs as I
from autograder.checks._inputs import R
from autograder.checks._support import check_tensor, fail

pytestmark = pytest.mark.exercise("ex11")


def _hints(x, w, lengths):
    return M.hints("row_conv", x, w, lengths)


def _oracle(x, w, lengths):
    """The contract's formula, one term at a time (independent of the reference)."""
    T, B, H = x.shape
    out = torch.zeros_like(x)
    for b in range(B):
        n = int(lengths[b])
        for t in range(n):
            for j in range(w.shape[0]):
                if t + j < n:
                    out[t, b] += w[j] * x[t + j, b]
    return out


@pytest.mark.points(3)
def test_row_conv_values(sub):
    """row_conv: lookahead over each sequence's own frames, garbage in the padding"""
    for seed, (lens, H, tau) in enumerate([([8, 5, 2], 4, 2), ([6, 6], 3, 3), ([7, 1, 4], 5, 1)]):
        T = max(lens)
        x = I.padded_sequences(60 + seed, T, len(lens), H, lens)
        w = torch.randn(tau + 1, H, generator=I.gen(70 + seed))
        lengths = torch.tensor(lens)
        what = f"x {tuple(x.shape)} with garbage in the padding, weight {tuple(w.shape)}, lengths={lens}"
        check_tensor(sub.call("row_conv", x, w, lengths, _what=what), _oracle(x, w, lengths), fn="row_conv",
                     what=what, rtol=1e-4, atol=1e-5, hints=_hints(x, w, lengths))


@pytest.mark.points(1)
def test_row_conv_gradient(sub):
    """row_conv: gradients with respect to x and weight"""
    lens = [6, 4]
    x = I.padded_sequences(80, 6, 2, 3, lens)
    w = torch.randn(3, 3, generator=I.gen(81))
    lengths = torch.tensor(lens)
    og = torch.randn(6, 2, 3, generator=I.gen(82))
    xr, wr = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
    (R.row_conv(xr, wr, lengths) * og).sum().backward()
    what = f"x {tuple(x.shape)}, weight {tuple(w.shape)}, lengths={lens}"
    _, grads = sub.call_grad("row_conv", x.clone().requires_grad_(True), w.clone().requires_grad_(True), lengths,
                             _what=what, _out_grad=og)
    for name, gr, exp in zip(("x", "weight"), grads or [None, None], (xr.grad, wr.grad)):
        if gr is None:
            fail(f"row_conv({what}): no gradient reached {name}")
        check_tensor(gr, exp, fn="row_conv", what=what, name=f"the gradient of {name}", rtol=1e-4, atol=1e-5)


@pytest.mark.hidden
@pytest.mark.points(2)
def test_row_conv_edge_cases(sub):
    """row_conv: tau = 0, lookahead longer than the sequence, T = 1"""
    cases = [([5, 3], 4, 0), ([3, 2], 2, 6), ([1, 1, 1], 3, 2)]
    for seed, (lens, H, tau) in enumerate(cases):
        T = max(lens)
        x = I.padded_sequences(90 + seed, T, len(lens), H, lens)
        w = torch.randn(tau + 1, H, generator=I.gen(95 + seed))
        lengths = torch.tensor(lens)
        what = f"x {tuple(x.shape)}, weight {tuple(w.shape)} (tau={tau}), lengths={lens}"
        check_tensor(sub.call("row_conv", x, w, lengths, _what=what), _oracle(x, w, lengths), fn="row_conv",
                     what=what, rtol=1e-4, atol=1e-5, hints=_hints(x, w, lengths))
