"""Layers against torch's own modules: nn.GRUCell, nn.GRU (packed), nn.BatchNorm1d on valid frames, nn.Conv2d."""
import pytest
import torch
import torch.nn as nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from reference import (SequenceWiseBatchNorm, bidirectional_gru, clipped_relu, conv_output_length, gru_cell,
                       gru_layer, mask_time, row_conv)
from reference.layers import MaskedBatchNorm2d, RecurrentLayer, reverse_padded

LENGTHS = torch.tensor([7, 3, 5, 1])


def test_clipped_relu():
    x = torch.tensor([-5.0, 0.0, 3.0, 20.0, 25.0])
    assert clipped_relu(x).tolist() == [0, 0, 3, 20, 20]
    assert clipped_relu(x, 4.0).tolist() == [0, 0, 3, 4, 4]


@pytest.mark.parametrize("k,s,p,d", [(11, 2, 5, 1), (11, 1, 5, 1), (41, 2, 20, 1), (3, 3, 0, 2), (5, 2, 0, 1)])
def test_conv_output_length_matches_conv2d(k, s, p, d):
    conv = nn.Conv2d(1, 1, (1, k), (1, s), (0, p), (1, d))
    for L in range(max(1, d * (k - 1) + 1 - 2 * p), 40):
        assert conv(torch.zeros(1, 1, 1, L)).shape[-1] == conv_output_length(L, k, s, p, d)
    lengths = torch.arange(20, 30)
    assert conv_output_length(lengths, k, s, p, d).tolist() == [conv_output_length(int(L), k, s, p, d) for L in lengths]


def test_mask_time():
    x = torch.randn(4, 2, 3, 7)
    y = mask_time(x, LENGTHS)
    for b, L in enumerate(LENGTHS.tolist()):
        assert y[b, ..., L:].eq(0).all() and torch.equal(y[b, ..., :L], x[b, ..., :L])
    with pytest.raises(ValueError, match="lengths"):
        mask_time(x, torch.tensor([1, 2]))


def test_gru_cell_matches_nn_grucell():
    cell = nn.GRUCell(5, 4).double()
    x, h = torch.randn(3, 5, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
    torch.testing.assert_close(gru_cell(x, h, cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh), cell(x, h))


def packed_gru(gru, x, lengths):
    out, _ = gru(pack_padded_sequence(x, lengths, enforce_sorted=False))
    out, _ = pad_packed_sequence(out, total_length=x.shape[0])
    return out


def test_gru_layer_and_bidirectional_match_packed_nn_gru():
    torch.manual_seed(0)
    x = torch.randn(7, 4, 5, dtype=torch.float64)
    gru = nn.GRU(5, 3, bidirectional=True).double()
    ref = packed_gru(gru, x, LENGTHS)                      # (T, B, 2H): [forward, backward]
    fw = (gru.weight_ih_l0, gru.weight_hh_l0, gru.bias_ih_l0, gru.bias_hh_l0)
    bw = (gru.weight_ih_l0_reverse, gru.weight_hh_l0_reverse, gru.bias_ih_l0_reverse, gru.bias_hh_l0_reverse)
    torch.testing.assert_close(gru_layer(x, LENGTHS, *fw), ref[..., :3])
    torch.testing.assert_close(gru_layer(x, LENGTHS, *bw, reverse=True), ref[..., 3:])
    torch.testing.assert_close(bidirectional_gru(x, LENGTHS, fw, bw), ref[..., :3] + ref[..., 3:])


def test_reverse_padded_is_an_involution_that_keeps_padding():
    x = torch.arange(7 * 4, dtype=torch.float32).view(7, 4)
    r = reverse_padded(x, LENGTHS)
    assert r[:3, 1].tolist() == x[:3, 1].flip(0).tolist() and torch.equal(r[3:, 1], x[3:, 1])
    assert torch.equal(reverse_padded(r, LENGTHS), x)


def batchnorm_on_valid_frames(bn_ref, x, lengths):
    valid = torch.cat([x[: int(L), b] for b, L in enumerate(lengths)])      # (N, H)
    return bn_ref(valid)


def test_sequence_wise_batchnorm_equals_batchnorm1d_on_valid_frames():
    torch.manual_seed(0)
    x = torch.randn(7, 4, 6, dtype=torch.float64) * 3 + 1
    ours, ref = SequenceWiseBatchNorm(6).double(), nn.BatchNorm1d(6).double()
    with torch.no_grad():
        ours.weight.uniform_(0.5, 1.5); ours.bias.uniform_(-1, 1)
        ref.weight.copy_(ours.weight); ref.bias.copy_(ours.bias)
    for _ in range(3):                                               # train mode, several updates
        y = ours(x, LENGTHS)
        y_ref = batchnorm_on_valid_frames(ref, x, LENGTHS)
        torch.testing.assert_close(torch.cat([y[: int(L), b] for b, L in enumerate(LENGTHS)]), y_ref)
        assert y[7:, 0].numel() == 0 and y[3:, 1].eq(0).all() and y[1:, 3].eq(0).all()
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(ours, name), getattr(ref, name))
    ours.eval(); ref.eval()
    y = ours(x, LENGTHS)
    torch.testing.assert_close(torch.cat([y[: int(L), b] for b, L in enumerate(LENGTHS)]), batchnorm_on_valid_frames(ref, x, LENGTHS))
    assert set(dict(ours.named_parameters())) == set(dict(ref.named_parameters()))
    assert set(dict(ours.named_buffers())) == set(dict(ref.named_buffers()))


def test_sequence_wise_batchnorm_gradients_match():
    torch.manual_seed(1)
    x = torch.randn(7, 4, 3, dtype=torch.float64, requires_grad=True)
    ours, ref = SequenceWiseBatchNorm(3).double(), nn.BatchNorm1d(3).double()
    w = torch.randn(7, 4, 3, dtype=torch.float64)
    (ours(x, LENGTHS) * w).sum().backward()
    g_ours = x.grad.clone(); x.grad = None
    y_ref = batchnorm_on_valid_frames(ref, x, LENGTHS)
    w_valid = torch.cat([w[: int(L), b] for b, L in enumerate(LENGTHS)])
    (y_ref * w_valid).sum().backward()
    torch.testing.assert_close(g_ours, x.grad)
    torch.testing.assert_close(ours.weight.grad, ref.weight.grad)


def test_padding_in_statistics_changes_the_result():
    x = torch.randn(7, 4, 3) + 5
    good, bad = SequenceWiseBatchNorm(3), SequenceWiseBatchNorm(3, include_padding=True)
    assert not torch.allclose(good(x, LENGTHS), bad(x, LENGTHS))


def test_masked_batchnorm2d_equals_batchnorm_over_valid_frames():
    torch.manual_seed(2)
    x = torch.randn(4, 2, 3, 7, dtype=torch.float64)
    ours, ref = MaskedBatchNorm2d(2).double(), nn.BatchNorm1d(2).double()
    y = ours(x, LENGTHS)
    valid = torch.cat([x[b, :, :, : int(L)].reshape(2, -1).T for b, L in enumerate(LENGTHS)])   # (N, C)
    y_ref = ref(valid)
    torch.testing.assert_close(torch.cat([y[b, :, :, : int(L)].reshape(2, -1).T for b, L in enumerate(LENGTHS)]), y_ref)
    torch.testing.assert_close(ours.running_var, ref.running_var)


@pytest.mark.parametrize("rnn_type", ["gru", "rnn"])
@pytest.mark.parametrize("bidirectional", [True, False])
def test_recurrent_layer_fused_equals_loop_and_gradients(rnn_type, bidirectional):
    torch.manual_seed(3)
    x = torch.randn(7, 4, 5, dtype=torch.float64, requires_grad=True)
    a = RecurrentLayer(5, 3, rnn_type, bidirectional, fused=True).double()
    b = RecurrentLayer(5, 3, rnn_type, bidirectional, fused=False).double()
    b.load_state_dict(a.state_dict())
    ya, yb = a(x, LENGTHS), b(x, LENGTHS)
    torch.testing.assert_close(ya, yb)
    ga, = torch.autograd.grad(ya.square().sum(), x)
    gb, = torch.autograd.grad(yb.square().sum(), x)
    torch.testing.assert_close(ga, gb)
    assert ya[3:, 1].eq(0).all()


@pytest.mark.parametrize("directions", [1, 2])
def test_gru_recurrence_backward_is_exact(directions):
    """The hand-written BPTT of the training fast path, by finite differences (gradcheck) and
    against autograd through the Python loop of each direction, for the input, U and b alike."""
    from reference.layers import _GRURecurrence, _fused_gru, _gru_step, _unroll
    torch.manual_seed(5)
    D = directions
    gx = torch.randn(6, D, 3, 12, dtype=torch.float64, requires_grad=True)
    U = torch.randn(D, 12, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(D, 12, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(_GRURecurrence.apply, (gx, U, b))
    ours = _GRURecurrence.apply(gx, U, b)
    loop = torch.stack([_unroll(gx[:, d], lambda g, h, d=d: _gru_step(g, h, U[d], b[d]), gx.new_zeros(3, 4))
                        for d in range(D)], dim=1)
    torch.testing.assert_close(ours, loop)
    w = torch.randn_like(ours)
    for g_ours, g_loop in zip(torch.autograd.grad((ours * w).sum(), (gx, U, b)),
                              torch.autograd.grad((loop * w).sum(), (gx, U, b))):
        torch.testing.assert_close(g_ours, g_loop)
    with torch.no_grad():                                    # evaluation: torch's native kernel
        torch.testing.assert_close(_fused_gru(gx, U, b), loop)
        torch.testing.assert_close(_fused_gru(gx, U, None),
                                   torch.stack([_unroll(gx[:, d], lambda g, h, d=d: _gru_step(g, h, U[d], None),
                                                        gx.new_zeros(3, 4)) for d in range(D)], dim=1))


def test_gru_recurrence_float32_matches_loop():
    """The training dtype: the fast path in float32 against the loop in float64, values and gradients."""
    from reference.layers import _GRURecurrence, _gru_step, _unroll
    torch.manual_seed(7)
    gx = torch.randn(40, 2, 8, 30, dtype=torch.float64)
    U, b = torch.randn(2, 30, 10, dtype=torch.float64) * 0.3, torch.randn(2, 30, dtype=torch.float64)
    w = torch.randn(40, 2, 8, 10, dtype=torch.float64)
    results = []
    for dtype in (torch.float32, torch.float64):
        args = [t.to(dtype).requires_grad_() for t in (gx, U, b)]
        if dtype == torch.float32:
            out = _GRURecurrence.apply(*args)
        else:
            out = torch.stack([_unroll(args[0][:, d], lambda g, h, d=d: _gru_step(g, h, args[1][d], args[2][d]),
                                       args[0].new_zeros(8, 10)) for d in range(2)], dim=1)
        grads = torch.autograd.grad((out * w.to(dtype)).sum(), args)
        results.append([out, *grads])
    for fast, exact in zip(*results):
        torch.testing.assert_close(fast.double(), exact, rtol=1e-4, atol=1e-4)


def test_recurrent_layer_fused_parameter_gradients_and_eval_path():
    torch.manual_seed(6)
    x = torch.randn(7, 4, 5, dtype=torch.float64)
    a = RecurrentLayer(5, 3, fused=True).double()
    b = RecurrentLayer(5, 3, fused=False).double()
    b.load_state_dict(a.state_dict())
    a(x, LENGTHS).square().sum().backward()
    b(x, LENGTHS).square().sum().backward()
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, msg=name)
    a.eval(), b.eval()
    with torch.no_grad():                                    # evaluation takes torch's GRU kernel
        torch.testing.assert_close(a(x, LENGTHS), b(x, LENGTHS))


def test_recurrent_layer_is_the_paper_equation():
    """h_t = GRU(BN(W x_t), h_{t-1}) with the two directions summed, via the graded functions."""
    torch.manual_seed(4)
    x = torch.randn(7, 4, 5, dtype=torch.float64)
    layer = RecurrentLayer(5, 3).double()
    wx = layer.bn(x @ layer.weight_ih.T, LENGTHS)                     # (T, B, 6H)
    eye = torch.eye(9, dtype=torch.float64)
    fw = gru_layer(wx[..., :9], LENGTHS, eye, layer.weight_hh[0], None, layer.bias_hh[0])
    bw = gru_layer(wx[..., 9:], LENGTHS, eye, layer.weight_hh[1], None, layer.bias_hh[1], reverse=True)
    layer.bn.num_batches_tracked.zero_()
    torch.testing.assert_close(layer(x, LENGTHS), fw + bw)
    assert layer.bias_ih is None, "no bias on W x when BatchNorm follows it"


def test_row_conv_matches_loop():
    torch.manual_seed(5)
    x, w = torch.randn(7, 4, 3), torch.randn(3, 3)
    out = row_conv(x, w, LENGTHS)
    for b, L in enumerate(LENGTHS.tolist()):
        for t in range(7):
            expected = sum(w[j] * x[t + j, b] for j in range(3) if t + j < L) if t < L else torch.zeros(3)
            torch.testing.assert_close(out[t, b], expected)
    with pytest.raises(ValueError, match="weight must be"):
        row_conv(x, torch.randn(3, 4), LENGTHS)


@pytest.mark.parametrize("lengths", [LENGTHS, torch.tensor([7, 7, 7, 7]), torch.tensor([1, 1, 1, 1])])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_batchnorm_fast_path_equals_readable_path(lengths, momentum):
    """The kernel on the valid frames (default) against the readable masked formula, both BatchNorms:
    outputs, input and parameter gradients, running statistics, then evaluation mode."""
    torch.manual_seed(8)
    cases = [(SequenceWiseBatchNorm, torch.randn(7, 4, 6, dtype=torch.float64) * 2 + 1),
             (MaskedBatchNorm2d, torch.randn(4, 3, 5, 7, dtype=torch.float64) * 2 + 1)]
    for cls, x in cases:
        fast, slow = cls(x.shape[-1] if cls is SequenceWiseBatchNorm else 3, momentum=momentum).double(), None
        with torch.no_grad():
            fast.weight.uniform_(0.5, 1.5); fast.bias.uniform_(-1, 1)
        slow = cls(fast.num_features, momentum=momentum).double()
        slow.load_state_dict(fast.state_dict())
        slow.fast = False
        w = torch.randn_like(x)
        for _ in range(2):
            xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
            ya, yb = fast(xa, lengths), slow(xb, lengths)
            torch.testing.assert_close(ya, yb)
            (ya * w).sum().backward(); (yb * w).sum().backward()
            torch.testing.assert_close(xa.grad, xb.grad)
        torch.testing.assert_close(fast.weight.grad, slow.weight.grad)
        torch.testing.assert_close(fast.bias.grad, slow.bias.grad)
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            torch.testing.assert_close(getattr(fast, name), getattr(slow, name), msg=name)
        fast.eval(), slow.eval()
        torch.testing.assert_close(fast(x, lengths), slow(x, lengths))


def test_batchnorm_fast_path_one_valid_frame_takes_the_readable_path():
    """Training on a single valid frame: torch's kernel refuses it, the readable formula does not (variance 0)."""
    x = torch.randn(3, 1, 4, dtype=torch.float64)
    fast, slow = SequenceWiseBatchNorm(4).double(), SequenceWiseBatchNorm(4).double()
    slow.fast = False
    torch.testing.assert_close(fast(x, torch.tensor([1])), slow(x, torch.tensor([1])))
    torch.testing.assert_close(fast.running_var, slow.running_var)


def test_fused_recurrence_does_the_readable_paths_flops():
    """benchmarks/bench_train_step.py reports FLOP/s from torch's FlopCounterMode on the fast path: it must
    count the same matrix products as the readable loop (none skipped, none added), forward and backward."""
    from torch.utils.flop_counter import FlopCounterMode
    counts = []
    for fused in (True, False):
        torch.manual_seed(9)
        layer = RecurrentLayer(5, 3, fused=fused)
        x = torch.randn(7, 4, 5, requires_grad=True)
        with FlopCounterMode(display=False) as counter:
            layer(x, LENGTHS).square().sum().backward()
        counts.append(counter.get_total_flops())
    assert counts[0] == counts[1] > 0


# ----------------------------------------------------------------------------- the compiled GRU kernel
RAGGED = torch.tensor([9, 4, 9, 1, 6])


def compiled_kernel(monkeypatch):
    """The compiled recurrence (built on first use, cached), or skip where this machine cannot build it;
    turned on (``DS2_GRU_KERNEL=1``: the course's default is off) for the calling test only."""
    from reference import _gru_kernel
    monkeypatch.setenv("DS2_GRU_KERNEL", "1")
    if _gru_kernel.load() is None:
        pytest.skip("the compiled GRU kernel cannot be built here (see the logged reason)")
    return _gru_kernel


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("bidirectional", [True, False])
def test_compiled_recurrence_equals_readable_loop(dtype, bidirectional, monkeypatch):
    """The compiled path (the default when training on the CPU) against RecurrentLayer's readable
    Python loop (:meth:`_recur`, computed in float64), ragged lengths: outputs, input and parameter gradients."""
    kernel = compiled_kernel(monkeypatch)
    calls = []
    monkeypatch.setattr(kernel.CompiledGRURecurrence, "apply",
                        lambda *a, f=kernel.CompiledGRURecurrence.apply: calls.append(1) or f(*a))
    torch.manual_seed(11)
    x = torch.randn(9, 5, 7, dtype=torch.float64)
    fast = RecurrentLayer(7, 6, bidirectional=bidirectional).to(dtype)
    slow = RecurrentLayer(7, 6, bidirectional=bidirectional, fused=False).double()
    slow.load_state_dict(fast.state_dict())
    xa, xb = x.to(dtype, copy=True).requires_grad_(), x.clone().requires_grad_()
    ya, yb = fast(xa, RAGGED), slow(xb, RAGGED)
    assert calls, "the compiled kernel did not run"
    w = torch.randn_like(yb)
    (ya * w.to(dtype)).sum().backward()
    (yb * w).sum().backward()
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ya.double(), yb, **tol)
    torch.testing.assert_close(xa.grad.double(), xb.grad, **tol)
    for (name, pa), pb in zip(fast.named_parameters(), slow.parameters()):
        torch.testing.assert_close(pa.grad.double(), pb.grad, **tol, msg=name)
    assert ya[4:, 1].eq(0).all() and ya[1:, 3].eq(0).all()


@pytest.mark.parametrize("directions", [1, 2])
def test_compiled_recurrence_gradcheck_and_python_fast_path(directions, monkeypatch):
    """The compiled kernel alone, ragged lengths: its backward by finite differences (gradcheck), and equal
    in values and gradients to the Python fast path (:class:`_GRURecurrence` on sequences reversed with
    reverse_padded for the backward direction, outputs masked), with a strided incoming gradient."""
    from reference.layers import _GRURecurrence, _valid
    kernel = compiled_kernel(monkeypatch)
    torch.manual_seed(12)
    D, T, B, H = directions, 6, 4, 4
    lengths = torch.tensor([6, 2, 4, 1])
    gx = torch.randn(T, B, D * 3 * H, dtype=torch.float64, requires_grad=True)
    U = torch.randn(D, 3 * H, H, dtype=torch.float64, requires_grad=True)
    b = torch.randn(D, 3 * H, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda g, u, c: kernel.CompiledGRURecurrence.apply(g, lengths, u, c), (gx, U, b))

    def python_path(gx, U, b):
        seqs = [g if d == 0 else reverse_padded(g, lengths) for d, g in enumerate(gx.split(3 * H, dim=-1))]
        states = _GRURecurrence.apply(torch.stack(seqs, dim=1), U, b)
        outs = [states[:, 0]] + [reverse_padded(states[:, d], lengths) for d in range(1, D)]
        return torch.stack(outs, dim=1).masked_fill(~_valid(lengths, T, gx).unsqueeze(1), 0.0)

    ours, theirs = kernel.CompiledGRURecurrence.apply(gx, lengths, U, b), python_path(gx, U, b)
    torch.testing.assert_close(ours, theirs)
    assert ours[2:, :, 1].eq(0).all() and ours[1:, :, 3].eq(0).all()
    w = torch.randn(H, B, D, T, dtype=torch.float64).permute(3, 2, 1, 0)     # (T, D, B, H), not contiguous
    for g_ours, g_theirs in zip(torch.autograd.grad((ours * w).sum(), (gx, U, b)),
                                torch.autograd.grad((theirs * w).sum(), (gx, U, b))):
        torch.testing.assert_close(g_ours, g_theirs)


def _valid_frames_oracle(cls, x, lengths, momentum, weight, bias, steps):
    """nn.BatchNorm1d (torch's own) on the valid frames of ``x``, gathered: ``(T, B, C)`` frames as rows, or
    ``(B, C, F, T)`` frames as ``(N, C, F)``; returns the outputs scattered back (padding 0), its module, and the
    gradient of ``x`` for the loss ``(y * w).sum()`` of each step (``w`` fixed)."""
    C = x.shape[-1] if cls is SequenceWiseBatchNorm else x.shape[1]
    ref = nn.BatchNorm1d(C, momentum=momentum).to(x.dtype)
    with torch.no_grad():
        ref.weight.copy_(weight), ref.bias.copy_(bias)
    outs = []
    for w in steps:
        xr = x.clone().requires_grad_()
        if cls is SequenceWiseBatchNorm:
            valid = torch.arange(x.shape[0])[:, None] < lengths[None, :]          # (T, B)
            y = torch.zeros_like(x).index_put((valid.nonzero(as_tuple=True)), ref(xr[valid]))
        else:
            valid = torch.arange(x.shape[-1])[None, :] < lengths[:, None]         # (B, T)
            rows = xr.permute(0, 3, 1, 2)[valid]                                   # (N, C, F)
            y = torch.zeros_like(x).permute(0, 3, 1, 2).index_put(valid.nonzero(as_tuple=True), ref(rows))
            y = y.permute(0, 2, 3, 1)
        (y * w).sum().backward()
        outs.append((y.detach(), xr.grad))
    return outs, ref


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_compiled_batchnorm_equals_torch_on_the_valid_frames(dtype, momentum, monkeypatch):
    """The compiled BatchNorm of both layouts (``DS2_GRU_KERNEL=1``, training on the CPU) against nn.BatchNorm1d
    on the gathered valid frames, two steps: outputs (0 at padding, even where padding holds inf and nan), input
    and parameter gradients (0 at padding), running statistics.  Sizes cross the kernel's blocks: 70 channels
    (blocks of 64), 150 valid rows (chunks of 64), runs of 37 frames (16 lanes)."""
    kernel = compiled_kernel(monkeypatch)
    calls = []
    monkeypatch.setattr(kernel.CompiledMaskedBatchNorm, "apply",
                        lambda *a, f=kernel.CompiledMaskedBatchNorm.apply: calls.append(1) or f(*a))
    torch.manual_seed(14)
    cases = [(SequenceWiseBatchNorm, torch.randn(37, 5, 70, dtype=dtype) * 3 + 2, torch.tensor([37, 30, 1, 36, 20])),
             (MaskedBatchNorm2d, torch.randn(5, 3, 4, 37, dtype=dtype) * 3 + 2, torch.tensor([37, 17, 1, 33, 16]))]
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-10)
    for cls, x, lengths in cases:
        if cls is SequenceWiseBatchNorm:
            x[lengths[2]:, 2] = float("inf"); x[-1, 4] = float("nan")
        else:
            x[2, ..., lengths[2]:] = float("inf"); x[4, ..., -1] = float("nan")
        ours = cls(x.shape[-1] if cls is SequenceWiseBatchNorm else x.shape[1], momentum=momentum).to(dtype)
        with torch.no_grad():
            ours.weight.uniform_(0.5, 1.5), ours.bias.uniform_(-1, 1)
        steps = [torch.randn_like(x), torch.randn_like(x)]
        expected, ref = _valid_frames_oracle(cls, x, lengths, momentum, ours.weight.detach(), ours.bias.detach(), steps)
        calls.clear()
        for w, (y_ref, grad_ref) in zip(steps, expected):
            xo = x.clone().requires_grad_()
            y = ours(xo, lengths)
            (y * w).sum().backward()
            torch.testing.assert_close(y, y_ref, **tol)
            torch.testing.assert_close(xo.grad, grad_ref, **tol)
        assert len(calls) == 2, f"{cls.__name__}: the compiled BatchNorm did not run"
        torch.testing.assert_close(ours.weight.grad, ref.weight.grad, **tol)
        torch.testing.assert_close(ours.bias.grad, ref.bias.grad, **tol)
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            torch.testing.assert_close(getattr(ours, name), getattr(ref, name), **tol, msg=name)


@pytest.mark.parametrize("rows", [True, False])
def test_compiled_batchnorm_gradcheck(rows, monkeypatch):
    """The compiled BatchNorm's backward by finite differences, ragged lengths, both layouts."""
    kernel = compiled_kernel(monkeypatch)
    torch.manual_seed(15)
    lengths = torch.tensor([5, 2, 4])
    x = torch.randn(*((5, 3, 4) if rows else (3, 2, 3, 5)), dtype=torch.float64, requires_grad=True)
    C = x.shape[-1] if rows else x.shape[1]
    w = torch.rand(C, dtype=torch.float64).add(0.5).requires_grad_()
    b = torch.randn(C, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, w, b: kernel.CompiledMaskedBatchNorm.apply(x, lengths, w, b, rows, 1e-5)[0], (x, w, b))


def test_compiled_batchnorm_is_not_used_where_it_does_not_apply(monkeypatch):
    """Evaluation, ``compiled = False``, a single valid frame, and the extension off: torch's BatchNorm or the
    readable formula runs, never the compiled one (and nothing is built)."""
    from reference import _gru_kernel
    monkeypatch.setattr(_gru_kernel, "load", lambda: pytest.fail("the compiled kernel was asked for"))
    bn = SequenceWiseBatchNorm(4)
    x = torch.randn(7, 4, 4)
    bn.eval()
    bn(x, LENGTHS)
    bn.train()
    bn.compiled = False
    bn(x, LENGTHS)
    monkeypatch.setattr(_gru_kernel, "load", lambda: None)        # the extension off or unavailable
    bn.compiled = True
    bn(x, LENGTHS)
    MaskedBatchNorm2d(3)(torch.randn(4, 3, 5, 7), LENGTHS)


def test_compiled_recurrence_is_not_used_where_it_does_not_apply(monkeypatch):
    """Evaluation (no autograd) keeps torch's GRU kernel, ``compiled = False`` the Python fast path, and
    autocast bfloat16 the Python fast path in the weights' precision: none calls the compiled kernel."""
    from reference import _gru_kernel
    monkeypatch.setattr(_gru_kernel, "load", lambda: pytest.fail("the compiled kernel was asked for"))
    torch.manual_seed(13)
    layer = RecurrentLayer(5, 4)
    layer.bn.compiled = False                      # the BatchNorm's own compiled path has its test below
    x = torch.randn(7, 4, 5)
    with torch.no_grad():
        layer(x, LENGTHS)
    layer.compiled = False
    layer(x, LENGTHS).sum().backward()
    layer.compiled = True
    with torch.autocast("cpu", dtype=torch.bfloat16):
        layer(x, LENGTHS).float().sum().backward()


def _fresh_loader(monkeypatch, tmp_path):
    from reference import _gru_kernel
    monkeypatch.setattr(_gru_kernel, "_tried", False)
    monkeypatch.setattr(_gru_kernel, "_module", None)
    monkeypatch.setattr(_gru_kernel, "build_directory", lambda: str(tmp_path / "build"))
    monkeypatch.setenv("DS2_GRU_KERNEL", "1")
    return _gru_kernel


def _trains_like_the_readable_path():
    """A fused layer (which asks for the kernel) trains with the readable path's gradients; returns the
    fused layer and its input."""
    torch.manual_seed(14)
    x = torch.randn(7, 4, 5, dtype=torch.float64, requires_grad=True)
    a, b = RecurrentLayer(5, 3).double(), RecurrentLayer(5, 3, fused=False).double()
    b.load_state_dict(a.state_dict())
    ga, = torch.autograd.grad(a(x, LENGTHS).square().sum(), x)
    gb, = torch.autograd.grad(b(x, LENGTHS).square().sum(), x)
    torch.testing.assert_close(ga, gb)
    return a, x


def _python_path_trains_equal(caplog, reason):
    """With the kernel unavailable: one logged line naming ``reason``, and training takes the Python
    fast path with the readable path's results."""
    a, x = _trains_like_the_readable_path()
    a(x, LENGTHS)                                                    # asks again: no second attempt, no second line
    lines = [r.getMessage() for r in caplog.records if r.name == "reference._gru_kernel"]
    assert len(lines) == 1 and reason in lines[0] and "Python fast path" in lines[0], lines


def test_compiled_kernel_falls_back_when_the_build_fails(monkeypatch, tmp_path, caplog):
    kernel = _fresh_loader(monkeypatch, tmp_path)
    def failing_build(directory):
        raise RuntimeError("the build failed: main.cpp:1: error: no such header")
    monkeypatch.setattr(kernel, "_run_build", failing_build)
    _python_path_trains_equal(caplog, "no such header")


def test_compiled_kernel_falls_back_when_the_built_library_does_not_load(monkeypatch, tmp_path, caplog):
    kernel = _fresh_loader(monkeypatch, tmp_path)
    (tmp_path / "build").mkdir()
    with open(kernel._library(str(tmp_path / "build")), "wb"):     # a truncated build
        pass
    _python_path_trains_equal(caplog, "ImportError")


def test_compiled_kernel_falls_back_without_a_compiler(monkeypatch, tmp_path, caplog):
    _fresh_loader(monkeypatch, tmp_path)
    monkeypatch.setenv("CXX", "no-such-compiler-x")
    _python_path_trains_equal(caplog, "no C++ compiler")


def test_compiled_kernel_falls_back_when_the_build_times_out(monkeypatch, tmp_path, caplog):
    """The build runs in a child process group, killed at the deadline."""
    kernel = _fresh_loader(monkeypatch, tmp_path)
    monkeypatch.setattr(kernel, "BUILD_TIMEOUT", 0.5)
    _python_path_trains_equal(caplog, "took over")


def test_compiled_kernel_is_off_by_default(monkeypatch, tmp_path, caplog):
    """Opt-in: without DS2_GRU_KERNEL=1 nothing is built, nothing is logged, and training takes the
    Python fast path with the readable path's results."""
    kernel = _fresh_loader(monkeypatch, tmp_path)
    for value in (None, "0"):
        if value is None:
            monkeypatch.delenv("DS2_GRU_KERNEL", raising=False)
        else:
            monkeypatch.setenv("DS2_GRU_KERNEL", value)
        def no_build(directory):
            raise AssertionError("built although the kernel is off")
        monkeypatch.setattr(kernel, "_run_build", no_build)
        assert kernel.load() is None
        _trains_like_the_readable_path()
    assert not [r for r in caplog.records if r.name == "reference._gru_kernel"]


def test_compiled_kernel_falls_back_when_the_cache_cannot_be_written(monkeypatch, tmp_path, caplog):
    kernel = _fresh_loader(monkeypatch, tmp_path)
    (tmp_path / "file").write_text("")
    monkeypatch.setattr(kernel, "build_directory", lambda: str(tmp_path / "file" / "build"))   # under a file
    _python_path_trains_equal(caplog, "NotADirectoryError")
