"""Independent ex06: a GRU with split weight matrices (one matmul per gate)."""
import torch


def _split(w):
    return (None, None, None) if w is None else w.chunk(3, 0)


def _lin(x, w, b):
    y = x @ w.t()
    return y if b is None else y + b


def gru_cell(x, h, weight_ih, weight_hh, bias_ih=None, bias_hh=None):
    (wir, wiz, win), (whr, whz, whn) = weight_ih.chunk(3, 0), weight_hh.chunk(3, 0)
    bir, biz, bin_ = _split(bias_ih)
    bhr, bhz, bhn = _split(bias_hh)
    r = torch.sigmoid(_lin(x, wir, bir) + _lin(h, whr, bhr))
    z = torch.sigmoid(_lin(x, wiz, biz) + _lin(h, whz, bhz))
    n = torch.tanh(_lin(x, win, bin_) + r * _lin(h, whn, bhn))
    return n + z * (h - n)


def gru_layer(x, lengths, weight_ih, weight_hh, bias_ih=None, bias_hh=None, reverse=False):
    T, B, _ = x.shape
    H = weight_hh.shape[1]
    lengths = torch.as_tensor(lengths).tolist()
    if reverse:  # reverse each sequence within its own length, run forwards, reverse back
        idx = torch.tensor([[(n - 1 - t) if t < n else t for b, n in enumerate(lengths)] for t in range(T)])
        x = x.gather(0, idx.unsqueeze(2).expand(T, B, x.shape[2]))
    h = x.new_zeros(B, H)
    outs = []
    alive = torch.tensor(lengths)
    for t in range(T):
        h_new = gru_cell(x[t], h, weight_ih, weight_hh, bias_ih, bias_hh)
        m = (t < alive).unsqueeze(1).to(x.dtype)
        h = m * h_new + (1 - m) * h
        outs.append(m * h_new)
    out = torch.stack(outs) if outs else x.new_zeros(0, B, H)
    if reverse:
        out = out.gather(0, idx.unsqueeze(2).expand(T, B, H))
    return out


def bidirectional_gru(x, lengths, forward_weights, backward_weights):
    return gru_layer(x, lengths, *forward_weights) + gru_layer(x, lengths, *backward_weights, reverse=True)
