"""Training Deep Speech 2 (DS2 sections 3.1-3.3 and 6).

* :func:`train_step` — CTC loss, backward, gradient-norm clipping, one optimiser step; a
  non-finite loss or gradient skips the update instead of poisoning the weights.
* :func:`evaluate` — corpus WER with greedy decoding.
* :func:`fit` — epochs of SortaGrad minibatches with a time budget, a tqdm bar, periodic
  held-out WER and checkpoints; returns the history that the lessons plot.

The paper's recipe (DS2 section 6): SGD with Nesterov momentum 0.99, minibatches of 512
utterances, the gradient norm clipped to 400, a learning rate annealed by a constant factor
after every epoch, on thousands of hours and many GPUs.  The defaults here are for minutes on
a laptop CPU: Adam (forgiving about the learning rate), minibatches of 16-32, a linear anneal
over the time budget; the clipping threshold of 400 is the paper's.

Injection points (lessons 09-11 train with the student's own pieces): ``train_step(...,
ctc_loss=...)`` computes the loss with any implementation of the ``ctc_loss`` contract, and
``fit(..., ctc_loss=, step_fn=, plan=, collate=)`` takes a CTC loss, a training step, a SortaGrad
batch planner and a collate function of the graded contracts.

Beyond one CPU process: ``fit(..., device=, amp=)`` trains on a GPU and in mixed precision
(:mod:`reference.devices`); started by ``torchrun``, each rank trains on its share of every
minibatch with DistributedDataParallel and synchronised BatchNorm (:mod:`reference.distributed`);
``workers=`` and ``feature_cache=`` load minibatches in DataLoader workers (:mod:`reference.loading`).
"""
from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from . import distributed
from .ctc import greedy_decode
from .data import Batch, collate_batch, sortagrad_batches
from .devices import autocast
from .loading import BatchLoader
from .metrics import char_error_rate, word_error_rate

__all__ = ["train_step", "evaluate", "transcribe_batches", "fit", "History", "make_batches", "torch_style_ctc_loss"]


def _min_frames(targets: torch.Tensor, target_lengths: torch.Tensor) -> torch.Tensor:
    """``(B,)`` fewest frames that can carry each target: its symbols plus one blank per repeat."""
    out = []
    for b, n in enumerate(target_lengths.tolist()):
        y = targets[b, :n] if targets.dim() == 2 else targets[int(target_lengths[:b].sum()):][:n]
        out.append(n + int((y[1:] == y[:-1]).sum()))
    return torch.tensor(out, dtype=torch.long)


def torch_style_ctc_loss(ctc_loss: Callable) -> Callable:
    """``F.ctc_loss``'s signature (with ``zero_infinity``) around any implementation of the ``ctc_loss`` contract.

    The contract (``ctc_loss(log_probs, targets, input_lengths, target_lengths, blank=0,
    reduction='mean')``, exercise 04) has no ``zero_infinity``; here an utterance too short for its
    target (fewer frames than symbols plus repeats) is left out of the call and counts as a loss of
    0 with no gradient, exactly what ``zero_infinity=True`` does, without ever differentiating
    through an infinite loss.
    """
    def loss_fn(log_probs, targets, input_lengths, target_lengths, blank=0, reduction="mean", zero_infinity=False):
        if not zero_infinity:
            return ctc_loss(log_probs, targets, input_lengths, target_lengths, blank=blank, reduction=reduction)
        if reduction not in ("none", "sum", "mean"):
            raise ValueError(f"reduction must be 'none', 'sum' or 'mean', got {reduction!r}")
        input_lengths = torch.as_tensor(input_lengths).long().cpu()
        target_lengths = torch.as_tensor(target_lengths).long().cpu()
        feasible = (input_lengths >= _min_frames(targets.cpu(), target_lengths)).nonzero().flatten()
        losses = log_probs.new_zeros(log_probs.shape[1]) + 0.0 * log_probs.sum()   # (B,), zero with a graph
        if len(feasible):
            if targets.dim() == 2:
                sub_targets = targets[feasible.to(targets.device)]
            else:
                starts = torch.cumsum(target_lengths, 0) - target_lengths
                sub_targets = torch.cat([targets[int(starts[b]): int(starts[b] + target_lengths[b])]
                                         for b in feasible.tolist()])
            sub = ctc_loss(log_probs[:, feasible.to(log_probs.device)], sub_targets, input_lengths[feasible],
                           target_lengths[feasible], blank=blank, reduction="none")               # (B_feasible,)
            losses = losses.index_put((feasible.to(log_probs.device),), sub.to(losses.dtype), accumulate=True)
        if reduction == "none":
            return losses
        if reduction == "sum":
            return losses.sum()
        return (losses / target_lengths.clamp_min(1).to(losses.device, losses.dtype)).mean()

    loss_fn.__name__ = f"torch_style_{getattr(ctc_loss, '__name__', 'ctc_loss')}"
    return loss_fn


def train_step(model, batch, optimizer, max_grad_norm: float = 400.0, ctc_loss: Callable | None = None, *,
               amp=None, global_size: int | None = None) -> float:
    """One optimisation step on ``batch``; returns the batch's mean CTC loss (before the step).

    The loss is ``F.ctc_loss(..., reduction='mean', zero_infinity=True)``: each utterance's
    loss divided by its target length, averaged; an utterance too short for its transcript
    contributes 0 instead of ``inf``.  ``ctc_loss``: another implementation of the ``ctc_loss``
    contract to compute it with (the student's, in lessons 09-11; see :func:`torch_style_ctc_loss`).
    The gradient norm is clipped to ``max_grad_norm``: 400, the paper's threshold (DS2 section 6);
    recurrent networks occasionally produce gradient spikes, and one can wreck the weights.  If
    the loss or the gradient norm is not finite the step is skipped (weights unchanged) and the
    non-finite loss is returned, so the caller can count it.

    ``amp``: a :class:`reference.devices.Amp`: the forward pass under autocast, the CTC loss in
    float32; with float16, loss scaling (its ``GradScaler`` skips a step whose gradients overflow and
    lowers the scale).  ``global_size``: in a distributed run, ``batch`` is this rank's share of a
    minibatch of ``global_size`` utterances; the loss and the returned value are the whole
    minibatch's (:func:`reference.distributed.global_loss`).
    """
    loss_fn = F.ctc_loss if ctc_loss is None else torch_style_ctc_loss(ctc_loss)
    scaler = amp.scaler if amp is not None else None
    model.train()
    optimizer.zero_grad(set_to_none=True)
    with autocast(amp):
        log_probs, out_lengths = model(batch.features, batch.feature_lengths)    # (T', B, V), (B,)
    if log_probs.dtype in (torch.float16, torch.bfloat16):   # the CTC loss in float32 (no half-precision kernel)
        log_probs = log_probs.float()
    loss = loss_fn(log_probs, batch.targets, out_lengths, batch.target_lengths,
                   blank=0, reduction="mean", zero_infinity=True)
    if global_size is None:
        value = float(loss.detach())
    else:
        loss, value = distributed.global_loss(loss, len(batch), global_size)
    if not math.isfinite(value):
        optimizer.zero_grad(set_to_none=True)
        return value
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)                     # clip the true gradients
    else:
        loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    if scaler is not None:
        scaler.step(optimizer)                         # skipped if a gradient overflowed
        scaler.update()
        return value
    if not torch.isfinite(norm):
        optimizer.zero_grad(set_to_none=True)
        return value
    optimizer.step()
    return value


def model_device(model) -> torch.device:
    """The device of ``model``'s first parameter or buffer; the CPU for a model with neither."""
    first = next(itertools.chain(model.parameters(), model.buffers()), None)
    return first.device if first is not None else torch.device("cpu")


def on_device(batch, device):
    """``batch`` with its tensors on ``device``: itself when they are there already (a collate function of
    the ``collate_batch`` contract, the student's, may return its own batch type, without ``.to``)."""
    return batch if batch.features.device == torch.device(device) else batch.to(device)


@torch.no_grad()
def transcribe_batches(model, batches, encoder) -> tuple[list[str], list[str]]:
    """Greedy transcripts of ``batches`` in eval mode, on the model's device: ``(references, hypotheses)``."""
    was_training = model.training
    device = model_device(model)
    model.eval()
    refs, hyps = [], []
    try:
        for batch in batches:
            log_probs, out_lengths = model(batch.features.to(device), batch.feature_lengths.to(device))
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


def make_batches(dataset, encoder, batch_size: int, epoch: int = 0, seed: int = 0, n_fft=None,
                 plan: Callable | None = None, collate: Callable | None = None) -> list[Batch]:
    """Collate a dataset into SortaGrad minibatches (features are computed once here).

    ``plan`` and ``collate``: implementations of the ``sortagrad_batches`` and ``collate_batch``
    contracts to use instead of the reference's (the student's, in lessons 09-11).
    """
    plan, collate = plan or sortagrad_batches, collate or collate_batch
    return [collate([dataset[i] for i in idx], encoder, n_fft=n_fft) for idx in plan(dataset, batch_size, epoch, seed)]


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
        anneal: float = 0.1, augment: Callable | None = None, ctc_loss: Callable | None = None,
        step_fn: Callable | None = None, plan: Callable | None = None, collate: Callable | None = None,
        max_steps: int | None = None, device=None, amp=None, workers: int = 0, feature_cache=None) -> History:
    """Train ``model`` with SortaGrad minibatches; stop after ``epochs``, ``max_steps`` or ``seconds`` of training.

    Features are computed once per utterance (spectrograms do not change between epochs);
    minibatch composition is fixed (length buckets), only their order changes per epoch:
    increasing length in epoch 0 (SortaGrad; ``sortagrad=False`` shuffles epoch 0 too),
    random afterwards.  Held-out WER is measured every ``eval_every`` steps and at the end;
    evaluation time is not counted in the ``seconds`` budget.  ``target_wer`` stops early.

    ``max_steps`` stops after that many steps (counted from the start, a resumed run included): a
    run that gives the same numbers on every machine, unlike a time budget.

    The learning rate is annealed linearly from ``lr`` to ``anneal * lr`` over the budget
    (``seconds`` if given, else ``max_steps``, else all steps of all epochs); DS2 anneals by a constant factor after
    every epoch, which amounts to the same on a budget of few epochs.  ``anneal=1``
    keeps it constant.  With a constant rate the held-out WER of a short run jumps around
    by several points from one evaluation to the next.

    ``augment(batch, generator) -> batch`` (e.g. :class:`~reference.augment.SpecAugment`)
    transforms each training minibatch before its step; the generator is seeded from
    ``(seed, step)``, so a resumed run draws the same masks.

    Resuming: pass the saved ``history`` and the ``(start_epoch, start_index)`` position
    (``on_eval`` receives it as ``hist.position``); the minibatch order of an epoch depends
    only on ``(seed, epoch)``, so training continues exactly where it stopped.

    Other implementations of the graded pieces (the student's own, in lessons 09-11), each
    ``None`` for the reference's: ``ctc_loss`` (the ``ctc_loss`` contract, used by the reference's
    :func:`train_step`), ``step_fn`` (the ``train_step`` contract ``step_fn(model, batch, optimizer,
    max_grad_norm) -> float``; it computes its own loss, so it cannot be combined with
    ``ctc_loss``: wrap the two yourself), ``plan`` (the ``sortagrad_batches`` contract) and
    ``collate`` (the ``collate_batch`` contract, for the training minibatches and the held-out set).

    Scaling out: ``device`` (default: where the model is) trains there, minibatches are moved to
    it step by step; ``amp`` (a :class:`reference.devices.Amp`) runs the forward pass in mixed
    precision; ``workers`` / ``feature_cache`` build minibatches in DataLoader worker processes
    from spectrograms cached on disk (:class:`reference.loading.BatchLoader`).  When
    ``torch.distributed`` is initialised with several processes (``torchrun``), each rank trains
    on its share of every global minibatch inside DistributedDataParallel with BatchNorm
    synchronised over all ranks' valid frames; every rank runs the same steps, agrees on the
    clock and on the held-out WER (evaluation is shared out too), and only rank 0 shows the
    progress bar and calls ``on_eval`` (which gets the unwrapped model).
    """
    from tqdm.auto import tqdm

    if isinstance(anneal, bool) or not isinstance(anneal, (int, float)) or not 0.0 <= anneal < math.inf:
        raise ValueError(f"anneal must be a number >= 0 (the final learning rate as a fraction of lr), got {anneal!r}")
    if max_steps is not None and (isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1):
        raise ValueError(f"max_steps must be an int >= 1 (or None for no step limit), got {max_steps!r}")
    if step_fn is not None and ctc_loss is not None:
        raise ValueError("fit got both step_fn= and ctc_loss=: a training step computes its own loss; pass a step_fn "
                         "that uses the loss you want, or ctc_loss= alone (for the reference's train_step)")
    for name, fn in (("ctc_loss", ctc_loss), ("step_fn", step_fn), ("plan", plan), ("collate", collate)):
        if fn is not None and not callable(fn):
            raise ValueError(f"{name} must be a function (or None for the reference's), got {fn!r}")
    rank, world = distributed.rank(), distributed.world_size()
    if step_fn is not None and (amp is not None or world > 1):
        raise ValueError("step_fn= cannot run with amp= or on several processes: the reference's train_step does "
                         "the mixed precision and weighs each rank's share of the minibatch")
    plan = plan or sortagrad_batches
    torch.manual_seed(seed)
    device = torch.device(device) if device is not None else model_device(model)
    model.to(device)
    net = distributed.wrap(model, device)          # DistributedDataParallel on several ranks, else model itself
    optimizer = optimizer or torch.optim.Adam(model.parameters(), lr=lr)
    # global minibatches: the same on every rank; each rank loads and trains on its share of each
    global_batches = [idx for idx in plan(train_set, batch_size, 0, seed) if len(idx) >= world]
    position = {tuple(idx): i for i, idx in enumerate(global_batches)}
    loader = BatchLoader(train_set, encoder, [distributed.share(idx) for idx in global_batches], n_fft=n_fft,
                         collate=collate, workers=workers, feature_cache=feature_cache)
    valid = None
    if valid_set:                                  # each rank transcribes every world-th held-out utterance
        mine = [valid_set[i] for i in range(rank, len(valid_set), world)]
        valid = make_batches(mine, encoder, 64, n_fft=n_fft, collate=collate) if mine else []
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    total_steps = min(epochs * len(global_batches), max_steps or math.inf)

    def set_lr(step_, time_):
        progress = min(1.0, time_ / seconds if seconds else step_ / max(1, total_steps))
        for g, base in zip(optimizer.param_groups, base_lrs):
            g["lr"] = base * (1.0 - (1.0 - anneal) * progress)

    def step_on(batch, n_global):
        if step_fn is not None:
            return step_fn(net, batch, optimizer, max_grad_norm)
        return train_step(net, batch, optimizer, max_grad_norm, ctc_loss=ctc_loss, amp=amp,
                          global_size=n_global if world > 1 else None)

    hist = history or History()
    aug_gen = torch.Generator()
    train_time = hist.seconds[-1] if hist.seconds else 0.0
    step = hist.step[-1] if hist.step else 0
    bar = tqdm(total=int(seconds) if seconds else total_steps, disable=not progress or rank != 0,
               unit="s" if seconds else "step", desc="training", dynamic_ncols=True)

    def run_eval():
        refs, hyps = transcribe_batches(model, valid, encoder)
        shared = distributed.gather((refs, hyps))         # every rank: everybody's transcripts
        refs, hyps = [r for part, _ in shared for r in part], [h for _, part in shared for h in part]
        hist.eval_step.append(step)
        hist.eval_seconds.append(train_time)
        hist.eval_wer.append(word_error_rate(refs, hyps))
        hist.eval_cer.append(char_error_rate(refs, hyps))
        bar.set_postfix(loss=f"{hist.loss[-1]:.3f}" if hist.loss else "-", wer=f"{hist.eval_wer[-1]:.3f}")
        if on_eval and rank == 0:
            on_eval(hist, model)

    done = False
    for epoch in range(start_epoch, epochs):
        # the minibatch order of this epoch, by the graded rule; without SortaGrad epoch 0 is
        # shuffled too (each epoch takes the random order that the next epoch would get)
        epoch_plan = plan(train_set, batch_size, epoch if sortagrad else epoch + 1, seed)
        order = [position[tuple(idx)] for idx in epoch_plan if tuple(idx) in position]
        first = start_index if epoch == start_epoch else 0
        clock = time.perf_counter()
        for pos, batch in enumerate(loader.batches(order[first:]), start=first):
            i = order[pos]
            hist.position = (epoch, pos + 1) if pos + 1 < len(order) else (epoch + 1, 0)
            set_lr(step, train_time)
            if augment is not None:
                batch = augment(batch, aug_gen.manual_seed(seed * 1_000_003 + step * world + rank))
            loss = step_on(on_device(batch, device), len(global_batches[i]))
            now = time.perf_counter()
            dt = distributed.slowest(now - clock)           # waiting for data included; one clock for all ranks
            clock = now
            train_time += dt
            step += 1
            if not math.isfinite(loss):
                hist.skipped += 1
            hist.step.append(step)
            hist.loss.append(loss)
            hist.seconds.append(train_time)
            bar.update(dt if seconds else 1)
            if valid is not None and step % eval_every == 0:
                run_eval()
                clock = time.perf_counter()                 # evaluation is not training time
                if target_wer is not None and hist.eval_wer[-1] <= target_wer:
                    done = True
            if (seconds and train_time >= seconds) or (max_steps and step >= max_steps):
                done = True
            if done:
                break
        if done:
            break
    if valid is not None and (not hist.eval_step or hist.eval_step[-1] != step):
        run_eval()
    bar.close()
    for g, base in zip(optimizer.param_groups, base_lrs):   # leave the optimizer as it was given
        g["lr"] = base
    return hist
