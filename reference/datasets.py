"""Recordings in the layouts people have: ``--data PATH`` -> a list of samples.

    >>> train = load_dataset("data/asterisk/train.jsonl", max_seconds=20)   # doctest: +SKIP
    data/asterisk/train.jsonl (nemo): 412 clips, 17.3 min; skipped 2 longer than 20 s

:func:`load_dataset` opens what ``PATH`` names and returns a :class:`Dataset`, a list of
:class:`~reference.data.Sample` (``.audio`` 1-D float32 in [-1, 1] at 16 kHz, ``.transcript``,
``.sample_rate`` 16000) with a :class:`LoadReport` of what was skipped and why.  ``PATH`` is:

========================  =================================================================
``synthetic``             the course's synthetic speech (``reference.synthetic``)
``espeak``                the eSpeak NG corpus (``reference.corpus``, what the ``espeak`` preset trains on)
a LibriSpeech folder      ``SPEAKER/CHAPTER/SPEAKER-CHAPTER-NNNN.flac`` + ``SPEAKER-CHAPTER.trans.txt``
                          (``SPEAKER-CHAPTER-NNNN UPPER CASE TEXT`` per line)
a CSV or TSV manifest     a header with ``path`` and ``transcript`` columns (also ``wav_filename``,
                          ``audio_filepath``, ``audio`` / ``text``, ``sentence``: Common Voice's
                          TSV), or deepspeech.pytorch's header-less ``audio,transcript-file`` pairs
a NeMo manifest           JSON lines (``.json``/``.jsonl``) with ``audio_filepath``, ``text``
                          and optionally ``duration``
a Kaldi data folder       ``wav.scp`` (``uttid path``) + ``text`` (``uttid words ...``)
========================  =================================================================

Relative audio paths resolve against the manifest's folder.  Audio goes through
:func:`reference.audio.load_audio` (``soundfile`` + ``soxr``: WAV, FLAC, OGG, MP3 at any rate).
Transcripts go through :func:`normalize_text` (lower case; numbers and common symbols spelled
out by ``num2words``; punctuation removed).  A clip is skipped, counted and reported, never
silently changed, when its normalised transcript still holds a character outside the
29-symbol alphabet, when it is empty, longer than ``max_seconds``, or too short for the model
(fewer output frames than CTC needs for its transcript: see :func:`model_output_frames`).
A missing audio file, a folder or file in no known layout, or a malformed line is an error
that names the file (and ``file:line``).
"""
from __future__ import annotations

import csv
import json
import os
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch

from .data import Sample
from .text import ALPHABETS

__all__ = ["Entry", "Dataset", "LoadReport", "load_dataset", "read_entries", "read_nemo_manifest",
           "write_nemo_manifest", "detect_layout", "normalize_text", "outside_alphabet", "model_output_frames",
           "LAYOUTS", "GENERATED"]

SAMPLE_RATE = 16000
GENERATED = ("synthetic", "espeak")
LAYOUTS = ("librispeech", "csv", "nemo", "kaldi")
_EXPECTED = ("'synthetic', 'espeak', a LibriSpeech folder (SPEAKER/CHAPTER/*.flac + *.trans.txt), a CSV/TSV "
             "manifest (path,transcript columns, or header-less audio,transcript-file pairs), a NeMo manifest "
             "(.json/.jsonl lines with audio_filepath and text) or a Kaldi data folder (wav.scp + text)")


@dataclass(frozen=True)
class Entry:
    """One line of a manifest: an audio file and its transcript as written there (not normalised)."""

    audio: Path
    text: str
    duration: float | None = None
    id: str = ""
    where: str = ""        # 'file:line' of the entry, for messages


# --------------------------------------------------------------------------- text


# Spoken forms of symbols (after numbers are spelled out, so "$5" and "50%" are handled first).
SYMBOLS = {"%": " percent ", "&": " and ", "@": " at ", "+": " plus ", "=": " equals ", "$": " dollars ",
           "#": " pound ", "*": " star ", "°": " degrees ", "€": " euros ", "£": " pounds "}
# Quotes and dashes that have an ASCII stand-in; the alphabet's apostrophe is "'".
_TRANSLATE = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'", "\u2013": "-", "\u2014": "-"})
_PUNCTUATION = re.compile(r"[.,;:!?\"()\[\]{}<>/\\_|~\-…]")


def _num2words():
    try:
        from num2words import num2words
    except ImportError:
        raise ImportError("spelling out numbers needs num2words: pip install num2words") from None
    return num2words


def _cardinal(match: re.Match) -> str:
    return f" {_num2words()(match.group(0))} "          # "28.8": twenty-eight point eight


def _ordinal(match: re.Match) -> str:
    return f" {_num2words()(int(match.group(1)), to='ordinal')} "


def normalize_text(text: str) -> str:
    """Bring a transcript to the alphabet's form: ``"Press 1, or dial 28.8%!"`` -> ``"press one or dial
    twenty eight point eight percent"``.

    Lower case; accents removed (``café`` -> ``cafe``); ordinals (``21st``), decimals and integers
    (``1,234``) spelled out by ``num2words``; ``$5`` -> ``five dollars``; the symbols of
    :data:`SYMBOLS` spoken (``%`` percent, ``&`` and, ``@`` at, ``#`` pound, ``*`` star, ...);
    a dot between two words of 2+ letters read as ``dot`` (``www.asterisk.org``); punctuation,
    hyphens and quotes removed (apostrophes inside words kept); spaces collapsed.  Anything else
    stays, so that :func:`outside_alphabet` can report it.
    """
    if not isinstance(text, str):
        raise ValueError(f"a transcript must be a str, got {type(text).__name__}")
    t = unicodedata.normalize("NFKD", text.translate(_TRANSLATE))
    t = "".join(ch for ch in t if not unicodedata.combining(ch)).lower()
    t = re.sub(r"(?<=\d),(?=\d{3}\b)", "", t)                              # 1,234 -> 1234
    t = re.sub(r"\$(\d+(?:\.\d+)?)", r"\1 dollars", t)                     # $5 -> 5 dollars
    t = re.sub(r"(\d+)(st|nd|rd|th)\b", _ordinal, t)
    t = re.sub(r"\d+\.\d+|\d+", _cardinal, t)
    for sym, spoken in SYMBOLS.items():
        t = t.replace(sym, spoken)
    t = re.sub(r"(?<=[a-z]{2})\.(?=[a-z]{2})", " dot ", t)
    t = _PUNCTUATION.sub(" ", t)
    t = re.sub(r"(?<![a-z])'+|'+(?![a-z])", " ", t)                        # quotes, not apostrophes
    return " ".join(t.split())


def outside_alphabet(text: str, language: str = "english") -> list[str]:
    """The distinct characters of ``text`` that the language's alphabet lacks, in order of appearance."""
    allowed = set(ALPHABETS[language])
    return list(dict.fromkeys(ch for ch in text if ch not in allowed))


# --------------------------------------------------------------------------- layouts


def detect_layout(path) -> str:
    """``'synthetic'``, ``'espeak'``, ``'librispeech'``, ``'csv'``, ``'nemo'`` or ``'kaldi'`` for ``path``.

    Raises ``FileNotFoundError`` for a path that does not exist, ``ValueError`` for one in no known layout.
    """
    if isinstance(path, str) and path in GENERATED and not os.path.exists(path):
        return path
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"--data {str(p)!r} does not exist; expected {_EXPECTED}")
    if p.is_dir():
        if (p / "wav.scp").is_file() and (p / "text").is_file():
            return "kaldi"
        if next(p.rglob("*.trans.txt"), None) is not None:
            return "librispeech"
        raise ValueError(f"folder {str(p)!r} has neither wav.scp + text (Kaldi) nor *.trans.txt files "
                         f"(LibriSpeech); expected {_EXPECTED}")
    if p.name == "wav.scp":
        return "kaldi"
    suffix = p.suffix.lower()
    if suffix in (".json", ".jsonl"):
        return "nemo"
    if suffix in (".csv", ".tsv"):
        return "csv"
    raise ValueError(f"{str(p)!r}: unknown kind of file (suffix {suffix or 'none'!r}); expected {_EXPECTED}")


def _resolve(base: Path, name: str, where: str, also: Sequence[Path] = ()) -> Path:
    """``name`` as a path, relative ones against ``base`` (then ``also``); it must exist."""
    p = Path(os.path.expanduser(name))
    candidates = [p] if p.is_absolute() else [base / p, *(b / p for b in also)]
    for c in candidates:
        if c.is_file():
            return c
    raise FileNotFoundError(f"{where}: audio file {str(candidates[0])!r} does not exist")


def read_nemo_manifest(path) -> list[Entry]:
    """Entries of a NeMo manifest: one JSON object per line with ``audio_filepath`` and ``text``
    (``duration`` optional); blank lines are skipped."""
    path = Path(path)
    entries = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{n}"
            try:
                obj = json.loads(line)
            except ValueError as err:
                raise ValueError(f"{where}: not a JSON object ({err}); expected one "
                                 '{"audio_filepath": ..., "text": ..., "duration": ...} per line') from None
            if not isinstance(obj, dict) or not isinstance(obj.get("audio_filepath"), str) \
                    or not isinstance(obj.get("text"), str):
                raise ValueError(f"{where}: expected a JSON object with string 'audio_filepath' and 'text', "
                                 f"got {line.strip()[:120]!r}")
            duration = obj.get("duration")
            entries.append(Entry(_resolve(path.parent, obj["audio_filepath"], where), obj["text"],
                                 float(duration) if isinstance(duration, (int, float)) else None,
                                 str(obj.get("id", Path(obj["audio_filepath"]).stem)), where))
    return entries


def write_nemo_manifest(path, rows: Iterable[dict]) -> Path:
    """Write ``rows`` (dicts with ``audio_filepath``, ``text``, ``duration``, ...) as JSON lines."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


_PATH_COLUMNS = ("path", "audio_filepath", "wav_filename", "audio", "file", "filename")
_TEXT_COLUMNS = ("transcript", "text", "sentence", "transcription")


def _read_csv(path: Path) -> list[Entry]:
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    with open(path, encoding="utf-8", newline="") as f:
        rows = [(n, row) for n, row in enumerate(csv.reader(f, delimiter=delimiter), 1) if any(c.strip() for c in row)]
    if not rows:
        raise ValueError(f"{path}: empty manifest; expected {_EXPECTED}")
    header = [c.strip().lower() for c in rows[0][1]]
    path_col = next((header.index(c) for c in _PATH_COLUMNS if c in header), None)
    text_col = next((header.index(c) for c in _TEXT_COLUMNS if c in header), None)
    # Common Voice's TSV names clips relative to a clips/ folder beside it.
    also = [path.parent / "clips"]
    entries = []
    if path_col is not None and text_col is not None:
        for n, row in rows[1:]:
            where = f"{path}:{n}"
            if len(row) <= max(path_col, text_col):
                raise ValueError(f"{where}: {len(row)} fields, expected {len(header)} as in the header {header}")
            entries.append(Entry(_resolve(path.parent, row[path_col].strip(), where, also), row[text_col],
                                 None, Path(row[path_col].strip()).stem, where))
        return entries
    if path_col is not None or text_col is not None:
        raise ValueError(f"{path}:1: the header {header} needs both an audio column (one of {list(_PATH_COLUMNS)}) "
                         f"and a transcript column (one of {list(_TEXT_COLUMNS)})")
    for n, row in rows:                                  # deepspeech.pytorch: audio,transcript-file
        where = f"{path}:{n}"
        if len(row) != 2 or not row[1].strip().lower().endswith(".txt"):
            raise ValueError(f"{where}: expected a header with path and transcript columns, or header-less "
                             f"'audio,transcript.txt' pairs; got {delimiter.join(row)[:120]!r}")
        txt = Path(os.path.expanduser(row[1].strip()))
        txt = txt if txt.is_absolute() else path.parent / txt
        if not txt.is_file():
            raise FileNotFoundError(f"{where}: transcript file {str(txt)!r} does not exist")
        audio = _resolve(path.parent, row[0].strip(), where)
        entries.append(Entry(audio, txt.read_text(encoding="utf-8").strip(), None, audio.stem, where))
    return entries


def _read_librispeech(root: Path) -> list[Entry]:
    entries = []
    for trans in sorted(root.rglob("*.trans.txt")):
        with open(trans, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                where = f"{trans}:{n}"
                uttid, _, text = line.strip().partition(" ")
                matches = sorted(trans.parent.glob(f"{glob_escape(uttid)}.*"))
                audio = next((m for m in matches if m.suffix.lower() in (".flac", ".wav", ".ogg", ".mp3", ".opus")), None)
                if audio is None:
                    raise FileNotFoundError(f"{where}: no audio file {uttid}.flac (or .wav/.ogg/.mp3) in {str(trans.parent)!r}")
                if not text.strip():
                    raise ValueError(f"{where}: expected 'UTTERANCE-ID TEXT', got {line.strip()[:120]!r}")
                entries.append(Entry(audio, text, None, uttid, where))
    return entries


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def _read_kaldi(folder: Path) -> list[Entry]:
    def table(name: str) -> dict[str, tuple[str, str]]:
        out = {}
        with open(folder / name, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                key, _, value = line.strip().partition(" ")
                if not value.strip():
                    raise ValueError(f"{folder / name}:{n}: expected 'UTTERANCE-ID VALUE', got {line.strip()[:120]!r}")
                out[key] = (value.strip(), f"{folder / name}:{n}")
        return out

    if (folder / "segments").is_file():
        raise ValueError(f"{folder}: Kaldi 'segments' (several utterances per recording) are not supported; "
                         "cut the utterances into their own files")
    wavs, texts = table("wav.scp"), table("text")
    entries = []
    for uttid, (value, where) in wavs.items():
        if value.endswith("|"):
            raise ValueError(f"{where}: piped wav.scp commands are not supported ({value[:80]!r}); "
                             "write the audio to files and list their paths")
        if uttid not in texts:
            raise ValueError(f"{where}: utterance {uttid!r} has no line in {folder / 'text'}")
        entries.append(Entry(_resolve(folder, value, where), texts[uttid][0], None, uttid, where))
    extra = sorted(set(texts) - set(wavs))
    if extra:
        raise ValueError(f"{texts[extra[0]][1]}: utterance {extra[0]!r} has no audio in {folder / 'wav.scp'} "
                         f"({len(extra)} such)")
    return entries


def read_entries(path) -> list[Entry]:
    """The entries (audio path, transcript as written) of a manifest or folder in any of :data:`LAYOUTS`."""
    layout = detect_layout(path)
    if layout in GENERATED:
        raise ValueError(f"{path!r} is generated, not read from files: use load_dataset({path!r})")
    p = Path(path)
    if layout == "nemo":
        entries = read_nemo_manifest(p)
    elif layout == "csv":
        entries = _read_csv(p)
    elif layout == "librispeech":
        entries = _read_librispeech(p)
    else:
        entries = _read_kaldi(p if p.is_dir() else p.parent)
    if not entries:
        raise ValueError(f"{str(p)!r} ({layout}) lists no utterances")
    return entries


# --------------------------------------------------------------------------- loading


def model_output_frames(model_or_config) -> Callable[[int], int]:
    """``n_samples -> output frames`` of a model (or a ``DeepSpeech2Config``) on a 16 kHz clip.

    Spectrogram frames are ``1 + (n - 320) // 160`` (20 ms windows, 10 ms hop); the model's
    convolutions then reduce them.  For :func:`load_dataset`'s ``output_frames``.
    """
    from .features import window_and_hop
    from .model import DeepSpeech2, DeepSpeech2Config

    model = model_or_config
    if isinstance(model, DeepSpeech2Config):
        with torch.random.fork_rng():               # building a model draws weights: leave the RNG alone
            model = DeepSpeech2(config=model)
    win, hop, _ = window_and_hop(SAMPLE_RATE, 20.0, 10.0, None)

    def frames(n_samples: int) -> int:
        t = 1 + (n_samples - win) // hop if n_samples >= win else 0
        return int(model.output_lengths(torch.tensor([t]))[0]) if t > 0 else 0
    return frames


def _ctc_frames_needed(text: str) -> int:
    """Fewest frames CTC needs for ``text``: one per symbol plus a blank between each repeated pair."""
    return len(text) + sum(a == b for a, b in zip(text, text[1:]))


@dataclass
class LoadReport:
    """What :func:`load_dataset` kept and skipped (each skip list holds ``(where, why)`` pairs)."""

    source: str
    layout: str
    kept: int = 0
    seconds: float = 0.0
    too_long: list = field(default_factory=list)
    too_short: list = field(default_factory=list)
    outside_alphabet: list = field(default_factory=list)
    empty: list = field(default_factory=list)
    max_seconds: float | None = None

    @property
    def skipped(self) -> int:
        return len(self.too_long) + len(self.too_short) + len(self.outside_alphabet) + len(self.empty)

    def summary(self) -> str:
        """One line: ``SOURCE (layout): N clips, M min; skipped ...``."""
        parts = []
        if self.too_long:
            parts.append(f"{len(self.too_long)} longer than {self.max_seconds:g} s")
        if self.too_short:
            parts.append(f"{len(self.too_short)} too short for the model (e.g. {self.too_short[0][1]})")
        if self.outside_alphabet:
            parts.append(f"{len(self.outside_alphabet)} with characters outside the alphabet "
                         f"(e.g. {self.outside_alphabet[0][1]} at {self.outside_alphabet[0][0]})")
        if self.empty:
            parts.append(f"{len(self.empty)} with an empty transcript (e.g. {self.empty[0][0]})")
        line = f"{self.source} ({self.layout}): {self.kept} clips, {self.seconds / 60:.1f} min"
        return line + ("; skipped " + ", ".join(parts) if parts else "")


class Dataset(list):
    """A list of :class:`~reference.data.Sample` with the :class:`LoadReport` of how it was read and,
    for recordings, ``entries``: the manifest :class:`Entry` of each sample (its file), in order."""

    def __init__(self, samples=(), report: LoadReport | None = None, entries: Sequence[Entry] = ()):
        super().__init__(samples)
        self.report = report
        self.entries = list(entries)


def load_dataset(source, *, max_seconds: float | None = None, output_frames: Callable[[int], int] | None = None,
                 progress: bool = False, n: int | None = None, seed: int = 0, cache: str = "data_cache",
                 min_words: int = 1, max_words: int = 6) -> Dataset:
    """Open ``source`` (a name of :data:`GENERATED` or a path in one of :data:`LAYOUTS`) as a :class:`Dataset`.

    Args:
        source: ``'synthetic'``, ``'espeak'``, or a manifest file / data folder (see the module docstring).
        max_seconds: skip clips longer than this (``None``: keep all).
        output_frames: ``n_samples -> model output frames`` (:func:`model_output_frames`); a clip with
            fewer than CTC needs for its transcript is skipped (``None``: no such check).
        progress: a tqdm bar while reading audio.
        n, seed, cache, min_words, max_words: for the generated sources only: ``n`` utterances
            (``synthetic``: of ``min_words``-``max_words`` words) from ``seed``; ``espeak``: the
            train split of ``reference.corpus.build_corpus(cache, n_train=n, seed=seed)``.

    Returns:
        a :class:`Dataset` (a list of samples) whose ``.report`` counts what was skipped and why.
    """
    layout = detect_layout(source)
    if layout == "synthetic":
        from .synthetic import generate_synthetic_dataset
        samples = generate_synthetic_dataset(n or 2000, seed=seed, min_words=min_words, max_words=max_words)
        return Dataset(samples, LoadReport("synthetic", layout, len(samples), sum(s.duration for s in samples)))
    if layout == "espeak":
        from .corpus import build_corpus
        samples = build_corpus(cache, n_train=n or 12000, seed=seed, progress=progress)["train"]
        return Dataset(samples, LoadReport("espeak", layout, len(samples), sum(s.duration for s in samples)))

    from .audio import load_audio
    entries = read_entries(source)
    report = LoadReport(str(source), layout, max_seconds=max_seconds)
    samples, kept = [], []
    bar = entries
    if progress:
        from tqdm import tqdm
        bar = tqdm(entries, desc=f"reading {Path(source).name}", unit="clip", leave=False)
    for e in bar:
        text = normalize_text(e.text)
        bad = outside_alphabet(text)
        if bad:
            report.outside_alphabet.append((e.where, f"{''.join(bad)!r} in {text!r}"))
            continue
        if not text:
            report.empty.append((e.where, repr(e.text)))
            continue
        if max_seconds is not None and e.duration is not None and e.duration > max_seconds + 1.0:
            report.too_long.append((e.where, f"{e.duration:.1f} s"))          # (manifest's duration: not read)
            continue
        audio = load_audio(e.audio, SAMPLE_RATE)
        seconds = audio.numel() / SAMPLE_RATE
        if max_seconds is not None and seconds > max_seconds:
            report.too_long.append((e.where, f"{seconds:.1f} s"))
            continue
        if output_frames is not None:
            have, need = output_frames(audio.numel()), _ctc_frames_needed(text)
            if have < need:
                report.too_short.append((e.where, f"{seconds:.2f} s gives {have} frames, {text!r} needs {need}"))
                continue
        elif audio.numel() < 320:
            report.too_short.append((e.where, f"{audio.numel()} samples, less than one 20 ms window"))
            continue
        samples.append(Sample(audio, text, SAMPLE_RATE, e.id.split("-")[0] if layout == "librispeech" else ""))
        kept.append(e)
        report.seconds += seconds
    report.kept = len(samples)
    return Dataset(samples, report, kept)
