"""Seeded inputs for the checks (grader side only).  Every function takes its own seed."""
from __future__ import annotations

import os
import sys

import torch

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _ROOT not in sys.path:  # the oracle: the repository's reference/, imported in the grader only
    sys.path.append(_ROOT)

import reference as R  # noqa: E402,F401


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def audio(seed: int, n: int) -> torch.Tensor:
    """``n`` samples of noise plus two tones, in [-1, 1], float32."""
    g = gen(seed)
    t = torch.arange(n, dtype=torch.float32) / 16000
    f1, f2 = 200 + 800 * torch.rand(1, generator=g).item(), 1000 + 3000 * torch.rand(1, generator=g).item()
    x = 0.4 * torch.sin(2 * torch.pi * f1 * t) + 0.2 * torch.sin(2 * torch.pi * f2 * t)
    return (x + 0.1 * torch.randn(n, generator=g)).clamp(-1, 1)


def paths(seed: int, T: int, B: int, symbols=(0, 1, 2, 5, 27), p_repeat: float = 0.5) -> torch.Tensor:
    """``(T, B)`` frame-level paths with runs (repeats) and blanks."""
    g = gen(seed)
    out = torch.empty(T, B, dtype=torch.long)
    sym = torch.tensor(symbols)
    for b in range(B):
        cur = int(sym[torch.randint(len(symbols), (1,), generator=g)])
        for t in range(T):
            if torch.rand(1, generator=g).item() > p_repeat:
                cur = int(sym[torch.randint(len(symbols), (1,), generator=g)])
            out[t, b] = cur
    return out


def peaked_log_probs(path: torch.Tensor, seed: int, V: int = 29, peak: float = 6.0) -> torch.Tensor:
    """Log-softmax posteriogram ``(T, B, V)`` whose argmax follows ``path`` ``(T, B)``."""
    g = gen(seed)
    logits = torch.randn(*path.shape, V, generator=g)
    logits.scatter_add_(-1, path.unsqueeze(-1), torch.full(path.shape + (1,), peak))
    return logits.log_softmax(-1)


def log_probs(seed: int, T: int, B: int, V: int = 29, scale: float = 1.0, dtype=torch.float32) -> torch.Tensor:
    g = gen(seed)
    return (scale * torch.randn(T, B, V, generator=g, dtype=torch.float64)).log_softmax(-1).to(dtype)


def gru_weights(seed: int, I: int, H: int, bias: bool = True) -> tuple:
    g = gen(seed)
    k = H ** -0.5
    w = [(torch.rand(3 * H, I, generator=g) * 2 - 1) * k, (torch.rand(3 * H, H, generator=g) * 2 - 1) * k]
    if bias:
        w += [(torch.rand(3 * H, generator=g) * 2 - 1) * k, (torch.rand(3 * H, generator=g) * 2 - 1) * k]
    return tuple(w)


def padded_sequences(seed: int, T: int, B: int, H: int, lengths, garbage: float = 3.0) -> torch.Tensor:
    """``(T, B, H)`` with non-zero garbage in the padded frames (so using padding shows)."""
    g = gen(seed)
    x = torch.randn(T, B, H, generator=g)
    for b, n in enumerate(lengths):
        x[n:, b] = garbage + torch.randn(T - n, H, generator=g)
    return x
