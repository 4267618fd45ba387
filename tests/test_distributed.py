"""Beyond one CPU process: synchronised BatchNorm, DDP training equal to one process, torchrun,
devices, mixed precision, torch's GRU kernel as the fast path, DataLoader workers with a feature cache.

The multi-process tests run 2 ranks on this machine's CPU with gloo over the loopback interface
(a timeout on every collective, so a bug fails instead of hanging) and compare with one process
trained on the same global minibatches.
"""
import os
import socket
import subprocess
import sys
from datetime import timedelta

import pytest
import torch
import torch.nn as nn

from reference import CharEncoder, DeepSpeech2, SequenceWiseBatchNorm, generate_synthetic_dataset
from reference import distributed
from reference.data import sortagrad_batches
from reference.devices import Amp, pick_device
from reference.layers import RecurrentLayer, _gru_step, _native_gru, _unroll
from reference.loading import BatchLoader
from reference.training import fit, make_batches, train_step

ENC = CharEncoder()
WORDS = "cat dog sun red big run yes box fox zero".split()
LENGTHS = torch.tensor([7, 3, 5, 1, 2])
RANK_COLUMNS = ([0, 1], [2, 3, 4])            # rank 0: lengths 7, 3; rank 1: lengths 5, 1, 2 (padded to 5 frames)


def small_model(seed=0):
    torch.manual_seed(seed)
    return DeepSpeech2(n_freq=161, n_conv=1, conv_channels=(4,), n_rnn=2, rnn_hidden=16)


def data():
    return (generate_synthetic_dataset(15, 1, 2, seed=21, words=WORDS, n_speakers=4),
            generate_synthetic_dataset(7, 1, 1, seed=22, words=WORDS, n_speakers=4))


FIT = dict(epochs=2, batch_size=5, eval_every=4, seed=3, anneal=0.5, progress=False)   # 3 minibatches of 5 per epoch


def sgd(model):
    return torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)


# ----------------------------------------------------------------------------- one process
def test_share_splits_a_minibatch_evenly_in_order():
    idx = [9, 4, 7, 1, 8]
    shares = [distributed.share(idx, r, 2) for r in range(2)]
    assert shares == [[9, 7, 8], [4, 1]]
    assert sorted(sum(shares, [])) == sorted(idx)
    assert [len(distributed.share(list(range(10)), r, 3)) for r in range(3)] == [4, 3, 3]


def test_synced_statistics_alone_equal_the_local_ones():
    """With the all-reduce an identity (one process), the one-pass synced moments (sum x, sum x^2,
    count) give what the two-pass local path gives: outputs, gradients, running statistics."""
    torch.manual_seed(0)
    x = (torch.randn(7, 5, 3, dtype=torch.float64) * 2 + 1).requires_grad_()
    local, synced = SequenceWiseBatchNorm(3).double(), SequenceWiseBatchNorm(3).double()
    synced.all_reduce = lambda t: t
    w = torch.randn(7, 5, 3, dtype=torch.float64)
    g = [torch.autograd.grad((bn(x, LENGTHS) * w).sum(), (x, bn.weight)) for bn in (local, synced)]
    torch.testing.assert_close(g[0], g[1])
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(local, name), getattr(synced, name))


def test_batchnorm_statistics_are_float32_under_half_precision():
    """float16 frames whose sum overflows float16 (65504): statistics in float32, output in float16."""
    x = torch.full((400, 2, 3), 300.0, dtype=torch.float16)
    x[:, :, 1] += torch.linspace(-1, 1, 400, dtype=torch.float16)[:, None]
    y = SequenceWiseBatchNorm(3)(x, torch.tensor([400, 400]))
    assert y.dtype == torch.float16 and torch.isfinite(y).all()
    ref = nn.BatchNorm1d(3)(x.float().reshape(-1, 3)).reshape(400, 2, 3)
    torch.testing.assert_close(y.float(), ref, atol=2e-2, rtol=0)


def test_native_gru_path_equals_the_readable_recurrence_with_gradients():
    """The GPU fast path (torch's GRU kernel over the precomputed projection, identity W_ih),
    run here on the CPU with autograd, against the graded step unrolled in Python."""
    torch.manual_seed(1)
    gx = torch.randn(6, 3, 12, dtype=torch.float64, requires_grad=True)
    U = torch.randn(12, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(12, dtype=torch.float64, requires_grad=True)
    ours = _native_gru(gx, U, b, train=True)
    loop = _unroll(gx, lambda g, h: _gru_step(g, h, U, b), gx.new_zeros(3, 4))
    torch.testing.assert_close(ours, loop)
    w = torch.randn_like(loop)
    for a, c in zip(torch.autograd.grad((ours * w).sum(), (gx, U, b)), torch.autograd.grad((loop * w).sum(), (gx, U, b))):
        torch.testing.assert_close(a, c)


def test_pick_device_and_amp_on_this_machine():
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(ValueError, match="device must be one of"):
        pick_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU is visible"):
            pick_device("cuda")
    amp = Amp("cpu")
    assert amp.dtype == torch.bfloat16 and amp.scaler is None


def test_train_command_without_cuda_says_so(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    r = subprocess.run([sys.executable, "-m", "reference.train", "--device", "cuda", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "no CUDA GPU is visible" in r.stderr and "Traceback" not in r.stderr


def test_bench_gpu_exits_cleanly_without_cuda(repo_root):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    r = subprocess.run([sys.executable, str(repo_root / "benchmarks" / "bench_gpu.py")], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and "no CUDA GPU on this machine" in r.stdout, r.stderr


def test_amp_train_step_on_cpu_is_close_to_float32():
    """bfloat16 autocast on the CPU: log-probabilities come out float32, the loss is close to the
    float32 loss (bfloat16 keeps ~3 significant digits), the step updates every parameter."""
    train, _ = data()
    batch = make_batches(train[:5], ENC, 5)[0]
    model, twin = small_model(), small_model()
    with Amp("cpu").autocast():
        log_probs, _ = model(batch.features, batch.feature_lengths)
    assert log_probs.dtype == torch.float32
    before = [p.detach().clone() for p in model.parameters()]
    loss_amp = train_step(model, batch, sgd(model), amp=Amp("cpu"))
    loss_fp32 = train_step(twin, batch, sgd(twin))
    assert loss_amp == pytest.approx(loss_fp32, rel=3e-2)
    changed = [not torch.equal(p, q) for p, q in zip(before, model.parameters())]
    assert all(changed) and all(torch.isfinite(p).all() for p in model.parameters())


def test_feature_cache_and_workers_give_the_same_minibatches_and_training(tmp_path, monkeypatch):
    train, valid = data()
    shares = sortagrad_batches(train, 5, 0, 0)
    memory = BatchLoader(train, ENC, shares)
    cached = BatchLoader(train, ENC, shares, workers=2, feature_cache=tmp_path / "feats")
    order = [2, 0, 1]
    for a, b in zip(memory.batches(order), cached.batches(order)):
        for name in ("features", "feature_lengths", "targets", "target_lengths"):
            assert torch.equal(getattr(a, name), getattr(b, name)), name
        assert a.transcripts == b.transcripts
    assert len(list((tmp_path / "feats").rglob("*.pt"))) == len(train)
    import reference.loading as loading     # a second pass reads the cache: computing again would fail

    monkeypatch.setattr(loading, "compute_spectrogram", lambda *a, **k: (_ for _ in ()).throw(AssertionError("recomputed")))
    a, b = small_model(), small_model()
    fit(a, train, ENC, optimizer=sgd(a), **FIT)
    fit(b, train, ENC, optimizer=sgd(b), feature_cache=tmp_path / "feats", **FIT)   # in this process (workers=0)
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(p, q, msg=name)


def test_fit_refuses_a_custom_step_with_amp():
    train, _ = data()
    with pytest.raises(ValueError, match="step_fn= cannot run with amp="):
        fit(small_model(), train, ENC, step_fn=train_step, amp=Amp("cpu"), **FIT)


# ----------------------------------------------------------------------------- two processes (gloo)
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank, world, port, out_dir, train, valid):
    """One rank: synchronised BatchNorm's gradients (ours and a plain all-reduce), then fit."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), GLOO_SOCKET_IFNAME="lo")
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(seconds=60))
    try:
        result = {}
        # sequence-wise BatchNorm over ranks holding utterances of different lengths
        torch.manual_seed(0)
        x_all = torch.randn(7, 5, 3, dtype=torch.float64) * 2 + 1
        w_all = torch.randn(7, 5, 3, dtype=torch.float64)
        cols = RANK_COLUMNS[rank]
        lengths = LENGTHS[cols]
        T = int(lengths.max())
        for name, reduce in (("ours", distributed.all_reduce_sum), ("plain", _plain_all_reduce)):
            bn = SequenceWiseBatchNorm(3).double()
            bn.all_reduce = reduce
            x = x_all[:T, cols].clone().requires_grad_()
            y = bn(x, lengths)
            (y * w_all[:T, cols]).sum().backward()
            result[name] = dict(y=y.detach(), x_grad=x.grad, weight_grad=bn.weight.grad,
                                running_mean=bn.running_mean, running_var=bn.running_var)
            bn.eval()
            with torch.no_grad():               # eval mode: running statistics, no collective (it would hang)
                if rank == 0:
                    bn(x, lengths)
        # the real fit, on this rank's share of every global minibatch, in float64 (see below)
        torch.set_default_dtype(torch.float64)
        model = small_model()
        evals = []
        hist = fit(model, train, ENC, valid_set=valid, optimizer=sgd(model),
                   on_eval=lambda h, m: evals.append((len(h.step), type(m).__name__)), **FIT)
        result.update(state=model.state_dict(), history=hist.to_dict(), evals=evals)
        torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        torch.distributed.destroy_process_group()


def _plain_all_reduce(t):
    """The mistake: right values, but autograd does not see the sum."""
    t = t.clone()
    torch.distributed.all_reduce(t)
    return t


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    train, valid = data()
    torch.multiprocessing.spawn(_rank_main, args=(2, free_port(), str(out), train, valid), nprocs=2, join=True)
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)], (train, valid)


@pytest.mark.slow
def test_synchronised_batchnorm_equals_one_process_with_gradients(two_ranks):
    ranks, _ = two_ranks
    torch.manual_seed(0)
    x = (torch.randn(7, 5, 3, dtype=torch.float64) * 2 + 1).requires_grad_()
    w = torch.randn(7, 5, 3, dtype=torch.float64)
    bn = SequenceWiseBatchNorm(3).double()
    y = bn(x, LENGTHS)
    (y * w).sum().backward()
    wrong = 0.0
    for r, cols in enumerate(RANK_COLUMNS):
        T = int(LENGTHS[cols].max())
        ours, plain = ranks[r]["ours"], ranks[r]["plain"]
        torch.testing.assert_close(ours["y"], y.detach()[:T, cols])
        torch.testing.assert_close(plain["y"], y.detach()[:T, cols])         # a plain all-reduce: values right...
        torch.testing.assert_close(ours["x_grad"], x.grad[:T, cols])
        wrong = max(wrong, float((plain["x_grad"] - x.grad[:T, cols]).abs().max()))
        for name in ("running_mean", "running_var"):                         # unbiased, over all valid frames
            torch.testing.assert_close(ours[name], getattr(bn, name))
    assert wrong > 1e-2, "...and gradients wrong: the test must be able to tell"
    torch.testing.assert_close(ranks[0]["ours"]["weight_grad"] + ranks[1]["ours"]["weight_grad"], bn.weight.grad)


@pytest.mark.slow
def test_ddp_fit_equals_one_process_on_the_same_global_minibatches(two_ranks):
    """2 ranks (shares of 3 and 2 utterances of different lengths, a held-out set split 4/3) train
    the weights, BatchNorm statistics, losses and held-out WERs of one process, to 1e-5.

    In float64: sums split across ranks add up in another order, and in float32 that rounding
    (gradients equal to about 1e-5 relative after one step) grows over steps of SGD with momentum
    to 1e-4; float64 shows the maths alone."""
    ranks, (train, valid) = two_ranks
    torch.set_default_dtype(torch.float64)
    try:
        model = small_model()
        hist = fit(model, train, ENC, valid_set=valid, optimizer=sgd(model), **FIT)
    finally:
        torch.set_default_dtype(torch.float32)
    assert model.output.weight.dtype == torch.float64
    assert len(hist.step) == 6
    for r in range(2):
        state = ranks[r]["state"]
        for name, p in model.state_dict().items():
            torch.testing.assert_close(state[name], p, atol=1e-5, rtol=1e-5, msg=f"rank {r}: {name}")
        h = ranks[r]["history"]
        assert h["loss"] == pytest.approx(hist.loss, rel=1e-5)
        assert h["eval_wer"] == hist.eval_wer and h["eval_step"] == hist.eval_step == [4, 6]
    assert ranks[0]["evals"] == [(4, "DeepSpeech2"), (6, "DeepSpeech2")] and ranks[1]["evals"] == []


@pytest.mark.slow
def test_torchrun_trains_rank_0_writes_and_resume_works(tmp_path):
    out, logs = tmp_path / "run", tmp_path / "logs"
    env = dict(os.environ, GLOO_SOCKET_IFNAME="lo", MASTER_ADDR="127.0.0.1", DS2_DIST_TIMEOUT="60")
    base = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
            "--log-dir", str(logs), "--redirects", "3", "-m", "reference.train", "--preset", "demo",
            "--out", str(out), "--n-train", "40", "--n-valid", "8", "--batch-size", "8", "--eval-every", "3",
            "--rnn-hidden", "16", "--n-rnn", "1", "--conv-time-stride", "2", "--quiet",
            "--seconds", "0"]            # epochs bound the run, not the demo preset's 60 s (a loaded machine)
    r = subprocess.run(base + ["--epochs", "1"], capture_output=True, text=True, timeout=400, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    stdout = {p.parent.name: p.read_text() for p in logs.rglob("stdout.log")}     # one folder per rank
    assert sorted(stdout) == ["0", "1"], sorted(stdout)
    assert "processes: 2" in stdout["0"] and "wrote" in stdout["0"] and stdout["1"].strip() == ""
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "curves.png", "history.json"]
    from reference.checkpoint import load_checkpoint

    assert load_checkpoint(out / "checkpoint.pt")["step"] == 5
    # resumed, with minibatches from DataLoader workers and a feature cache both ranks fill at once
    r = subprocess.run(base + ["--epochs", "2", "--resume", "--workers", "1", "--feature-cache", str(tmp_path / "feats")],
                       capture_output=True, text=True, timeout=400, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 10
    assert len(list((tmp_path / "feats").rglob("*.pt"))) == 40 and not list((tmp_path / "feats").rglob("*.tmp"))
