"""Export a trained checkpoint for shipping: ``python -m tools.export_model SRC [DST]``.

Drops the optimizer state and stores the weights in float16 (see
:func:`reference.checkpoint.export_checkpoint`).  The course ships the capstone model made by

    python benchmarks/bench_capstone.py --runs paper --save runs/capstone
    python -m tools.export_model runs/capstone/paper.pt models/espeak-ds2.pt
"""
import sys

from reference.checkpoint import export_checkpoint


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) not in (1, 2):
        print(__doc__.split("\n\n")[0], file=sys.stderr)
        return 2
    src, dst = argv[0], argv[1] if len(argv) == 2 else "models/espeak-ds2.pt"
    try:
        out = export_checkpoint(src, dst)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
