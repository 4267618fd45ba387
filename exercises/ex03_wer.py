# GENERATED from solutions/ex03_wer.py by `python -m autograder.generate`; students: edit only the regions marked `# YOUR CODE HERE`.
"""Exercise 03 — Word error rate (lesson 03).

Speech recognisers are judged by the *word error rate*: the fewest substitutions,
insertions and deletions that turn the reference into the hypothesis (the Levenshtein
distance), divided by the number of reference words::

    ref: the cat sat          hyp: the bat sat down
         =   S   =                          I        -> 2 edits / 3 words = 0.667

You will implement:

1. ``edit_distance``: the Levenshtein distance between any two sequences, by dynamic programming.
2. ``word_error_rate``: corpus-level WER over lists of sentences.
3. ``char_error_rate``: corpus-level CER, the same over characters.

"Corpus level" means total edits / total reference words over all sentences, as ``jiwer``
computes it, NOT the average of per-sentence rates.

Grade your work (from the repository root)::

    make grade ONLY=ex03
    .venv/bin/python -m autograder --only ex03     # the same, without make

Write your code only between the ``# YOUR CODE HERE`` lines of each stub.

FORBIDDEN: ``jiwer``, ``editdistance``, ``Levenshtein``, ``rapidfuzz`` (and other
edit-distance libraries); importing ``reference``, ``solutions`` or ``autograder``.
"""
from __future__ import annotations

from typing import Sequence

__all__ = ["edit_distance", "word_error_rate", "char_error_rate"]


def _as_list_of_str(x, name: str) -> list[str]:
    """Given: accept one string as a one-sentence list; check that everything is a string."""
    if isinstance(x, str):
        x = [x]
    x = list(x)
    for i, s in enumerate(x):
        if not isinstance(s, str):
            raise ValueError(f"{name}[{i}] must be a str, got {type(s).__name__}")
    return x


def _check_pair(refs, hyps) -> tuple[list[str], list[str]]:
    """Given: the same number of references and hypotheses, as lists of strings."""
    refs, hyps = _as_list_of_str(refs, "refs"), _as_list_of_str(hyps, "hyps")
    if len(refs) != len(hyps):
        raise ValueError(f"got {len(refs)} references but {len(hyps)} hypotheses")
    return refs, hyps


def edit_distance(ref: Sequence, hyp: Sequence) -> int:
    """Levenshtein distance: the fewest substitutions, insertions and deletions turning ``ref`` into ``hyp``.

    Args:
        ref: a sequence of length ``n`` (a string compares characters; a list of words compares words).
        hyp: a sequence of length ``m``.

    Returns:
        distance: a Python int, ``0 <= distance <= max(n, m)``.

    The dynamic-programming table ``D`` has ``n + 1`` rows and ``m + 1`` columns (row 0 and
    column 0 are the empty prefixes); ``D[n][m]`` is the answer.  Keeping only the previous row
    is enough.

    Lesson 03, section 1 (the recurrence, and the table of one pair filled cell by cell).
    Common mistake: a substitution costed as a deletion plus an insertion (2 instead of 1).
    """
    ref, hyp = list(ref), list(hyp)
    # YOUR CODE HERE
    raise NotImplementedError("ex03: edit_distance")
    return int(distance)


def word_error_rate(refs, hyps) -> float:
    """Corpus-level word error rate.

    Args:
        refs: ``K`` reference sentences (a single ``str`` counts as one sentence).
        hyps: ``K`` hypothesis sentences.

    Returns:
        wer: ``sum_k edit_distance(words(ref_k), words(hyp_k)) / sum_k len(words(ref_k))``,
        where ``words(s) = s.split()``.  It can exceed 1 (many insertions).

    No reference words at all is a ``ValueError`` (the rate is undefined).

    Lesson 03, section 4.  Common mistake: averaging per-sentence WERs weighs a 2-word
    sentence like a 50-word one; the corpus rate divides the totals.
    """
    refs, hyps = _check_pair(refs, hyps)
    # YOUR CODE HERE
    raise NotImplementedError("ex03: word_error_rate")
    return float(wer)


def char_error_rate(refs, hyps) -> float:
    """Corpus-level character error rate.

    Args:
        refs: ``K`` reference sentences (a single ``str`` counts as one sentence).
        hyps: ``K`` hypothesis sentences.

    Returns:
        cer: total character-level edit distance / total reference characters; spaces
        between words are characters like any other, leading and trailing spaces are
        stripped first (as jiwer does).

    No reference characters at all is a ``ValueError``.  Lesson 03, section 4.
    """
    refs, hyps = _check_pair(refs, hyps)
    refs, hyps = [r.strip() for r in refs], [h.strip() for h in hyps]
    # YOUR CODE HERE
    raise NotImplementedError("ex03: char_error_rate")
    return float(cer)
