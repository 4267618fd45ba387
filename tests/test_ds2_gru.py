"""DS2's own GRU (section 3.4) as a model option: the candidate uses the clipped ReLU instead of tanh.

The oracle is the formula written out step by step here, and, for the course's default, torch's
``nn.GRU``: the two layers share every weight, and differ only in the candidate's activation.
"""
from __future__ import annotations

import torch

from reference import DeepSpeech2, generate_synthetic_dataset, CharEncoder, collate_batch, train_step
from reference.layers import RecurrentLayer


def _by_formula(gx, lengths, U, b, act):
    """The GRU written out: r, z from sigmoid, n = act(W_n x + r * (U_n h + b_n)), h' = (1 - z) n + z h."""
    T, B, G = gx.shape
    H = G // 3
    h = torch.zeros(B, H, dtype=gx.dtype)
    out = torch.zeros(T, B, H, dtype=gx.dtype)
    for t in range(T):
        gh = h @ U.T + b
        r = torch.sigmoid(gx[t, :, :H] + gh[:, :H])
        z = torch.sigmoid(gx[t, :, H:2 * H] + gh[:, H:2 * H])
        n = act(gx[t, :, 2 * H:] + r * gh[:, 2 * H:])
        h_new = (1 - z) * n + z * h
        keep = (t < lengths).unsqueeze(1)
        h = torch.where(keep, h_new, h)
        out[t] = torch.where(keep, h_new, torch.zeros_like(h_new))
    return out


def _layer(rnn_type):
    torch.manual_seed(0)
    layer = RecurrentLayer(5, 4, rnn_type=rnn_type, bidirectional=False, batch_norm="none", fused=False).double()
    return layer


def test_ds2gru_candidate_is_the_clipped_relu():
    x = 3.0 * torch.randn(7, 3, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    lengths = torch.tensor([7, 4, 2])
    ds2, gru = _layer("ds2gru"), _layer("gru")
    gru.load_state_dict(ds2.state_dict())
    gx = torch.nn.functional.linear(x, ds2.weight_ih, ds2.bias_ih)
    U, b = ds2.weight_hh[0], ds2.bias_hh[0]
    relu20 = lambda v: v.clamp(0, 20)  # noqa: E731
    torch.testing.assert_close(ds2(x, lengths), _by_formula(gx, lengths, U, b, relu20))
    torch.testing.assert_close(gru(x, lengths), _by_formula(gx, lengths, U, b, torch.tanh))
    assert not torch.allclose(ds2(x, lengths), gru(x, lengths))
    assert float(ds2(x, lengths).detach().min()) >= 0.0          # a clipped-ReLU candidate and h0 = 0 keep h >= 0


def test_the_default_gru_is_torchs():
    x = torch.randn(6, 2, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    layer = _layer("gru")
    ref = torch.nn.GRU(5, 4).double()
    with torch.no_grad():
        ref.weight_ih_l0.copy_(layer.weight_ih)
        ref.bias_ih_l0.copy_(layer.bias_ih)
        ref.weight_hh_l0.copy_(layer.weight_hh[0])
        ref.bias_hh_l0.copy_(layer.bias_hh[0])
    torch.testing.assert_close(layer(x, torch.tensor([6, 6])), ref(x)[0])


def test_a_ds2gru_model_trains():
    enc = CharEncoder("english")
    data = generate_synthetic_dataset(8, seed=3)
    model = DeepSpeech2(n_freq=161, vocab_size=29, n_conv=1, conv_channels=(4,), n_rnn=1, rnn_hidden=16,
                        rnn_type="ds2gru")
    batch = collate_batch(list(data), enc)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = [train_step(model, batch, opt) for _ in range(8)]
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0], losses
