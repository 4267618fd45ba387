"""benchmarks/_common.wer_interval, the bootstrap interval that the capstone bench prints beside each WER: checked
against the exact bootstrap distribution, enumerated over every resample of a small corpus."""
import itertools
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _common import wer_interval  # noqa: E402

# four utterances: word errors 0, 1, 1 and 3 against 2, 3, 1 and 4 reference words
REFS = ["a b", "c d e", "f", "g h i j"]
HYPS = ["a b", "c x e", "y", "g"]
ERRORS, WORDS = [0, 1, 1, 3], [2, 3, 1, 4]


def exact_distribution():
    """Every one of the 4**4 equally likely resamples, and its corpus WER."""
    return [sum(ERRORS[i] for i in pick) / sum(WORDS[i] for i in pick)
            for pick in itertools.product(range(4), repeat=4)]


@pytest.mark.parametrize("level", [0.95, 0.8])
def test_the_interval_ends_are_quantiles_of_the_exact_bootstrap_distribution(level):
    rates = exact_distribution()
    lo, hi = wer_interval(REFS, HYPS, level=level, reps=40000, seed=1)
    for end, q in ((lo, (1 - level) / 2), (hi, (1 + level) / 2)):
        below = sum(r < end - 1e-12 for r in rates) / len(rates)       # P(X < end)
        at_most = sum(r <= end + 1e-12 for r in rates) / len(rates)    # P(X <= end)
        assert below - 0.01 <= q <= at_most + 0.01, (end, q, below, at_most)
    assert lo <= sum(ERRORS) / sum(WORDS) <= hi


def test_equal_error_rates_give_an_interval_of_zero_width():
    refs = ["one two three four"] * 5
    hyps = ["one two three five"] * 5
    assert wer_interval(refs, hyps) == pytest.approx((0.25, 0.25))


def test_the_same_seed_gives_the_same_interval_and_bad_input_is_refused():
    assert wer_interval(REFS, HYPS, seed=3) == wer_interval(REFS, HYPS, seed=3)
    with pytest.raises(ValueError, match="as many hypotheses"):
        wer_interval(REFS, HYPS[:2])
    with pytest.raises(ValueError, match="no words"):
        wer_interval(["", ""], ["a", ""])
