# GENERATED from solutions/ex09_training.py by `python -m autograder.generate`; students: edit only the regions marked `# YOUR CODE HERE`.
"""Exercise 09 — Training Deep Speech 2 (lesson 09).

With the pieces of exercises 01-08 in place, training is a loop of small, careful steps.
You will implement:

1. ``train_step``: one optimiser step on one batch with the CTC loss, skipping batches
   whose loss or gradient is not finite, and clipping the gradient norm (gradients of recurrent networks
   occasionally explode; DS2 clips the norm at 400, section 6).
2. ``evaluate``: the corpus word error rate of a model on a list of batches, with greedy
   decoding, without changing the model's training mode for the caller.

The model is any ``nn.Module`` with ``model(features, feature_lengths) -> (log_probs, out_lengths)``:
``log_probs`` ``(T', B, V)`` log-softmax outputs and ``out_lengths`` ``(B,)``.  A batch has
``features``, ``feature_lengths``, ``targets``, ``target_lengths`` and ``transcripts``
(see exercise 08).  ``torch.nn.functional.ctc_loss`` is allowed here (your own from
exercise 04 is slower).

Grade your work (from the repository root)::

    make grade ONLY=ex09
    python -m autograder --only ex09

Write your code only between the ``# YOUR CODE HERE`` lines of each stub.

FORBIDDEN: importing ``reference``, ``solutions`` or ``autograder``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["train_step", "evaluate"]


# ---------------------------------------------------------------------------------------
# Given: greedy decoding (exercise 02) and corpus WER (exercise 03)
# ---------------------------------------------------------------------------------------
def _greedy_decode(log_probs: torch.Tensor, encoder, lengths) -> list[str]:
    """Best path of ``(T, B, V)`` log-probabilities within ``lengths``, collapsed, as ``B`` strings."""
    best = log_probs.argmax(dim=-1).transpose(0, 1).cpu()       # (B, T)
    texts = []
    for b in range(best.shape[0]):
        out, prev = [], None
        for i in best[b, : int(lengths[b])].tolist():
            if i != prev and i != encoder.blank_idx:
                out.append(i)
            prev = i
        texts.append(encoder.decode(out))
    return texts


def _edit_distance(ref: list, hyp: list) -> int:
    prev = list(range(len(hyp) + 1))
    for i in range(1, len(ref) + 1):
        row = [i] + [0] * len(hyp)
        for j in range(1, len(hyp) + 1):
            row[j] = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (ref[i - 1] != hyp[j - 1]))
        prev = row
    return prev[-1]


def _word_error_rate(refs: list[str], hyps: list[str]) -> float:
    """Corpus WER: total word edit distance / total reference words."""
    if len(refs) != len(hyps):
        raise ValueError(f"got {len(refs)} references but {len(hyps)} hypotheses")
    n_words = sum(len(r.split()) for r in refs)
    if n_words == 0:
        raise ValueError("the references contain no words: WER is undefined")
    return sum(_edit_distance(r.split(), h.split()) for r, h in zip(refs, hyps)) / n_words


# ---------------------------------------------------------------------------------------
# Graded
# ---------------------------------------------------------------------------------------
def train_step(model: torch.nn.Module, batch, optimizer: torch.optim.Optimizer, max_grad_norm: float = 400.0) -> float:
    """One training step on one batch.

    Args:
        model: ``model(features, feature_lengths) -> (log_probs (T', B, V), out_lengths (B,))``.
        batch: has ``features`` ``(B, 1, F, T)``, ``feature_lengths``, ``targets`` ``(B, S)``,
            ``target_lengths``.
        optimizer: an optimiser over ``model.parameters()``.
        max_grad_norm: the largest allowed global gradient norm (DS2 clips at 400).

    Returns:
        loss: the batch's mean CTC loss as a Python float, before the step:
        ``F.ctc_loss(..., blank=0, reduction='mean', zero_infinity=True)``.

    The model trains in training mode whatever mode it arrives in; the global gradient norm
    is clipped to ``max_grad_norm``; a non-finite loss or gradient norm leaves the weights
    unchanged (no step) and the loss is still returned.  Lesson 09, sections 3-4.

    Common mistake: the loss needs the model's OUTPUT lengths, not ``batch.feature_lengths``
    (the convolutions' stride makes the output shorter than the input).
    """
    # YOUR CODE HERE
    raise NotImplementedError("ex09: train_step")
    return value


def evaluate(model: torch.nn.Module, batches, encoder) -> float:
    """Corpus word error rate of ``model`` on ``batches`` with greedy decoding.

    Args:
        model: as in :func:`train_step`.
        batches: an iterable of batches (each with ``transcripts``).
        encoder: has ``vocab_size``, ``blank_idx`` and ``decode(ids)``.

    Returns:
        wer: total word edits / total reference words over ALL batches (a float).

    Decode in eval mode (BatchNorm's running statistics), without gradients, each item up to
    its output length; the caller finds its model in the mode it handed over, even if
    something raised.  ``_greedy_decode`` and ``_word_error_rate`` above are given.
    Lesson 09, section 5.

    Common mistake: averaging per-batch WERs is not the corpus WER when batches differ in
    word counts.
    """
    # YOUR CODE HERE
    raise NotImplementedError("ex09: evaluate")
    return float(wer)
