"""Self-tests of the autograder: solutions, untouched stubs, mutants, a killed and resumed batch.

One batch run grades every submission here (the solutions, the stubs and each mutant as one
"student"), with ``--jobs 2``; it is killed once mid-way and started again, which is the
resumability test.  The other tests read the per-student reports.
"""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable

# ----------------------------------------------------------------------------- the mutants
# (exercise file, mutant name, code appended to a copy of the solution, text the feedback must contain)
# Appending a redefinition is a plausible student bug that does not depend on the solution's exact text.
MUTANTS = [
    ("ex01_spectrogram", "off_by_one_frames", """
def frame_signal(audio, frame_length, hop_length):
    audio = _check_audio(audio, frame_length)
    n = (audio.numel() - frame_length) // hop_length
    return torch.stack([audio[i * hop_length: i * hop_length + frame_length] for i in range(n)]) if n else audio.new_zeros(0, frame_length)
""", "off-by-one frame count"),
    ("ex01_spectrogram", "symmetric_window", """
def compute_spectrogram(audio, sample_rate=16000, n_fft=None, window_ms=20.0, stride_ms=10.0, eps=1e-10, normalize=True):
    win, hop, n_fft = _window_and_hop(sample_rate, window_ms, stride_ms, n_fft)
    audio = _check_audio(audio, win)
    frames = frame_signal(audio, win, hop)
    spec = torch.fft.rfft(frames * torch.hann_window(win, periodic=False), n=n_fft, dim=-1)
    s = torch.log(spec.abs() ** 2 + eps).T
    if normalize:
        s = (s - s.mean()) / s.std().clamp_min(1e-5)
    return s.contiguous()
""", "periodic Hann window"),
    ("ex01_spectrogram", "per_bin_normalisation", """
def compute_spectrogram(audio, sample_rate=16000, n_fft=None, window_ms=20.0, stride_ms=10.0, eps=1e-10, normalize=True):
    win, hop, n_fft = _window_and_hop(sample_rate, window_ms, stride_ms, n_fft)
    audio = _check_audio(audio, win)
    frames = frame_signal(audio, win, hop)
    spec = torch.fft.rfft(frames * torch.hann_window(win, periodic=True), n=n_fft, dim=-1)
    s = torch.log(spec.abs() ** 2 + eps).T
    if normalize:
        s = (s - s.mean(1, keepdim=True)) / s.std(1, keepdim=True).clamp_min(1e-5)
    return s.contiguous()
""", "not per frequency bin"),
    ("ex02_ctc_decoding", "drop_blanks_first", """
def ctc_collapse(ids, blank=0):
    kept = [int(i) for i in ids if int(i) != blank]
    return [x for k, x in enumerate(kept) if k == 0 or kept[k - 1] != x]
""", "dropped the blanks before merging"),
    ("ex02_ctc_decoding", "ignores_lengths", """
_orig_greedy = greedy_decode
def greedy_decode(log_probs, encoder, lengths=None):
    return _orig_greedy(log_probs, encoder, None)
""", "padded frames"),
    ("ex03_wer", "per_utterance_wer", """
def word_error_rate(refs, hyps):
    refs, hyps = list(refs), list(hyps)
    return sum(edit_distance(r.split(), h.split()) / len(r.split()) for r, h in zip(refs, hyps)) / len(refs)
""", "averaged the WER of each utterance"),
    ("ex03_wer", "substitution_costs_two", """
def edit_distance(ref, hyp):
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i]
        for j, h in enumerate(hyp, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (0 if r == h else 2)))
        prev = cur
    return prev[-1]
""", "substitution costs 1"),
    ("ex04_ctc_loss", "no_skip_transition", """
def ctc_log_alpha(log_probs, target, blank=0):
    ext = extend_with_blanks(target, blank)
    T, L = log_probs.shape[0], len(ext)
    rows = [torch.full((L,), float('-inf'), dtype=log_probs.dtype)]
    rows[0][0] = log_probs[0, ext[0]]
    if L > 1:
        rows[0][1] = log_probs[0, ext[1]]
    for t in range(1, T):
        prev = rows[-1]
        one = torch.cat([prev.new_full((1,), float('-inf')), prev[:-1]])
        rows.append(torch.logaddexp(prev, one) + log_probs[t, ext])
    return torch.stack(rows)
""", "never skip over a blank"),
    ("ex04_ctc_loss", "mean_without_target_lengths", """
_orig_ctc_loss = ctc_loss
def ctc_loss(log_probs, targets, input_lengths, target_lengths, blank=0, reduction="mean"):
    if reduction == "mean":
        return _orig_ctc_loss(log_probs, targets, input_lengths, target_lengths, blank, "none").mean()
    return _orig_ctc_loss(log_probs, targets, input_lengths, target_lengths, blank, reduction)
""", "divides each loss by its target length"),
    ("ex05_conv", "unclipped_relu", """
def clipped_relu(x, ceiling=20.0):
    return torch.relu(x)
""", "not clipped"),
    ("ex05_conv", "length_off_by_one", """
def conv_output_length(length, kernel_size, stride=1, padding=0, dilation=1):
    span = dilation * (kernel_size - 1) + 1
    if isinstance(length, torch.Tensor):
        return torch.div(length + 2 * padding - span, stride, rounding_mode="floor")
    return (length + 2 * padding - span) // stride
""", "off by one"),
    ("ex06_bigru", "concatenated_directions", """
def bidirectional_gru(x, lengths, forward_weights, backward_weights):
    return torch.cat([gru_layer(x, lengths, *forward_weights), gru_layer(x, lengths, *backward_weights, reverse=True)], -1)
""", "you concatenated them"),
    ("ex06_bigru", "reverse_from_padded_end", """
_orig_gru_layer = gru_layer
def gru_layer(x, lengths, weight_ih, weight_hh, bias_ih=None, bias_hh=None, reverse=False):
    if not reverse:
        return _orig_gru_layer(x, lengths, weight_ih, weight_hh, bias_ih, bias_hh)
    T = x.shape[0]
    lengths = torch.as_tensor(lengths)
    out = _orig_gru_layer(x.flip(0), torch.full_like(lengths, T), weight_ih, weight_hh, bias_ih, bias_hh).flip(0)
    return out * (torch.arange(T)[:, None] < lengths[None, :]).unsqueeze(2)
""", "starts at the padded end"),
    ("ex06_bigru", "swapped_update_gate", """
def gru_cell(x, h, weight_ih, weight_hh, bias_ih=None, bias_hh=None):
    gx = torch.nn.functional.linear(x, weight_ih, bias_ih)
    gh = torch.nn.functional.linear(h, weight_hh, bias_hh)
    rx, zx, nx = gx.chunk(3, -1)
    rh, zh, nh = gh.chunk(3, -1)
    r, z = torch.sigmoid(rx + rh), torch.sigmoid(zx + zh)
    n = torch.tanh(nx + r * nh)
    return z * n + (1 - z) * h
""", "you swapped z and 1-z"),
    ("ex07_batchnorm", "per_timestep_statistics", """
_Base = SequenceWiseBatchNorm
class SequenceWiseBatchNorm(_Base):
    def forward(self, x, lengths):
        T, B, H = x.shape
        mask = (torch.arange(T)[:, None] < torch.as_tensor(lengths)[None, :]).unsqueeze(-1).to(x.dtype)
        if self.training:
            n = mask.sum(1, keepdim=True).clamp_min(1)
            mean = (x * mask).sum(1, keepdim=True) / n
            var = ((x - mean) ** 2 * mask).sum(1, keepdim=True) / n
        else:
            mean, var = self.running_mean, self.running_var
        return ((x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias) * mask
""", "per time step"),
    ("ex07_batchnorm", "padding_in_statistics", """
_Base = SequenceWiseBatchNorm
class SequenceWiseBatchNorm(_Base):
    def forward(self, x, lengths):
        T = x.shape[0]
        y = super().forward(x, torch.full((x.shape[1],), T, dtype=torch.long))
        return y * (torch.arange(T)[:, None] < torch.as_tensor(lengths)[None, :]).unsqueeze(-1)
""", "padded frames entered"),
    ("ex08_sortagrad", "sorts_every_epoch", """
_orig_sampler = sortagrad_sampler
def sortagrad_sampler(dataset, epoch, seed=0):
    return _orig_sampler(dataset, 0, seed)
""", "sorts only in epoch 0"),
    ("ex08_sortagrad", "batches_sorted_every_epoch", """
_orig_batches = sortagrad_batches
def sortagrad_batches(dataset, batch_size, epoch, seed=0):
    return _orig_batches(dataset, batch_size, 0, seed)
""", "kept the epoch-0 order"),
    ("ex08_sortagrad", "global_rng", """
_orig_sampler = sortagrad_sampler
def sortagrad_sampler(dataset, epoch, seed=0):
    if epoch == 0:
        return _orig_sampler(dataset, 0, seed)
    torch.manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(len(dataset)).tolist()
""", "global torch random state"),
    ("ex09_training", "no_gradient_clipping", """
def train_step(model, batch, optimizer, max_grad_norm=400.0):
    model.train()
    optimizer.zero_grad()
    log_probs, out_lengths = model(batch.features, batch.feature_lengths)
    loss = F.ctc_loss(log_probs, batch.targets, out_lengths, batch.target_lengths, reduction="mean", zero_infinity=True)
    value = float(loss)
    if not math.isfinite(value):
        optimizer.zero_grad()
        return value
    loss.backward()
    optimizer.step()
    return value
""", "clip the gradient norm"),
    ("ex09_training", "per_batch_wer", """
def evaluate(model, batches, encoder):
    was = model.training
    model.eval()
    wers = []
    with torch.no_grad():
        for b in batches:
            lp, ol = model(b.features, b.feature_lengths)
            wers.append(_word_error_rate(list(b.transcripts), _greedy_decode(lp, encoder, ol)))
    model.train(was)
    return sum(wers) / len(wers)
""", "averaged the WER of each batch"),
    ("ex01_spectrogram", "n_over_hop_frames", """
def frame_signal(audio, frame_length, hop_length):
    audio = _check_audio(audio, frame_length)
    n = audio.numel() // hop_length
    idx = torch.arange(n)[:, None] * hop_length + torch.arange(frame_length)[None, :]
    return audio[idx]
""", "N // hop_length frames run past the end"),
    ("ex01_spectrogram", "spectrogram_without_log", """
def compute_spectrogram(audio, sample_rate=16000, n_fft=None, window_ms=20.0, stride_ms=10.0, eps=1e-10, normalize=True):
    win, hop, n_fft = _window_and_hop(sample_rate, window_ms, stride_ms, n_fft)
    audio = _check_audio(audio, win)
    frames = frame_signal(audio, win, hop)
    spec = torch.fft.rfft(frames * torch.hann_window(win, periodic=True), n=n_fft, dim=-1)
    s = (spec.abs() ** 2).T
    if normalize:
        s = (s - s.mean()) / s.std().clamp_min(1e-5)
    return s.contiguous()
""", "you forgot the log"),
    ("ex01_spectrogram", "biased_std", """
_orig_spec = compute_spectrogram
def compute_spectrogram(audio, sample_rate=16000, n_fft=None, window_ms=20.0, stride_ms=10.0, eps=1e-10, normalize=True):
    s = _orig_spec(audio, sample_rate, n_fft, window_ms, stride_ms, eps, normalize=False)
    if normalize:
        s = (s - s.mean()) / s.std(unbiased=False).clamp_min(1e-5)
    return s
""", "unbiased"),
    ("ex02_ctc_decoding", "no_collapse_in_greedy", """
def greedy_decode(log_probs, encoder, lengths=None):
    T, B, V = log_probs.shape
    lengths = [T] * B if lengths is None else torch.as_tensor(lengths).tolist()
    best = log_probs.argmax(-1)
    return [encoder.decode(best[: lengths[b], b].tolist()) for b in range(B)]
""", "did not collapse the path"),
    ("ex02_ctc_decoding", "blank_hard_coded", """
def ctc_collapse(ids, blank=0):
    ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
    out, prev = [], None
    for i in ids:
        if i != prev and i != 0:
            out.append(int(i))
        prev = i
    return out
""", "instead of the blank argument"),
    ("ex03_wer", "cer_by_hypothesis_characters", """
def char_error_rate(refs, hyps):
    refs, hyps = _check_pair(refs, hyps)
    refs, hyps = [r.strip() for r in refs], [h.strip() for h in hyps]
    return sum(edit_distance(r, h) for r, h in zip(refs, hyps)) / sum(len(h) for h in hyps)
""", "not the hypothesis' characters"),
    ("ex03_wer", "zero_division_instead_of_value_error", """
def word_error_rate(refs, hyps):
    refs, hyps = _check_pair(refs, hyps)
    return sum(edit_distance(r.split(), h.split()) for r, h in zip(refs, hyps)) / sum(len(r.split()) for r in refs)
""", "but it raised ZeroDivisionError"),
    ("ex04_ctc_loss", "max_instead_of_logsumexp", """
def ctc_log_alpha(log_probs, target, blank=0):
    ext = extend_with_blanks(target, blank)
    T, L = log_probs.shape[0], len(ext)
    neg = float('-inf')
    skip = torch.tensor([s >= 2 and ext[s] != blank and ext[s] != ext[s - 2] for s in range(L)])
    row = torch.full((L,), neg, dtype=log_probs.dtype)
    row[0] = log_probs[0, ext[0]]
    if L > 1:
        row[1] = log_probs[0, ext[1]]
    rows = [row]
    for t in range(1, T):
        prev = rows[-1]
        one = torch.cat([prev.new_full((1,), neg), prev[:-1]])
        two = torch.where(skip, torch.cat([prev.new_full((2,), neg), prev[:-2]])[:L], prev.new_full((L,), neg))
        rows.append(torch.maximum(torch.maximum(prev, one), two) + log_probs[t, ext])
    return torch.stack(rows)
""", "took the max of the incoming alphas"),
    ("ex04_ctc_loss", "final_blank_only", """
def ctc_loss(log_probs, targets, input_lengths, target_lengths, blank=0, reduction="mean"):
    T, B, V = log_probs.shape
    il, tl = torch.as_tensor(input_lengths).tolist(), torch.as_tensor(target_lengths).tolist()
    targets = torch.as_tensor(targets)
    out, off = [], 0
    for b in range(B):
        y = targets[b, : tl[b]] if targets.dim() == 2 else targets[off: off + tl[b]]
        off += tl[b]
        out.append(-ctc_log_alpha(log_probs[: il[b], b], y, blank)[-1, -1])
    loss = torch.stack(out)
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    return (loss / torch.as_tensor(tl).clamp_min(1)).mean()
""", "the final blank OR the final symbol"),
    ("ex05_conv", "mask_by_multiplying", """
def mask_time(x, lengths):
    lengths = torch.as_tensor(lengths)
    return x * (torch.arange(x.shape[-1])[None, :] < lengths[:, None])[:, None, None, :].to(x.dtype)
""", "turns an inf in the padding into nan"),
    ("ex05_conv", "relu_without_floor", """
def clipped_relu(x, ceiling=20.0):
    return torch.clamp(x, max=ceiling)
""", "you forgot the ReLU"),
    ("ex06_bigru", "reset_gate_before_matmul", """
def gru_cell(x, h, weight_ih, weight_hh, bias_ih=None, bias_hh=None):
    gx = torch.nn.functional.linear(x, weight_ih, bias_ih)
    rx, zx, nx = gx.chunk(3, -1)
    wr, wz, wn = weight_hh.chunk(3, 0)
    br, bz, bn = bias_hh.chunk(3) if bias_hh is not None else (None, None, None)
    r = torch.sigmoid(rx + torch.nn.functional.linear(h, wr, br))
    z = torch.sigmoid(zx + torch.nn.functional.linear(h, wz, bz))
    n = torch.tanh(nx + torch.nn.functional.linear(r * h, wn, bn))
    return (1 - z) * n + z * h
""", "AFTER the matrix product"),
    ("ex07_batchnorm", "running_statistics_never_updated", """
_Base = SequenceWiseBatchNorm
class SequenceWiseBatchNorm(_Base):
    def forward(self, x, lengths):
        T, B, H = x.shape
        mask = (torch.arange(T)[:, None] < torch.as_tensor(lengths)[None, :]).unsqueeze(-1).to(x.dtype)
        if self.training:
            n = mask.sum()
            mean = (x * mask).sum((0, 1)) / n
            var = ((x - mean) ** 2 * mask).sum((0, 1)) / n
        else:
            mean, var = self.running_mean, self.running_var
        return ((x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias) * mask
""", "never updated"),
    ("ex07_batchnorm", "biased_running_variance", """
_Base = SequenceWiseBatchNorm
class SequenceWiseBatchNorm(_Base):
    def forward(self, x, lengths):
        T, B, H = x.shape
        mask = (torch.arange(T)[:, None] < torch.as_tensor(lengths)[None, :]).unsqueeze(-1).to(x.dtype)
        if self.training:
            n = mask.sum()
            mean = (x * mask).sum((0, 1)) / n
            var = ((x - mean) ** 2 * mask).sum((0, 1)) / n
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(m * mean)
                self.running_var.mul_(1 - m).add_(m * var)
        else:
            mean, var = self.running_mean, self.running_var
        return ((x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias) * mask
""", "UNBIASED variance"),
    ("ex08_sortagrad", "shuffle_from_global_rng", """
_orig_sampler = sortagrad_sampler
def sortagrad_sampler(dataset, epoch, seed=0):
    if epoch == 0:
        return _orig_sampler(dataset, 0, seed)
    return torch.randperm(len(dataset)).tolist()
""", "global torch random generator"),
    ("ex08_sortagrad", "decreasing_length", """
def sortagrad_sampler(dataset, epoch, seed=0):
    if epoch == 0:
        return sorted(range(len(dataset)), key=lambda i: (_audio_length(dataset[i]), i), reverse=True)
    return torch.randperm(len(dataset), generator=_epoch_generator(seed, epoch)).tolist()
""", "INCREASING length"),
    ("ex09_training", "gradients_never_cleared", """
def train_step(model, batch, optimizer, max_grad_norm=400.0):
    model.train()
    log_probs, out_lengths = model(batch.features, batch.feature_lengths)
    loss = F.ctc_loss(log_probs, batch.targets, out_lengths, batch.target_lengths, reduction="mean", zero_infinity=True)
    value = float(loss)
    if not math.isfinite(value):
        return value
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    return value
""", "optimizer.zero_grad()"),
    ("ex09_training", "clips_each_value", """
def train_step(model, batch, optimizer, max_grad_norm=400.0):
    model.train()
    optimizer.zero_grad()
    log_probs, out_lengths = model(batch.features, batch.feature_lengths)
    loss = F.ctc_loss(log_probs, batch.targets, out_lengths, batch.target_lengths, reduction="mean", zero_infinity=True)
    value = float(loss)
    if not math.isfinite(value):
        optimizer.zero_grad()
        return value
    loss.backward()
    torch.nn.utils.clip_grad_value_(model.parameters(), max_grad_norm)
    optimizer.step()
    return value
""", "clip_grad_value_"),
    ("ex09_training", "feature_lengths_to_the_loss", """
def train_step(model, batch, optimizer, max_grad_norm=400.0):
    model.train()
    optimizer.zero_grad()
    log_probs, out_lengths = model(batch.features, batch.feature_lengths)
    loss = F.ctc_loss(log_probs, batch.targets, batch.feature_lengths, batch.target_lengths, reduction="mean", zero_infinity=True)
    value = float(loss)
    if not math.isfinite(value):
        optimizer.zero_grad()
        return value
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    return value
""", "OUTPUT lengths"),
    ("ex09_training", "evaluate_with_gradients", """
def evaluate(model, batches, encoder):
    was = model.training
    model.eval()
    refs, hyps = [], []
    for b in batches:
        lp, ol = model(b.features, b.feature_lengths)
        hyps += _greedy_decode(lp.detach(), encoder, ol)
        refs += list(b.transcripts)
    model.train(was)
    return _word_error_rate(refs, hyps)
""", "torch.no_grad()"),
    ("ex09_training", "evaluate_leaves_eval_mode", """
def evaluate(model, batches, encoder):
    model.eval()
    refs, hyps = [], []
    with torch.no_grad():
        for b in batches:
            lp, ol = model(b.features, b.feature_lengths)
            hyps += _greedy_decode(lp, encoder, ol)
            refs += list(b.transcripts)
    return _word_error_rate(refs, hyps)
""", "put it back in the mode it was in"),
    ("ex10_beam_search", "no_end_of_sentence", """
_orig_beam = prefix_beam_search
class _NoEnd:
    def __init__(self, lm):
        self.lm = lm
    def score(self, history, word):
        return self.lm.score(history, word)
    def end_score(self, history):
        return 0.0
def prefix_beam_search(log_probs, encoder, beam_width=16, lm=None, alpha=0.5, beta=1.0):
    return _orig_beam(log_probs, encoder, beam_width, None if lm is None else _NoEnd(lm), alpha, beta)
""", "end_score"),
    ("ex10_beam_search", "beta_per_character", "MUTANT_BEAM_PER_CHAR", "rewards WORDS"),
    ("ex11_row_conv", "taps_reversed", """
def row_conv(x, weight, lengths):
    T, K = x.shape[0], weight.shape[0]
    valid = (torch.arange(T)[:, None] < torch.as_tensor(lengths)[None, :]).unsqueeze(2).to(x.dtype)
    padded = torch.nn.functional.pad(x * valid, (0, 0, 0, 0, 0, K - 1))
    return sum(weight[K - 1 - j] * padded[j: j + T] for j in range(K)) * valid
""", "you reversed the taps"),
    ("ex10_beam_search", "merges_repeats_across_blanks", "MUTANT_BEAM_ACROSS", "merged repeats across a blank"),
    ("ex10_beam_search", "max_instead_of_sum", "MUTANT_BEAM_MAX", "(max, Viterbi)"),
    ("ex10_beam_search", "max_when_beams_merge", "MUTANT_BEAM_MERGE_MAX", "you kept the max"),
    ("ex11_row_conv", "reads_past_the_end", """
def row_conv(x, weight, lengths):
    T = x.shape[0]
    lengths = torch.as_tensor(lengths)
    padded = torch.nn.functional.pad(x, (0, 0, 0, 0, 0, weight.shape[0] - 1))
    out = sum(weight[j] * padded[j: j + T] for j in range(weight.shape[0]))
    return out * (torch.arange(T)[:, None] < lengths[None, :]).unsqueeze(2)
""", "read past the end"),
    ("ex11_row_conv", "looks_backwards", """
def row_conv(x, weight, lengths):
    T, K = x.shape[0], weight.shape[0]
    lengths = torch.as_tensor(lengths)
    valid = (torch.arange(T)[:, None] < lengths[None, :]).unsqueeze(2).to(x.dtype)
    padded = torch.nn.functional.pad(x * valid, (0, 0, 0, 0, K - 1, 0))
    return sum(weight[j] * padded[K - 1 - j: K - 1 - j + T] for j in range(K)) * valid
""", "looks AHEAD"),
    ("ex01_spectrogram", "no_eps_in_log", """
def compute_spectrogram(audio, sample_rate=16000, n_fft=None, window_ms=20.0, stride_ms=10.0, eps=1e-10, normalize=True):
    win, hop, n_fft = _window_and_hop(sample_rate, window_ms, stride_ms, n_fft)
    audio = _check_audio(audio, win)
    frames = frame_signal(audio, win, hop)
    spec = torch.fft.rfft(frames * torch.hann_window(win, periodic=True), n=n_fft, dim=-1)
    s = torch.log(spec.abs() ** 2).T
    if normalize:
        s = (s - s.mean()) / s.std().clamp_min(1e-5)
    return s.contiguous()
""", "add eps inside the log"),
    ("ex04_ctc_loss", "naive_logsumexp", """
def ctc_log_alpha(log_probs, target, blank=0):
    ext = extend_with_blanks(target, blank)
    T, L = log_probs.shape[0], len(ext)
    neg = float('-inf')
    skip = torch.tensor([s >= 2 and ext[s] != blank and ext[s] != ext[s - 2] for s in range(L)])
    row = torch.full((L,), neg, dtype=log_probs.dtype)
    row[0] = log_probs[0, ext[0]]
    if L > 1:
        row[1] = log_probs[0, ext[1]]
    rows = [row]
    for t in range(1, T):
        prev = rows[-1]
        one = torch.cat([prev.new_full((1,), neg), prev[:-1]])
        two = torch.where(skip, torch.cat([prev.new_full((2,), neg), prev[:-2]])[:L], prev.new_full((L,), neg))
        rows.append(torch.log(torch.exp(prev) + torch.exp(one) + torch.exp(two)) + log_probs[t, ext])
    return torch.stack(rows)
""", "log(sum(exp(...)))"),
    ("ex04_ctc_loss", "logsumexp_of_all_minus_inf", """
def ctc_log_alpha(log_probs, target, blank=0):
    ext = extend_with_blanks(target, blank)
    T, L = log_probs.shape[0], len(ext)
    neg = float('-inf')
    skip = torch.tensor([s >= 2 and ext[s] != blank and ext[s] != ext[s - 2] for s in range(L)])
    row = torch.full((L,), neg, dtype=log_probs.dtype)
    row[0] = log_probs[0, ext[0]]
    if L > 1:
        row[1] = log_probs[0, ext[1]]
    rows = [row]
    for t in range(1, T):
        prev = rows[-1]
        one = torch.cat([prev.new_full((1,), neg), prev[:-1]])
        two = torch.where(skip, torch.cat([prev.new_full((2,), neg), prev[:-2]])[:L], prev.new_full((L,), neg))
        rows.append(torch.logsumexp(torch.stack([prev, one, two]), 0) + log_probs[t, ext])
    return torch.stack(rows)
""", "use LOG_ZERO"),
    ("ex04_ctc_loss", "mean_summed_over_batch", """
_orig_ctc_loss = ctc_loss
def ctc_loss(log_probs, targets, input_lengths, target_lengths, blank=0, reduction="mean"):
    if reduction == "mean":
        per = _orig_ctc_loss(log_probs, targets, input_lengths, target_lengths, blank, "none")
        return (per / torch.as_tensor(target_lengths).clamp_min(1).to(per.dtype)).sum()
    return _orig_ctc_loss(log_probs, targets, input_lengths, target_lengths, blank, reduction)
""", "you summed them"),
    ("ex05_conv", "relu6", """
def clipped_relu(x, ceiling=20.0):
    return torch.clamp(x, 0.0, 6.0)
""", "ReLU6"),
    ("ex06_bigru", "padded_steps_output_the_state", """
def gru_layer(x, lengths, weight_ih, weight_hh, bias_ih=None, bias_hh=None, reverse=False):
    T, B, _ = x.shape
    lengths = torch.as_tensor(lengths)
    h = x.new_zeros(B, weight_hh.shape[1])
    out = [None] * T
    for t in (range(T - 1, -1, -1) if reverse else range(T)):
        valid = (t < lengths)[:, None]
        h = torch.where(valid, gru_cell(x[t], h, weight_ih, weight_hh, bias_ih, bias_hh), h)
        out[t] = h
    return torch.stack(out)
""", "output the state carried"),
    ("ex08_sortagrad", "features_normalised_after_padding", """
_orig_collate = collate_batch
def collate_batch(samples, encoder, n_fft=None):
    batch = _orig_collate(samples, encoder, n_fft)
    raw = [compute_spectrogram(s.audio, s.sample_rate, n_fft, normalize=False) for s in samples]
    feats = torch.zeros_like(batch.features)
    for b, r in enumerate(raw):
        feats[b, 0, :, : r.shape[1]] = r
    batch.features = (feats - feats.mean()) / feats.std()
    return batch
""", "normalised the padded batch"),
    # issue 18, the classic mistakes that still lost their points without a hint (docs/checks.md's table)
    ("ex04_ctc_loss", "padded_target_rows_used_whole", """
def ctc_loss(log_probs, targets, input_lengths, target_lengths, blank=0, reduction="mean"):
    targets, il, tl = torch.as_tensor(targets), torch.as_tensor(input_lengths), torch.as_tensor(target_lengths)
    starts = torch.cumsum(tl, 0) - tl
    losses = []
    for b in range(log_probs.shape[1]):
        y = targets[b] if targets.dim() == 2 else targets[int(starts[b]): int(starts[b] + tl[b])]
        alpha = ctc_log_alpha(log_probs[: int(il[b]), b], y, blank)
        losses.append(-torch.logsumexp(alpha[-1, -2:], 0))
    loss = torch.stack(losses)
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return (loss / tl.clamp_min(1).to(loss.dtype)).mean()
    return loss
""", "zero padding became labels"),
    ("ex06_bigru", "reverse_from_padded_end_over_zeros", """
_orig_gru_layer = gru_layer
def gru_layer(x, lengths, weight_ih, weight_hh, bias_ih=None, bias_hh=None, reverse=False):
    if not reverse:
        return _orig_gru_layer(x, lengths, weight_ih, weight_hh, bias_ih, bias_hh)
    T = x.shape[0]
    lengths = torch.as_tensor(lengths)
    mask = (torch.arange(T)[:, None] < lengths[None, :]).unsqueeze(2).to(x.dtype)
    out = _orig_gru_layer((x * mask).flip(0), torch.full_like(lengths, T), weight_ih, weight_hh, bias_ih,
                          bias_hh).flip(0)
    return out * mask
""", "zeroing the padded inputs does not help"),
    ("ex08_sortagrad", "feature_lengths_n_over_hop", """
_orig_collate = collate_batch
def collate_batch(samples, encoder, n_fft=None):
    batch = _orig_collate(samples, encoder, n_fft)
    batch.feature_lengths = torch.tensor([s.audio.numel() // round(s.sample_rate * 0.01) for s in samples])
    return batch
""", "not N // hop"),
    ("ex08_sortagrad", "feature_lengths_all_padded", """
_orig_collate = collate_batch
def collate_batch(samples, encoder, n_fft=None):
    batch = _orig_collate(samples, encoder, n_fft)
    batch.feature_lengths = torch.full((len(samples),), batch.features.shape[-1], dtype=torch.long)
    return batch
""", "not the padded length T"),
    ("ex09_training", "gradients_cleared_before_the_step", """
def train_step(model, batch, optimizer, max_grad_norm=400.0):
    model.train()
    optimizer.zero_grad()
    log_probs, out_lengths = model(batch.features, batch.feature_lengths)
    loss = F.ctc_loss(log_probs, batch.targets, out_lengths, batch.target_lengths, reduction="mean",
                      zero_infinity=True)
    value = float(loss.detach())
    if not math.isfinite(value):
        return value
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.zero_grad()
    optimizer.step()
    return value
""", "call optimizer.step() after clipping"),
    ("ex02_ctc_decoding", "greedy_collapses_twice", """
def greedy_decode(log_probs, encoder, lengths=None):
    T, B, _ = log_probs.shape
    best = log_probs.argmax(-1)
    lens = [T] * B if lengths is None else [int(n) for n in torch.as_tensor(lengths)]
    return [encoder.ctc_decode(ctc_collapse(best[: lens[b], b].tolist(), encoder.blank_idx)) for b in range(B)]
""", "collapsed twice"),
    ("ex08_sortagrad", "sorted_by_transcript_length", """
def sortagrad_sampler(dataset, epoch, seed=0):
    if epoch == 0:
        return sorted(range(len(dataset)), key=lambda i: len(dataset[i].transcript))
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(len(dataset), generator=g).tolist()
""", "not the transcript's"),
    ("ex11_row_conv", "row_conv_ignores_lengths", """
def row_conv(x, weight, lengths):
    T = x.shape[0]
    padded = torch.cat([x, x.new_zeros(weight.shape[0] - 1, *x.shape[1:])])
    return sum(weight[j] * padded[j: j + T] for j in range(weight.shape[0]))
""", "you ignored lengths"),
    ("ex04_ctc_loss", "log_zero_left_in_alphas", """
_orig_alpha = ctc_log_alpha
def ctc_log_alpha(log_probs, target, blank=0):
    alpha = _orig_alpha(log_probs, target, blank)
    return alpha.masked_fill(torch.isinf(alpha), LOG_ZERO)
""", "the finite LOG_ZERO"),
    ("ex04_ctc_loss", "impossible_target_is_zero", """
_orig_ctc_loss = ctc_loss
def ctc_loss(log_probs, targets, input_lengths, target_lengths, blank=0, reduction="mean"):
    loss = _orig_ctc_loss(log_probs, targets, input_lengths, target_lengths, blank, "none")
    loss = torch.where(torch.isinf(loss), torch.zeros_like(loss), loss)
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return (loss / torch.as_tensor(target_lengths).clamp_min(1).to(loss.dtype)).mean()
    return loss
""", "zero_infinity"),
    ("ex01_spectrogram", "frame_and_hop_swapped", """
def frame_signal(audio, hop_length, frame_length):
    audio = _check_audio(audio, hop_length)
    n = 1 + (audio.numel() - frame_length) // hop_length
    return torch.stack([audio[i * hop_length: i * hop_length + frame_length] for i in range(n)])
""", "you swapped frame_length and hop_length"),
    ("ex10_beam_search", "texts_stripped", """
_orig_beam = prefix_beam_search
def prefix_beam_search(log_probs, encoder, beam_width=16, lm=None, alpha=0.5, beta=1.0):
    return [(text.strip(), score) for text, score in _orig_beam(log_probs, encoder, beam_width, lm, alpha, beta)]
""", "you stripped the spaces at the ends"),
]

#: Plausible bugs that once lost points without a hint (or kept full marks); each must stay in the table.
REQUIRED_MUTANTS = {
    "max_instead_of_logsumexp",          # ex04: max instead of log-sum-exp in the alpha recursion
    "reset_gate_before_matmul",          # ex06: r applied to h before W_hn
    "running_statistics_never_updated",  # ex07
    "shuffle_from_global_rng",           # ex08: torch.randperm(n) without a generator
    "decreasing_length",                 # ex08: SortaGrad sorted longest first
    "spectrogram_without_log",           # ex01
    "cer_by_hypothesis_characters",      # ex03
    "n_over_hop_frames",                 # ex01: N // hop frames
    "gradients_never_cleared",           # ex09: no optimizer.zero_grad()
    "zero_division_instead_of_value_error",  # ex03: no reference words
    "no_eps_in_log",                     # ex01: log(0) on digital silence (issue 18)
    "naive_logsumexp",                   # ex04: log(sum(exp(...))) underflows (issue 18)
    "mean_summed_over_batch",            # ex04 (issue 18)
    "relu6",                             # ex05 (issue 18)
    "padded_steps_output_the_state",     # ex06 (issue 18)
    "features_normalised_after_padding", # ex08 (issue 18)
    "padded_target_rows_used_whole",     # ex04: targets[b] with its zero padding (issue 18, H18b)
    "reverse_from_padded_end_over_zeros",  # ex06: padded inputs zeroed, still started at T-1
    "feature_lengths_n_over_hop",        # ex08
    "feature_lengths_all_padded",        # ex08
    "gradients_cleared_before_the_step", # ex09: zero_grad() between backward() and step()
    "greedy_collapses_twice",            # ex02: ctc_collapse, then encoder.ctc_decode
    "sorted_by_transcript_length",       # ex08: SortaGrad by len(transcript)
    "row_conv_ignores_lengths",          # ex11: row_conv with no masking at all
    "log_zero_left_in_alphas",           # ex04: LOG_ZERO never turned back into -inf
    "impossible_target_is_zero",         # ex04: loss 0 (zero_infinity) for a target that cannot fit
    "frame_and_hop_swapped",             # ex01: frame_signal(audio, hop_length, frame_length)
    "texts_stripped",                    # ex10: ' cat' returned as 'cat'
}

# A compact prefix beam search (no LM) with a switchable mistake (used by four ex10 mutants).
_BEAM = """
import math as _m
def prefix_beam_search(log_probs, encoder, beam_width=16, lm=None, alpha=0.5, beta=1.0):
    NEG = float('-inf')
    def add(a, b):
        if a == NEG: return b
        if b == NEG: return a
        hi = max(a, b)
        return hi + _m.log(_m.exp(a - hi) + _m.exp(b - hi))
    comb = (lambda a, b: max(a, b)) if MISTAKE == 'max' else add
    wc = (lambda k: len(k)) if MISTAKE == 'per_char' else (lambda k: len(k.split()))
    lp = log_probs.double().tolist()
    beams = {'': (0.0, NEG)}
    for row in lp:
        nxt = {}
        def acc(k, pb, pnb):
            ob, onb = nxt.get(k, (NEG, NEG))
            merge = max if MISTAKE == 'merge_max' else comb
            nxt[k] = (merge(ob, pb), merge(onb, pnb))
        for prefix, (pb, pnb) in beams.items():
            tot = comb(pb, pnb)
            acc(prefix, tot + row[0], NEG)
            for c in range(1, len(row)):
                ch = encoder.decode([c])
                p = row[c]
                if prefix and prefix[-1] == ch:
                    if MISTAKE == 'across':
                        acc(prefix, NEG, tot + p)
                    else:
                        acc(prefix, NEG, pnb + p)
                        acc(prefix + ch, NEG, pb + p)
                else:
                    acc(prefix + ch, NEG, tot + p)
        scored = sorted(nxt.items(), key=lambda kv: -comb(*kv[1]) - beta * wc(kv[0]))
        beams = dict(scored[:beam_width])
    out = [(k, comb(*v) + beta * wc(k)) for k, v in beams.items()]
    out.sort(key=lambda r: (-r[1], r[0]))
    return out[:beam_width]
"""


def _mutant_code(code: str) -> str:
    if code == "MUTANT_BEAM_ACROSS":
        return "MISTAKE = 'across'\n" + _BEAM
    if code == "MUTANT_BEAM_MAX":
        return "MISTAKE = 'max'\n" + _BEAM
    if code == "MUTANT_BEAM_PER_CHAR":
        return "MISTAKE = 'per_char'\n" + _BEAM
    if code == "MUTANT_BEAM_MERGE_MAX":
        return "MISTAKE = 'merge_max'\n" + _BEAM
    return code


def make_submissions(base: Path, only: set | None = None) -> dict[str, Path]:
    """Student folders: the solutions, the untouched stubs and one folder per mutant (``only``: these names)."""
    subs = base / "submissions"
    subs.mkdir(parents=True)
    out = {}
    for name, src in (("solutions", ROOT / "solutions"), ("stubs", ROOT / "exercises")):
        if only is not None and name not in only:
            continue
        d = subs / name
        d.mkdir()
        for f in src.glob("ex[0-9][0-9]_*.py"):
            shutil.copy(f, d / f.name)
        out[name] = d
    for ex_file, mname, code, _ in MUTANTS:
        if only is not None and f"mutant-{ex_file[:4]}-{mname}" not in only:
            continue
        d = subs / f"mutant-{ex_file[:4]}-{mname}"
        d.mkdir()
        text = (ROOT / "solutions" / f"{ex_file}.py").read_text()
        (d / f"{ex_file}.py").write_text(text + "\n\n# --- mutant ---\n" + _mutant_code(code))
        out[d.name] = d
    return out


def _batch_cmd(subs: Path, csv_path: Path, jobs: int = 2, extra=()):
    from autograder.sandbox import bwrap
    sandbox = () if bwrap.probe()[0] else ("--no-sandbox",)   # batch refuses untrusted grading without bwrap
    return [PY, "-m", "autograder", "batch", str(subs), "--csv", str(csv_path), "--jobs", str(jobs),
            "--no-progress", *sandbox, *extra]


def _selected_submissions(session) -> set | None:
    """The submissions the selected tests read; ``None`` (all) when the resume test runs.

    ``pytest -k naive_logsumexp`` then grades one mutant, not the whole table."""
    out = set()
    for item in session.items:
        if item.fspath != __file__ and str(item.fspath) != __file__:
            continue
        name = getattr(item, "originalname", item.name)
        if name == "test_mutant_loses_points_with_a_named_mistake":
            p = item.callspec.params
            out.add(f"mutant-{p['ex_file'][:4]}-{p['name']}")
        elif name == "test_solutions_score_100":
            out.add("solutions")
        elif name == "test_stubs_score_0_not_implemented":
            out.add("stubs")
        elif name != "test_three_mutants_per_exercise_and_the_named_common_bugs":
            return None
    return out


@pytest.fixture(scope="module")
def graded(request, tmp_path_factory):
    """Run the batch over the submissions (all of them for the full file); kill it once mid-way, then resume."""
    base = tmp_path_factory.mktemp("grading")
    make_submissions(base, _selected_submissions(request.session))
    subs, csv_path = base / "submissions", base / "grades.csv"
    reports = base / "grades-reports"
    cmd = _batch_cmd(subs, csv_path)
    tmp = base / "tmp"  # the workers' sandboxes and the zygote's folder: found by cwd below
    tmp.mkdir()
    env = dict(os.environ, TMPDIR=str(tmp))
    p = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         env=env)
    deadline = time.time() + 240
    while time.time() < deadline and p.poll() is None:
        if reports.exists() and len(list(reports.glob("*.json"))) >= 3:
            break
        time.sleep(0.2)
    killed = p.poll() is None
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:  # a small selection (-k) can finish before it is killed: nothing left to kill
        assert not killed
    p.wait()
    before = {f.name: f.stat().st_mtime_ns for f in reports.glob("*.json")}
    time.sleep(2.0)  # the workers and grade-one processes notice their parent is gone
    leftovers = _leftover_processes(str(base))
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    return {"base": base, "csv": csv_path, "reports": reports, "before": before, "killed": killed,
            "leftovers": leftovers, "resume": res}


def _leftover_processes(marker: str) -> list[str]:
    out = []
    for pid in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        try:  # a forked worker has the zygote's command line; its cwd is its sandbox (under marker)
            cwd = os.path.realpath(os.readlink(f"/proc/{pid}/cwd"))
        except OSError:
            cwd = ""
        here = marker in cmd or cwd == os.path.realpath(marker) or cwd.startswith(os.path.realpath(marker) + os.sep)
        if here and ("autograder" in cmd or "worker.py" in cmd):
            out.append(f"{pid}: {cmd[:200]}")
    return out


def _report(graded, name) -> dict:
    return json.loads((graded["reports"] / f"{name}.json").read_text())


def test_batch_resumes_after_kill(graded):
    assert graded["killed"], "the batch finished before it could be killed: the test did not test resuming"
    assert graded["resume"].returncode == 0, graded["resume"].stderr[-3000:]
    assert not graded["leftovers"], f"processes outlived the killed batch: {graded['leftovers']}"
    rows = list(csv.DictReader(graded["csv"].open()))
    names = sorted(r["student"] for r in rows)
    expected = sorted(["solutions", "stubs"] + [f"mutant-{e[:4]}-{m}" for e, m, _, _ in MUTANTS])
    assert names == expected
    assert all(r["status"] == "ok" for r in rows), [r for r in rows if r["status"] != "ok"]
    for name, mtime in graded["before"].items():  # finished before the kill: not graded again
        assert (graded["reports"] / name).stat().st_mtime_ns == mtime, f"{name} was graded twice"
    assert "already done" in graded["resume"].stdout


def test_solutions_score_100(graded):
    rep = _report(graded, "solutions")
    failed = [(ex, c["name"], c["message"]) for ex, e in rep["exercises"].items() for c in e["checks"]
              if c["status"] != "passed"]
    assert rep["score"] == 100 and rep["max_score"] == 100, failed
    assert not rep["grader_errors"]
    assert len(rep["exercises"]) == 11


def test_stubs_score_0_not_implemented(graded):
    rep = _report(graded, "stubs")
    assert rep["score"] == 0 and rep["max_score"] == 100
    for ex, e in rep["exercises"].items():
        for c in e["checks"]:
            assert c["kind"] == "notimpl", (ex, c["name"], c["message"])
            assert "not implemented yet" in c["message"]
    assert not rep["grader_errors"]


@pytest.mark.parametrize("ex_file,name,hint", [(e, m, h) for e, m, _, h in MUTANTS],
                         ids=[f"{e[:4]}-{m}" for e, m, _, _ in MUTANTS])
def test_mutant_loses_points_with_a_named_mistake(graded, ex_file, name, hint):
    from autograder.spec import EXERCISES

    rep = _report(graded, f"mutant-{ex_file[:4]}-{name}")
    ex = ex_file[:4]
    e = rep["exercises"][ex]
    assert e["score"] < e["max_score"], f"the mutant {name} kept all its points"
    messages = [c["message"] for c in e["checks"] if c["status"] == "failed"]
    named = [m for m in messages if hint in m]
    assert named, f"no feedback names the mistake ({hint!r}): {messages}"
    # the message that names the mistake also names the function and the input that exposed it
    graded_names = EXERCISES[ex].graded
    assert any(re.search(rf"\b{re.escape(fn)}(\.\w+)?\([^)]", m) for m in named for fn in graded_names), named
    others = [x for x in rep["exercises"] if x != ex]
    assert all(rep["exercises"][x]["score"] == 0 for x in others)  # the other files are missing


def test_three_mutants_per_exercise_and_the_named_common_bugs():
    from autograder.spec import EXERCISES

    counts = {ex: sum(1 for e, _, _, _ in MUTANTS if e.startswith(ex)) for ex in EXERCISES}
    assert all(n >= 3 for n in counts.values()), counts
    names = {m for _, m, _, _ in MUTANTS}
    assert not REQUIRED_MUTANTS - names, REQUIRED_MUTANTS - names
    assert len(names) == len(MUTANTS), "two mutants share a name"
