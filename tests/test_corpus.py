"""eSpeak NG synthesis (reference/espeak.py) and the synthesized-speech corpus (reference/corpus.py).

Planning tests need no eSpeak.  Tests that synthesize are skipped where ``espeakng-loader``
is not installed, and synthesize only a few dozen short clips.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from reference import corpus, espeak
from reference.corpus import (HELD_OUT_VOICES, SPLITS, TRAIN_VOICES, VOCABULARY, add_noise, build_corpus,
                              colored_noise, make_sentences, plan_corpus)
from reference.data import Sample
from reference.espeak import EspeakUnavailable
from reference.text import CharEncoder

needs_espeak = pytest.mark.skipif(not espeak.espeak_available(), reason="espeakng-loader is not installed")
# Bit-exact re-synthesis needs each batch in a forked child (not on Windows): see reference/espeak.py.
bit_exact = pytest.mark.skipif(not espeak.ISOLATED, reason="bit-exact synthesis needs os.fork")

SMALL = dict(n_train=10, n_test=4, seed=3, progress=False)


# --------------------------------------------------------------------------- vocabulary and plan


def test_vocabulary_is_a_few_hundred_distinct_encodable_words():
    assert 300 <= len(VOCABULARY) <= 400
    assert len(set(VOCABULARY)) == len(VOCABULARY)
    enc = CharEncoder("english")
    for word in VOCABULARY:
        assert set(word) <= set("abcdefghijklmnopqrstuvwxyz'"), word
        assert enc.decode(enc.encode(word)) == word


def test_voice_lists_are_disjoint_and_held_out_variants_and_accents_are_unseen():
    assert not set(TRAIN_VOICES) & set(HELD_OUT_VOICES)
    train_variants = {v.partition("+")[2] for v in TRAIN_VOICES}
    train_accents = {v.partition("+")[0] for v in TRAIN_VOICES}
    for voice in HELD_OUT_VOICES:
        accent, _, variant = voice.partition("+")
        assert (variant and variant not in train_variants) or accent not in train_accents, voice


def test_plan_is_deterministic_for_a_seed_and_changes_with_it():
    a, b = plan_corpus(n_train=200, n_test=50, seed=7), plan_corpus(n_train=200, n_test=50, seed=7)
    c = plan_corpus(n_train=200, n_test=50, seed=8)
    assert a == b
    assert [s.text for s in a["train"]] != [s.text for s in c["train"]]
    assert {k: len(v) for k, v in a.items()} == {"train": 200, "test_sentences": 50, "test_voices": 50}


def test_plan_holds_out_sentences_and_voices():
    plan = plan_corpus(n_train=3000, n_test=300, seed=0)
    train_texts = {s.text for s in plan["train"]}
    for split in ("test_sentences", "test_voices"):
        assert not train_texts & {s.text for s in plan[split]}, split
    assert {s.voice for s in plan["train"]} == set(TRAIN_VOICES)
    assert {s.voice for s in plan["test_sentences"]} <= set(TRAIN_VOICES)
    assert {s.voice for s in plan["test_voices"]} == set(HELD_OUT_VOICES)


def test_plan_draws_lengths_rates_and_pitches_in_range():
    plan = plan_corpus(n_train=600, n_test=100, seed=1)
    specs = [s for split in SPLITS for s in plan[split]]
    assert {len(s.text.split()) for s in specs} == {1, 2, 3, 4, 5, 6}
    assert all(130 <= s.rate <= 260 and 20 <= s.pitch <= 80 for s in specs)
    assert all(set(s.text.split()) <= set(VOCABULARY) for s in specs)


def test_augmentation_is_for_training_only_and_noise_hits_40_percent():
    plan = plan_corpus(n_train=500, n_test=60, seed=2)
    noisy = [s for s in plan["train"] if s.noise]
    assert len(noisy) == 200                                        # exactly 40 %
    assert all(10.0 <= s.snr_db <= 30.0 and s.noise in ("white", "pink", "brown") for s in noisy)
    assert all(s.snr_db is None for s in plan["train"] if not s.noise)
    assert {s.noise for s in noisy} == {"white", "pink", "brown"}
    speeds = [s.speed for s in plan["train"]]
    assert min(speeds) >= 0.9 * 0.997 and max(speeds) <= 1.1 * 1.003 and len(set(speeds)) > 10
    assert all(float(16000 / s).is_integer() or abs(16000 / s - round(16000 / s)) < 1e-6 for s in speeds)
    for split in ("test_sentences", "test_voices"):
        assert all(s.speed == 1.0 and not s.noise for s in plan[split])


def test_plan_rejects_unknown_or_inconsistent_parameters():
    with pytest.raises(ValueError, match="unknown corpus parameter"):
        plan_corpus(n_train=1, n_tset=1)
    with pytest.raises(ValueError, match="disjoint"):
        plan_corpus(n_train=1, n_test=1, held_out_voices=["en-us"])
    with pytest.raises(ValueError, match="min_words"):
        plan_corpus(n_train=1, n_test=1, min_words=3, max_words=2)
    with pytest.raises(ValueError, match="rate_range"):
        plan_corpus(n_train=1, n_test=1, rate_range=[50, 600])


def test_make_sentences_rejects_excluded_sentences():
    rng = np.random.Generator(np.random.PCG64(0))
    out = make_sentences(50, rng, 1, 1, exclude={"a"}, vocabulary=["a", "b"])
    assert out == ["b"] * 50


def test_add_noise_reaches_the_requested_snr():
    rng = np.random.Generator(np.random.PCG64(0))
    audio = 0.3 * np.sin(np.arange(16000) * 0.05)
    for kind in ("white", "pink", "brown"):
        noisy = add_noise(audio, 15.0, kind, rng)
        noise = noisy - audio
        snr = 10 * np.log10(np.mean(audio ** 2) / np.mean(noise ** 2))
        assert snr == pytest.approx(15.0, abs=1e-6)


def test_colored_noise_spectra_tilt_as_named():
    rng = np.random.Generator(np.random.PCG64(1))
    low_to_high = {}
    for kind in ("white", "pink", "brown"):
        x = colored_noise(32000, kind, rng)
        assert abs(x.mean()) < 1e-9 and x.std() == pytest.approx(1.0)
        power = np.abs(np.fft.rfft(x)) ** 2
        freqs = np.fft.rfftfreq(32000, 1 / 16000)
        low_to_high[kind] = power[(freqs > 100) & (freqs < 500)].mean() / power[(freqs > 4000) & (freqs < 8000)].mean()
    assert 0.5 < low_to_high["white"] < 2
    assert low_to_high["pink"] > 5 and low_to_high["brown"] > 10 * low_to_high["pink"]


# --------------------------------------------------------------------------- eSpeak


@needs_espeak
def test_synthesize_returns_non_silent_16k_audio():
    audio = espeak.synthesize("hello world")
    assert audio.dtype == torch.float32 and audio.dim() == 1
    assert 0.4 < audio.numel() / 16000 < 2.0
    assert audio.abs().max() <= 1.0 and audio.pow(2).mean().sqrt() > 0.02
    native = espeak.synthesize("hello world", sample_rate=espeak.native_sample_rate())   # 22050 Hz, no resampling
    assert audio.numel() == math.ceil(native.numel() * 16000 / 22050)


@needs_espeak
@bit_exact
def test_synthesize_is_deterministic_even_after_other_calls():
    first = espeak.synthesize("the green tree", voice="en-us+f2", rate=200, pitch=30)
    espeak.synthesize("something else entirely", voice="en-gb-x-rp", rate=300, pitch=80)
    again = espeak.synthesize("the green tree", voice="en-us+f2", rate=200, pitch=30)
    assert torch.equal(first, again)


@needs_espeak
@bit_exact
def test_synthesize_is_identical_in_a_fresh_process(repo_root):
    # en-us+f2 adds breath noise from eSpeak's clock-seeded generator: this fails without reseeding.
    code = ("import hashlib; from reference.espeak import synthesize; "
            "print(hashlib.sha256(synthesize('one green tree', voice='en-us+f2', rate=150).numpy().tobytes()).hexdigest())")
    out = subprocess.run([sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    here = espeak.synthesize("one green tree", voice="en-us+f2", rate=150)
    assert out.stdout.strip() == hashlib.sha256(here.numpy().tobytes()).hexdigest()


@needs_espeak
def test_voices_rates_and_pitches_change_the_audio():
    base = espeak.synthesize("seven yellow birds")
    for kwargs in (dict(voice="en-us+f2"), dict(voice="en-gb-x-rp"), dict(voice="en-us+klatt"), dict(pitch=80)):
        other = espeak.synthesize("seven yellow birds", **kwargs)
        assert other.shape != base.shape or not torch.allclose(other, base, atol=1e-3), kwargs
    assert espeak.synthesize("seven yellow birds", rate=300).numel() < 0.8 * base.numel()


@needs_espeak
@pytest.mark.parametrize("voice", ["en-gb", "xx-nonsense", "en-gb+m3"])
def test_unknown_voice_is_a_value_error(voice):
    with pytest.raises(ValueError, match="unknown eSpeak voice"):
        espeak.synthesize("hello", voice=voice)


@needs_espeak
@pytest.mark.parametrize("kwargs, match", [
    (dict(voice="en-us+zz"), "variant"), (dict(rate=20), "rate"), (dict(pitch=101), "pitch"),
    (dict(text="  ...  "), "text"), (dict(voice=""), "voice"),
])
def test_bad_synthesis_arguments_are_value_errors(kwargs, match):
    args = dict(text="hello") | kwargs
    with pytest.raises(ValueError, match=match):
        espeak.synthesize(**args)


@needs_espeak
def test_every_corpus_voice_is_known_to_espeak():
    """Every accent synthesizes, every variant is a file of eSpeak's, and so does a sample of pairs."""
    voices = TRAIN_VOICES + HELD_OUT_VOICES
    variants = set(espeak.list_variants())
    assert {v.partition("+")[2] for v in voices} - {""} <= variants
    for accent in sorted({v.partition("+")[0] for v in voices}):
        assert espeak.check_voice(accent) == accent
    for voice in HELD_OUT_VOICES + TRAIN_VOICES[::37]:
        assert espeak.check_voice(voice) == voice


def test_training_voices_cross_accents_with_variants():
    from reference.corpus import TRAIN_ACCENTS, TRAIN_VARIANTS
    assert len(TRAIN_VOICES) == len(set(TRAIN_VOICES)) == len(TRAIN_ACCENTS) * len(TRAIN_VARIANTS)
    assert {v.partition("+")[0] for v in TRAIN_VOICES} == set(TRAIN_ACCENTS)


@needs_espeak
def test_vocabulary_has_no_homophones():
    for voice in ("en-us", "en-gb-x-rp"):
        phonemes = [p.replace("'", "").replace(",", "") for p in espeak.phonemize(VOCABULARY, voice)]
        seen: dict[str, str] = {}
        for word, p in zip(VOCABULARY, phonemes):
            assert p not in seen, f"{word!r} and {seen[p]!r} sound the same in {voice} ({p})"
            seen[p] = word


# --------------------------------------------------------------------------- building and caching


class _CountingBatches:
    """Wraps espeak.start_batch to count the utterances sent to eSpeak."""

    def __init__(self, monkeypatch):
        self.utterances = 0
        original = espeak.start_batch

        def counting(utts):
            utts = list(utts)
            self.utterances += len(utts)
            return original(utts)

        monkeypatch.setattr(espeak, "start_batch", counting)


def _audio(splits):
    return {k: [s.audio for s in v] for k, v in splits.items()}


def _same(a, b) -> bool:
    return all(len(a[k]) == len(b[k]) and all(torch.equal(x, y) for x, y in zip(a[k], b[k])) for k in SPLITS)


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    if not espeak.espeak_available():
        pytest.skip("espeakng-loader is not installed")
    return root, build_corpus(root, **SMALL)


@needs_espeak
def test_built_corpus_matches_its_plan(small_corpus):
    _, splits = small_corpus
    plan = plan_corpus(n_train=10, n_test=4, seed=3)
    assert set(splits) == set(SPLITS)
    for split in SPLITS:
        assert [s.transcript for s in splits[split]] == [p.text for p in plan[split]]
        assert [s.speaker for s in splits[split]] == [p.voice for p in plan[split]]
        for s in splits[split]:
            assert isinstance(s, Sample) and s.sample_rate == 16000 and s.audio.dtype == torch.float32
            assert 0.2 < s.duration < 6 and s.audio.abs().max() <= 1 and s.audio.abs().max() > 0.05


@needs_espeak
@bit_exact
def test_corpus_is_deterministic_for_a_seed(small_corpus, tmp_path):
    _, first = small_corpus
    again = build_corpus(tmp_path, workers=2, **SMALL)               # fresh cache, two children at once
    assert _same(_audio(first), _audio(again))


@needs_espeak
def test_cache_is_reused_without_synthesizing(small_corpus, monkeypatch):
    root, first = small_corpus
    counter = _CountingBatches(monkeypatch)
    again = build_corpus(root, **SMALL)
    assert counter.utterances == 0
    assert _same(_audio(first), _audio(again))
    folder = corpus.corpus_dir(root, n_train=10, n_test=4, seed=3)
    manifest = json.loads(open(os.path.join(folder, "manifest.json")).read())
    assert manifest["counts"] == {"train": 10, "test_sentences": 4, "test_voices": 4}
    assert manifest["params"]["seed"] == 3 and manifest["version"] == corpus.CORPUS_VERSION
    assert all(len(f["sha256"]) == 64 for f in manifest["files"].values())


@needs_espeak
def test_corrupt_or_missing_split_is_rebuilt_alone(small_corpus, monkeypatch, capsys):
    root, first = small_corpus
    folder = corpus.corpus_dir(root, n_train=10, n_test=4, seed=3)
    train_file = os.path.join(folder, "train.pt")
    blob = bytearray(open(train_file, "rb").read())
    blob[len(blob) // 2] ^= 0xFF                                     # flip one byte of audio
    open(train_file, "wb").write(bytes(blob))
    os.remove(os.path.join(folder, "test_voices.pt"))
    counter = _CountingBatches(monkeypatch)
    again = build_corpus(root, **SMALL)
    assert counter.utterances == 10 + 4                              # train and test_voices, not test_sentences
    assert "checksum" in capsys.readouterr().err
    assert _same(_audio(first), _audio(again)) or not espeak.ISOLATED
    counter.utterances = 0
    build_corpus(root, **SMALL)
    assert counter.utterances == 0                                   # and the repaired cache is valid


@needs_espeak
def test_unreadable_manifest_rebuilds_everything(small_corpus, monkeypatch):
    root, first = small_corpus
    folder = corpus.corpus_dir(root, n_train=10, n_test=4, seed=3)
    with open(os.path.join(folder, "manifest.json"), "w") as f:
        f.write("{ not json")
    counter = _CountingBatches(monkeypatch)
    again = build_corpus(root, **SMALL)
    assert counter.utterances == 18
    assert _same(_audio(first), _audio(again)) or not espeak.ISOLATED


@needs_espeak
def test_different_parameters_build_a_different_corpus(small_corpus, monkeypatch):
    root, first = small_corpus
    counter = _CountingBatches(monkeypatch)
    other = build_corpus(root, **(SMALL | dict(seed=4)))
    assert counter.utterances == 18
    assert [s.transcript for s in other["train"]] != [s.transcript for s in first["train"]]
    assert corpus.corpus_dir(root, n_train=10, n_test=4, seed=4) != corpus.corpus_dir(root, n_train=10, n_test=4, seed=3)


@needs_espeak
def test_noise_goes_to_40_percent_of_training_clips(small_corpus):
    root, _ = small_corpus
    payload = torch.load(os.path.join(corpus.corpus_dir(root, n_train=10, n_test=4, seed=3), "train.pt"))
    assert sum(bool(n) for n in payload["noise"]) == 4
    for split in ("test_sentences", "test_voices"):
        payload = torch.load(os.path.join(corpus.corpus_dir(root, n_train=10, n_test=4, seed=3), f"{split}.pt"))
        assert not any(payload["noise"])


# --------------------------------------------------------------------------- without eSpeak


def test_without_espeak_build_corpus_raises_or_falls_back(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(espeak, "espeak_available", lambda: False)
    with pytest.raises(EspeakUnavailable, match="pip install espeakng-loader"):
        build_corpus(tmp_path, n_train=3, n_test=2, progress=False)

    calls = []

    def fake(n, min_words, max_words, seed=0):
        calls.append((n, min_words, max_words, seed))
        return [Sample(torch.zeros(1600), "fake", 16000, "synthetic")] * n

    splits = build_corpus(tmp_path, n_train=3, n_test=2, seed=5, progress=False, fallback=True, synthetic=fake)
    assert {k: len(v) for k, v in splits.items()} == {"train": 3, "test_sentences": 2, "test_voices": 2}
    assert calls == [(3, 1, 6, 5), (2, 1, 6, 6), (2, 1, 6, 7)]
    assert "falling back" in capsys.readouterr().err
    assert not os.listdir(tmp_path)                                  # nothing cached


def test_fallback_defaults_to_the_synthetic_generator(monkeypatch, tmp_path):
    monkeypatch.setattr(espeak, "espeak_available", lambda: False)
    splits = build_corpus(tmp_path, n_train=2, n_test=1, progress=False, fallback=True, max_words=2)
    assert {k: len(v) for k, v in splits.items()} == {"train": 2, "test_sentences": 1, "test_voices": 1}
    assert all(s.sample_rate == 16000 and s.audio.dim() == 1 for v in splits.values() for s in v)
