"""ex06 — bidirectional GRU (12 points)."""
from __future__ import annotations

import pytest
import torch

from autograder.checks import mistakes as M
from autograder.checks import _inputs as I
from autograder.checks._inputs import R
from autograder.checks._support import check_tensor, fail

pytestmark = pytest.mark.exercise("ex06")


@pytest.mark.points(3)
def test_gru_cell(sub):
    """gru_cell: equals torch.nn.GRUCell, with and without biases"""
    for seed, (B, In, H, bias) in enumerate([(4, 5, 3, True), (2, 3, 6, False), (1, 7, 7, True)]):
        g = I.gen(100 + seed)
        x, h = torch.randn(B, In, generator=g), torch.randn(B, H, generator=g)
        w = I.gru_weights(200 + seed, In, H, bias)
        what = f"x {tuple(x.shape)}, h {tuple(h.shape)}, {'with' if bias else 'without'} biases"
        check_tensor(sub.call("gru_cell", x, h, *w, _what=what), R.gru_cell(x, h, *w), fn="gru_cell", what=what,
                     rtol=1e-4, atol=1e-5, hints=M.hints("gru_cell", x, h, *w))


@pytest.mark.points(1)
def test_gru_cell_gradient(sub):
    """gru_cell: gradients reach x, h and the weights"""
    g = I.gen(150)
    x, h = torch.randn(3, 4, generator=g), torch.randn(3, 5, generator=g)
    w = I.gru_weights(151, 4, 5, True)
    args = [t.clone().requires_grad_(True) for t in (x, h) + w]
    out_grad = torch.randn(3, 5, generator=g)
    (R.gru_cell(*args) * out_grad).sum().backward()
    what = "x (3, 4), h (3, 5), with biases"
    _, grads = sub.call_grad("gru_cell", *[a.detach().clone().requires_grad_(True) for a in args], _what=what,
                             _out_grad=out_grad)
    for name, a, gr in zip(["x", "h", "weight_ih", "weight_hh", "bias_ih", "bias_hh"], args, grads or []):
        if gr is None:
            fail(f"gru_cell({what}): no gradient reached {name} (did you detach it or use .data?)")
        check_tensor(gr, a.grad, fn="gru_cell", what=what, name=f"the gradient of {name}", rtol=1e-3, atol=1e-5)


@pytest.mark.points(3)
def test_gru_layer_forward(sub):
    """gru_layer: padded batch, zeros at padded steps"""
    for seed, (lens, In, H, bias) in enumerate([([6, 4, 1], 3, 4, True), ([5, 5], 2, 3, False)]):
        T, B = max(lens), len(lens)
        x = I.padded_sequences(300 + seed, T, B, In, lens)
        lengths = torch.tensor(lens)
        w = I.gru_weights(310 + seed, In, H, bias)
        what = f"x {tuple(x.shape)}, lengths={lens}"
        check_tensor(sub.call("gru_layer", x, lengths, *w, _what=what), R.gru_layer(x, lengths, *w), fn="gru_layer",
                     what=what, rtol=1e-4, atol=1e-5, hints=M.hints("gru_layer", x, lengths, *w))


@pytest.mark.points(2)
def test_gru_layer_reverse(sub):
    """gru_layer(reverse=True): each sequence runs backwards from its own last valid step"""
    lens = [7, 5, 2]
    x = I.padded_sequences(320, 7, 3, 3, lens)
    lengths = torch.tensor(lens)
    w = I.gru_weights(321, 3, 4, True)
    what = f"x {tuple(x.shape)}, lengths={lens}, reverse=True"
    check_tensor(sub.call("gru_layer", x, lengths, *w, reverse=True, _what=what),
                 R.gru_layer(x, lengths, *w, reverse=True), fn="gru_layer", what=what, rtol=1e-4, atol=1e-5,
                 hints=M.hints("gru_layer", x, lengths, *w, reverse=True))


@pytest.mark.points(3)
def test_bidirectional_gru(sub):
    """bidirectional_gru: forward and backward summed, (T, B, H)"""
    lens = [6, 3, 5]
    x = I.padded_sequences(330, 6, 3, 4, lens)
    lengths = torch.tensor(lens)
    fw, bw = I.gru_weights(331, 4, 5, True), I.gru_weights(332, 4, 5, True)
    what = f"x {tuple(x.shape)}, lengths={lens}, hidden size 5"
    check_tensor(sub.call("bidirectional_gru", x, lengths, fw, bw, _what=what),
                 R.bidirectional_gru(x, lengths, fw, bw), fn="bidirectional_gru", what=what, rtol=1e-4, atol=1e-5,
                 hints=M.hints("bidirectional_gru", x, lengths, fw, bw))
