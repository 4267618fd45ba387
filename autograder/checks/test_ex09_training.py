"""ex09 — the training step and evaluation (8 points).

``train_step`` changes a model and an optimiser, so its comparisons are not a single call: its
mistake models (``_train_step_variant``) stay here, each named in its hint.  ``evaluate``'s are in
``autograder/checks/mistakes.py``.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from autograder.sandbox import fixtures as FX
from autograder.checks import mistakes as M
from autograder.checks import _inputs as I
from autograder.checks._inputs import R
from autograder.checks._support import CheckFailed, check_float, check_tensor, fail, fx

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


# ----------------------------------------------------------------------------- train_step mistake models
def _train_step_variant(model, batch, optimizer, max_grad_norm, mistake=""):
    """``train_step`` with one thing changed (``mistake=""`` is the contract)."""
    if mistake != "no_train":
        model.train()
    if mistake != "no_zero_grad":
        optimizer.zero_grad()
    lp, ol = model(batch.features, batch.feature_lengths)
    per_item = F.ctc_loss(lp, batch.targets, ol, batch.target_lengths, reduction="none", zero_infinity=True)
    mean = (per_item / batch.target_lengths.clamp_min(1)).mean()
    loss = {"sum": per_item.sum(), "plain_mean": per_item.mean()}.get(mistake, mean)
    value = float(loss)
    if not math.isfinite(value):
        optimizer.zero_grad()
        return value
    (per_item.sum() if mistake == "backward_sum" else loss).backward()
    params = [p for p in model.parameters() if p.grad is not None]
    if mistake == "clip_value":
        torch.nn.utils.clip_grad_value_(params, max_grad_norm)
    elif mistake == "clip_per_param":
        for p in params:
            torch.nn.utils.clip_grad_norm_([p], max_grad_norm)
    elif mistake == "clip_400":
        torch.nn.utils.clip_grad_norm_(params, 400.0)
    elif mistake not in ("no_clip", "clip_after_step"):
        torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    if mistake != "no_step":
        optimizer.step()
    if mistake == "clip_after_step":
        torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    return value


_STEP_MISTAKES = {
    "no_train": "call model.train() first: the model may arrive in eval mode (BatchNorm must use the batch's "
                "statistics while training)",
    "no_zero_grad": "call optimizer.zero_grad() before backward(): gradients ACCUMULATE in .grad, so stale ones "
                    "(from an earlier step or backward) were added to this step's",
    "sum": "use reduction='mean' (each loss divided by its target length, then averaged), not 'sum'",
    "plain_mean": "reduction='mean' divides each loss by its target length before averaging; you averaged the "
                  "raw losses",
    "backward_sum": "call backward() on the loss you return (the mean), not on the sum of the per-utterance losses",
    "no_clip": "clip the gradient norm with torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm) "
               "between backward() and step()",
    "clip_after_step": "clip BEFORE optimizer.step(): clipping afterwards does not change the step",
    "clip_400": "use the max_grad_norm argument, not a fixed 400",
    "clip_value": "clip the global gradient NORM (clip_grad_norm_), not each gradient value (clip_grad_value_)",
    "clip_per_param": "clip the GLOBAL norm over all parameters together, not each parameter's norm separately",
    "no_step": "the parameters did not change: call optimizer.step() after clipping (and optimizer.zero_grad() "
               "BEFORE backward(), not between backward() and step(), which throws the gradients away)",
}


def _run_variant(fields, model_kw, lr=0.5, max_grad_norm=400.0, mode="eval", mistake="", stale=None, steps=1):
    m = FX.model(mode=mode, **model_kw)
    if stale is not None:
        FX.stale_grads(m, stale)
    opt = FX.sgd(m, lr=lr)
    b = FX.batch(**fields)
    loss = None
    for _ in range(steps):
        loss = (R.train_step(m, b, opt, max_grad_norm) if mistake is None
                else _train_step_variant(m, b, opt, max_grad_norm, mistake))
    return loss, FX.model_state(m)


def _expected(fields, model_kw, **kw):
    """The reference's step; asserted equal to the contract's own steps (``mistake=""``)."""
    exp = _run_variant(fields, model_kw, mistake=None, **kw)
    mine = _run_variant(fields, model_kw, mistake="", **kw)
    assert math.isclose(exp[0], mine[0], rel_tol=1e-6) or (math.isnan(exp[0]) and math.isnan(mine[0]))
    return exp


def _compare_state(got, exp, what, variants, mistakes):
    if not isinstance(got, dict):
        fail(f"train_step({what}): could not read the model's parameters afterwards")
    for k, v in exp.items():
        if k.startswith("grad.") or k == "__training__" or k.endswith("num_batches_tracked"):
            continue
        hints = [(lambda mk=mk, k=k: variants[mk][1][k], _STEP_MISTAKES[mk]) for mk in mistakes]
        check_tensor(got.get(k), v, fn="train_step", what=what, name=f"the parameter {k} after the step",
                     rtol=1e-4, atol=1e-5, hints=hints)


def _call_train_step(sub, fields, model_kw, lr, max_grad_norm, what, mode="eval", stale=None, steps=1):
    m = sub.fixture("model", mode=mode, **model_kw)
    if stale is not None:
        sub.fixture("stale_grads", m, stale, _keep=False)
    opt = sub.fixture("sgd", m, lr=lr)
    b = sub.fixture("batch", **fields)
    loss = None
    for _ in range(steps):
        try:
            loss = sub.call("train_step", m, b, opt, max_grad_norm, _what=what, _timeout=30)
        except CheckFailed as e:
            if e.kind == "error" and "input_length" in e.message:
                raise CheckFailed(f"{e.message} Hint: pass the model's OUTPUT lengths to the loss, not "
                                  "batch.feature_lengths: the convolution's stride makes the output shorter than "
                                  "the input", e.kind) from None
            raise
    state = sub.fixture("model_state", m, _keep=False)
    return loss, state


def _variants(fields, kw, mistakes, **run_kw):
    return {mk: _run_variant(fields, kw, mistake=mk, **run_kw) for mk in mistakes}


@pytest.mark.points(2)
def test_train_step_loss_and_update(sub):
    """train_step: returns the mean CTC loss and takes one optimiser step (model handed over in eval mode)"""
    fields = _batch_fields(1, TRANSCRIPTS)
    kw = {"n_freq": N_FREQ, "seed": 3}
    what = "a tiny CTC model (handed over in eval mode, stride 2 over time), a batch of 3, SGD lr=0.5"
    loss, state = _call_train_step(sub, fields, kw, 0.5, 400.0, what)
    exp_loss, exp_state = _expected(fields, kw)
    names = ("no_train", "sum", "plain_mean", "backward_sum", "no_step")
    variants = _variants(fields, kw, names)
    check_float(loss, exp_loss, fn="train_step", what=what, rtol=1e-4, atol=1e-5,
                hints=[(variants[mk][0], _STEP_MISTAKES[mk]) for mk in names])
    _compare_state(state, exp_state, what, variants, names)


@pytest.mark.points(1)
def test_train_step_clears_old_gradients(sub):
    """train_step: gradients left in .grad (by an earlier backward, or an earlier step) do not enter the step"""
    fields = _batch_fields(4, ["egg", "all well", "deep"])
    kw = {"n_freq": N_FREQ, "seed": 6}
    what = "a tiny CTC model whose parameters still hold gradients from an earlier backward(), SGD lr=0.5"
    _, state = _call_train_step(sub, fields, kw, 0.5, 400.0, what, mode="train", stale=7)
    _, exp_state = _expected(fields, kw, mode="train")
    variants = _variants(fields, kw, ("no_zero_grad",), mode="train", stale=7)
    _compare_state(state, exp_state, what, variants, ("no_zero_grad",))
    what = "two steps in a row on the same model, optimiser and batch, SGD lr=0.5"
    loss, state = _call_train_step(sub, fields, kw, 0.5, 400.0, what, mode="train", steps=2)
    exp_loss, exp_state = _expected(fields, kw, mode="train", steps=2)
    variants = _variants(fields, kw, ("no_zero_grad",), mode="train", steps=2)
    _compare_state(state, exp_state, what, variants, ("no_zero_grad",))
    check_float(loss, exp_loss, fn="train_step", what=what + " (the second step's loss)", rtol=1e-4, atol=1e-5)


@pytest.mark.points(2)
def test_train_step_clips_gradients(sub):
    """train_step: the global gradient norm of all parameters is clipped to max_grad_norm before the step"""
    fields = _batch_fields(2, ["the dog", "it's a cat", "egg"])
    kw = {"n_freq": N_FREQ, "seed": 4, "scale": 2.0}
    what = "a tiny CTC model, SGD lr=0.5, max_grad_norm=0.05"
    loss, state = _call_train_step(sub, fields, kw, 0.5, 0.05, what, mode="train")
    exp_loss, exp_state = _expected(fields, kw, max_grad_norm=0.05, mode="train")
    names = ("no_clip", "clip_after_step", "clip_400", "clip_value", "clip_per_param")
    variants = _variants(fields, kw, names, max_grad_norm=0.05, mode="train")
    check_float(loss, exp_loss, fn="train_step", what=what, rtol=1e-4, atol=1e-5)
    _compare_state(state, exp_state, what, variants, names)


def _run_sequence(steps, model_kw, mode="train", mistake=None):
    """The reference's (``mistake=None``) or the contract's own steps (``""``) over several batches,
    one model and one optimiser: the losses and the final state."""
    m = FX.model(mode=mode, **model_kw)
    opt = FX.sgd(m, lr=0.5)
    losses = []
    for fields in steps:
        b = FX.batch(**fields)
        losses.append(R.train_step(m, b, opt, 400.0) if mistake is None
                      else _train_step_variant(m, b, opt, 400.0, mistake))
    return losses, FX.model_state(m)


@pytest.mark.hidden
@pytest.mark.points(1)
def test_train_step_skips_non_finite(sub):
    """train_step: a NaN loss is returned and the weights are not changed; the next finite batch is a normal step"""
    fields = _batch_fields(3, TRANSCRIPTS)
    fields["features"][1, 0, 2, 3] = float("nan")
    clean = _batch_fields(8, ["a cat", "dog", "see it"])
    kw = {"n_freq": N_FREQ, "seed": 5}
    what = "a batch whose features contain a NaN"
    m = sub.fixture("model", mode="train", **kw)
    opt = sub.fixture("sgd", m, lr=0.5)
    loss = sub.call("train_step", m, sub.fixture("batch", **fields), opt, 400.0, _what=what, _timeout=30)
    state = sub.fixture("model_state", m, _keep=False)
    (exp_loss, exp_loss2), exp_state2 = _run_sequence([fields, clean], kw)
    mine = _run_sequence([fields, clean], kw, mistake="")
    assert math.isnan(exp_loss) and math.isnan(mine[0][0]) and math.isclose(exp_loss2, mine[0][1], rel_tol=1e-6)
    check_float(loss, exp_loss, fn="train_step", what=what)
    before = FX.model_state(FX.model(mode="train", **kw))
    for k in before:
        if k.startswith(("grad.", "__", "norm.running", "norm.num")):
            continue
        got = state.get(k) if isinstance(state, dict) else None
        if not isinstance(got, torch.Tensor) or not torch.allclose(got, before[k], equal_nan=True):
            fail(f"train_step({what}): the parameter {k} changed; with a non-finite loss, skip the update "
                 "(zero the gradients, no optimizer.step())")
    # The edge case pays only with evidence that train_step works: the same model and optimiser then
    # take an ordinary step (a train_step that does nothing and returns NaN earns nothing here).
    what = "then a batch without NaN, on the same model and optimiser (SGD lr=0.5)"
    loss2 = sub.call("train_step", m, sub.fixture("batch", **clean), opt, 400.0, _what=what, _timeout=30)
    check_float(loss2, exp_loss2, fn="train_step", what=what, rtol=1e-4, atol=1e-5)
    _compare_state(sub.fixture("model_state", m, _keep=False), exp_state2, what, {}, ())


# ----------------------------------------------------------------------------- evaluate
def _posteriogram_batch(refs, hyps, pad_extra, stride=2):
    """Features that the echo model (keeping every ``stride``-th frame) turns into a best path spelling ``hyps``."""
    paths = []
    for h in hyps:
        p = []
        for ch in h:
            p += [ENC.encode(ch)[0], 0]
        paths.append(p or [0])
    out_lens = [len(p) for p in paths]
    flen = [stride * (n - 1) + 1 for n in out_lens]
    T = max(n + stride * e for n, e in zip(flen, pad_extra))
    feats = torch.full((len(hyps), 1, 29, T), -5.0)
    x_id = ENC.encode("x")[0]
    for b, p in enumerate(paths):
        feats[b, 0, x_id, :] = 5.0                               # padding and skipped frames read "x"
        for t, s in enumerate(p):
            feats[b, 0, x_id, stride * t] = -5.0
            feats[b, 0, s, stride * t] = 5.0
    targets = torch.zeros(len(refs), max(len(r) for r in refs), dtype=torch.long)
    for b, r in enumerate(refs):
        targets[b, : len(r)] = torch.tensor(ENC.encode(r))
    return {"features": feats, "feature_lengths": torch.tensor(flen), "targets": targets,
            "target_lengths": torch.tensor([len(r) for r in refs]), "transcripts": list(refs)}


EVAL = [(["the cat sat", "a dog"], ["the cat sat", "a dot"], (0, 6)),
        (["deep speech", "all well", "see it's good"], ["deep", "all well", "see it's good"], (9, 4, 0)),
        (["a b c d e f g h i j"], ["a b c d e f g h i j"], (2,))]


def _oracle_wer(refs, hyps):
    """Corpus WER from the contract (total word edits / total reference words), independent of the reference."""
    return sum(M._lev(r.split(), h.split()) for r, h in zip(refs, hyps)) / sum(len(r.split()) for r in refs)


@pytest.mark.points(1)
def test_evaluate(sub):
    """evaluate: ONE corpus WER of greedy decoding over all batches, each item up to its output length"""
    specs = [_posteriogram_batch(*e) for e in EVAL]
    what = ("a model (handed over in train mode, stride 2 over time) whose outputs spell known hypotheses, "
            "3 batches of 2, 3 and 1 utterances")
    m = sub.fixture("echo_model", mode="train", stride=2)
    got = sub.call("evaluate", m, fx("batches", specs), fx("encoder"), _what=what, _timeout=30)
    exp = _oracle_wer([r for e in EVAL for r in e[0]], [h for e in EVAL for h in e[1]])
    assert math.isclose(exp, R.evaluate(FX.echo_model(mode="train", stride=2), FX.batches(specs), ENC))
    check_float(got, exp, fn="evaluate", what=what, rtol=1e-6, atol=1e-9,
                hints=M.hints("evaluate", FX.echo_model(mode="train", stride=2), FX.batches(specs), ENC))


@pytest.mark.points(1)
def test_evaluate_mode_and_no_grad(sub):
    """evaluate: decodes in eval mode under torch.no_grad(), then puts the model back in its own mode"""
    specs = [_posteriogram_batch(*EVAL[0])]
    for mode in ("train", "eval"):
        what = f"a model handed over in {mode} mode, one batch of 2"
        m = sub.fixture("echo_model", mode=mode, stride=2)
        got = sub.call("evaluate", m, fx("batches", specs), fx("encoder"), _what=what, _timeout=30)
        check_float(got, _oracle_wer(*EVAL[0][:2]), fn="evaluate", what=what, rtol=1e-6, atol=1e-9,
                    hints=M.hints("evaluate", FX.echo_model(mode=mode, stride=2), FX.batches(specs), ENC))
        flags = sub.fixture("model_flags", m, _keep=False)
        if not isinstance(flags, dict):
            fail(f"evaluate({what}): could not read the model's mode afterwards")
        if any(flags.get("grad_modes") or []):
            fail(f"evaluate({what}): the model ran with gradients enabled; decode under torch.no_grad() (no graph "
                 "is needed, and building one costs memory and time)")
        if flags.get("training") != (mode == "train"):
            fail(f"evaluate({what}): the model was left in {'train' if flags.get('training') else 'eval'} mode; put "
                 "it back in the mode it was in (was = model.training ... model.train(was), in a finally block)")
