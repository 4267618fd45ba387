"""Where training runs and in what precision: ``--device`` and ``--amp`` of ``reference.train``.

* :func:`pick_device` — ``'auto'`` (CUDA, else Apple's MPS, else the CPU), ``'cpu'``, ``'cuda'``,
  ``'cuda:1'`` or ``'mps'``, with a clear error when the device is not there.
* :class:`Amp` — automatic mixed precision: the forward pass under ``torch.autocast`` in bfloat16
  where the device has it, else float16 with a ``GradScaler`` (float16's narrow range would turn
  small gradients into 0 without one).  The CTC loss stays in float32: the model upcasts its
  logits before the log-softmax (``F.ctc_loss`` has no half-precision CUDA kernel), and
  sequence-wise BatchNorm computes its statistics in float32.
"""
from __future__ import annotations

import contextlib

import torch

__all__ = ["pick_device", "Amp"]

DEVICES = ("auto", "cpu", "cuda", "mps")


def pick_device(name: str = "auto") -> torch.device:
    """The ``torch.device`` for ``name``; ``ValueError`` says why one that was asked for is unavailable."""
    kind = str(name).split(":")[0]
    if kind not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)} (or cuda:N), got {name!r}")
    mps = getattr(torch.backends, "mps", None)
    mps_ok = bool(mps and mps.is_available())
    if kind == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if mps_ok else "cpu")
    if kind == "cuda" and not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        raise ValueError(f"--device {name}: no CUDA GPU is visible (torch {torch.__version__}, {build}); "
                         "use --device cpu, or install torch's CUDA build on a machine with an NVIDIA GPU")
    if kind == "mps" and not mps_ok:
        raise ValueError(f"--device mps: Apple's Metal backend is not available on this machine; use --device cpu")
    return torch.device(name)


class Amp:
    """Mixed precision for one device: ``with amp.autocast(): ...`` and, for float16, ``amp.scaler``.

    ``dtype``: bfloat16 on CPUs and on GPUs that support it (Ampere and later), float16 otherwise
    (older GPUs, MPS), which then needs loss scaling: ``scaler`` is a ``torch.amp.GradScaler``
    (``None`` for bfloat16, whose range is float32's).
    """

    def __init__(self, device: torch.device | str):
        device = torch.device(device)
        self.device_type = device.type
        if device.type == "cuda":
            bf16 = torch.cuda.is_bf16_supported()
        else:
            bf16 = device.type == "cpu"
        self.dtype = torch.bfloat16 if bf16 else torch.float16
        self.scaler = None if bf16 else torch.amp.GradScaler(device.type)

    def autocast(self):
        return torch.autocast(self.device_type, dtype=self.dtype)

    def __repr__(self) -> str:
        return f"Amp({self.device_type}, {str(self.dtype).replace('torch.', '')}{', GradScaler' if self.scaler else ''})"


def autocast(amp: Amp | None):
    """``amp.autocast()``, or a context that does nothing when ``amp`` is None."""
    return amp.autocast() if amp is not None else contextlib.nullcontext()
