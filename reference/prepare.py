"""Prepare real recordings for training and testing: ``python -m reference.prepare asterisk OUT``.

``asterisk``: the English telephone prompts that Debian ships for the Asterisk PBX, one human voice
(Allison Smith; CC-BY-SA-3.0, Digium/Sangoma), about 550 spoken prompts with their texts:

1. ``apt-get download asterisk-core-sounds-en asterisk-core-sounds-en-g722`` into a temporary
   folder (no root needed, nothing is installed) and ``dpkg-deb -x`` both; or ``--debs DIR``: the
   two ``.deb`` files already there; or ``--root DIR``: a tree they were extracted into.
2. Read the texts (``core-sounds-en.txt.gz``, lines ``name: text``) and decode the 16 kHz G.722
   files with PyPI's ``G722`` (``G722.G722(16000, 64000).decode(bytes)``).
3. Keep the spoken prompts: a text with a bracketed part (``[ascending tones]``, ``(10 seconds of
   silence)``, ``<beep ascending>``, ``at [@]``, ``... (simple tone sound plays)``) describes
   silence, tones or sounds besides (or instead of) words, so the prompt is left out.  Texts are
   normalised by :func:`reference.datasets.normalize_text`.
4. The split, fixed so that everyone measures the same thing: a prompt is TEST when the first hex
   digit of the SHA-1 of its name (its path under the language folder without extension, e.g.
   ``vm-options``, ``digits/7``) is 0-3, otherwise TRAIN (:func:`split_of`).
5. Write ``OUT/audio/NAME.flac`` (16 kHz), NeMo manifests ``OUT/train.jsonl``, ``OUT/dev.jsonl`` (the
   TRAIN prompts whose SHA-1 starts with 4, held out of training to choose alpha, beta and the
   checkpoint: :func:`is_dev`), ``OUT/test.jsonl``
   (TEST prompts whose text has no digits: what the course measures) and
   ``OUT/test_digits.jsonl`` (TEST prompts with digits; never trained on), ``OUT/lm.json`` (a
   trigram :class:`~reference.lm.NGramLM` of the TRAIN texts only: nothing trained sees a test
   text) and ``OUT/README.txt`` (the attribution).

The audio is never committed: ``data/`` is git-ignored (``make asterisk`` writes ``data/asterisk``).
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["PACKAGES", "parse_texts", "spoken_text", "split_of", "is_dev", "prepare_asterisk", "main"]

PACKAGES = ("asterisk-core-sounds-en", "asterisk-core-sounds-en-g722")
TEXTS = "usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz"
SOUNDS = "usr/share/asterisk/sounds"
SAMPLE_RATE = 16000
_OTHER_DATA = ("any other recordings work the same way: a folder or manifest in a layout of reference.datasets "
               "(LibriSpeech, CSV/TSV, NeMo .jsonl, Kaldi), passed as `python -m reference.train --data PATH`")


# --------------------------------------------------------------------------- texts and split


def parse_texts(lines, where: str = "core-sounds-en.txt") -> dict[str, str]:
    """``{name: text}`` from lines ``name: text`` (``;`` comments and blank lines skipped)."""
    texts = {}
    for n, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith(";"):
            continue
        name, sep, text = line.partition(":")
        if not sep or not name.strip() or any(ch.isspace() for ch in name.strip()):
            raise ValueError(f"{where}:{n}: expected 'name: text', got {line[:120]!r}")
        texts[name.strip()] = text.strip()
    return texts


_NOTES = re.compile(r"\[[^\]]*\]|\([^)]*\)|<[^>]*>")


def spoken_text(text: str) -> str | None:
    """The words of a spoken prompt, or ``None`` for one that is not only speech: a text with a bracketed
    part (silence, tones, sound effects, notes such as ``at [@]``) or without a letter or digit."""
    if _NOTES.search(text) or re.search(r"[\[\]()<>]", text):
        return None
    words = " ".join(text.split())
    return words if re.search(r"[A-Za-z0-9]", words) else None


def split_of(name: str) -> str:
    """``'test'`` when the first hex digit of SHA-1(name) is 0-3, else ``'train'``: the course's fixed split."""
    return "test" if hashlib.sha1(name.encode("utf-8")).hexdigest()[0] in "0123" else "train"


def is_dev(name: str) -> bool:
    """TRAIN prompts whose SHA-1 starts with ``4`` (about 1 in 12) are held out of training as ``dev``: the
    clips that choose alpha, beta and when to stop, so that nothing is tuned on a test prompt."""
    return split_of(name) == "train" and hashlib.sha1(name.encode("utf-8")).hexdigest()[0] == "4"


# --------------------------------------------------------------------------- packages


def _run(cmd: list[str], cwd=None) -> None:
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` failed ({r.returncode}): {(r.stderr or r.stdout).strip()[-500:]}")


DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
APT_SOURCES = ("/etc/apt/sources.list", "/etc/apt/sources.list.d")


def download(dest: Path, packages=PACKAGES, non_free: bool = False) -> list[Path]:
    """``apt-get download`` the ``packages`` into ``dest``; the ``.deb`` paths.

    ``non_free``: some of them are in Debian's ``non-free`` component, which this machine's apt may not
    list.  apt then reads a private sources list (``main`` and ``non-free`` of this Debian release, signed
    by Debian's keyring) with its own package lists under ``dest``: no root, and the system's apt is not
    touched.
    """
    if shutil.which("apt-get") is None:
        raise RuntimeError("apt-get is not available here (this step needs Debian/Ubuntu's apt). Download the .deb "
                           f"files of {' and '.join(packages)} elsewhere and pass --debs DIR; or skip this data: "
                           + _OTHER_DATA)
    options = _private_apt(Path(dest)) if non_free else []
    if options:
        _run(["apt-get", *options, "update"], cwd=dest)
    _run(["apt-get", *options, "download", *packages], cwd=dest)
    return find_debs(dest, packages)


def _private_apt(dest: Path) -> list[str]:
    """apt options for a sources list of this Debian release's ``main`` and ``non-free``, kept under ``dest``:
    the same archive (URI) as the machine's own sources for the release's ``main``, another component."""
    try:
        release = platform.freedesktop_os_release()
    except OSError:
        release = {}
    codename = release.get("VERSION_CODENAME")
    if release.get("ID") != "debian" or not codename:
        raise RuntimeError(f"the non-free packages are fetched from Debian's archive, and this is not Debian "
                           f"({release.get('PRETTY_NAME', 'no /etc/os-release')}); download the .deb files of the "
                           "packages named in reference/tts.py elsewhere and pass --debs DIR")
    mirror = debian_archive(codename)
    if mirror is None:
        raise RuntimeError(f"no apt source for Debian {codename} main in {' or '.join(APT_SOURCES)}: apt cannot reach "
                           "Debian's archive here; download the .deb files elsewhere and pass --debs DIR")
    if not Path(DEBIAN_KEYRING).is_file():
        raise RuntimeError(f"{DEBIAN_KEYRING} is missing (package debian-archive-keyring): apt cannot check Debian's archive")
    apt = dest / "apt"
    for sub in ("lists/partial", "cache/archives/partial"):
        (apt / sub).mkdir(parents=True, exist_ok=True)
    sources = apt / "sources.list"
    sources.write_text(f"deb [signed-by={DEBIAN_KEYRING}] {mirror} {codename} main non-free\n")
    return ["-o", f"Dir::Etc::SourceList={sources}", "-o", "Dir::Etc::SourceParts=/dev/null",
            "-o", f"Dir::State::Lists={apt / 'lists'}", "-o", f"Dir::Cache={apt / 'cache'}",
            "-o", "Debug::NoLocking=1"]


def debian_archive(codename: str, sources=APT_SOURCES) -> str | None:
    """The URI of the first apt source for ``codename``'s ``main`` (one-line ``deb`` entries and deb822
    ``.sources`` stanzas, under the files or folders ``sources``), or ``None``."""
    files = []
    for place in map(Path, sources):
        files += sorted(place.glob("*.list")) + sorted(place.glob("*.sources")) if place.is_dir() else [place]
    for f in files:
        try:
            text = f.read_text(errors="replace")
        except OSError:
            continue
        if f.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields = {}
                for line in stanza.splitlines():
                    key, sep, value = line.partition(":")
                    if sep and not line.startswith(("#", " ")):
                        fields[key.strip().lower()] = value.split()
                if ("deb" in fields.get("types", []) and codename in fields.get("suites", [])
                        and "main" in fields.get("components", []) and fields.get("uris")):
                    return fields["uris"][0].rstrip("/")
        else:
            for line in text.splitlines():
                words = re.sub(r"\[[^\]]*\]", " ", line.split("#", 1)[0]).split()
                if len(words) >= 4 and words[0] == "deb" and words[2] == codename and "main" in words[3:]:
                    return words[1].rstrip("/")
    return None


def find_debs(folder: Path, packages=PACKAGES) -> list[Path]:
    debs = []
    for pkg in packages:
        found = sorted(Path(folder).glob(f"{pkg}_*.deb"))
        if not found:
            raise FileNotFoundError(f"no {pkg}_*.deb in {str(folder)!r}")
        debs.append(found[-1])
    return debs


def extract(debs: list[Path], root: Path) -> Path:
    if shutil.which("dpkg-deb") is None:
        raise RuntimeError("dpkg-deb is not available to unpack the .deb files; unpack them yourself "
                           "(ar x FILE; tar xf data.tar.*) into one folder and pass --root DIR")
    for deb in debs:
        _run(["dpkg-deb", "-x", str(deb), str(root)])
    return root


def package_versions(root: Path, packages=PACKAGES) -> dict[str, str]:
    """``{package: version}`` from each package's ``changelog.Debian.gz`` (first line ``source (version) ...``)."""
    versions = {}
    for pkg in packages:
        log = root / "usr/share/doc" / pkg / "changelog.Debian.gz"
        try:
            with gzip.open(log, "rt", encoding="utf-8") as f:
                m = re.match(r"\S+ \(([^)]+)\)", f.readline())
            versions[pkg] = m.group(1) if m else "unknown"
        except OSError:
            versions[pkg] = "unknown"
    return versions


# --------------------------------------------------------------------------- the corpus


def _language_folder(root: Path) -> Path:
    folders = sorted({p.parent for p in (root / SOUNDS).glob("*/*.g722")}) if (root / SOUNDS).is_dir() else []
    if len(folders) != 1:
        raise FileNotFoundError(f"expected one folder of .g722 prompts under {str(root / SOUNDS)!r}, found "
                                f"{[str(f) for f in folders]}: is {PACKAGES[1]} extracted there?")
    return folders[0]


def decode_g722(path: Path) -> np.ndarray:
    """16 kHz wide-band G.722 (64 kbit/s) -> float32 samples in [-1, 1]."""
    try:
        import G722
    except ImportError:
        raise ImportError("decoding the prompts needs PyPI's G722: pip install G722") from None
    pcm = np.asarray(G722.G722(SAMPLE_RATE, 64000).decode(path.read_bytes()), dtype=np.int16)
    return pcm.astype(np.float32) / 32768.0


def prepare_asterisk(out, root=None, debs=None, progress: bool = True) -> dict:
    """Build the Asterisk corpus in ``out`` (see the module docstring); returns the counts it prints.

    ``root``: a folder the two packages are extracted into; ``debs``: a folder holding their ``.deb``
    files; neither: download them with ``apt-get download``.
    """
    import soundfile as sf

    from .datasets import normalize_text, outside_alphabet, write_nemo_manifest
    from .lm import NGramLM

    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="asterisk-") as tmp:
        if root is None:
            deb_files = find_debs(Path(debs)) if debs is not None else download(Path(tmp))
            root = extract(deb_files, Path(tmp) / "root")
        root = Path(root)
        texts_file = root / TEXTS
        if not texts_file.is_file():
            raise FileNotFoundError(f"{str(texts_file)!r} is missing: is {PACKAGES[0]} extracted in {str(root)!r}?")
        with gzip.open(texts_file, "rt", encoding="utf-8", errors="replace") as f:
            texts = parse_texts(f, str(texts_file))
        lang = _language_folder(root)
        audio_names = {p.relative_to(lang).with_suffix("").as_posix() for p in lang.rglob("*.g722")}
        versions = package_versions(root)

        rows = {"train": [], "dev": [], "test": [], "test_digits": []}
        not_speech, outside, no_audio = [], [], sorted(set(texts) - audio_names)
        no_text = sorted(audio_names - set(texts))
        names = sorted(set(texts) & audio_names)
        if progress:
            from tqdm import tqdm
            names = tqdm(names, desc="decoding G.722", unit="prompt", leave=False)
        for name in names:
            words = spoken_text(texts[name])
            if words is None:
                not_speech.append(name)                # silence, tones, bracketed notes
                continue
            text = normalize_text(words)
            bad = outside_alphabet(text)
            if bad or not text:
                outside.append((name, f"{''.join(bad)!r} in {text!r}"))
                continue
            audio = decode_g722(lang / f"{name}.g722")
            flac = out / "audio" / f"{name}.flac"
            flac.parent.mkdir(parents=True, exist_ok=True)
            sf.write(flac, audio, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
            split = split_of(name)
            if split == "test" and re.search(r"\d", words):
                split = "test_digits"
            elif is_dev(name):
                split = "dev"
            rows[split].append({"audio_filepath": flac.relative_to(out).as_posix(), "duration": round(audio.size / SAMPLE_RATE, 3),
                                "text": text, "name": name, "original": texts[name]})

    for split, split_rows in rows.items():
        write_nemo_manifest(out / f"{split}.jsonl", split_rows)
    lm = NGramLM.train([r["text"] for r in rows["train"]], order=3)
    lm.save(out / "lm.json")
    minutes = {k: sum(r["duration"] for r in v) / 60 for k, v in rows.items()}
    (out / "README.txt").write_text(_readme(versions, rows, minutes))
    counts = {"prompts": sum(len(v) for v in rows.values()), "minutes": sum(minutes.values()),
              **{k: len(v) for k, v in rows.items()}, **{f"{k}_minutes": m for k, m in minutes.items()},
              "not_speech": len(not_speech), "outside_alphabet": len(outside), "texts_without_audio": len(no_audio),
              "audio_without_text": len(no_text), "versions": versions}
    print(f"asterisk: {counts['prompts']} spoken prompts, {counts['minutes']:.1f} min: train {len(rows['train'])} "
          f"({minutes['train']:.1f} min), dev {len(rows['dev'])} ({minutes['dev']:.1f} min), test {len(rows['test'])} ({minutes['test']:.1f} min), test_digits "
          f"{len(rows['test_digits'])} ({minutes['test_digits']:.1f} min)")
    skipped = [f"{len(not_speech)} not only speech (silence, tones, bracketed notes; e.g. {not_speech[0]})" if not_speech else "",
               f"{len(outside)} with characters outside the alphabet (e.g. {outside[0][0]}: {outside[0][1]})" if outside else "",
               f"{len(no_audio)} texts without audio (e.g. {no_audio[0]})" if no_audio else "",
               f"{len(no_text)} audio files without text (e.g. {no_text[0]})" if no_text else ""]
    if any(skipped):
        print("asterisk: skipped " + ", ".join(s for s in skipped if s))
    print(f"asterisk: wrote {out / 'train.jsonl'}, {out / 'dev.jsonl'}, {out / 'test.jsonl'}, {out / 'test_digits.jsonl'}, "
          f"{out / 'lm.json'} (trigram of the train texts, {len(lm.vocab)} words), {out / 'README.txt'}")
    return counts


def _readme(versions: dict, rows: dict, minutes: dict) -> str:
    pkgs = "\n".join(f"  {p} {v}" for p, v in versions.items())
    return f"""Asterisk core sounds (English), prepared by `python -m reference.prepare asterisk`.

Recordings: Allison Smith (http://www.theivrvoice.com), the English prompts of the Asterisk PBX;
financial contributions by Digium, Inc. (now Sangoma Technologies). License: Creative Commons
Attribution-ShareAlike 3.0 (CC-BY-SA-3.0), https://creativecommons.org/licenses/by-sa/3.0/.
From the Debian packages:
{pkgs}
Changes: G.722 decoded to 16 kHz FLAC; texts normalised to lower-case letters, space and
apostrophe (numbers and symbols spelled out); prompts of silence or tones, and those whose
text has bracketed notes, left out.
These files are shared under the same license. Do not commit them to the course repository.

Split (fixed): a prompt is TEST when the first hex digit of SHA-1(name) is 0-3, else TRAIN.
  train.jsonl        {len(rows['train']):4d} prompts, {minutes['train']:5.1f} min
  dev.jsonl          {len(rows['dev']):4d} prompts, {minutes['dev']:5.1f} min  (TRAIN prompts held out to tune alpha, beta)
  test.jsonl         {len(rows['test']):4d} prompts, {minutes['test']:5.1f} min  (TEST prompts whose text has no digits)
  test_digits.jsonl  {len(rows['test_digits']):4d} prompts, {minutes['test_digits']:5.1f} min  (TEST prompts with digits; never trained on)
  lm.json            a trigram (reference.lm.NGramLM) of the train texts only
"""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m reference.prepare", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="corpus", required=True)
    a = sub.add_parser("asterisk", help="Debian's English Asterisk prompts (one human voice, CC-BY-SA-3.0)")
    a.add_argument("out", nargs="?", default="data/asterisk", help="output folder")
    src = a.add_mutually_exclusive_group()
    src.add_argument("--debs", help=f"a folder holding the .deb files of {' and '.join(PACKAGES)} (no download)")
    src.add_argument("--root", help="a folder the two packages are already extracted into (no download)")
    a.add_argument("--quiet", action="store_true", help="no progress bar")
    from .voices import NON_FREE_PACKAGES, PACKAGES as VOICE_PACKAGES
    v = sub.add_parser("voices", help="WordNet's usage examples said by eSpeak NG, Flite, SVOX Pico and RHVoice voices (reference/voices.py)")
    v.add_argument("out", nargs="?", default="data/voices", help="output folder")
    vsrc = v.add_mutually_exclusive_group()
    vsrc.add_argument("--debs", help=f"a folder holding the .deb files of {', '.join(VOICE_PACKAGES)} and (without "
                                      f"--free-only) {', '.join(NON_FREE_PACKAGES)} (no download)")
    vsrc.add_argument("--root", help="a folder those packages are already extracted into (no download)")
    v.add_argument("--sentences", type=int, default=None, help="use only this many WordNet examples (default: all)")
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--workers", type=int, default=2, help="synthesizer processes at once")
    v.add_argument("--free-only", action="store_true",
                   help="leave out the Pico and RHVoice clips (Debian non-free; the corpus of models/voices-ds2.pt's first two stages)")
    v.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    try:
        if args.corpus == "voices":
            from .voices import prepare_voices
            prepare_voices(args.out, root=args.root, debs=args.debs, n_sentences=args.sentences, seed=args.seed,
                           workers=args.workers, progress=not args.quiet, non_free=not args.free_only)
        else:
            prepare_asterisk(args.out, root=args.root, debs=args.debs, progress=not args.quiet)
    except (RuntimeError, FileNotFoundError, ValueError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
