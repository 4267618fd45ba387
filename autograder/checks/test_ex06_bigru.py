"""ex06 — bidirectional GRU (12 points)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from autograder.checks import _inputs as I
from autograder.checks._inputs import R
from autograder.checks._support import check_tensor, fail

pytestmark = pytest.mark.exercise("ex06")


def _cell_variant(x, h, w_ih, w_hh, b_ih=None, b_hh=None, mistake=""):
    gx = F.linear(x, w_ih, b_ih)
    gh = F.linear(h, w_hh, b_hh)
    rx, zx, nx = gx.chunk(3, -1)
    rh, zh, nh = gh.chunk(3, -1)
    if mistake == "zr":
        rx, zx, rh, zh = zx, rx, zh, rh
    r, z = torch.sigmoid(rx + rh), torch.sigmoid(zx + zh)
    if mistake == "r_outside_bias":
        bh = b_hh.chunk(3)[2] if b_hh is not None else 0
        n = torch.tanh(nx + r * (nh - bh) + bh)
    else:
        n = torch.tanh(nx + r * nh)
    if mistake == "swap_update":
        return z * n + (1 - z) * h
    return (1 - z) * n + z * h


def _cell_hints(x, h, w):
    return [(lambda: _cell_variant(x, h, *w, mistake="zr"), "the gate order is (r, z, n): r comes first"),
            (lambda: _cell_variant(x, h, *w, mistake="r_outside_bias"),
             "r multiplies (W_hn h + b_hn), bias included: n = tanh(W_in x + b_in + r * (W_hn h + b_hn))"),
            (lambda: _cell_variant(x, h, *w, mistake="swap_update"), "h' = (1 - z) * n + z * h (you swapped z and 1-z)")]


@pytest.mark.points(3)
def test_gru_cell(sub):
    """gru_cell: equals torch.nn.GRUCell, with and without biases"""
    for seed, (B, In, H, bias) in enumerate([(4, 5, 3, True), (2, 3, 6, False), (1, 7, 7, True)]):
        g = I.gen(100 + seed)
        x, h = torch.randn(B, In, generator=g), torch.randn(B, H, generator=g)
        w = I.gru_weights(200 + seed, In, H, bias)
        what = f"x {tuple(x.shape)}, h {tuple(h.shape)}, {'with' if bias else 'without'} biases"
        check_tensor(sub.call("gru_cell", x, h, *w, _what=what), R.gru_cell(x, h, *w), fn="gru_cell", what=what,
                     rtol=1e-4, atol=1e-5, hints=_cell_hints(x, h, w if bias else w + (None, None)))


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


def _layer_from_padded_end(x, lengths, w):
    """A reverse pass that starts at the padded end (time flipped as a whole)."""
    T = x.shape[0]
    out = R.gru_layer(x.flip(0), torch.full_like(lengths, T), *w).flip(0)
    return out * (torch.arange(T)[:, None] < lengths[None, :]).unsqueeze(2)


def _layer_no_mask(x, lengths, w, reverse=False):
    return R.gru_layer(x, torch.full_like(lengths, x.shape[0]), *w, reverse=reverse)


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
                     what=what, rtol=1e-4, atol=1e-5,
                     hints=[(lambda: _layer_no_mask(x, lengths, w), "zero the outputs at padded steps t >= lengths[b]")])


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
                 hints=[(lambda: _layer_from_padded_end(x, lengths, w),
                         "your reverse pass starts at the padded end (t = T-1): each sequence must start at its "
                         "own last valid step lengths[b]-1"),
                        (lambda: R.gru_layer(x, lengths, *w).flip(0), "reverse the INPUT, run the GRU, then reverse "
                                                                      "the output back (within each length)"),
                        (lambda: R.gru_layer(x, lengths, *w), "reverse=True is ignored")])


@pytest.mark.points(3)
def test_bidirectional_gru(sub):
    """bidirectional_gru: forward and backward summed, (T, B, H)"""
    lens = [6, 3, 5]
    x = I.padded_sequences(330, 6, 3, 4, lens)
    lengths = torch.tensor(lens)
    fw, bw = I.gru_weights(331, 4, 5, True), I.gru_weights(332, 4, 5, True)
    what = f"x {tuple(x.shape)}, lengths={lens}, hidden size 5"
    f_out, b_out = R.gru_layer(x, lengths, *fw), R.gru_layer(x, lengths, *bw, reverse=True)
    check_tensor(sub.call("bidirectional_gru", x, lengths, fw, bw, _what=what),
                 R.bidirectional_gru(x, lengths, fw, bw), fn="bidirectional_gru", what=what, rtol=1e-4, atol=1e-5,
                 hints=[(lambda: torch.cat([f_out, b_out], -1), "DS2 SUMS the two directions; you concatenated them"),
                        (lambda: (f_out + b_out) / 2, "sum the directions, do not average them"),
                        (lambda: f_out + _layer_from_padded_end(x, lengths, bw),
                         "your backward direction starts at the padded end: start at lengths[b]-1"),
                        (lambda: f_out + R.gru_layer(x, lengths, *bw), "the backward direction must use reverse=True"),
                        (lambda: f_out, "you returned the forward direction only")])
