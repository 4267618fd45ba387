"""The injection points that let lessons 09-11 train with the student's own pieces.

``DeepSpeech2(parts=Parts(gru_layer=, batch_norm=, row_conv=))``, ``train_step(..., ctc_loss=)``
and ``fit(..., ctc_loss=, step_fn=, plan=, collate=)``: with the reference's own functions injected
the results are those of the default path, and with independent implementations built on torch's
modules (``nn.GRU`` over packed sequences, ``nn.BatchNorm1d`` on the valid frames,
``F.ctc_loss``) too, so the injection passes the right weights, directions and lengths.
"""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import reference as R
from reference.data import sortagrad_batches
from reference.model import Parts
from reference.training import fit, make_batches, torch_style_ctc_loss

ENC = R.CharEncoder()
LENGTHS = torch.tensor([9, 4, 7])
SMALL = dict(n_freq=161, n_conv=1, conv_channels=(4,), n_rnn=2, rnn_hidden=8)


# ----------------------------------------------------------------------------- independent implementations
def nn_gru_layer(x, lengths, weight_ih, weight_hh, bias_ih=None, bias_hh=None, reverse=False):
    """gru_layer's contract on torch's own nn.GRU over a packed batch (an oracle, not the reference)."""
    H = weight_hh.shape[1]
    gru = nn.GRU(x.shape[2], H, bidirectional=reverse).to(x.dtype)
    names = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")
    if reverse:
        names = tuple(n + "_reverse" for n in names)
    for name, w in zip(names, (weight_ih, weight_hh, bias_ih, bias_hh)):
        delattr(gru, name)
        setattr(gru, name, w if w is not None else x.new_zeros(3 * H))     # keep the autograd graph
    out, _ = gru(pack_padded_sequence(x, lengths.cpu(), enforce_sorted=False))
    out, _ = pad_packed_sequence(out, total_length=x.shape[0])
    return out[..., H:] if reverse else out


class NNBatchNorm(nn.BatchNorm1d):
    """SequenceWiseBatchNorm's contract: nn.BatchNorm1d applied to the valid frames only."""

    def forward(self, x, lengths):
        valid = torch.arange(x.shape[0])[:, None] < lengths[None, :]             # (T, B)
        out = x.new_zeros(x.shape)
        out[valid] = super().forward(x[valid])
        return out


def features(B=3, T=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, 1, 161, T, generator=g)
    lengths = torch.tensor([T, T - 13, T - 7][:B])
    return x, lengths


def outputs_and_grads(model, x, lengths):
    log_probs, out_lengths = model(x, lengths)
    (log_probs * torch.linspace(-1, 1, log_probs.shape[-1])).sum().backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters()}
    return log_probs.detach(), out_lengths, grads


# ----------------------------------------------------------------------------- the model
@pytest.mark.parametrize("kw", [{}, {"bidirectional": False, "lookahead": 3}], ids=["bidirectional", "streaming"])
@pytest.mark.parametrize("which", ["reference", "torch"])
def test_model_with_injected_parts_equals_the_default(kw, which):
    if which == "reference":
        parts = Parts(gru_layer=R.gru_layer, batch_norm=R.SequenceWiseBatchNorm,
                      row_conv=R.row_conv if kw else None)
    else:
        parts = Parts(gru_layer=nn_gru_layer, batch_norm=NNBatchNorm)
    torch.manual_seed(0)
    default = R.DeepSpeech2(**SMALL, **kw)
    injected = R.DeepSpeech2(**SMALL, **kw, parts=parts)
    injected.load_state_dict(default.state_dict())           # the same parameter and buffer names
    x, lengths = features()
    lp_a, ol_a, g_a = outputs_and_grads(default, x, lengths)
    lp_b, ol_b, g_b = outputs_and_grads(injected, x, lengths)
    assert torch.equal(ol_a, ol_b)
    torch.testing.assert_close(lp_b, lp_a, rtol=1e-4, atol=1e-5)
    for k in g_a:
        torch.testing.assert_close(g_b[k], g_a[k], rtol=1e-3, atol=1e-5, msg=k)
    bn_a = {k: v for k, v in default.state_dict().items() if "rnns" in k and "running" in k}
    bn_b = {k: v for k, v in injected.state_dict().items() if "rnns" in k and "running" in k}
    for k in bn_a:
        torch.testing.assert_close(bn_b[k], bn_a[k], msg=k)
    default.eval(), injected.eval()
    with torch.no_grad():
        torch.testing.assert_close(injected(x, lengths)[0], default(x, lengths)[0], rtol=1e-4, atol=1e-5)


def test_injected_row_conv_is_used_and_parts_are_checked():
    calls = []

    def counting_row_conv(x, weight, lengths):
        calls.append(tuple(x.shape))
        return R.row_conv(x, weight, lengths)

    model = R.DeepSpeech2(**SMALL, bidirectional=False, lookahead=2, parts=Parts(row_conv=counting_row_conv))
    model(*features())
    assert len(calls) == 1 and calls[0][2] == SMALL["rnn_hidden"]
    with pytest.raises(ValueError, match="rnn_type='gru' only"):
        R.DeepSpeech2(**SMALL, rnn_type="rnn", parts=Parts(gru_layer=R.gru_layer))
    with pytest.raises(ValueError, match="cannot count padding"):
        R.DeepSpeech2(**SMALL, bn_include_padding=True, parts=Parts(batch_norm=R.SequenceWiseBatchNorm))
    with pytest.raises(ValueError, match="reference.model.Parts"):
        R.DeepSpeech2(**SMALL, parts={"gru_layer": R.gru_layer})


# ----------------------------------------------------------------------------- the loss
def ctc_case(seed=0):
    """Log-probs of 3 utterances; the second is too short for its target (2 repeats need 2 blanks)."""
    g = torch.Generator().manual_seed(seed)
    log_probs = torch.randn(8, 3, 6, generator=g, dtype=torch.float64).log_softmax(-1)
    targets = torch.tensor([[1, 2, 2, 0], [3, 3, 3, 3], [5, 0, 0, 0]])
    input_lengths = torch.tensor([8, 5, 6])              # item 1 needs 4 + 3 = 7 frames
    target_lengths = torch.tensor([3, 4, 1])
    return log_probs, targets, input_lengths, target_lengths


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("flat", [False, True], ids=["2-D targets", "1-D targets"])
def test_torch_style_ctc_loss_is_zero_infinity(reduction, flat):
    log_probs, targets, il, tl = ctc_case()
    if flat:
        targets = torch.cat([targets[b, : int(n)] for b, n in enumerate(tl)])
    # gradients with respect to the logits: torch's CTC backward assumes a log_softmax before it
    a = log_probs.clone().requires_grad_()
    b = log_probs.clone().requires_grad_()
    ours = torch_style_ctc_loss(R.ctc_loss)(a.log_softmax(-1), targets, il, tl, blank=0, reduction=reduction,
                                            zero_infinity=True)
    theirs = F.ctc_loss(b.log_softmax(-1), targets, il, tl, blank=0, reduction=reduction, zero_infinity=True)
    torch.testing.assert_close(ours, theirs)
    ours.sum().backward()
    theirs.sum().backward()
    assert torch.isfinite(a.grad).all()
    torch.testing.assert_close(a.grad, b.grad)
    # without zero_infinity the contract's own behaviour: inf for the infeasible item
    raw = torch_style_ctc_loss(R.ctc_loss)(log_probs, targets, il, tl, reduction="none")
    assert math.isinf(float(raw[1])) and torch.isfinite(raw[[0, 2]]).all()


def test_torch_style_ctc_loss_with_no_feasible_item_is_zero_with_a_graph():
    log_probs, targets, il, tl = ctc_case()
    lp = log_probs.clone().requires_grad_()
    loss = torch_style_ctc_loss(R.ctc_loss)(lp, targets, torch.tensor([1, 1, 0]), tl, zero_infinity=True)
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert lp.grad.abs().sum() == 0


# ----------------------------------------------------------------------------- train_step and fit
@pytest.fixture(scope="module")
def data():
    words = "cat dog sun red".split()
    return (R.generate_synthetic_dataset(24, 1, 1, seed=3, words=words, n_speakers=4),
            R.generate_synthetic_dataset(6, 1, 1, seed=33, words=words, n_speakers=4))


def test_train_step_with_an_injected_ctc_loss_takes_the_same_step(data):
    batch = make_batches(data[0][:6], ENC, 6)[0]
    torch.manual_seed(1)
    a = R.DeepSpeech2(**SMALL)
    b = copy.deepcopy(a)
    oa, ob = torch.optim.SGD(a.parameters(), lr=0.1), torch.optim.SGD(b.parameters(), lr=0.1)
    la = R.train_step(a, batch, oa, max_grad_norm=0.5)
    lb = R.train_step(b, batch, ob, max_grad_norm=0.5, ctc_loss=R.ctc_loss)
    assert lb == pytest.approx(la, rel=1e-5)
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-6, msg=name)


def test_fit_with_injected_pieces_equals_the_default(data):
    train, valid = data
    runs = {}
    for name, kw in {"default": {},
                     "injected": dict(step_fn=R.train_step, plan=sortagrad_batches, collate=R.collate_batch),
                     "loss": dict(ctc_loss=R.ctc_loss)}.items():
        torch.manual_seed(2)
        model = R.DeepSpeech2(**SMALL)
        runs[name] = fit(model, train, ENC, valid_set=valid, epochs=2, batch_size=8, lr=3e-3, eval_every=3,
                         progress=False, **kw)
    assert runs["injected"].loss == runs["default"].loss
    assert runs["injected"].eval_wer == runs["default"].eval_wer
    assert runs["loss"].loss == pytest.approx(runs["default"].loss, rel=1e-4)


def test_fit_uses_the_planner_and_refuses_a_step_with_a_loss(data):
    train, _ = data
    seen = []

    def plan(dataset, batch_size, epoch, seed=0):
        seen.append(epoch)
        return sortagrad_batches(dataset, batch_size, epoch, seed)

    model = R.DeepSpeech2(**SMALL)
    hist = fit(model, train, ENC, epochs=2, batch_size=8, progress=False, plan=plan)
    assert len(hist.step) == 6 and seen.count(1) == 1
    with pytest.raises(ValueError, match="both step_fn= and ctc_loss="):
        fit(model, train, ENC, epochs=1, progress=False, step_fn=R.train_step, ctc_loss=R.ctc_loss)
    with pytest.raises(ValueError, match="plan must be a function"):
        fit(model, train, ENC, epochs=1, progress=False, plan=[[0, 1]])


def test_fit_takes_a_collate_whose_batches_have_no_to_method():
    """A student's collate_batch may return its own batch class (fields of the contract, no ``.to``): fit
    trains on it as it is on the CPU, as lessons 09 and 11 do."""
    from dataclasses import dataclass

    from reference.data import collate_batch as reference_collate

    @dataclass
    class PlainBatch:                       # the contract's fields only
        features: torch.Tensor
        feature_lengths: torch.Tensor
        targets: torch.Tensor
        target_lengths: torch.Tensor
        transcripts: list

    def plain_collate(samples, encoder, n_fft=None):
        b = reference_collate(samples, encoder, n_fft=n_fft)
        return PlainBatch(b.features, b.feature_lengths, b.targets, b.target_lengths, b.transcripts)

    enc = R.CharEncoder()
    data = R.generate_synthetic_dataset(16, seed=3, min_words=1, max_words=1)
    torch.manual_seed(0)
    net = R.DeepSpeech2(n_conv=1, conv_channels=(4,), n_rnn=1, rnn_hidden=16)
    hist = R.fit(net, data, enc, valid_set=data[:4], epochs=1, batch_size=8, max_steps=2, collate=plain_collate,
               progress=False)
    assert hist.step == [1, 2] and len(hist.eval_wer) == 1
