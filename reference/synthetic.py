"""Synthetic speech: learnable, not trivial, deterministic on every machine.

The course needs speech that a CPU can learn in a minute, yet that still needs the whole
Deep Speech 2 machinery.  One pure tone per letter (a common demo) is linearly separable
frame by frame: nothing about context, speakers or noise is learnt.  Here every letter is a
small *phone* rendered by a source-filter model, the way formant synthesisers work:

* a voiced source (harmonics of a speaker-dependent, drifting pitch ``f0``) shaped by three
  formant resonances, and/or a noise source shaped by a frequency band (fricatives, bursts);
* stops are a closure (silence or a low voice bar) followed by a burst;
* parameter tracks are smoothed across letter boundaries (co-articulation: the frames
  of one letter depend on its neighbours);
* each *speaker* has its own pitch, vocal-tract scale (formants x 0.9-1.1), speaking rate,
  breathiness and loudness; utterances get background noise at a random SNR.

So a model must learn spectral shapes under speaker variation, durations and transitions:
a small but honest speech recognition problem.  Everything is drawn from
``numpy.random.Generator(PCG64(seed))`` and computed in float64, then rounded to float32.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .data import Sample
from .text import ALPHABETS

__all__ = ["PHONES", "SyntheticSpeaker", "random_speaker", "generate_synthetic_audio",
           "generate_synthetic_dataset", "DEMO_WORDS"]

# A letter is a list of segments: (duration_ms, voice_amp, noise_amp, noise_center_hz, noise_bw_octaves, (F1, F2, F3)).
# Vowels are voiced with formants from Peterson & Barney (1952); fricatives are band noise;
# stops are a closure then a burst.
_V = lambda f, d=110: [(d, 1.0, 0.0, 0, 1.0, f)]
_FRIC = lambda c, bw, d=90, voice=0.0, f=(300, 1500, 2500): [(d, voice, 0.55, c, bw, f)]
_STOP = lambda c, voice, f: [(45, 0.12 * voice, 0.0, 0, 1.0, f), (20, 0.4 * voice, 0.9, c, 0.6, f), (25, 0.6 * voice, 0.15, c, 1.0, f)]
PHONES: dict[str, list[tuple]] = {
    "a": _V((730, 1090, 2440), 120), "e": _V((530, 1840, 2480)), "i": _V((270, 2290, 3010), 100),
    "o": _V((570, 840, 2410), 120), "u": _V((300, 870, 2240)), "y": _V((390, 1990, 2550), 90),
    "b": _STOP(600, 1.0, (250, 800, 2200)), "d": _STOP(3500, 1.0, (250, 1700, 2600)),
    "g": _STOP(1900, 1.0, (250, 2000, 2400)), "p": _STOP(900, 0.0, (250, 800, 2200)),
    "t": _STOP(4700, 0.0, (250, 1700, 2600)), "k": _STOP(2300, 0.0, (250, 2000, 2400)),
    "c": _STOP(2600, 0.0, (250, 2000, 2400)) + _FRIC(5200, 0.5, 50),
    "q": _STOP(1300, 0.0, (250, 700, 2200)) + _V((300, 650, 2200), 50),
    "x": _STOP(2000, 0.0, (250, 1800, 2500)) + _FRIC(6200, 0.4, 70),
    "f": _FRIC(4000, 1.8, 100), "s": _FRIC(6500, 0.5), "h": _FRIC(1600, 1.5, 70, f=(600, 1400, 2500)),
    "v": _FRIC(3800, 1.6, 80, voice=0.6, f=(250, 1200, 2300)), "z": _FRIC(5800, 0.5, 90, voice=0.6, f=(250, 1500, 2500)),
    "j": _STOP(2500, 1.0, (280, 2100, 2700)) + _FRIC(2800, 0.6, 60, voice=0.7, f=(280, 2100, 2700)),
    "l": [(80, 0.7, 0.0, 0, 1.0, (360, 1200, 2900))], "r": [(85, 0.8, 0.0, 0, 1.0, (420, 1250, 1650))],
    "m": [(85, 0.5, 0.0, 0, 1.0, (250, 1000, 2200))], "n": [(80, 0.5, 0.0, 0, 1.0, (250, 1700, 2600))],
    "w": [(70, 0.8, 0.0, 0, 1.0, (300, 650, 2200))],
    "'": [(40, 0.0, 0.0, 0, 1.0, (500, 1500, 2500)), (30, 0.5, 0.0, 0, 1.0, (500, 1500, 2500))],
}
_SPACE_MS = (70.0, 160.0)      # pause between words
_FORMANT_BW = (90.0, 110.0, 170.0)
_NOISE_BANDS = np.geomspace(300.0, 7500.0, 14)   # centres of the noise filter bank (Hz)
assert set(PHONES) == set(ALPHABETS["english"]) - {" "}, "every non-space symbol needs a phone"

# A small vocabulary of common words for the demo and the lessons (letters only).
DEMO_WORDS = (
    "the of and to in is you that it he was for on are as with his they at be this have from or one "
    "had by word but not what all were we when your can said there use an each which she do how their "
    "if will up other about out many then them these so some her would make like him into time has look "
    "two more write go see number no way could people my than first water been call who oil its now find "
    "long down day did get come made may part cat dog sun red big run yes box fox quiz jump zero seven"
).split()


@dataclass(frozen=True)
class SyntheticSpeaker:
    """A voice: pitch (Hz), vocal-tract scale, speaking-rate factor, breathiness, loudness."""

    f0: float = 130.0
    tract: float = 1.0
    rate: float = 1.0
    breath: float = 0.05
    gain: float = 0.6
    name: str = "default"


def random_speaker(rng: np.random.Generator, name: str = "") -> SyntheticSpeaker:
    """Draw a speaker: f0 85-240 Hz, formants x 0.9-1.1, rate x 0.8-1.25."""
    return SyntheticSpeaker(f0=float(rng.uniform(85, 240)), tract=float(rng.uniform(0.9, 1.1)),
                            rate=float(rng.uniform(0.8, 1.25)), breath=float(rng.uniform(0.0, 0.12)),
                            gain=float(rng.uniform(0.3, 0.8)), name=name)


def _tracks(text: str, speaker: SyntheticSpeaker, sr: int, rng: np.random.Generator):
    """Per-sample parameter tracks of an utterance, smoothed across segment boundaries."""
    segs = [(rng.uniform(40, 80), 0.0, 0.0, 0, 1.0, (500, 1500, 2500))]          # leading silence
    for ch in text:
        if ch == " ":
            segs.append((rng.uniform(*_SPACE_MS), 0.0, 0.0, 0, 1.0, (500, 1500, 2500)))
        else:
            for seg in PHONES[ch]:
                d = seg[0] * rng.uniform(0.85, 1.2)                          # per-letter duration jitter
                segs.append((d,) + tuple(seg[1:]))
    segs.append((rng.uniform(40, 80), 0.0, 0.0, 0, 1.0, (500, 1500, 2500)))      # trailing silence
    n = [max(1, int(round(s[0] / speaker.rate * sr / 1000.0))) for s in segs]
    rep = lambda k: np.repeat(np.array([s[k] for s in segs], dtype=np.float64), n)
    voice, noise, center, bw = rep(1), rep(2), rep(3), rep(4)
    formants = np.repeat(np.array([s[5] for s in segs], dtype=np.float64), n, axis=0) * speaker.tract
    center = np.where(center > 0, center * speaker.tract, 1000.0)
    # co-articulation: smooth every track with a ~20 ms Hann kernel
    k = np.hanning(int(0.02 * sr) | 1)
    k /= k.sum()
    sm = lambda a: np.convolve(np.pad(a, (len(k) // 2, len(k) // 2), mode="edge"), k, mode="valid")
    return sm(voice), sm(noise), sm(center), sm(bw), np.stack([sm(formants[:, i]) for i in range(3)], 1)


def _render(text: str, speaker: SyntheticSpeaker, sr: int, rng: np.random.Generator) -> np.ndarray:
    voice, noise, center, bw, formants = _tracks(text, speaker, sr, rng)
    N = voice.shape[0]
    t = np.arange(N) / sr
    # pitch: speaker's f0 with a slow declination and a little vibrato
    f0 = speaker.f0 * (1.0 + 0.08 * np.cos(2 * np.pi * rng.uniform(0.3, 0.8) * t + rng.uniform(0, 2 * np.pi)) - 0.1 * t / max(t[-1], 1e-3))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    # harmonic amplitudes at a 2.5 ms control rate, from the formant resonances
    hop = max(1, int(0.0025 * sr))
    ctrl = np.arange(0, N, hop)
    K = int(0.47 * sr / f0.min())                                                    # harmonics below Nyquist
    harm = np.arange(1, K + 1)[:, None] * f0[ctrl][None, :]                          # (K, C) Hz
    gain = np.zeros_like(harm)
    for i, fbw in enumerate(_FORMANT_BW):
        gain += (1.0 / (1 + i)) / (1.0 + ((harm - formants[ctrl, i][None, :]) / fbw) ** 2)
    gain *= (harm < 0.47 * sr) / np.sqrt(np.arange(1, K + 1))[:, None]               # tilt, no aliasing
    # sum_k gain_k(t) sin(k phase(t)), with z^k built by repeated multiplication
    z = np.exp(1j * phase)
    zk = np.ones(N, dtype=np.complex128)
    voiced = np.zeros(N)
    for k in range(K):
        zk *= z
        voiced += np.repeat(gain[k], hop)[:N] * zk.imag
    voiced *= voice / (np.abs(voiced).max() + 1e-9)
    # band noise: a fixed filter bank mixed by a Gaussian (in octaves) around the track's centre
    white = rng.standard_normal(N)
    spec = np.fft.rfft(white)
    freqs = np.fft.rfftfreq(N, 1.0 / sr)
    shapes = np.exp(-0.5 * (np.log2(np.maximum(freqs, 1.0)[None, :] / _NOISE_BANDS[:, None]) / 0.25) ** 2)
    bands = np.fft.irfft(spec[None, :] * shapes, n=N, axis=1)                          # (nb, N)
    bands /= bands.std(axis=1, keepdims=True) + 1e-9
    dist = np.log2(_NOISE_BANDS[:, None] / center[None, :]) / np.maximum(bw[None, :], 0.2)
    noisy = (np.exp(-0.5 * dist**2) * bands).sum(0)
    noisy *= noise / (np.abs(noisy).max() + 1e-9)
    breath = speaker.breath * voice * rng.standard_normal(N) * 0.3
    return voiced + noisy + breath


def generate_synthetic_audio(text: str, sample_rate: int = 16000, seed: int = 0,
                             speaker: SyntheticSpeaker | None = None, snr_db: float | None = None) -> torch.Tensor:
    """Render ``text`` (letters, space, apostrophe) as synthetic speech.

    Args:
        text: what to say; lower-cased; other characters are a ``ValueError``.
        sample_rate: output rate (Hz).
        seed: seeds durations, pitch movement and noise (and the speaker, when ``speaker`` is None).
        speaker: a :class:`SyntheticSpeaker`; ``None`` draws one from ``seed``.
        snr_db: background white noise at this signal-to-noise ratio; ``None`` for none.

    Returns:
        ``(N,)`` float32 tensor in [-1, 1].
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"text must be a non-empty str, got {text!r}")
    text = text.lower()
    bad = sorted({c for c in text if c != " " and c not in PHONES})
    if bad:
        raise ValueError(f"cannot synthesize characters {bad} in {text!r}: expected letters a-z, space or apostrophe")
    if not isinstance(sample_rate, int) or sample_rate < 8000:
        raise ValueError(f"sample_rate must be an int >= 8000, got {sample_rate!r}")
    rng = np.random.Generator(np.random.PCG64(seed))
    if speaker is None:
        speaker = random_speaker(rng)
    y = _render(" ".join(text.split()), speaker, sample_rate, rng)
    if snr_db is not None:
        p = np.mean(y**2)
        y = y + rng.standard_normal(y.shape[0]) * np.sqrt(p / 10 ** (snr_db / 10.0))
    y = y * (speaker.gain / (np.abs(y).max() + 1e-9))
    return torch.from_numpy(np.clip(y, -1.0, 1.0).astype(np.float32))


def generate_synthetic_dataset(n: int, min_words: int = 1, max_words: int = 2, seed: int = 0,
                               sample_rate: int = 16000, words=DEMO_WORDS, n_speakers: int = 24,
                               speakers: list[SyntheticSpeaker] | None = None,
                               snr_db: tuple[float, float] | None = (15.0, 40.0),
                               noise_fraction: float = 0.5) -> list[Sample]:
    """``n`` utterances of ``min_words``-``max_words`` random words from ``words``.

    Speakers come from a pool of ``n_speakers`` drawn from ``seed`` (or pass ``speakers``,
    e.g. to hold voices out); a ``noise_fraction`` of utterances get white noise at an SNR
    drawn from ``snr_db``.  Same arguments, same samples, on every machine.
    """
    if n < 0 or not 1 <= min_words <= max_words:
        raise ValueError(f"need n >= 0 and 1 <= min_words <= max_words, got n={n}, min_words={min_words}, max_words={max_words}")
    rng = np.random.Generator(np.random.PCG64([seed, 1]))
    if speakers is None:
        speakers = [random_speaker(rng, name=f"synth-{seed}-{i}") for i in range(n_speakers)]
    samples = []
    for i in range(n):
        k = int(rng.integers(min_words, max_words + 1))
        text = " ".join(words[int(j)] for j in rng.integers(0, len(words), size=k))
        spk = speakers[int(rng.integers(0, len(speakers)))]
        snr = float(rng.uniform(*snr_db)) if snr_db is not None and rng.random() < noise_fraction else None
        audio = generate_synthetic_audio(text, sample_rate, seed=int(rng.integers(0, 2**31)), speaker=spk, snr_db=snr)
        samples.append(Sample(audio, text, sample_rate, spk.name))
    return samples
