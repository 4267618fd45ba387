"""ex09 — the training step and evaluation (8 points)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from autograder import fixtures as FX
from autograder.checks import _inputs as I
from autograder.checks._inputs import R
from autograder.checks._support import check_float, check_tensor, fail, fx

pytestmark = pytest.mark.exercise("ex09")
ENC = FX.ToyEncoder()
N_FREQ = 9


def _batch_fields(seed, transcripts, extra_frames=(14, 3, 8)):
    g = I.gen(seed)
    ids = [ENC.encode(t) for t in transcripts]
    flen = [2 * (len(t) + 2) + e for t, e in zip(ids, extra_frames)]
    T = max(flen)
    feats = torch.zeros(len(ids), 1, N_FREQ, T)
    for b, n in enumerate(flen):
        feats[b, 0, :, :n] = torch.randn(N_FREQ, n, generator=g)
    targets = torch.zeros(len(ids), max(len(t) for t in ids), dtype=torch.long)
    for b, t in enumerate(ids):
        targets[b, : len(t)] = torch.tensor(t)
    return {"features": feats, "feature_lengths": torch.tensor(flen), "targets": targets,
            "target_lengths": torch.tensor([len(t) for t in ids]), "transcripts": list(transcripts)}


TRANSCRIPTS = ["the cat", "a dog ran", "see"]


def _run_reference(fields, model_kw, lr=0.5, max_grad_norm=400.0, mode="eval", fn=None):
    m = FX.model(mode=mode, **model_kw)
    opt = FX.sgd(m, lr=lr)
    loss = (fn or R.train_step)(m, FX.batch(**fields), opt, max_grad_norm)
    return loss, FX.model_state(m)


def _train_step_variant(model, batch, optimizer, max_grad_norm, mistake):
    if mistake != "no_train":
        model.train()
    optimizer.zero_grad()
    lp, ol = model(batch.features, batch.feature_lengths)
    loss = F.ctc_loss(lp, batch.targets, ol, batch.target_lengths, reduction="sum" if mistake == "sum" else "mean",
                      zero_infinity=True)
    loss.backward()
    if mistake != "no_clip":
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    return float(loss)


def _compare_state(got, exp, what, hints_by_mistake):
    if not isinstance(got, dict):
        fail(f"train_step({what}): could not read the model's parameters afterwards")
    for k, v in exp.items():
        if k.startswith("grad.") or k == "__training__" or k.endswith("num_batches_tracked"):
            continue
        hints = [(lambda s=s, k=k: s[k], msg) for s, msg in hints_by_mistake]
        check_tensor(got.get(k), v, fn="train_step", what=what, name=f"the parameter {k} after the step",
                     rtol=1e-4, atol=1e-5, hints=hints)


def _call_train_step(sub, fields, model_kw, lr, max_grad_norm, what, mode="eval"):
    m = sub.fixture("model", mode=mode, **model_kw)
    opt = sub.fixture("sgd", m, lr=lr)
    b = sub.fixture("batch", **fields)
    loss = sub.call("train_step", m, b, opt, max_grad_norm, _what=what, _timeout=30)
    state = sub.fixture("model_state", m, _keep=False)
    return loss, state


@pytest.mark.points(3)
def test_train_step_loss_and_update(sub):
    """train_step: returns the mean CTC loss and takes one optimiser step (model in train mode)"""
    fields = _batch_fields(1, TRANSCRIPTS)
    kw = {"n_freq": N_FREQ, "seed": 3}
    what = "a tiny CTC model (handed over in eval mode), a batch of 3, SGD lr=0.5"
    loss, state = _call_train_step(sub, fields, kw, 0.5, 400.0, what)
    exp_loss, exp_state = _run_reference(fields, kw)
    variants = {mk: _run_reference(fields, kw, fn=lambda m, b, o, c, mk=mk: _train_step_variant(m, b, o, c, mk))
                for mk in ("no_train", "sum")}
    check_float(loss, exp_loss, fn="train_step", what=what, rtol=1e-4, atol=1e-5,
                hints=[(variants["no_train"][0], "call model.train() first: the model may arrive in eval mode"),
                       (variants["sum"][0], "use reduction='mean' (each loss divided by its target length, then "
                                            "averaged)")])
    _compare_state(state, exp_state, what, [(variants["no_train"][1], "call model.train() first")])


@pytest.mark.points(2)
def test_train_step_clips_gradients(sub):
    """train_step: the global gradient norm is clipped to max_grad_norm"""
    fields = _batch_fields(2, ["the dog", "it's a cat", "egg"])
    kw = {"n_freq": N_FREQ, "seed": 4, "scale": 2.0}
    what = "a tiny CTC model, SGD lr=0.5, max_grad_norm=0.05"
    loss, state = _call_train_step(sub, fields, kw, 0.5, 0.05, what, mode="train")
    exp_loss, exp_state = _run_reference(fields, kw, max_grad_norm=0.05, mode="train")
    _, no_clip = _run_reference(fields, kw, max_grad_norm=float("inf"), mode="train")
    _, clip400 = _run_reference(fields, kw, max_grad_norm=400.0, mode="train")
    check_float(loss, exp_loss, fn="train_step", what=what, rtol=1e-4, atol=1e-5)
    _compare_state(state, exp_state, what, [(no_clip, "clip the gradient norm with torch.nn.utils.clip_grad_norm_"
                                                      "(model.parameters(), max_grad_norm) between backward() and "
                                                      "step()"),
                                            (clip400, "use the max_grad_norm argument, not a fixed 400")])


@pytest.mark.points(1)
def test_train_step_skips_non_finite(sub):
    """train_step: a NaN loss is returned and the weights are not changed"""
    fields = _batch_fields(3, TRANSCRIPTS)
    fields["features"][1, 0, 2, 3] = float("nan")
    kw = {"n_freq": N_FREQ, "seed": 5}
    what = "a batch whose features contain a NaN"
    loss, state = _call_train_step(sub, fields, kw, 0.5, 400.0, what, mode="train")
    exp_loss, exp_state = _run_reference(fields, kw, mode="train")
    check_float(loss, exp_loss, fn="train_step", what=what)
    before = FX.model_state(FX.model(mode="train", **kw))
    for k, v in exp_state.items():
        if k.startswith(("grad.", "__", "norm.running", "norm.num")):
            continue
        got = state.get(k) if isinstance(state, dict) else None
        if not isinstance(got, torch.Tensor) or not torch.allclose(got, before[k], equal_nan=True):
            fail(f"train_step({what}): the parameter {k} changed; with a non-finite loss, skip the update "
                 "(zero the gradients, no optimizer.step())")


def _posteriogram_batch(refs, hyps, pad_extra):
    """Features that the echo model turns into log-probabilities whose best path spells ``hyps``."""
    paths = []
    for h in hyps:
        p = []
        for ch in h:
            p += [ENC.encode(ch)[0], 0]
        paths.append(p or [0])
    lens = [len(p) for p in paths]
    T = max(n + e for n, e in zip(lens, pad_extra))
    feats = torch.full((len(hyps), 1, 29, T), -5.0)
    for b, p in enumerate(paths):
        for t, s in enumerate(p):
            feats[b, 0, s, t] = 5.0
        feats[b, 0, ENC.encode("x")[0], len(p):] = 5.0          # padding that decodes to "xxx" if read
    targets = torch.zeros(len(refs), max(len(r) for r in refs), dtype=torch.long)
    for b, r in enumerate(refs):
        targets[b, : len(r)] = torch.tensor(ENC.encode(r))
    return {"features": feats, "feature_lengths": torch.tensor(lens), "targets": targets,
            "target_lengths": torch.tensor([len(r) for r in refs]), "transcripts": list(refs)}


EVAL = [(["the cat sat", "a dog"], ["the cat sat", "a dot"], (0, 6)),
        (["deep speech", "all well", "see it's good"], ["deep", "all well", "see it's good"], (9, 4, 0))]


def _evaluate_variant(specs, mistake):
    model = FX.echo_model(mode="train" if mistake == "train_mode" else "eval")
    per_batch, refs, hyps = [], [], []
    with torch.no_grad():
        for s in specs:
            lp, ol = model(s["features"], s["feature_lengths"])
            h = R.greedy_decode(lp, ENC, None if mistake == "padded" else ol)
            hyps += h
            refs += s["transcripts"]
            per_batch.append(R.word_error_rate(s["transcripts"], h))
    if mistake == "per_batch":
        return sum(per_batch) / len(per_batch)
    return R.word_error_rate(refs, hyps)


@pytest.mark.points(2)
def test_evaluate(sub):
    """evaluate: corpus WER of greedy decoding in eval mode over all batches"""
    specs = [_posteriogram_batch(*e) for e in EVAL]
    what = "a model (handed over in train mode) whose outputs spell known hypotheses, 2 batches of 2 and 3"
    m = sub.fixture("echo_model", mode="train")
    got = sub.call("evaluate", m, fx("batches", specs), fx("encoder"), _what=what, _timeout=30)
    exp = R.evaluate(FX.echo_model(mode="train"), FX.batches(specs), ENC)
    hints = [(lambda mk=mk: _evaluate_variant(specs, mk), msg) for mk, msg in [
        ("per_batch", "you averaged the WER of each batch: compute ONE corpus WER over all utterances"),
        ("padded", "decode each item only up to its OUTPUT length (the model's out_lens), not the padded frames"),
        ("train_mode", "call model.eval() before decoding (BatchNorm and dropout must be in eval mode)")]]
    check_float(got, exp, fn="evaluate", what=what, rtol=1e-6, atol=1e-9, hints=hints)


def _wire(v):
    from autograder.checks._support import wire
    return wire(v)
