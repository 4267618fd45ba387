"""ex02 — CTC collapse and greedy decoding (8 points)."""
from __future__ import annotations

import pytest
import torch

from autograder.checks import mistakes as M
from autograder.sandbox.fixtures import ToyEncoder
from autograder.checks import _inputs as I
from autograder.checks._inputs import R
from autograder.checks._support import check_value, fx

pytestmark = pytest.mark.exercise("ex02")
ENC = ToyEncoder()


def _collapse_hints(ids, blank=0):
    return M.hints("ctc_collapse", ids, blank)


@pytest.mark.points(2)
def test_ctc_collapse_examples(sub):
    """ctc_collapse: the lesson's examples and edge cases"""
    for ids in ([1, 1, 0, 1, 2, 2], [1, 0, 1], [0, 0, 0], [], [5], [3, 3, 3], [8, 8, 0, 5, 5, 5, 0, 12, 12, 0, 12]):
        what = f"ids={ids}"
        check_value(sub.call("ctc_collapse", ids, _what=what), R.ctc_collapse(ids), fn="ctc_collapse", what=what,
                    hints=_collapse_hints(ids))


@pytest.mark.hidden
@pytest.mark.points(2)
def test_ctc_collapse_random_and_blank_argument(sub):
    """ctc_collapse: random paths, a tensor input and a non-zero blank"""
    cases = []
    for seed in range(4):
        cases.append((I.paths(100 + seed, 25, 1)[:, 0].tolist(), 0))
    cases.append((I.paths(7, 12, 1, symbols=(28, 3, 4))[:, 0].tolist(), 28))
    for ids, blank in cases:
        check_value(sub.call("ctc_collapse", ids, blank=blank, _what=f"ids={ids}, blank={blank}"),
                    R.ctc_collapse(ids, blank=blank), fn="ctc_collapse", what=f"ids={ids}, blank={blank}",
                    hints=_collapse_hints(ids, blank))
    t = torch.tensor([3, 3, 0, 3, 4, 0, 0, 4])
    check_value(sub.call("ctc_collapse", t, _what="ids=tensor([3, 3, 0, 3, 4, 0, 0, 4])"), R.ctc_collapse(t),
                fn="ctc_collapse", what="ids=tensor([3, 3, 0, 3, 4, 0, 0, 4])", hints=_collapse_hints(t))


def _greedy_hints(lp, lengths):
    return M.hints("greedy_decode", lp, ENC, lengths)


@pytest.mark.points(2)
def test_greedy_decode_full_length(sub):
    """greedy_decode: a batch without lengths"""
    for seed, (T, B) in enumerate([(20, 3), (1, 2), (40, 1)]):
        lp = I.peaked_log_probs(I.paths(200 + seed, T, B), 300 + seed)
        what = f"log_probs of shape {tuple(lp.shape)}, seed {200 + seed}"
        check_value(sub.call("greedy_decode", lp, fx("encoder"), _what=what), R.greedy_decode(lp, ENC),
                    fn="greedy_decode", what=what, hints=_greedy_hints(lp, None))


@pytest.mark.points(2)
def test_greedy_decode_with_lengths(sub):
    """greedy_decode: padded batch items are decoded up to their own lengths"""
    for seed, lens in enumerate([[30, 12, 5, 30], [7, 1]]):
        T, B = max(lens), len(lens)
        lp = I.peaked_log_probs(I.paths(400 + seed, T, B, symbols=(0, 1, 3, 27)), 500 + seed)
        lengths = torch.tensor(lens)
        what = f"log_probs of shape {tuple(lp.shape)}, lengths={lens}"
        check_value(sub.call("greedy_decode", lp, fx("encoder"), lengths, _what=what),
                    R.greedy_decode(lp, ENC, lengths), fn="greedy_decode", what=what, hints=_greedy_hints(lp, lengths))
