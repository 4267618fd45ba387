"""Connectionist Temporal Classification (DS2 section 3.1; Graves et al., 2006).

The network emits one distribution over the alphabet per frame.  An *alignment* is one
symbol per frame; it *collapses* to a transcript by merging repeats and then dropping
blanks (``a a _ a`` -> ``aa``).  CTC maximises ``p(y|x) = sum over alignments that
collapse to y of prod_t p(alignment_t | x)``, computed by the forward (alpha) recursion
over the blank-extended target ``[_, y1, _, y2, ..., _]``.

Training uses ``torch.nn.functional.ctc_loss`` for speed; :func:`ctc_loss` here is the
from-scratch version (equal in value and gradient, tested in ``tests/test_ctc.py``).
"""
from __future__ import annotations

from typing import Sequence

import torch

from .validation import check_lengths, check_tensor

__all__ = ["ctc_collapse", "greedy_decode", "extend_with_blanks", "ctc_log_alpha", "ctc_loss"]

# A finite stand-in for log(0): gradients through logsumexp of all -inf are NaN, with this
# they are 0.  Results at or below NEG_HALF are reported as -inf.
NEG = -1e30
NEG_HALF = -5e29


def ctc_collapse(ids, blank: int = 0) -> list[int]:
    """Merge consecutive repeats, then drop blanks: ``[1, 1, 0, 1, 2, 2] -> [1, 1, 2]``."""
    if isinstance(ids, torch.Tensor):
        if ids.dim() != 1:
            raise ValueError(f"ctc_collapse expects a 1-D sequence of ids, got shape {tuple(ids.shape)}")
        ids = ids.tolist()
    out, prev = [], None
    for i in ids:
        i = int(i)
        if i != prev and i != blank:
            out.append(i)
        prev = i
    return out


def greedy_decode(log_probs: torch.Tensor, encoder, lengths=None) -> list[str]:
    """Best-path decoding: the most likely symbol per frame, collapsed (no language model).

    Args:
        log_probs: ``(T, B, V)`` per-frame (log-)probabilities.
        encoder: a :class:`~reference.text.CharEncoder` (``V == encoder.vocab_size``).
        lengths: ``(B,)`` valid frames per item; ``None`` means all ``T``.

    Returns:
        ``B`` strings.
    """
    check_tensor(log_probs, "log_probs", 3, floating=True)
    T, B, V = log_probs.shape
    if V != encoder.vocab_size:
        raise ValueError(f"log_probs has {V} symbols per frame, the encoder has {encoder.vocab_size}")
    lengths = torch.full((B,), T, dtype=torch.long) if lengths is None else check_lengths(lengths, B, T)
    best = log_probs.argmax(dim=-1).transpose(0, 1).cpu()  # (B, T)
    return [encoder.ctc_decode(best[b, : int(lengths[b])]) for b in range(B)]


def extend_with_blanks(target, blank: int = 0) -> list[int]:
    """``[y1, ..., yU] -> [blank, y1, blank, y2, ..., yU, blank]`` (length ``2U + 1``)."""
    if isinstance(target, torch.Tensor):
        target = target.tolist()
    out = [blank]
    for y in target:
        out += [int(y), blank]
    return out


def _padded_targets(targets, target_lengths: torch.Tensor) -> torch.Tensor:
    """Targets as ``(B, S)``, accepting the padded or the concatenated 1-D layout."""
    if targets.dim() == 2:
        return targets.long()
    B = target_lengths.numel()
    S = int(target_lengths.max()) if B else 0
    padded = targets.new_zeros(B, max(S, 1), dtype=torch.long)
    offsets = torch.cumsum(target_lengths, 0) - target_lengths
    for b in range(B):
        n = int(target_lengths[b])
        padded[b, :n] = targets[int(offsets[b]) : int(offsets[b]) + n]
    return padded


def _transitions(ext: torch.Tensor) -> torch.Tensor:
    """``(B, L)`` mask of states that may NOT be entered by skipping from ``s - 2``.

    A skip jumps over a blank; it is only allowed onto a symbol that differs from the one two
    back (otherwise ``a a`` would collapse to ``a``), and never onto a blank.
    """
    same = torch.zeros_like(ext, dtype=torch.bool)
    same[:, 2:] = ext[:, 2:] == ext[:, :-2]
    same[:, 0::2] = True                                                   # even positions are blanks
    return same


def _alpha_recursion(log_probs, ext, ext_lengths, input_lengths):
    """Batched log-space forward recursion.

    Args:
        log_probs: ``(T, B, V)``; ext: ``(B, L)`` blank-extended targets;
        ext_lengths: ``(B,)`` = 2U+1; input_lengths: ``(B,)``.

    Returns:
        ``(T, B, L)`` log alphas, ``NEG`` where unreachable.  Rows ``t >= input_lengths[b]`` are
        not meaningful (callers read each item at its own last frame).
    """
    T, B, _ = log_probs.shape
    L = ext.shape[1]
    valid_s = torch.arange(L).unsqueeze(0) < ext_lengths.unsqueeze(1)     # (B, L)
    emit = log_probs.gather(2, ext.unsqueeze(0).expand(T, B, L))           # (T, B, L): log y_t(ext_s)
    emit = emit.clamp_min(NEG).masked_fill(~valid_s, NEG)
    # 0 where the skip s-2 -> s is allowed, NEG where it is not
    skip_penalty = torch.zeros(B, L, dtype=log_probs.dtype).masked_fill(_transitions(ext), NEG)

    alphas = torch.empty(T, B, L, dtype=log_probs.dtype)
    alphas[0] = NEG
    alphas[0, :, :2] = emit[0, :, :2]                                      # start in the first blank or first symbol
    prev = torch.full((B, L + 2), NEG, dtype=log_probs.dtype)              # two NEG columns for s-1, s-2
    for t in range(1, T):
        prev[:, 2:] = alphas[t - 1]
        stay, step, skip = prev[:, 2:], prev[:, 1:-1], prev[:, :-2] + skip_penalty
        alphas[t] = torch.logaddexp(torch.logaddexp(stay, step), skip) + emit[t]
    return alphas


def _beta_recursion(emit, ext, ext_lengths, input_lengths):
    """Batched log-space backward recursion, the mirror image of :func:`_alpha_recursion`.

    ``beta[t, b, s] = log p(frames t+1.. of item b | state s at frame t)`` (no emission at t),
    so ``alpha + beta`` is the log-probability of all alignments through ``(t, s)``.
    ``emit`` is ``(T, B, L)``; returns ``(T, B, L)``, ``NEG`` at ``t >= input_lengths[b]``.
    """
    T, B, L = emit.shape
    no_skip_from = torch.ones_like(ext, dtype=torch.bool)                 # s -> s+2 allowed?
    no_skip_from[:, :-2] = _transitions(ext)[:, 2:]
    skip_penalty = torch.zeros(B, L, dtype=emit.dtype).masked_fill(no_skip_from, NEG)
    s_idx = torch.arange(L).unsqueeze(0)
    final = (s_idx == (ext_lengths - 1).unsqueeze(1)) | (s_idx == (ext_lengths - 2).unsqueeze(1))
    init = torch.zeros(B, L, dtype=emit.dtype).masked_fill(~final, NEG)   # 0 in the two final states
    t_idx = torch.arange(T).unsqueeze(1)                                   # (T, 1)
    betas = torch.full((T, B, L), NEG, dtype=emit.dtype)
    nxt = torch.full((B, L + 2), NEG, dtype=emit.dtype)                   # two NEG columns for s+1, s+2
    is_last = t_idx == (input_lengths - 1).unsqueeze(0)                     # (T, B)
    before_last = t_idx < (input_lengths - 1).unsqueeze(0)                  # (T, B)
    for t in range(T - 1, -1, -1):
        if is_last[t].any():
            betas[t] = torch.where(is_last[t].unsqueeze(1), init, betas[t])
        if t < T - 1 and before_last[t].any():
            nxt[:, :-2] = betas[t + 1] + emit[t + 1]                       # enter a state at t+1
            stay, step, skip = nxt[:, :-2], nxt[:, 1:-1], nxt[:, 2:] + skip_penalty
            rec = torch.logaddexp(torch.logaddexp(stay, step), skip)
            betas[t] = torch.where(before_last[t].unsqueeze(1), rec, betas[t])
    return betas


class _CTCNegLogLikelihood(torch.autograd.Function):
    """``-log p(y|x)`` per item, with the gradient from the alpha-beta posteriors.

    For a log-probability input the gradient is
    ``d(-log p) / d log y_t(k) = -sum_{s: ext_s = k} exp(alpha_t(s) + beta_t(s) - log p)``:
    minus the posterior probability that frame ``t`` emits ``k`` (Graves et al., 2006, eq. 16).
    Computing it from two recursions is about 3x faster than letting autograd unroll one.
    """

    @staticmethod
    def forward(ctx, log_probs, ext, ext_lengths, input_lengths):
        with torch.no_grad():
            alpha = _alpha_recursion(log_probs, ext, ext_lengths, input_lengths)   # (T, B, L)
            B = ext.shape[0]
            last = alpha[(input_lengths - 1).clamp_min(0), torch.arange(B)]         # (B, L)
            end = last.gather(1, (ext_lengths - 1).unsqueeze(1))
            end2 = last.gather(1, (ext_lengths - 2).clamp_min(0).unsqueeze(1))
            end2 = torch.where((ext_lengths > 1).unsqueeze(1), end2, torch.full_like(end2, NEG))
            log_p = torch.logsumexp(torch.cat([end, end2], dim=1), dim=1)         # (B,)
            # no frames at all: only the empty target is possible, with probability 1
            empty = input_lengths == 0
            log_p = torch.where(empty & (ext_lengths == 1), torch.zeros_like(log_p), log_p)
            log_p = torch.where(empty & (ext_lengths > 1), torch.full_like(log_p, NEG), log_p)
        ctx.save_for_backward(log_probs, ext, ext_lengths, input_lengths, alpha, log_p)
        return torch.where(log_p <= NEG_HALF, torch.full_like(log_p, float("inf")), -log_p)

    @staticmethod
    def backward(ctx, grad_nll):
        log_probs, ext, ext_lengths, input_lengths, alpha, log_p = ctx.saved_tensors
        T, B, V = log_probs.shape
        L = ext.shape[1]
        index = ext.unsqueeze(0).expand(T, B, L)
        emit = log_probs.detach().gather(2, index).clamp_min(NEG)
        beta = _beta_recursion(emit, ext, ext_lengths, input_lengths)
        feasible = log_p > NEG_HALF                                                # (B,)
        posterior = torch.exp((alpha + beta - log_p.unsqueeze(1)).clamp_max(0.0))  # (T, B, L)
        posterior = posterior * feasible.to(posterior.dtype).unsqueeze(1)          # infeasible items: no gradient
        grad = torch.zeros_like(log_probs).scatter_add_(2, index, posterior)       # (T, B, V)
        grad = -grad * grad_nll.unsqueeze(0).unsqueeze(2)
        return grad, None, None, None


def ctc_log_alpha(log_probs: torch.Tensor, target, blank: int = 0) -> torch.Tensor:
    """Log forward variables of one utterance.

    ``alpha[t, s] = log sum over partial alignments of frames 0..t that end in state s of
    the extended target`` (Graves et al., 2006, eq. 5-8, in log space).

    Args:
        log_probs: ``(T, V)`` log-probabilities of one utterance.
        target: ``U`` symbol ids (list or 1-D tensor, no blanks).
        blank: id of the blank.

    Returns:
        ``(T, 2U + 1)``; ``-inf`` where a state is unreachable.
    """
    check_tensor(log_probs, "log_probs", 2, floating=True)
    ext = torch.tensor(extend_with_blanks(target, blank), dtype=torch.long).unsqueeze(0)   # (1, L)
    _check_ids(ext, log_probs.shape[1], "target")
    alpha = _alpha_recursion(log_probs.unsqueeze(1), ext, torch.tensor([ext.shape[1]]),
                             torch.tensor([log_probs.shape[0]]))[:, 0]
    return alpha.masked_fill(alpha <= NEG_HALF, float("-inf"))


def _check_ids(ids: torch.Tensor, V: int, name: str) -> None:
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= V):
        raise ValueError(f"{name} ids must lie in [0, {V - 1}], got min {int(ids.min())}, max {int(ids.max())}")


def ctc_loss(log_probs, targets, input_lengths, target_lengths, blank: int = 0, reduction: str = "mean"):
    """CTC negative log-likelihood with the semantics of ``torch.nn.functional.ctc_loss``.

    Args:
        log_probs: ``(T, B, V)`` log-softmax outputs.
        targets: ``(B, S)`` padded or ``(sum(target_lengths),)`` concatenated symbol ids.
        input_lengths: ``(B,)`` valid frames; target_lengths: ``(B,)`` symbols per target.
        reduction: ``'none'`` -> ``(B,)``; ``'sum'``; ``'mean'`` (each loss divided by its target
            length, then averaged over the batch).

    Returns:
        The loss; ``inf`` for an item whose target cannot fit in its frames.  Differentiable.
    """
    check_tensor(log_probs, "log_probs", 3, floating=True)
    if reduction not in ("none", "sum", "mean"):
        raise ValueError(f"reduction must be 'none', 'sum' or 'mean', got {reduction!r}")
    T, B, V = log_probs.shape
    input_lengths = check_lengths(input_lengths, B, T, "input_lengths")
    check_tensor(targets, "targets", (1, 2), floating=False)
    max_s = targets.shape[1] if targets.dim() == 2 else targets.numel()
    target_lengths = check_lengths(target_lengths, B, max_s, "target_lengths")
    targets = _padded_targets(targets, target_lengths)
    _check_ids(targets, V, "targets")

    # blank-extended targets (B, L): blanks at even positions, symbols at odd positions
    S = targets.shape[1]
    ext = torch.full((B, 2 * S + 1), blank, dtype=torch.long)
    ext[:, 1::2] = targets
    nll = _CTCNegLogLikelihood.apply(log_probs, ext, 2 * target_lengths + 1, input_lengths)   # (B,)
    if reduction == "none":
        return nll
    if reduction == "sum":
        return nll.sum()
    return (nll / target_lengths.clamp_min(1).to(nll.dtype)).mean()
