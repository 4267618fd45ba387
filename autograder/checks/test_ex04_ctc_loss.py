"""ex04 — CTC loss (14 points)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from autograder.checks import mistakes as M
from autograder.checks import _inputs as I
from autograder.checks._inputs import R
from autograder.checks._support import CheckFailed, check_tensor, check_value, fail

pytestmark = pytest.mark.exercise("ex04")
NEG = float("-inf")


@pytest.mark.points(2)
def test_extend_with_blanks(sub):
    """extend_with_blanks: [y1, y2] -> [blank, y1, blank, y2, blank]"""
    for target, blank in [([1, 2, 3], 0), ([5, 5], 0), ([], 0), ([7], 0), ([1, 2], 28)]:
        what = f"target={target}, blank={blank}"
        check_value(sub.call("extend_with_blanks", target, blank=blank, _what=what),
                    R.extend_with_blanks(target, blank=blank), fn="extend_with_blanks", what=what,
                    hints=M.hints("extend_with_blanks", target, blank))
    t = torch.tensor([4, 4, 9])
    check_value(sub.call("extend_with_blanks", t, _what="target=tensor([4, 4, 9])"), R.extend_with_blanks(t),
                fn="extend_with_blanks", what="target=tensor([4, 4, 9])", hints=M.hints("extend_with_blanks", t))


def _alpha_hints(lp, target):
    return M.hints("ctc_log_alpha", lp, target)


def _underflow_cases():
    """Inputs long enough that a log(sum(exp(...))) underflows: alphas below -103 (float32) and -745 (float64)."""
    target = [int(x) for x in torch.randint(1, 29, (12,), generator=I.gen(58))]
    return [(I.log_probs(57, 60, 1)[:, 0], target, "float32"),
            (I.log_probs(57, 150, 1, scale=3.0, dtype=torch.float64)[:, 0], target, "float64")]


@pytest.mark.points(3)
def test_ctc_log_alpha_small(sub):
    """ctc_log_alpha: small cases, repeated labels, unreachable states are -inf; 60 and 150 frames (no underflow)"""
    cases = [(6, [1, 2, 2], 1), (4, [3], 2), (5, [1, 1, 1], 3), (8, [2, 5, 2, 7], 4), (3, [4, 4], 5)]
    for T, target, seed in cases:
        lp = I.log_probs(40 + seed, T, 1)[:, 0]
        what = f"log_probs of shape ({T}, 29), target={target}"
        check_tensor(sub.call("ctc_log_alpha", lp, target, _what=what), R.ctc_log_alpha(lp, target),
                     fn="ctc_log_alpha", what=what, rtol=1e-4, atol=1e-4, hints=_alpha_hints(lp, target))
    for lp, target, dtype in _underflow_cases():
        what = f"{dtype} log_probs of shape ({lp.shape[0]}, 29), a 12-symbol target (alphas far below exp's range)"
        check_tensor(sub.call("ctc_log_alpha", lp, target, _what=what), R.ctc_log_alpha(lp, target),
                     fn="ctc_log_alpha", what=what, rtol=1e-4, atol=2e-3, hints=_alpha_hints(lp, target))


@pytest.mark.hidden
@pytest.mark.points(2)
def test_ctc_log_alpha_long(sub):
    """ctc_log_alpha: 400 frames (probabilities underflow; log space does not)"""
    lp = I.log_probs(55, 400, 1, scale=3.0)[:, 0]
    target = [int(x) for x in torch.randint(1, 29, (30,), generator=I.gen(56))]
    what = "log_probs of shape (400, 29), a 30-symbol target"
    exp = R.ctc_log_alpha(lp, target)

    check_tensor(sub.call("ctc_log_alpha", lp, target, _what=what, _timeout=60), exp, fn="ctc_log_alpha", what=what,
                 rtol=1e-4, atol=2e-3, hints=[(lambda: torch.where(exp < -80, torch.full_like(exp, NEG), exp),
                                                "your alphas underflow to -inf: stay in log space "
                                                "(torch.logsumexp / torch.logaddexp), never exp() then log()")]
                 + _alpha_hints(lp, target))


def _batch(seed, T, lens, tlens, V=29):
    g = I.gen(seed)
    lp = I.log_probs(seed, T, len(lens), V)
    targets = torch.zeros(len(lens), max(tlens), dtype=torch.long)
    for b, n in enumerate(tlens):
        targets[b, :n] = torch.randint(1, V, (n,), generator=g)
    return lp, targets, torch.tensor(lens), torch.tensor(tlens)


def _loss_hints(lp, targets, il, tl, reduction):
    return M.hints("ctc_loss", lp, targets, il, tl, 0, reduction)


def _oracle(lp, targets, il, tl, reduction):
    """torch's own CTC loss (float64): the independent oracle of ``ctc_loss``."""
    return F.ctc_loss(lp.double(), targets, il, tl, blank=0, reduction=reduction).to(lp.dtype)


@pytest.mark.points(3)
def test_ctc_loss_values(sub):
    """ctc_loss: a padded batch, each reduction, both target layouts"""
    lp, targets, il, tl = _batch(61, 12, [12, 9, 5], [4, 2, 3])
    for reduction in ("none", "sum", "mean"):
        what = f"a batch of 3 (input_lengths={il.tolist()}, target_lengths={tl.tolist()}), reduction={reduction!r}"
        check_tensor(sub.call("ctc_loss", lp, targets, il, tl, reduction=reduction, _what=what),
                     _oracle(lp, targets, il, tl, reduction), fn="ctc_loss", what=what, rtol=1e-4,
                     atol=1e-4, hints=_loss_hints(lp, targets, il, tl, reduction))
    lp2, targets2, il2, tl2 = _batch(62, 10, [10, 7], [3, 3])
    flat = torch.cat([targets2[b, : tl2[b]] for b in range(2)])
    what = "concatenated 1-D targets, reduction='none'"
    check_tensor(sub.call("ctc_loss", lp2, flat, il2, tl2, reduction="none", _what=what),
                 _oracle(lp2, flat, il2, tl2, "none"), fn="ctc_loss", what=what, rtol=1e-4, atol=1e-4,
                 hints=_loss_hints(lp2, flat, il2, tl2, "none"))
    rep = torch.tensor([[3, 3, 3]])
    lp3 = I.log_probs(63, 7, 1)
    what = "target [3, 3, 3] (repeats need blanks between them) in 7 frames, reduction='none'"
    check_tensor(sub.call("ctc_loss", lp3, rep, torch.tensor([7]), torch.tensor([3]), reduction="none", _what=what),
                 _oracle(lp3, rep, torch.tensor([7]), torch.tensor([3]), "none"), fn="ctc_loss", what=what,
                 rtol=1e-4, atol=1e-4, hints=_loss_hints(lp3, rep, torch.tensor([7]), torch.tensor([3]), "none"))


@pytest.mark.points(3)
def test_ctc_loss_gradient(sub):
    """ctc_loss: the gradient with respect to log_probs"""
    lp, targets, il, tl = _batch(71, 10, [10, 8, 6], [3, 2, 2])
    leaf = lp.clone().requires_grad_(True)
    exp = R.ctc_loss(leaf, targets, il, tl, reduction="mean")  # autograd's true d loss / d log_probs
    # (F.ctc_loss's own backward returns the gradient with respect to the logits instead)
    assert torch.allclose(exp.detach(), _oracle(lp, targets, il, tl, "mean"), rtol=1e-5, atol=1e-6)
    exp.backward()
    what = "a batch of 3, reduction='mean'"
    value, grads = sub.call_grad("ctc_loss", lp.clone().requires_grad_(True), targets, il, tl, reduction="mean",
                                 _what=what)
    check_tensor(value, exp.detach(), fn="ctc_loss", what=what, rtol=1e-4, atol=1e-4,
                 hints=_loss_hints(lp, targets, il, tl, "mean"))
    if not grads or grads[0] is None:
        fail(f"ctc_loss({what}): no gradient reached log_probs (did you detach, use .item() or numpy?)")
    if isinstance(grads[0], torch.Tensor) and bool(torch.isnan(grads[0]).any()):
        fail(f"ctc_loss({what}): d loss / d log_probs contains NaN. Hint: {_nan_gradient_cause(sub)}")
    check_tensor(grads[0], leaf.grad, fn="ctc_loss", what=what, name="d loss / d log_probs", rtol=1e-3, atol=1e-4,
                 hints=[(lambda: torch.zeros_like(leaf.grad), "no gradient flowed: keep the computation in torch "
                                                              "(no .item(), .tolist() or numpy inside)")])


def _nan_gradient_cause(sub) -> str:
    """Why the gradient is NaN, told by how the student's ctc_log_alpha behaves on a long input.

    A hand-written log(sum(exp(...))) and torch.logsumexp over states that are all -inf both give NaN
    gradients; only the first also underflows on long inputs, so the 60-frame case tells them apart."""
    lp, target, _ = _underflow_cases()[0]
    try:
        got = sub.call("ctc_log_alpha", lp, target, _what="log_probs of shape (60, 29), a 12-symbol target")
    except CheckFailed:
        got = None
    right = R.ctc_log_alpha(lp, target)
    underflows = isinstance(got, torch.Tensor) and got.shape == right.shape and bool(
        (torch.isinf(got) & torch.isfinite(right)).any())
    if underflows or M.hint_message(got, [(lambda: M.alpha_variant(lp, target, combine="naive"), "naive")]):
        return M.NAIVE_LOGSUMEXP
    return ("torch.logsumexp of values that are ALL -inf (unreachable states) has a NaN gradient: use LOG_ZERO "
            "(a finite stand-in for log 0) inside the recursion")


@pytest.mark.hidden
@pytest.mark.points(1)
def test_ctc_loss_impossible_target(sub):
    """ctc_loss: a target that cannot fit in its frames has loss inf"""
    lp = I.log_probs(81, 3, 2)
    targets = torch.tensor([[1, 1, 2], [4, 5, 0]])  # 1 1 2 needs 4 frames (a blank between the 1s)
    il, tl = torch.tensor([3, 3]), torch.tensor([3, 2])
    what = "targets [[1, 1, 2], [4, 5]] in 3 frames, reduction='none'"
    got = sub.call("ctc_loss", lp, targets, il, tl, reduction="none", _what=what)
    exp = _oracle(lp, targets, il, tl, "none")
    if isinstance(got, torch.Tensor) and got.shape == exp.shape and got.is_floating_point():
        huge = torch.isinf(exp) & torch.isfinite(got) & (got.abs() >= 1e15)
        if bool(huge.any()):
            fail(f"ctc_loss({what}): yours {got.tolist()} / expected {exp.tolist()}. Hint: a target that cannot "
                 "fit has loss inf, but yours is a huge finite number: the finite LOG_ZERO of the recursion "
                 "reached the result. Turn it back into -inf at the end of ctc_log_alpha (alpha <= LOG_ZERO / 2 "
                 "-> -inf), as the stub says")
    check_tensor(got, exp, fn="ctc_loss", what=what, rtol=1e-4, atol=1e-4,
                 hints=[(lambda: torch.where(torch.isinf(exp), torch.zeros_like(exp), exp),
                         "a target that cannot fit in its frames has loss inf (probability 0), as F.ctc_loss "
                         "gives by default: you returned 0 (that is zero_infinity=True, an option the contract "
                         "does not take)")])
