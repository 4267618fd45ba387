"""train_step / evaluate semantics, a short training run that learns, checkpoints and the commands."""
import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from reference import CharEncoder, DeepSpeech2, evaluate, generate_synthetic_dataset, train_step, word_error_rate
from reference.checkpoint import load_checkpoint, load_model, save_checkpoint
from reference.training import fit, make_batches, transcribe_batches

ENC = CharEncoder()
WORDS = "cat dog sun red big run yes box fox zero".split()


@pytest.fixture(scope="module")
def tiny_data():
    return (generate_synthetic_dataset(240, 1, 1, seed=11, words=WORDS, n_speakers=8),
            generate_synthetic_dataset(40, 1, 1, seed=111, words=WORDS, n_speakers=8))


class RecordingSGD(torch.optim.SGD):
    """SGD that records the learning rate of every step it takes (``.seen``)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen = []

    def step(self, *args, **kwargs):
        self.seen.append(self.param_groups[0]["lr"])
        return super().step(*args, **kwargs)


def small_model(seed=0):
    torch.manual_seed(seed)
    return DeepSpeech2(n_freq=161, n_conv=1, conv_channels=(8,), n_rnn=2, rnn_hidden=64)


def test_train_step_is_one_clipped_adam_step(tiny_data):
    batch = make_batches(tiny_data[0][:8], ENC, 8)[0]
    model, twin = small_model(), small_model()
    opt, opt_twin = torch.optim.SGD(model.parameters(), lr=0.1), torch.optim.SGD(twin.parameters(), lr=0.1)
    loss = train_step(model, batch, opt, max_grad_norm=0.5)
    # the same step by hand
    lp, out = twin(batch.features, batch.feature_lengths)
    ref = F.ctc_loss(lp, batch.targets, out, batch.target_lengths, reduction="mean", zero_infinity=True)
    ref.backward()
    norm = torch.nn.utils.clip_grad_norm_(twin.parameters(), 0.5)
    opt_twin.step()
    assert isinstance(loss, float) and loss == pytest.approx(ref.item(), rel=1e-6)
    assert norm > 0.5, "the test should exercise clipping"
    for p, q in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(p, q)


def test_non_finite_loss_skips_the_update(tiny_data):
    batch = make_batches(tiny_data[0][:4], ENC, 4)[0]
    model = small_model()
    with torch.no_grad():
        model.output.bias.fill_(float("nan"))
    before = [p.detach().clone() for p in model.parameters()]
    loss = train_step(model, batch, torch.optim.Adam(model.parameters()))
    assert math.isnan(loss)
    for p, q in zip(before, model.parameters()):
        torch.testing.assert_close(p, q, equal_nan=True)


def test_evaluate_is_corpus_wer_and_restores_mode(tiny_data):
    model = small_model()
    batches = make_batches(tiny_data[1], ENC, 16)
    model.train()
    wer = evaluate(model, batches, ENC)
    assert model.training
    refs, hyps = transcribe_batches(model, batches, ENC)
    assert wer == word_error_rate(refs, hyps) and len(refs) == 40


def test_fit_anneals_the_learning_rate_linearly_and_restores_it(tiny_data):
    """Step i of n runs at lr * (1 - (1 - anneal) * i / n); the optimizer is handed back at lr."""
    model = small_model()
    opt = RecordingSGD(model.parameters(), lr=0.01)
    seen = opt.seen
    fit(model, tiny_data[0][:64], ENC, epochs=1, batch_size=16, optimizer=opt, anneal=0.25, progress=False)
    n = len(seen)
    assert n == 4
    assert seen == pytest.approx([0.01 * (1 - 0.75 * i / n) for i in range(n)])
    assert opt.param_groups[0]["lr"] == 0.01
    with pytest.raises(ValueError, match="anneal must be a number >= 0"):
        fit(model, tiny_data[0][:64], ENC, epochs=1, batch_size=16, anneal=-0.5, progress=False)


def test_fit_stops_after_max_steps_and_anneals_over_them(tiny_data):
    """max_steps=5 across epochs of 4 minibatches: exactly 5 optimiser steps, the rate annealed over those 5."""
    model = small_model()
    opt = RecordingSGD(model.parameters(), lr=0.01)
    seen = opt.seen
    hist = fit(model, tiny_data[0][:64], ENC, epochs=10, batch_size=16, optimizer=opt, anneal=0.5, max_steps=5,
               progress=False)
    assert hist.step == [1, 2, 3, 4, 5] and len(seen) == 5
    assert seen == pytest.approx([0.01 * (1 - 0.5 * i / 5) for i in range(5)])
    assert hist.position == (1, 1)                     # epoch 1, after its first minibatch
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="max_steps must be an int >= 1"):
            fit(model, tiny_data[0][:64], ENC, epochs=1, batch_size=16, max_steps=bad, progress=False)


@pytest.mark.slow
def test_a_short_training_run_learns(tiny_data, tmp_path):
    train, valid = tiny_data
    model = small_model()
    hist = fit(model, train, ENC, valid_set=valid, epochs=8, batch_size=16, lr=3e-3, eval_every=30, progress=False)
    assert hist.eval_wer[0] > 0.9, "an untrained model gets almost every word wrong"
    assert hist.loss[-1] < hist.loss[0] / 10
    assert hist.eval_cer[-1] < 0.35 and hist.eval_wer[-1] < 0.6, (hist.eval_wer, hist.eval_cer)
    # checkpoint round trip: same transcripts after reloading
    path = save_checkpoint(tmp_path / "ck.pt", model, ENC, history=hist.to_dict())
    loaded, enc, state = load_model(path)
    assert state["history"]["eval_wer"] == hist.eval_wer
    b = make_batches(valid, ENC, 16)
    assert transcribe_batches(loaded, b, enc) == transcribe_batches(model, b, ENC)


def test_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"format": "other"}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a Deep Speech 2 checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


@pytest.mark.slow
def test_train_resume_and_transcribe_commands(tmp_path):
    from reference.audio import write_wav
    from reference.synthetic import generate_synthetic_audio

    out = tmp_path / "run"
    base = [sys.executable, "-m", "reference.train", "--preset", "demo", "--out", str(out), "--n-train", "48",
            "--n-valid", "8", "--batch-size", "8", "--eval-every", "3", "--rnn-hidden", "16", "--n-rnn", "1", "--quiet",
            "--anneal", "0.5", "--conv-time-stride", "2",
            "--seconds", "0"]     # epochs bound the run: the preset's 60 s budget runs out on a loaded machine
    r = subprocess.run(base + ["--epochs", "1"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "held-out WER" in r.stdout and (out / "checkpoint.pt").is_file() and (out / "curves.png").is_file()
    state = load_checkpoint(out / "checkpoint.pt")
    assert state["step"] == 6 and state["extra"]["recipe"]["anneal"] == 0.5 and state["config"]["conv_time_stride"] == 2
    r = subprocess.run(base + ["--epochs", "2", "--resume"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "resuming" in r.stdout and load_checkpoint(out / "checkpoint.pt")["step"] == 12

    wav = tmp_path / "cat.wav"
    write_wav(wav, generate_synthetic_audio("cat"), 16000)
    r = subprocess.run([sys.executable, "-m", "reference.transcribe", "--checkpoint", str(out / "checkpoint.pt"), str(wav)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.startswith(str(wav) + "\t"), r.stderr
    r = subprocess.run([sys.executable, "-m", "reference.transcribe", "--checkpoint", str(out / "checkpoint.pt"),
                        str(tmp_path / "nope.wav")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "nope.wav" in r.stderr and "Traceback" not in r.stderr
