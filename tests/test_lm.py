"""Tests for reference/lm.py: interpolated modified Kneser-Ney, checked by hand and by its properties."""
from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from reference.lm import (
    EOS,
    FALLBACK_DISCOUNTS,
    ArpaLM,
    LanguageModel,
    NGramLM,
    estimate_discounts,
)


def toy_corpus(n: int, seed: int) -> list[str]:
    """Sentences from a tiny seeded grammar: enough structure for an n-gram to learn."""
    rng = random.Random(seed)
    dets = ["the", "a", "every", "my"]
    adjs = ["small", "red", "old", "quiet", "happy"]
    nouns = ["cat", "dog", "bird", "child", "teacher", "car"]
    verbs = ["sees", "likes", "follows", "hears", "finds"]
    advs = ["today", "again", "quickly", "at night"]
    out = []
    for _ in range(n):
        words = [rng.choice(dets)]
        if rng.random() < 0.5:
            words.append(rng.choice(adjs))
        words += [rng.choice(nouns), rng.choice(verbs), rng.choice(dets), rng.choice(nouns)]
        if rng.random() < 0.3:
            words.append(rng.choice(advs))
        out.append(" ".join(words))
    return out


def total_probability(lm: NGramLM, history) -> float:
    """Sum of p(w | history) over the vocabulary, <unk> (any unseen word) and </s>."""
    p = sum(math.exp(lm.score(history, w)) for w in lm.vocab)
    p += math.exp(lm.score(history, "never-seen-word"))  # the <unk> class
    return p + math.exp(lm.end_score(history))


# --------------------------------------------------------------------------- by hand
# Corpus "a b", "a b", "b" -> <s> a b </s> | <s> a b </s> | <s> b </s>.
# Bigrams (highest order: raw counts): (<s> a)=2, (a b)=2, (b </s>)=3, (<s> b)=1.
# Unigrams (continuation counts, distinct left neighbours): a={<s>}=1, b={a,<s>}=2, </s>={b}=1; sum 4.
# Vocabulary for the uniform floor: a, b, </s>, <unk> -> |V| = 4.
# Discounts given explicitly: unigrams (0.5, 1.0, 1.5), bigrams (0.6, 1.2, 1.8).
HAND_CORPUS = ["a b", "a b", "b"]
HAND_DISCOUNTS = [(0.5, 1.0, 1.5), (0.6, 1.2, 1.8)]
# gamma() = (D1 * #{a, </s>} + D2 * #{b}) / 4 = (0.5 * 2 + 1.0 * 1) / 4 = 0.5
P_UNI = {
    "a": (1 - 0.5) / 4 + 0.5 / 4,  # 0.25
    "b": (2 - 1.0) / 4 + 0.5 / 4,  # 0.375
    EOS: (1 - 0.5) / 4 + 0.5 / 4,  # 0.25
    "<unk>": 0.5 / 4,  # 0.125
}
# history "a": a(a b) = 2, total 2, gamma(a) = 1.2 * 1 / 2 = 0.6
P_AFTER_A = {
    "b": (2 - 1.2) / 2 + 0.6 * P_UNI["b"],  # 0.625
    "a": 0.6 * P_UNI["a"],
    EOS: 0.6 * P_UNI[EOS],
    "<unk>": 0.6 * P_UNI["<unk>"],
}
# history <s>: a(<s> a) = 2, a(<s> b) = 1, total 3, gamma(<s>) = (1.2 * 1 + 0.6 * 1) / 3 = 0.6
P_AFTER_BOS = {
    "a": (2 - 1.2) / 3 + 0.6 * P_UNI["a"],
    "b": (1 - 0.6) / 3 + 0.6 * P_UNI["b"],
    EOS: 0.6 * P_UNI[EOS],
}
# history "b": a(b </s>) = 3, total 3, gamma(b) = 1.8 * 1 / 3 = 0.6
P_END_AFTER_B = (3 - 1.8) / 3 + 0.6 * P_UNI[EOS]  # 0.55


@pytest.fixture(scope="module")
def hand_lm() -> NGramLM:
    return NGramLM.train(HAND_CORPUS, order=2, discounts=HAND_DISCOUNTS)


def test_hand_computed_unigrams_use_continuation_counts(hand_lm):
    # A unigram is only reached as a back-off from an unseen history.
    unseen = ("zzz",)  # -> <unk>, never a history
    for w in ("a", "b"):
        assert hand_lm.score(unseen, w) == pytest.approx(math.log(P_UNI[w]), abs=1e-12)
    assert hand_lm.end_score(unseen) == pytest.approx(math.log(P_UNI[EOS]), abs=1e-12)
    assert hand_lm.score(unseen, "qqq") == pytest.approx(math.log(P_UNI["<unk>"]), abs=1e-12)
    assert sum(P_UNI.values()) == pytest.approx(1.0, abs=1e-12)


def test_hand_computed_bigrams(hand_lm):
    for w, p in P_AFTER_A.items():
        got = hand_lm.end_score(("a",)) if w == EOS else hand_lm.score(("a",), "other" if w == "<unk>" else w)
        assert got == pytest.approx(math.log(p), abs=1e-12), w
    for w, p in P_AFTER_BOS.items():
        got = hand_lm.end_score(()) if w == EOS else hand_lm.score((), w)
        assert got == pytest.approx(math.log(p), abs=1e-12), w
    assert hand_lm.end_score(("a", "b")) == pytest.approx(math.log(P_END_AFTER_B), abs=1e-12)
    expected = math.log(P_AFTER_BOS["a"] * P_AFTER_A["b"] * P_END_AFTER_B)
    assert hand_lm.sentence_logprob(["a", "b"]) == pytest.approx(expected, abs=1e-12)


def test_discounts_formula_by_hand():
    # n1..n4 = 10, 5, 3, 2: Y = 10 / 20 = 0.5
    d1, d2, d3 = estimate_discounts((10, 5, 3, 2))
    assert d1 == pytest.approx(1 - 2 * 0.5 * 5 / 10)  # 0.5
    assert d2 == pytest.approx(2 - 3 * 0.5 * 3 / 5)  # 1.1
    assert d3 == pytest.approx(3 - 4 * 0.5 * 2 / 3)  # 1.667
    assert estimate_discounts((3, 0, 1, 1)) is None  # not estimable: fall back


def test_estimated_discounts_of_highest_order_come_from_raw_count_of_counts():
    corpus = toy_corpus(400, seed=1)
    lm = NGramLM.train(corpus, order=3)
    trigrams = Counter()
    for s in corpus:
        toks = ["<s>"] + s.split() + ["</s>"]
        # with one <s> the first "trigram" is the bigram (<s>, w1): count true trigrams only
        for i in range(2, len(toks)):
            trigrams[tuple(toks[i - 2 : i + 1])] += 1
    n = Counter(trigrams.values())
    assert lm.discounts[2] == pytest.approx(estimate_discounts([n[1], n[2], n[3], n[4]]))
    # tiny corpus: fallback values
    assert NGramLM.train(["a b"], order=2).discounts[1] == FALLBACK_DISCOUNTS


# --------------------------------------------------------------------------- properties
@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_distribution_sums_to_one_for_many_histories(order):
    lm = NGramLM.train(toy_corpus(300, seed=2), order=order)
    histories = [
        (),
        ("the",),
        ("the", "red"),
        ("the", "red", "cat", "sees"),
        ("a", "dog", "likes", "my", "old", "car", "today"),  # longer than the order
        ("unseen",),
        ("the", "unseen"),
        ("cat", "cat"),  # words never seen together
    ]
    for h in histories:
        assert total_probability(lm, h) == pytest.approx(1.0, abs=1e-6), h


def test_estimated_discounts_sum_to_one_and_hand_model_too(hand_lm):
    for h in [(), ("a",), ("b",), ("a", "b"), ("x",)]:
        assert total_probability(hand_lm, h) == pytest.approx(1.0, abs=1e-12)


def test_unseen_words_get_finite_probability():
    lm = NGramLM.train(toy_corpus(200, seed=3), order=3)
    for h in [(), ("the",), ("zebra", "xylophone")]:
        s = lm.score(h, "zebra")
        assert math.isfinite(s) and s < 0
    assert math.isfinite(lm.sentence_logprob("zebra eats the xylophone".split()))


def test_trigram_beats_unigram_on_held_out_text():
    train, held_out = toy_corpus(2000, seed=4), toy_corpus(200, seed=5)
    ppl = {n: NGramLM.train(train, order=n).perplexity(held_out) for n in (1, 2, 3)}
    assert ppl[3] < ppl[1]
    assert ppl[2] < ppl[1]
    assert all(math.isfinite(p) for p in ppl.values())


def test_continuation_counts_make_francisco_a_rare_unigram():
    # "francisco" is frequent but only after "san"; "glasses" is rarer but follows many words.
    corpus = ["san francisco"] * 20 + [f"{w} glasses" for w in ("my", "your", "his", "her", "new")]
    lm = NGramLM.train(corpus, order=2)
    unseen_history = ("reading",)
    assert lm.score(unseen_history, "glasses") > lm.score(unseen_history, "francisco")
    assert lm.score(("san",), "francisco") > lm.score(("san",), "glasses")


def test_history_is_truncated_to_the_order():
    lm = NGramLM.train(toy_corpus(300, seed=6), order=2)
    assert lm.score(("my", "old", "the"), "cat") == lm.score(("the",), "cat")
    assert lm.end_score(("x", "y", "cat")) == lm.end_score(("cat",))


def test_lowercases_queries_and_training():
    lm = NGramLM.train(["The Cat"], order=2)
    assert lm.vocab == {"the", "cat"}
    assert lm.score(("THE",), "Cat") == lm.score(("the",), "cat")


def test_sentence_logprob_is_the_sum_of_scores():
    lm = NGramLM.train(toy_corpus(300, seed=7), order=3)
    words = "the red cat sees a bird".split()
    expected = sum(lm.score(words[:i], w) for i, w in enumerate(words)) + lm.end_score(words)
    assert lm.sentence_logprob(words) == pytest.approx(expected)
    assert lm.sentence_logprob([]) == lm.end_score(())


def test_is_a_language_model():
    assert isinstance(NGramLM.train(["a"], order=1), LanguageModel)
    with pytest.raises(TypeError):
        LanguageModel()  # abstract


# --------------------------------------------------------------------------- persistence
def test_json_round_trip_is_exact(tmp_path):
    lm = NGramLM.train(toy_corpus(300, seed=8), order=3)
    path = tmp_path / "lm.json"
    lm.save(path)
    back = NGramLM.load(path)
    assert back.order == 3 and back.vocab == lm.vocab and back.discounts == lm.discounts
    for h, w in [((), "the"), (("the",), "cat"), (("a", "red"), "dog"), (("x",), "y")]:
        assert back.score(h, w) == lm.score(h, w)
    assert back.end_score(("the", "cat")) == lm.end_score(("the", "cat"))


def test_arpa_export_reproduces_the_model(tmp_path):
    lm = NGramLM.train(toy_corpus(300, seed=9), order=3)
    path = tmp_path / "lm.arpa"
    lm.to_arpa(path)
    text = path.read_text()
    assert text.startswith("\\data\\\nngram 1=") and text.rstrip().endswith("\\end\\")
    arpa = ArpaLM.load(path)
    assert arpa.order == 3
    rng = random.Random(0)
    words = sorted(lm.vocab) + ["unseen"]
    for _ in range(300):
        h = tuple(rng.choice(words) for _ in range(rng.randint(0, 3)))
        w = rng.choice(words)
        assert arpa.score(h, w) == pytest.approx(lm.score(h, w), abs=1e-8), (h, w)
        assert arpa.end_score(h) == pytest.approx(lm.end_score(h), abs=1e-8), h


def test_sphinx_lm_scores_an_arpa_file_as_our_arpa_reader_does(tmp_path):
    """pocketsphinx's reader and back-off (integer logs, base 1.0001) against ArpaLM on the same file."""
    pytest.importorskip("pocketsphinx")
    from reference.lm import SphinxLM
    lm = NGramLM.train(toy_corpus(300, seed=4), order=3)
    path = tmp_path / "lm.arpa"
    lm.to_arpa(path)
    arpa, sphinx = ArpaLM.load(path), SphinxLM(path)
    assert sphinx.order == 3
    rng = random.Random(1)
    words = sorted(lm.vocab)
    for _ in range(200):
        h = tuple(rng.choice(words) for _ in range(rng.randint(0, 3)))
        w = rng.choice(words)
        assert sphinx.score(h, w) == pytest.approx(arpa.score(h, w), abs=2e-3), (h, w)   # integer logs: 1e-4 a step
        assert sphinx.end_score(h) == pytest.approx(arpa.end_score(h), abs=2e-3), h
    assert sphinx.score(("the",), "zzqx") == pytest.approx(math.log(1e-8))             # outside its vocabulary


def test_the_us_english_sphinx_lm_is_a_general_trigram():
    pytest.importorskip("pocketsphinx")
    from reference.lm import SphinxLM, load_lm
    lm = load_lm("en-us")
    assert isinstance(lm, SphinxLM) and lm.order == 3
    assert lm.sentence_logprob("please enter your password".split()) > lm.sentence_logprob("password your enter please".split())


def test_interpolated_lm_is_the_weighted_sum_of_probabilities():
    from reference.lm import InterpolatedLM
    a, b = NGramLM.train(toy_corpus(200, seed=1), order=2), NGramLM.train(toy_corpus(200, seed=2), order=3)
    assert a.vocab == b.vocab        # one grammar: nothing to share, the plain weighted sum
    for share in (True, False):
        mix = InterpolatedLM([a, b], [0.3, 0.7], share_unknown=share)
        assert mix.order == 3 and mix.vocab == a.vocab | b.vocab
        for h, w in [((), "the"), (("the",), "cat"), (("a", "red"), "dog"), (("x",), "unseen")]:
            expected = math.log(0.3 * math.exp(a.score(h, w)) + 0.7 * math.exp(b.score(h, w)))
            if share and w == "unseen":   # each model's <unk> share: u(unseen) / Z = p_other(<unk>) / (1 - sum over V)
                za, zb = (1 - sum(math.exp(o.unigram_score(v)) for v in list(a.vocab) + [EOS]) for o in (b, a))
                expected = math.log(0.3 * math.exp(a.score(h, w) + b.unigram_score(w)) / za
                                    + 0.7 * math.exp(b.score(h, w) + a.unigram_score(w)) / zb)
            assert mix.score(h, w) == pytest.approx(expected, abs=1e-12)
        assert mix.end_score(("the",)) == pytest.approx(math.log(0.3 * math.exp(a.end_score(("the",))) + 0.7 * math.exp(b.end_score(("the",)))))
    for bad in ([0.5, 0.6], [1.0], [-0.5, 1.5]):
        with pytest.raises(ValueError, match="weight"):
            InterpolatedLM([a, b], bad)


def test_unigram_scores_are_the_hand_computed_unigrams(hand_lm):
    for w in ("a", "b", EOS):
        assert hand_lm.unigram_score(w) == pytest.approx(math.log(P_UNI[w]), abs=1e-12)
    assert hand_lm.unigram_score("qqq") == pytest.approx(math.log(P_UNI["<unk>"]), abs=1e-12)


def test_interpolation_shares_unknown_mass_by_what_the_other_model_knows():
    """A domain model that lacks words of a general one: mixed, the distribution over the general model's
    words, </s> and one unknown string sums to 1 (brute force), where the plain sum gives every word
    the domain model lacks its whole <unk> probability (and sums to more than 1)."""
    from reference.lm import InterpolatedLM
    general = toy_corpus(400, seed=5) + ["a zebra sees the violin", "my violin hears every zebra quickly"]
    domain = NGramLM.train([s for s in toy_corpus(300, seed=6) if "bird" not in s.split()], order=3)
    big = NGramLM.train(general, order=2)
    assert {"bird", "zebra", "violin"} <= big.vocab - domain.vocab and domain.vocab <= big.vocab
    shared, plain = InterpolatedLM([domain, big], [0.5, 0.5]), InterpolatedLM([domain, big], [0.5, 0.5], share_unknown=False)
    for h in [(), ("the",), ("my", "old"), ("a", "zebra"), ("qqq",)]:
        total = sum(math.exp(shared.score(h, w)) for w in big.vocab) + math.exp(shared.end_score(h))
        assert total + math.exp(shared.score(h, "qqq")) == pytest.approx(1.0, abs=1e-9), h
        n_lacking, unk_d, unk_b = len(big.vocab - domain.vocab), math.exp(domain.score(h, "qqq")), math.exp(big.score(h, "qqq"))
        plain_total = sum(math.exp(plain.score(h, w)) for w in big.vocab) + math.exp(plain.end_score(h))
        assert plain_total == pytest.approx(1 + 0.5 * (n_lacking - 1) * unk_d - 0.5 * unk_b, abs=1e-9), h
        # among words the domain model lacks, the general model's knowledge now shows
        for w in ("zebra", "bird"):
            margin = shared.score(h, w) - shared.score(h, "qqq")
            assert margin > 0.25 and margin > plain.score(h, w) - plain.score(h, "qqq") + 0.1, (h, w)
        assert plain.score(h, "bird") == pytest.approx(math.log(0.5 * math.exp(domain.score(h, "qqq")) + 0.5 * math.exp(big.score(h, "bird"))))
    for w in domain.vocab:          # words both know are scored as before
        assert shared.score(("the",), w) == pytest.approx(plain.score(("the",), w), abs=1e-12)


def test_a_domain_model_mixed_with_us_english_prefers_real_words_to_non_words():
    """The case that asked for the sharing: the Asterisk model's trigram lacks "exactly"; the plain
    sum scored it almost as a non-word, since the domain model's <unk> outweighs the general model."""
    pytest.importorskip("pocketsphinx")
    from reference.lm import InterpolatedLM, SphinxLM
    domain = NGramLM.train(["please enter your password", "the time will be", "at the tone"], order=3)
    general = SphinxLM.us_english()
    shared, plain = InterpolatedLM([domain, general], [0.5, 0.5]), InterpolatedLM([domain, general], [0.5, 0.5], share_unknown=False)
    h = ("the", "time", "will", "be")
    assert plain.score(h, "exactly") - plain.score(h, "axzackly") < 0.05
    assert shared.score(h, "exactly") > shared.score(h, "axzackly") + 3.0
    assert shared.score(h, "here") > shared.score(h, "exactly") > shared.score(h, "precisely") > shared.score(h, "axzackly") + 3.0
    assert shared.score(("at",), "the") == pytest.approx(plain.score(("at",), "the"), abs=1e-12)


def test_interpolation_mixes_models_without_unigrams_as_they_are():
    from reference.lm import InterpolatedLM, LanguageModel

    class Flat(LanguageModel):
        order = 1
        def score(self, history, word):
            return math.log(0.01)
        def end_score(self, history):
            return math.log(0.01)

    domain = NGramLM.train(toy_corpus(100, seed=7), order=2)
    mix = InterpolatedLM([domain, Flat()], [0.5, 0.5])
    assert mix.score(("the",), "zebra") == pytest.approx(math.log(0.5 * math.exp(domain.score(("the",), "zebra")) + 0.005))


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "kwargs",
    [
        dict(order=0),
        dict(order=2.0),
        dict(discounts=(0.5, 1.0)),
        dict(discounts=(1.5, 1.0, 1.5)),  # D1 > 1
        dict(discounts=(0.0, 1.0, 1.5)),  # D1 = 0 would give unseen words no mass
    ],
)
def test_train_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        NGramLM.train(["a b c"], **kwargs)


def test_train_rejects_bad_corpora():
    with pytest.raises(ValueError, match="zero sentences"):
        NGramLM.train([], order=2)
    with pytest.raises(ValueError, match="single str"):
        NGramLM.train("a b c", order=2)
    with pytest.raises(ValueError, match="reserved"):
        NGramLM.train(["a </s> b"], order=2)


def test_score_rejects_bad_queries():
    lm = NGramLM.train(["a b"], order=2)
    with pytest.raises(ValueError, match="tuple"):
        lm.score("a", "b")  # history as a str
    with pytest.raises(ValueError, match="whitespace"):
        lm.score((), "a b")
    with pytest.raises(ValueError):
        lm.score((), "")
    with pytest.raises(ValueError, match="<s>"):
        lm.score((), "<s>")


def test_load_rejects_other_files(tmp_path):
    p = tmp_path / "x.json"
    p.write_text('{"hello": 1}')
    with pytest.raises(ValueError, match="NGramLM.save"):
        NGramLM.load(p)


def test_starts_word_is_any_word_of_the_lexicon_beginning_with_the_prefix():
    from reference.lm import InterpolatedLM
    a = NGramLM.train(toy_corpus(100, seed=8), order=2)
    b = NGramLM.train(["a zebra plays the violin", "violins play"], order=2)
    mix = InterpolatedLM([a, b], [0.5, 0.5])
    assert mix.lexicon == a.vocab | b.vocab
    rng = random.Random(3)
    queries = {w[:k] for w in mix.lexicon for k in range(len(w) + 1)}
    queries |= {"".join(rng.choice("aeioustvz") for _ in range(rng.randint(1, 5))) for _ in range(300)}
    for lm in (a, b, mix):
        for q in queries:
            assert lm.starts_word(q) == any(w.startswith(q) for w in lm.lexicon), (lm, q)


def test_sphinx_lexicon_is_the_dictionary_words_the_model_knows(tmp_path):
    pytest.importorskip("pocketsphinx")
    from reference.lm import SphinxLM
    lm = NGramLM.train(toy_corpus(300, seed=4), order=3)
    lm.to_arpa(tmp_path / "lm.arpa")
    (tmp_path / "dict").write_text("cat K AE T\ncat(2) K AA T\ndog D AO G\nzebra Z IY B R AH\n")
    assert SphinxLM(tmp_path / "lm.arpa").lexicon is None
    sphinx = SphinxLM(tmp_path / "lm.arpa", dictionary=tmp_path / "dict")
    assert sphinx.lexicon == {"cat", "dog"}          # "zebra" is not in the model
    assert sphinx.starts_word("ca") and not sphinx.starts_word("ze")
    with pytest.raises(FileNotFoundError, match="dictionary"):
        SphinxLM(tmp_path / "lm.arpa", dictionary=tmp_path / "missing.dict")
