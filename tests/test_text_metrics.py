"""The alphabet and the error rates (jiwer as the oracle)."""
import jiwer
import pytest
import torch

from reference import CharEncoder, char_error_rate, edit_distance, word_error_rate
from reference.metrics import edit_operations, word_errors


def test_alphabet_layout():
    enc = CharEncoder("english")
    assert enc.vocab_size == 29 and enc.blank_idx == 0
    assert enc.encode("az '") == [1, 26, 27, 28]
    assert enc.decode([0, 8, 0, 9]) == "hi"
    assert enc.ctc_decode([0, 0, 8, 8, 0, 5, 5, 5, 0, 12, 12, 0]) == "hel"
    assert enc.ctc_decode(torch.tensor([12, 0, 12])) == "ll"
    assert enc.decode(enc.encode("Hello World")) == "hello world"


def test_encoder_errors():
    with pytest.raises(ValueError, match="unknown language"):
        CharEncoder("klingon")
    with pytest.raises(ValueError, match=r"'3' at position 1"):
        CharEncoder().encode("a3")
    with pytest.raises(ValueError, match="out of range"):
        CharEncoder().decode([29])


def brute_edit_distance(a, b):
    """Recursive definition, memoised: the textbook recurrence, independent of the DP table."""
    from functools import lru_cache

    @lru_cache(None)
    def d(i, j):
        if i == 0 or j == 0:
            return i + j
        return min(d(i - 1, j) + 1, d(i, j - 1) + 1, d(i - 1, j - 1) + (a[i - 1] != b[j - 1]))
    return d(len(a), len(b))


def test_edit_distance_random():
    g = torch.Generator().manual_seed(1)
    for _ in range(200):
        a = torch.randint(0, 3, (int(torch.randint(0, 7, (1,), generator=g)),), generator=g).tolist()
        b = torch.randint(0, 3, (int(torch.randint(0, 7, (1,), generator=g)),), generator=g).tolist()
        assert edit_distance(a, b) == brute_edit_distance(tuple(a), tuple(b))
        ops = edit_operations(a, b)
        assert ops["substitutions"] + ops["deletions"] + ops["insertions"] == edit_distance(a, b)
        assert ops["hits"] + ops["substitutions"] + ops["deletions"] == len(a)


def test_wer_cer_match_jiwer_at_corpus_level():
    words = "the cat sat on a mat dog ran".split()
    g = torch.Generator().manual_seed(0)
    refs, hyps = [], []
    for _ in range(40):
        r = [words[i] for i in torch.randint(0, 8, (int(torch.randint(1, 7, (1,), generator=g)),), generator=g)]
        h = [w for w in r if torch.rand(1, generator=g) > 0.2] + (["dog"] if torch.rand(1, generator=g) > 0.7 else [])
        refs.append(" ".join(r))
        hyps.append(" ".join(h))
    assert word_error_rate(refs, hyps) == pytest.approx(jiwer.wer(refs, hyps), abs=1e-12)
    assert char_error_rate(refs, hyps) == pytest.approx(jiwer.cer(refs, hyps), abs=1e-12)
    out = [jiwer.process_words(r, h) for r, h in zip(refs, hyps)]      # per utterance, as a bootstrap needs
    assert word_errors(refs, hyps) == [(o.substitutions + o.deletions + o.insertions, o.hits + o.substitutions + o.deletions)
                                       for o in out]


def test_corpus_level_is_not_the_mean_of_utterances():
    refs, hyps = ["a b c d e f g h", "x"], ["a b c d e f g h", "y"]
    assert word_error_rate(refs, hyps) == pytest.approx(1 / 9)      # not (0 + 1) / 2


def test_metric_errors():
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        word_error_rate(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="no words"):
        word_error_rate([""], ["a"])
