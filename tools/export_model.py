"""Export a trained checkpoint for shipping: ``python -m tools.export_model SRC [DST] [--average-with MORE ...]``.

Drops the optimizer state and stores the weights in float16 (see
:func:`reference.checkpoint.export_checkpoint`).  With ``--average-with``, the exported weights are
the mean of SRC's and MORE's (a model soup, :func:`reference.checkpoint.average_checkpoints`).  Two of
the shipped models are soups, and the Makefile holds their whole recipes: ``make espeak-model``
(``models/espeak-ds2.pt``, three runs of the capstone recipe) ends in

    python -m tools.export_model runs/capstone-s0.pt runs/capstone-soup/spec-augment.pt --average-with runs/capstone-c1/spec-augment.pt runs/capstone-c2/spec-augment.pt

and ``make asterisk-model`` (``models/asterisk-ds2.pt``) averages nine fine-tunes on one person.
"""
import argparse
import sys

from reference.checkpoint import export_checkpoint


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.export_model", description=__doc__.split("\n\n")[0])
    p.add_argument("src", help="a checkpoint written by training (runs/NAME/checkpoint.pt)")
    p.add_argument("dst", nargs="?", default="models/espeak-ds2.pt", help="where to write the small copy")
    p.add_argument("--average-with", nargs="+", default=[], metavar="MORE",
                   help="more checkpoints of the same architecture: export the mean of all their weights")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        out = export_checkpoint(args.src, args.dst, average_with=args.average_with)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    shown = f", the mean of {1 + len(args.average_with)} checkpoints" if args.average_with else ""
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB{shown})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
