"""Independent ex08: SortaGrad via sorted(range(n), key=...), collating by F.pad."""
from types import SimpleNamespace

import torch
import torch.nn.functional as F


def _gen(seed, epoch):
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))


def _by_length(dataset):
    n = [int(s.audio.numel()) for s in dataset]
    return sorted(range(len(n)), key=lambda i: (n[i], i))


def sortagrad_sampler(dataset, epoch, seed=0):
    if epoch < 0:
        raise ValueError("epoch must be >= 0")
    if epoch == 0:
        return _by_length(dataset)
    return torch.randperm(len(dataset), generator=_gen(seed, epoch)).tolist()


def sortagrad_batches(dataset, batch_size, epoch, seed=0):
    order = _by_length(dataset)
    chunks = [order[i: i + batch_size] for i in range(0, len(order), batch_size)]
    if epoch == 0:
        return chunks
    return [chunks[i] for i in torch.randperm(len(chunks), generator=_gen(seed, epoch)).tolist()]


def _spectrogram(audio, sample_rate, n_fft):
    win = int(round(sample_rate * 0.02))
    hop = int(round(sample_rate * 0.01))
    n_fft = win if n_fft is None else n_fft
    win = min(win, n_fft)
    frames = audio.unfold(0, win, hop)
    power = torch.fft.rfft(frames * torch.hann_window(win, dtype=audio.dtype), n=n_fft).abs().pow(2)
    s = torch.log(power + 1e-10).T
    return (s - s.mean()) / s.std().clamp_min(1e-5)


def collate_batch(samples, encoder, n_fft=None):
    specs = [_spectrogram(s.audio, s.sample_rate, n_fft) for s in samples]
    ids = [encoder.encode(s.transcript) for s in samples]
    T = max(x.shape[1] for x in specs)
    S = max(len(t) for t in ids)
    features = torch.stack([F.pad(x, (0, T - x.shape[1])) for x in specs]).unsqueeze(1)
    targets = torch.stack([F.pad(torch.tensor(t, dtype=torch.long), (0, S - len(t))) for t in ids])
    return SimpleNamespace(features=features, feature_lengths=torch.tensor([x.shape[1] for x in specs]),
                           targets=targets, target_lengths=torch.tensor([len(t) for t in ids]),
                           transcripts=[s.transcript for s in samples])
