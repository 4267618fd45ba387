"""A human voice: WER and CER of the course's models and of pocketsphinx on the same recordings.

The test split of ``python -m reference.prepare asterisk OUT`` (``make asterisk``): 131 telephone
prompts of one human voice whose text has no digits, fixed by the SHA-1 of their names (see
``reference/prepare.py``).  In one run, on those clips:

* ``models/espeak-ds2.pt``, trained on eSpeak's voices saying 348 words (zero-shot on a person): greedy,
  and beam search + the trigram of the Asterisk TRAIN texts (``OUT/lm.json``);
* ``models/voices-ds2.pt``, trained on ``make voices`` (WordNet's examples said by eSpeak NG and Flite
  voices; zero-shot on a person too): the same two decodings;
* ``models/asterisk-ds2.pt``, that model fine-tuned on the TRAIN prompts (its recipe is in the
  checkpoint; ``make asterisk-model`` makes it again): the same two decodings;
* pocketsphinx 5 with its bundled US-English model (a classic HMM recognizer; an optional extra:
  ``pip install pocketsphinx``; without it the row says how to get it).

Two language models: ``OUT/lm.json`` (a trigram of the TRAIN texts only) and, where pocketsphinx is
installed, that trigram interpolated half and half with pocketsphinx's own general US-English trigram
(``reference.lm.SphinxLM``; ``InterpolatedLM`` shares the trigram's ``<unk>`` among the words only the
general model knows): the LM pocketsphinx decodes with, so that row and pocketsphinx's differ in
their acoustic models.  alpha and beta are chosen for each model and LM on ``OUT/dev.jsonl`` (TRAIN prompts held out from
fine-tuning, never test prompts) over a small grid; the test split is decoded once.  The beam search
ranks a prefix whose open word begins no word the LM knows as pyctcdecode does (``oov_prefix_logp``
-10, ``reference.decoding``); ``--plain-search`` leaves that out.

    python benchmarks/bench_real_speech.py [--data data/asterisk] [--beam 32] [--plain-search] [--json FILE]
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

from _common import ROOT, header

from reference.decoding import DEFAULT_OOV_PREFIX_LOGP

GRID = [(a, b) for a in (0.5, 1.0, 1.5, 2.0) for b in (0.0, 2.0, 4.0, 7.0, 10.0)]


def pocketsphinx_rows(test):
    try:
        from pocketsphinx import Decoder
    except ImportError:
        return None
    import torch

    decoder = Decoder(samprate=16000, loglevel="FATAL")
    hyps = []
    for s in test:
        pcm = (s.audio.clamp(-1, 1) * 32767).round().to(torch.int16).numpy().tobytes()
        decoder.start_utt()
        decoder.process_raw(pcm, full_utt=True)
        decoder.end_utt()
        hyp = decoder.hyp()
        hyps.append(" ".join((hyp.hypstr if hyp else "").lower().split()))
    return hyps


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=str(ROOT / "data" / "asterisk"), help="the folder `prepare asterisk` wrote")
    p.add_argument("--models", nargs="+", default=["models/espeak-ds2.pt", "models/voices-ds2.pt", "models/asterisk-ds2.pt"])
    p.add_argument("--beam", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--oov-prefix-logp", type=float, default=DEFAULT_OOV_PREFIX_LOGP,
                   help="the beam search's ranking of open words that begin no word the LM knows (reference.decoding); "
                        "--plain-search for DS2's search without it")
    p.add_argument("--plain-search", dest="oov_prefix_logp", action="store_const", const=None,
                   help="no oov_prefix_logp: DS2's plain prefix beam search")
    p.add_argument("--json", help="also write the table to this file (lesson 11 reads lessons/data/11_real_speech.json)")
    args = p.parse_args(argv)
    data = Path(args.data)
    if not (data / "test.jsonl").is_file():
        print(f"error: {data / 'test.jsonl'} not found: prepare the recordings first with `make asterisk` "
              f"(python -m reference.prepare asterisk {data})", file=sys.stderr)
        return 2
    header("a human voice: the Asterisk prompts' test split", args.threads)
    from reference.checkpoint import load_model
    from reference.datasets import load_dataset
    from reference.lm import load_lm
    from reference.metrics import char_error_rate, word_error_rate
    from reference.transcribe import decode_posteriors, posteriors

    test, dev = load_dataset(data / "test.jsonl"), load_dataset(data / "dev.jsonl")
    train_minutes = sum(float(json.loads(line)["duration"]) for line in (data / "train.jsonl").read_text().splitlines()
                        if line.strip()) / 60
    lm = load_lm(data / "lm.json")
    lms, oov = {"lm.json": lm}, args.oov_prefix_logp
    try:
        from reference.lm import InterpolatedLM, SphinxLM
        lms["lm.json + en-us"] = InterpolatedLM([lm, SphinxLM.us_english()], [0.5, 0.5])
    except ImportError:
        print("pocketsphinx is not installed: no row with its US-English LM (pip install pocketsphinx)")
    refs = [s.transcript for s in test]
    minutes = sum(s.duration for s in test) / 60
    print(f"test: {len(test)} clips, {minutes:.1f} minutes; dev (for alpha, beta): {len(dev)} clips; "
          f"LM: {data / 'lm.json'} ({len(getattr(lm, 'vocab', ()))} words)")
    rows = []

    def add(system, decoding, hyps, seconds):
        rows.append(dict(system=system, decoding=decoding, wer=word_error_rate(refs, hyps),
                         cer=char_error_rate(refs, hyps), seconds=round(seconds, 1), example=hyps[:3]))
        r = rows[-1]
        print(f"{system:20} {decoding:42} WER {100 * r['wer']:6.1f} %  CER {100 * r['cer']:5.1f} %  "
              f"({seconds:.0f} s)", flush=True)

    for path in args.models:
        path = ROOT / path if not Path(path).is_absolute() else Path(path)
        if not path.is_file():
            print(f"{path.name:34} missing: {path}")
            continue
        model, encoder, state = load_model(path)
        model.float()
        t0 = time.perf_counter()
        lps = posteriors(model, [s.audio for s in test])
        add(path.name, "greedy", decode_posteriors(lps, encoder), time.perf_counter() - t0)
        dev_lps, dev_refs = posteriors(model, [s.audio for s in dev]), [s.transcript for s in dev]
        for name, model_lm in lms.items():
            scores = {(a, b): word_error_rate(dev_refs, decode_posteriors(dev_lps, encoder, 16, model_lm, a, b, oov))
                      for a, b in GRID}
            alpha, beta = min(scores, key=scores.get)
            t0 = time.perf_counter()
            add(path.name, f"beam {args.beam} + {name} (a={alpha}, b={beta})",
                decode_posteriors(lps, encoder, args.beam, model_lm, alpha, beta, oov), time.perf_counter() - t0)
    t0 = time.perf_counter()
    hyps = pocketsphinx_rows(test)
    if hyps is None:
        print(f"{'pocketsphinx':34} not installed: `pip install pocketsphinx` (5.x bundles a US-English model)")
    else:
        from importlib.metadata import version
        add(f"pocketsphinx {version('pocketsphinx')}", "its US-English model + LM", hyps,
            time.perf_counter() - t0)
    if args.json:
        out = dict(command="python benchmarks/bench_real_speech.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                   test_clips=len(test), test_minutes=round(minutes, 2), train_minutes=round(train_minutes, 2), references=refs[:3], rows=rows)
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
