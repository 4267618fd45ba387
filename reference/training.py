"""Training Deep Speech 2 (DS2 sections 3.1-3.3 and 6).

* :func:`train_step` — CTC loss, backward, gradient-norm clipping, one optimiser step; a
  non-finite loss or gradient skips the update instead of poisoning the weights.
* :func:`evaluate` — corpus WER with greedy decoding.
* :func:`fit` — epochs of SortaGrad minibatches with a time budget, a tqdm bar, periodic
  held-out WER and checkpoints; returns the history that the lessons plot.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from .ctc import greedy_decode
from .data import Batch, collate_batch, sortagrad_batches
from .metrics import char_error_rate, word_error_rate

__all__ = ["train_step", "evaluate", "transcribe_batches", "fit", "History", "make_batches"]


def train_step(model, batch, optimizer, max_grad_norm: float = 400.0) -> float:
    """One optimisation step on ``batch``; returns the batch's mean CTC loss (before the step).

    The loss is ``F.ctc_loss(..., reduction='mean', zero_infinity=True)``: each utterance's
    loss divided by its target length, averaged; an utterance too short for its transcript
    contributes 0 instead of ``inf``.  The gradient norm is clipped to ``max_grad_norm``
    (400 here, as deepspeech.pytorch; DS2 clips to keep the recurrence stable).  If the loss
    or the gradient norm is not finite the step is skipped (weights unchanged) and the
    non-finite loss is returned, so the caller can count it.
    """
    model.train()
    optimizer.zero_grad(set_to_none=True)
    log_probs, out_lengths = model(batch.features, batch.feature_lengths)        # (T', B, V), (B,)
    loss = F.ctc_loss(log_probs, batch.targets, out_lengths, batch.target_lengths,
                      blank=0, reduction="mean", zero_infinity=True)
    value = float(loss.detach())
    if not math.isfinite(value):
        optimizer.zero_grad(set_to_none=True)
        return value
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    if not torch.isfinite(norm):
        optimizer.zero_grad(set_to_none=True)
        return value
    optimizer.step()
    return value


@torch.no_grad()
def transcribe_batches(model, batches, encoder) -> tuple[list[str], list[str]]:
    """Greedy transcripts of ``batches`` in eval mode: ``(references, hypotheses)``."""
    was_training = model.training
    model.eval()
    refs, hyps = [], []
    try:
        for batch in batches:
            log_probs, out_lengths = model(batch.features, batch.feature_lengths)
            hyps += greedy_decode(log_probs, encoder, out_lengths)
            refs += list(batch.transcripts)
    finally:
        model.train(was_training)
    return refs, hyps


def evaluate(model, batches, encoder) -> float:
    """Corpus-level WER of greedy decoding over ``batches`` (the model's mode is restored)."""
    refs, hyps = transcribe_batches(model, batches, encoder)
    if not refs:
        raise ValueError("evaluate needs at least one batch")
    return word_error_rate(refs, hyps)


def make_batches(dataset, encoder, batch_size: int, epoch: int = 0, seed: int = 0, n_fft=None) -> list[Batch]:
    """Collate a dataset into SortaGrad minibatches (features are computed once here)."""
    return [collate_batch([dataset[i] for i in idx], encoder, n_fft=n_fft)
            for idx in sortagrad_batches(dataset, batch_size, epoch, seed)]


@dataclass
class History:
    """What happened during :func:`fit`: per step loss, per evaluation WER/CER, timings."""

    step: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    eval_step: list[int] = field(default_factory=list)
    eval_seconds: list[float] = field(default_factory=list)
    eval_wer: list[float] = field(default_factory=list)
    eval_cer: list[float] = field(default_factory=list)
    skipped: int = 0
    position: tuple = (0, 0)        # (epoch, minibatch index within it) to resume from

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict) -> "History":
        h = cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})
        h.position = tuple(h.position)
        return h


def fit(model, train_set: Sequence, encoder, *, valid_set: Sequence | None = None, epochs: int = 10,
        batch_size: int = 16, lr: float = 1e-3, seconds: float | None = None, eval_every: int = 100,
        seed: int = 0, sortagrad: bool = True, max_grad_norm: float = 400.0, optimizer=None,
        progress: bool = True, on_eval: Callable | None = None, n_fft=None, target_wer: float | None = None,
        history: History | None = None, start_epoch: int = 0, start_index: int = 0,
        anneal: float = 0.1, augment: Callable | None = None) -> History:
    """Train ``model`` with SortaGrad minibatches; stop after ``epochs`` or ``seconds`` of training.

    Features are computed once per utterance (spectrograms do not change between epochs);
    minibatch composition is fixed (length buckets), only their order changes per epoch:
    increasing length in epoch 0 (SortaGrad; ``sortagrad=False`` shuffles epoch 0 too),
    random afterwards.  Held-out WER is measured every ``eval_every`` steps and at the end;
    evaluation time is not counted in the ``seconds`` budget.  ``target_wer`` stops early.

    The learning rate is annealed linearly from ``lr`` to ``anneal * lr`` over the budget
    (``seconds`` if given, else all steps of all epochs); DS2 anneals by a constant factor after
    every epoch, which amounts to the same on a budget of few epochs.  ``anneal=1``
    keeps it constant.  With a constant rate the held-out WER of a short run jumps around
    by several points from one evaluation to the next.

    ``augment(batch, generator) -> batch`` (e.g. :class:`~reference.augment.SpecAugment`)
    transforms each training minibatch before its step; the generator is seeded from
    ``(seed, step)``, so a resumed run draws the same masks.

    Resuming: pass the saved ``history`` and the ``(start_epoch, start_index)`` position
    (``on_eval`` receives it as ``hist.position``); the minibatch order of an epoch depends
    only on ``(seed, epoch)``, so training continues exactly where it stopped.
    """
    from tqdm.auto import tqdm

    if isinstance(anneal, bool) or not isinstance(anneal, (int, float)) or not 0.0 <= anneal < math.inf:
        raise ValueError(f"anneal must be a number >= 0 (the final learning rate as a fraction of lr), got {anneal!r}")
    torch.manual_seed(seed)
    optimizer = optimizer or torch.optim.Adam(model.parameters(), lr=lr)
    batches = make_batches(train_set, encoder, batch_size, epoch=0, seed=seed, n_fft=n_fft)
    position = {tuple(idx): i for i, idx in enumerate(sortagrad_batches(train_set, batch_size, 0, seed))}
    valid = make_batches(valid_set, encoder, 64, n_fft=n_fft) if valid_set else None
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    total_steps = epochs * len(batches)

    def set_lr(step_, time_):
        progress = min(1.0, time_ / seconds if seconds else step_ / max(1, total_steps))
        for g, base in zip(optimizer.param_groups, base_lrs):
            g["lr"] = base * (1.0 - (1.0 - anneal) * progress)

    hist = history or History()
    aug_gen = torch.Generator()
    train_time = hist.seconds[-1] if hist.seconds else 0.0
    step = hist.step[-1] if hist.step else 0
    bar = tqdm(total=int(seconds) if seconds else epochs * len(batches), disable=not progress,
               unit="s" if seconds else "step", desc="training", dynamic_ncols=True)

    def run_eval():
        refs, hyps = transcribe_batches(model, valid, encoder)
        hist.eval_step.append(step)
        hist.eval_seconds.append(train_time)
        hist.eval_wer.append(word_error_rate(refs, hyps))
        hist.eval_cer.append(char_error_rate(refs, hyps))
        bar.set_postfix(loss=f"{hist.loss[-1]:.3f}" if hist.loss else "-", wer=f"{hist.eval_wer[-1]:.3f}")
        if on_eval:
            on_eval(hist, model)

    done = False
    for epoch in range(start_epoch, epochs):
        # the minibatch order of this epoch, by the graded rule; without SortaGrad epoch 0 is
        # shuffled too (each epoch takes the random order that the next epoch would get)
        plan = sortagrad_batches(train_set, batch_size, epoch if sortagrad else epoch + 1, seed)
        order = [position[tuple(idx)] for idx in plan]
        first = start_index if epoch == start_epoch else 0
        for pos in range(first, len(order)):
            i = order[pos]
            hist.position = (epoch, pos + 1) if pos + 1 < len(order) else (epoch + 1, 0)
            set_lr(step, train_time)
            t0 = time.perf_counter()
            batch = batches[i]
            if augment is not None:
                batch = augment(batch, aug_gen.manual_seed(seed * 1_000_003 + step))
            loss = train_step(model, batch, optimizer, max_grad_norm)
            dt = time.perf_counter() - t0
            train_time += dt
            step += 1
            if not math.isfinite(loss):
                hist.skipped += 1
            hist.step.append(step)
            hist.loss.append(loss)
            hist.seconds.append(train_time)
            bar.update(dt if seconds else 1)
            if valid and step % eval_every == 0:
                run_eval()
                if target_wer is not None and hist.eval_wer[-1] <= target_wer:
                    done = True
            if seconds and train_time >= seconds:
                done = True
            if done:
                break
        if done:
            break
    if valid and (not hist.eval_step or hist.eval_step[-1] != step):
        run_eval()
    bar.close()
    for g, base in zip(optimizer.param_groups, base_lrs):   # leave the optimizer as it was given
        g["lr"] = base
    return hist
