"""The model's output set (DeepSpeech2Config.outputs) travels with checkpoints: load_model, the export,
reference.train --outputs and reference.transcribe rebuild the right encoder; older checkpoints are chars."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from reference import DeepSpeech2
from reference.checkpoint import export_checkpoint, load_checkpoint, load_model, save_checkpoint
from reference.model import DeepSpeech2Config
from reference.text import BigramEncoder, CharEncoder

ROOT = Path(__file__).resolve().parents[1]


def tiny_bigram_model(seed=0):
    torch.manual_seed(seed)
    return DeepSpeech2(n_freq=161, vocab_size=758, outputs="bigram", n_conv=1, conv_channels=(4,),
                       conv_time_stride=6, n_rnn=1, rnn_hidden=16)


def test_config_validates_outputs():
    assert DeepSpeech2Config().outputs == "chars"
    with pytest.raises(ValueError, match=r"outputs must be one of \['chars', 'bigram'\], got 'words'"):
        DeepSpeech2Config(outputs="words")


def test_bigram_checkpoint_round_trip_and_export(tmp_path):
    model, enc = tiny_bigram_model(), BigramEncoder()
    path = save_checkpoint(tmp_path / "b.pt", model, enc)
    state = load_checkpoint(path)
    assert state["config"]["outputs"] == "bigram" and len(state["alphabet"]) == 758
    loaded, enc2, _ = load_model(path)
    assert isinstance(enc2, BigramEncoder) and enc2.symbols == enc.symbols
    x, n = torch.randn(2, 1, 161, 80), torch.tensor([80, 61])
    model.eval()
    with torch.no_grad():
        assert torch.equal(loaded(x, n)[0], model(x, n)[0])
    small = export_checkpoint(path, tmp_path / "small.pt")
    assert isinstance(load_model(small)[1], BigramEncoder)


def test_encoder_must_match_the_model_when_saving(tmp_path):
    with pytest.raises(ValueError, match="does not match the model"):
        save_checkpoint(tmp_path / "x.pt", tiny_bigram_model(), CharEncoder())
    with pytest.raises(ValueError, match="does not match the model"):
        save_checkpoint(tmp_path / "x.pt", DeepSpeech2(n_conv=1, n_rnn=1, rnn_hidden=8), BigramEncoder())


def test_a_checkpoint_whose_alphabet_disagrees_with_its_outputs_is_refused(tmp_path):
    path = save_checkpoint(tmp_path / "b.pt", tiny_bigram_model(), BigramEncoder())
    state = load_checkpoint(path)
    state["config"]["outputs"] = "chars"
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="differs from the english chars outputs' 29 symbols"):
        load_model(tmp_path / "bad.pt")


@pytest.mark.parametrize("name", ["espeak-ds2.pt", "asterisk-ds2.pt", "voices-ds2.pt"])
def test_shipped_models_load_as_chars_those_written_before_the_field_too(name):
    path = ROOT / "models" / name
    if not path.is_file():
        pytest.skip(f"{path} is not in this checkout")
    config = load_checkpoint(path)["config"]
    if name != "voices-ds2.pt":         # its third stage was trained after DeepSpeech2Config.outputs existed
        assert "outputs" not in config, "written before DeepSpeech2Config.outputs existed"
    else:
        assert config["outputs"] == "chars"
    model, enc, _ = load_model(path)
    assert isinstance(enc, CharEncoder) and model.config.outputs == "chars" and model.output.out_features == 29


@pytest.mark.slow
def test_train_outputs_bigram_resume_and_transcribe(tmp_path, capsys):
    from reference import train, transcribe
    from reference.audio import write_wav
    from reference.synthetic import generate_synthetic_audio

    out = tmp_path / "run"
    common = ["--preset", "demo", "--out", str(out), "--n-train", "32", "--n-valid", "8", "--batch-size", "8",
              "--eval-every", "2", "--rnn-hidden", "16", "--n-rnn", "1", "--quiet", "--seconds", "0"]
    base = [sys.executable, "-m", "reference.train", *common]
    r = subprocess.run(base + ["--outputs", "bigram", "--conv-time-stride", "4", "--epochs", "1"],
                       capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    state = load_checkpoint(out / "checkpoint.pt")
    assert state["config"]["outputs"] == "bigram" and state["config"]["vocab_size"] == 758
    assert state["config"]["conv_time_stride"] == 4 and len(state["alphabet"]) == 758
    r = subprocess.run(base + ["--epochs", "2", "--resume"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0 and "resuming" in r.stdout, r.stderr
    assert load_checkpoint(out / "checkpoint.pt")["config"]["outputs"] == "bigram"
    capsys.readouterr()
    assert train.main(common + ["--outputs", "chars", "--epochs", "3", "--resume"]) == 2   # refused before any training
    assert "has bigram outputs" in capsys.readouterr().err

    wav = tmp_path / "cat.wav"
    write_wav(wav, generate_synthetic_audio("cat"), 16000)
    for extra in ([], ["--beam", "4"]):
        assert transcribe.main(["--checkpoint", str(out / "checkpoint.pt"), "--quiet", str(wav), *extra]) == 0
        assert capsys.readouterr().out.startswith(str(wav) + "\t")
