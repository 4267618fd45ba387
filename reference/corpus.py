"""A synthesized-speech corpus: eSpeak NG voices saying random sentences (DS2 section 5, in small).

DS2 trains on thousands of hours of speech from many speakers and makes it robust with
noise: section 5.2 adds noise to 40 % of the training utterances, chosen at random (more noise
made optimisation difficult, the paper reports).  A
laptop course cannot download that, but it can *make* a corpus with the same structure:

- **Sentences**: 1 to 6 words drawn uniformly, with replacement, from :data:`VOCABULARY`
  (348 common English words, letters a-z and apostrophe only, no two of them homophones).
- **Voices**: every utterance is said by one of :data:`TRAIN_VOICES` (6 accents x 45 speaker
  variants = 270 voices), at a random rate (130-260 words per minute) and pitch (20-80).
- **Augmentation**, training utterances only: speed perturbation by a factor in 0.90-1.10
  (resampling, so pitch and formants move with speed) on every utterance, and white, pink or brown
  noise at 10-30 dB SNR on exactly 40 % of them.
- **Splits**:

  ============== ======================================= ===================================
  split          sentences                               voices
  ============== ======================================= ===================================
  train          random, never a test sentence           :data:`TRAIN_VOICES`
  test_sentences held out: none of them is in train      :data:`TRAIN_VOICES` (seen)
  test_voices    held out: none of them is in train      :data:`HELD_OUT_VOICES` (unseen)
  ============== ======================================= ===================================

  Held-out sentences are guaranteed by construction: both test splits draw their sentences
  first, and every training sentence that equals one of them (the same words in the same
  order) is rejected and redrawn.  Test words are all in the vocabulary and appear in
  training inside other sentences.  The two test splits differ only in their voices, so
  the gap between their error rates measures generalisation to new voices.
  :data:`HELD_OUT_VOICES` holds one unseen variant of a seen accent (``en-us+m7``), one
  unseen variant of another seen accent (``en-gb-x-rp+f5``) and two unseen accents
  (``en-gb-scotland``, ``en-029+f2``); no held-out variant or accent occurs in training.
  The unseen accents are the hard part: eSpeak gives them other vowels (and other phonemes
  for some words), so they test pronunciations the network never heard, not just new timbres.

Everything is drawn from ``numpy`` PCG64 generators seeded from ``seed``, and eSpeak runs in
fresh forked children (see :mod:`reference.espeak`), so the same parameters give the same
corpus, sample for sample.  :func:`build_corpus` caches the corpus under ``root`` and checks
the cache with SHA-256 checksums.

    >>> splits = build_corpus("data_cache/espeak", n_train=2000, n_test=200)   # doctest: +SKIP
    >>> splits["train"][0]                                                      # doctest: +SKIP
    Sample(audio=tensor([...]), transcript='green money they', sample_rate=16000, speaker='en-us+f2')
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from collections import deque
from typing import Callable, NamedTuple, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from . import espeak as _espeak
from .audio import resample, trim_silence
from .data import Sample
from .espeak import EspeakUnavailable, Utterance

__all__ = [
    "VOCABULARY",
    "TRAIN_ACCENTS",
    "TRAIN_VARIANTS",
    "TRAIN_VOICES",
    "HELD_OUT_VOICES",
    "SPLITS",
    "CORPUS_VERSION",
    "UtteranceSpec",
    "make_sentences",
    "plan_corpus",
    "render_utterances",
    "add_noise",
    "colored_noise",
    "build_corpus",
    "corpus_dir",
]

CORPUS_VERSION = 1          # bump when the generation procedure changes: old caches are then rebuilt
SPLITS = ("train", "test_sentences", "test_voices")
SAMPLE_RATE = 16000
CHUNK_SIZE = 64             # utterances per forked eSpeak child; part of the output, so part of the cache key

# 348 common English words: function words, numbers, colours, nouns, verbs, adjectives and a few
# contractions.  Only one word of each homophone set is kept ("two", not "to" or "too"; "there",
# not "their"; "right", not "write"; "here", not "hear"; "eye", not "i"), so that without a
# language model every word can be told from its sound.  tests/test_corpus.py checks with
# eSpeak's phonemizer that no two words share a pronunciation in en-us, en-gb-x-rp and en.
VOCABULARY: tuple[str, ...] = tuple("""
the of and a in that it with as at this but his from they we she or an will my all would there
what so up out if about who which when can like them some could him into just than then now only
also after how well even because any these most us very where why never always again under over
still here
one two three four five six seven eight nine ten hundred
red blue green yellow black white brown orange purple pink gray
time year people way day man woman child world life hand part place case week company system
program question work number night point home water room mother father area money story fact
month lot right study book eye job word business side kind head house service friend power hour
game line end member law car city name team minute idea body information back parent face level
office door health person art war history party result change morning reason girl boy air
teacher family country school dog cat bird fish tree river road window table chair paper music
phone food bread apple coffee garden street train ship island
have do say go get make know think take see come want look use find give tell ask seem feel try
leave call keep let begin help talk turn start show play run move live believe hold bring happen
sit stand lose pay meet include continue set learn lead understand watch follow stop create speak
read allow add spend grow open walk win offer remember love consider appear buy wait serve send
expect build stay fall cut reach remain carry sing dance jump swim sleep drink cook clean close
good new first last long great little own other old big high different small large next early
young important few public bad same able happy cold hot warm fast slow soft hard easy dark light
quiet loud strong short tall free full simple
yes today tomorrow yesterday often maybe please thank sorry hello
don't can't it's i'm you're let's isn't didn't won't that's what's we'll
""".split())

# Voices heard in training: every pairing of a training accent with a training variant.  An
# eSpeak voice is an *accent* (pronunciation rules: which phonemes a word gets) plus a *variant*
# (the speaker: pitch range, formant scaling, roughness, synthesizer).  DS2 learns from
# thousands of speakers; the nearest this corpus gets is 6 accents x 45 variants = 270 voices.
TRAIN_ACCENTS: tuple[str, ...] = (
    "en-us",            # General American
    "en-gb-x-rp",       # British Received Pronunciation
    "en",               # eSpeak's default British English
    "en-us-nyc",        # New York City
    "en-gb-x-gbclan",   # Lancastrian (northern England)
    "en-gb-x-gbcwmd",   # West Midlands
)
# Human-sounding variants only (no robots, whispers, croaks or demons); m7 and f5 are held out.
TRAIN_VARIANTS: tuple[str, ...] = (
    "", "m1", "m2", "m3", "m4", "m5", "m6", "m8", "f1", "f2", "f3", "f4",
    "klatt", "klatt2", "klatt3", "klatt4",
    "Alex", "Andy", "Annie", "Denis", "Gene", "Jacky", "Lee", "Michael", "Mike", "Reed", "Storm",
    "adam", "aunty", "belinda", "benjamin", "caleb", "david", "edward", "grandma", "grandpa",
    "ian", "john", "linda", "max", "norbert", "paul", "robert", "steph", "travis",
)
TRAIN_VOICES: tuple[str, ...] = tuple(a + ("+" + v if v else "") for a in TRAIN_ACCENTS for v in TRAIN_VARIANTS)
# Voices never heard in training: unseen variants (m7, f5) of seen accents, and two accents that
# no training voice has (Scottish English; en-029, Caribbean English).
HELD_OUT_VOICES: tuple[str, ...] = ("en-us+m7", "en-gb-x-rp+f5", "en-gb-scotland", "en-029+f2")

class UtteranceSpec(NamedTuple):
    """Everything that determines one clip of the corpus.

    ``speed`` is the speed-perturbation factor (1.0: none; 1.1: 10 % faster and higher);
    ``noise`` is ``''`` (clean), ``'white'``, ``'pink'`` or ``'brown'``, at ``snr_db`` (None when
    clean); ``noise_seed`` seeds that utterance's noise.
    """

    text: str
    voice: str
    rate: int
    pitch: int
    speed: float = 1.0
    noise: str = ""
    snr_db: float | None = None
    noise_seed: int = 0


# --------------------------------------------------------------------------- planning


def _rng(seed: int, stream: int) -> np.random.Generator:
    """An independent PCG64 stream for ``(seed, stream)``: the same on every machine."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), int(stream)])))


def make_sentences(
    n: int,
    rng: np.random.Generator,
    min_words: int = 1,
    max_words: int = 6,
    exclude: frozenset | set = frozenset(),
    vocabulary: Sequence[str] = VOCABULARY,
) -> list[str]:
    """``n`` sentences of ``min_words..max_words`` words (uniform), words uniform with replacement.

    A sentence in ``exclude`` is rejected and redrawn (length and words), which is how training
    sentences avoid the held-out ones.
    """
    if not 1 <= min_words <= max_words:
        raise ValueError(f"need 1 <= min_words <= max_words, got {min_words} and {max_words}")
    if min_words == max_words and len(vocabulary) ** min_words <= len(exclude):
        raise ValueError(f"every {min_words}-word sentence is excluded; nothing left to draw")
    vocab = list(vocabulary)
    out: list[str] = []
    while len(out) < n:
        k = int(rng.integers(min_words, max_words + 1))
        sentence = " ".join(vocab[i] for i in rng.integers(0, len(vocab), size=k))
        if sentence not in exclude:
            out.append(sentence)
    return out


def _params(**kw) -> dict:
    """The parameters that define a corpus (and its cache key), with defaults filled in and checked."""
    p = dict(
        version=CORPUS_VERSION,
        n_train=10000,
        n_test=500,
        seed=0,
        min_words=1,
        max_words=6,
        rate_range=[130, 260],
        pitch_range=[20, 80],
        speed_range=[0.9, 1.1],
        noise_fraction=0.4,
        snr_range=[10.0, 30.0],
        noise_kinds=["white", "pink", "brown"],
        train_voices=list(TRAIN_VOICES),
        held_out_voices=list(HELD_OUT_VOICES),
        sample_rate=SAMPLE_RATE,
        chunk_size=CHUNK_SIZE,
    )
    for key, value in kw.items():
        if key not in p or key in ("version", "sample_rate", "chunk_size"):
            raise ValueError(f"unknown corpus parameter {key!r}; expected one of {sorted(set(p) - {'version', 'sample_rate', 'chunk_size'})}")
        p[key] = list(value) if isinstance(value, (tuple, list)) else value
    for key in ("n_train", "n_test", "seed", "min_words", "max_words"):
        if isinstance(p[key], bool) or not isinstance(p[key], (int, np.integer)) or p[key] < 0:
            raise ValueError(f"{key} must be a non-negative int, got {p[key]!r}")
        p[key] = int(p[key])
    lo, hi = p["speed_range"]
    if not 0.5 <= lo <= hi <= 2.0:
        raise ValueError(f"speed_range must satisfy 0.5 <= low <= high <= 2, got {p['speed_range']}")
    if not 0.0 <= p["noise_fraction"] <= 1.0:
        raise ValueError(f"noise_fraction must be in [0, 1], got {p['noise_fraction']}")
    for key, (lo_ok, hi_ok) in (("rate_range", _espeak.RATE_RANGE), ("pitch_range", _espeak.PITCH_RANGE)):
        lo, hi = p[key]
        if not lo_ok <= lo <= hi <= hi_ok:
            raise ValueError(f"{key} must lie within [{lo_ok}, {hi_ok}] with low <= high, got {p[key]}")
    unknown_kinds = set(p["noise_kinds"]) - set(_NOISE_EXPONENTS)
    if unknown_kinds or not p["noise_kinds"]:
        raise ValueError(f"noise_kinds must be a non-empty subset of {sorted(_NOISE_EXPONENTS)}, got {p['noise_kinds']}")
    shared = set(p["train_voices"]) & set(p["held_out_voices"])
    if shared or not p["train_voices"] or not p["held_out_voices"]:
        raise ValueError(f"train_voices and held_out_voices must be non-empty and disjoint; both contain {sorted(shared)}")
    return p


def _user_params(p: dict) -> dict:
    """The parameters a caller may set (``_params`` adds the fixed ones)."""
    return {k: v for k, v in p.items() if k not in ("version", "sample_rate", "chunk_size")}


def plan_corpus(**params) -> dict[str, list[UtteranceSpec]]:
    """Decide every utterance of every split (text, voice, rate, pitch, augmentation): no audio.

    Takes the keyword arguments of :func:`build_corpus` that define the corpus.  Fast and pure:
    the same parameters give the same plan.
    """
    p = _params(**params)
    seed = p["seed"]
    words = (p["min_words"], p["max_words"])
    held_out = {
        "test_sentences": make_sentences(p["n_test"], _rng(seed, 1), *words),
        "test_voices": make_sentences(p["n_test"], _rng(seed, 2), *words),
    }
    exclude = frozenset(held_out["test_sentences"]) | frozenset(held_out["test_voices"])
    texts = {"train": make_sentences(p["n_train"], _rng(seed, 0), *words, exclude=exclude), **held_out}
    plan = {}
    for stream, split in enumerate(SPLITS, start=10):
        rng = _rng(seed, stream)
        n = len(texts[split])
        voices = p["held_out_voices"] if split == "test_voices" else p["train_voices"]
        voice_ix = rng.integers(0, len(voices), size=n)
        rates = rng.integers(p["rate_range"][0], p["rate_range"][1] + 1, size=n)
        pitches = rng.integers(p["pitch_range"][0], p["pitch_range"][1] + 1, size=n)
        speeds = np.ones(n)
        noisy = np.zeros(n, dtype=bool)
        if split == "train":
            grid = np.linspace(p["speed_range"][0], p["speed_range"][1], 21)      # 0.90, 0.91, ..., 1.10
            speeds = _quantize_speed(rng.choice(grid, size=n))
            noisy[rng.permutation(n)[: int(round(p["noise_fraction"] * n))]] = True   # exactly 40 %
        kinds = rng.integers(0, len(p["noise_kinds"]), size=n)
        snrs = rng.uniform(p["snr_range"][0], p["snr_range"][1], size=n)
        noise_seeds = rng.integers(0, 2**62, size=n)
        plan[split] = [
            UtteranceSpec(
                text=texts[split][i], voice=voices[voice_ix[i]], rate=int(rates[i]), pitch=int(pitches[i]),
                speed=float(speeds[i]),
                noise=p["noise_kinds"][kinds[i]] if noisy[i] else "",
                snr_db=round(float(snrs[i]), 3) if noisy[i] else None,
                noise_seed=int(noise_seeds[i]) if noisy[i] else 0,
            )
            for i in range(n)
        ]
    return plan


def _quantize_speed(speed: np.ndarray) -> np.ndarray:
    """Round speed factors to ``16000 / r`` with ``r`` a multiple of 50 Hz (within about 0.2 %).

    Speed perturbation resamples eSpeak's 22050 Hz straight to ``r = 16000 / speed`` Hz and
    calls the result 16 kHz: ``speed > 1`` gives fewer samples, so faster and higher speech.
    With ``r`` a multiple of 50, ``22050 -> r`` reduces to ``441 -> r / 50``: a small polyphase
    filter bank, and one resampling pass per clip.  The plan draws speeds from 21 evenly
    spaced values, so only 21 filter banks are ever built (and cached).
    """
    rates = np.round(SAMPLE_RATE / np.asarray(speed, dtype=np.float64) / 50.0) * 50.0
    return SAMPLE_RATE / rates


# --------------------------------------------------------------------------- noise

# Power spectral density ~ 1 / f ** exponent.
_NOISE_EXPONENTS = {"white": 0.0, "pink": 1.0, "brown": 2.0}


def colored_noise(n: int, kind: str, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE, f_min: float = 50.0) -> np.ndarray:
    """``(n,)`` float64 noise with zero mean and unit variance.

    ``white``: flat spectrum; ``pink``: power ~ 1/f; ``brown``: power ~ 1/f^2.  Shaped in the
    frequency domain; below ``f_min`` Hz the spectrum is flat, so pink and brown noise are
    not all sub-audible rumble.
    """
    if kind not in _NOISE_EXPONENTS:
        raise ValueError(f"unknown noise kind {kind!r}; expected one of {sorted(_NOISE_EXPONENTS)}")
    noise = rng.standard_normal(n)
    if _NOISE_EXPONENTS[kind] and n > 1:
        n_fft = 1 << (n - 1).bit_length()                     # a power of two: fast FFTs; crop after
        noise = rng.standard_normal(n_fft)
        freqs = np.maximum(np.fft.rfftfreq(n_fft, d=1.0 / sample_rate), f_min)
        noise = np.fft.irfft(np.fft.rfft(noise) * freqs ** (-_NOISE_EXPONENTS[kind] / 2.0), n_fft)[:n]
    noise = noise - noise.mean()
    std = noise.std()
    return noise / std if std > 0 else noise


def add_noise(audio: np.ndarray, snr_db: float, kind: str, rng: np.random.Generator) -> np.ndarray:
    """``audio + noise`` with ``10 * log10(mean(audio^2) / mean(noise^2)) = snr_db`` (float64 arrays)."""
    audio = np.asarray(audio, dtype=np.float64)
    power = float(np.mean(audio ** 2)) if audio.size else 0.0
    if power == 0.0:
        return audio.copy()
    noise = colored_noise(audio.size, kind, rng)
    return audio + noise * math.sqrt(power / 10.0 ** (snr_db / 10.0))


# --------------------------------------------------------------------------- rendering


def _finish(raw: np.ndarray, spec: UtteranceSpec, native_rate: int) -> np.ndarray:
    """eSpeak's int16 samples -> trimmed, resampled, speed-perturbed, noisy int16 at 16 kHz."""
    x = torch.from_numpy(raw.astype(np.float32) / 32768.0)
    x = trim_silence(x, native_rate, threshold_db=-40.0, margin_ms=50.0)
    # Resample to 16000 / speed Hz and call it 16000 Hz: speed perturbation in the same pass.
    x = resample(x, native_rate, int(round(SAMPLE_RATE / spec.speed)))
    y = noisy_within_range(x.numpy().astype(np.float64), spec.noise, spec.snr_db, spec.noise_seed)
    return np.clip(np.round(y * 32768.0), -32768, 32767).astype(np.int16)


def noisy_within_range(y: np.ndarray, kind: str, snr_db: float | None, seed: int) -> np.ndarray:
    """``y`` with ``kind`` noise at ``snr_db`` (none for ``kind=''``), scaled down as a whole if it leaves [-1, 1]."""
    if kind:
        y = add_noise(y, snr_db, kind, np.random.Generator(np.random.PCG64(seed)))
    peak = float(np.abs(y).max()) if y.size else 0.0
    if peak > 1.0:
        y = y / peak          # scale the whole mixture: no clipping, same SNR
    return y


def render_utterances(specs: Sequence[UtteranceSpec], workers: int = 1, progress: bool = False, desc: str = "eSpeak") -> list[np.ndarray]:
    """Synthesize and augment ``specs``: one int16 array at 16 kHz per spec, in order.

    Utterances go to eSpeak in chunks of :data:`CHUNK_SIZE`, each in a fresh forked child;
    up to ``workers`` children run at once while this process resamples and adds noise.
    The chunking, not ``workers``, determines the samples.
    """
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive int, got {workers!r}")
    native = _espeak.native_sample_rate()
    chunks = [list(specs[i : i + CHUNK_SIZE]) for i in range(0, len(specs), CHUNK_SIZE)]
    out: list[np.ndarray] = []
    pending: deque = deque()
    todo = iter(chunks)
    with tqdm(total=len(specs), desc=desc, unit="clip", disable=not progress, leave=False) as bar:
        while True:
            while len(pending) < workers + 1:       # one extra: a child synthesizes while we post-process
                chunk = next(todo, None)
                if chunk is None:
                    break
                utts = [Utterance(s.text, s.voice, s.rate, s.pitch) for s in chunk]
                pending.append((chunk, _espeak.start_batch(utts)))
            if not pending:
                break
            chunk, job = pending.popleft()
            for spec, raw in zip(chunk, job.result()):
                out.append(_finish(raw, spec, native))
            bar.update(len(chunk))
    return out


# --------------------------------------------------------------------------- the cache


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _save_split(path: str, specs: list[UtteranceSpec], clips: list[np.ndarray]) -> None:
    lengths = torch.tensor([c.size for c in clips], dtype=torch.int64)
    audio = torch.from_numpy(np.concatenate(clips)) if clips else torch.zeros(0, dtype=torch.int16)
    payload = {
        "audio": audio,                                   # all clips, int16, concatenated
        "lengths": lengths,                               # (n,) samples per clip
        "transcripts": [s.text for s in specs],
        "speakers": [s.voice for s in specs],
        "rate": torch.tensor([s.rate for s in specs], dtype=torch.int64),
        "pitch": torch.tensor([s.pitch for s in specs], dtype=torch.int64),
        "speed": torch.tensor([s.speed for s in specs], dtype=torch.float64),
        "noise": [s.noise for s in specs],
        "snr_db": torch.tensor([math.nan if s.snr_db is None else s.snr_db for s in specs], dtype=torch.float64),  # NaN: clean
    }
    tmp = path + ".tmp"
    torch.save(payload, tmp)
    os.replace(tmp, path)                                 # never leave a half-written split behind


def _samples(audio: torch.Tensor, lengths: list[int], transcripts: list[str], speakers: list[str], where: str) -> list[Sample]:
    """int16 clips concatenated -> Samples whose float32 audio are views of one tensor."""
    audio = audio.to(torch.float32).div_(32768.0)
    samples, start = [], 0
    for n, text, voice in zip(lengths, transcripts, speakers):
        samples.append(Sample(audio[start : start + n], text, SAMPLE_RATE, voice))
        start += n
    if start != audio.numel() or not len(lengths) == len(transcripts) == len(speakers):
        raise ValueError(f"{where}: inconsistent split ({len(lengths)} lengths adding up to {start} samples, "
                         f"{audio.numel()} samples, {len(transcripts)} transcripts, {len(speakers)} speakers)")
    return samples


def _load_split(path: str) -> list[Sample]:
    payload = torch.load(path, weights_only=True)
    return _samples(payload["audio"], payload["lengths"].tolist(), payload["transcripts"], payload["speakers"], path)


def corpus_dir(root, **params) -> str:
    """The cache directory of the corpus with these parameters: ``root/espeak-<12 hex digits>``."""
    p = _params(**params)
    key = hashlib.sha256(json.dumps({**p, "espeak": _espeak.espeak_version()}, sort_keys=True).encode()).hexdigest()
    return os.path.join(os.fspath(root), f"espeak-{key[:12]}")


def build_corpus(
    root="data_cache/espeak",
    n_train: int = 10000,
    n_test: int = 500,
    seed: int = 0,
    progress: bool = True,
    *,
    workers: int = 1,
    fallback: bool = False,
    synthetic: Callable | None = None,
    **params,
) -> dict[str, list[Sample]]:
    """Build (or load from the cache) the eSpeak corpus; see the module docstring for its design.

    Args:
        root: cache folder.  Each parameter set gets its own sub-folder ``espeak-<hash>``
            holding ``manifest.json`` and one ``<split>.pt`` per split (int16 audio; clips
            average 1.1 s, so 10,000 training clips are about 0.35 GB on disk and 0.7 GB as
            float32 in memory).
        n_train: training utterances.  n_test: utterances in *each* test split.
        seed: seeds every random choice.
        progress: show a tqdm bar while synthesizing.
        workers: eSpeak children running at once (1 is best on 2 cores; the result is the same).
        fallback: where eSpeak NG is unavailable, print why and return ``synthetic``'s data
            instead of raising :class:`~reference.espeak.EspeakUnavailable`.
        synthetic: ``synthetic(n, min_words, max_words, seed=...) -> list of samples`` used by
            ``fallback``; default ``reference.synthetic.generate_synthetic_dataset``.
        **params: other corpus parameters (``min_words``, ``max_words``, ``rate_range``,
            ``pitch_range``, ``speed_range``, ``noise_fraction``, ``snr_range``,
            ``noise_kinds``, ``train_voices``, ``held_out_voices``).

    Returns:
        ``{'train': [...], 'test_sentences': [...], 'test_voices': [...]}``, lists of
        :class:`~reference.data.Sample` at 16 kHz with ``speaker`` = the eSpeak voice.

    The cache is used when its manifest has the same parameters and eSpeak version and each
    split file has the SHA-256 the manifest records; a split that is missing or corrupt is
    synthesized again (only that split), a missing or unreadable manifest rebuilds everything.
    """
    p = _params(n_train=n_train, n_test=n_test, seed=seed, **params)
    if not _espeak.espeak_available():
        if not fallback:
            raise EspeakUnavailable(_espeak.INSTALL_HINT)
        return _fallback_corpus(p, synthetic)

    folder = corpus_dir(root, **_user_params(p))
    manifest_path = os.path.join(folder, "manifest.json")
    manifest = _read_manifest(manifest_path, p)
    cached = manifest is not None
    plan = None
    splits: dict[str, list[Sample]] = {}
    changed = False
    for split in SPLITS:
        path = os.path.join(folder, f"{split}.pt")
        entry = manifest["files"].get(f"{split}.pt") if manifest else None
        if isinstance(entry, dict) and os.path.exists(path) and _sha256(path) == entry.get("sha256"):
            try:
                splits[split] = _load_split(path)
                continue
            except Exception as err:                      # checksum fine but unreadable: rebuild it
                print(f"corpus: {path} is unreadable ({err}); synthesizing it again", file=sys.stderr)
        elif cached:
            print(f"corpus: {path} is missing or does not match its checksum; synthesizing it again", file=sys.stderr)
        if plan is None:
            _check_voices(p["train_voices"] + p["held_out_voices"])
            plan = plan_corpus(**_user_params(p))
        os.makedirs(folder, exist_ok=True)
        start = time.perf_counter()
        clips = render_utterances(plan[split], workers=workers, progress=progress, desc=f"eSpeak {split}")
        _save_split(path, plan[split], clips)
        manifest = manifest or {"files": {}}
        manifest["files"][f"{split}.pt"] = {
            "sha256": _sha256(path), "count": len(clips), "samples": int(sum(c.size for c in clips)),
            "seconds_to_build": round(time.perf_counter() - start, 2),
        }
        splits[split] = _samples(torch.from_numpy(np.concatenate(clips)) if clips else torch.zeros(0, dtype=torch.int16),
                                 [c.size for c in clips], [x.text for x in plan[split]], [x.voice for x in plan[split]], path)
        changed = True
    if changed:
        manifest.update(
            version=CORPUS_VERSION, params=p, espeak_version=_espeak.espeak_version(), isolated=_espeak.ISOLATED,
            counts={s: len(splits[s]) for s in SPLITS},
            hours={s: round(sum(len(x) for x in splits[s]) / SAMPLE_RATE / 3600, 3) for s in SPLITS},
        )
        tmp = manifest_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(manifest, f, indent=2, sort_keys=True)
        os.replace(tmp, manifest_path)
    return splits


def _check_voices(voices: Sequence[str]) -> None:
    """Raise a ``ValueError`` naming the first unknown accent or variant (one synthesis per accent)."""
    variants = set(_espeak.list_variants())
    for voice in voices:
        accent, _, variant = voice.partition("+")
        if variant and variant not in variants:
            raise ValueError(f"unknown eSpeak voice variant {variant!r} in {voice!r}; see reference.espeak.list_variants()")
    for accent in sorted({v.partition("+")[0] for v in voices}):
        _espeak.check_voice(accent)


def _read_manifest(path: str, p: dict) -> dict | None:
    """The manifest if it exists, parses and describes this corpus; else None (rebuild all)."""
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            manifest = json.load(f)
        if (manifest.get("version") == CORPUS_VERSION and manifest.get("params") == p
                and manifest.get("espeak_version") == _espeak.espeak_version() and isinstance(manifest.get("files"), dict)):
            return manifest
        print(f"corpus: {path} describes other parameters; rebuilding", file=sys.stderr)
    except (OSError, ValueError) as err:
        print(f"corpus: {path} is unreadable ({err}); rebuilding", file=sys.stderr)
    return None


def _fallback_corpus(p: dict, synthetic: Callable | None) -> dict[str, list]:
    print(f"corpus: {_espeak.INSTALL_HINT}.\ncorpus: falling back to the synthetic generator "
          "(no voices, so 'test_voices' is just another test set).", file=sys.stderr)
    if synthetic is None:
        try:
            from .synthetic import generate_synthetic_dataset as synthetic
        except ImportError as err:
            raise EspeakUnavailable(f"{_espeak.INSTALL_HINT}; and no synthetic generator to fall back on ({err})") from None
    seed, words = p["seed"], (p["min_words"], p["max_words"])
    return {
        "train": list(synthetic(p["n_train"], *words, seed=seed)),
        "test_sentences": list(synthetic(p["n_test"], *words, seed=seed + 1)),
        "test_voices": list(synthetic(p["n_test"], *words, seed=seed + 2)),
    }
