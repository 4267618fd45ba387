"""The Deep Speech 2 network (DS2 section 3, Figure 1).

    spectrogram (B, 1, F, T)
      -> n_conv x [Conv2d over (freq, time) -> BatchNorm -> clipped ReLU -> re-zero padding]
      -> (T', B, C * F')
      -> n_rnn x [sequence-wise BN(W x) -> GRU (or simple RNN), directions summed]
      -> [row convolution, for unidirectional (streaming) models]
      -> [fully connected + clipped ReLU]
      -> linear -> log-softmax                                    (T', B, vocab_size)

Every size after the input is derived from the layers themselves (``output_lengths`` asks
each conv for its kernel, stride and padding), so nothing is written twice.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .text import OUTPUTS
from .layers import MaskedConv, RecurrentLayer, RowConv, clipped_relu, time_mask
from .validation import check_lengths, check_tensor

__all__ = ["DeepSpeech2", "DeepSpeech2Config", "Parts", "PAPER_CONV_LAYERS"]

# DS2 section 3.5 (frequency convolutions): (channels, (freq kernel, time kernel), (freq stride, time stride))
PAPER_CONV_LAYERS = (
    (32, (41, 11), (2, 2)),
    (32, (21, 11), (2, 1)),
    (96, (21, 11), (2, 1)),
)


@dataclass
class DeepSpeech2Config:
    """Hyper-parameters of :class:`DeepSpeech2`, each with the reason it exists."""

    n_freq: int = 161               # spectrogram bins: 20 ms window at 16 kHz -> 320 // 2 + 1
    vocab_size: int = 29            # blank + a-z + space + apostrophe
    n_conv: int = 1                 # DS2 Table 4: 1-3 conv layers; 3 were best with lots of data
    conv_channels: tuple = ()       # channels per conv layer; () = the paper's (32, 32, 96)
    conv_time_stride: int = 0       # time stride of the first conv; 0 = the paper's 2 (DS2 section 3.6: striding
                                    # cuts RNN cost; 3 still leaves CTC enough frames for 1-2-word demo utterances)
    n_rnn: int = 3                  # DS2 Table 1: 1-7 recurrent layers at a fixed parameter count; depth beat width
    rnn_hidden: int = 128           # units per recurrent layer (DS2 Table 1: 1280-2400, ~38 M parameters);
                                    # small here, for a CPU
    rnn_type: str = "gru"           # 'gru': PyTorch's GRU (tanh candidate), the course's default; 'ds2gru': DS2's
                                    # own GRU (section 3.4, clipped-ReLU candidate); 'rnn': clipped-ReLU simple RNN
    bidirectional: bool = True      # False for streaming; then use lookahead > 0 (row convolution)
    lookahead: int = 0              # future frames of the row convolution (DS2 section 3.7), unidirectional only
    batch_norm: str = "wx"          # 'wx' (paper: BN on the input-to-hidden projection), 'input', 'none'
    bn_include_padding: bool = False  # count padding in BN statistics (a mistake, for ablations)
    merge: str = "sum"              # 'sum' the two directions (paper) or 'concat' them (ablation)
    fc_hidden: int = 0              # width of a fully connected layer before the output; 0 = none
    fused_rnn: bool = True          # the fast GRU recurrence (both directions at once, hand-written backward;
                                    # torch's kernel in evaluation): same maths
    outputs: str = "chars"          # what an output frame emits: 'chars' (CharEncoder, 29) or 'bigram' (DS2 section 3.6:
                                    # BigramEncoder, 758, for a larger conv_time_stride); checkpoints rebuild the encoder
                                    # from it (reference.text.make_encoder); older ones, without it, are 'chars'
    extra: dict = field(default_factory=dict)  # free-form notes (e.g. the recipe that trained it)

    def __post_init__(self):
        for name in ("n_freq", "vocab_size", "rnn_hidden"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.n_conv <= len(PAPER_CONV_LAYERS):
            raise ValueError(f"n_conv must be 0..{len(PAPER_CONV_LAYERS)}, got {self.n_conv}")
        if isinstance(self.conv_time_stride, bool) or not isinstance(self.conv_time_stride, int) or self.conv_time_stride < 0:
            raise ValueError(f"conv_time_stride must be an int >= 1 (0: the paper's 2), got {self.conv_time_stride!r}")
        if self.n_rnn < 1:
            raise ValueError(f"n_rnn must be >= 1, got {self.n_rnn}")
        if self.outputs not in OUTPUTS:
            raise ValueError(f"outputs must be one of {list(OUTPUTS)}, got {self.outputs!r}")
        if self.conv_channels and len(self.conv_channels) != self.n_conv:
            raise ValueError(f"conv_channels has {len(self.conv_channels)} entries for n_conv={self.n_conv}")
        if self.lookahead and self.bidirectional:
            raise ValueError("lookahead (row convolution) is for unidirectional models: set bidirectional=False")
        self.conv_channels = tuple(self.conv_channels)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DeepSpeech2Config":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown DeepSpeech2Config fields {unknown}; expected some of {sorted(known)}")
        return cls(**d)

    def conv_layers(self) -> list[tuple[int, tuple[int, int], tuple[int, int]]]:
        layers = []
        for i, (ch, k, s) in enumerate(PAPER_CONV_LAYERS[: self.n_conv]):
            if self.conv_channels:
                ch = self.conv_channels[i]
            if i == 0 and self.conv_time_stride:
                s = (s[0], self.conv_time_stride)
            layers.append((ch, k, s))
        return layers


@dataclass(frozen=True)
class Parts:
    """Which implementation of each graded piece the model is built from; ``None``: the reference's.

    Lessons 09-11 build the model from the student's own pieces (``lessons/yourturn.py`` checks
    each one first).  The maths are the same, so are the parameter names (a checkpoint loads either
    way); the speed is not: an injected ``gru_layer`` replaces the fused GRU recurrence by the
    student's Python loop under autograd.

    * ``gru_layer``: :func:`~reference.layers.gru_layer`'s contract (runs each direction);
    * ``batch_norm``: a class with :class:`~reference.layers.SequenceWiseBatchNorm`'s contract;
    * ``row_conv``: :func:`~reference.layers.row_conv`'s contract (streaming models only).
    """

    gru_layer: Callable | None = None
    batch_norm: Callable | None = None
    row_conv: Callable | None = None


class DeepSpeech2(nn.Module):
    """Deep Speech 2: ``model(features, feature_lengths) -> (log_probs (T', B, V), out_lengths)``.

    Construct with keyword arguments (``DeepSpeech2(n_freq=161, vocab_size=29, n_conv=1,
    n_rnn=3, rnn_hidden=128)``) or from a :class:`DeepSpeech2Config`.  In eval mode an
    utterance's outputs do not depend on its batch mates (padding is re-zeroed after every
    layer and BatchNorm statistics never see it).  ``parts=Parts(...)`` builds it from other
    implementations of the graded pieces (the student's, in lessons 09-11).
    """

    def __init__(self, n_freq: int = 161, vocab_size: int = 29, config: DeepSpeech2Config | None = None, *,
                 parts: Parts | None = None, **kwargs):
        super().__init__()
        if config is None:
            config = DeepSpeech2Config(n_freq=n_freq, vocab_size=vocab_size, **kwargs)
        elif kwargs:
            raise ValueError(f"pass either a config or keyword arguments, not both (got {sorted(kwargs)})")
        if parts is not None and not isinstance(parts, Parts):
            raise ValueError(f"parts must be a reference.model.Parts, got {type(parts).__name__}")
        self.config = cfg = config
        self.parts = parts = parts or Parts()

        self.convs = nn.ModuleList()
        channels, freq = 1, cfg.n_freq
        for out_ch, kernel, stride in cfg.conv_layers():
            conv = MaskedConv(channels, out_ch, kernel, stride, batch_norm=cfg.batch_norm != "none")
            freq = conv.output_size(freq)
            if freq < 1:
                raise ValueError(f"n_freq={cfg.n_freq} is too small for {cfg.n_conv} conv layers")
            self.convs.append(conv)
            channels = out_ch
        size = channels * freq                                    # features per frame into the RNNs

        self.rnns = nn.ModuleList()
        for _ in range(cfg.n_rnn):
            rnn = RecurrentLayer(size, cfg.rnn_hidden, cfg.rnn_type, cfg.bidirectional, cfg.batch_norm,
                                 cfg.bn_include_padding, cfg.merge, cfg.fused_rnn,
                                 gru_layer=parts.gru_layer, batch_norm_class=parts.batch_norm)
            self.rnns.append(rnn)
            size = rnn.output_size
        self.lookahead = RowConv(size, cfg.lookahead, parts.row_conv) if cfg.lookahead else None
        self.fc = nn.Linear(size, cfg.fc_hidden) if cfg.fc_hidden else None
        self.output = nn.Linear(cfg.fc_hidden or size, cfg.vocab_size)

    @classmethod
    def from_config(cls, config: DeepSpeech2Config) -> "DeepSpeech2":
        return cls(config=config)

    def output_lengths(self, feature_lengths: torch.Tensor) -> torch.Tensor:
        """Output frames for the given input frames, asked of each conv layer in turn."""
        lengths = feature_lengths
        for conv in self.convs:
            lengths = conv.output_lengths(lengths)
        return lengths

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, features: torch.Tensor, feature_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``features`` ``(B, 1, n_freq, T)``, ``feature_lengths`` ``(B,)`` -> ``(log_probs (T', B, V), (B,))``."""
        check_tensor(features, "features", 4, floating=True)
        B, C, n_freq, T = features.shape
        if C != 1 or n_freq != self.config.n_freq:
            raise ValueError(f"features must be (B, 1, {self.config.n_freq}, T), got {tuple(features.shape)}")
        lengths = check_lengths(feature_lengths, B, T, "feature_lengths").to(features.device)
        if int(self.output_lengths(lengths).min()) < 1:
            raise ValueError(f"an utterance of {int(lengths.min())} frames is too short for the conv layers")
        x = features.masked_fill(~time_mask(lengths, T)[:, None, None, :], 0.0)    # padding must be zero
        for conv in self.convs:
            x, lengths = conv(x, lengths)                          # (B, C, F', T')
        B, C, Fq, T = x.shape
        x = x.reshape(B, C * Fq, T).permute(2, 0, 1)               # (T', B, C * F')
        for rnn in self.rnns:
            x = rnn(x, lengths)                                    # (T', B, H)
        if self.lookahead is not None:
            x = clipped_relu(self.lookahead(x, lengths))
        if self.fc is not None:
            x = clipped_relu(self.fc(x))
        logits = self.output(x)
        if logits.dtype in (torch.float16, torch.bfloat16):        # autocast: the CTC loss needs float32
            logits = logits.float()
        log_probs = F.log_softmax(logits, dim=-1)                  # (T', B, V)
        return log_probs, lengths
