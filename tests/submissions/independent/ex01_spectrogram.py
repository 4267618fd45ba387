"""Independent ex01: framing by an index matrix, power as real^2 + imag^2."""
import torch


def _audio(audio, need):
    if not isinstance(audio, torch.Tensor) or audio.dim() != 1:
        raise ValueError(f"audio must be a 1-D tensor, got {getattr(audio, 'shape', type(audio))}")
    if audio.numel() < need:
        raise ValueError(f"audio has {audio.numel()} samples, fewer than one frame ({need})")
    return audio


def frame_signal(audio, frame_length, hop_length):
    audio = _audio(audio, frame_length)
    n = 1 + (audio.numel() - frame_length) // hop_length
    starts = torch.arange(n) * hop_length
    return audio[starts.unsqueeze(1) + torch.arange(frame_length).unsqueeze(0)]


def compute_spectrogram(audio, sample_rate=16000, n_fft=None, window_ms=20.0, stride_ms=10.0, eps=1e-10,
                        normalize=True):
    win = int(round(sample_rate * window_ms / 1000))
    hop = int(round(sample_rate * stride_ms / 1000))
    if n_fft is None:
        n_fft = win
    win = min(win, n_fft)
    frames = frame_signal(audio, win, hop)
    X = torch.fft.rfft(frames * torch.hann_window(win, periodic=True, dtype=frames.dtype), n=n_fft)
    spec = torch.log(X.real * X.real + X.imag * X.imag + eps).t()
    if normalize:
        mu = spec.mean()
        sd = ((spec - mu) ** 2).sum().div(spec.numel() - 1).sqrt()
        spec = (spec - mu) / torch.clamp(sd, min=1e-5)
    return spec.contiguous()
