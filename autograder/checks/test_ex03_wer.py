"""ex03 — word error rate (8 points)."""
from __future__ import annotations

import pytest

from autograder.checks import _inputs as I
from autograder.checks._inputs import R
from autograder.checks._support import check_float, check_value

pytestmark = pytest.mark.exercise("ex03")


def _lcs(a, b):
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, 1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[-1]))
        prev = cur
    return prev[-1]


def _ed_hints(r, h):
    return [
        (lambda: len(r) + len(h) - 2 * _lcs(r, h), "a substitution costs 1, not a deletion plus an insertion (2)"),
        (lambda: max(len(r), len(h)) - R.edit_distance(r, h), "return the distance, not a similarity"),
        (lambda: _lcs(r, h), "you computed the longest common subsequence, not the edit distance"),
        (lambda: sum(a != b for a, b in zip(r, h)) + abs(len(r) - len(h)),
         "you compared position by position (Hamming); insertions and deletions shift the alignment"),
    ]


@pytest.mark.points(3)
def test_edit_distance(sub):
    """edit_distance: strings, word lists, empty sequences, random cases"""
    cases = [("kitten", "sitting"), ("", "abc"), ("abc", ""), ("", ""), ("flaw", "lawn"), ("abc", "abc"),
             (["the", "cat", "sat"], ["the", "cat", "sat", "down"]), (["a", "b", "c"], ["c", "b", "a"]),
             ("intention", "execution")]
    g = I.gen(31)
    import torch
    for k in range(6):
        n = int(torch.randint(0, 12, (1,), generator=g))
        m = int(torch.randint(0, 12, (1,), generator=g))
        a = "".join("abcd"[int(i)] for i in torch.randint(0, 4, (n,), generator=g))
        b = "".join("abcd"[int(i)] for i in torch.randint(0, 4, (m,), generator=g))
        cases.append((a, b))
    for r, h in cases:
        what = f"{r!r}, {h!r}"
        check_value(sub.call("edit_distance", r, h, _what=what), R.edit_distance(r, h), fn="edit_distance",
                    what=what, hints=_ed_hints(r, h))


REFS = ["the cat sat on the mat", "a dog", "deep speech two", "hello"]
HYPS = ["the cat sat on mat", "a dog ran", "deep peach too", ""]


def _wer_hints(refs, hyps):
    def per_utt():
        return sum(R.edit_distance(r.split(), h.split()) / len(r.split()) for r, h in zip(refs, hyps)) / len(refs)

    def by_hyp():
        return sum(R.edit_distance(r.split(), h.split()) for r, h in zip(refs, hyps)) / max(1, sum(len(h.split()) for h in hyps))

    return [
        (per_utt, "you averaged the WER of each utterance: the corpus WER is the total edit distance divided by "
                  "the total number of reference words"),
        (by_hyp, "divide by the number of REFERENCE words, not hypothesis words"),
        (lambda: R.char_error_rate(refs, hyps), "WER counts words: split the strings into words first"),
        (lambda: float(sum(R.edit_distance(r.split(), h.split()) for r, h in zip(refs, hyps))),
         "divide the total edit distance by the total number of reference words"),
    ]


@pytest.mark.points(3)
def test_word_error_rate(sub):
    """word_error_rate: corpus level over utterances of different lengths"""
    cases = [(REFS, HYPS), (["a b c d e f g h"], ["a b x d e f g h"]), (["one two", "three four five six seven"],
                                                                       ["one", "three four five six seven"]),
             (["same words here"], ["same words here"]), (["a  b   c"], [" a b c "])]
    for refs, hyps in cases:
        what = f"refs={refs}, hyps={hyps}"
        check_float(sub.call("word_error_rate", refs, hyps, _what=what), R.word_error_rate(refs, hyps),
                    fn="word_error_rate", what=what, hints=_wer_hints(refs, hyps))


def _cer_hints(refs, hyps):
    def per_utt():
        return sum(R.edit_distance(r, h) / len(r) for r, h in zip(refs, hyps)) / len(refs)

    def no_spaces():
        return sum(R.edit_distance(r.replace(" ", ""), h.replace(" ", "")) for r, h in zip(refs, hyps)) / sum(
            len(r.replace(" ", "")) for r in refs)

    return [
        (per_utt, "you averaged the CER of each utterance: the corpus CER is the total edit distance divided by "
                  "the total number of reference characters"),
        (no_spaces, "spaces are characters too: do not remove them"),
        (lambda: R.word_error_rate(refs, hyps), "CER compares characters, not words"),
    ]


@pytest.mark.points(2)
def test_char_error_rate(sub):
    """char_error_rate: corpus level, spaces count"""
    for refs, hyps in [(REFS, HYPS), (["abc", "de fgh ij"], ["abd", "defgh ij"]), (["x"], ["xyz"])]:
        what = f"refs={refs}, hyps={hyps}"
        check_float(sub.call("char_error_rate", refs, hyps, _what=what), R.char_error_rate(refs, hyps),
                    fn="char_error_rate", what=what, hints=_cer_hints(refs, hyps))
