"""Exercise 07 — Sequence-wise batch normalisation (lesson 07).

DS2 normalises its recurrent layers "sequence-wise": one mean and one variance per
feature, computed over every valid (time, batch) frame of the minibatch, padding excluded
(DS2 section 3.2).  Per-timestep statistics fail because late frames exist in only a few
(long) utterances; including the padding drags the mean towards 0.

You implement ``SequenceWiseBatchNorm.forward``: exactly ``torch.nn.BatchNorm1d``
applied to the valid frames of a ``(T, B, H)`` batch, with the same parameters, buffers
and running-statistics update, and zeros at the padded frames.  Lesson 07 works the
statistics out by hand on a 2 x 3 padded batch.

Grade your work (from the repository root)::

    make grade ONLY=ex07          # or: .venv/bin/python -m autograder --only ex07

Write your code only between the ``# YOUR CODE HERE`` lines of each stub.

FORBIDDEN: ``torch.nn.BatchNorm1d``, ``torch.nn.BatchNorm2d``, ``torch.nn.functional.batch_norm``,
``torch.batch_norm``; importing ``reference``, ``solutions`` or ``autograder``.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["SequenceWiseBatchNorm"]


class SequenceWiseBatchNorm(nn.Module):
    """Batch norm over the valid frames of a ``(T, B, H)`` batch.

    Args:
        num_features: ``H``.
        eps: added to the variance before the square root.
        momentum: weight of the new batch in the running statistics (``None``: cumulative average).

    Parameters and buffers (the names and initial values of ``nn.BatchNorm1d``, so its
    ``state_dict`` loads here and back): ``weight`` (ones) and ``bias`` (zeros), ``(H,)``;
    buffers ``running_mean`` (zeros), ``running_var`` (ones), ``num_batches_tracked`` (0, int64).
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1):
        super().__init__()
        if not isinstance(num_features, int) or num_features < 1:
            raise ValueError(f"num_features must be a positive int, got {num_features!r}")
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Normalise the valid frames of ``x``.

        Args:
            x: ``(T, B, H)``; item ``b`` is valid for ``t < lengths[b]``.
            lengths: ``(B,)`` valid frames per item.

        Returns:
            y: ``(T, B, H)``; ``y = (x - mean) / sqrt(var + eps) * weight + bias`` at valid
            frames, 0 at padded frames.

        Contract (that of ``nn.BatchNorm1d`` on the ``n`` valid frames):

        * training mode: ``mean`` and the BIASED ``var`` are ``(H,)``, over the valid frames
          only; the gradient flows through them.  Each call adds 1 to ``num_batches_tracked``
          and moves ``running_mean`` and ``running_var`` towards the batch's ``mean`` and
          UNBIASED variance ``var * n / (n - 1)`` by the fraction ``momentum`` (or
          ``1 / num_batches_tracked``, a cumulative average, when ``momentum`` is ``None``);
          with a single valid frame the biased variance is used there too;
        * evaluation mode: ``running_mean`` and ``running_var`` replace ``mean`` and ``var``;
          no buffer changes.

        Common mistake: letting the padded frames into the sums (lesson 07, section 1, shows
        the numbers).  The buffers are updated in place, without tracking gradients.
        """
        if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[2] != self.num_features or not x.is_floating_point():
            raise ValueError(f"x must be a floating (T, B, {self.num_features}) tensor, got {getattr(x, 'shape', type(x))}")
        T, B, H = x.shape
        lengths = torch.as_tensor(lengths, device=x.device)
        if lengths.shape != (B,) or lengths.is_floating_point() or (B and int(lengths.max()) > T):
            raise ValueError(f"lengths must be {B} integers in [0, {T}], got {lengths.tolist()}")
        ### BEGIN SOLUTION
        mask = (torch.arange(T, device=x.device)[:, None] < lengths[None, :]).unsqueeze(-1)  # (T, B, 1)
        if self.training:
            n = max(int(mask.sum()), 1)                                       # valid frames
            mean = torch.where(mask, x, torch.zeros_like(x)).sum(dim=(0, 1)) / n          # (H,)
            centred = torch.where(mask, x - mean, torch.zeros_like(x))
            var = centred.square().sum(dim=(0, 1)) / n                        # (H,) biased
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.mul_(1 - m).add_(m * mean)
                self.running_var.mul_(1 - m).add_(m * var * n / max(n - 1, 1))
        else:
            mean, var = self.running_mean, self.running_var
        y = (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias
        y = torch.where(mask, y, torch.zeros_like(y))
        ### END SOLUTION
        return y
