"""Self-tests of the autograder: solutions, untouched stubs, mutants, a killed and resumed batch.

One batch run grades every submission here (the solutions, the stubs and each mutant as one
"student"), with ``--jobs 2``; it is killed once mid-way and started again, which is the
resumability test.  The other tests read the per-student reports.
"""
from __future__ import annotations

import csv
import json
import os
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
    ("ex10_beam_search", "merges_repeats_across_blanks", "MUTANT_BEAM_ACROSS", "merged repeats across a blank"),
    ("ex10_beam_search", "max_instead_of_sum", "MUTANT_BEAM_MAX", "max"),
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
]

# A compact prefix beam search with a switchable mistake (used by the two ex10 mutants).
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
    lp = log_probs.double().tolist()
    beams = {'': (0.0, NEG)}
    for row in lp:
        nxt = {}
        def acc(k, pb, pnb):
            ob, onb = nxt.get(k, (NEG, NEG))
            nxt[k] = (comb(ob, pb), comb(onb, pnb))
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
        scored = sorted(nxt.items(), key=lambda kv: -comb(*kv[1]) - beta * len(kv[0].split()))
        beams = dict(scored[:beam_width])
    out = [(k, comb(*v) + beta * len(k.split())) for k, v in beams.items()]
    out.sort(key=lambda r: (-r[1], r[0]))
    return out[:beam_width]
"""


def _mutant_code(code: str) -> str:
    if code == "MUTANT_BEAM_ACROSS":
        return "MISTAKE = 'across'\n" + _BEAM
    if code == "MUTANT_BEAM_MAX":
        return "MISTAKE = 'max'\n" + _BEAM
    return code


def make_submissions(base: Path) -> dict[str, Path]:
    """Student folders: the solutions, the untouched stubs and one folder per mutant."""
    subs = base / "submissions"
    subs.mkdir(parents=True)
    out = {}
    for name, src in (("solutions", ROOT / "solutions"), ("stubs", ROOT / "exercises")):
        d = subs / name
        d.mkdir()
        for f in src.glob("ex[0-9][0-9]_*.py"):
            shutil.copy(f, d / f.name)
        out[name] = d
    for ex_file, mname, code, _ in MUTANTS:
        d = subs / f"mutant-{ex_file[:4]}-{mname}"
        d.mkdir()
        text = (ROOT / "solutions" / f"{ex_file}.py").read_text()
        (d / f"{ex_file}.py").write_text(text + "\n\n# --- mutant ---\n" + _mutant_code(code))
        out[d.name] = d
    return out


def _batch_cmd(subs: Path, csv_path: Path, jobs: int = 2, extra=()):
    return [PY, "-m", "autograder", "batch", str(subs), "--csv", str(csv_path), "--jobs", str(jobs),
            "--no-progress", *extra]


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Run the batch over all submissions; kill it once mid-way, then resume it to the end."""
    base = tmp_path_factory.mktemp("grading")
    make_submissions(base)
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
    os.killpg(p.pid, signal.SIGKILL)
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
    rep = _report(graded, f"mutant-{ex_file[:4]}-{name}")
    ex = ex_file[:4]
    e = rep["exercises"][ex]
    assert e["score"] < e["max_score"], f"the mutant {name} kept all its points"
    messages = [c["message"] for c in e["checks"] if c["status"] == "failed"]
    assert any(hint in m for m in messages), f"no feedback names the mistake ({hint!r}): {messages}"
    others = [x for x in rep["exercises"] if x != ex]
    assert all(rep["exercises"][x]["score"] == 0 for x in others)  # the other files are missing


def test_two_mutants_per_exercise():
    from autograder.spec import EXERCISES

    counts = {ex: sum(1 for e, _, _, _ in MUTANTS if e.startswith(ex)) for ex in EXERCISES}
    assert all(n >= 2 for n in counts.values()), counts
