"""ex07 — sequence-wise batch norm (10 points)."""
from __future__ import annotations

import pytest
import torch

from autograder.checks import _inputs as I
from autograder.checks._inputs import R
from autograder.checks._support import check_tensor, fail

pytestmark = pytest.mark.exercise("ex07")
H = 5
BUFFERS = ["weight", "bias", "running_mean", "running_var"]


def _params(seed):
    g = I.gen(seed)
    return {"weight": 1 + 0.5 * torch.randn(H, generator=g), "bias": torch.randn(H, generator=g)}


def _batch(seed, lens, T=None):
    T = T or max(lens)
    return I.padded_sequences(seed, T, len(lens), H, lens) * 2 + 1, torch.tensor(lens)


def _per_timestep(x, lengths, p, eps=1e-5):
    """BatchNorm statistics per time step (over the batch only): the mistake DS2 warns about."""
    mask = (torch.arange(x.shape[0])[:, None] < lengths[None, :]).unsqueeze(2).float()
    n = mask.sum(1, keepdim=True).clamp_min(1)
    mean = (x * mask).sum(1, keepdim=True) / n
    var = ((x - mean) ** 2 * mask).sum(1, keepdim=True) / n
    return ((x - mean) / torch.sqrt(var + eps) * p["weight"] + p["bias"]) * mask


def _ref(p, include_padding=False):
    bn = R.SequenceWiseBatchNorm(H, include_padding=include_padding)
    with torch.no_grad():
        bn.weight.copy_(p["weight"])
        bn.bias.copy_(p["bias"])
    return bn


def _unbiased_norm(x, lengths, p, eps=1e-5):
    mask = (torch.arange(x.shape[0])[:, None] < lengths[None, :]).unsqueeze(2).float()
    n = mask.sum()
    mean = (x * mask).sum((0, 1)) / n
    var = ((x - mean) ** 2 * mask).sum((0, 1)) / (n - 1)
    return ((x - mean) / torch.sqrt(var + eps) * p["weight"] + p["bias"]) * mask


def _unmasked_out(x, lengths, p, eps=1e-5):
    mask = (torch.arange(x.shape[0])[:, None] < lengths[None, :]).unsqueeze(2).float()
    n = mask.sum()
    mean = (x * mask).sum((0, 1)) / n
    var = ((x - mean) ** 2 * mask).sum((0, 1)) / n
    return (x - mean) / torch.sqrt(var + eps) * p["weight"] + p["bias"]


def _forward_hints(x, lengths, p):
    return [
        (lambda: _per_timestep(x, lengths, p), "your statistics are per time step; sequence-wise BN pools over ALL "
                                               "valid (time, batch) frames"),
        (lambda: _ref(p, include_padding=True)(x, lengths), "the padded frames entered your mean/variance: use only "
                                                            "frames t < lengths[b]"),
        (lambda: _unbiased_norm(x, lengths, p), "normalise with the BIASED variance (divide by n); the unbiased one "
                                                "is only for running_var"),
        (lambda: _unmasked_out(x, lengths, p), "the padded frames must come out 0: zero them after normalising"),
    ]


@pytest.mark.points(1)
def test_initial_parameters_and_buffers(sub):
    """SequenceWiseBatchNorm(H): parameters and buffers of nn.BatchNorm1d; a full batch normalises"""
    h = sub.new("SequenceWiseBatchNorm", H, _what=f"SequenceWiseBatchNorm({H})")
    got = sub.get(h, BUFFERS + ["num_batches_tracked"])
    ref = R.SequenceWiseBatchNorm(H)
    for name in BUFFERS + ["num_batches_tracked"]:
        check_tensor(got[name], getattr(ref, name).detach(), fn="SequenceWiseBatchNorm", what=str(H),
                     name=f"the initial {name}", rtol=0, atol=0)
    x, lengths = _batch(5, [4, 4, 4])
    what = "x (4, 3, 5) without padding, train mode, initial weight and bias"
    got = sub.method(h, "forward", x, lengths, _what=f"SequenceWiseBatchNorm.forward({what})").value
    check_tensor(got, R.SequenceWiseBatchNorm(H)(x, lengths).detach(), fn="SequenceWiseBatchNorm.forward", what=what,
                 rtol=1e-4, atol=1e-4, hints=_forward_hints(x, lengths, {"weight": torch.ones(H), "bias": torch.zeros(H)}))


@pytest.mark.points(3)
def test_train_forward(sub):
    """forward in train mode: statistics over valid frames only, padded frames 0"""
    for seed, lens in enumerate([[6, 3, 1], [4, 4], [7, 2, 5, 3]]):
        p = _params(10 + seed)
        x, lengths = _batch(20 + seed, lens)
        h = sub.new("SequenceWiseBatchNorm", H)
        sub.set(h, p)
        sub.method(h, "train")
        what = f"x {tuple(x.shape)} with garbage in the padding, lengths={lens}, train mode"
        got = sub.method(h, "forward", x, lengths, _what=f"SequenceWiseBatchNorm.forward({what})").value
        check_tensor(got, _ref(p)(x, lengths).detach(), fn="SequenceWiseBatchNorm.forward", what=what, rtol=1e-4,
                     atol=1e-4, hints=_forward_hints(x, lengths, p))


def _stats_hints(batches, momentum=0.1):
    """Running statistics after ``batches`` with one thing changed (mistake models of the buffers)."""
    def run(mode):
        rm, rv = torch.zeros(H), torch.ones(H)
        if mode == "never":
            return {"running_mean": rm, "running_var": rv}
        for k, (x, lengths) in enumerate(batches, 1):
            mask = (torch.arange(x.shape[0])[:, None] < lengths[None, :]).unsqueeze(2).float()
            if mode == "padding":
                mask = torch.ones_like(mask)
            n = mask.sum()
            mean = (x * mask).sum((0, 1)) / n
            var = ((x - mean) ** 2 * mask).sum((0, 1)) / n
            unb = var if mode == "biased" else var * n / (n - 1)
            m = (1.0 / k) if momentum is None else momentum
            if mode == "momentum":
                m = 1 - m
            elif mode == "fixed":
                m = 0.1
            if mode == "replace":
                rm, rv = mean, unb
            else:
                rm, rv = (1 - m) * rm + m * mean, (1 - m) * rv + m * unb
        return {"running_mean": rm, "running_var": rv}
    msgs = [("never", "your running statistics were never updated: in train mode, update running_mean and "
                      "running_var in place (under torch.no_grad()) after computing the batch statistics"),
            ("biased", "running_var uses the UNBIASED variance (n / (n - 1)), as nn.BatchNorm1d does"),
            ("momentum", "running = (1 - momentum) * running + momentum * batch_statistic (you swapped the weights)"),
            ("padding", "the padded frames entered your statistics"),
            ("replace", "the running statistics are a moving average: do not replace them by the batch's"),
            ("fixed", "use the momentum argument (None means a cumulative average, 1 / num_batches_tracked)")]
    return {name: [(lambda md=md, name=name: run(md)[name], msg) for md, msg in msgs]
            for name in ("running_mean", "running_var")}


def _torch_bn_stats(batches, momentum):
    """Oracle: torch.nn.BatchNorm1d run on the valid frames only."""
    bn = torch.nn.BatchNorm1d(H, momentum=momentum)
    for x, lengths in batches:
        mask = torch.arange(x.shape[0])[:, None] < lengths[None, :]
        bn(x[mask])
    return bn


@pytest.mark.points(2)
def test_running_statistics(sub):
    """running_mean / running_var / num_batches_tracked after two training batches (momentum 0.1, 0.3, None)"""
    p = _params(30)
    batches = [_batch(31, [5, 2, 4]), _batch(32, [3, 6])]
    for momentum in (0.1, 0.3, None):
        h = sub.new("SequenceWiseBatchNorm", H, momentum=momentum, _what=f"SequenceWiseBatchNorm({H}, momentum={momentum})")
        sub.set(h, p)
        sub.method(h, "train")
        for x, lengths in batches:
            sub.method(h, "forward", x, lengths, _what=f"SequenceWiseBatchNorm.forward(x {tuple(x.shape)})")
        ref = _torch_bn_stats(batches, momentum)
        got = sub.get(h, ["running_mean", "running_var", "num_batches_tracked"])
        hints = _stats_hints(batches, momentum)
        what = f"momentum={momentum}, two batches in train mode"
        for name in ("running_mean", "running_var"):
            check_tensor(got[name], getattr(ref, name), fn="SequenceWiseBatchNorm", what=what, name=name, rtol=1e-4,
                         atol=1e-5, hints=hints[name])
        check_tensor(got["num_batches_tracked"], ref.num_batches_tracked, fn="SequenceWiseBatchNorm", what=what,
                     name="num_batches_tracked", rtol=0, atol=0,
                     hints=[(torch.tensor(0), "add 1 to num_batches_tracked at every training forward")])


@pytest.mark.points(2)
def test_eval_forward(sub):
    """forward in eval mode uses the running statistics"""
    p = _params(40)
    h = sub.new("SequenceWiseBatchNorm", H)
    sub.set(h, p)
    ref = _ref(p)
    for x, lengths in [_batch(41, [5, 2, 4]), _batch(42, [3, 6])]:
        sub.method(h, "train")
        sub.method(h, "forward", x, lengths, _what=f"SequenceWiseBatchNorm.forward(x {tuple(x.shape)})")
        ref.train()
        ref(x, lengths)
    x, lengths = _batch(43, [4, 1, 3])
    sub.method(h, "eval")
    ref.eval()
    what = f"x {tuple(x.shape)}, lengths={lengths.tolist()}, eval mode after two training batches"
    got = sub.method(h, "forward", x, lengths, _what=f"SequenceWiseBatchNorm.forward({what})").value
    exp = ref(x, lengths).detach()
    train_like = _ref(p)(x, lengths).detach()
    valid = (torch.arange(x.shape[0])[:, None] < lengths[None, :]).unsqueeze(2)
    never = ((x / (1 + 1e-5) ** 0.5) * p["weight"] + p["bias"]) * valid
    check_tensor(got, exp, fn="SequenceWiseBatchNorm.forward", what=what, rtol=1e-4, atol=1e-4,
                 hints=[(train_like, "in eval mode, normalise with running_mean / running_var, not the batch's "
                                     "statistics"),
                        (never, "your running statistics were never updated (still 0 and 1): update them in train "
                                "mode")])


@pytest.mark.points(2)
def test_gradients(sub):
    """gradients with respect to x, weight and bias (train mode)"""
    p = _params(50)
    x, lengths = _batch(51, [5, 3, 4])
    out_grad = torch.randn(x.shape, generator=I.gen(52))
    ref = _ref(p)
    xr = x.clone().requires_grad_(True)
    (ref(xr, lengths) * out_grad).sum().backward()
    h = sub.new("SequenceWiseBatchNorm", H)
    sub.set(h, p)
    sub.method(h, "train")
    what = f"x {tuple(x.shape)}, lengths={lengths.tolist()}"
    reply = sub.method(h, "forward", x.clone().requires_grad_(True), lengths,
                       _what=f"SequenceWiseBatchNorm.forward({what})",
                       _grad={"out_grad": _wire(out_grad), "params": ["weight", "bias"], "index": []})
    if reply.raw.get("grad_error"):
        fail(f"SequenceWiseBatchNorm.forward({what}): {reply.raw['grad_error']}")
    grads, pgrads = reply.grads, reply.param_grads or {}
    if not grads or grads[0] is None:
        fail(f"SequenceWiseBatchNorm.forward({what}): no gradient reached x (did you detach the statistics?)")
    check_tensor(grads[0], xr.grad, fn="SequenceWiseBatchNorm.forward", what=what, name="the gradient of x",
                 rtol=1e-3, atol=1e-4, hints=[(lambda: _detached_stats_grad(p, x, lengths, out_grad),
                                               "do not detach the batch mean/variance in train mode: the gradient "
                                               "flows through them")])
    for name in ("weight", "bias"):
        if pgrads.get(name) is None:
            fail(f"SequenceWiseBatchNorm.forward({what}): no gradient reached {name} (is it an nn.Parameter?)")
        check_tensor(pgrads[name], getattr(ref, name).grad, fn="SequenceWiseBatchNorm.forward", what=what,
                     name=f"the gradient of {name}", rtol=1e-3, atol=1e-4)


def _detached_stats_grad(p, x, lengths, out_grad):
    mask = (torch.arange(x.shape[0])[:, None] < lengths[None, :]).unsqueeze(2).float()
    n = mask.sum()
    mean = ((x * mask).sum((0, 1)) / n).detach()
    var = (((x - mean) ** 2 * mask).sum((0, 1)) / n).detach()
    xr = x.clone().requires_grad_(True)
    y = ((xr - mean) / torch.sqrt(var + 1e-5) * p["weight"] + p["bias"]) * mask
    (y * out_grad).sum().backward()
    return xr.grad


def _wire(t):
    from autograder.sandbox import protocol as P
    return P.encode(t)
