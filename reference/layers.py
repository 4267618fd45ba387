"""The building blocks of Deep Speech 2, each one idea (DS2 sections 3.1-3.7).

* :func:`clipped_relu` — ``sigma(x) = min(max(x, 0), 20)`` (section 3.1).
* :func:`conv_output_length`, :func:`mask_time`, :class:`MaskedConv` — 2-D convolution over
  (frequency, time) whose padding frames are re-zeroed, so an utterance's outputs do not
  depend on what it is batched with (section 3.5).
* :func:`gru_cell`, :func:`gru_layer`, :func:`bidirectional_gru` — the GRU with PyTorch's gate
  layout, unrolled over padded sequences, two directions **summed** (section 3.1).
* :class:`SequenceWiseBatchNorm` — BatchNorm of the input-to-hidden projection ``W x`` with
  statistics over all valid (time, batch) frames (section 3.2).

Fast paths beside the readable code, same maths, tested equal to it: the GRU recurrence of a
layer's directions together with a hand-written backward (:func:`_fused_gru`, ``fused=True``), and
BatchNorm as torch's kernel on the valid frames only (``fast = True``; ``False`` runs the
readable masked formula, :meth:`_MaskedBatchNorm._normalize`).  Training on the CPU with
``DS2_GRU_KERNEL=1`` in the environment (opt-in), both run as a third path, compiled
(:mod:`reference._gru_kernel`, built on first use; without a compiler the Python fast paths run): the
recurrence's whole time loop, forward and backward, is one C++ call, and BatchNorm reads the valid frames
where they lie instead of gathering them (``compiled = False`` on a ``RecurrentLayer`` or a BatchNorm turns
its own off).  Why: a CPU step of these small models spends its time in the dispatch of thousands of
per-time-step operations and in passes over memory, not in arithmetic; DS2 wrote its own kernels for the
same reason (section 4).
* :class:`RecurrentLayer` — ``h_t = f(B(W x_t) + U h_{t-1})``: one DS2 recurrent layer.
* :func:`row_conv`, :class:`RowConv` — lookahead convolution for unidirectional models (section 3.7).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import _gru_kernel
from .validation import check_lengths, check_tensor

__all__ = [
    "clipped_relu", "ClippedReLU", "conv_output_length", "time_mask", "mask_time", "MaskedConv",
    "gru_cell", "gru_layer", "bidirectional_gru", "reverse_padded", "SequenceWiseBatchNorm",
    "MaskedBatchNorm2d", "RecurrentLayer", "row_conv", "RowConv",
]

RELU_CLIP = 20.0  # DS2 section 3.1: "sigma(x) = min{max{x, 0}, 20}"


# ----------------------------------------------------------------------------- activation
def clipped_relu(x: torch.Tensor, ceiling: float = RELU_CLIP) -> torch.Tensor:
    """``min(max(x, 0), ceiling)``: a ReLU that cannot blow up the recurrence."""
    return x.clamp(min=0.0, max=ceiling)


class ClippedReLU(nn.Module):
    """Module form of :func:`clipped_relu`."""

    def __init__(self, ceiling: float = RELU_CLIP):
        super().__init__()
        self.ceiling = ceiling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return clipped_relu(x, self.ceiling)

    def extra_repr(self) -> str:
        return f"ceiling={self.ceiling}"


# ----------------------------------------------------------------------------- convolution
def conv_output_length(length, kernel_size: int, stride: int = 1, padding: int = 0, dilation: int = 1):
    """Frames out of a convolution: ``floor((L + 2p - d(k - 1) - 1) / s) + 1``.

    Works for a Python int (returns int) and for an int tensor of lengths (returns int64).
    """
    span = dilation * (kernel_size - 1) + 1
    if isinstance(length, torch.Tensor):
        if length.is_floating_point():
            raise ValueError(f"length must be an integer tensor, got dtype {length.dtype}")
        return torch.div(length.long() + 2 * padding - span, stride, rounding_mode="floor") + 1
    return (int(length) + 2 * padding - span) // stride + 1


def time_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """``(B, T)`` bool, True for valid frames ``t < lengths[b]``."""
    return torch.arange(max_len, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)


def mask_time(x: torch.Tensor, lengths) -> torch.Tensor:
    """Zero the frames ``t >= lengths[b]`` of ``x`` ``(B, C, F, T)`` (a new tensor)."""
    check_tensor(x, "x", 4)
    lengths = check_lengths(lengths, x.shape[0], x.shape[-1])
    mask = time_mask(lengths.to(x.device), x.shape[-1])          # (B, T)
    return x.masked_fill(~mask[:, None, None, :], 0.0)           # broadcast over C, F (inf/nan in padding too)


class _MaskedBatchNorm(nn.Module):
    """BatchNorm whose statistics only see valid frames; same parameters, buffers and update
    rule as ``torch.nn.BatchNorm1d`` (biased variance to normalise, unbiased variance in
    the running estimate, ``momentum=None`` for a cumulative average)."""

    #: the fast path (torch's kernel on the valid frames, :meth:`_normalize_valid_rows`); ``False``: the
    #: readable :meth:`_normalize` (same result)
    fast: bool = True

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"

    # ``all_reduce(tensor) -> tensor``: sums a tensor over the processes of a distributed run, differentiably
    # (``reference.distributed.sync_batch_norm`` sets it); None: statistics of this process's frames only
    all_reduce = None

    def _normalize(self, x, mask, dims, shape):
        """``x`` normalised per feature; ``mask`` broadcasts against ``x``; ``dims`` are reduced."""
        dtype = x.dtype                                              # float16/bfloat16 under autocast:
        x = x.masked_fill(~mask, 0.0).to(torch.promote_types(dtype, torch.float32))   # statistics in float32
        if self.training:                                            # (padding may hold anything, even inf)
            if self.all_reduce is None:
                n = mask.sum(dims).reshape(-1)[0].clamp_min(1).to(x.dtype)  # valid frames (mask has one feature column)
                mean = x.sum(dims) / n                               # (features,)
                var = (x - mean.view(shape)).square().masked_fill(~mask, 0.0).sum(dims) / n  # biased, to normalise
            else:
                mean, var, n = self._synced_moments(x, mask, dims)
            self._update_running(mean, var * n / (n - 1).clamp_min(1.0))
        else:
            mean, var = self.running_mean, self.running_var
        x_hat = (x - mean.view(shape)) / torch.sqrt(var.view(shape) + self.eps)
        return (x_hat * self.weight.view(shape) + self.bias.view(shape)).masked_fill(~mask, 0.0).to(dtype)

    def _track_batch(self) -> float:
        """Count one more training batch; returns the running estimates' update factor (``momentum``, or
        ``1 / batches`` for a cumulative average when ``momentum`` is None), ``nn.BatchNorm1d``'s rule."""
        with torch.no_grad():
            self.num_batches_tracked += 1
        return 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum

    def _update_running(self, mean: torch.Tensor, unbiased_var: torch.Tensor) -> None:
        """One training batch's update of the running estimates from its mean and unbiased variance."""
        m = self._track_batch()
        with torch.no_grad():
            self.running_mean.mul_(1 - m).add_(m * mean.detach().to(self.running_mean.dtype))
            self.running_var.mul_(1 - m).add_(m * unbiased_var.detach().to(self.running_var.dtype))

    def _synced_moments(self, x, mask, dims):
        """``(mean, biased variance, frame count)`` over the valid frames of *every* process.

        One all-reduce of ``[sum x, sum x^2, count]`` (``x`` is 0 at padding); ``all_reduce`` is
        differentiable (its backward all-reduces the gradient), so each process's gradient also
        carries what its frames did to the other processes' normalisation.
        """
        C = self.num_features
        n = mask.sum(dims).reshape(-1)[:1].to(x.dtype)
        total = self.all_reduce(torch.cat([x.sum(dims), x.square().sum(dims), n]))  # (2C + 1,)
        n = total[-1].clamp_min(1)
        mean = total[:C] / n
        var = (total[C: 2 * C] / n - mean.square()).clamp_min(0.0)
        return mean, var, n

    def _batch_norm_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """Fast path: torch's BatchNorm kernel on ``rows`` ``(N, features, ...)``, the valid frames only.

        The same statistics, output and buffer updates as :meth:`_normalize` (``nn.BatchNorm1d``'s
        rule; tested equal), in a few passes over the data instead of a dozen, forward and backward.
        """
        factor = self._track_batch() if self.training else 0.0
        return F.batch_norm(rows, self.running_mean, self.running_var, self.weight, self.bias,
                            self.training, factor, self.eps)

    #: training on the CPU, the statistics and the normalisation run compiled (:meth:`_normalize_compiled`) where the
    #: GRU kernel's extension is on (``DS2_GRU_KERNEL=1``); ``False``: torch's kernel on the gathered valid frames
    compiled: bool = True

    def _normalize_compiled(self, x: torch.Tensor, lengths: torch.Tensor, rows: bool) -> torch.Tensor | None:
        """Training on the CPU: :meth:`_batch_norm_rows` of the valid frames of ``x`` (``(T, B, C)`` if ``rows``, else
        ``(B, C, F, T)``), padding 0, by the compiled kernel (:class:`reference._gru_kernel.CompiledMaskedBatchNorm`)
        without gathering the frames; the same buffer updates.  ``None`` where it does not apply (as
        :meth:`_normalize_valid_rows`, and: not training, not float32/float64 on the CPU, autocast, the extension off)."""
        T = x.shape[0] if rows else x.shape[-1]
        if not (self.compiled and self.training and self.all_reduce is None and x.device.type == "cpu"
                and x.dtype in (torch.float32, torch.float64) and self.weight.dtype == x.dtype
                and lengths.device.type == "cpu" and not torch.is_autocast_enabled("cpu")
                and _gru_kernel.load() is not None):
            return None
        lengths = lengths.long()
        if int(lengths.min()) < 0 or int(lengths.max()) > T:
            return None
        n = int(lengths.sum()) * (1 if rows else x.shape[2])         # valid values per channel
        if n < 2:
            return None
        y, mean, var = _gru_kernel.CompiledMaskedBatchNorm.apply(x, lengths, self.weight, self.bias, rows, self.eps)
        self._update_running(mean, var * (n / (n - 1)))
        return y

    def _normalize_valid_rows(self, rows: torch.Tensor, valid: torch.Tensor) -> torch.Tensor | None:
        """:meth:`_batch_norm_rows` of the rows of ``rows`` ``(N, ...)`` where ``valid`` ``(N,)`` is True, the
        others 0; ``None`` where the kernel does not apply: training on fewer than 2 valid rows, statistics
        synchronised over processes (``all_reduce``), or half-precision input (statistics in float32)."""
        if self.all_reduce is not None or rows.dtype not in (torch.float32, torch.float64):
            return None
        n_valid = int(valid.sum())
        if self.training and n_valid < 2:
            return None
        if n_valid == rows.shape[0]:
            return self._batch_norm_rows(rows)
        idx = valid.nonzero().squeeze(1)
        return rows.new_zeros(rows.shape).index_copy(0, idx, self._batch_norm_rows(rows.index_select(0, idx)))


class SequenceWiseBatchNorm(_MaskedBatchNorm):
    """Sequence-wise BatchNorm (DS2 section 3.2) of ``(T, B, H)`` sequences.

    "For each hidden unit, we compute the mean and variance statistics over all items in the
    minibatch over the length of the sequence."  Only valid frames ``t < lengths[b]`` count
    (padding would drag the mean towards 0 and make outputs depend on batch mates); the
    result equals ``nn.BatchNorm1d`` applied to the valid frames, and padded frames come out 0.
    ``include_padding=True`` reproduces the common mistake, for comparison only.  The attribute
    ``fast`` (default ``True``) computes exactly that: torch's BatchNorm on the valid frames, gathered;
    ``fast = False`` runs the readable masked formula (same result, several times slower to train).
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 include_padding: bool = False):
        super().__init__(num_features, eps, momentum)
        self.include_padding = include_padding

    def forward(self, x: torch.Tensor, lengths) -> torch.Tensor:
        check_tensor(x, "x", 3, floating=True)
        T, B, H = x.shape
        if H != self.num_features:
            raise ValueError(f"x has {H} features, this SequenceWiseBatchNorm expects {self.num_features}")
        lengths = check_lengths(lengths, B, T)
        valid = time_mask(lengths.to(x.device), T).transpose(0, 1).unsqueeze(2)   # (T, B, 1)
        if self.fast and not self.include_padding:
            out = self._normalize_compiled(x, lengths, rows=True)
            if out is not None:
                return out
            out = self._normalize_valid_rows(x.reshape(T * B, H), valid.reshape(T * B))
            if out is not None:
                return out.view(T, B, H)
        stats = torch.ones_like(valid) if self.include_padding else valid
        out = self._normalize(x, stats, (0, 1), (1, 1, H))
        return out.masked_fill(~valid, 0.0)


class MaskedBatchNorm2d(_MaskedBatchNorm):
    """BatchNorm of conv feature maps ``(B, C, F, T)``: per channel over valid (batch, freq, time)."""

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if self.fast:
            out = self._normalize_compiled(x, lengths, rows=False)
            if out is not None:
                return out
            B, C, Fq, T = x.shape                    # frames as rows: (B, C, F, T) -> (B * T, C, F)
            rows = x.permute(0, 3, 1, 2).reshape(B * T, C, Fq)
            out = self._normalize_valid_rows(rows, time_mask(lengths.to(x.device), T).reshape(B * T))
            if out is not None:
                return out.view(B, T, C, Fq).permute(0, 2, 3, 1)
        valid = time_mask(lengths.to(x.device), x.shape[-1])[:, None, None, :]     # (B, 1, 1, T)
        valid = valid.expand(-1, 1, x.shape[2], -1)                                  # (B, 1, F, T)
        return self._normalize(x, valid, (0, 2, 3), (1, -1, 1, 1))


class MaskedConv(nn.Module):
    """Conv2d over (frequency, time) -> masked BatchNorm -> clipped ReLU -> re-zero padding.

    DS2 section 3.5 (the paper's kernel sizes); no conv bias, since BatchNorm adds one.  Output lengths
    come from this layer's own kernel, stride, padding and dilation.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: tuple[int, int],
                 stride: tuple[int, int], batch_norm: bool = True):
        super().__init__()
        padding = (kernel_size[0] // 2, kernel_size[1] // 2)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=not batch_norm)
        self.bn = MaskedBatchNorm2d(out_channels) if batch_norm else None

    def output_lengths(self, lengths):
        """Frames out of this layer for ``lengths`` frames in (time is the conv's last axis)."""
        c = self.conv
        return conv_output_length(lengths, c.kernel_size[1], c.stride[1], c.padding[1], c.dilation[1])

    def output_size(self, n_freq: int) -> int:
        """Frequency bins out of this layer."""
        c = self.conv
        return conv_output_length(n_freq, c.kernel_size[0], c.stride[0], c.padding[0], c.dilation[0])

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.conv(x)                                # (B, C, F', T')
        lengths = self.output_lengths(lengths)
        if self.bn is not None:
            x = self.bn(x, lengths)
        return mask_time(clipped_relu(x), lengths), lengths


# ----------------------------------------------------------------------------- GRU
def gru_cell(x, h, weight_ih, weight_hh, bias_ih=None, bias_hh=None):
    """One GRU step, exactly ``torch.nn.GRUCell`` (gates in the order r, z, n).

    Args:
        x: ``(B, I)``; h: ``(B, H)``; weight_ih: ``(3H, I)``; weight_hh: ``(3H, H)``;
        bias_ih, bias_hh: ``(3H,)`` or ``None``.

    ``r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)``, ``z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)``,
    ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``, ``h' = (1 - z) * n + z * h``.
    """
    gx = F.linear(x, weight_ih, bias_ih)
    return _gru_step(gx, h, weight_hh, bias_hh)


def _gru_step(gx, h, weight_hh, bias_hh, candidate=torch.tanh):
    """GRU step given the precomputed input projection ``gx = W_i x + b_i`` ``(B, 3H)``.

    ``candidate`` is the candidate state's activation: ``tanh`` (PyTorch's GRU, this course's
    convention) or :func:`clipped_relu` (DS2's own GRU, section 3.4: ``rnn_type='ds2gru'``).  Either
    way the reset gate multiplies the recurrent projection *after* the matmul, ``r * (W_hn h + b_hn)``,
    as both PyTorch and DS2 do.
    """
    gh = F.linear(h, weight_hh, bias_hh)                    # (B, 3H)
    rx, zx, nx = gx.chunk(3, dim=-1)
    rh, zh, nh = gh.chunk(3, dim=-1)
    r = torch.sigmoid(rx + rh)
    z = torch.sigmoid(zx + zh)
    n = candidate(nx + r * nh)
    return (1 - z) * n + z * h


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each sequence of ``x`` ``(T, B, ...)`` within its own length; padding stays put.

    Applying it twice is the identity, so a backward direction is
    ``reverse_padded(forward_rnn(reverse_padded(x)))``.
    """
    T = x.shape[0]
    t = torch.arange(T, device=x.device).unsqueeze(1)                      # (T, 1)
    lengths = lengths.to(x.device).unsqueeze(0)                            # (1, B)
    idx = torch.where(t < lengths, lengths - 1 - t, t)                     # (T, B)
    idx = idx.view(T, -1, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(0, idx)


def _check_rnn_input(x, lengths):
    check_tensor(x, "x", 3, floating=True)
    return check_lengths(lengths, x.shape[1], x.shape[0])


def _valid(lengths, T, like):
    """``(T, B, 1)`` bool mask of valid frames."""
    return time_mask(lengths.to(like.device), T).transpose(0, 1).unsqueeze(2)


def _unroll(gx, step, h0):
    """Run ``h = step(gx[t], h)`` over time; returns ``(T, B, H)``."""
    h, outs = h0, []
    for t in range(gx.shape[0]):
        h = step(gx[t], h)
        outs.append(h)
    return torch.stack(outs)


def gru_layer(x, lengths, weight_ih, weight_hh, bias_ih=None, bias_hh=None, reverse: bool = False):
    """A GRU unrolled over a padded batch.

    Args:
        x: ``(T, B, I)``; lengths: ``(B,)``; weights as in :func:`gru_cell`.
        reverse: run each sequence backwards from its own last valid step ``lengths[b] - 1``.

    Returns:
        ``(T, B, H)`` hidden states, 0 at padded steps.
    """
    lengths = _check_rnn_input(x, lengths)
    H = weight_hh.shape[1]
    if reverse:
        x = reverse_padded(x, lengths)
    gx = F.linear(x, weight_ih, bias_ih)                                   # all steps at once: (T, B, 3H)
    out = _unroll(gx, lambda g, h: _gru_step(g, h, weight_hh, bias_hh), x.new_zeros(x.shape[1], H))
    if reverse:
        out = reverse_padded(out, lengths)
    return out.masked_fill(~_valid(lengths, x.shape[0], out), 0.0)


def _weights(w):
    w = tuple(w)
    if len(w) not in (2, 4):
        raise ValueError(f"expected (weight_ih, weight_hh[, bias_ih, bias_hh]), got {len(w)} tensors")
    return w


def bidirectional_gru(x, lengths, forward_weights, backward_weights):
    """DS2's bidirectional GRU: forward and backward layers **summed** (not concatenated).

    Each ``*_weights`` is ``(weight_ih, weight_hh[, bias_ih, bias_hh])``.  Returns ``(T, B, H)``.
    """
    return (gru_layer(x, lengths, *_weights(forward_weights))
            + gru_layer(x, lengths, *_weights(backward_weights), reverse=True))


def _compiled_gru_applies(gx, weight_hh, bias_hh) -> bool:
    """The compiled kernel trains on CPU float32/float64 tensors of one dtype (not under autocast), if it builds
    here (:func:`reference._gru_kernel.load`: compiled on first use, ``None`` with one logged line if it cannot be)."""
    return (torch.is_grad_enabled() and gx.device.type == "cpu" and gx.dtype in (torch.float32, torch.float64)
            and weight_hh.dtype == bias_hh.dtype == gx.dtype and weight_hh.device.type == bias_hh.device.type == "cpu"
            and not torch.is_autocast_enabled("cpu") and _gru_kernel.load() is not None)


def _fused_gru(gx, weight_hh, bias_hh):
    """Fast path: the GRU recurrence of ``D`` directions at once on precomputed (batch-normalised)
    projections.

    Args:
        gx: ``(T, D, B, 3H)``: direction ``d``'s ``B(W x)`` in its own time order (a backward
            direction's sequences already reversed with :func:`reverse_padded`);
        weight_hh: ``(D, 3H, H)``, each direction's ``U``; bias_hh: ``(D, 3H)`` or ``None``.

    Returns ``(T, D, B, H)``, the states of every step (also past each sequence's end: the
    caller masks them).  Same maths as :func:`_unroll` over :func:`_gru_step` per direction
    (tested against it), faster:

    * without autograd (evaluation), and on a GPU with autograd too, torch's native GRU kernel
      per direction (:func:`_native_gru`: cuDNN on a GPU) with an identity ``weight_ih``; BatchNorm
      of ``W x`` comes before the recurrence, so the recurrence is a GRU over a precomputed projection;
    * with autograd elsewhere (CPU, MPS), :class:`_GRURecurrence`: both directions advance together
      (one batched matrix product per step for the two), and its backward is hand-written
      backpropagation through time (see there).

    Training on the CPU, :meth:`RecurrentLayer._recur_fused` runs the same maths compiled instead, where
    it builds (:class:`reference._gru_kernel.CompiledGRURecurrence`).
    """
    D, G = gx.shape[1], gx.shape[-1]
    if bias_hh is None:
        bias_hh = gx.new_zeros(D, G)
    training = torch.is_grad_enabled() and (gx.requires_grad or weight_hh.requires_grad or bias_hh.requires_grad)
    if training and gx.device.type != "cuda":
        if torch.is_autocast_enabled(gx.device.type):   # in the weights' precision, autocast off: its
            with torch.autocast(gx.device.type, enabled=False):   # backward must not mix bfloat16 and float32
                return _GRURecurrence.apply(gx.to(weight_hh.dtype), weight_hh, bias_hh.to(weight_hh.dtype))
        return _GRURecurrence.apply(gx, weight_hh, bias_hh)
    return torch.stack([_native_gru(gx[:, d], weight_hh[d], bias_hh[d], training) for d in range(D)], dim=1)


def _native_gru(gx, weight_hh, bias_hh, train: bool = False):
    """torch's own GRU (cuDNN's on a GPU, differentiable) over a precomputed projection ``gx`` ``(T, B, 3H)``.

    ``torch._VF.gru`` always multiplies its input by ``weight_ih``: an identity matrix passes ``gx``
    through (an extra ``3H x 3H`` product per frame, cheap next to a step-by-step recurrence on a GPU).
    It runs in ``gx``'s precision on a GPU (float16 under autocast) and in the weights' elsewhere.
    """
    dtype = gx.dtype if gx.device.type == "cuda" else weight_hh.dtype
    G = gx.shape[-1]
    eye = torch.eye(G, dtype=dtype, device=gx.device)
    h0 = gx.new_zeros(1, gx.shape[1], weight_hh.shape[1], dtype=dtype)
    params = [eye, weight_hh.to(dtype), torch.zeros(G, dtype=dtype, device=gx.device), bias_hh.to(dtype)]
    out, _ = torch._VF.gru(gx.to(dtype), h0, params, True, 1, 0.0, train, False, False)
    return out


class _GRURecurrence(torch.autograd.Function):
    """``h_t = GRU(gx_t, h_{t-1})`` over ``gx`` ``(T, D, B, 3H)`` from ``h_0 = 0``, with a hand-written backward.

    Autograd through a GRU unrolled on the CPU records a dozen small operations per step and
    replays each one's backward; here every step is six operations for all ``D`` directions
    together, written into preallocated buffers (no copies, no temporaries):

        gates  = U h_{t-1} + b_h                      (one batched matrix product, D directions)
        [r, z] = sigmoid(gates[r, z] + gx[r, z])      (in place)
        n      = tanh(gx[n] + r * gates[n])           (addcmul, then tanh in place)
        h_t    = n + z (h_{t-1} - n)                  (lerp: = (1 - z) n + z h_{t-1})

    The forward keeps ``r, z``, ``U_n h + b_n``, ``n`` and the states.  With ``~`` for "before
    the nonlinearity", backpropagation through one step is

        dn~ = dh (1 - z)(1 - n^2)      dr~ = dn~ (U_n h_prev + b_n) r (1 - r)
        dz~ = dh (h_prev - n) z (1 - z)      dh_prev = dh z + [dr~, dz~, dn~ r] U

    Every factor except ``dh`` is known once the forward is done, so the backward first
    computes, for all steps at once, ``c = [(U_n h_prev + b_n) r (1 - r) a, (h_prev - n) z (1 - z),
    r a]`` with ``a = (1 - z)(1 - n^2)``; then walks the steps in reverse with three operations
    per step: ``dgh_t = c_t * dh``, ``dh_prev = dout_{t-1} + dh z``, ``dh_prev += dgh_t U``.
    After the loop, ``dU = sum_t dgh_t^T h_prev`` (one product per direction), ``db = sum_t dgh_t``, and
    ``dgx = [dgh_r, dgh_z, dh a]`` overwrites ``dgh`` in place.
    """

    @staticmethod
    def forward(ctx, gx, weight_hh, bias_hh):
        T, D, B, G = gx.shape
        H = G // 3
        weight_t = weight_hh.transpose(1, 2).contiguous()         # (D, H, 3H): U^T (a strided view is slower)
        bias = bias_hh.unsqueeze(1)                               # (D, 1, 3H)
        states = gx.new_zeros(T + 1, D, B, H)                     # states[t] = h_{t-1}; states[0] = h_0 = 0
        gates = gx.new_empty(T, D, B, G)                          # per step: [r, z, U_n h + b_n]
        n_all = gx.new_empty(T, D, B, H)
        # one view per step of each piece, made once (indexing inside the loop costs as much as an op)
        steps = zip(states.unbind(0), states[1:].unbind(0), gates.unbind(0), gates[..., : 2 * H].unbind(0),
                    gates[..., :H].unbind(0), gates[..., H: 2 * H].unbind(0), gates[..., 2 * H:].unbind(0),
                    gx[..., : 2 * H].unbind(0), gx[..., 2 * H:].unbind(0), n_all.unbind(0))
        for h, h_next, g, g_rz, r, z, g_n, x_rz, x_n, n in steps:
            torch.baddbmm(bias, h, weight_t, out=g)               # U h + b_h, all directions in one product
            g_rz.add_(x_rz).sigmoid_()                            # r, z
            torch.addcmul(x_n, r, g_n, out=n).tanh_()             # n = tanh(W_n x + r (U_n h + b_n))
            torch.lerp(n, h, z, out=h_next)                       # (1 - z) n + z h
        ctx.save_for_backward(weight_hh, states, gates, n_all)
        return states[1:].clone()

    @staticmethod
    def backward(ctx, dout):
        weight_hh, states, gates, n_all = ctx.saved_tensors
        T, D, B, H = n_all.shape
        r, z, g_n, h_prev = gates[..., :H], gates[..., H: 2 * H], gates[..., 2 * H:], states[:-1]
        a = torch.addcmul(torch.ones_like(n_all), n_all, n_all, value=-1).mul_(1 - z)   # (1 - n^2)(1 - z)
        coef = torch.empty_like(gates)                            # written in place, block by block
        torch.mul(a, r, out=coef[..., 2 * H:])                    # a r
        torch.mul(coef[..., 2 * H:], g_n, out=coef[..., :H]).mul_(1 - r)                  # a r (1 - r) g_n
        torch.mul(h_prev - n_all, torch.addcmul(z, z, z, value=-1), out=coef[..., H: 2 * H])  # (h - n) z (1 - z)
        dgh = torch.empty_like(coef)                              # d(U h + b)
        dh_all = torch.empty_like(n_all)                          # dL/dh_t, each step's total
        dh_all[T - 1] = dout[T - 1]
        for t in range(T - 1, -1, -1):
            dh = dh_all[t]
            torch.mul(coef[t].view(D, B, 3, H), dh.unsqueeze(2), out=dgh[t].view(D, B, 3, H))
            if t:
                torch.baddbmm(torch.addcmul(dout[t - 1], dh, z[t]), dgh[t], weight_hh,   # dout_{t-1} + dh z
                              out=dh_all[t - 1])                                         # + [dr~, dz~, dn~ r] U
        d_weight = torch.stack([dgh[:, d].reshape(-1, 3 * H).t() @ h_prev[:, d].reshape(-1, H) for d in range(D)])
        d_bias = dgh.sum((0, 2))
        torch.mul(dh_all, a, out=dgh[..., 2 * H:])                # dgx = [dr~, dz~, dn~]: dgh without n's r
        return dgh, d_weight, d_bias


# ----------------------------------------------------------------------------- DS2 recurrent layer
class RecurrentLayer(nn.Module):
    """One DS2 recurrent layer: ``h_t = f(B(W x_t) + U h_{t-1})`` (DS2 section 3.2).

    The input-to-hidden projection ``W x`` of all frames is computed at once and
    sequence-wise batch-normalised; the recurrent term ``U h`` is never normalised.  A
    bidirectional layer has its own ``W`` and ``U`` per direction and **sums** the two
    directions' outputs (DS2 section 3.1; the next layer's input size stays H).

    Args:
        input_size, hidden_size: sizes of ``x_t`` and ``h_t``.
        rnn_type: ``'gru'`` (PyTorch's GRU, tanh candidate: the course's default), ``'ds2gru'`` (DS2's
            own GRU, section 3.4: the candidate uses the clipped ReLU instead of tanh; Python-loop
            recurrence, no fused path) or ``'rnn'`` (simple recurrence with clipped ReLU, DS2 eq. 3).
        bidirectional: two directions, summed.
        batch_norm: ``'wx'`` (paper), ``'input'`` (normalise ``x`` itself, as a popular port
            does) or ``'none'``.
        bn_include_padding: count padded frames in the BatchNorm statistics (a mistake, for ablations).
        merge: ``'sum'`` (paper) or ``'concat'`` (output ``2H``, for ablations).
        fused: the fast path for the GRU recurrence: all directions advance together, with a
            hand-written backward (same maths; :func:`_fused_gru`).  ``False``: :meth:`_recur`'s Python loop.
            Training on the CPU, the fast path runs compiled (:mod:`reference._gru_kernel`) unless the
            attribute ``compiled`` is set to ``False`` (or it cannot be built here).
        gru_layer: an implementation of :func:`gru_layer`'s contract to run each direction's
            recurrence with (lessons 09-11 plug the student's in); ``None``: the reference's own.
            It receives the normalised projection ``B(W x)`` as its input with an identity
            ``weight_ih`` (``F.linear(gx, I) = gx``), ``U`` and its bias, and ``reverse=True`` for
            the backward direction.  A Python-loop GRU under autograd is several times slower
            than the fused path.
        batch_norm_class: a class with :class:`SequenceWiseBatchNorm`'s contract
            (``cls(num_features)``, ``forward(x, lengths)``, the same parameters and buffers);
            ``None``: the reference's own.
    """

    #: training on the CPU, the fused recurrence runs compiled (:func:`_fused_gru`); ``False``: in Python
    compiled: bool = True

    def __init__(self, input_size: int, hidden_size: int, rnn_type: str = "gru", bidirectional: bool = True,
                 batch_norm: str = "wx", bn_include_padding: bool = False, merge: str = "sum", fused: bool = True,
                 gru_layer=None, batch_norm_class=None):
        super().__init__()
        if rnn_type not in ("gru", "ds2gru", "rnn"):
            raise ValueError(f"rnn_type must be 'gru', 'ds2gru' or 'rnn', got {rnn_type!r}")
        if gru_layer is not None and (rnn_type != "gru" or not callable(gru_layer)):
            raise ValueError(f"gru_layer must be a function with gru_layer's contract, for rnn_type='gru' only; "
                             f"got {gru_layer!r} with rnn_type={rnn_type!r}")
        if batch_norm_class is not None and (bn_include_padding or not callable(batch_norm_class)):
            raise ValueError("batch_norm_class must be a class like SequenceWiseBatchNorm (num_features) -> module, "
                             f"and cannot count padding (bn_include_padding=False); got {batch_norm_class!r}, "
                             f"bn_include_padding={bn_include_padding}")
        if batch_norm not in ("wx", "input", "none"):
            raise ValueError(f"batch_norm must be 'wx', 'input' or 'none', got {batch_norm!r}")
        if merge not in ("sum", "concat"):
            raise ValueError(f"merge must be 'sum' or 'concat', got {merge!r}")
        self.input_size, self.hidden_size = input_size, hidden_size
        self.rnn_type, self.bidirectional, self.batch_norm = rnn_type, bidirectional, batch_norm
        self.merge, self.fused = merge, fused
        self.gru_layer_fn = gru_layer                               # None: the reference's recurrence
        gates = 3 if rnn_type in ("gru", "ds2gru") else 1
        directions = 2 if bidirectional else 1
        self.gate_size = gates * hidden_size
        proj = directions * self.gate_size
        # W of all directions in one matrix: one matmul for every frame of the batch
        self.weight_ih = nn.Parameter(torch.empty(proj, input_size))
        self.bias_ih = None if batch_norm == "wx" else nn.Parameter(torch.zeros(proj))  # BN's shift is the bias
        self.weight_hh = nn.ParameterList([nn.Parameter(torch.empty(self.gate_size, hidden_size)) for _ in range(directions)])
        self.bias_hh = nn.ParameterList([nn.Parameter(torch.zeros(self.gate_size)) for _ in range(directions)])
        self.bn = None
        if batch_norm != "none":
            features = proj if batch_norm == "wx" else input_size
            if batch_norm_class is None:
                self.bn = SequenceWiseBatchNorm(features, include_padding=bn_include_padding)
            else:
                self.bn = batch_norm_class(features)
        self.reset_parameters()

    @property
    def output_size(self) -> int:
        return self.hidden_size * (2 if self.bidirectional and self.merge == "concat" else 1)

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size)                 # nn.GRU's initialisation
        for p in [self.weight_ih, *self.weight_hh, *self.bias_hh] + ([self.bias_ih] if self.bias_ih is not None else []):
            nn.init.uniform_(p, -bound, bound)

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}, rnn_type={self.rnn_type!r}, bidirectional={self.bidirectional}, "
                f"batch_norm={self.batch_norm!r}, merge={self.merge!r}")

    def _recur(self, gx, d, lengths):
        """Recurrence of direction ``d`` over its projection ``gx`` ``(T, B, G)``, in time order (the readable path)."""
        U, b = self.weight_hh[d], self.bias_hh[d]
        if self.rnn_type == "gru":
            step = lambda g, h: _gru_step(g, h, U, b)
        elif self.rnn_type == "ds2gru":
            step = lambda g, h: _gru_step(g, h, U, b, candidate=clipped_relu)
        else:
            step = lambda g, h: clipped_relu(g + F.linear(h, U, b))
        return _unroll(gx, step, gx.new_zeros(gx.shape[1], self.hidden_size))

    def _recur_fused(self, gx, lengths):
        """The fast path: every direction's GRU recurrence at once from the projection ``gx`` ``(T, B, D * 3H)``;
        same result as :meth:`_recur` per direction.  Training on the CPU, compiled (the reversal of the backward
        direction and the masking inside the kernel); elsewhere :func:`_fused_gru`."""
        weight, bias = torch.stack(list(self.weight_hh)), torch.stack(list(self.bias_hh))
        if self.compiled and _compiled_gru_applies(gx, weight, bias):
            states = _gru_kernel.CompiledGRURecurrence.apply(gx, lengths, weight, bias)   # (T, D, B, H)
            return list(states.unbind(1))
        seqs = [g if d == 0 else reverse_padded(g, lengths) for d, g in enumerate(gx.split(self.gate_size, dim=-1))]
        states = _fused_gru(torch.stack(seqs, dim=1), weight, bias)                # (T, D, B, H)
        return [states[:, 0]] + [reverse_padded(states[:, d], lengths) for d in range(1, len(seqs))]

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``x`` ``(T, B, input_size)`` -> ``(T, B, output_size)``, 0 at padded frames."""
        if self.batch_norm == "input":
            x = self.bn(x, lengths)
        gx = F.linear(x, self.weight_ih, self.bias_ih)             # (T, B, directions * G)
        if self.batch_norm == "wx":
            gx = self.bn(gx, lengths)
        valid = _valid(lengths, x.shape[0], gx)
        projections = gx.split(self.gate_size, dim=-1)
        if self.gru_layer_fn is not None:                          # an injected gru_layer runs each direction
            eye = torch.eye(self.gate_size, dtype=gx.dtype, device=gx.device)    # W x is done: pass it through
            outs = [self.gru_layer_fn(g, lengths, eye, self.weight_hh[d], None, self.bias_hh[d], reverse=d == 1)
                    for d, g in enumerate(projections)]
        elif self.fused and self.rnn_type == "gru":
            outs = self._recur_fused(gx, lengths)
        else:                                                      # backward: each sequence from its own end
            outs = [self._recur(g, 0, lengths) if d == 0 else
                    reverse_padded(self._recur(reverse_padded(g, lengths), d, lengths), lengths)
                    for d, g in enumerate(projections)]
        out = outs[0] + outs[1] if len(outs) == 2 and self.merge == "sum" else torch.cat(outs, dim=-1)
        return out.masked_fill(~valid, 0.0)


# ----------------------------------------------------------------------------- row convolution
def row_conv(x: torch.Tensor, weight: torch.Tensor, lengths) -> torch.Tensor:
    """Lookahead convolution (DS2 section 3.7): ``out[t, b, i] = sum_j weight[j, i] * x[t + j, b, i]``.

    Args:
        x: ``(T, B, H)``; weight: ``(tau + 1, H)``; lengths: ``(B,)``.

    Frames ``t + j >= lengths[b]`` count as 0, so the future of one utterance never leaks
    from padding or batch mates; outputs at padded frames are 0.
    """
    check_tensor(x, "x", 3, floating=True)
    check_tensor(weight, "weight", 2, floating=True)
    T, B, H = x.shape
    if weight.shape[1] != H:
        raise ValueError(f"weight must be (tau + 1, {H}) to match x's {H} features, got {tuple(weight.shape)}")
    lengths = check_lengths(lengths, B, T)
    valid = _valid(lengths, T, x)
    x = x.masked_fill(~valid, 0.0)                                    # nothing past the end
    context = weight.shape[0]
    padded = F.pad(x, (0, 0, 0, 0, 0, context - 1))                  # (T + tau, B, H)
    out = sum(weight[j] * padded[j : j + T] for j in range(context))
    return out.masked_fill(~valid, 0.0)


class RowConv(nn.Module):
    """Module form of :func:`row_conv` with ``tau`` future frames of context.

    ``fn``: an implementation of :func:`row_conv`'s contract to compute it with (lesson 11 plugs
    the student's in); ``None``: the reference's own.
    """

    def __init__(self, hidden_size: int, lookahead: int, fn=None):
        super().__init__()
        if lookahead < 0:
            raise ValueError(f"lookahead must be >= 0, got {lookahead}")
        if fn is not None and not callable(fn):
            raise ValueError(f"fn must be a function with row_conv's contract (x, weight, lengths), got {fn!r}")
        self.fn = fn
        self.weight = nn.Parameter(torch.empty(lookahead + 1, hidden_size))
        nn.init.uniform_(self.weight, -1.0 / math.sqrt(lookahead + 1), 1.0 / math.sqrt(lookahead + 1))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return (self.fn or row_conv)(x, self.weight, lengths)
