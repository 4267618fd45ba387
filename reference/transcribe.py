"""Transcribe WAV files with a trained checkpoint.

    python -m reference.transcribe --checkpoint runs/demo/checkpoint.pt a.wav b.wav
    python -m reference.transcribe --checkpoint runs/espeak/checkpoint.pt --beam 32 --lm lm.json a.wav

WAV files of any common rate (PCM 8/16/24/32-bit or float, mono or stereo) are resampled
to 16 kHz.  Greedy decoding by default; ``--beam N`` uses CTC prefix beam search, with an
n-gram language model (``--lm``, from ``reference.lm``) weighted by ``--alpha`` and a word
bonus ``--beta`` (DS2 section 3.8; by default the values tuned for the checkpoint where it
stores them, as ``models/espeak-ds2.pt`` does).  Prints ``path<TAB>text`` per file.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from .audio import load_audio
from .checkpoint import load_model
from .data import pad_features
from .features import compute_spectrogram, window_and_hop

__all__ = ["transcribe_audio", "main"]


@torch.no_grad()
def transcribe_audio(model, encoder, audios, beam: int = 0, lm=None, alpha: float = 0.5, beta: float = 1.0) -> list[str]:
    """Transcripts of 16 kHz ``audios`` (1-D tensors), greedy (``beam=0``) or by beam search."""
    from .ctc import greedy_decode
    from .decoding import prefix_beam_search

    model.eval()
    feats, lengths = pad_features([compute_spectrogram(a) for a in audios])   # (B, 1, F, T), (B,)
    log_probs, out_lengths = model(feats, lengths)                      # (T', B, V)
    if beam <= 0:
        return greedy_decode(log_probs, encoder, out_lengths)
    return [prefix_beam_search(log_probs[: int(out_lengths[b]), b], encoder, beam_width=beam, lm=lm,
                               alpha=alpha, beta=beta)[0][0] for b in range(len(audios))]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m reference.transcribe", description=__doc__.split("\n")[0])
    p.add_argument("wavs", nargs="+", help="WAV files")
    p.add_argument("--checkpoint", required=True, help="a checkpoint written by `python -m reference.train`")
    p.add_argument("--beam", type=int, default=0, help="beam width (0: greedy)")
    p.add_argument("--lm", help="n-gram language model file (reference.lm NGramLM JSON, or ARPA)")
    p.add_argument("--alpha", type=float, help="LM weight (default: the checkpoint's tuned value, else 0.5)")
    p.add_argument("--beta", type=float, help="word insertion bonus (default: the checkpoint's tuned value, else 1.0)")
    args = p.parse_args(argv)
    try:
        model, encoder, state = load_model(args.checkpoint)
        tuned = state.get("extra") or {}            # bench_capstone stores the alpha and beta it tuned
        alpha = next(v for v in (args.alpha, tuned.get("alpha"), 0.5) if v is not None)
        beta = next(v for v in (args.beta, tuned.get("beta"), 1.0) if v is not None)
        lm = None
        if args.lm:
            from .lm import load_lm
            lm = load_lm(args.lm)
        audios = []
        win, _, _ = window_and_hop(16000, 20.0, 10.0, None)
        for path in args.wavs:
            audio = load_audio(path, 16000)
            if audio.numel() < win:
                raise ValueError(f"{path}: {audio.numel()} samples at 16 kHz is shorter than one 20 ms window")
            audios.append(audio)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for path, text in zip(args.wavs, transcribe_audio(model, encoder, audios, args.beam, lm, alpha, beta)):
        print(f"{path}\t{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
