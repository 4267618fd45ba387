"""Tests for reference/decoding.py: prefix beam search against brute force over all CTC alignments.

The oracle enumerates every frame-level alignment, collapses it (merge repeats, drop blanks)
and sums the alignment probabilities per labelling, then adds the LM and word terms of
``Q(y) = log p_ctc(y|x) + alpha log p_lm(y) + beta word_count(y)``.  With a beam wide
enough to keep every prefix, the beam search must return exactly that ranked list.
"""
from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import reference.decoding as decoding
from reference.decoding import prefix_beam_search
from reference.lm import LanguageModel, NGramLM
from reference.text import CharEncoder

ENC = CharEncoder("english")
V = ENC.vocab_size  # 29
A, B, SPACE = 1, 2, ENC.space_idx
EVERYTHING = 10**7  # a beam that never prunes in these tiny cases


# --------------------------------------------------------------------------- the oracle
def brute_force_ctc(log_probs: torch.Tensor) -> dict[str, float]:
    """log p_ctc(y) for every labelling y with non-zero probability, by enumerating alignments.

    Symbols whose log-probability is -inf at every frame are left out of the enumeration.
    """
    lp = log_probs.double().numpy()
    T = lp.shape[0]
    syms = np.flatnonzero(np.isfinite(lp).any(axis=0))
    grid = np.stack(np.meshgrid(*([syms] * T), indexing="ij"), axis=-1).reshape(-1, T)  # (N, T) alignments
    path_logp = lp[np.arange(T), grid].sum(axis=1)
    ok = np.isfinite(path_logp)
    grid, path_logp = grid[ok], path_logp[ok]
    prev = np.concatenate([np.full((len(grid), 1), -1), grid[:, :-1]], axis=1)
    keep = (grid != 0) & (grid != prev)  # the CTC collapse: new non-blank symbols only
    pos = np.cumsum(keep, axis=1) - 1
    key = np.where(keep, grid * (V ** np.maximum(pos, 0)), 0).sum(axis=1)  # base-V digits, all >= 1
    order = np.argsort(key, kind="stable")
    key, path_logp = key[order], path_logp[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    sums = np.logaddexp.reduceat(path_logp, starts)
    out = {}
    for k, s in zip(key[starts].tolist(), sums.tolist()):
        chars = []
        while k:
            k, d = divmod(k, V)
            chars.append(ENC.symbols[d])
        out["".join(chars)] = s
    return out


def brute_force_q(log_probs, lm=None, alpha=0.5, beta=1.0) -> dict[str, float]:
    """Q(y) for every labelling, from the definition."""
    out = {}
    for y, lp in brute_force_ctc(log_probs).items():
        words = y.split()
        lm_term = alpha * lm.sentence_logprob(words) if lm is not None else 0.0
        out[y] = lp + lm_term + beta * len(words)
    return out


def mismatch(results: list[tuple[str, float]], expected: dict[str, float], tol: float = 1e-6) -> str | None:
    """Why ``results`` is not the brute-force ranked list, or None if it is."""
    if len(results) != len(expected):
        return f"{len(results)} hypotheses, brute force has {len(expected)}"
    scores = [s for _, s in results]
    if any(a < b for a, b in zip(scores, scores[1:])):
        return "not sorted best first"
    got = dict(results)
    if len(got) != len(results):
        return "duplicate texts"
    if set(got) != set(expected):
        return f"different labellings, e.g. {sorted(set(got) ^ set(expected))[:3]}"
    worst = max(expected, key=lambda y: abs(got[y] - expected[y]))
    if abs(got[worst] - expected[worst]) > tol:
        return f"score of {worst!r}: {got[worst]} vs brute force {expected[worst]}"
    ranked = sorted(expected, key=lambda y: (-expected[y], y))
    for (y, s), ref in zip(results, ranked):
        if y != ref and abs(expected[y] - expected[ref]) > 1e-9:
            return f"ranking differs at {y!r} vs {ref!r}"
    return None


def few_symbol_log_probs(T: int, seed: int, symbols=(0, A, B, SPACE), scale: float = 1.5) -> torch.Tensor:
    """(T, 29) log-probs with mass on ``symbols`` only (the rest exactly -inf)."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.full((T, V), -math.inf, dtype=torch.float64)
    logits[:, list(symbols)] = torch.randn(T, len(symbols), generator=g, dtype=torch.float64) * scale
    return logits.log_softmax(-1)


def full_log_probs(T: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(T, V, generator=g, dtype=torch.float64) * scale).log_softmax(-1)


class HistoryLM(LanguageModel):
    """A toy, deliberately not normalised LM whose scores depend on the *whole* history.

    If the decoder passed a wrong or truncated history, or scored a word twice, Q would differ.
    """

    order = 99

    def score(self, history, word):
        history = tuple(history)
        s = -1.0 - 0.4 * len(word) - 0.3 * len(history)
        if history and history[-1] == word:
            s += 0.9
        if word == "ab":
            s += 1.3
        return s

    def end_score(self, history):
        return -0.7 - 0.2 * len(tuple(history)) - (0.5 if history and tuple(history)[-1] == "b" else 0.0)


@pytest.fixture(scope="module")
def kn_lm() -> NGramLM:
    return NGramLM.train(["ab ba", "ba ba ab", "a b", "b ab a", "ba"], order=2)


# --------------------------------------------------------------------------- exactness
@pytest.mark.parametrize("T", [1, 2, 3, 4, 5, 6])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_brute_force_without_lm(T, seed):
    lp = few_symbol_log_probs(T, seed)
    for beta in (0.0, 1.0, -0.7):
        expected = brute_force_q(lp, None, beta=beta)
        got = prefix_beam_search(lp, ENC, beam_width=EVERYTHING, beta=beta)
        assert mismatch(got, expected) is None, mismatch(got, expected)


@pytest.mark.parametrize("T", [3, 5, 6])
@pytest.mark.parametrize("lm_name", ["kn", "history"])
def test_matches_brute_force_with_lm(T, lm_name, kn_lm):
    lm = kn_lm if lm_name == "kn" else HistoryLM()
    lp = few_symbol_log_probs(T, seed=10 + T)
    for alpha, beta in [(0.5, 1.0), (1.7, -0.3), (0.0, 2.0)]:
        expected = brute_force_q(lp, lm, alpha=alpha, beta=beta)
        got = prefix_beam_search(lp, ENC, beam_width=EVERYTHING, lm=lm, alpha=alpha, beta=beta)
        assert mismatch(got, expected) is None, (alpha, beta, mismatch(got, expected))


def test_spaces_leading_trailing_and_double_count_words_like_split(kn_lm):
    lp = few_symbol_log_probs(6, seed=3, scale=0.5)  # flat: every spacing pattern is present
    expected = brute_force_q(lp, kn_lm, alpha=1.0, beta=0.8)
    got = dict(prefix_beam_search(lp, ENC, beam_width=EVERYTHING, lm=kn_lm, alpha=1.0, beta=0.8))
    for y in [" ab", "ab ", "a  b", "  ", " a b ", ""]:
        assert got[y] == pytest.approx(expected[y], abs=1e-9), repr(y)


def test_matches_brute_force_over_all_29_symbols_T3(kn_lm):
    lp = full_log_probs(3, seed=5)
    expected = brute_force_q(lp, kn_lm, alpha=0.8, beta=0.5)
    got = prefix_beam_search(lp, ENC, beam_width=EVERYTHING, lm=kn_lm, alpha=0.8, beta=0.5)
    assert mismatch(got, expected) is None, mismatch(got, expected)


def test_matches_brute_force_over_all_29_symbols_T4():
    lp = full_log_probs(4, seed=6)  # 29^4 = 707,281 alignments, ~637k labellings
    expected = brute_force_q(lp, None, beta=0.3)
    got = prefix_beam_search(lp, ENC, beam_width=EVERYTHING, beta=0.3)
    assert mismatch(got, expected) is None, mismatch(got, expected)


def test_char_cutoff_default_is_exact_here_and_none_is_the_same():
    lp = full_log_probs(3, seed=7, scale=2.0)
    a = prefix_beam_search(lp, ENC, beam_width=EVERYTHING)
    b = prefix_beam_search(lp, ENC, beam_width=EVERYTHING, char_cutoff=None)
    assert [t for t, _ in a] == [t for t, _ in b]
    assert np.allclose([s for _, s in a], [s for _, s in b], atol=1e-9)


def test_scores_equal_minus_ctc_loss_for_longer_input():
    # Independent second oracle: torch's CTC forward algorithm, T = 10 over {blank, a, b}.
    lp = few_symbol_log_probs(10, seed=8, symbols=(0, A, B))
    got = prefix_beam_search(lp, ENC, beam_width=EVERYTHING, beta=0.0)
    assert mismatch(got, brute_force_q(lp, None, beta=0.0)) is None
    for text, score in got[:40]:
        target = torch.tensor([ENC.encode(text)]) if text else torch.zeros((1, 0), dtype=torch.long)
        loss = F.ctc_loss(lp[:, None], target, torch.tensor([10]), torch.tensor([len(text)]), reduction="sum")
        assert score == pytest.approx(-loss.item(), abs=1e-9), text


def test_pruned_beam_underestimates_p_ctc_and_the_gap_closes_as_it_widens():
    # T = 60, peaky: the beam finds the right text, but a narrow beam loses the alignments
    # that passed through pruned prefixes, so its log p_ctc is a lower bound.
    g = torch.Generator().manual_seed(0)
    path = [0, 20, 20, 0, 8, 0, 5, 27, 27, 3, 0, 1, 20, 20, 0, 27, 19, 1, 1, 20] * 3  # "the cat sat" x3
    T = len(path)
    logits = torch.randn(T, V, generator=g, dtype=torch.float64)
    logits[torch.arange(T), torch.tensor(path)] += 6.0
    lp = logits.log_softmax(-1)
    text = "the cat sat" * 3
    exact = -F.ctc_loss(lp[:, None], torch.tensor([ENC.encode(text)]), torch.tensor([T]), torch.tensor([len(text)]),
                        reduction="sum").item()
    gaps = []
    for width in (16, 64, 256):
        out = prefix_beam_search(lp, ENC, beam_width=width, beta=0.0)
        assert out[0][0] == text
        assert out[0][1] <= exact + 1e-9
        gaps.append(exact - out[0][1])
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 0.1


# --------------------------------------------------------------------------- the test has teeth
def simple_prefix_search(lp: torch.Tensor, combine, merge_repeats_across_blank: bool):
    """Exhaustive prefix search without LM (beta = 0), with switchable mistakes."""
    rows = lp.double().tolist()
    syms = [c for c in range(1, V) if any(math.isfinite(r[c]) for r in rows)]
    beam = {"": (0.0, -math.inf)}
    for row in rows:
        nxt = defaultdict(lambda: [-math.inf, -math.inf])
        for prefix, (pb, pnb) in beam.items():
            total = combine(pb, pnb)
            nxt[prefix][0] = combine(nxt[prefix][0], total + row[0])
            for c in syms:
                ch = ENC.symbols[c]
                if prefix and ch == prefix[-1]:
                    nxt[prefix][1] = combine(nxt[prefix][1], pnb + row[c])
                    if merge_repeats_across_blank:  # mistake: "a _ a" -> "a"
                        nxt[prefix][1] = combine(nxt[prefix][1], pb + row[c])
                    else:
                        nxt[prefix + ch][1] = combine(nxt[prefix + ch][1], pb + row[c])
                else:
                    nxt[prefix + ch][1] = combine(nxt[prefix + ch][1], total + row[c])
        beam = {k: tuple(v) for k, v in nxt.items()}
    out = [(k, combine(*v)) for k, v in beam.items() if combine(*v) > -math.inf]
    return sorted(out, key=lambda r: (-r[1], r[0]))


def test_oracle_catches_max_instead_of_sum_and_merging_across_blanks():
    lp = few_symbol_log_probs(5, seed=9)
    expected = brute_force_q(lp, None, beta=0.0)
    correct = simple_prefix_search(lp, np.logaddexp, merge_repeats_across_blank=False)
    assert mismatch(correct, expected) is None  # the harness itself is right
    viterbi = simple_prefix_search(lp, max, merge_repeats_across_blank=False)
    assert mismatch(viterbi, expected) is not None
    merging = simple_prefix_search(lp, np.logaddexp, merge_repeats_across_blank=True)
    assert mismatch(merging, expected) is not None
    assert "aa" in expected and "aa" not in dict(merging)


def test_reference_with_max_instead_of_logsumexp_fails_the_oracle(monkeypatch):
    lp = few_symbol_log_probs(5, seed=9)
    expected = brute_force_q(lp, None, beta=0.0)
    monkeypatch.setattr(decoding, "_logaddexp", max)
    got = prefix_beam_search(lp, ENC, beam_width=EVERYTHING, beta=0.0)
    assert mismatch(got, expected) is not None


# --------------------------------------------------------------------------- behaviour
def ab_or_ba_log_probs() -> torch.Tensor:
    """Frames 'a|b', blank, 'b|a': acoustically 'ab' (.5 * .5) just ahead of 'ba' (.49 * .49)."""
    p = torch.full((3, V), 1e-12, dtype=torch.float64)
    p[0, A], p[0, B], p[0, 0] = 0.5, 0.49, 0.01
    p[1, 0] = 1.0
    p[2, A], p[2, B], p[2, 0] = 0.49, 0.5, 0.01
    return (p / p.sum(-1, keepdim=True)).log()


def test_language_model_changes_the_best_path():
    lp = ab_or_ba_log_probs()
    assert prefix_beam_search(lp, ENC, beam_width=8, beta=0.0)[0][0] == "ab"
    lm = NGramLM.train(["ba", "ba ba", "the ba"], order=2)
    assert lm.sentence_logprob(["ba"]) > lm.sentence_logprob(["ab"])
    assert prefix_beam_search(lp, ENC, beam_width=8, lm=lm, alpha=1.0, beta=0.0)[0][0] == "ba"
    assert prefix_beam_search(lp, ENC, beam_width=8, lm=lm, alpha=0.0, beta=0.0)[0][0] == "ab"


def test_larger_beta_favours_more_words():
    # 'ab' vs 'a b': the space is acoustically unlikely (0.2 at the middle frame).
    p = torch.full((3, V), 1e-12, dtype=torch.float64)
    p[0, A] = 1.0
    p[1, SPACE], p[1, 0] = 0.2, 0.8
    p[2, B] = 1.0
    lp = (p / p.sum(-1, keepdim=True)).log()
    counts = []
    for beta in (-1.0, 0.0, 0.5, 1.0, 2.0, 4.0):
        best = prefix_beam_search(lp, ENC, beam_width=8, beta=beta)[0][0]
        counts.append(len(best.split()))
    assert counts == sorted(counts) and counts[0] == 1 and counts[-1] == 2


def test_without_lm_alpha_is_ignored():
    lp = few_symbol_log_probs(5, seed=11)
    assert prefix_beam_search(lp, ENC, alpha=0.5) == prefix_beam_search(lp, ENC, alpha=7.0)


def test_beam_width_limits_and_orders_the_output():
    lp = full_log_probs(12, seed=12, scale=3.0)
    for k in (1, 3, 16):
        out = prefix_beam_search(lp, ENC, beam_width=k)
        assert 1 <= len(out) <= k
        assert [s for _, s in out] == sorted((s for _, s in out), reverse=True)
        assert all(isinstance(t, str) and isinstance(s, float) for t, s in out)


def test_empty_input_is_the_empty_transcript(kn_lm):
    lp = torch.zeros((0, V))
    assert prefix_beam_search(lp, ENC, beta=1.0) == [("", 0.0)]
    [(text, score)] = prefix_beam_search(lp, ENC, lm=kn_lm, alpha=0.5)
    assert text == "" and score == pytest.approx(0.5 * kn_lm.end_score(()))


def test_float32_input_and_peaky_greedy_case():
    path = [0, 3, 3, 0, 1, 20, 0]  # "cat"
    lp = torch.full((len(path), V), -25.0)
    lp[torch.arange(len(path)), torch.tensor(path)] = 0.0
    lp = lp.log_softmax(-1).float()
    assert prefix_beam_search(lp, ENC, beam_width=4)[0][0] == "cat"


# --------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "log_probs, match",
    [
        (torch.zeros(2, 3, V).log_softmax(-1), "2-D"),
        (torch.zeros(5, V, dtype=torch.long), "floating"),
        (torch.zeros(5, 28).log_softmax(-1), "vocab_size=29"),
        (torch.full((5, V), 1.0 / V), "log_softmax"),  # probabilities, not logs
        (torch.full((5, V), float("nan")), "NaN"),
        ([[0.0] * V], "torch.Tensor"),
    ],
)
def test_rejects_bad_log_probs(log_probs, match):
    with pytest.raises(ValueError, match=match):
        prefix_beam_search(log_probs, ENC)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(beam_width=0), "beam_width"),
        (dict(beam_width=2.5), "beam_width"),
        (dict(beam_width=True), "beam_width"),
        (dict(alpha=float("nan")), "alpha"),
        (dict(beta=float("inf")), "beta"),
        (dict(beta="1"), "beta"),
        (dict(lm=object()), "lm"),
        (dict(char_cutoff="low"), "char_cutoff"),
    ],
)
def test_rejects_bad_arguments(kwargs, match):
    lp = torch.zeros(4, V).log_softmax(-1)
    with pytest.raises(ValueError, match=match):
        prefix_beam_search(lp, ENC, **kwargs)


# --------------------------------------------------------------------------- the fast path
from reference.decoding import prefix_beam_search_fast  # noqa: E402

NO_PRUNING = dict(token_min_logp=None, beam_prune_logp=None)


@pytest.mark.parametrize("T", [1, 3, 5, 6])
@pytest.mark.parametrize("lm_name", [None, "kn", "history"])
def test_fast_path_without_pruning_matches_brute_force(T, lm_name, kn_lm):
    lm = {None: None, "kn": kn_lm, "history": HistoryLM()}[lm_name]
    lp = few_symbol_log_probs(T, seed=20 + T)
    for alpha, beta in [(0.5, 1.0), (1.7, -0.3)]:
        expected = brute_force_q(lp, lm, alpha=alpha, beta=beta)
        got = prefix_beam_search_fast(lp, ENC, beam_width=EVERYTHING, lm=lm, alpha=alpha, beta=beta, **NO_PRUNING)
        assert mismatch(got, expected) is None, (alpha, beta, mismatch(got, expected))
    lp = full_log_probs(3, seed=5)                      # all 29 symbols
    expected = brute_force_q(lp, lm, alpha=0.8, beta=0.5)
    got = prefix_beam_search_fast(lp, ENC, beam_width=EVERYTHING, lm=lm, alpha=0.8, beta=0.5, **NO_PRUNING)
    assert mismatch(got, expected) is None, mismatch(got, expected)


def peaky(T: int, seed: int) -> torch.Tensor:
    """(T, V) log-probs with one dominant symbol per frame (spaces often), noise, and strong competitors."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(T, V, generator=g, dtype=torch.float64) * 1.5
    path = torch.randint(0, V, (T,), generator=g)
    path[torch.rand(T, generator=g) < 0.4] = ENC.blank_idx
    path[torch.rand(T, generator=g) < 0.1] = SPACE
    logits[torch.arange(T), path] += 8.0
    confused = torch.rand(T, generator=g) < 0.15
    logits[confused, torch.randint(1, V, (int(confused.sum()),), generator=g)] += 7.5
    return logits.log_softmax(-1)


@pytest.mark.parametrize("lm_name", [None, "kn", "history"])
def test_fast_path_equals_the_readable_search_at_the_same_cutoff(lm_name, kn_lm):
    """Narrow beams over 60 frames (so the beam prunes): the same ranked list and scores as the readable
    search with char_cutoff equal to token_min_logp, for the exact search (None) and two cutoffs."""
    lm = {None: None, "kn": kn_lm, "history": HistoryLM()}[lm_name]
    for seed in range(4):
        lp = peaky(60, seed)
        for cutoff in (None, -20.0, -5.0):
            for width in (1, 4, 16):
                kw = dict(beam_width=width, lm=lm, alpha=0.9, beta=0.4)
                a = prefix_beam_search(lp, ENC, char_cutoff=cutoff, **kw)
                b = prefix_beam_search_fast(lp, ENC, token_min_logp=cutoff, beam_prune_logp=None, **kw)
                assert [t for t, _ in a] == [t for t, _ in b], (seed, cutoff, width)
                assert np.allclose([s for _, s in a], [s for _, s in b], rtol=0, atol=1e-9), (seed, cutoff, width)


def test_fast_path_pruning_keeps_the_best_hypothesis_on_peaky_input(kn_lm):
    """With its default pruning the fast path returns the readable search's best transcript on peaky
    input (what pruning by -5 and -10 is designed for), and its score is that transcript's Q."""
    same = 0
    for seed in range(30):
        lp = peaky(50, 100 + seed)
        exact = prefix_beam_search(lp, ENC, beam_width=16, lm=kn_lm, char_cutoff=None)
        fast = prefix_beam_search_fast(lp, ENC, beam_width=16, lm=kn_lm)
        assert fast[0][1] <= exact[0][1] + 1e-9          # pruning can only lose probability mass
        same += fast[0][0] == exact[0][0]
    assert same >= 28, same


def test_fast_path_blank_only_frames_shift_every_score_alike(kn_lm):
    """Frames where only the blank passes the cutoff take a shortcut; it must equal the full update."""
    lp = torch.full((12, V), -30.0, dtype=torch.float64)
    lp[:, ENC.blank_idx] = 0.0
    for t, ch in ((0, "a"), (1, "b"), (4, " "), (5, "b"), (9, "a")):
        lp[t, ENC.encode(ch)[0]] = 0.0
        lp[t, ENC.blank_idx] = -0.5
    lp = lp.log_softmax(-1)
    a = prefix_beam_search(lp, ENC, beam_width=8, lm=kn_lm, char_cutoff=-5.0)
    b = prefix_beam_search_fast(lp, ENC, beam_width=8, lm=kn_lm, beam_prune_logp=None)
    assert [t for t, _ in a] == [t for t, _ in b] and a[0][0] == "ab ba"
    assert np.allclose([s for _, s in a], [s for _, s in b], rtol=0, atol=1e-9)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(beam_width=0), "beam_width"),
        (dict(token_min_logp="low"), "token_min_logp"),
        (dict(beam_prune_logp=3.0), "beam_prune_logp"),
        (dict(beam_prune_logp="x"), "beam_prune_logp"),
        (dict(lm=object()), "lm"),
    ],
)
def test_fast_path_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        prefix_beam_search_fast(torch.zeros(4, V).log_softmax(-1), ENC, **kwargs)


# --------------------------------------------------------------------------- oov_prefix_logp
from reference.decoding import prefix_beam_search_tokens  # noqa: E402

SEARCHES = {
    "readable": lambda lp, **kw: prefix_beam_search(lp, ENC, char_cutoff=None, **kw),
    "fast": lambda lp, **kw: prefix_beam_search_fast(lp, ENC, **NO_PRUNING, **kw),
    "tokens": lambda lp, **kw: prefix_beam_search_tokens(lp, ENC, token_min_logp=None, **kw),
}


@pytest.mark.parametrize("search", sorted(SEARCHES))
@pytest.mark.parametrize("T", [3, 5, 6])
def test_oov_prefix_ranking_leaves_the_objective_and_the_exact_search_unchanged(search, T, kn_lm):
    """The penalty only ranks prefixes while their open word spells nothing the LM knows: a beam that
    keeps every prefix returns every labelling with its brute-force Q, as without it."""
    lp = few_symbol_log_probs(T, seed=40 + T)
    for oov in (-3.0, -10.0):
        expected = brute_force_q(lp, kn_lm, alpha=0.9, beta=0.4)
        got = SEARCHES[search](lp, beam_width=EVERYTHING, lm=kn_lm, alpha=0.9, beta=0.4, oov_prefix_logp=oov)
        assert mismatch(got, expected) is None, (oov, mismatch(got, expected))


def known_word_behind_a_non_word() -> torch.Tensor:
    """Frame 0 prefers "b" (0.6) to "a" (0.4); frame 1 says "b".  The LM knows "ab" and never saw "b"
    alone, so Q prefers "ab", but a beam of one keeps "b" after frame 0 and can never reach it."""
    lp = torch.full((2, V), -60.0, dtype=torch.float64)
    lp[0, A], lp[0, B] = math.log(0.4), math.log(0.6)
    lp[1, B], lp[1, ENC.blank_idx] = math.log(0.98), math.log(0.02)
    return lp.log_softmax(-1)


@pytest.mark.parametrize("search", sorted(SEARCHES))
def test_oov_prefix_keeps_the_spelling_of_a_known_word_in_a_narrow_beam(search):
    lm = NGramLM.train(["ab", "ab ab", "ab ab ab"], order=2)
    assert lm.vocab == {"ab"}
    lp = known_word_behind_a_non_word()
    q = brute_force_q(lp, lm, alpha=1.0, beta=0.5)
    best = max(q, key=q.get)
    assert best == "ab"
    plain = SEARCHES[search](lp, beam_width=1, lm=lm, alpha=1.0, beta=0.5)
    ranked = SEARCHES[search](lp, beam_width=1, lm=lm, alpha=1.0, beta=0.5, oov_prefix_logp=-10.0)
    assert plain[0][0] == "b"                                        # DS2's search loses it at frame 0
    assert ranked[0][0] == "ab" and ranked[0][1] == pytest.approx(q["ab"], abs=1e-9)   # its score is still Q


@pytest.mark.parametrize("oov", [-2.0, -10.0])
def test_fast_path_equals_the_readable_search_with_oov_prefix(oov):
    lm = NGramLM.train(["ab ba", "ba ba ab", "abc cab", "b ab a", "ba"], order=2)
    for seed in range(4):
        lp = peaky(60, 200 + seed)
        for width in (1, 4, 16):
            kw = dict(beam_width=width, lm=lm, alpha=0.9, beta=0.4, oov_prefix_logp=oov)
            a = prefix_beam_search(lp, ENC, char_cutoff=-20.0, **kw)
            b = prefix_beam_search_fast(lp, ENC, token_min_logp=-20.0, beam_prune_logp=None, **kw)
            c = prefix_beam_search_tokens(lp, ENC, token_min_logp=-20.0, **kw)
            assert [t for t, _ in a] == [t for t, _ in b] == [t for t, _ in c], (seed, width)
            assert np.allclose([s for _, s in a], [s for _, s in b], rtol=0, atol=1e-9), (seed, width)


@pytest.mark.parametrize("kwargs, match", [
    (dict(oov_prefix_logp=2.0), "oov_prefix_logp"),
    (dict(oov_prefix_logp="x"), "oov_prefix_logp"),
    (dict(oov_prefix_logp=-5.0, lm=HistoryLM()), "lexicon"),
])
def test_oov_prefix_rejects_bad_values_and_lms_without_a_lexicon(kwargs, match):
    for search in (prefix_beam_search, prefix_beam_search_fast):
        with pytest.raises(ValueError, match=match):
            search(torch.zeros(4, V).log_softmax(-1), ENC, **kwargs)
