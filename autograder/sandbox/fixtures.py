"""Objects the graded functions need, built the same way in the grader and in the worker.

``greedy_decode`` needs an encoder, ``prefix_beam_search`` a language model, ``sortagrad_*`` a
dataset, ``train_step`` a model, a batch and an optimiser.  The grader builds them here to
compute the expected values with ``reference``; the worker builds the very same objects (same
seeds, same tables) for the submission.  Only ``torch`` is imported: never ``reference``, so the
worker can load this file by path while ``reference`` stays out of its reach.

Every builder is deterministic: it draws from its own ``torch.Generator``, never the global RNG.
"""
from __future__ import annotations

import math

import torch
from torch import nn

ALPHABET = "abcdefghijklmnopqrstuvwxyz '"  # ids 1..28; 0 is the CTC blank
WORDS = ["the", "cat", "sat", "on", "a", "mat", "dog", "ran", "to", "see", "it's", "deep", "speech",
         "too", "good", "all", "well", "add", "egg", "bee"]


# ----------------------------------------------------------------------------- encoder
class ToyEncoder:
    """A ``CharEncoder('english')`` look-alike: 29 symbols, 0 = blank, 1..26 = a..z, 27 = space, 28 = '."""

    def __init__(self, language: str = "english"):
        if language != "english":
            raise ValueError(f"unknown language {language!r}")
        self.language = language
        self.blank_idx = 0
        self.symbols = ["_"] + list(ALPHABET)
        self._index = {s: i for i, s in enumerate(self.symbols) if i}
        self.space_idx = self._index[" "]

    @property
    def vocab_size(self) -> int:
        return len(self.symbols)

    def __len__(self) -> int:
        return self.vocab_size

    def encode(self, text: str) -> list[int]:
        out = []
        for ch in text.lower():
            if ch not in self._index:
                raise ValueError(f"character {ch!r} is not in the alphabet")
            out.append(self._index[ch])
        return out

    def decode(self, ids) -> str:
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < self.vocab_size:
                raise ValueError(f"symbol id {i} is out of range")
            if i != self.blank_idx:
                out.append(self.symbols[i])
        return "".join(out)

    def ctc_decode(self, raw_ids) -> str:
        if hasattr(raw_ids, "tolist"):
            raw_ids = raw_ids.tolist()
        out, prev = [], None
        for i in raw_ids:
            i = int(i)
            if i != prev and i != self.blank_idx:
                out.append(i)
            prev = i
        return self.decode(out)


# ----------------------------------------------------------------------------- language model
class ToyLM:
    """A table-based word bigram model with the ``score`` / ``end_score`` interface (natural logs).

    ``score(history, word)``: the bigram entry ``(last word of history or '<s>', word)`` if listed,
    else the unigram entry, else ``unk``.  ``end_score(history)``: the entry for the last word
    before ``</s>``, else ``end_default``.  Calls are counted (``calls``), so a check can see
    whether the LM was consulted at all.
    """

    def __init__(self, unigram: dict, bigram: dict, end: dict, unk: float = -9.0, end_default: float = -3.0):
        self.unigram, self.bigram, self.end, self.unk, self.end_default = unigram, bigram, end, unk, end_default
        self.calls = 0

    def score(self, history, word) -> float:
        self.calls += 1
        prev = history[-1] if len(history) else "<s>"
        if (prev, word) in self.bigram:
            return self.bigram[(prev, word)]
        return self.unigram.get(word, self.unk)

    def end_score(self, history) -> float:
        self.calls += 1
        last = history[-1] if len(history) else "<s>"
        return self.end.get(last, self.end_default)


def make_lm(variant: str = "small") -> ToyLM:
    """Named LMs used by the ex10 checks."""
    if variant == "small":
        uni = {"the": -1.5, "cat": -2.5, "sat": -2.8, "a": -1.8, "at": -3.5, "cab": -4.5, "ca": -7.0, "ab": -6.0}
        bi = {("<s>", "the"): -0.7, ("the", "cat"): -0.9, ("cat", "sat"): -0.8, ("<s>", "a"): -1.1,
              ("a", "cat"): -1.0, ("the", "cab"): -3.0}
        end = {"sat": -0.3, "cat": -1.2, "the": -6.0, "a": -6.0}
        return ToyLM(uni, bi, end)
    if variant == "flat":
        return ToyLM({}, {}, {}, unk=-2.0, end_default=-1.0)
    raise ValueError(f"unknown LM variant {variant!r}")


# ----------------------------------------------------------------------------- samples and datasets
class ToySample:
    """A sample: ``.audio`` (1-D float tensor), ``.transcript`` (str), ``.sample_rate`` (int)."""

    def __init__(self, audio: torch.Tensor, transcript: str, sample_rate: int = 16000):
        self.audio, self.transcript, self.sample_rate = audio, transcript, sample_rate

    def __len__(self) -> int:
        return int(self.audio.numel())

    def __repr__(self) -> str:
        return f"ToySample({self.audio.numel()} samples, {self.transcript!r})"


def make_dataset(seed: int, n: int = 12, min_len: int = 400, max_len: int = 4000, ties: int = 2) -> list:
    """``n`` samples of random length in ``[min_len, max_len]``; ``ties`` pairs share a length."""
    g = torch.Generator().manual_seed(int(seed))
    lengths = torch.randint(min_len, max_len + 1, (n,), generator=g).tolist()
    for k in range(min(ties, n // 2)):  # equal lengths at separated indices: ties break by index
        lengths[n - 1 - k] = lengths[k]
    out = []
    for i, n_samples in enumerate(lengths):
        audio = (torch.rand(n_samples, generator=g) * 2 - 1) * 0.5
        n_words = 1 + int(torch.randint(0, 3, (1,), generator=g))
        words = [WORDS[int(j)] for j in torch.randint(0, len(WORDS), (n_words,), generator=g)]
        out.append(ToySample(audio, " ".join(words)))
    return out


def samples(audios, transcripts, sample_rate: int = 16000) -> list:
    """Samples from plain data (the grader sends the audio tensors)."""
    return [ToySample(a, t, sample_rate) for a, t in zip(audios, transcripts)]


# ----------------------------------------------------------------------------- model, batch, optimiser
class ToyBatch:
    """A padded batch with the attributes of ``reference.data.Batch``."""

    def __init__(self, features, feature_lengths, targets, target_lengths, transcripts):
        self.features, self.feature_lengths = features, feature_lengths
        self.targets, self.target_lengths = targets, target_lengths
        self.transcripts = list(transcripts)

    def __len__(self) -> int:
        return int(self.features.shape[0])

    def to(self, device):
        return ToyBatch(self.features.to(device), self.feature_lengths.to(device), self.targets.to(device),
                        self.target_lengths.to(device), self.transcripts)


def batch(features, feature_lengths, targets, target_lengths, transcripts) -> ToyBatch:
    return ToyBatch(features, feature_lengths, targets, target_lengths, transcripts)


def batches(specs) -> list:
    """A list of :class:`ToyBatch` from a list of dicts with the five fields."""
    return [ToyBatch(**s) for s in specs]


class TinyCTCModel(nn.Module):
    """A very small CTC acoustic model with the DS2 interface.

    ``model(features (B, 1, F, T), feature_lengths (B,)) -> (log_probs (T', B, V), out_lens (B,))``.
    BatchNorm over the frequency bins (so train and eval mode differ), one stride-2 convolution
    over time, a clipped ReLU and a linear layer to the 29 symbols.
    """

    def __init__(self, n_freq: int = 9, hidden: int = 12, vocab_size: int = 29, seed: int = 0, scale: float = 1.0):
        super().__init__()
        self.norm = nn.BatchNorm1d(n_freq)
        self.conv = nn.Conv1d(n_freq, hidden, kernel_size=3, stride=2, padding=1)
        self.out = nn.Linear(hidden, vocab_size)
        g = torch.Generator().manual_seed(int(seed))
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name == "norm.weight":
                    p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
                else:
                    p.copy_(scale * torch.randn(p.shape, generator=g) / math.sqrt(max(1, p.shape[-1])))

    def forward(self, features, feature_lengths):
        x = features.squeeze(1)                                             # (B, F, T)
        T = x.shape[-1]
        mask = (torch.arange(T).unsqueeze(0) < feature_lengths.unsqueeze(1)).unsqueeze(1)  # (B, 1, T)
        x = self.norm(x) * mask
        x = torch.clamp(self.conv(x), 0.0, 20.0)                            # (B, H, T')
        out_lens = torch.div(feature_lengths - 1, 2, rounding_mode="floor") + 1
        logits = self.out(x.transpose(1, 2))                                # (B, T', V)
        return logits.log_softmax(-1).transpose(0, 1), out_lens            # (T', B, V)


class EchoModel(nn.Module):
    """A "model" whose log-probabilities are its input features: ``(B, 1, 29, T) -> (T', B, 29)``.

    Lets a check choose exactly what greedy decoding will read.  In train mode it adds a large
    bias to the blank (everything decodes to ""), so forgetting ``model.eval()`` shows.  With
    ``stride=2`` it keeps every other frame (``T' = (T - 1) // 2 + 1``, lengths likewise), so
    decoding up to ``feature_lengths`` instead of the output lengths shows.  ``grad_modes``
    records ``torch.is_grad_enabled()`` at every forward (a check reads it with ``model_flags``).
    """

    def __init__(self, stride: int = 1):
        super().__init__()
        bias = torch.zeros(29)
        bias[0] = 50.0
        self.register_buffer("train_bias", bias)
        self.stride = int(stride)
        self.grad_modes: list[bool] = []

    def forward(self, features, feature_lengths):
        self.grad_modes.append(bool(torch.is_grad_enabled()))
        x = features.squeeze(1).permute(2, 0, 1)[:: self.stride]            # (T', B, 29)
        if self.training:
            x = x + self.train_bias
        out_lens = torch.div(feature_lengths - 1, self.stride, rounding_mode="floor") + 1
        return x.log_softmax(-1), out_lens


def echo_model(mode: str = "train", stride: int = 1) -> EchoModel:
    m = EchoModel(stride)
    m.train(mode == "train")
    return m


def model_flags(m: nn.Module) -> dict:
    """The mode a model is in, and the grad modes its forwards ran in (``EchoModel`` only)."""
    return {"training": bool(m.training), "grad_modes": list(getattr(m, "grad_modes", []))}


def stale_grads(m: nn.Module, seed: int = 0, scale: float = 1.0) -> None:
    """Leave gradients in every parameter's ``.grad``, as an earlier backward() would."""
    g = torch.Generator().manual_seed(int(seed))
    for p in m.parameters():
        p.grad = scale * torch.randn(p.shape, generator=g, dtype=p.dtype)
    return None


def model(n_freq: int = 9, hidden: int = 12, seed: int = 0, scale: float = 1.0, mode: str = "eval") -> TinyCTCModel:
    m = TinyCTCModel(n_freq=n_freq, hidden=hidden, seed=seed, scale=scale)
    m.train(mode == "train")
    return m


def sgd(m: nn.Module, lr: float = 0.1, momentum: float = 0.0):
    return torch.optim.SGD(m.parameters(), lr=lr, momentum=momentum)


def model_state(m: nn.Module) -> dict:
    """Parameters, buffers, mode and gradients of a model, as plain tensors."""
    out = {k: v.detach().clone() for k, v in m.state_dict().items()}
    out["__training__"] = bool(m.training)
    for k, p in m.named_parameters():
        out["grad." + k] = None if p.grad is None else p.grad.detach().clone()
    return out


def lm_calls(lm: ToyLM) -> int:
    return int(lm.calls)


#: What the worker may build on request (the grader calls these directly).
BUILDERS = {
    "encoder": ToyEncoder,
    "lm": make_lm,
    "dataset": make_dataset,
    "samples": samples,
    "batch": batch,
    "batches": batches,
    "model": model,
    "echo_model": echo_model,
    "model_flags": model_flags,
    "stale_grads": stale_grads,
    "sgd": sgd,
    "model_state": model_state,
    "lm_calls": lm_calls,
}
