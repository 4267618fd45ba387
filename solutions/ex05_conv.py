"""Exercise 05 — Convolutions over time and frequency (lesson 05).

DS2 starts with 2-D convolutions over the spectrogram ``(B, 1, n_freq, T)``: they see a
patch of frequencies and frames, and a stride over time shortens the sequence the
recurrent layers must process.  Three small pieces make those layers correct on a padded
batch:

1. ``clipped_relu``: DS2's activation ``min(max(x, 0), 20)``.
2. ``conv_output_length``: how many frames a convolution leaves, so the model can tell
   CTC how long each output sequence is.  Derive it from the layer's own settings.
3. ``mask_time``: zero the padded frames again after every convolution (a kernel that
   straddles the end of an utterance writes non-zero values into its padding).

Grade your work (from the repository root)::

    make grade ONLY=ex05
    .venv/bin/python -m autograder --only ex05     # the same, without make

Write your code only between the ``# YOUR CODE HERE`` lines of each stub.

FORBIDDEN: ``torch.nn.functional.hardtanh``, ``torch.nn.Hardtanh``, ``torch.nn.ReLU6``;
importing ``reference``, ``solutions`` or ``autograder``.
"""
from __future__ import annotations

import torch

__all__ = ["clipped_relu", "conv_output_length", "mask_time"]


def clipped_relu(x: torch.Tensor, ceiling: float = 20.0) -> torch.Tensor:
    """DS2's clipped ReLU, ``min(max(x, 0), ceiling)``, elementwise (DS2 section 3.1).

    Args:
        x: a tensor of any shape.
        ceiling: the largest output value (20 in DS2).

    Returns:
        y: same shape as ``x``: 0 for negative inputs, ``ceiling`` above the ceiling.
        Differentiable with respect to ``x``.

    Lesson 05, section 4.  Common mistake: a fixed 20 instead of the ``ceiling`` argument.
    """
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"x must be a torch.Tensor, got {type(x).__name__}")
    ### BEGIN SOLUTION
    y = torch.clamp(x, min=0.0, max=ceiling)
    ### END SOLUTION
    return y


def conv_output_length(length, kernel_size: int, stride: int = 1, padding: int = 0, dilation: int = 1):
    """Number of output frames of a convolution along one axis (as ``torch.nn.Conv2d`` computes it).

    Args:
        length: input frames: a Python int, or an integer tensor (e.g. ``(B,)`` lengths).
        kernel_size, stride, padding, dilation: the layer's settings along that axis.

    Returns:
        ``floor((length + 2 * padding - dilation * (kernel_size - 1) - 1) / stride) + 1``:
        an int for an int, an int64 tensor for a tensor.

    Lesson 05, section 2 (the windows of one convolution counted by hand).  Common mistake:
    ``/`` gives floats, and ``int()`` truncates towards 0 instead of flooring.
    """
    if isinstance(length, torch.Tensor):
        if length.is_floating_point():
            raise ValueError(f"length must be an integer tensor, got dtype {length.dtype}")
        length = length.long()
    elif isinstance(length, bool) or not isinstance(length, int):
        raise ValueError(f"length must be an int or an integer tensor, got {type(length).__name__}")
    ### BEGIN SOLUTION
    out = (length + 2 * padding - dilation * (kernel_size - 1) - 1) // stride + 1
    ### END SOLUTION
    return out


def mask_time(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Zero the padded frames of a batch of feature maps.

    Args:
        x: ``(B, C, F, T)`` feature maps (channels, frequency, time).
        lengths: ``(B,)`` valid frames of each item.

    Returns:
        y: a NEW ``(B, C, F, T)`` tensor equal to ``x`` at frames ``t < lengths[b]`` and 0 at
        frames ``t >= lengths[b]``.

    Vectorised: no Python loop over the batch.  Key intermediate: a boolean ``(B, T)`` mask of
    the valid frames, broadcast over channels and frequencies.

    Lesson 05, section 3 (a 2 x 3 padded batch masked by hand).  Common mistake: ``x * mask``
    looks the same but turns an ``inf`` in the padding into ``nan``.
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise ValueError(f"x must be a (B, C, F, T) tensor, got {getattr(x, 'shape', type(x))}")
    lengths = torch.as_tensor(lengths, device=x.device)
    if lengths.shape != (x.shape[0],) or lengths.is_floating_point():
        raise ValueError(f"lengths must be {x.shape[0]} integers, got {lengths.tolist()}")
    ### BEGIN SOLUTION
    B, C, F, T = x.shape
    mask = torch.arange(T, device=x.device)[None, :] < lengths[:, None]   # (B, T)
    y = x.masked_fill(~mask[:, None, None, :], 0.0)                        # (B, C, F, T)
    ### END SOLUTION
    return y
