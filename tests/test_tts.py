"""reference/tts.py: SVOX Pico and RHVoice through ctypes, from Debian's non-free packages.

The packages are fetched with ``apt-get download`` through a private sources list (about 40 MB, no root);
the tests skip with the reason where apt cannot fetch them.  The checks are about the sound, measured here
independently of the engines: durations, a pitch estimated by autocorrelation, and equality of samples.
"""
from __future__ import annotations

import numpy as np
import pytest

from reference.tts import PICO_VOICES, RHVOICE_VOICES, PicoVoice, RHVoiceEngine, synthesize_many

TEXT = "please leave a message after the tone"


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    from reference.prepare import download, extract
    from reference.tts import PICO_PACKAGES, RHVOICE_PACKAGES
    try:
        debs = download(tmp_path_factory.mktemp("debs"), PICO_PACKAGES + RHVOICE_PACKAGES, non_free=True)
    except RuntimeError as err:
        pytest.skip(f"apt-get cannot fetch Debian's non-free packages here: {str(err)[:200]}")
    return extract(debs, tmp_path_factory.mktemp("root"))


def f0(audio: np.ndarray, rate: int) -> float:
    """Median fundamental frequency of the loud 40 ms frames, by autocorrelation (60-400 Hz)."""
    x = audio.astype(np.float64) / 32768.0
    n = int(0.04 * rate)
    lo, hi = rate // 400, rate // 60
    out = []
    for s in range(0, len(x) - n, n):
        w = x[s : s + n] - x[s : s + n].mean()
        if np.sqrt(np.mean(w ** 2)) < 0.02:
            continue
        c = np.correlate(w, w, "full")[n - 1 :]
        out.append(rate / (lo + int(np.argmax(c[lo:hi]))))
    return float(np.median(out))


def test_pico_speaks_both_voices_and_pitch_and_speed_do_what_they_say(root):
    for language in PICO_VOICES:
        with PicoVoice(root, language) as pico:
            a = pico.say(TEXT)
            assert a.dtype == np.int16 and 1.0 < len(a) / 16000 < 5.0 and np.abs(a).max() > 3000, language
            slow, fast = pico.say(TEXT, speed=80), pico.say(TEXT, speed=120)
            assert 1.25 < len(slow) / len(fast) < 1.75, language           # 120 / 80 = 1.5
            low, high = f0(pico.say(TEXT, pitch=80), 16000), f0(pico.say(TEXT, pitch=125), 16000)
            assert 1.3 < high / low < 1.8, (language, low, high)           # 125 / 80 = 1.56


def test_pico_gives_the_same_samples_for_the_same_text(root):
    """Pico's noise carries over between texts unless the engine is reset; say() resets it."""
    with PicoVoice(root, "en-US") as pico:
        first = pico.say(TEXT)
        pico.say("something else entirely")
        assert np.array_equal(first, pico.say(TEXT))
    with PicoVoice(root, "en-US") as pico:
        assert np.array_equal(first, pico.say(TEXT))


def test_pico_rejects_what_it_cannot_do(root):
    with pytest.raises(ValueError, match="fr-FR"):
        PicoVoice(root, "fr-FR")
    with PicoVoice(root, "en-GB") as pico:
        with pytest.raises(ValueError, match="pitch"):
            pico.say(TEXT, pitch=300)
    with pytest.raises(RuntimeError, match="closed"):
        pico.say(TEXT)
    with pytest.raises(FileNotFoundError, match="libttspico"):
        PicoVoice(root / "nowhere", "en-US")


def test_rhvoice_speaks_its_free_voices_and_rate_and_pitch_do_what_they_say(root):
    with RHVoiceEngine(root) as engine:
        assert set(RHVOICE_VOICES) <= set(engine.voices)
        assert not {"evgeniy-eng", "lyubov"} & set(RHVOICE_VOICES)       # CC-BY-NC-ND: not used
        for voice in RHVOICE_VOICES:
            a, rate = engine.say(TEXT, voice)
            assert rate == 24000 and 1.0 < len(a) / rate < 5.0 and np.abs(a).max() > 3000, voice
        slow, _ = engine.say(TEXT, "bdl", rate=-0.32)
        fast, _ = engine.say(TEXT, "bdl", rate=0.32)
        assert 1.3 < len(slow) / len(fast) < 1.8                         # 2 ** 0.64 = 1.56
        low, high = f0(engine.say(TEXT, "bdl", pitch=-0.4)[0], 24000), f0(engine.say(TEXT, "bdl", pitch=0.4)[0], 24000)
        assert 1.4 < high / low < 2.3, (low, high)                       # 2 ** 0.8 = 1.74
        assert np.array_equal(engine.say(TEXT, "clb")[0], engine.say(TEXT, "clb")[0])
        with pytest.raises(ValueError, match="nobody"):                  # RHVoice itself would pick another voice
            engine.say(TEXT, "nobody")
        with pytest.raises(ValueError, match="rate"):
            engine.say(TEXT, "alan", rate=2.0)


def test_synthesize_many_keeps_the_order_and_does_not_depend_on_the_workers(root):
    jobs = [("rhvoice", RHVOICE_VOICES[i % 4], f"message number {i}", 0.1 * (i % 3), -0.1) for i in range(9)]
    jobs += [("pico", "en-GB" if i % 2 else "en-US", f"message number {i}", 90 + i, 100) for i in range(7)]
    jobs = [jobs[i] for i in np.random.default_rng(0).permutation(len(jobs))]
    two = synthesize_many(root, jobs, workers=2, chunk=3)
    one = synthesize_many(root, jobs, workers=1, chunk=100)
    assert [r for _, r in two] == [16000 if j[0] == "pico" else 24000 for j in jobs]
    assert all(np.array_equal(a, b) for (a, _), (b, _) in zip(one, two))
    with RHVoiceEngine(root) as engine:                                  # and each equals the engine said alone
        k = next(i for i, j in enumerate(jobs) if j[0] == "rhvoice")
        assert np.array_equal(two[k][0], engine.say(*jobs[k][2:3], jobs[k][1], jobs[k][3], jobs[k][4])[0])
    with pytest.raises(ValueError, match="espeak"):
        synthesize_many(root, [("espeak", "en", "hi", 0, 0)])
    with pytest.raises(ValueError, match="lyubov"):
        synthesize_many(root, [("rhvoice", "lyubov", "hi", 0, 0)])


def test_missing_files_lists_what_is_not_there(root, tmp_path):
    from reference.tts import missing_files
    assert missing_files(root) == []
    missing = missing_files(tmp_path)
    assert any(m.endswith("libttspico.so.0") for m in missing) and any(m.endswith("voices/bdl") for m in missing)
