"""Many voices saying real English: a synthesized corpus closer to people than :mod:`reference.corpus`.

The eSpeak corpus of :mod:`reference.corpus` says random strings of 348 words in formant-synthesized
voices: a model trained on it knows 348 spellings and a sound that no person makes, and on a human
voice it gets almost nothing right (``benchmarks/bench_real_speech.py``).  DS2 itself trained on
11,940 hours of people reading and talking (section 5); a laptop cannot download that, but three
Debian packages bring it closer:

- **Texts** (``wordnet-base``): WordNet's usage examples, about 30,000 short phrases and sentences
  written by lexicographers ("seat the camera on the tripod", "he waited for the bus"), over
  tens of thousands of different words.  Normalised with :func:`reference.datasets.normalize_text`;
  examples with characters outside the alphabet, or under :data:`MIN_WORDS` words, are dropped
  and counted.
- **Voices**: half the clips by eSpeak NG (:data:`reference.corpus.TRAIN_VOICES`, 270 voices, rate
  130-260 words per minute, pitch 20-80) and half by Flite (``flite``, ``libflite1``), whose
  voices are built from recordings of people: ``slt``, ``rms`` and ``awb`` are statistical
  parametric voices trained on the CMU ARCTIC recordings of three speakers, ``kal16`` and ``kal``
  (8 kHz: telephone-band) concatenate diphones cut from one speaker's recordings.  Each Flite clip
  gets a random speaking rate (duration stretch 0.8-1.25) and mean pitch (:data:`FLITE_PITCH`).
- **More voices** (Debian ``non-free``, :mod:`reference.tts`): SVOX Pico's ``en-US`` and ``en-GB``
  and RHVoice's ``alan``, ``bdl``, ``clb`` and ``slt``, six voices built from recordings of people,
  say :data:`NON_FREE_SHARE` as many clips again as there are sentences (an equal share each, the
  sentences drawn at random), at a random pitch and speed.  Their generator is separate from the one
  above, so ``--free-only`` leaves them out and writes the other clips unchanged.
- **Noise**: white, pink or brown noise at 10-30 dB SNR on 40 % of the clips, as DS2 section 5.2
  adds noise to 40 % of its training utterances.  Speed perturbation and SpecAugment are left to
  training (``--speed-perturb``, ``--spec-augment``).
- **Splits**: a sentence is ``dev`` when the first two hex digits of the SHA-1 of its text are
  below ``05`` (about 2 %), otherwise ``train``: the two never share a sentence.

:func:`prepare_voices` writes 16 kHz FLAC clips and NeMo manifests (``train.jsonl``, ``dev.jsonl``),
which ``python -m reference.train --data OUT/train.jsonl`` reads like any recordings.  Everything is
drawn from one seeded generator, and both synthesizers are deterministic, so the same arguments
write the same corpus.

    python -m reference.prepare voices data/voices          # make voices
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .corpus import SAMPLE_RATE
from .tts import LIBS, PICO_PACKAGES, PICO_VOICES, RHVOICE_PACKAGES, RHVOICE_VOICES, missing_files, synthesize_many

__all__ = ["PACKAGES", "NON_FREE_PACKAGES", "FLITE_VOICES", "FLITE_PITCH", "NON_FREE_VOICES", "NON_FREE_SHARE",
           "MIN_WORDS", "wordnet_examples", "split_of_text", "flite_synthesize", "prepare_voices"]

PACKAGES = ("wordnet-base", "flite", "libflite1")
NON_FREE_PACKAGES = PICO_PACKAGES + RHVOICE_PACKAGES
WORDNET = "usr/share/wordnet"
FLITE = "usr/bin/flite"
FLITE_LIBS = LIBS          # the packages' shared libraries (Flite's, Pico's and RHVoice's alike)
FLITE_VOICES = ("slt", "rms", "awb", "kal16", "kal")
FLITE_PITCH = {"slt": (150, 230), "rms": (80, 140), "awb": (85, 145), "kal16": (80, 140), "kal": (80, 140)}  # Hz
FLITE_STRETCH = (0.8, 1.25)
# The six voices of reference.tts, each saying an equal share of NON_FREE_SHARE * (number of sentences)
# more clips, at a random pitch and speed: Pico's in percent of the voice's own, RHVoice's on its
# [-1, 1] scale (rate r: duration x 2 ** -r, so +-0.32 is Flite's 0.8-1.25 stretch; pitch p: f0 x 2 ** p).
NON_FREE_VOICES = tuple(("pico", lang) for lang in PICO_VOICES) + tuple(("rhvoice", v) for v in RHVOICE_VOICES)
NON_FREE_SHARE = 0.25
PICO_PITCH, PICO_SPEED = (80, 125), (85, 115)
RHVOICE_RATE, RHVOICE_PITCH = (-0.32, 0.32), (-0.4, 0.4)
MIN_WORDS = 2
MAX_WORDS = 16
_EXAMPLE = re.compile(r'"([^"]+)"')


def wordnet_examples(wordnet_dir) -> list[str]:
    """WordNet's usage examples (the quoted parts of the glosses in ``data.*``), in file order, deduplicated."""
    folder = Path(wordnet_dir)
    files = [folder / f"data.{pos}" for pos in ("noun", "verb", "adj", "adv")]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"WordNet data files missing: {missing}; is wordnet-base extracted there?")
    seen: dict[str, None] = {}
    for f in files:
        for line in f.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("  ") or "|" not in line:      # the licence header
                continue
            for example in _EXAMPLE.findall(line.split("|", 1)[1]):
                seen.setdefault(example.strip(), None)
    return list(seen)


def split_of_text(text: str) -> str:
    """``'dev'`` for about 2 % of sentences (SHA-1 of the text below ``05...``), else ``'train'``."""
    return "dev" if hashlib.sha1(text.encode("utf-8")).hexdigest()[:2] < "05" else "train"


def flite_synthesize(flite: str, text: str, voice: str, stretch: float, pitch: float, env: dict | None = None) -> tuple[np.ndarray, int]:
    """Say ``text`` with Flite's ``voice``: ``(float32 samples, sample rate)``."""
    import soundfile as sf

    if voice not in FLITE_VOICES:      # flite itself falls back to its default voice without a word
        raise ValueError(f"unknown Flite voice {voice!r}; expected one of {FLITE_VOICES}")
    with tempfile.TemporaryDirectory(prefix="flite-") as tmp:
        wav = os.path.join(tmp, "out.wav")
        cmd = [flite, "-voice", voice, "--setf", f"duration_stretch={stretch:.3f}",
               "--setf", f"int_f0_target_mean={pitch:.1f}", "-t", text, "-o", wav]
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if r.returncode != 0 or not os.path.isfile(wav):
            raise RuntimeError(f"flite failed on {text!r} with voice {voice!r} ({r.returncode}): {r.stderr.strip()[-300:]}")
        audio, rate = sf.read(wav, dtype="float32")
    return audio, rate


def _flite_clip(flite: str, env: dict, text: str, voice: str, stretch: float, pitch: float) -> np.ndarray:
    audio, rate = flite_synthesize(flite, text, voice, stretch, pitch, env)
    return _to_16k(audio, rate)


def _to_16k(audio: np.ndarray, rate: int) -> np.ndarray:
    """A synthesizer's float samples, leading and trailing silence cut, at 16 kHz (float32)."""
    import torch

    from .audio import resample, trim_silence

    x = trim_silence(torch.from_numpy(np.asarray(audio, dtype=np.float32)), rate, threshold_db=-40.0, margin_ms=50.0)
    if rate != SAMPLE_RATE:
        x = resample(x, rate, SAMPLE_RATE)
    return x.numpy().astype(np.float32)


def prepare_voices(out, root=None, debs=None, n_sentences: int | None = None, seed: int = 0, workers: int = 2,
                   progress: bool = True, non_free: bool = True) -> dict:
    """Build the corpus in ``out`` (see the module docstring); returns the counts it prints.

    ``root``: a folder the packages are extracted into; ``debs``: a folder holding their ``.deb``
    files; neither: download them with ``apt-get download``.  ``n_sentences``: use only the first
    that many examples (after shuffling), for a smaller corpus.  ``non_free=False``: leave out the
    Pico and RHVoice clips (:data:`NON_FREE_PACKAGES`); the other clips are the same either way,
    sample for sample, because the non-free clips are drawn from a generator of their own.
    """
    import soundfile as sf
    from tqdm.auto import tqdm

    from .corpus import TRAIN_VOICES, UtteranceSpec, noisy_within_range, render_utterances
    from .datasets import normalize_text, outside_alphabet, write_nemo_manifest
    from .prepare import download, extract, find_debs, package_versions

    out = Path(out)
    rng = np.random.Generator(np.random.PCG64(seed))
    with tempfile.TemporaryDirectory(prefix="voices-") as tmp:
        packages = PACKAGES + (NON_FREE_PACKAGES if non_free else ())
        if root is None:
            if debs is not None:
                deb_files = find_debs(Path(debs), packages)
            else:
                deb_files = download(Path(tmp), PACKAGES)
                if non_free:
                    deb_files += download(Path(tmp) / "non-free", NON_FREE_PACKAGES, non_free=True)
            root = extract(deb_files, Path(tmp) / "root")
        root = Path(root)
        flite = root / FLITE
        if not flite.is_file():
            raise FileNotFoundError(f"{str(flite)!r} is missing: is the flite package extracted in {str(root)!r}?")
        missing = missing_files(root) if non_free else []
        if missing:         # before any clip is made, not after minutes of eSpeak and Flite
            raise FileNotFoundError(f"{len(missing)} files of SVOX Pico and RHVoice are missing under {str(root)!r} (e.g. "
                                    f"{missing[0]!r}): extract {', '.join(NON_FREE_PACKAGES)} there, or pass --free-only")
        env = dict(os.environ, LD_LIBRARY_PATH=os.pathsep.join(
            p for p in (str(root / FLITE_LIBS), os.environ.get("LD_LIBRARY_PATH", "")) if p))
        versions = package_versions(root, packages)

        texts, outside, short = [], [], []
        for example in wordnet_examples(root / WORDNET):
            text = normalize_text(example)
            if outside_alphabet(text):
                outside.append(example)
            elif not MIN_WORDS <= len(text.split()) <= MAX_WORDS:
                short.append(example)
            else:
                texts.append(text)
        texts = list(dict.fromkeys(texts))
        texts = [texts[i] for i in rng.permutation(len(texts))]
        if n_sentences is not None:
            texts = texts[:n_sentences]

        n = len(texts)
        use_flite = np.zeros(n, dtype=bool)
        use_flite[rng.permutation(n)[: n // 2]] = True
        noisy = np.zeros(n, dtype=bool)
        noisy[rng.permutation(n)[: int(round(0.4 * n))]] = True
        kinds = rng.integers(0, 3, size=n)
        snrs = rng.uniform(10.0, 30.0, size=n)
        noise_seeds = rng.integers(0, 2**62, size=n)
        espeak_voice = rng.integers(0, len(TRAIN_VOICES), size=n)
        rates = rng.integers(130, 261, size=n)
        pitches = rng.integers(20, 81, size=n)
        flite_voice = rng.integers(0, len(FLITE_VOICES), size=n)
        stretches = rng.uniform(*FLITE_STRETCH, size=n)
        flite_pitch_u = rng.uniform(0.0, 1.0, size=n)

        clips: list[np.ndarray | None] = [None] * n
        speakers: list[str] = [""] * n
        # eSpeak: through the corpus module's renderer (forked, reseeded children); noise added below.
        e_idx = np.flatnonzero(~use_flite)
        specs = [UtteranceSpec(text=texts[i], voice=TRAIN_VOICES[espeak_voice[i]], rate=int(rates[i]),
                               pitch=int(pitches[i]), speed=1.0, noise="", snr_db=None, noise_seed=0) for i in e_idx]
        for i, clip in zip(e_idx, render_utterances(specs, workers=workers, progress=progress, desc="eSpeak")):
            clips[i] = clip.astype(np.float32) / np.float32(32768.0)
            speakers[i] = f"espeak:{TRAIN_VOICES[espeak_voice[i]]}"
        f_idx = np.flatnonzero(use_flite)

        def flite_one(i):
            voice = FLITE_VOICES[flite_voice[i]]
            lo, hi = FLITE_PITCH[voice]
            return _flite_clip(str(flite), env, texts[i], voice, float(stretches[i]), lo + (hi - lo) * float(flite_pitch_u[i]))

        with ThreadPoolExecutor(max_workers=workers) as pool:
            for i, clip in zip(f_idx, tqdm(pool.map(flite_one, f_idx), total=len(f_idx), desc="Flite", unit="clip",
                                           disable=not progress, leave=False)):
                clips[i] = clip
                speakers[i] = f"flite:{FLITE_VOICES[flite_voice[i]]}"

        if non_free:
            # More clips of the same sentences (train and dev alike, so the split stays the text's), an
            # equal share per voice, from a generator of their own: the clips above do not change.
            nf = np.random.Generator(np.random.PCG64([seed, 1]))
            m = int(round(NON_FREE_SHARE * n))
            which = nf.choice(n, size=m, replace=False) if m else np.zeros(0, dtype=int)
            voice = nf.permutation(np.arange(m) % len(NON_FREE_VOICES))
            u, v = nf.uniform(0.0, 1.0, size=m), nf.uniform(0.0, 1.0, size=m)
            nf_noisy = np.zeros(m, dtype=bool)
            nf_noisy[nf.permutation(m)[: int(round(0.4 * m))]] = True
            jobs, labels = [], []
            for k in range(m):
                engine, name = NON_FREE_VOICES[voice[k]]
                if engine == "pico":
                    a = int(round(PICO_PITCH[0] + (PICO_PITCH[1] - PICO_PITCH[0]) * u[k]))
                    b = int(round(PICO_SPEED[0] + (PICO_SPEED[1] - PICO_SPEED[0]) * v[k]))
                else:
                    a = round(RHVOICE_RATE[0] + (RHVOICE_RATE[1] - RHVOICE_RATE[0]) * float(u[k]), 3)
                    b = round(RHVOICE_PITCH[0] + (RHVOICE_PITCH[1] - RHVOICE_PITCH[0]) * float(v[k]), 3)
                jobs.append((engine, name, texts[which[k]], a, b))
                labels.append(f"{engine}:{name}")
            said = synthesize_many(root, jobs, workers=workers, progress=progress)
            texts = texts + [texts[i] for i in which]
            clips += [_to_16k(audio.astype(np.float32) / np.float32(32768.0), rate) for audio, rate in said]
            speakers += labels
            noisy = np.concatenate([noisy, nf_noisy])
            kinds = np.concatenate([kinds, nf.integers(0, 3, size=m)])
            snrs = np.concatenate([snrs, nf.uniform(10.0, 30.0, size=m)])
            noise_seeds = np.concatenate([noise_seeds, nf.integers(0, 2**62, size=m)])
            del said

    kind_names = ("white", "pink", "brown")
    rows = {"train": [], "dev": []}
    free = {"train": [], "dev": []}         # the first n clips: eSpeak and Flite (Debian main)
    for i in tqdm(range(len(clips)), desc="writing FLAC", unit="clip", disable=not progress, leave=False):
        y = noisy_within_range(clips[i].astype(np.float64), kind_names[kinds[i]] if noisy[i] else "", float(snrs[i]),
                               int(noise_seeds[i]))
        clips[i] = None
        name = f"{i:05d}"
        flac = out / "audio" / name[:2] / f"{name}.flac"
        flac.parent.mkdir(parents=True, exist_ok=True)
        sf.write(flac, y.astype(np.float32), SAMPLE_RATE, format="FLAC", subtype="PCM_16")
        row = {"audio_filepath": flac.relative_to(out).as_posix(), "duration": round(y.size / SAMPLE_RATE, 3),
               "text": texts[i], "speaker": speakers[i], "noise": kind_names[kinds[i]] if noisy[i] else ""}
        rows[split_of_text(texts[i])].append(row)
        if i < n:
            free[split_of_text(texts[i])].append(row)
    # SPLIT.jsonl: the eSpeak and Flite clips (Debian main), the corpus of the voices model's first two stages;
    # SPLIT-all.jsonl: every clip, the Pico and RHVoice ones too (its third stage).
    for split in rows:
        write_nemo_manifest(out / f"{split}.jsonl", free[split])
        if non_free:
            write_nemo_manifest(out / f"{split}-all.jsonl", rows[split])
        else:
            (out / f"{split}-all.jsonl").unlink(missing_ok=True)
    hours = {f"{k}{tag}": sum(r["duration"] for r in v) / 3600 for tag, part in (("", free), ("-all", rows))
             for k, v in part.items()}
    words = {w for t in texts for w in t.split()}
    (out / "README.txt").write_text(_readme(versions, free, rows if non_free else None, hours, len(words)))
    n_non_free = len(clips) - n
    counts = {"clips": len(clips), "sentences": n, "train": len(free["train"]), "dev": len(free["dev"]),
              "train_all": len(rows["train"]), "dev_all": len(rows["dev"]), "train_hours": hours["train"],
              "dev_hours": hours["dev"], "train_all_hours": hours["train-all"], "words": len(words),
              "flite_clips": int(use_flite.sum()), "non_free_clips": n_non_free,
              "outside_alphabet": len(outside), "too_short_or_long": len(short), "versions": versions}
    print(f"voices: {len(clips)} clips of {n} sentences ({hours['train-all'] + hours['dev-all']:.1f} h, {len(words)} "
          f"different words; {counts['flite_clips']} by Flite, {n - counts['flite_clips']} by eSpeak, {n_non_free} by "
          f"Pico and RHVoice): train {len(rows['train'])} ({hours['train-all']:.1f} h), dev {len(rows['dev'])} "
          f"({hours['dev-all'] * 60:.0f} min)")
    skipped = [f"{len(outside)} with characters outside the alphabet (e.g. {outside[0]!r})" if outside else "",
               f"{len(short)} under {MIN_WORDS} or over {MAX_WORDS} words (e.g. {short[0]!r})" if short else ""]
    if any(skipped):
        print("voices: skipped WordNet examples: " + ", ".join(s for s in skipped if s))
    print(f"voices: wrote {out / 'train.jsonl'}, {out / 'dev.jsonl'} (eSpeak and Flite)"
          + (f", {out / 'train-all.jsonl'}, {out / 'dev-all.jsonl'} (all six engines)" if non_free else "")
          + f", {out / 'README.txt'}")
    return counts


def _readme(versions: dict, free: dict, every: dict | None, hours: dict, n_words: int) -> str:
    pkgs = "\n".join(f"  {k} {v}" for k, v in sorted(versions.items()))
    manifests = (f"train.jsonl: {len(free['train'])} clips, {hours['train']:.2f} hours (eSpeak NG and Flite)\n"
                 f"dev.jsonl:   {len(free['dev'])} clips, {hours['dev']:.2f} hours (sentences never in train)\n")
    if every is not None:
        manifests += (f"train-all.jsonl: {len(every['train'])} clips, {hours['train-all']:.2f} hours (and SVOX Pico "
                      f"and RHVoice)\ndev-all.jsonl:   {len(every['dev'])} clips, {hours['dev-all']:.2f} hours\n")
    return f"""Many synthesized voices saying WordNet's usage examples (python -m reference.prepare voices).

Made from these Debian packages (never committed: the command makes it again, the same, sample for sample):
{pkgs}

Texts: WordNet's usage examples. "WordNet 3.0 Copyright 2006 by Princeton University.  All rights reserved."
Used under the WordNet 3.0 licence, whose notice and disclaimer are in usr/share/doc/wordnet-base/copyright
of the package.  Voices: Flite (Carnegie Mellon University; licence in usr/share/doc/libflite1/copyright)
and eSpeak NG (GPL-3.0-or-later).  Where the packages list them: SVOX Pico (libttspico0, libttspico-data;
Apache-2.0, in Debian non-free because the voice data comes without its sources) and RHVoice (librhvoice5,
rhvoice-english; LGPL-2.1-or-later, in non-free because its voices are trained models without their
training scripts; only its alan, bdl, clb and slt voices are used).  Licences in usr/share/doc/PACKAGE/copyright.

{manifests}{n_words} different words.  Each row: audio_filepath, duration, text, speaker (engine:voice), noise.
"""
