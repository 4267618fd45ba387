# GENERATED from solutions/ex11_row_conv.py by `python -m autograder.generate`; students: edit only the regions marked `# YOUR CODE HERE`.
"""Exercise 11 — Row convolution for streaming (lesson 11).

A bidirectional RNN must hear the whole utterance before it emits anything.  DS2's
streaming models use forward-only recurrent layers followed by a *row convolution*
(lookahead convolution, DS2 section 3.7): each output frame mixes the next ``tau`` frames,
feature by feature, with its own weights::

    out[t, b, i] = sum_{j=0..tau} weight[j, i] * x[t + j, b, i]

so the model needs only ``tau`` frames of future context.  Frames past the end of a
sequence count as 0, and the output at padded frames is 0.

Grade your work (from the repository root)::

    make grade ONLY=ex11
    python -m autograder --only ex11

Write your code only between the ``# YOUR CODE HERE`` lines of each stub.

FORBIDDEN: importing ``reference``, ``solutions`` or ``autograder``.
"""
from __future__ import annotations

import torch

__all__ = ["row_conv"]


def row_conv(x: torch.Tensor, weight: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Lookahead (row) convolution over time, one filter per feature.

    Args:
        x: ``(T, B, H)`` features; item ``b`` is valid for ``t < lengths[b]``.
        weight: ``(tau + 1, H)``; ``weight[j, i]`` weighs feature ``i`` of the frame ``j`` steps ahead.
        lengths: ``(B,)`` valid frames per item.

    Returns:
        out: ``(T, B, H)``, ``out[t, b, i] = sum_j weight[j, i] * x[t + j, b, i]`` where frames
        ``t + j >= lengths[b]`` count as 0; ``out`` is 0 at padded frames ``t >= lengths[b]``.

    Build it from differentiable tensor operations (the grader checks gradients for ``x`` and
    ``weight``); ``tau = 0`` and a lookahead longer than the sequence must work.  Lesson 11,
    section 5 (the receptive field, by hand on a 1 x 6 sequence).

    Common mistake: this is a cross-correlation that looks FORWARD in time (``t + j``), not a
    causal convolution (``t - j``); and a short item's padding must not leak into its last frames.
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 3:
        raise ValueError(f"x must be a (T, B, H) tensor, got {getattr(x, 'shape', type(x))}")
    T, B, H = x.shape
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2 or weight.shape[1] != H:
        raise ValueError(f"weight must be (tau + 1, {H}), got {getattr(weight, 'shape', type(weight))}")
    lengths = torch.as_tensor(lengths, device=x.device)
    if lengths.shape != (B,) or lengths.is_floating_point() or (B and int(lengths.max()) > T):
        raise ValueError(f"lengths must be {B} integers in [0, {T}], got {lengths.tolist()}")
    # YOUR CODE HERE
    raise NotImplementedError("ex11: row_conv")
    return out
