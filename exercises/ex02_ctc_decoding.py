# GENERATED from solutions/ex02_ctc_decoding.py by `python -m autograder.generate`; students: edit only the regions marked `# YOUR CODE HERE`.
"""Exercise 02 — CTC collapse and greedy decoding (lesson 02).

The network emits one distribution over the 29 symbols per frame (0 = blank, 1..26 = a..z,
27 = space, 28 = apostrophe).  A frame-level path *collapses* to text by merging repeats
and then dropping blanks::

    h h _ e e _ l l _ l o o   ->   h e l l o
    a a _ a                   ->   a a          (a blank separates real repeats)

You will implement:

1. ``ctc_collapse``: merge repeats, then drop blanks.
2. ``greedy_decode``: the best path of a batch of posteriograms, collapsed and turned into text.

Grade your work (from the repository root)::

    make grade ONLY=ex02
    .venv/bin/python -m autograder --only ex02     # the same, without make

Write your code only between the ``# YOUR CODE HERE`` lines of each stub.

FORBIDDEN: importing ``reference``, ``solutions`` or ``autograder``.  In ``greedy_decode``,
collapse with your own ``ctc_collapse`` and then call ``encoder.decode``; ``encoder.ctc_decode``
would do the collapsing for you, which is the point of the exercise.
"""
from __future__ import annotations

import torch

__all__ = ["ctc_collapse", "greedy_decode"]


def ctc_collapse(ids, blank: int = 0) -> list[int]:
    """Merge consecutive repeats, then drop blanks.

    Args:
        ids: a frame-level path of ``T`` symbol ids: a list, a tuple or a ``(T,)`` tensor.
        blank: the id of the CTC blank.

    Returns:
        out: a list of Python ints, e.g. ``[1, 1, 0, 1, 2, 2] -> [1, 1, 2]``.

    Lesson 02, section 2 (the collapse by hand, and the order of the two steps).  Common
    mistake: dropping blanks first and merging second turns ``a _ a`` into ``a`` instead of ``aa``.
    """
    if isinstance(ids, torch.Tensor):
        if ids.dim() != 1:
            raise ValueError(f"ctc_collapse expects a 1-D sequence of ids, got shape {tuple(ids.shape)}")
        ids = ids.tolist()
    out: list[int] = []
    # YOUR CODE HERE
    raise NotImplementedError("ex02: ctc_collapse")
    return out


def greedy_decode(log_probs: torch.Tensor, encoder, lengths=None) -> list[str]:
    """Best-path (greedy) decoding of a batch (no language model; DS2 section 3.8 adds one).

    Args:
        log_probs: ``(T, B, V)`` per-frame log-probabilities (the layout of ``F.ctc_loss``).
        encoder: has ``vocab_size``, ``blank_idx`` and ``decode(ids) -> str`` (drops blanks).
        lengths: ``(B,)`` int tensor (or list) of valid frames per item; ``None`` means all ``T``.

    Returns:
        texts: ``B`` strings, one per batch item.

    The best symbol of every frame is a ``(T, B)`` tensor; item ``b`` uses only its first
    ``lengths[b]`` frames (the rest is padding), collapsed with your ``ctc_collapse``
    (``blank=encoder.blank_idx``) and turned into text with ``encoder.decode``.

    Lesson 02, section 4 (greedy decoding by hand, and why lengths matter in a batch).  Common
    mistake: an argmax over the wrong dimension still returns a tensor without complaint.
    """
    if not isinstance(log_probs, torch.Tensor) or log_probs.dim() != 3:
        raise ValueError(f"log_probs must be a (T, B, V) tensor, got {getattr(log_probs, 'shape', type(log_probs))}")
    T, B, V = log_probs.shape
    if V != encoder.vocab_size:
        raise ValueError(f"log_probs has {V} symbols per frame, the encoder has {encoder.vocab_size}")
    if lengths is None:
        lengths = torch.full((B,), T, dtype=torch.long)
    lengths = torch.as_tensor(lengths)
    if lengths.shape != (B,) or lengths.is_floating_point() or int(lengths.min()) < 0 or int(lengths.max()) > T:
        raise ValueError(f"lengths must be {B} integers in [0, {T}], got {lengths.tolist()}")
    texts: list[str] = []
    # YOUR CODE HERE
    raise NotImplementedError("ex02: greedy_decode")
    return texts
