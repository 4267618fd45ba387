"""CTC against F.ctc_loss (values and gradients, float64) and brute force over all alignments."""
import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from reference import ctc_collapse, ctc_log_alpha, ctc_loss, extend_with_blanks, greedy_decode, CharEncoder


def test_collapse_merges_then_drops_blanks():
    assert ctc_collapse([1, 1, 0, 1]) == [1, 1]
    assert ctc_collapse([0, 0, 8, 8, 0, 5, 5, 5, 0, 12, 12, 0]) == [8, 5, 12]
    assert ctc_collapse([]) == []
    assert ctc_collapse(torch.tensor([3, 3, 3])) == [3]
    assert ctc_collapse([2, 2, 1], blank=2) == [1]


def test_extend_with_blanks():
    assert extend_with_blanks([3, 4]) == [0, 3, 0, 4, 0]
    assert extend_with_blanks([]) == [0]


def test_greedy_decode_respects_lengths():
    enc = CharEncoder()
    T, B = 6, 2
    lp = torch.full((T, B, 29), -10.0)
    path = [[1, 1, 0, 1, 2, 2], [3, 0, 3, 3, 5, 5]]
    for b in range(B):
        for t in range(T):
            lp[t, b, path[b][t]] = 0.0
    assert greedy_decode(lp, enc) == ["aab", "cce"]
    assert greedy_decode(lp, enc, torch.tensor([3, 4])) == ["a", "cc"]


def brute_force_log_p(log_probs, target):
    """log sum over every alignment of length T that collapses to target."""
    T, V = log_probs.shape
    total = -math.inf
    for path in itertools.product(range(V), repeat=T):
        if ctc_collapse(list(path)) == list(target):
            s = sum(log_probs[t, k].item() for t, k in enumerate(path))
            total = max(total, s) + math.log1p(math.exp(-abs(total - s))) if total > -math.inf else s
    return total


@pytest.mark.parametrize("target", [[1], [1, 2], [1, 1], [2, 1, 2], [1, 1, 1]])
def test_log_alpha_and_loss_equal_brute_force(target):
    torch.manual_seed(len(target))
    T, V = 5, 3
    lp = torch.randn(T, V, dtype=torch.float64).log_softmax(-1)
    expected = brute_force_log_p(lp, target)
    alpha = ctc_log_alpha(lp, target)
    assert alpha.shape == (T, 2 * len(target) + 1)
    ours = torch.logsumexp(alpha[-1, -2:], 0).item()
    if expected == -math.inf:
        assert ours == -math.inf
        return
    assert ours == pytest.approx(expected, abs=1e-10)
    loss = ctc_loss(lp.unsqueeze(1), torch.tensor([target]), torch.tensor([T]), torch.tensor([len(target)]), reduction="none")
    assert loss.item() == pytest.approx(-expected, abs=1e-10)


def test_log_alpha_unreachable_states_are_minus_inf():
    lp = torch.randn(4, 5, dtype=torch.float64).log_softmax(-1)
    alpha = ctc_log_alpha(lp, [1, 2, 3])
    assert alpha[0, 2:].eq(-math.inf).all()          # frame 0 reaches only the first blank or first symbol
    assert torch.isfinite(alpha[0, :2]).all()


def random_batch(T=30, B=5, V=7, S=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(T, B, V, dtype=torch.float64, generator=g, requires_grad=True)
    targets = torch.randint(1, V, (B, S), generator=g)
    targets[0, :3] = 2                                # repeats need blanks between them
    input_lengths = torch.randint(T // 2, T + 1, (B,), generator=g)
    input_lengths[0] = T
    target_lengths = torch.randint(1, S + 1, (B,), generator=g)
    return logits, targets, input_lengths, target_lengths


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_loss_and_gradient_equal_torch(reduction):
    logits, targets, il, tl = random_batch()
    ours = ctc_loss(logits.log_softmax(-1), targets, il, tl, reduction=reduction)
    ref = F.ctc_loss(logits.log_softmax(-1), targets, il, tl, reduction=reduction)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)
    w = torch.randn_like(ours)
    g_ours, = torch.autograd.grad((ours * w).sum(), logits)
    g_ref, = torch.autograd.grad((ref * w).sum(), logits)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-8, atol=1e-10)


def test_concatenated_targets_layout():
    logits, targets, il, tl = random_batch(seed=3)
    flat = torch.cat([targets[b, : tl[b]] for b in range(len(tl))])
    torch.testing.assert_close(ctc_loss(logits.log_softmax(-1), flat, il, tl),
                               ctc_loss(logits.log_softmax(-1), targets, il, tl))


def test_gradient_by_finite_differences():
    """The alpha-beta backward against central differences with respect to log-probabilities."""
    torch.manual_seed(0)
    lp = torch.randn(6, 1, 4, dtype=torch.float64).log_softmax(-1).requires_grad_()
    args = (torch.tensor([[1, 2, 2]]), torch.tensor([6]), torch.tensor([3]))
    assert torch.autograd.gradcheck(lambda x: ctc_loss(x, *args, reduction="sum"), (lp,), eps=1e-6, atol=1e-7)


def test_infeasible_target_is_inf_like_torch():
    lp = torch.randn(3, 1, 5, dtype=torch.float64).log_softmax(-1)
    t, il, tl = torch.tensor([[1, 1, 1]]), torch.tensor([3]), torch.tensor([3])     # needs 5 frames
    assert ctc_loss(lp, t, il, tl, reduction="none").item() == math.inf
    assert F.ctc_loss(lp, t, il, tl, reduction="none").item() == math.inf


def test_bad_inputs():
    lp = torch.randn(5, 2, 4).log_softmax(-1)
    with pytest.raises(ValueError, match="3 dimensions"):
        ctc_loss(lp[0], torch.tensor([[1]]), torch.tensor([5]), torch.tensor([1]))
    with pytest.raises(ValueError, match="input_lengths"):
        ctc_loss(lp, torch.tensor([[1], [2]]), torch.tensor([6, 5]), torch.tensor([1, 1]))
    with pytest.raises(ValueError, match=r"targets ids must lie in \[0, 3\]"):
        ctc_loss(lp, torch.tensor([[1], [9]]), torch.tensor([5, 5]), torch.tensor([1, 1]))
    with pytest.raises(ValueError, match="reduction"):
        ctc_loss(lp, torch.tensor([[1], [2]]), torch.tensor([5, 5]), torch.tensor([1, 1]), reduction="avg")
