"""``python -m reference.prepare voices`` (reference/voices.py): WordNet's examples said by eSpeak, Flite,
SVOX Pico and RHVoice (reference/tts.py).

WordNet's data files are faked here (a few lines in the real format, with the licence header the parser
must skip); the synthesizers are the real ones, from Debian's packages (``apt-get download flite
libflite1``, about 13 MB, and Pico's and RHVoice's from ``non-free`` through a private sources list,
about 40 MB; no root), and the tests that need them skip with the reason where apt cannot fetch them.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sf = pytest.importorskip("soundfile")
pytest.importorskip("num2words")

from reference.espeak import espeak_available  # noqa: E402
from reference.voices import (FLITE, FLITE_VOICES, NON_FREE_PACKAGES, NON_FREE_SHARE, NON_FREE_VOICES,  # noqa: E402
                              flite_synthesize, prepare_voices, split_of_text, wordnet_examples)

HEADER = "  1 This software and database is being provided to you, the LICENSEE, by  \n"
DATA = {
    "noun": [
        '00001740 03 n 01 entity 0 003 ~ 00001930 n 0000 | that which is perceived or known "the camera sat on the tripod"  \n',
        '02084071 05 n 02 dog 0 | a member of the genus Canis; "the dog barked all night"; "Dogs like 2 walks a day"  \n',
    ],
    "verb": ['01168468 34 v 01 eat 0 | take in solid food; "She was eating a banana"; "What did you eat for dinner last night?"  \n'],
    "adj": ['00001740 00 a 01 able 0 | having the necessary means; "able to swim"; "she was able to program her computer"  \n',
            '00002098 00 s 01 x 0 | math; "the image of f(x) = x^2"; "ok"  \n'],
    "adv": ['00001740 02 r 01 barely 0 | by a small margin; "they barely won"  \n'],
}
EXAMPLES = ["the camera sat on the tripod", "the dog barked all night", "Dogs like 2 walks a day", "She was eating a banana",
            "What did you eat for dinner last night?", "able to swim", "she was able to program her computer",
            "the image of f(x) = x^2", "ok", "they barely won"]
SPOKEN = ["the camera sat on the tripod", "the dog barked all night", "dogs like two walks a day", "she was eating a banana",
          "what did you eat for dinner last night", "able to swim", "she was able to program her computer", "they barely won"]


def _write_wordnet(root: Path) -> Path:
    folder = root / "usr/share/wordnet"
    folder.mkdir(parents=True)
    for pos, lines in DATA.items():
        (folder / f"data.{pos}").write_text(HEADER + "".join(lines))
    return folder


def test_wordnet_examples_are_the_quoted_parts_of_the_glosses_in_order(tmp_path):
    assert wordnet_examples(_write_wordnet(tmp_path)) == EXAMPLES


def test_wordnet_examples_name_the_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="data.noun"):
        wordnet_examples(tmp_path)


def test_split_is_the_sha1_rule_and_about_two_percent():
    texts = [f"sentence number {i}" for i in range(5000)]
    for t in texts[:200]:
        assert split_of_text(t) == ("dev" if int(hashlib.sha1(t.encode()).hexdigest()[:2], 16) < 5 else "train")
    share = sum(split_of_text(t) == "dev" for t in texts) / len(texts)
    assert 0.01 < share < 0.03


def _apt_root(tmp_path_factory) -> Path | str:
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        return "apt-get or dpkg-deb is not installed"
    debs = tmp_path_factory.mktemp("flite-debs")
    r = subprocess.run(["apt-get", "download", "flite", "libflite1"], cwd=debs, capture_output=True, text=True)
    if r.returncode != 0:
        return f"apt-get cannot fetch flite here: {r.stderr.strip()[:200]}"
    root = tmp_path_factory.mktemp("root")
    for deb in debs.glob("*.deb"):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    return root


@pytest.fixture(scope="module")
def flite_root(tmp_path_factory):
    root = _apt_root(tmp_path_factory)
    if isinstance(root, str):
        pytest.skip(root)
    return root


@pytest.fixture(scope="module")
def all_root(flite_root, tmp_path_factory):
    """Flite's root with Pico's and RHVoice's packages (Debian non-free) extracted into it too."""
    from reference.prepare import download, extract
    root = tmp_path_factory.mktemp("allroot")
    shutil.copytree(flite_root, root, dirs_exist_ok=True)
    try:
        debs = download(tmp_path_factory.mktemp("non-free-debs"), NON_FREE_PACKAGES, non_free=True)
    except RuntimeError as err:
        pytest.skip(f"apt-get cannot fetch Debian's non-free packages here: {str(err)[:200]}")
    return extract(debs, root)


def _env(root: Path) -> dict:
    import os
    return dict(os.environ, LD_LIBRARY_PATH=str(root / "usr/lib/x86_64-linux-gnu"))


def test_flite_speaks_every_voice_and_duration_stretch_slows_it(flite_root):
    flite = str(flite_root / FLITE)
    for voice in FLITE_VOICES:
        audio, rate = flite_synthesize(flite, "please leave a message", voice, 1.0, 120.0, _env(flite_root))
        assert rate in (8000, 16000) and audio.ndim == 1
        assert np.sqrt(np.mean(audio ** 2)) > 0.01, f"{voice} is silent"
    slow, _ = flite_synthesize(flite, "please leave a message", "slt", 1.25, 180.0, _env(flite_root))
    fast, _ = flite_synthesize(flite, "please leave a message", "slt", 0.8, 180.0, _env(flite_root))
    assert 1.3 < len(slow) / len(fast) < 1.8           # 1.25 / 0.8 = 1.56 (pauses at the ends stretch less)


def test_an_unknown_flite_voice_is_named_not_replaced_by_the_default(flite_root):
    with pytest.raises(ValueError, match="no-such-voice"):
        flite_synthesize(str(flite_root / FLITE), "hello", "no-such-voice", 1.0, 120.0, _env(flite_root))


@pytest.fixture(scope="module")
def prepared(all_root, tmp_path_factory):
    if not espeak_available():
        pytest.skip("espeakng-loader is not installed")
    root = tmp_path_factory.mktemp("fakeroot")
    shutil.copytree(all_root, root, dirs_exist_ok=True)
    _write_wordnet(root)
    out = tmp_path_factory.mktemp("voices")
    counts = prepare_voices(out, root=root, progress=False)
    return out, counts, root


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_prepare_voices_writes_every_spoken_example_once_by_eSpeak_or_Flite_and_some_again(prepared):
    out, counts, _ = prepared
    free = _rows(out / "train.jsonl") + _rows(out / "dev.jsonl")
    assert sorted(r["text"] for r in free) == sorted(SPOKEN)       # 'ok' too short, f(x) outside the alphabet
    assert counts["outside_alphabet"] == 1 and counts["too_short_or_long"] == 1
    engines = [r["speaker"].split(":")[0] for r in free]
    assert engines.count("flite") == len(SPOKEN) // 2 and engines.count("espeak") == len(SPOKEN) - len(SPOKEN) // 2
    assert sum(bool(r["noise"]) for r in free) == round(0.4 * len(SPOKEN))
    rows = _rows(out / "train-all.jsonl") + _rows(out / "dev-all.jsonl")
    again = [r for r in rows if r not in free]
    assert len(rows) == len(free) + len(again) and len(again) == counts["non_free_clips"] == round(NON_FREE_SHARE * len(SPOKEN))
    assert len({r["text"] for r in again}) == len(again) and {r["text"] for r in again} <= set(SPOKEN)
    labels = {f"{engine}:{voice}" for engine, voice in NON_FREE_VOICES}
    assert {r["speaker"] for r in again} <= labels and len({r["speaker"] for r in again}) == len(again)   # one each
    for split in ("train", "dev"):
        assert all(split_of_text(r["text"]) == split for r in _rows(out / f"{split}-all.jsonl"))
    for r in rows:
        audio, rate = sf.read(out / r["audio_filepath"], dtype="float32")
        assert rate == 16000 and abs(len(audio) / rate - r["duration"]) < 1e-3
        assert 0.3 < r["duration"] < 6 and np.abs(audio).max() > 0.05


def test_prepare_voices_is_deterministic(prepared, tmp_path):
    out, _, root = prepared
    prepare_voices(tmp_path, root=root, progress=False)
    assert _rows(tmp_path / "train-all.jsonl") == _rows(out / "train-all.jsonl")
    for r in _rows(out / "train-all.jsonl") + _rows(out / "dev-all.jsonl"):        # every engine's clips
        a, _ = sf.read(out / r["audio_filepath"], dtype="int16")
        b, _ = sf.read(tmp_path / r["audio_filepath"], dtype="int16")
        assert np.array_equal(a, b)


def test_the_eSpeak_and_Flite_clips_do_not_depend_on_the_non_free_ones(prepared, tmp_path):
    """``--free-only`` writes the same eSpeak and Flite clips (``train.jsonl``, ``dev.jsonl``), sample for
    sample: the non-free clips come from a generator of their own, so the voices model's first two stages
    read the same corpus either way."""
    out, _, root = prepared
    counts = prepare_voices(tmp_path, root=root, progress=False, non_free=False)
    assert counts["non_free_clips"] == 0 and not (tmp_path / "train-all.jsonl").exists()
    for split in ("train", "dev"):
        assert _rows(tmp_path / f"{split}.jsonl") == _rows(out / f"{split}.jsonl")
    for r in _rows(tmp_path / "train.jsonl"):
        a, _ = sf.read(out / r["audio_filepath"], dtype="int16")
        b, _ = sf.read(tmp_path / r["audio_filepath"], dtype="int16")
        assert np.array_equal(a, b)


def test_the_manifest_trains_through_the_datasets_module(prepared):
    from reference.datasets import load_dataset
    out, _, _ = prepared
    data = load_dataset(out / "train.jsonl")
    assert len(data) == len(_rows(out / "train.jsonl")) and data[0].sample_rate == 16000


def test_missing_non_free_packages_are_named_before_any_clip_is_made(flite_root, tmp_path, capsys):
    from reference.prepare import main
    root = tmp_path / "root"
    shutil.copytree(flite_root, root)
    _write_wordnet(root)
    assert main(["voices", str(tmp_path / "out"), "--root", str(root), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "libttspico" in err and "--free-only" in err and not (tmp_path / "out").exists()


def test_cli_without_packages_says_what_is_missing(tmp_path, capsys):
    from reference.prepare import main
    assert main(["voices", str(tmp_path / "out"), "--root", str(tmp_path)]) == 2
    assert "flite" in capsys.readouterr().err
