"""``python -m reference.prepare asterisk`` (reference/prepare.py, issue 17).

A small fake package tree, laid out as the two Debian packages extract (texts in
``core-sounds-en.txt.gz``, G.722 prompts under ``usr/share/asterisk/sounds/<voice>/``), is built
here with eSpeak clips encoded by PyPI's G722; prepare must parse it, split it by SHA-1, normalise
the texts, write FLAC + NeMo manifests + an LM of the train texts only.  One slow test runs the real
thing where ``apt-get download`` works.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

G722 = pytest.importorskip("G722")
sf = pytest.importorskip("soundfile")
pytest.importorskip("num2words")

from reference.datasets import load_dataset  # noqa: E402
from reference.lm import NGramLM  # noqa: E402
from reference.prepare import main, parse_texts, prepare_asterisk, spoken_text, split_of  # noqa: E402

# name -> text, as core-sounds-en.txt has them.  Chosen so both splits are populated: the SHA-1 oracle
# below (hashlib, not prepare's code) says which is which.
PROMPTS = {
    "agent-loggedoff": "Agent Logged off.",
    "vm-options": "Press 1 to record your unavailable message.",
    "digits/7": "seven",
    "auth-thankyou": "Thank you.",
    "vm-goodbye": "Goodbye.",
    "call-waiting": "Call waiting.",
    "beep": "[this is a simple beep tone]",
    "silence/1": "(1 second of silence)",
    "letters/at": "at [@]",
    "vm-intro": "Please leave your message after the tone. (simple tone sound plays)",
    "conf-getpin": "Please enter the conference pin number.",
    "vm-nomore": "No more messages.",
    "pbx-invalid": "I'm sorry, that's not a valid extension.  Please try again.",
    "transfer": "Please hold while I try that extension.",
}
SPOKEN = {"agent-loggedoff", "vm-options", "digits/7", "auth-thankyou", "vm-goodbye", "call-waiting", "conf-getpin",
          "vm-nomore", "pbx-invalid", "transfer"}
NORMALISED = {"agent-loggedoff": "agent logged off", "vm-options": "press one to record your unavailable message",
              "digits/7": "seven", "pbx-invalid": "i'm sorry that's not a valid extension please try again"}


def _is_test(name: str) -> bool:
    return int(hashlib.sha1(name.encode()).hexdigest()[0], 16) < 4


def test_the_fake_corpus_has_both_splits_and_test_prompts_with_and_without_digits():
    spoken_test = [n for n in SPOKEN if _is_test(n)]
    assert spoken_test and len(spoken_test) < len(SPOKEN)
    assert any(any(c.isdigit() for c in PROMPTS[n]) for n in spoken_test)          # -> test_digits
    assert any(not any(c.isdigit() for c in PROMPTS[n]) for n in spoken_test)      # -> test


def _clip(text: str) -> np.ndarray:
    try:
        from reference.espeak import synthesize
        return synthesize(text.lower()).numpy()
    except Exception:  # noqa: BLE001 - no eSpeak: a tone of a text-dependent length will do
        n = 4000 + 400 * len(text)
        return (0.3 * np.sin(np.arange(n) * 0.07)).astype(np.float32)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """``(root, {name: int16 samples that went into the G.722 file})``."""
    root = tmp_path_factory.mktemp("debs")
    doc = root / "usr/share/doc/asterisk-core-sounds-en"
    doc.mkdir(parents=True)
    with gzip.open(doc / "core-sounds-en.txt.gz", "wt") as f:
        f.write("; Core Asterisk Sounds in English\n\n")
        f.write("".join(f"{n}: {t}\n" for n, t in PROMPTS.items()))
        f.write("no-audio-for-this: Hello there.\n")
    for pkg in ("asterisk-core-sounds-en", "asterisk-core-sounds-en-g722"):
        (root / "usr/share/doc" / pkg).mkdir(parents=True, exist_ok=True)
        with gzip.open(root / "usr/share/doc" / pkg / "changelog.Debian.gz", "wt") as f:
            f.write("asterisk-core-sounds (1.6.1-1) unstable; urgency=medium\n")
    voice = root / "usr/share/asterisk/sounds/en_US_f_Allison"
    pcm = {}
    for name, text in PROMPTS.items():
        x = np.clip(np.round(_clip(spoken_text(text) or "beep") * 32767), -32768, 32767).astype(np.int16)
        path = voice / f"{name}.g722"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(G722.G722(16000, 64000).encode(x))
        pcm[name] = x
    return root, pcm


@pytest.fixture(scope="module")
def prepared(tree, tmp_path_factory):
    root, _ = tree
    out = tmp_path_factory.mktemp("asterisk")
    counts = prepare_asterisk(out, root=root, progress=False)
    return out, counts


def _manifest(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_split_is_the_sha1_rule_and_digits_go_to_their_own_test_file(prepared):
    out, counts = prepared
    train, dev, test, digits = (_manifest(out / f"{s}.jsonl") for s in ("train", "dev", "test", "test_digits"))
    sha = {n: hashlib.sha1(n.encode()).hexdigest()[0] for n in SPOKEN}
    assert {r["name"] for r in train} == {n for n in SPOKEN if not _is_test(n) and sha[n] != "4"}
    assert {r["name"] for r in dev} == {n for n in SPOKEN if sha[n] == "4"}
    assert {r["name"] for r in test} == {n for n in SPOKEN if _is_test(n) and not any(c.isdigit() for c in PROMPTS[n])}
    assert {r["name"] for r in digits} == {n for n in SPOKEN if _is_test(n) and any(c.isdigit() for c in PROMPTS[n])}
    assert (counts["train"], counts["dev"], counts["test"], counts["test_digits"]) == (
        len(train), len(dev), len(test), len(digits))
    assert counts["not_speech"] == len(PROMPTS) - len(SPOKEN) and counts["texts_without_audio"] == 1
    assert [split_of(n) for n in ("vm-options", "digits/7")] == [
        "test" if _is_test(n) else "train" for n in ("vm-options", "digits/7")]


def test_texts_are_normalised_and_keep_the_original(prepared):
    out, _ = prepared
    rows = {r["name"]: r for s in ("train", "dev", "test", "test_digits") for r in _manifest(out / f"{s}.jsonl")}
    for name, text in NORMALISED.items():
        assert rows[name]["text"] == text and rows[name]["original"] == PROMPTS[name]


def test_audio_is_16k_flac_that_decodes_to_the_encoded_prompt(prepared, tree):
    out, _ = prepared
    _, pcm = tree
    for r in _manifest(out / "train.jsonl") + _manifest(out / "test.jsonl"):
        data, rate = sf.read(out / r["audio_filepath"], dtype="float64")
        assert rate == 16000 and sf.info(str(out / r["audio_filepath"])).format == "FLAC"
        assert abs(r["duration"] - data.size / 16000) < 1e-3
        # G.722 is lossy and delays by a few samples: compare at the best lag
        ref = pcm[r["name"]].astype(np.float64) / 32768
        n = min(ref.size, data.size) - 40
        best = max(np.corrcoef(ref[:n], data[lag:lag + n])[0, 1] for lag in range(0, 40))
        assert best > 0.9, (r["name"], best)


def test_lm_is_a_trigram_of_the_train_texts_only(prepared):
    out, _ = prepared
    lm = NGramLM.load(out / "lm.json")
    train = [r["text"] for r in _manifest(out / "train.jsonl")]
    expected = NGramLM.train(train, order=3)
    assert lm.order == 3 and lm.vocab == expected.vocab
    test_only = {w for s in ("test", "test_digits") for r in _manifest(out / f"{s}.jsonl")
                 for w in r["text"].split()} - {w for t in train for w in t.split()}
    assert test_only and not (test_only & lm.vocab)


def test_readme_has_the_attribution_and_package_versions(prepared):
    out, _ = prepared
    text = (out / "README.txt").read_text()
    for needle in ("CC-BY-SA-3.0", "Allison Smith", "Digium", "Sangoma", "asterisk-core-sounds-en 1.6.1-1",
                   "asterisk-core-sounds-en-g722 1.6.1-1"):
        assert needle in text


def test_the_manifests_load_through_the_datasets_module(prepared):
    out, counts = prepared
    data = load_dataset(out / "train.jsonl")
    assert len(data) == counts["train"] and all(s.sample_rate == 16000 for s in data)


@pytest.mark.parametrize("text, spoken", [
    ("Agent Logged off.", "Agent Logged off."),
    ("[ascending tones]", None), ("(10 seconds of silence)", None), ("<beep ascending>", None),
    ("at [@]", None), ("IAX (note: does not say \"2\")", None), ("...", None),
])
def test_spoken_text(text, spoken):
    assert spoken_text(text) == spoken


def test_parse_texts_skips_comments_and_names_a_bad_line():
    assert parse_texts(["; c", "", "a: b: c", "digits/7: seven"]) == {"a": "b: c", "digits/7": "seven"}
    with pytest.raises(ValueError, match="x.txt:2: expected 'name: text'"):
        parse_texts(["a: b", "no colon here"], "x.txt")


def test_cli_without_packages_says_what_is_missing(tmp_path, capsys):
    assert main(["asterisk", str(tmp_path / "out"), "--debs", str(tmp_path), "--quiet"]) == 2
    assert "asterisk-core-sounds-en_*.deb" in capsys.readouterr().err
    assert main(["asterisk", str(tmp_path / "out"), "--root", str(tmp_path), "--quiet"]) == 2
    assert "core-sounds-en.txt.gz" in capsys.readouterr().err


def _apt_download_works() -> str:
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        return "apt-get or dpkg-deb is not installed"
    r = subprocess.run(["apt-get", "download", "--print-uris", "asterisk-core-sounds-en"], capture_output=True, text=True)
    return "" if r.returncode == 0 and ".deb" in r.stdout else f"apt-get cannot fetch the package here: {r.stderr.strip()[:200]}"


@pytest.mark.slow
def test_real_prepare_asterisk(tmp_path):
    """The real packages: the issue's counts (131 test prompts without digits, about 24 minutes)."""
    why = _apt_download_works()
    if why:
        pytest.skip(why)
    r = subprocess.run([sys.executable, "-m", "reference.prepare", "asterisk", str(tmp_path / "ast"), "--quiet"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    test = _manifest(tmp_path / "ast" / "test.jsonl")
    assert len(test) == 131 and all(_is_test(row["name"]) for row in test)
    assert 500 < sum(1 for s in ("train", "dev", "test", "test_digits") for _ in _manifest(tmp_path / "ast" / f"{s}.jsonl")) < 560
    assert "test 131" in r.stdout
    first = torch.from_numpy(sf.read(tmp_path / "ast" / test[0]["audio_filepath"], dtype="float32")[0])
    assert first.abs().max() > 0.05                                   # speech, not silence


def test_the_non_free_sources_list_reuses_the_machines_archive_for_the_release(tmp_path):
    """``download(..., non_free=True)`` writes a private sources list for the archive the machine's own apt
    uses for the release's ``main`` (one-line and deb822 formats); security and other suites do not count."""
    from reference.prepare import debian_archive
    d = tmp_path / "sources.list.d"
    d.mkdir()
    (d / "a.sources").write_text("Types: deb\nURIs: http://security.example/debian-security\nSuites: bookworm-security\n"
                                 "Components: main\n\n# a comment\nTypes: deb deb-src\nURIs: http://mirror.example/debian/\n"
                                 "Suites: bookworm bookworm-updates\nComponents: main contrib\nSigned-By: /k.gpg\n")
    one = tmp_path / "sources.list"
    one.write_text("# deb http://old.example/debian bookworm main\n"
                   "deb [arch=amd64 signed-by=/k.gpg] http://list.example/debian bookworm-updates main\n"
                   "deb [signed-by=/k.gpg] http://list.example/debian trixie contrib main\n")
    assert debian_archive("bookworm", [str(one), str(d)]) == "http://mirror.example/debian"
    assert debian_archive("trixie", [str(one), str(d)]) == "http://list.example/debian"
    assert debian_archive("sid", [str(one), str(d)]) is None
    assert debian_archive("bookworm", [str(tmp_path / "missing")]) is None
