"""BigramEncoder (DS2 section 3.6): segmentation against a regular-expression oracle, the vocabulary,
CTC decoding over tokens, errors; and make_encoder."""
import random
import re

import pytest
import torch

from reference.ctc import greedy_decode
from reference.data import collate_batch
from reference.synthetic import generate_synthetic_dataset
from reference.text import BigramEncoder, CharEncoder, make_encoder

ENC = BigramEncoder()
CHARS = CharEncoder()
WORD_CHARS = "abcdefghijklmnopqrstuvwxyz'"


def oracle_segment(text: str) -> list[str]:
    """The paper's rule by a regular expression: a space alone, else up to two non-space characters,
    scanning from the left (the regex engine is leftmost-greedy, so words are cut in pairs from their start)."""
    return re.findall(r" |[^ ]{1,2}", text.lower())


def texts(tokens):
    return [ENC.symbols[i] for i in tokens]


def test_the_papers_example():
    assert texts(ENC.encode("the cat sat")) == ["th", "e", " ", "ca", "t", " ", "sa", "t"]


def test_vocabulary_is_blank_unigrams_space_apostrophe_and_all_bigrams():
    assert ENC.vocab_size == len(ENC) == 1 + 28 + 27 * 27 == 758
    assert ENC.symbols[:29] == CHARS.symbols, "unigrams keep CharEncoder's ids"
    assert ENC.blank_idx == 0 and ENC.space_idx == CHARS.space_idx == 27
    bigrams = ENC.symbols[29:]
    assert bigrams == [a + b for a in WORD_CHARS for b in WORD_CHARS]
    assert len(set(ENC.symbols)) == ENC.vocab_size
    assert not any(" " in b for b in bigrams), "a bigram never holds a space: words end at space tokens"
    assert repr(ENC) == "BigramEncoder('english', vocab_size=758)"


@pytest.mark.parametrize("word, tokens", [
    ("a", ["a"]), ("ab", ["ab"]), ("abc", ["ab", "c"]), ("abcd", ["ab", "cd"]), ("abcde", ["ab", "cd", "e"]),
    ("it's", ["it", "'s"]), ("'s", ["'s"]), ("o'", ["o'"]), ("don't", ["do", "n'", "t"]), ("'", ["'"]),
])
def test_odd_and_even_words_and_apostrophes(word, tokens):
    assert texts(ENC.encode(word)) == tokens
    assert ENC.decode(ENC.encode(word)) == word


def test_spaces_are_their_own_tokens_and_words_restart_after_them():
    assert texts(ENC.encode(" ab  c ")) == [" ", "ab", " ", " ", "c", " "]
    assert texts(ENC.encode("abc de")) == ["ab", "c", " ", "de"], "pairs never cross a space"
    assert ENC.encode("") == []
    assert ENC.encode("THE Cat") == ENC.encode("the cat"), "lower-cased like CharEncoder"


def test_round_trip_and_segmentation_on_random_texts():
    rng = random.Random(0)
    for _ in range(500):
        words = ["".join(rng.choice(WORD_CHARS) for _ in range(rng.randint(1, 9))) for _ in range(rng.randint(1, 6))]
        seps = [rng.choice([" ", " ", " ", "  "]) for _ in words]
        text = "".join(w + s for w, s in zip(words, seps))[: -1 if rng.random() < 0.7 else None]
        if rng.random() < 0.2:
            text = " " + text
        ids = ENC.encode(text)
        assert texts(ids) == oracle_segment(text), text
        assert ENC.decode(ids) == text
        n_chars = len(text.replace(" ", ""))
        assert len(ids) == sum((len(w) + 1) // 2 for w in text.split()) + text.count(" ")
        assert len(ids) < len(CHARS.encode(text)) or n_chars <= 1 or all(len(w) == 1 for w in text.split())


def test_every_token_is_reachable():
    for i in range(1, ENC.vocab_size):
        assert ENC.encode(ENC.symbols[i]) == [i], ENC.symbols[i]


def test_ctc_decode_merges_repeated_tokens_not_characters():
    th, e = ENC.encode("th")[0], ENC.encode("e")[0]
    assert ENC.ctc_decode([0, th, th, 0, e, e, 0]) == "the"
    assert ENC.ctc_decode([th, th, 0, th]) == "thth", "a repeated token needs a blank between"
    aa = ENC.encode("aa")[0]
    assert ENC.encode("aaaa") == [aa, aa] and ENC.ctc_decode([aa, aa]) == "aa" and ENC.ctc_decode([aa, 0, aa]) == "aaaa"
    assert ENC.ctc_decode(torch.tensor([0, th, e])) == "the"
    assert ENC.decode([th, 0, 0, e]) == "the", "decode drops blanks without merging"
    # greedy_decode over a (T, B, V) batch uses the encoder unchanged
    lp = torch.full((5, 1, ENC.vocab_size), -20.0)
    for t, i in enumerate([th, th, 0, e, 0]):
        lp[t, 0, i] = 0.0
    assert greedy_decode(lp.log_softmax(-1), ENC) == ["the"]


def test_collate_batch_encodes_bigram_targets():
    samples = generate_synthetic_dataset(3, 1, 2, seed=3)
    batch = collate_batch(samples, ENC)
    for b, s in enumerate(samples):
        n = int(batch.target_lengths[b])
        assert batch.targets[b, :n].tolist() == ENC.encode(s.transcript)
        assert ENC.decode(batch.targets[b, :n]) == s.transcript


@pytest.mark.parametrize("call, match", [
    (lambda: ENC.encode("caf\u00e9"), r"character '\u00e9' at position 3 of 'caf\u00e9' is not in the english alphabet"),
    (lambda: ENC.encode("a-b"), "character '-' at position 1"),
    (lambda: ENC.encode(["ab"]), "encode expects a str, got list"),
    (lambda: ENC.decode([758]), r"token id 758 is out of range: expected 0..757"),
    (lambda: ENC.decode([-1]), "out of range"),
    (lambda: ENC.decode([1.0]), "symbol ids must be integers"),
    (lambda: ENC.ctc_decode(["a"]), "symbol ids must be integers"),
    (lambda: BigramEncoder("klingon"), "unknown language 'klingon'"),
])
def test_bad_input_is_a_clear_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_make_encoder():
    assert isinstance(make_encoder(), CharEncoder) and make_encoder("chars").vocab_size == 29
    assert isinstance(make_encoder("bigram"), BigramEncoder) and make_encoder("bigram").vocab_size == 758
    with pytest.raises(ValueError, match=r"unknown outputs 'trigram': expected one of \['chars', 'bigram'\]"):
        make_encoder("trigram")
