"""Transcribe audio files, or a manifest's recordings, with a trained checkpoint.

    python -m reference.transcribe --checkpoint runs/demo/checkpoint.pt a.wav b.flac
    python -m reference.transcribe --checkpoint runs/espeak/checkpoint.pt --beam 32 --lm lm.json a.wav
    python -m reference.transcribe --checkpoint models/espeak-ds2.pt data/asterisk/test.jsonl

Audio files in any format ``soundfile`` reads (WAV, FLAC, OGG, MP3), at any rate, mono or
stereo, are resampled to 16 kHz (``reference.audio.load_audio``).  An argument that is a
manifest or data folder (any ``reference.datasets`` layout: NeMo ``.jsonl``, CSV/TSV, Kaldi,
LibriSpeech) stands for its recordings; their transcripts, normalised to the alphabet, give a
closing line ``WER x % (words), CER y % (characters) on N recordings``.  Greedy decoding by
default; ``--beam N`` uses CTC prefix beam search, with an n-gram language model (``--lm``,
from ``reference.lm``; ``--lm A --lm B`` interpolates them with equal weights) weighted by ``--alpha`` and a word bonus ``--beta`` (DS2 section 3.8;
by default the values tuned for the checkpoint where it stores them, as
``models/espeak-ds2.pt`` does; ``--oov-prefix-logp``: pyctcdecode's ranking of spellings that begin
no known word, -10 unless the checkpoint's tuned alpha and beta were measured without it).  Prints ``path<TAB>text`` per recording, in input order.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from .audio import load_audio
from .checkpoint import load_model
from .data import pad_features
from .decoding import DEFAULT_OOV_PREFIX_LOGP, check_oov_prefix
from .features import compute_spectrogram, window_and_hop

__all__ = ["posteriors", "decode_posteriors", "transcribe_audio", "default_oov_prefix_logp", "main"]


@torch.no_grad()
def posteriors(model, audios, batch_size: int = 16, progress: bool = False) -> list[torch.Tensor]:
    """Per recording, the ``(T', V)`` log-probabilities of 16 kHz ``audios`` (1-D tensors), in input order.

    Recordings of similar length share a forward pass (``batch_size`` at a time, so little padding),
    in eval mode, on the model's device; the results come back on the CPU.
    """
    from .training import model_device

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    model.eval()
    device = model_device(model)
    order = sorted(range(len(audios)), key=lambda i: audios[i].numel())
    chunks = [order[i: i + batch_size] for i in range(0, len(order), batch_size)]
    out: list = [None] * len(audios)
    if progress:
        from tqdm.auto import tqdm
        chunks = tqdm(chunks, desc="transcribing", unit="batch", leave=False, disable=len(chunks) < 2)
    for chunk in chunks:
        feats, lengths = pad_features([compute_spectrogram(audios[i]) for i in chunk])   # (B, 1, F, T), (B,)
        log_probs, out_lengths = model(feats.to(device), lengths.to(device))           # (T', B, V)
        for j, i in enumerate(chunk):
            out[i] = log_probs[: int(out_lengths[j]), j].float().cpu()
    return out


def decode_posteriors(log_probs, encoder, beam: int = 0, lm=None, alpha: float = 0.5, beta: float = 1.0,
                      oov_prefix_logp: float | None = None) -> list[str]:
    """Transcripts of per-recording ``(T', V)`` log-probabilities: greedy (``beam=0``) or prefix beam search + LM.

    The beam search is :func:`~reference.decoding.prefix_beam_search_fast`: the readable search's
    objective with pyctcdecode's pruning (tests/test_decoding.py ties the two together), about 10x
    faster on a trained model (``benchmarks/bench_beam_search.py``); ``oov_prefix_logp`` as there."""
    from .ctc import greedy_decode
    from .decoding import prefix_beam_search_fast

    if beam <= 0:
        return [greedy_decode(lp.unsqueeze(1), encoder)[0] for lp in log_probs]
    return [" ".join(prefix_beam_search_fast(lp, encoder, beam_width=beam, lm=lm, alpha=alpha, beta=beta,
                                             oov_prefix_logp=oov_prefix_logp)[0][0].split())
            for lp in log_probs]


def transcribe_audio(model, encoder, audios, beam: int = 0, lm=None, alpha: float = 0.5, beta: float = 1.0,
                     batch_size: int = 16, oov_prefix_logp: float | None = None) -> list[str]:
    """Transcripts of 16 kHz ``audios`` (1-D tensors), greedy (``beam=0``) or by beam search."""
    return decode_posteriors(posteriors(model, audios, batch_size), encoder, beam, lm, alpha, beta, oov_prefix_logp)


def default_oov_prefix_logp(tuned: dict, lm) -> float | None:
    """The beam search's ``oov_prefix_logp`` when none is asked for: a checkpoint's tuned alpha and beta come
    with the search they were tuned with (``bench_capstone --record`` stores it; absent or ``None``: DS2's
    plain search); otherwise pyctcdecode's -10, where the LM has a lexicon to check prefixes against."""
    if getattr(lm, "lexicon", None) is None:
        return None
    return tuned.get("oov_prefix_logp") if "alpha" in tuned else DEFAULT_OOV_PREFIX_LOGP


_UNSET = object()     # --oov-prefix-logp not given


def _logp_or_none(text: str):
    if text.strip().lower() == "none":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a log probability <= 0 or 'none', got {text!r}") from None


_MANIFEST_SUFFIXES = (".json", ".jsonl", ".csv", ".tsv")


def read_inputs(args_inputs) -> tuple[list[str], list, list]:
    """``(names, audios, references)`` for audio files and manifests/folders; a reference is None
    for a plain audio file.  Recordings whose transcript leaves the alphabet are skipped (reported)."""
    from .datasets import load_dataset

    win, _, _ = window_and_hop(16000, 20.0, 10.0, None)
    names, audios, refs = [], [], []
    for item in args_inputs:
        path = Path(item)
        if path.is_dir() or path.suffix.lower() in _MANIFEST_SUFFIXES or path.name == "wav.scp":
            data = load_dataset(path)
            print(f"{data.report.summary()}", file=sys.stderr)
            for entry, sample in zip(data.entries, data):
                names.append(str(entry.audio))
                audios.append(sample.audio)
                refs.append(sample.transcript)
            continue
        audio = load_audio(path, 16000)
        if audio.numel() < win:
            raise ValueError(f"{path}: {audio.numel()} samples at 16 kHz is shorter than one 20 ms window")
        names.append(str(item))
        audios.append(audio)
        refs.append(None)
    return names, audios, refs


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m reference.transcribe", description=__doc__.split("\n")[0])
    p.add_argument("inputs", nargs="+", metavar="AUDIO_OR_MANIFEST",
                   help="audio files (WAV, FLAC, OGG, MP3), or manifests / data folders (reference.datasets)")
    p.add_argument("--batch-size", type=int, default=16, help="recordings per forward pass")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--checkpoint", required=True, help="a checkpoint written by `python -m reference.train`")
    p.add_argument("--beam", type=int, default=0, help="beam width (0: greedy)")
    p.add_argument("--lm", action="append", help="n-gram language model: a reference.lm NGramLM JSON, ARPA or CMU Sphinx "
                   "file, or en-us (pocketsphinx's US-English trigram); given twice or more: interpolated with equal weights")
    p.add_argument("--alpha", type=float, help="LM weight (default: the checkpoint's tuned value, else 0.5)")
    p.add_argument("--beta", type=float, help="word insertion bonus (default: the checkpoint's tuned value, else 1.0)")
    p.add_argument("--oov-prefix-logp", type=_logp_or_none, default=_UNSET,
                   help="rank a beam's open word that begins no word the LM knows as if the LM gave it this log "
                        "probability (times alpha), or 'none' for DS2's plain search (default: the search the "
                        "checkpoint's alpha and beta were tuned with, else -10 where the LM has a vocabulary)")
    args = p.parse_args(argv)
    try:
        model, encoder, state = load_model(args.checkpoint)
        tuned = state.get("extra") or {}            # bench_capstone stores the alpha and beta it tuned
        alpha = next(v for v in (args.alpha, tuned.get("alpha"), 0.5) if v is not None)
        beta = next(v for v in (args.beta, tuned.get("beta"), 1.0) if v is not None)
        lm = None
        if args.lm:
            from .lm import InterpolatedLM, load_lm
            lms = [load_lm(path) for path in args.lm]
            lm = lms[0] if len(lms) == 1 else InterpolatedLM(lms, [1.0 / len(lms)] * len(lms))
        oov_prefix_logp = args.oov_prefix_logp
        if oov_prefix_logp is _UNSET:
            oov_prefix_logp = default_oov_prefix_logp(tuned, lm)
        elif args.beam > 0:
            check_oov_prefix(oov_prefix_logp, lm)       # before the forward passes, not after
        if args.batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
        names, audios, refs = read_inputs(args.inputs)
    except (FileNotFoundError, ValueError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    lps = posteriors(model, audios, args.batch_size, progress=not args.quiet)
    hyps = decode_posteriors(lps, encoder, args.beam, lm, alpha, beta, oov_prefix_logp)
    for name, text in zip(names, hyps):
        print(f"{name}\t{text}")
    scored = [(r, h) for r, h in zip(refs, hyps) if r is not None]
    if scored:
        from .metrics import char_error_rate, word_error_rate
        r, h = [x for x, _ in scored], [y for _, y in scored]
        print(f"WER {100 * word_error_rate(r, h):.2f} % (words), CER {100 * char_error_rate(r, h):.2f} % "
              f"(characters) on {len(scored)} recordings with transcripts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
