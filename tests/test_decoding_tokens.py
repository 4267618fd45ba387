"""Prefix beam search over bigram tokens (DS2 section 3.6) against brute force over all CTC alignments.

The oracle enumerates every frame-level alignment over TOKENS, collapses it (merge repeated tokens,
drop blanks), joins the token texts, and sums the alignment probabilities per text; then it adds the
word-level LM and bonus terms of ``Q(y) = log p_ctc(y|x) + alpha log p_lm(y) + beta word_count(y)``.
Several token sequences spell one text ("ab" is ``ab`` or ``a b``), and all of them count.  With no
pruning the three searches must return exactly that ranked list.
"""
from __future__ import annotations

import itertools
import math
from collections import defaultdict

import numpy as np
import pytest
import torch

from reference.decoding import prefix_beam_search, prefix_beam_search_fast, prefix_beam_search_tokens
from reference.lm import LanguageModel, NGramLM
from reference.text import ALPHABETS, BigramEncoder, CharEncoder

EVERYTHING = 10**7


@pytest.fixture
def tiny(monkeypatch):
    """A BigramEncoder over the alphabet "ab ": blank, a, b, space, aa, ab, ba, bb (8 tokens)."""
    monkeypatch.setitem(ALPHABETS, "tiny", "ab ")
    enc = BigramEncoder("tiny")
    assert enc.symbols == ["_", "a", "b", " ", "aa", "ab", "ba", "bb"]
    return enc


def brute_force_q(log_probs: torch.Tensor, enc, lm=None, alpha=0.5, beta=1.0) -> dict[str, float]:
    """Q(text) for every text of non-zero probability, from the definition (tokens that are -inf
    at every frame are left out of the enumeration)."""
    lp = log_probs.double().numpy()
    T = lp.shape[0]
    tokens = np.flatnonzero(np.isfinite(lp).any(axis=0)).tolist()
    per_text: dict[str, list[float]] = defaultdict(list)
    for path in itertools.product(tokens, repeat=T):
        logp = float(sum(lp[t, c] for t, c in enumerate(path)))
        if logp == -math.inf:
            continue
        collapsed = [c for i, c in enumerate(path) if c != enc.blank_idx and (i == 0 or c != path[i - 1])]
        per_text["".join(enc.symbols[c] for c in collapsed)].append(logp)
    out = {}
    for text, logps in per_text.items():
        words = text.split()
        lm_term = alpha * lm.sentence_logprob(words) if lm is not None else 0.0
        out[text] = float(np.logaddexp.reduce(logps)) + lm_term + beta * len(words)
    return out


def assert_matches(results, expected, tol=1e-9):
    assert [s for _, s in results] == sorted((s for _, s in results), reverse=True), "not sorted best first"
    got = dict(results)
    assert len(got) == len(results), "duplicate texts: prefixes with other last tokens were not merged at the end"
    assert set(got) == set(expected), sorted(set(got) ^ set(expected))[:5]
    for text, s in expected.items():
        assert abs(got[text] - s) < tol, (text, got[text], s)


def random_log_probs(T, V, seed, columns=None, scale=1.5):
    g = torch.Generator().manual_seed(seed)
    logits = torch.full((T, V), -math.inf, dtype=torch.float64)
    cols = list(range(V)) if columns is None else list(columns)
    logits[:, cols] = torch.randn(T, len(cols), generator=g, dtype=torch.float64) * scale
    return logits.log_softmax(-1)


class HistoryLM(LanguageModel):
    """A toy LM whose scores depend on the whole history (a wrong history or a word scored twice shows)."""

    order = 99

    def score(self, history, word):
        history = tuple(history)
        return -1.0 - 0.4 * len(word) - 0.3 * len(history) + (0.9 if history and history[-1] == word else 0.0) \
            + (1.3 if word == "ab" else 0.0)

    def end_score(self, history):
        return -0.7 - 0.2 * len(tuple(history))


def searches(lp, enc, lm=None, alpha=0.5, beta=1.0):
    """The three searches with every pruning off."""
    return {
        "readable": prefix_beam_search(lp, enc, EVERYTHING, lm, alpha, beta, char_cutoff=None),
        "fast": prefix_beam_search_fast(lp, enc, EVERYTHING, lm, alpha, beta, token_min_logp=None, beam_prune_logp=None),
        "tokens": prefix_beam_search_tokens(lp, enc, EVERYTHING, lm, alpha, beta, token_min_logp=None),
    }


# --------------------------------------------------------------------------- exactness
def test_hand_computed_case_where_merging_by_text_alone_is_wrong(tiny):
    """Frame 1: a or ab (1/2 each); frame 2: b or blank (1/2 each).  Alignments: a b -> "ab", a _ -> "a",
    ab b -> "abb" (b is a new token after ab), ab _ -> "ab".  A search keyed by text (or by the last
    character) would treat the b after "ab" as a repeat and give "ab" 3/4."""
    a, b, ab = 1, 2, 5
    lp = torch.full((2, tiny.vocab_size), -math.inf, dtype=torch.float64)
    lp[0, a] = lp[0, ab] = lp[1, b] = lp[1, 0] = math.log(0.5)
    for name, res in searches(lp, tiny, beta=0.0).items():
        got = {t: math.exp(s) for t, s in res}
        assert got == pytest.approx({"ab": 0.5, "a": 0.25, "abb": 0.25}, abs=1e-12), name


@pytest.mark.parametrize("T", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_brute_force_without_lm(tiny, T, seed):
    lp = random_log_probs(T, tiny.vocab_size, seed)
    expected = brute_force_q(lp, tiny, beta=0.7)
    for name, res in searches(lp, tiny, beta=0.7).items():
        assert_matches(res, expected), name


@pytest.mark.parametrize("T", [2, 3, 4, 5])
@pytest.mark.parametrize("lm_name", ["kn", "history"])
def test_matches_brute_force_with_lm(tiny, T, lm_name):
    lm = NGramLM.train(["ab ba", "ba ba ab", "a b", "b ab a", "ba bb"], order=2) if lm_name == "kn" else HistoryLM()
    lp = random_log_probs(T, tiny.vocab_size, 10 + T)
    expected = brute_force_q(lp, tiny, lm, alpha=0.8, beta=1.5)
    for name, res in searches(lp, tiny, lm, alpha=0.8, beta=1.5).items():
        assert_matches(res, expected), name


def test_matches_brute_force_on_the_english_bigram_vocabulary():
    enc = BigramEncoder()
    cols = [0, *enc.encode("t"), *enc.encode("h"), *enc.encode("th"), *enc.encode("e"), enc.space_idx, *enc.encode("he")]
    lm = NGramLM.train(["the he", "he the", "t he"], order=2)
    for T in (3, 4):
        lp = random_log_probs(T, enc.vocab_size, T, columns=cols)
        expected = brute_force_q(lp, enc, lm, alpha=0.6, beta=0.5)
        for name, res in searches(lp, enc, lm, alpha=0.6, beta=0.5).items():
            assert_matches(res, expected), name


# --------------------------------------------------------------------------- the char search is untouched
def test_token_search_on_chars_returns_what_the_char_search_returns():
    enc = CharEncoder()
    lm = NGramLM.train(["ab ba", "ba ba ab", "a b"], order=2)
    for seed in range(3):
        lp = random_log_probs(8, enc.vocab_size, seed, scale=3.0)
        for beam in (4, 16):
            expected = prefix_beam_search(lp, enc, beam, lm, 0.7, 1.2)
            assert prefix_beam_search_tokens(lp, enc, beam, lm, 0.7, 1.2) == expected
            assert prefix_beam_search_fast(lp, enc, beam, lm, 0.7, 1.2, -20.0, None) == expected


# --------------------------------------------------------------------------- pruned search on a peaky input
def canonical_peaky(enc, text, blank_every=2, seed=0):
    """Log-probs peaked on an alignment of ``text``'s canonical tokens (a blank after every token)."""
    ids = enc.encode(text)
    path = [c for i in ids for c in (i, 0)]
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(len(path), enc.vocab_size, generator=g, dtype=torch.float64)
    logits[torch.arange(len(path)), torch.tensor(path)] += 12.0
    return logits.log_softmax(-1)


def test_pruned_searches_find_the_sentence_on_peaky_bigram_posteriors():
    enc = BigramEncoder()
    lm = NGramLM.train(["the cat sat", "a cat sat on the mat", "the mat"], order=3)
    lp = canonical_peaky(enc, "the cat sat on the mat")
    for fn in (prefix_beam_search, prefix_beam_search_fast, prefix_beam_search_tokens):
        assert fn(lp, enc, 16, lm, 0.5, 1.0)[0][0] == "the cat sat on the mat", fn.__name__
        assert fn(lp, enc, 16)[0][0] == "the cat sat on the mat", fn.__name__


def test_wider_beam_never_lowers_the_best_score_below_the_exact_one(tiny):
    lp = random_log_probs(5, tiny.vocab_size, 7, scale=2.0)
    best = max(brute_force_q(lp, tiny, beta=1.0).values())
    for beam in (1, 2, 4, 8):
        top = prefix_beam_search(lp, tiny, beam, char_cutoff=None)[0][1]
        assert top <= best + 1e-9, "a pruned search only ever loses probability mass"
    assert prefix_beam_search(lp, tiny, EVERYTHING, char_cutoff=None)[0][1] == pytest.approx(best, abs=1e-9)


def test_bad_arguments():
    enc = BigramEncoder()
    with pytest.raises(ValueError, match=r"vocab_size=758: expected shape \(T, 758\)"):
        prefix_beam_search(torch.zeros(3, 29).log_softmax(-1), enc)
    with pytest.raises(ValueError, match="beam_prune_logp must be a number <= 0"):
        prefix_beam_search_tokens(torch.zeros(3, 758).log_softmax(-1), enc, beam_prune_logp=1.0)
    with pytest.raises(ValueError, match="token_min_logp must be a number"):
        prefix_beam_search_tokens(torch.zeros(3, 758).log_softmax(-1), enc, token_min_logp="x")
    assert prefix_beam_search_tokens(torch.zeros(0, 758), enc) == [("", 0.0)]
