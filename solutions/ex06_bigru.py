"""Exercise 06 — The bidirectional GRU (lesson 06).

DS2's recurrent layers read the whole utterance in both directions.  You will build them
from the cell up, with PyTorch's weight layout so that your weights load into ``nn.GRU``
and back:

1. ``gru_cell``: one step, exactly ``torch.nn.GRUCell`` (gate order r, z, n)::

       r  = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
       z  = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
       n  = tanh(W_in x + b_in + r * (W_hn h + b_hn))
       h' = (1 - z) * n + z * h

2. ``gru_layer``: unroll the cell over a zero-padded batch ``(T, B, I)``; forwards or
   backwards, where a backward pass starts at each sequence's OWN last valid frame.
3. ``bidirectional_gru``: the two directions, SUMMED (DS2 sums; many libraries concatenate).

Grade your work (from the repository root)::

    make grade ONLY=ex06
    python -m autograder --only ex06

Write your code only between the ``# YOUR CODE HERE`` lines of each stub.

FORBIDDEN: ``torch.nn.GRU``, ``torch.nn.GRUCell``, ``torch.gru``, ``torch.gru_cell``,
``torch.nn.RNN``, ``torch.nn.LSTM``; importing ``reference``, ``solutions`` or ``autograder``.
"""
from __future__ import annotations

import torch

__all__ = ["gru_cell", "gru_layer", "bidirectional_gru"]


def gru_cell(x, h, weight_ih, weight_hh, bias_ih=None, bias_hh=None):
    """One GRU step, as ``torch.nn.GRUCell``.

    Args:
        x: ``(B, I)`` inputs.
        h: ``(B, H)`` previous hidden state.
        weight_ih: ``(3H, I)``, the rows of ``W_ir``, ``W_iz``, ``W_in`` stacked in that order.
        weight_hh: ``(3H, H)``, the rows of ``W_hr``, ``W_hz``, ``W_hn``.
        bias_ih, bias_hh: ``(3H,)`` or ``None`` (no bias, i.e. zero).

    Returns:
        h_new: ``(B, H)``.

    Step 1: the two projections ``gi = x @ weight_ih.T (+ bias_ih)`` and
            ``gh = h @ weight_hh.T (+ bias_hh)``, both ``(B, 3H)``.
    Step 2: split each into its three ``(B, H)`` gates with ``.chunk(3, dim=-1)``.
    Step 3: ``r``, ``z``, ``n`` and ``h'`` as in the module docstring.

    Hint: the reset gate multiplies ``W_hn h + b_hn`` (bias included), not ``h`` itself;
    ``h' = (1 - z) * n + z * h``, not ``z * n + (1 - z) * h``.
    """
    ### BEGIN SOLUTION
    gi = x @ weight_ih.T                                        # (B, 3H)
    gh = h @ weight_hh.T                                        # (B, 3H)
    if bias_ih is not None:
        gi = gi + bias_ih
    if bias_hh is not None:
        gh = gh + bias_hh
    i_r, i_z, i_n = gi.chunk(3, dim=-1)                         # 3 x (B, H)
    h_r, h_z, h_n = gh.chunk(3, dim=-1)
    r = torch.sigmoid(i_r + h_r)
    z = torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)
    h_new = (1 - z) * n + z * h
    ### END SOLUTION
    return h_new


def gru_layer(x, lengths, weight_ih, weight_hh, bias_ih=None, bias_hh=None, reverse=False):
    """Run a GRU over a zero-padded batch of sequences, in one direction.

    Args:
        x: ``(T, B, I)`` inputs; item ``b`` is valid for ``t < lengths[b]``.
        lengths: ``(B,)`` valid steps per item.
        weight_ih, weight_hh, bias_ih, bias_hh: as in :func:`gru_cell`.
        reverse: run from the end of each sequence to its start.

    Returns:
        out: ``(T, B, H)`` hidden states, 0 at padded steps ``t >= lengths[b]``.  The
        initial state is zeros.

    Step 1: ``h = zeros(B, H)``; the time steps are ``0..T-1`` (``T-1..0`` if ``reverse``).
    Step 2: at each step, ``h_new = gru_cell(x[t], h, ...)`` for the whole batch, then keep
            it only for the items still valid at ``t``: ``valid = (t < lengths)[:, None]``,
            ``h = torch.where(valid, h_new, h)``; the output at ``t`` is
            ``torch.where(valid, h_new, 0)``.
    Step 3: put the outputs back in time order and ``torch.stack`` them to ``(T, B, H)``.

    Hint: in reverse, a short sequence must start at ITS last valid frame with a zero state.
    Because ``h`` stays zero while ``t >= lengths[b]`` (step 2), that happens by itself;
    without the mask its state would first run through the padding.
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 3:
        raise ValueError(f"x must be a (T, B, I) tensor, got {getattr(x, 'shape', type(x))}")
    T, B, _ = x.shape
    H = weight_hh.shape[1]
    lengths = torch.as_tensor(lengths, device=x.device)
    if lengths.shape != (B,) or lengths.is_floating_point() or (B and int(lengths.max()) > T):
        raise ValueError(f"lengths must be {B} integers in [0, {T}], got {lengths.tolist()}")
    if weight_ih.shape != (3 * H, x.shape[2]) or weight_hh.shape != (3 * H, H):
        raise ValueError(f"weights must be (3H, I) and (3H, H), got {tuple(weight_ih.shape)} and {tuple(weight_hh.shape)}")
    ### BEGIN SOLUTION
    h = x.new_zeros(B, H)                                       # (B, H)
    outputs = [None] * T
    steps = range(T - 1, -1, -1) if reverse else range(T)
    for t in steps:
        h_new = gru_cell(x[t], h, weight_ih, weight_hh, bias_ih, bias_hh)   # (B, H)
        valid = (t < lengths)[:, None]                          # (B, 1)
        h = torch.where(valid, h_new, h)
        outputs[t] = torch.where(valid, h_new, torch.zeros_like(h_new))
    out = torch.stack(outputs) if T else x.new_zeros(0, B, H)   # (T, B, H)
    ### END SOLUTION
    return out


def bidirectional_gru(x, lengths, forward_weights, backward_weights):
    """A bidirectional GRU layer whose two directions are SUMMED (DS2 section 3.1).

    Args:
        x: ``(T, B, I)``; lengths: ``(B,)``.
        forward_weights, backward_weights: tuples ``(weight_ih, weight_hh, bias_ih, bias_hh)``
            for each direction (the biases may be ``None``, or left out: a 2-tuple).

    Returns:
        out: ``(T, B, H)`` = forward pass + backward pass, 0 at padded steps.
    """
    forward_weights, backward_weights = tuple(forward_weights), tuple(backward_weights)
    for name, w in (("forward_weights", forward_weights), ("backward_weights", backward_weights)):
        if len(w) not in (2, 3, 4):
            raise ValueError(f"{name} must be (weight_ih, weight_hh[, bias_ih[, bias_hh]]), got {len(w)} items")
    ### BEGIN SOLUTION
    fwd = gru_layer(x, lengths, *forward_weights)               # (T, B, H)
    bwd = gru_layer(x, lengths, *backward_weights, reverse=True)
    out = fwd + bwd
    ### END SOLUTION
    return out
