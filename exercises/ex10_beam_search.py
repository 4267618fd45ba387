# GENERATED from solutions/ex10_beam_search.py by `python -m autograder.generate`; students: edit only the regions marked `# YOUR CODE HERE`.
"""Exercise 10 — Prefix beam search with a language model (lesson 10).

Greedy decoding picks the best *path*; the best *transcript* sums over all the paths that
collapse to it.  CTC prefix beam search (Hannun et al., 2014; DS2 section 3.8) keeps the
``beam_width`` best prefixes, each with two probabilities: of the paths that end in a
blank (``p_b``) and of those that end in its last symbol (``p_nb``).  It ranks them by

    Q(y) = log p_ctc(y | x) + alpha * log p_lm(y) + beta * word_count(y)

where ``word_count(y) = len(y.split())``.  The language model scores whole words, so a
word's LM term and its ``beta`` are added when the word is completed (a space follows it);
the last word and the end of the sentence are added at the end.  ``beta`` rewards every
word (an LM alone prefers short sentences).

The language model, when given, has ``lm.score(history, word) -> log p(word | history)``
(``history``: the tuple of all previous words) and ``lm.end_score(history) -> log p(</s> | history)``.

Grade your work (from the repository root)::

    make grade ONLY=ex10
    .venv/bin/python -m autograder --only ex10      # the same, without make

Write your code only between the ``# YOUR CODE HERE`` lines of each stub.

FORBIDDEN: ``pyctcdecode``, ``ctcdecode``, ``torchaudio`` (its CTC decoders), ``kenlm``;
importing ``reference``, ``solutions`` or ``autograder``.
"""
from __future__ import annotations

import math
from collections import defaultdict

import torch

__all__ = ["prefix_beam_search"]

NEG_INF = float("-inf")


def _log_add(*xs: float) -> float:
    """Given: ``log(sum(exp(x) for x in xs))`` of Python floats, exact for ``-inf``."""
    m = max(xs)
    if m == NEG_INF:
        return NEG_INF
    return m + math.log(sum(math.exp(x - m) for x in xs))


def prefix_beam_search(log_probs: torch.Tensor, encoder, beam_width: int = 16, lm=None,
                       alpha: float = 0.5, beta: float = 1.0) -> list[tuple[str, float]]:
    """CTC prefix beam search for one utterance.

    Args:
        log_probs: ``(T, V)`` per-frame natural-log probabilities (rows of a log-softmax).
        encoder: has ``vocab_size``, ``blank_idx``, ``encode(text)`` and ``decode(ids)``.
        beam_width: prefixes kept after every frame (and at most returned).
        lm: ``None`` (no LM term; ``beta`` still applies) or an object with
            ``score(history, word)`` and ``end_score(history)`` (natural logs).
        alpha: LM weight; beta: reward per word.

    Returns:
        hypotheses: up to ``beam_width`` pairs ``(text, Q(text))``, best first (ties by text),
        with ``text = encoder.decode(prefix)`` exactly as emitted (spaces kept).

    State (lesson 10, sections 3 to 5): ``beams[prefix] = (p_b, p_nb)`` in log space, ``prefix`` a
    tuple of symbol ids (start: ``{(): (0.0, -inf)}``): the log-probabilities of the paths of frames
    ``0..t`` that collapse to ``prefix`` and end in a blank (``p_b``) or in its last symbol (``p_nb``);
    and ``bonus[prefix]``: the sum, over the prefix's COMPLETED words, of
    ``alpha * lm.score(previous words, word) + beta`` (just ``beta`` without an LM).  A word is
    completed by the space after it: the words of ``"ab c"`` are ``("ab",)`` and ``"c"`` is still open.
    After every frame keep the ``beam_width`` best prefixes by ``(p_b (+) p_nb) + bonus`` (``(+)`` is
    ``_log_add``); after the last frame, close the open last word and, with an LM, the sentence
    (``alpha * lm.end_score(all words)``).  The final score is exactly
    ``log p_ctc + alpha * log p_lm + beta * len(text.split())`` when the beam kept every prefix.

    Common mistakes: ``max`` where paths must be summed (that is Viterbi, not CTC), and merging a
    repeat across a blank (``a _ a`` is ``"aa"``).
    """
    if not isinstance(log_probs, torch.Tensor) or log_probs.dim() != 2 or not log_probs.is_floating_point():
        raise ValueError(f"log_probs must be a floating (T, V) tensor, got {getattr(log_probs, 'shape', type(log_probs))}")
    T, V = log_probs.shape
    if V != encoder.vocab_size:
        raise ValueError(f"log_probs has {V} symbols per frame, the encoder has {encoder.vocab_size}")
    if isinstance(beam_width, bool) or not isinstance(beam_width, int) or beam_width < 1:
        raise ValueError(f"beam_width must be a positive int, got {beam_width!r}")
    if torch.isnan(log_probs).any():
        raise ValueError("log_probs contains NaN")
    if log_probs.numel() and float(log_probs.max()) > 1e-4:
        raise ValueError("log_probs must be log-probabilities (<= 0): apply log_softmax over the symbols first")
    lp = log_probs.detach().cpu().double().clamp_max(0.0).tolist()   # T lists of V floats
    blank = encoder.blank_idx
    space = encoder.encode(" ")[0]
    use_lm = lm is not None and alpha != 0
    # YOUR CODE HERE
    raise NotImplementedError("ex10: prefix_beam_search")
    return hypotheses
