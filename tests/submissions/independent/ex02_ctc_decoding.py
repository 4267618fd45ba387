"""Independent ex02: collapse with itertools.groupby."""
import itertools

import torch


def ctc_collapse(ids, blank=0):
    if isinstance(ids, torch.Tensor):
        ids = ids.tolist()
    return [int(k) for k, _ in itertools.groupby(ids) if int(k) != blank]


def greedy_decode(log_probs, encoder, lengths=None):
    T, B, _ = log_probs.shape
    best = log_probs.max(dim=2).indices          # (T, B)
    lens = [T] * B if lengths is None else [int(n) for n in torch.as_tensor(lengths).tolist()]
    return [encoder.decode(ctc_collapse(best[: lens[b], b].tolist(), encoder.blank_idx)) for b in range(B)]
