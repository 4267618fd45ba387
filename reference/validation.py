"""Input checks shared by the reference: clear ``ValueError``s instead of deep torch tracebacks."""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["check_audio", "check_tensor", "check_lengths"]


def check_audio(audio, min_samples: int = 1, what: str = "audio") -> torch.Tensor:
    """Return ``audio`` as a 1-D floating tensor, or raise a ``ValueError`` saying what is wrong."""
    if isinstance(audio, np.ndarray):
        audio = torch.from_numpy(audio)
    if not isinstance(audio, torch.Tensor):
        raise ValueError(f"{what} must be a 1-D torch.Tensor, got {type(audio).__name__}")
    if audio.dim() != 1:
        raise ValueError(f"{what} must be 1-D (n_samples,), got shape {tuple(audio.shape)}")
    if not audio.is_floating_point():
        raise ValueError(
            f"{what} must be a floating tensor in [-1, 1], got dtype {audio.dtype} "
            "(convert int16 PCM with audio.float() / 32768)"
        )
    if audio.numel() < min_samples:
        raise ValueError(
            f"{what} has {audio.numel()} samples, shorter than one frame of {min_samples} samples"
        )
    return audio


def check_tensor(x, name: str, dim: int | tuple[int, ...], floating: bool | None = None) -> torch.Tensor:
    """Check rank (and optionally floating-ness) of a tensor argument."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    dims = (dim,) if isinstance(dim, int) else dim
    if x.dim() not in dims:
        raise ValueError(f"{name} must have {' or '.join(map(str, dims))} dimensions, got shape {tuple(x.shape)}")
    if floating is True and not x.is_floating_point():
        raise ValueError(f"{name} must be a floating tensor, got dtype {x.dtype}")
    if floating is False and (x.is_floating_point() or x.is_complex()):
        raise ValueError(f"{name} must be an integer tensor, got dtype {x.dtype}")
    return x


def check_lengths(lengths, batch_size: int, max_len: int, name: str = "lengths") -> torch.Tensor:
    """``lengths`` as an int64 ``(B,)`` tensor with ``1 <= lengths[b] <= max_len``."""
    if not isinstance(lengths, torch.Tensor):
        lengths = torch.as_tensor(lengths)
    if lengths.dim() != 1 or lengths.numel() != batch_size:
        raise ValueError(f"{name} must have shape ({batch_size},), got {tuple(lengths.shape)}")
    if lengths.is_floating_point():
        raise ValueError(f"{name} must be integers, got dtype {lengths.dtype}")
    lengths = lengths.long()
    if batch_size and (int(lengths.min()) < 0 or int(lengths.max()) > max_len):
        raise ValueError(f"{name} must lie in [0, {max_len}], got {lengths.tolist()}")
    return lengths
