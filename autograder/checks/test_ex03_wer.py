"""ex03 — word error rate (8 points)."""
from __future__ import annotations

import pytest

import torch

from autograder.checks import mistakes as M
from autograder.checks import _inputs as I
from autograder.checks._inputs import R
from autograder.checks._support import check_float, check_raises, check_value

pytestmark = pytest.mark.exercise("ex03")


def _ed_hints(r, h):
    return M.hints("edit_distance", r, h)


@pytest.mark.points(3)
def test_edit_distance(sub):
    """edit_distance: strings, word lists, empty sequences, random cases"""
    cases = [("kitten", "sitting"), ("", "abc"), ("abc", ""), ("", ""), ("flaw", "lawn"), ("abc", "abc"),
             (["the", "cat", "sat"], ["the", "cat", "sat", "down"]), (["a", "b", "c"], ["c", "b", "a"]),
             ("intention", "execution")]
    g = I.gen(31)
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
    return M.hints("word_error_rate", refs, hyps)


@pytest.mark.points(2)
def test_word_error_rate(sub):
    """word_error_rate: corpus level over utterances of different lengths"""
    cases = [(REFS, HYPS), (["a b c d e f g h"], ["a b x d e f g h"]), (["one two", "three four five six seven"],
                                                                       ["one", "three four five six seven"]),
             (["same words here"], ["same words here"]), (["a  b   c"], [" a b c "]),
             (["one two three four", "five"], ["one two three four", "six seven"])]
    for refs, hyps in cases:
        what = f"refs={refs}, hyps={hyps}"
        check_float(sub.call("word_error_rate", refs, hyps, _what=what), R.word_error_rate(refs, hyps),
                    fn="word_error_rate", what=what, hints=_wer_hints(refs, hyps))


def _cer_hints(refs, hyps):
    return M.hints("char_error_rate", refs, hyps)


@pytest.mark.points(2)
def test_char_error_rate(sub):
    """char_error_rate: corpus level, spaces count"""
    for refs, hyps in [(REFS, HYPS), (["abc", "de fgh ij"], ["abd", "defgh ij"]), (["x"], ["xyz"]),
                       ([" ab c ", "defg"], ["ab c", "dxfgh"])]:
        what = f"refs={refs}, hyps={hyps}"
        check_float(sub.call("char_error_rate", refs, hyps, _what=what), R.char_error_rate(refs, hyps),
                    fn="char_error_rate", what=what, hints=_cer_hints(refs, hyps))


@pytest.mark.hidden
@pytest.mark.points(1)
def test_no_reference_words_is_a_value_error(sub):
    """word_error_rate / char_error_rate: references without words (or characters) are a ValueError"""
    # The edge case pays only with evidence that the functions work: the same check first asks for
    # ordinary values (a function that always raises ValueError earns nothing here).
    for fn, refs, hyps in [("word_error_rate", ["one two three", "four"], ["one too three", ""]),
                           ("char_error_rate", ["abc", " d"], ["abd", "d"])]:
        what = f"refs={refs}, hyps={hyps}"
        check_float(sub.call(fn, refs, hyps, _what=what), getattr(R, fn)(refs, hyps), fn=fn, what=what)
    for fn, refs, hyps in [("word_error_rate", ["", "  "], ["a", ""]), ("word_error_rate", [], []),
                           ("char_error_rate", ["", " "], ["ab", ""])]:
        check_raises(sub, fn, refs, hyps, _what=f"refs={refs}, hyps={hyps}")
