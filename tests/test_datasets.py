"""Recordings in the layouts people have (reference/datasets.py, issue 17).

A tiny corpus is spoken by eSpeak NG, written with soundfile as FLAC, WAV and OGG at rates other
than 16 kHz, listed in each layout, and read back through load_dataset.  The oracle for the audio
is the eSpeak clip itself resampled by soxr/our sinc (two independent resamplers agree to 1e-2 on
speech); for the transcripts it is the text the test wrote, normalised by hand.
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

sf = pytest.importorskip("soundfile")
pytest.importorskip("soxr")
pytest.importorskip("num2words")

from reference.audio import load_audio, resample  # noqa: E402
from reference.datasets import (Dataset, detect_layout, load_dataset, model_output_frames,  # noqa: E402
                                normalize_text, outside_alphabet, read_entries, read_nemo_manifest)
from reference.model import DeepSpeech2Config  # noqa: E402

TEXTS = ["Hello world", "Press 1 for sales", "Good morning, Dave!", "It's 50% off"]
NORMALISED = ["hello world", "press one for sales", "good morning dave", "it's fifty percent off"]
# (format, subtype, sample rate): each clip in another container and rate
FORMATS = [("FLAC", "PCM_16", 16000, ".flac"), ("WAV", "PCM_16", 22050, ".wav"),
           ("OGG", "VORBIS", 44100, ".ogg"), ("WAV", "FLOAT", 8000, ".wav")]


@pytest.fixture(scope="module")
def spoken():
    """``[(text, audio at 16 kHz)]``: eSpeak's clips (or the synthetic generator's where eSpeak is missing)."""
    try:
        from reference.espeak import synthesize
        return [(t, synthesize(normalize_text(t))) for t in TEXTS]
    except Exception:  # noqa: BLE001 - eSpeak missing: any speech-like audio will do for the layouts
        g = torch.Generator().manual_seed(0)
        return [(t, 0.3 * torch.sin(torch.arange(12000) * 0.05) * torch.rand(12000, generator=g)) for t in TEXTS]


def _write(folder: Path, name: str, audio: torch.Tensor, fmt) -> Path:
    kind, subtype, rate, suffix = fmt
    path = folder / f"{name}{suffix}"
    path.parent.mkdir(parents=True, exist_ok=True)
    x = resample(audio.double(), 16000, rate).numpy() if rate != 16000 else audio.double().numpy()
    sf.write(path, np.clip(x, -1, 1), rate, format=kind, subtype=subtype)
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, spoken):
    """One folder with the same four clips in every layout."""
    root = tmp_path_factory.mktemp("corpus")
    clips = root / "clips"
    paths = [_write(clips, f"utt{i}", audio, FORMATS[i]) for i, (_, audio) in enumerate(spoken)]
    rel = [p.relative_to(root).as_posix() for p in paths]
    # NeMo JSON lines, relative paths
    (root / "train.jsonl").write_text("".join(json.dumps({"audio_filepath": r, "text": t, "duration": 1.0}) + "\n"
                                              for r, t in zip(rel, TEXTS)))
    # CSV with a header, TSV with a header
    with open(root / "m.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "transcript"])
        w.writerows(zip(rel, TEXTS))
    with open(root / "m.tsv", "w", newline="") as f:
        w = csv.writer(f, delimiter="\t")
        w.writerow(["client_id", "path", "sentence"])
        w.writerows(("x", Path(r).name, t) for r, t in zip(rel, TEXTS))     # Common Voice: names under clips/
    # deepspeech.pytorch: header-less audio,transcript-file (absolute paths)
    txts = []
    for i, t in enumerate(TEXTS):
        txts.append(root / "txt" / f"utt{i}.txt")
        txts[-1].parent.mkdir(exist_ok=True)
        txts[-1].write_text(t + "\n")
    (root / "ds.csv").write_text("".join(f"{p},{t}\n" for p, t in zip(paths, txts)))
    # Kaldi data folder (paths relative to it)
    kaldi = root / "kaldi"
    kaldi.mkdir()
    (kaldi / "wav.scp").write_text("".join(f"u{i} ../{r}\n" for i, r in enumerate(rel)))
    (kaldi / "text").write_text("".join(f"u{i} {t}\n" for i, t in enumerate(TEXTS)))
    # LibriSpeech: SPEAKER/CHAPTER/SPEAKER-CHAPTER-NNNN.flac + SPEAKER-CHAPTER.trans.txt, upper case
    libri = root / "libri"
    chap = libri / "19" / "198"
    for i, (t, audio) in enumerate(spoken):
        _write(chap, f"19-198-{i:04d}", audio, FORMATS[0])
    (chap / "19-198.trans.txt").write_text("".join(f"19-198-{i:04d} {t.upper()}\n" for i, t in enumerate(TEXTS)))
    return root, paths


@pytest.mark.parametrize("name, layout", [("train.jsonl", "nemo"), ("m.csv", "csv"), ("m.tsv", "csv"),
                                          ("ds.csv", "csv"), ("kaldi", "kaldi"), ("libri", "librispeech")])
def test_every_layout_reads_back_the_clips_and_their_normalised_texts(corpus, spoken, name, layout):
    root, _ = corpus
    assert detect_layout(root / name) == layout
    data = load_dataset(root / name)
    assert isinstance(data, Dataset) and len(data) == len(TEXTS)
    assert sorted(s.transcript for s in data) == sorted(NORMALISED)
    by_text = {s.transcript: s for s in data}
    for (text, audio), fmt in zip(spoken, FORMATS):
        s = by_text[normalize_text(text)]
        assert s.sample_rate == 16000 and s.audio.dtype == torch.float32 and s.audio.dim() == 1
        ref = audio.double()
        n = min(len(ref), s.audio.numel())
        assert abs(s.audio.numel() - len(ref)) <= 2, (fmt, s.audio.numel(), len(ref))
        err = (s.audio[:n].double() - ref[:n]).pow(2).mean().sqrt() / ref.pow(2).mean().sqrt()
        # 8 kHz keeps only the band below 4 kHz; Vorbis is lossy; PCM16 at 16/22 kHz is near exact
        bound = 0.01 if layout == "librispeech" or fmt[2] in (16000, 22050) else 0.8 if fmt[2] == 8000 else 0.35
        assert float(err) < bound, (fmt, float(err))
    assert data.report.kept == len(TEXTS) and data.report.skipped == 0
    assert f"{len(TEXTS)} clips" in data.report.summary()


def test_librispeech_speaker_is_the_first_part_of_the_id(corpus):
    root, _ = corpus
    assert {s.speaker for s in load_dataset(root / "libri")} == {"19"}


def test_nemo_relative_paths_resolve_against_the_manifest_folder(corpus, tmp_path, monkeypatch):
    root, paths = corpus
    monkeypatch.chdir(tmp_path)                      # not the manifest's folder
    entries = read_nemo_manifest(root / "train.jsonl")
    assert [e.audio.resolve() for e in entries] == [p.resolve() for p in paths]
    assert [e.duration for e in entries] == [1.0] * 4 and entries[1].where.endswith("train.jsonl:2")


def test_too_long_and_too_short_clips_are_skipped_counted_and_summarised(corpus, spoken):
    root, _ = corpus
    lengths = {normalize_text(t): a.numel() / 16000 for t, a in spoken}
    cut = sorted(lengths.values())[1] + 0.05                 # keeps the two shortest
    data = load_dataset(root / "m.csv", max_seconds=cut)
    assert sorted(s.transcript for s in data) == sorted(t for t, sec in lengths.items() if sec <= cut)
    assert len(data.report.too_long) == 2 and f"2 longer than {cut:g} s" in data.report.summary()
    # A model striding 40 output frames per second... the oracle: frames by the formula, CTC's need by hand
    config = DeepSpeech2Config(n_conv=1, conv_channels=(4,), conv_time_stride=9, n_rnn=1, rnn_hidden=8)
    frames = model_output_frames(config)
    for n in (320, 16000, 16160):
        spec = 1 + (n - 320) // 160
        assert frames(n) == (spec - 1) // 9 + 1 if spec >= 1 else frames(n) == 0      # kernel 11, padding 5
    data = load_dataset(root / "m.csv", output_frames=frames)
    expected = [t for t, a in spoken if frames(a.numel()) >= len(normalize_text(t))
                + sum(x == y for x, y in zip(normalize_text(t), normalize_text(t)[1:]))]
    assert sorted(s.transcript for s in data) == sorted(normalize_text(t) for t in expected)
    assert len(data.report.too_short) == len(TEXTS) - len(expected) >= 1
    assert "too short for the model" in data.report.summary()


def test_characters_outside_the_alphabet_are_counted_with_an_example_never_dropped(corpus, tmp_path):
    root, paths = corpus
    m = tmp_path / "m.jsonl"
    m.write_text("".join(json.dumps({"audio_filepath": str(p), "text": t}) + "\n"
                         for p, t in zip(paths, ["søren said hi", "hello", "日本", "ok"])))
    data = load_dataset(m)
    assert [s.transcript for s in data] == ["hello", "ok"]
    assert len(data.report.outside_alphabet) == 2
    line = data.report.summary()
    assert "2 with characters outside the alphabet" in line and "'ø'" in line and "m.jsonl:1" in line


def test_model_output_frames_leaves_the_global_rng_alone():
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    model_output_frames(DeepSpeech2Config(n_conv=1, conv_channels=(4,), n_rnn=1, rnn_hidden=8))
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("text, expected", [
    ("Agent Logged off.", "agent logged off"),
    ("Press 1, or dial 28.8%!", "press one or dial twenty eight point eight percent"),
    ("the 21st of May; 1,234 & $5", "the twenty first of may one thousand two hundred and thirty four and five dollars"),
    ("press * then #", "press star then pound"),
    ("visit www.asterisk.org", "visit www dot asterisk dot org"),
    ("Call-Forward \u2018quoted\u2019 it\u2019s Café", "call forward quoted it's cafe"),
    ("IAX (note)", "iax note"),
])
def test_normalize_text(text, expected):
    assert normalize_text(text) == expected
    assert outside_alphabet(normalize_text(text)) == []


def test_outside_alphabet_lists_each_character_once():
    assert outside_alphabet("a\u00f8b\u00f8c<") == ["\u00f8", "<"]


# --------------------------------------------------------------------------- errors


def _error(tmp_path, exc, *lines, name="m.jsonl"):
    p = tmp_path / name
    p.write_text("".join(line + "\n" for line in lines))
    with pytest.raises(exc) as info:
        load_dataset(p)
    return str(info.value)


def test_missing_audio_file_is_named_with_file_and_line(tmp_path):
    msg = _error(tmp_path, FileNotFoundError, json.dumps({"audio_filepath": "nope.flac", "text": "hi"}))
    assert "m.jsonl:1" in msg and "nope.flac" in msg


def test_bad_nemo_line_names_file_and_line(corpus, tmp_path):
    _, paths = corpus
    msg = _error(tmp_path, ValueError, json.dumps({"audio_filepath": str(paths[0]), "text": "hi"}), "{not json")
    assert "m.jsonl:2" in msg and "audio_filepath" in msg
    msg = _error(tmp_path, ValueError, json.dumps({"path": str(paths[0]), "text": "hi"}))
    assert "m.jsonl:1" in msg and "audio_filepath" in msg


def test_csv_without_usable_columns_says_what_was_expected(corpus, tmp_path):
    _, paths = corpus
    msg = _error(tmp_path, ValueError, "path,words", f"{paths[0]},hi", name="m.csv")
    assert "m.csv:1" in msg and "transcript" in msg
    msg = _error(tmp_path, ValueError, f"{paths[0]},hello there", name="m.csv")
    assert "m.csv:1" in msg and "transcript.txt" in msg
    msg = _error(tmp_path, ValueError, "path,transcript", f"{paths[0]}", name="m.csv")
    assert "m.csv:2" in msg


def test_kaldi_errors_name_the_line(corpus, tmp_path):
    _, paths = corpus
    (tmp_path / "wav.scp").write_text(f"a {paths[0]}\nb sox x.wav -t wav - |\n")
    (tmp_path / "text").write_text("a hello\nb there\n")
    with pytest.raises(ValueError, match=r"wav.scp:2: piped"):
        load_dataset(tmp_path)
    (tmp_path / "wav.scp").write_text(f"a {paths[0]}\n")
    with pytest.raises(ValueError, match=r"text:2: utterance 'b' has no audio"):
        load_dataset(tmp_path)


def test_unknown_layouts_and_missing_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_dataset(tmp_path / "nothing")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(ValueError, match="unknown kind of file"):
        load_dataset(tmp_path / "notes.txt")
    with pytest.raises(ValueError, match="neither wav.scp"):
        load_dataset(tmp_path)


def test_undecodable_audio_is_a_clear_error(tmp_path):
    (tmp_path / "a.flac").write_bytes(b"not audio at all" * 10)
    (tmp_path / "m.jsonl").write_text(json.dumps({"audio_filepath": "a.flac", "text": "hi"}) + "\n")
    with pytest.raises(ValueError, match="cannot decode"):
        load_dataset(tmp_path / "m.jsonl")


def test_generated_sources_by_name():
    data = load_dataset("synthetic", n=5, seed=3, max_words=2)
    assert len(data) == 5 and all(s.sample_rate == 16000 for s in data)
    assert data.report.layout == "synthetic"
    with pytest.raises(ValueError, match="generated"):
        read_entries("synthetic")


def test_load_audio_reads_flac_ogg_and_mp3_at_other_rates(tmp_path):
    """soundfile + soxr against the signal itself: a 1 kHz sine at 44.1 kHz comes back as the sine at 16 kHz."""
    x = 0.5 * np.sin(2 * math.pi * 1000 * np.arange(44100) / 44100)
    expected = 0.5 * np.sin(2 * math.pi * 1000 * np.arange(16000) / 16000)
    for fmt, subtype, tol in (("FLAC", "PCM_24", 1e-3), ("OGG", "VORBIS", 5e-2), ("MP3", "MPEG_LAYER_III", 5e-2)):
        path = tmp_path / f"x.{fmt.lower()}"
        sf.write(path, np.stack([x, x], 1), 44100, format=fmt, subtype=subtype)
        audio = load_audio(path)
        assert audio.shape == (16000,) and audio.dtype == torch.float32
        assert np.abs(audio.double().numpy() - expected)[800:-800].max() < tol, fmt


# --------------------------------------------------------------------------- the command lines


def test_train_on_a_manifest_then_transcribe_it_with_wer_and_cer(corpus, tmp_path):
    """``reference.train --data`` on a NeMo manifest (with a CSV as --valid-data), then ``reference.transcribe``
    on the manifest: one line per recording in manifest order, and WER/CER against jiwer on those lines."""
    import subprocess
    import sys

    import jiwer

    root, paths = corpus
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "reference.train", "--preset", "demo", "--data", str(root / "train.jsonl"),
                        "--valid-data", str(root / "m.csv"), "--max-seconds", "10", "--seconds", "2", "--epochs", "2",
                        "--batch-size", "2", "--eval-every", "2", "--rnn-hidden", "16", "--n-rnn", "1",
                        "--conv-time-stride", "2", "--quiet", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"train.jsonl (nemo): {len(TEXTS)} clips" in r.stdout and "m.csv (csv)" in r.stdout
    assert f"data: {len(TEXTS)} train / {len(TEXTS)} held-out utterances" in r.stdout, r.stdout
    from reference.checkpoint import load_checkpoint
    state = load_checkpoint(out / "checkpoint.pt")
    assert state["extra"]["recipe"]["data"] == str(root / "train.jsonl") and state["step"] >= 1

    r = subprocess.run([sys.executable, "-m", "reference.transcribe", "--checkpoint", str(out / "checkpoint.pt"),
                        "--batch-size", "3", str(root / "train.jsonl")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == len(TEXTS) + 1
    names, hyps = zip(*(line.split("\t", 1) for line in lines[:-1]))
    assert [Path(n).resolve() for n in names] == [p.resolve() for p in paths]
    refs = [h if h.strip() else "" for h in NORMALISED]
    wer = jiwer.wer(refs, [h if h.strip() else "<empty>" for h in hyps]) if any(h.strip() for h in hyps) else 1.0
    cer = jiwer.cer(refs, list(hyps))
    assert lines[-1].startswith(f"WER {100 * wer:.2f} % (words), CER {100 * cer:.2f} % (characters) on {len(TEXTS)} recordings")


def test_train_init_fine_tunes_from_a_float16_export(corpus, tmp_path):
    """``--init`` takes the config and weights of an exported (float16) checkpoint; the model trains in float32."""
    import subprocess
    import sys

    from reference.checkpoint import export_checkpoint, load_checkpoint, save_checkpoint
    from reference.model import DeepSpeech2
    from reference.text import CharEncoder

    root, _ = corpus
    config = DeepSpeech2Config(n_conv=1, conv_channels=(4,), conv_time_stride=2, n_rnn=1, rnn_hidden=12)
    torch.manual_seed(0)
    model = DeepSpeech2(config=config)
    earlier = {"command": "python -m reference.train --second", "lineage": ["python -m reference.train --first"]}
    save_checkpoint(tmp_path / "full.pt", model, CharEncoder(), extra=earlier)
    export_checkpoint(tmp_path / "full.pt", tmp_path / "half.pt")
    out = tmp_path / "ft"
    base = [sys.executable, "-m", "reference.train", "--init", str(tmp_path / "half.pt"), "--data", str(root / "kaldi"),
            "--valid-data", str(root / "libri"), "--epochs", "1", "--batch-size", "4", "--lr", "0", "--anneal", "1",
            "--quiet", "--out", str(out)]
    r = subprocess.run(base, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "fine-tuning from" in r.stdout
    state = load_checkpoint(out / "checkpoint.pt")
    assert state["config"] == config.to_dict()
    # the commands that made the weights, oldest first, then this one
    assert state["extra"]["lineage"] == ["python -m reference.train --first", "python -m reference.train --second"]
    assert state["extra"]["command"].startswith("python -m reference.train --init ")
    half = load_checkpoint(tmp_path / "half.pt")["state_dict"]
    for k, v in state["state_dict"].items():
        if v.is_floating_point() and "running" not in k and "num_batches" not in k:
            assert v.dtype == torch.float32, k
            assert torch.equal(v, half[k].float()), k           # lr 0: the float16 weights, as float32
    r = subprocess.run(base + ["--n-rnn", "2"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "drop --n-rnn" in r.stderr and "Traceback" not in r.stderr


def test_train_with_unreadable_data_says_why_without_a_traceback(tmp_path):
    import subprocess
    import sys

    (tmp_path / "m.jsonl").write_text('{"audio_filepath": "gone.wav", "text": "hi"}\n')
    r = subprocess.run([sys.executable, "-m", "reference.train", "--data", str(tmp_path / "m.jsonl"), "--quiet",
                        "--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "m.jsonl:1" in r.stderr and "gone.wav" in r.stderr and "Traceback" not in r.stderr


def test_load_audio_without_soundfile_reads_wav_and_says_what_to_install(tmp_path, monkeypatch):
    """The fallback path (no soundfile, no soxr): WAV through read_wav + the sinc resampler, other formats refused
    with the package to install."""
    import reference.audio as audio_mod

    x = 0.5 * np.sin(2 * math.pi * 440 * np.arange(22050) / 22050)
    sf.write(tmp_path / "x.wav", x, 22050, subtype="PCM_16")
    sf.write(tmp_path / "x.flac", x, 22050)
    with_libs = load_audio(tmp_path / "x.wav")
    monkeypatch.setattr(audio_mod, "_optional", lambda name: None)
    without = load_audio(tmp_path / "x.wav")
    assert without.shape == with_libs.shape == (16000,)
    assert (without - with_libs)[400:-400].abs().max() < 2e-3            # two resamplers, one sine
    with pytest.raises(ValueError, match="pip install soundfile"):
        load_audio(tmp_path / "x.flac")
