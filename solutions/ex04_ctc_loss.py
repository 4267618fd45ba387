"""Exercise 04 — The CTC loss (lesson 04).

CTC trains the network without frame-level labels: ``p(y|x)`` is the sum, over every
alignment (one symbol per frame) that collapses to ``y``, of the product of its per-frame
probabilities.  The forward (alpha) recursion over the blank-extended target
``[_, y1, _, y2, ..., yU, _]`` adds them all up in ``O(T * U)`` (Graves et al., 2006).

You will implement:

1. ``extend_with_blanks``: ``[y1, ..., yU] -> [_, y1, _, ..., yU, _]`` (length ``2U + 1``).
2. ``ctc_log_alpha``: the log forward variables of one utterance, ``(T, 2U + 1)``.
3. ``ctc_loss``: the batched loss with the semantics of ``torch.nn.functional.ctc_loss``:
   the same value, and (through autograd) the same gradient with respect to the logits
   when ``log_probs = logits.log_softmax(-1)``.

Everything is in log space: products become sums, sums become ``logsumexp``.

Grade your work (from the repository root)::

    make grade ONLY=ex04
    .venv/bin/python -m autograder --only ex04     # the same, without make

Write your code only between the ``# YOUR CODE HERE`` lines of each stub.

FORBIDDEN: ``torch.nn.functional.ctc_loss``, ``torch.ctc_loss``, ``torch.nn.CTCLoss``;
importing ``reference``, ``solutions`` or ``autograder``.
"""
from __future__ import annotations

import torch

__all__ = ["extend_with_blanks", "ctc_log_alpha", "ctc_loss"]

# Given: a finite stand-in for log(0).  torch.logsumexp of values that are ALL -inf has a
# NaN gradient; with LOG_ZERO it is 0.  Alphas at or below LOG_ZERO / 2 are reported as -inf.
LOG_ZERO = -1e30


def _as_id_list(target) -> list[int]:
    """Given: a target (list, tuple or 1-D integer tensor) as a list of ints."""
    if isinstance(target, torch.Tensor):
        if target.dim() != 1 or target.is_floating_point():
            raise ValueError(f"target must be a 1-D integer tensor, got shape {tuple(target.shape)}, dtype {target.dtype}")
        target = target.tolist()
    return [int(y) for y in target]


def _lengths(x, B: int, name: str) -> torch.Tensor:
    """Given: ``x`` as a ``(B,)`` int64 tensor of non-negative lengths."""
    x = torch.as_tensor(x)
    if x.shape != (B,) or x.is_floating_point() or (B and int(x.min()) < 0):
        raise ValueError(f"{name} must be {B} non-negative integers, got {x.tolist()}")
    return x.long()


def extend_with_blanks(target, blank: int = 0) -> list[int]:
    """Interleave blanks: ``[y1, ..., yU] -> [blank, y1, blank, y2, ..., yU, blank]``.

    Args:
        target: ``U`` symbol ids (list, tuple or ``(U,)`` tensor), no blanks.
        blank: the id of the blank.

    Returns:
        ext: a list of ``2U + 1`` ints; blanks at even positions, ``ext[2u + 1] = y_{u+1}``.

    Lesson 04, section 2 (the extended target and the trellis).
    """
    target = _as_id_list(target)
    ### BEGIN SOLUTION
    ext = [blank]
    for y in target:
        ext += [y, blank]
    ### END SOLUTION
    return ext


def ctc_log_alpha(log_probs: torch.Tensor, target, blank: int = 0) -> torch.Tensor:
    """Log forward variables of one utterance (Graves et al., 2006, eq. 5-8, in log space).

    ``alpha[t, s]`` = log of the total probability of all partial alignments of frames
    ``0..t`` that end in state ``s`` of the extended target ``ext = extend_with_blanks(target)``.

    Args:
        log_probs: ``(T, V)`` log-probabilities of one utterance.
        target: ``U`` symbol ids (list or ``(U,)`` tensor, no blanks).
        blank: the id of the blank.

    Returns:
        alpha: ``(T, 2U + 1)`` natural-log alphas, ``-inf`` where a state is unreachable.
        Differentiable with respect to ``log_probs``.

    Key intermediate: ``log_probs[:, ext]``, ``(T, S)`` with ``S = 2U + 1``, the log-probability
    of each state of the extended target at each frame.  Keep the result differentiable (no
    in-place writes into a tensor that autograd needs, no ``.item()`` or numpy) and use the given
    ``LOG_ZERO`` for log(0) inside the recursion.

    Lesson 04, sections 3-4 (one column of the alpha table by hand, in probabilities and in log
    space, and why ``LOG_ZERO``).  Common mistake: skipping the blank between two equal labels
    (``a _ a``), which counts alignments of ``a`` as alignments of ``aa``.
    """
    if not isinstance(log_probs, torch.Tensor) or log_probs.dim() != 2 or not log_probs.is_floating_point():
        raise ValueError(f"log_probs must be a floating (T, V) tensor, got {getattr(log_probs, 'shape', type(log_probs))}")
    T, V = log_probs.shape
    ids = _as_id_list(target)
    if any(not 0 <= y < V for y in ids):
        raise ValueError(f"target ids must lie in [0, {V - 1}], got {ids}")
    if T == 0:                                                              # no frames: nothing is reachable
        return log_probs.new_empty((0, 2 * len(ids) + 1))
    ### BEGIN SOLUTION
    ext = torch.tensor(extend_with_blanks(ids, blank), dtype=torch.long)   # (S,)
    S = ext.numel()
    emit = log_probs[:, ext].clamp_min(LOG_ZERO)                           # (T, S)
    # skip s-2 -> s only onto a non-blank that differs from the symbol two states back
    can_skip = torch.zeros(S, dtype=torch.bool)
    can_skip[2:] = (ext[2:] != blank) & (ext[2:] != ext[:-2])
    pad1 = log_probs.new_full((1,), LOG_ZERO)
    pad2 = log_probs.new_full((2,), LOG_ZERO)

    start = log_probs.new_full((S,), LOG_ZERO)
    start[: min(2, S)] = 0.0                                               # first blank or first symbol
    alpha = start + emit[0]                                                # (S,)
    rows = [alpha]
    for t in range(1, T):
        stay = alpha                                                       # s   -> s
        step = torch.cat([pad1, alpha])[:S]                                # s-1 -> s
        skip = torch.cat([pad2, alpha])[:S].masked_fill(~can_skip, LOG_ZERO)   # s-2 -> s
        alpha = torch.logsumexp(torch.stack([stay, step, skip]), dim=0) + emit[t]
        rows.append(alpha)
    alpha = torch.stack(rows)                                              # (T, S)
    alpha = alpha.masked_fill(alpha <= LOG_ZERO / 2, float("-inf"))
    ### END SOLUTION
    return alpha


def ctc_loss(log_probs, targets, input_lengths, target_lengths, blank: int = 0, reduction: str = "mean"):
    """CTC negative log-likelihood with the semantics of ``torch.nn.functional.ctc_loss``.

    Args:
        log_probs: ``(T, B, V)`` log-softmax outputs.
        targets: ``(B, S)`` zero-padded symbol ids, or the ``(sum(target_lengths),)``
            concatenation of all targets.
        input_lengths: ``(B,)`` valid frames per item (``<= T``).
        target_lengths: ``(B,)`` symbols per target.
        blank: the id of the blank.
        reduction: ``'none'`` -> ``(B,)`` losses; ``'sum'`` -> their sum; ``'mean'`` -> each
            loss divided by its target length (at least 1), then averaged over the batch.

    Returns:
        loss: a tensor (``(B,)`` or a scalar), ``inf`` for an item whose target cannot fit
        in its frames.  Differentiable with respect to ``log_probs``.

    Item ``b`` uses only its first ``input_lengths[b]`` frames, ``(T_b, V)``, and its first
    ``target_lengths[b]`` labels (in the 1-D layout item ``b`` starts at
    ``sum(target_lengths[:b])``); build it on your ``ctc_log_alpha``.

    Lesson 04, section 5 (the batched loss and PyTorch's reductions).  Common mistake:
    ``'mean'`` is not ``losses.mean()``: PyTorch first divides each loss by its target length.
    """
    if not isinstance(log_probs, torch.Tensor) or log_probs.dim() != 3 or not log_probs.is_floating_point():
        raise ValueError(f"log_probs must be a floating (T, B, V) tensor, got {getattr(log_probs, 'shape', type(log_probs))}")
    if reduction not in ("none", "sum", "mean"):
        raise ValueError(f"reduction must be 'none', 'sum' or 'mean', got {reduction!r}")
    T, B, V = log_probs.shape
    input_lengths = _lengths(input_lengths, B, "input_lengths")
    target_lengths = _lengths(target_lengths, B, "target_lengths")
    if B and int(input_lengths.max()) > T:
        raise ValueError(f"input_lengths must be <= T = {T}, got {input_lengths.tolist()}")
    targets = torch.as_tensor(targets)
    if targets.dim() not in (1, 2) or targets.is_floating_point():
        raise ValueError(f"targets must be a (B, S) or 1-D integer tensor, got shape {tuple(targets.shape)}")
    ### BEGIN SOLUTION
    offsets = torch.cumsum(target_lengths, 0) - target_lengths            # start of item b in 1-D targets
    losses = []
    for b in range(B):
        n = int(target_lengths[b])
        if targets.dim() == 2:
            target = targets[b, :n]
        else:
            target = targets[int(offsets[b]) : int(offsets[b]) + n]
        alpha = ctc_log_alpha(log_probs[: int(input_lengths[b]), b], target, blank)   # (T_b, 2n+1)
        if alpha.shape[0] == 0:                                            # no frames at all
            log_p = log_probs.new_tensor(0.0 if n == 0 else float("-inf"))
        else:
            log_p = torch.logsumexp(alpha[-1, -2:] if n > 0 else alpha[-1, -1:], dim=0)
        losses.append(-log_p)
    loss = torch.stack(losses) if losses else log_probs.new_zeros((0,))   # (B,)
    if reduction == "sum":
        loss = loss.sum()
    elif reduction == "mean":
        loss = (loss / target_lengths.clamp_min(1).to(loss.dtype)).mean()
    ### END SOLUTION
    return loss
