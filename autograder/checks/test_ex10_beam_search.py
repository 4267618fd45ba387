"""ex10 — CTC prefix beam search with a language model (10 points)."""
from __future__ import annotations

import math

import pytest
import torch

from autograder import fixtures as FX
from autograder.checks import _inputs as I
from autograder.checks._inputs import R
from autograder.checks._support import check_float, check_value, describe, fail, fx

pytestmark = pytest.mark.exercise("ex10")
ENC = FX.ToyEncoder()


def _posteriogram(seed, T, symbols, scale=2.0):
    """(T, 29) log-probabilities concentrated on ``symbols`` (others around e^-9)."""
    g = I.gen(seed)
    logits = torch.full((T, 29), -9.0, dtype=torch.float64) + 0.1 * torch.randn(T, 29, generator=g, dtype=torch.float64)
    idx = torch.tensor(symbols)
    logits[:, idx] = scale * torch.randn(T, len(symbols), generator=g, dtype=torch.float64)
    return logits.log_softmax(-1).float()


def _from_probs(rows):
    """Rows of {symbol: probability}; the rest of the mass spread thinly."""
    lp = torch.full((len(rows), 29), 1e-12, dtype=torch.float64)
    for t, row in enumerate(rows):
        for s, p in row.items():
            lp[t, s] = p
    return (lp / lp.sum(1, keepdim=True)).log().float()


def _check_result(got, exp, what, k=3, hints=(), score_hints=None):
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
    check_value(got_texts, exp_texts, fn=fn, what=what, name=f"the best {n} texts", hints=hints)
    for i in range(n):
        check_float(got[i][1], exp[i][1], fn=fn, what=what, name=f"the score of {exp[i][0]!r}", rtol=1e-4,
                    atol=1e-4, hints=(score_hints(exp[i][0]) if score_hints else ()))


def _ref(lp, beam_width=16, lm=None, alpha=0.5, beta=1.0):
    return R.prefix_beam_search(lp, ENC, beam_width=beam_width, lm=lm, alpha=alpha, beta=beta, char_cutoff=None)


def _log_p_ctc(lp, text):
    if not text:
        return float(lp[:, 0].double().sum())
    ids = torch.tensor([ENC.encode(text)])
    return -float(R.ctc_loss(lp.double().unsqueeze(1), ids, torch.tensor([lp.shape[0]]), torch.tensor([ids.shape[1]]),
                             reduction="sum"))


@pytest.mark.points(3)
def test_beam_search_without_lm(sub):
    """no LM: the best transcriptions and their scores log p_ctc + beta * words"""
    for seed, T, beta in [(1, 6, 1.0), (2, 8, 0.0), (3, 5, 2.5)]:
        lp = _posteriogram(seed, T, [0, 1, 2, 3, 27])
        what = f"log_probs ({T}, 29) (seed {seed}), beam_width=32, lm=None, beta={beta}"
        got = sub.call("prefix_beam_search", lp, fx("encoder"), beam_width=32, lm=None, beta=beta, _what=what)
        exp = _ref(lp, 32, None, 0.5, beta)

        def score_hints(text, lp=lp, beta=beta):
            wc = len(text.split())
            return [(_log_p_ctc(lp, text), "add beta * word_count(text) to the score"),
                    (_log_p_ctc(lp, text) + beta * len(text), "beta rewards WORDS (text.split()), not characters")]

        _check_result(got, exp, what, score_hints=score_hints)


@pytest.mark.points(2)
def test_beam_search_repeats_need_a_blank(sub):
    """a _ a is "aa", a a is "a": repeats merge only without a blank between them"""
    lp = _from_probs([{1: 0.9, 0: 0.1}, {0: 0.9, 1: 0.1}, {1: 0.9, 0: 0.1}])
    what = "frames 'a', blank, 'a' (each 0.9 likely), lm=None, beta=0"
    got = sub.call("prefix_beam_search", lp, fx("encoder"), beam_width=8, lm=None, beta=0.0, _what=what)
    exp = _ref(lp, 8, None, 0.5, 0.0)
    if isinstance(got, list) and got and isinstance(got[0], tuple) and got[0][0] == "a":
        fail(f"prefix_beam_search({what}): your best text is 'a', expected 'aa'. Hint: you merged repeats across a "
             "blank: 'a _ a' is 'aa'; only 'a a' (no blank between) collapses to 'a'")
    _check_result(got, exp, what, k=2)
    lp2 = _from_probs([{1: 0.8, 0: 0.2}, {1: 0.8, 0: 0.2}])
    what = "frames 'a', 'a' (each 0.8 likely), lm=None, beta=0"
    got = sub.call("prefix_beam_search", lp2, fx("encoder"), beam_width=8, lm=None, beta=0.0, _what=what)
    exp = _ref(lp2, 8, None, 0.5, 0.0)
    if isinstance(got, list) and got and isinstance(got[0], tuple) and got[0][0] == "aa":
        fail(f"prefix_beam_search({what}): your best text is 'aa', expected 'a'. Hint: 'a a' without a blank in "
             "between collapses to 'a'")
    _check_result(got, exp, what, k=2)


@pytest.mark.points(1)
def test_beam_search_sums_paths(sub):
    """the probabilities of all alignments of a prefix are summed, not maxed"""
    lp = _from_probs([{1: 0.45, 0: 0.55}, {1: 0.45, 0: 0.55}])
    what = "2 frames, p(a)=0.45 and p(blank)=0.55 each, lm=None, beta=0"
    got = sub.call("prefix_beam_search", lp, fx("encoder"), beam_width=8, lm=None, beta=0.0, _what=what)
    exp = _ref(lp, 8, None, 0.5, 0.0)
    _check_result(got, exp, what, k=2,
                  hints=[(["", "a"], "you kept the best alignment of each prefix (max); CTC SUMS all alignments: "
                                     "p('a') = 0.45*0.45 + 2*0.45*0.55 > p('') = 0.55^2")],
                  score_hints=lambda text: [(math.log(0.45 * 0.55), "max instead of sum over alignments")])


@pytest.mark.points(3)
def test_beam_search_with_lm(sub):
    """with an LM: Q = log p_ctc + alpha log p_lm (words and end of sentence) + beta words"""
    # "the cat" / "the cab" / "a cat": acoustics and LM disagree
    spell = [("t", .8), ("h", .8), ("e", .8), (" ", .8), ("c", .8), ("a", .8), ("b", .5), ("t", .45)]
    rows = []
    for ch, p in spell:
        sid = ENC.encode(ch)[0]
        row = {sid: p, 0: (1 - p) / 2}
        if ch == "t" and p < .5:
            row[ENC.encode("b")[0]] = 0.05
        rows.append(row)
    lp = _from_probs(rows)
    lm = FX.make_lm("small")
    for alpha, beta in [(0.5, 1.0), (1.5, 0.5)]:
        what = f"log_probs spelling 'the ca[b|t]', the course's toy bigram LM, alpha={alpha}, beta={beta}"
        got = sub.call("prefix_beam_search", lp, fx("encoder"), beam_width=24, lm=fx("lm", "small"), alpha=alpha,
                       beta=beta, _what=what, _timeout=30)
        exp = _ref(lp, 24, lm, alpha, beta)

        def score_hints(text, alpha=alpha, beta=beta):
            words = text.split()
            full = next(s for t, s in exp if t == text)
            end = alpha * lm.end_score(tuple(words))
            last = alpha * lm.score(tuple(words[:-1]), words[-1]) + beta if words else 0.0
            return [(full - end, "add alpha * lm.end_score(words) at the end (the end of the sentence counts)"),
                    (full - last, "score the last word too when the search ends (it has no space after it)"),
                    (full - beta * len(words), "add beta for every word")]

        _check_result(got, exp, what, k=3, score_hints=score_hints)


@pytest.mark.points(1)
def test_beam_search_beam_width(sub):
    """at most beam_width results, best first"""
    lp = _posteriogram(9, 7, [0, 1, 2, 3, 4, 27])
    for bw in (1, 3):
        what = f"log_probs (7, 29), beam_width={bw}"
        got = sub.call("prefix_beam_search", lp, fx("encoder"), beam_width=bw, _what=what)
        if not isinstance(got, list) or not 1 <= len(got) <= bw:
            fail(f"prefix_beam_search({what}): expected a list of 1 to {bw} (text, score) pairs, got {describe(got)}")
        scores = [s for _, s in got] if all(isinstance(x, (tuple, list)) and len(x) == 2 for x in got) else None
        if scores is None or any(not isinstance(s, (int, float)) for s in scores):
            fail(f"prefix_beam_search({what}): expected (text, float score) pairs, got {describe(got)}")
        if scores != sorted(scores, reverse=True):
            fail(f"prefix_beam_search({what}): results must be sorted best first, got scores {scores}")
