"""Independent ex04: the alpha recursion as a log-space transition matrix (S x S), one matmul-like step per frame."""
import torch

BIG_NEG = -1e30


def extend_with_blanks(target, blank=0):
    t = target.tolist() if isinstance(target, torch.Tensor) else list(target)
    ext = [blank] * (2 * len(t) + 1)
    ext[1::2] = [int(y) for y in t]
    return ext


def _log_transitions(ext, blank, dtype):
    """logA[i, j] = 0 when state j can follow state i, else BIG_NEG."""
    S = len(ext)
    A = torch.full((S, S), BIG_NEG, dtype=dtype)
    for j in range(S):
        A[j, j] = 0.0
        if j >= 1:
            A[j - 1, j] = 0.0
        if j >= 2 and ext[j] != blank and ext[j] != ext[j - 2]:
            A[j - 2, j] = 0.0
    return A


def _alphas(log_probs, ext, blank):
    """(T, S) finite log alphas (BIG_NEG-ish where unreachable)."""
    T, S = log_probs.shape[0], len(ext)
    emit = log_probs[:, ext]
    A = _log_transitions(ext, blank, log_probs.dtype)
    start = torch.full((S,), BIG_NEG, dtype=log_probs.dtype)
    start[: min(2, S)] = 0.0
    rows = [start + emit[0]]
    for t in range(1, T):
        rows.append(torch.logsumexp(rows[-1].unsqueeze(1) + A, dim=0) + emit[t])
    return torch.stack(rows)


def ctc_log_alpha(log_probs, target, blank=0):
    ext = extend_with_blanks(target, blank)
    if log_probs.shape[0] == 0:
        return log_probs.new_zeros(0, len(ext))
    a = _alphas(log_probs, ext, blank)
    return torch.where(a < BIG_NEG / 2, torch.full_like(a, float("-inf")), a)


def ctc_loss(log_probs, targets, input_lengths, target_lengths, blank=0, reduction="mean"):
    T, B, _ = log_probs.shape
    il = torch.as_tensor(input_lengths).tolist()
    tl = torch.as_tensor(target_lengths).tolist()
    targets = torch.as_tensor(targets)
    offset, losses = 0, []
    for b in range(B):
        if targets.dim() == 2:
            y = targets[b, : tl[b]].tolist()
        else:
            y = targets[offset: offset + tl[b]].tolist()
            offset += tl[b]
        ext = extend_with_blanks(y, blank)
        if il[b] == 0:
            losses.append(log_probs.new_tensor(float("inf")))
            continue
        a = _alphas(log_probs[: il[b], b], ext, blank)
        ll = torch.logsumexp(a[-1, -2:], 0) if y else a[-1, -1]
        losses.append(torch.where(ll < BIG_NEG / 2, ll.new_tensor(float("inf")), -ll))
    loss = torch.stack(losses)
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    return (loss / torch.as_tensor(tl, dtype=loss.dtype).clamp(min=1)).mean()
