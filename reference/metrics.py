"""Word and character error rates (DS2 section 6 reports WER; CER for Mandarin).

``WER = (substitutions + deletions + insertions) / reference words``, summed over the
whole test set before dividing (corpus level, as jiwer computes it): long utterances
weigh more than short ones, and one empty hypothesis cannot dominate.
"""
from __future__ import annotations

from typing import Sequence

__all__ = ["edit_distance", "edit_operations", "word_error_rate", "char_error_rate"]


def edit_distance(ref: Sequence, hyp: Sequence) -> int:
    """Levenshtein distance: fewest substitutions, deletions and insertions turning ``ref`` into ``hyp``.

    Works on any sequences (strings compare characters, lists compare elements), in
    ``O(len(ref) * len(hyp))`` time and ``O(len(hyp))`` memory.
    """
    prev = list(range(len(hyp) + 1))           # distance from ref[:0] to hyp[:j]
    for i, r in enumerate(ref, start=1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, start=1):
            cur[j] = min(prev[j] + 1,          # delete r
                         cur[j - 1] + 1,       # insert h
                         prev[j - 1] + (r != h))  # substitute (free if equal)
        prev = cur
    return prev[-1]


def edit_operations(ref: Sequence, hyp: Sequence) -> dict[str, int]:
    """Counts of ``substitutions``, ``deletions``, ``insertions`` and ``hits`` on one best alignment."""
    n, m = len(ref), len(hyp)
    d = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n + 1):
        d[i][0] = i
    for j in range(m + 1):
        d[0][j] = j
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (ref[i - 1] != hyp[j - 1]))
    ops = {"substitutions": 0, "deletions": 0, "insertions": 0, "hits": 0}
    i, j = n, m
    while i or j:  # walk back along one optimal path
        if i and j and d[i][j] == d[i - 1][j - 1] + (ref[i - 1] != hyp[j - 1]):
            ops["hits" if ref[i - 1] == hyp[j - 1] else "substitutions"] += 1
            i, j = i - 1, j - 1
        elif i and d[i][j] == d[i - 1][j] + 1:
            ops["deletions"] += 1
            i -= 1
        else:
            ops["insertions"] += 1
            j -= 1
    return ops


def _as_lists(refs, hyps) -> tuple[list[str], list[str]]:
    refs = [refs] if isinstance(refs, str) else list(refs)
    hyps = [hyps] if isinstance(hyps, str) else list(hyps)
    if len(refs) != len(hyps):
        raise ValueError(f"got {len(refs)} references but {len(hyps)} hypotheses: expected one hypothesis per reference")
    for name, xs in (("reference", refs), ("hypothesis", hyps)):
        for i, x in enumerate(xs):
            if not isinstance(x, str):
                raise ValueError(f"{name} {i} must be a str, got {type(x).__name__}")
    return refs, hyps


def word_errors(refs, hyps) -> list[tuple[int, int]]:
    """Per utterance, (word edit distance, reference words): the two counts that corpus WER sums.

    A bootstrap over utterances (benchmarks/_common.wer_interval) resamples these pairs.
    """
    refs, hyps = _as_lists(refs, hyps)
    return [(edit_distance(r.split(), h.split()), len(r.split())) for r, h in zip(refs, hyps)]


def word_error_rate(refs, hyps) -> float:
    """Corpus-level WER: total word edit distance / total reference words."""
    counts = word_errors(refs, hyps)
    total = sum(words for _, words in counts)
    if total == 0:
        raise ValueError("the references contain no words: WER is undefined")
    return sum(errors for errors, _ in counts) / total


def char_error_rate(refs, hyps) -> float:
    """Corpus-level CER: total character edit distance / total reference characters.

    Spaces between words count as characters; leading and trailing spaces are stripped
    first, as jiwer does.
    """
    refs, hyps = _as_lists(refs, hyps)
    refs, hyps = [r.strip() for r in refs], [h.strip() for h in hyps]
    total = sum(len(r) for r in refs)
    if total == 0:
        raise ValueError("the references contain no characters: CER is undefined")
    return sum(edit_distance(r, h) for r, h in zip(refs, hyps)) / total
