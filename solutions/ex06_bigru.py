"""Exercise 06 — The bidirectional GRU (lesson 06).

DS2's recurrent layers read the whole utterance in both directions.  You build them from
the cell up, with PyTorch's weight layout so that your weights load into ``nn.GRU`` and back
(lesson 06 works each idea out on small cases):

1. ``gru_cell``: one step, exactly ``torch.nn.GRUCell`` (gate order r, z, n)::

       r  = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
       z  = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
       n  = tanh(W_in x + b_in + r * (W_hn h + b_hn))
       h' = (1 - z) * n + z * h

2. ``gru_layer``: the cell unrolled over a zero-padded batch ``(T, B, I)``, forwards or
   backwards, where a backward pass starts at each sequence's OWN last valid frame.
3. ``bidirectional_gru``: the two directions, SUMMED (DS2 sums; many libraries concatenate).

Grade your work (from the repository root)::

    make grade ONLY=ex06          # or: .venv/bin/python -m autograder --only ex06

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
        h_new: ``(B, H)``.  The input and recurrent projections are ``(B, 3H)`` each, the
        gates ``r``, ``z`` and the candidate ``n`` ``(B, H)`` each (module docstring).

    Common mistake: resetting ``h`` before the matrix (``W_hn (r * h)``, Cho et al.) instead of
    ``r * (W_hn h + b_hn)``.  Lesson 06, section 2, computes one step by hand.
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
        initial state is zeros, ``(B, H)``.  With ``reverse``, item ``b`` is read from
        ``t = lengths[b] - 1`` down to 0, starting from a zero state; an item's outputs do not
        depend on how much padding follows it.

    Common mistake: flipping the whole padded tensor in time for ``reverse``: a short sequence
    then starts at the padded end and its state runs through the padding first (lesson 06,
    section 3, draws the steps for a batch of two).
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
        out: ``(T, B, H)`` = forward pass + backward pass, 0 at padded steps (lesson 06, section 5).
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
