"""ex10 — CTC prefix beam search with a language model (10 points).

Expected values are the TRUE answer, never what a pruned beam happens to keep: every check's
posteriogram gives each frame a few "significant" symbols and a floor of 1e-30 to the rest, and
:func:`autograder.checks.mistakes.ranked_texts` enumerates every text the significant symbols can spell,
scoring each exactly (``log p_ctc`` over ALL alignments by ``torch.nn.functional.ctc_loss``, plus
``alpha * log p_lm`` and ``beta * words``).  The beam width of each check is at least the number of
such texts, so any correct prefix beam search keeps every one of them: its best texts and their
scores must equal the exact ones.
"""
from __future__ import annotations

import math

import pytest
import torch

from autograder.sandbox import fixtures as FX
from autograder.checks import mistakes as M
from autograder.checks import _inputs as I
from autograder.checks._support import check_float, check_value, describe, fail, fx

pytestmark = pytest.mark.exercise("ex10")
ENC = FX.ToyEncoder()
FLOOR = 1e-30


def _posteriogram(seed, T, symbols, scale=2.0):
    """(T, 29) log-probabilities spread over ``symbols``; every other symbol gets about FLOOR."""
    g = I.gen(seed)
    p = torch.full((T, 29), FLOOR, dtype=torch.float64)
    idx = torch.tensor(symbols)
    p[:, idx] = (scale * torch.randn(T, len(symbols), generator=g, dtype=torch.float64)).softmax(-1)
    return (p / p.sum(1, keepdim=True)).log().float()


def _from_probs(rows):
    """Rows of {symbol: probability}; the other symbols get about FLOOR."""
    lp = torch.full((len(rows), 29), FLOOR, dtype=torch.float64)
    for t, row in enumerate(rows):
        for s, p in row.items():
            lp[t, s] = p
    return (lp / lp.sum(1, keepdim=True)).log().float()


def exact(lp, lm=None, alpha=0.5, beta=1.0, beam_width=None):
    """The exact ranking (best first, ties by text); asserts the beam width keeps every candidate."""
    ranked = M.ranked_texts(lp, ENC, lm, alpha, beta, threshold=FLOOR * 1e6)
    if beam_width is not None:
        assert len(ranked) <= beam_width, f"grader bug: {len(ranked)} candidate texts, beam_width {beam_width}"
    return ranked


def _check_result(got, exp, what, k=3, hints=()):
    """The best ``k`` texts (in order) and their scores must be the exact ones."""
    fn = "prefix_beam_search"
    if not isinstance(got, list):
        fail(f"{fn}({what}): the result is a {type(got).__name__}; expected a list of (text, score) pairs, best "
             "first")
    if not got:
        fail(f"{fn}({what}): the result is empty; expected the best {min(k, len(exp))} of {describe(exp[:k])}")
    for i, item in enumerate(got[:k]):
        if not isinstance(item, (tuple, list)) or len(item) != 2 or not isinstance(item[0], str):
            fail(f"{fn}({what}): item {i} is {describe(item)}; expected a (text, score) pair")
    n = min(k, len(exp))
    got_texts = [t for t, _ in got[:n]]
    exp_texts = [t for t, _ in exp[:n]]
    text_hints = [(lambda c=c: [t for t, _ in c()[:n]], msg) for c, msg in hints]
    check_value(got_texts, exp_texts, fn=fn, what=what, name=f"the best {n} texts", hints=text_hints)
    for i in range(n):
        text = exp[i][0]
        score_hints = [(lambda c=c, text=text: dict(c())[text], msg) for c, msg in hints]
        check_float(got[i][1], exp[i][1], fn=fn, what=what, name=f"the score Q({text!r})", rtol=1e-4, atol=1e-4,
                    hints=score_hints)


def _search(sub, lp, what, beam_width, lm=None, alpha=0.5, beta=1.0, lm_name=None):
    kw = dict(beam_width=beam_width, lm=fx("lm", lm_name) if lm_name else None, alpha=alpha, beta=beta)
    got = sub.call("prefix_beam_search", lp, fx("encoder"), _what=what, _timeout=30, **kw)
    hints = M.hints("prefix_beam_search", lp, ENC, beam_width, lm, alpha, beta)
    return got, hints


#: (seed, T, significant symbols, beta, beam_width): each beam_width holds every candidate text
NO_LM_CASES = [(1, 7, [0, 1, 27], 1.0, 128), (2, 8, [0, 1, 2], 0.0, 128), (3, 6, [0, 3, 27], 2.5, 64),
               (4, 5, [0, 1, 2, 27], 0.5, 256)]


@pytest.mark.points(3)
def test_beam_search_without_lm(sub):
    """no LM: the best texts and their scores Q = log p_ctc (all alignments) + beta * words"""
    for seed, T, symbols, beta, bw in NO_LM_CASES:
        lp = _posteriogram(seed, T, symbols)
        exp = exact(lp, None, 0.5, beta, bw)
        what = f"log_probs ({T}, 29) (seed {seed}, symbols {symbols}), beam_width={bw}, lm=None, beta={beta}"
        got, hints = _search(sub, lp, what, bw, beta=beta)
        _check_result(got, exp, what, hints=hints)


@pytest.mark.points(2)
def test_beam_search_repeats_need_a_blank(sub):
    """a _ a is "aa", a a is "a": repeats merge only without a blank between them"""
    for rows, what in [([{1: 0.9, 0: 0.1}, {0: 0.9, 1: 0.1}, {1: 0.9, 0: 0.1}],
                        "frames 'a', blank, 'a' (each 0.9 likely), lm=None, beta=0"),
                       ([{1: 0.8, 0: 0.2}, {1: 0.8, 0: 0.2}], "frames 'a', 'a' (each 0.8 likely), lm=None, beta=0")]:
        lp = _from_probs(rows)
        exp = exact(lp, None, 0.5, 0.0, 16)
        got, hints = _search(sub, lp, what, 16, beta=0.0)
        _check_result(got, exp, what, k=2, hints=hints)


@pytest.mark.points(1)
def test_beam_search_sums_paths(sub):
    """the probabilities of all alignments of a prefix are summed, not maxed"""
    lp = _from_probs([{1: 0.45, 0: 0.55}, {1: 0.45, 0: 0.55}])
    what = "2 frames, p(a)=0.45 and p(blank)=0.55 each, lm=None, beta=0"
    exp = exact(lp, None, 0.5, 0.0, 8)
    got, hints = _search(sub, lp, what, 8, beta=0.0)
    _check_result(got, exp, what, k=2, hints=hints)


def _spelling():
    """'the ca[b|t]': acoustics and the LM disagree (a wide beam is needed: ' cat' is third at alpha=1.5)."""
    spell = [("t", .8), ("h", .8), ("e", .8), (" ", .8), ("c", .8), ("a", .8), ("b", .5), ("t", .45)]
    rows = []
    for ch, p in spell:
        sid = ENC.encode(ch)[0]
        row = {sid: p, 0: (1 - p) / 2}
        if ch == "t" and p < .5:
            row[ENC.encode("b")[0]] = 0.05
        rows.append(row)
    return _from_probs(rows)


@pytest.mark.points(3)
def test_beam_search_with_lm(sub):
    """with an LM: Q = log p_ctc + alpha log p_lm (every word and the end of the sentence) + beta words"""
    lp = _spelling()
    lm = FX.make_lm("small")
    bw = 256
    for alpha, beta in [(0.5, 1.0), (1.5, 0.5)]:
        exp = exact(lp, lm, alpha, beta, bw)
        what = (f"log_probs spelling 'the ca[b|t]', the course's toy bigram LM, alpha={alpha}, beta={beta}, "
                f"beam_width={bw}")
        got, hints = _search(sub, lp, what, bw, lm, alpha, beta, lm_name="small")
        _check_result(got, exp, what, k=4, hints=hints)


@pytest.mark.hidden
@pytest.mark.points(1)
def test_beam_search_beam_width(sub):
    """at most beam_width results, best first, no score above the text's exact Q; a wide beam finds the best"""
    # The edge case pays only with evidence that the search works: first a beam wide enough for every
    # candidate must give the exact best texts (a fixed candidate or an empty search earns nothing).
    wide = _posteriogram(11, 6, [0, 2, 3, 27])
    what = "log_probs (6, 29) (seed 11, symbols [0, 2, 3, 27]), beam_width=512, lm=None, beta=1.0"
    got, hints = _search(sub, wide, what, 512)
    _check_result(got, exact(wide, None, 0.5, 1.0, 512), what, k=2, hints=hints)
    lp = _posteriogram(9, 7, [0, 1, 2, 3, 4, 27])
    for bw in (1, 3):
        what = f"log_probs (7, 29), beam_width={bw}"
        got = sub.call("prefix_beam_search", lp, fx("encoder"), beam_width=bw, _what=what)
        if not isinstance(got, list) or not 1 <= len(got) <= bw:
            fail(f"prefix_beam_search({what}): expected a list of 1 to {bw} (text, score) pairs, got {describe(got)}")
        scores = [s for _, s in got] if all(isinstance(x, (tuple, list)) and len(x) == 2 for x in got) else None
        if scores is None or any(not isinstance(s, (int, float)) or isinstance(s, bool) for s in scores):
            fail(f"prefix_beam_search({what}): expected (text, float score) pairs, got {describe(got)}")
        if any(not isinstance(t, str) for t, _ in got):
            fail(f"prefix_beam_search({what}): expected (text, float score) pairs, got {describe(got)}")
        if scores != sorted(scores, reverse=True):
            fail(f"prefix_beam_search({what}): results must be sorted best first, got scores {scores}")
        if any(s > e + 1e-4 for (t, s) in got for e in [_upper(lp, t, 1.0)] if e is not None):
            fail(f"prefix_beam_search({what}): a score is above the text's exact Q; got {describe(got)}")


def _upper(lp, text, beta):
    """The exact Q of ``text`` (a pruned beam can only score it lower), or None for an unknown text."""
    try:
        ids = ENC.encode(text)
    except ValueError:
        return None
    del ids
    return M.exact_log_p_ctc(lp, ENC, text) + beta * len(text.split())
