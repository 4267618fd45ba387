"""A complete, readable Deep Speech 2 (Amodei et al., 2015) in PyTorch.

Modules, one concept each (paper sections in their docstrings):

==============  ==============================================================
``text``        the 29-symbol alphabet: :class:`CharEncoder` (and DS2's bigrams: :class:`BigramEncoder`)
``features``    spectrograms: :func:`frame_signal`, :func:`compute_spectrogram`
``synthetic``   learnable synthetic speech for demos and tests
``data``        samples, padded batches, SortaGrad
``ctc``         CTC collapse, greedy decoding, the from-scratch CTC loss
``metrics``     edit distance, WER (and its per-utterance counts), CER
``layers``      clipped ReLU, masked convs, GRU, sequence-wise BatchNorm, row conv
``model``       :class:`DeepSpeech2` and its config
``training``    :func:`train_step`, :func:`evaluate`, :func:`fit`
``decoding``    CTC prefix beam search with a language model
``lm``          word n-gram language model (Kneser-Ney)
``audio``       audio files and resampling
``checkpoint``  save / load a trained model
``datasets``    recordings in the layouts people have (``--data PATH``)
``prepare``     real recordings from packages (``python -m reference.prepare asterisk``)
``voices``      many synthesized voices saying WordNet's examples (``python -m reference.prepare voices``)
``tts``         SVOX Pico and RHVoice, two more synthesizers, through ``ctypes``
``devices``     ``--device`` and mixed precision (:class:`~reference.devices.Amp`)
``distributed`` torchrun: DDP, shares of minibatches, synchronised BatchNorm
``loading``     minibatches from DataLoader workers and a feature cache
==============  ==============================================================
"""
from .text import BigramEncoder, CharEncoder, make_encoder
from .features import compute_spectrogram, frame_signal
from .data import Batch, Sample, collate_batch, sortagrad_batches, sortagrad_sampler
from .ctc import ctc_collapse, ctc_log_alpha, ctc_loss, extend_with_blanks, greedy_decode
from .metrics import char_error_rate, edit_distance, word_error_rate
from .layers import (ClippedReLU, RowConv, SequenceWiseBatchNorm, bidirectional_gru, clipped_relu,
                     conv_output_length, gru_cell, gru_layer, mask_time, row_conv)
from .model import DeepSpeech2, DeepSpeech2Config
from .synthetic import generate_synthetic_audio, generate_synthetic_dataset
from .training import evaluate, fit, train_step
from .decoding import prefix_beam_search
from . import checkpoint, lm  # noqa: F401  (reference.lm.NGramLM, reference.checkpoint.load_model)

__all__ = [
    # the seed API (call shapes of the walkthrough notebook)
    "generate_synthetic_audio", "compute_spectrogram", "CharEncoder", "BigramEncoder", "make_encoder", "DeepSpeech2", "generate_synthetic_dataset",
    "collate_batch", "greedy_decode", "sortagrad_sampler", "train_step", "word_error_rate", "ClippedReLU",
    # graded names (docs/design.md)
    "frame_signal", "ctc_collapse", "edit_distance", "char_error_rate", "extend_with_blanks", "ctc_log_alpha",
    "ctc_loss", "clipped_relu", "conv_output_length", "mask_time", "gru_cell", "gru_layer", "bidirectional_gru",
    "SequenceWiseBatchNorm", "sortagrad_batches", "evaluate", "prefix_beam_search", "row_conv",
    # the rest of the model
    "Sample", "Batch", "DeepSpeech2Config", "RowConv", "fit",
]
