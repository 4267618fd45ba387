"""Saving and loading trained models: config + weights + alphabet in one file.

A checkpoint is a ``torch.save`` of plain data only (loaded with ``weights_only=True``, so
loading never runs code from the file):

    {"format": "ds2-checkpoint", "version": 1, "config": {...}, "alphabet": [...],
     "language": "english", "state_dict": {...}, "optimizer": {...} | None,
     "epoch": int, "step": int, "history": {...}}
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from .model import DeepSpeech2, DeepSpeech2Config
from .text import CharEncoder, make_encoder

__all__ = ["save_checkpoint", "write_checkpoint", "load_checkpoint", "load_model", "export_checkpoint", "soup_runs",
           "average_checkpoints"]

FORMAT, VERSION = "ds2-checkpoint", 1


def save_checkpoint(path, model: DeepSpeech2, encoder: CharEncoder, optimizer=None, epoch: int = 0,
                    step: int = 0, history: dict | None = None, extra: dict | None = None) -> Path:
    """Write a checkpoint atomically (a temp file renamed into place: a crash never leaves half a file)."""
    expected = make_encoder(model.config.outputs, encoder.language)
    if list(encoder.symbols) != list(expected.symbols) or model.config.vocab_size != encoder.vocab_size:
        raise ValueError(f"the encoder {encoder!r} does not match the model (outputs={model.config.outputs!r}, "
                         f"vocab_size={model.config.vocab_size}): expected {expected!r}")
    state = {
        "format": FORMAT, "version": VERSION, "config": model.config.to_dict(),
        "alphabet": list(encoder.symbols), "language": encoder.language,
        "state_dict": model.state_dict(), "optimizer": optimizer.state_dict() if optimizer else None,
        "epoch": int(epoch), "step": int(step), "history": history or {}, "extra": extra or {},
    }
    return write_checkpoint(state, path)


def write_checkpoint(state: dict, path) -> Path:
    """``torch.save(state, path)`` atomically: into a temp file beside it, renamed into place (a crash never
    leaves half a file); the folder is made if missing.  ``state`` is a checkpoint dict as read by
    :func:`load_checkpoint` (e.g. one whose ``extra`` was updated)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path) -> dict:
    """Read and validate a checkpoint; ``FileNotFoundError`` / ``ValueError`` say what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist (train one with `python -m reference.train`)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means a corrupt or foreign file
        raise ValueError(f"{str(path)!r} is not a readable checkpoint ({type(err).__name__}: {str(err)[:200]})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{str(path)!r} is not a Deep Speech 2 checkpoint of this course (no format {FORMAT!r})")
    if state.get("version") != VERSION:
        raise ValueError(f"{str(path)!r} has checkpoint version {state.get('version')}, expected {VERSION}")
    for key in ("config", "alphabet", "state_dict"):
        if key not in state:
            raise ValueError(f"{str(path)!r} is missing {key!r}")
    return state


def load_model(path, device: str = "cpu") -> tuple[DeepSpeech2, CharEncoder, dict]:
    """``(model in eval mode, encoder, checkpoint dict)`` from a checkpoint file.

    The encoder is the one of the config's ``outputs`` (:func:`reference.text.make_encoder`):
    a :class:`CharEncoder`, or a :class:`~reference.text.BigramEncoder` for a bigram model;
    checkpoints written before the field existed have character outputs.
    """
    state = load_checkpoint(path)
    config = DeepSpeech2Config.from_dict(state["config"])
    encoder = make_encoder(config.outputs, state.get("language", "english"))
    if list(encoder.symbols) != list(state["alphabet"]):
        shown = state["alphabet"] if len(state["alphabet"]) <= 40 else f"of {len(state['alphabet'])} symbols"
        raise ValueError(f"checkpoint alphabet {shown} differs from the {encoder.language} {config.outputs} outputs' "
                         f"{encoder.vocab_size} symbols")
    model = DeepSpeech2(config=config)
    try:
        model.load_state_dict(state["state_dict"])
    except RuntimeError as err:
        raise ValueError(f"weights in {str(path)!r} do not fit its config: {str(err)[:300]}") from None
    return model.to(device).eval(), encoder, state


def average_checkpoints(paths) -> dict:
    """One checkpoint whose weights are the element-wise mean of ``paths``' weights: a *model soup*.

    Models fine-tuned from the same start with different seeds land in one basin of the loss, and
    the mean of their weights is a single model that usually generalises better than each of them
    (Wortsman et al., 2022, "Model soups"; Izmailov et al., 2018, averaged the weights along one
    run).  On a few hundred clips each fine-tune learns them by heart in its own way; the mean keeps
    what they share.  It costs nothing at inference: same size, same speed.  Two of the shipped
    models are soups (``make espeak-model``, ``make asterisk-model``; docs/figures.md).

    Every floating-point tensor is averaged in float32, BatchNorm's running mean and variance
    included (Izmailov et al. recompute those instead; the mean of the statistics is close when the
    models are); integer buffers (BatchNorm's step counters) come from the first checkpoint, as do
    the history and the recipe.  ``extra["averaged"]`` lists the sources' training commands; a source that is
    itself a soup appears as the list of its own (a soup of soups keeps its whole lineage: :func:`soup_runs`).

    Raises ``ValueError`` unless there are at least two checkpoints of one architecture and alphabet.
    """
    paths = [Path(p) for p in paths]
    if len(paths) < 2:
        raise ValueError(f"averaging needs at least two checkpoints, got {len(paths)}")
    states = [load_checkpoint(p) for p in paths]
    first = states[0]

    def described(state):   # the config with its defaults filled in: older checkpoints lack newer fields
        return {"config": DeepSpeech2Config.from_dict(state["config"]).to_dict(), "alphabet": list(state["alphabet"])}

    expected = described(first)
    for path, state in zip(paths[1:], states[1:]):
        for key, mine in described(state).items():
            if mine != expected[key]:
                raise ValueError(f"{str(path)!r} has another {key} than {str(paths[0])!r}: only models of one "
                                 f"architecture and alphabet can be averaged\n  {expected[key]}\n  {mine}")
        if state["state_dict"].keys() != first["state_dict"].keys():
            raise ValueError(f"{str(path)!r} has other weights than {str(paths[0])!r}")
    averaged = {}
    for name, tensor in first["state_dict"].items():
        if tensor.is_floating_point():
            averaged[name] = sum(s["state_dict"][name].float() for s in states) / len(states)
        else:
            averaged[name] = tensor
    extra = dict(first.get("extra") or {})
    extra["averaged"] = [_lineage(s, p) for p, s in zip(paths, states)]
    return {**first, "state_dict": averaged, "optimizer": None, "extra": extra}


def _lineage(state: dict, path) -> str | list:
    """What one source of a soup was: its training command (its path if it has none), or, for a soup, its sources'."""
    extra = state.get("extra") or {}
    return extra["averaged"] if "averaged" in extra else extra.get("command", str(path))


def soup_runs(lineage) -> list[str]:
    """The training commands of a soup's ``extra["averaged"]`` in order, an earlier round's soup (a nested list)
    unfolded into its own runs."""
    return [run for entry in lineage for run in (soup_runs(entry) if isinstance(entry, list) else [entry])]


def export_checkpoint(src, dst, half: bool = True, average_with=()) -> Path:
    """A small copy of a checkpoint for shipping: no optimizer state, weights in float16.

    ``load_model`` reads it like any other (``load_state_dict`` copies float16 into the float32
    parameters).  Halving changes log-probabilities by about 1e-3, not the transcripts'
    quality; ``history`` and ``extra`` (recipe, results) are kept.  With ``average_with`` (more
    checkpoint paths) the copy holds the mean of all their weights (:func:`average_checkpoints`).
    """
    state = average_checkpoints([src, *average_with]) if average_with else load_checkpoint(src)
    state["optimizer"] = None
    if half:
        state["state_dict"] = {k: v.half() if v.is_floating_point() else v for k, v in state["state_dict"].items()}
    return write_checkpoint(state, dst)
