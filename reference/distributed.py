"""Data-parallel training on several processes: ``torchrun --standalone --nproc_per_node N -m reference.train``.

Synchronous SGD, as DS2 trains (section 4, system optimisations): every process (a *rank*) holds a copy of the model,
computes gradients on its share of each minibatch, the gradients are summed across ranks, and
every copy takes the same step.  torch's ``DistributedDataParallel`` does the summing (gloo on
CPUs, NCCL on GPUs); what is specific to this model is here:

* :func:`share` — each *global* minibatch (SortaGrad's, the same on every rank) is split across
  the ranks, so every rank runs the same number of steps: no collective ever waits for a rank
  that ran out of data.  A minibatch with fewer utterances than ranks is left out.
* :func:`global_loss` — the loss of a rank's share weighted so that the summed gradients equal
  those of the whole minibatch in one process (shares may differ in size by one).
* :func:`all_reduce_sum` and :func:`sync_batch_norm` — sequence-wise BatchNorm over the valid
  frames of *all* ranks.  torch's ``SyncBatchNorm`` takes no mask (and refuses CPU tensors), so
  each BatchNorm all-reduces ``[sum x, sum x^2, count]`` itself, through an autograd Function whose
  backward all-reduces the gradient.  A plain ``dist.all_reduce`` gives the right statistics
  and silently wrong gradients (autograd does not see it): each rank would miss what its frames
  did to the other ranks' normalisation.  No collective in eval mode (running statistics).
* :func:`init_from_env`, :func:`wrap`, :func:`gather`, :func:`slowest`, :func:`barrier`,
  :func:`cleanup` — joining torchrun's process group and the few collectives ``fit`` needs to keep
  the ranks in step (the same clock, the same held-out WER, hence the same decisions).

Everything here is a no-op in a single process, so ``fit`` reads the same either way.
"""
from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist

from .devices import pick_device

__all__ = ["world_size", "rank", "is_main", "init_from_env", "cleanup", "share", "all_reduce_sum",
           "sync_batch_norm", "wrap", "global_loss", "gather", "slowest", "barrier"]

DEFAULT_TIMEOUT_S = 1800.0       # a collective that waits longer than this fails instead of hanging


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    """Rank 0: the one that writes checkpoints, logs and the progress bar."""
    return rank() == 0


def init_from_env(device: str = "auto", timeout_s: float | None = None) -> torch.device:
    """Join the process group that ``torchrun`` describes in the environment; return this rank's device.

    ``torchrun`` sets ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``.
    Without them (or with ``WORLD_SIZE=1``) nothing is joined and this is :func:`pick_device`.
    On GPUs each rank takes GPU ``LOCAL_RANK`` and NCCL; on CPUs gloo.  ``timeout_s`` (default
    ``DS2_DIST_TIMEOUT`` or 1800 s) bounds every collective, the rendezvous included.
    """
    chosen = pick_device(device)
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or world_size() > 1:
        return chosen
    for key in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        if key not in os.environ:
            raise ValueError(f"WORLD_SIZE is set but {key} is not: start several processes with torchrun "
                             "(torchrun --standalone --nproc_per_node N -m reference.train ...)")
    timeout = timedelta(seconds=float(timeout_s or os.environ.get("DS2_DIST_TIMEOUT", DEFAULT_TIMEOUT_S)))
    local = int(os.environ["LOCAL_RANK"])
    if chosen.type == "cuda":
        if local >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK {local} but only {torch.cuda.device_count()} GPU(s): "
                             "use --nproc_per_node <= the number of GPUs")
        chosen = torch.device("cuda", local)
        torch.cuda.set_device(chosen)
        dist.init_process_group("nccl", timeout=timeout, device_id=chosen)
    elif chosen.type == "cpu":
        dist.init_process_group("gloo", timeout=timeout)
    else:
        raise ValueError(f"torchrun needs --device cpu or cuda (no process group backend for {chosen.type})")
    return chosen


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def share(indices, rank_: int | None = None, world: int | None = None) -> list:
    """This rank's utterances of a global minibatch: every ``world``-th one from position ``rank``.

    A global minibatch is a length bucket (SortaGrad), so the shares have similar lengths; their
    sizes differ by at most one.
    """
    rank_ = rank() if rank_ is None else rank_
    world = world_size() if world is None else world
    return list(indices)[rank_::world]


class _AllReduceSum(torch.autograd.Function):
    """``y = sum over ranks of x``; the backward is the same sum of the incoming gradients.

    Every rank's loss depends on every rank's ``x`` (through ``y``), so ``dL/dx`` on one rank is
    the sum of all ranks' ``dL_r/dy``: an all-reduce again.
    """

    @staticmethod
    def forward(ctx, x):
        y = x.clone()
        dist.all_reduce(y, op=dist.ReduceOp.SUM)
        return y

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """The sum of ``x`` over all ranks, differentiable; ``x`` itself in a single process."""
    return _AllReduceSum.apply(x) if world_size() > 1 else x


def sync_batch_norm(model: torch.nn.Module) -> torch.nn.Module:
    """Make every masked BatchNorm of ``model`` (sequence-wise and conv) take its training statistics
    over the valid frames of all ranks (in place; returns ``model``)."""
    from .layers import _MaskedBatchNorm

    for m in model.modules():
        if isinstance(m, _MaskedBatchNorm):
            m.all_reduce = all_reduce_sum
    return model


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``model`` with synchronised BatchNorm inside ``DistributedDataParallel`` (the model itself when alone).

    Buffers are not broadcast at every forward: with synchronised statistics every rank's running
    mean and variance stay equal by construction.
    """
    if world_size() == 1:
        return model
    from .layers import _MaskedBatchNorm

    bns = [m for m in model.modules() if "BatchNorm" in type(m).__name__]
    foreign = [type(m).__name__ for m in bns if not isinstance(m, _MaskedBatchNorm)]
    if foreign:
        raise ValueError(f"cannot synchronise BatchNorm {sorted(set(foreign))} across ranks: distributed training "
                         "needs the reference's SequenceWiseBatchNorm / MaskedBatchNorm2d")
    sync_batch_norm(model)
    ids = [device.index] if device.type == "cuda" else None
    DDP = torch.nn.parallel.DistributedDataParallel
    try:                                               # torch >= 2.13 names it so
        return DDP(model, device_ids=ids, forward_sync_buffers=False)
    except TypeError:
        return DDP(model, device_ids=ids, broadcast_buffers=False)


def global_loss(loss: torch.Tensor, n_local: int, n_global: int) -> tuple[torch.Tensor, float]:
    """``(loss to backpropagate, the global minibatch's mean loss)`` from this rank's mean loss.

    The global loss is the mean over all ``n_global`` utterances, i.e. the sum over ranks of
    ``loss * n_local / n_global``.  ``DistributedDataParallel`` *averages* gradients over ranks,
    so each rank backpropagates ``world_size`` times its part.  The returned value (one all-reduce)
    is the same on every rank, so all of them skip a non-finite step together.
    """
    world = world_size()
    part = loss * (n_local / n_global)
    if world == 1:
        return part, float(part.detach())
    total = part.detach().reshape(1).clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return part * world, float(total)


def _scalar_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def slowest(seconds: float) -> float:
    """The largest of ``seconds`` over the ranks: one clock for the time budget and the learning-rate
    schedule, so that every rank stops at the same step."""
    if world_size() == 1:
        return seconds
    t = torch.tensor([seconds], dtype=torch.float64, device=_scalar_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t)


def gather(obj) -> list:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank (any picklable object)."""
    if world_size() == 1:
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()
