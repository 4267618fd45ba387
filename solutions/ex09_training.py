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
# Given: YOUR greedy decoding (exercise 02) and corpus WER (exercise 03)
# ---------------------------------------------------------------------------------------
#: Earlier exercises' functions this file uses.  ``_earlier`` fills an empty entry from YOUR earlier
#: file beside this one.  The lessons fill it first with the implementation they chose (yours once it
#: matches the reference, else the reference's); the grader with the course's own, so that this
#: exercise is graded on its own (a mistake in an earlier exercise costs no points here).
EARLIER: dict = {"greedy_decode": None, "word_error_rate": None}


def _earlier(name: str, module: str):
    """Given: ``EARLIER[name]``, else ``name`` from your ``module``.py in this file's folder."""
    fn = EARLIER.get(name)
    if fn is None:
        import importlib.util
        import os
        import sys

        here = globals().get("__file__") or os.path.join(os.getcwd(), "notebook")   # a notebook has no __file__
        path = os.path.join(os.path.dirname(os.path.abspath(here)), module + ".py")
        mod = sys.modules.get(module)
        if mod is None or getattr(mod, "__file__", None) != path:
            if not os.path.isfile(path):
                raise FileNotFoundError(f"{name} is yours, from {module}.py, which is not in {os.path.dirname(path)}")
            spec = importlib.util.spec_from_file_location(module, path)
            mod = sys.modules[module] = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
        fn = EARLIER[name] = getattr(mod, name)
    return fn


def _greedy_decode(log_probs: torch.Tensor, encoder, lengths) -> list[str]:
    """Exercise 02's ``greedy_decode``: yours, from ``ex02_ctc_decoding.py`` (``B`` strings)."""
    return _earlier("greedy_decode", "ex02_ctc_decoding")(log_probs, encoder, lengths)


def _word_error_rate(refs: list[str], hyps: list[str]) -> float:
    """Exercise 03's ``word_error_rate`` (corpus WER): yours, from ``ex03_wer.py``."""
    return _earlier("word_error_rate", "ex03_wer")(refs, hyps)


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
    ### BEGIN SOLUTION
    model.train()
    optimizer.zero_grad()
    log_probs, out_lengths = model(batch.features, batch.feature_lengths)        # (T', B, V), (B,)
    loss = F.ctc_loss(log_probs, batch.targets, out_lengths, batch.target_lengths,
                      blank=0, reduction="mean", zero_infinity=True)
    value = float(loss.detach())
    if not math.isfinite(value):
        optimizer.zero_grad()
        return value
    loss.backward()
    total_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    if torch.isfinite(torch.as_tensor(total_norm)):
        optimizer.step()
    else:
        optimizer.zero_grad()
    ### END SOLUTION
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
    something raised.  ``_greedy_decode`` and ``_word_error_rate`` above are given: they call
    your ``greedy_decode`` (exercise 02) and ``word_error_rate`` (exercise 03).
    Lesson 09, section 5.

    Common mistake: averaging per-batch WERs is not the corpus WER when batches differ in
    word counts.
    """
    ### BEGIN SOLUTION
    was_training = model.training
    refs: list[str] = []
    hyps: list[str] = []
    try:
        model.eval()
        with torch.no_grad():
            for batch in batches:
                log_probs, out_lengths = model(batch.features, batch.feature_lengths)
                hyps += _greedy_decode(log_probs, encoder, out_lengths)
                refs += list(batch.transcripts)
    finally:
        model.train(was_training)
    wer = _word_error_rate(refs, hyps)
    ### END SOLUTION
    return float(wer)
