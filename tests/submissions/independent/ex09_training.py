"""Independent ex09: the loss by hand-reduced F.ctc_loss(reduction='none'), WER by a two-row DP."""
import math

import torch
import torch.nn.functional as F


def train_step(model, batch, optimizer, max_grad_norm=400.0):
    model.train()
    for p in model.parameters():
        p.grad = None
    log_probs, out_lengths = model(batch.features, batch.feature_lengths)
    per_item = F.ctc_loss(log_probs, batch.targets, out_lengths, batch.target_lengths, blank=0, reduction="none",
                          zero_infinity=True)
    loss = (per_item / batch.target_lengths.to(per_item.dtype).clamp(min=1)).mean()
    value = loss.item()
    if not math.isfinite(value):
        optimizer.zero_grad()
        return value
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    if not math.isfinite(float(norm)):
        optimizer.zero_grad()
        return value
    optimizer.step()
    return value


def _distance(a, b):
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        diag, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            diag, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diag + (x != y))
    return row[-1]


def evaluate(model, batches, encoder):
    was = model.training
    model.eval()
    edits = words = 0
    try:
        with torch.no_grad():
            for batch in batches:
                log_probs, out_lengths = model(batch.features, batch.feature_lengths)
                best = log_probs.argmax(-1)
                for b, ref in enumerate(batch.transcripts):
                    path = best[: int(out_lengths[b]), b].tolist()
                    ids = [c for k, c in enumerate(path) if c != encoder.blank_idx and (k == 0 or path[k - 1] != c)]
                    hyp = encoder.decode(ids)
                    edits += _distance(ref.split(), hyp.split())
                    words += len(ref.split())
    finally:
        model.train(was)
    return edits / words
