"""Text side of Deep Speech 2: the output alphabet and its encoder (DS2 section 3.1).

The English model of DS2 emits one of 29 symbols per frame: the CTC blank, the 26 letters,
space and apostrophe.  Index 0 is the blank, as ``torch.nn.functional.ctc_loss`` expects by
default.

    >>> enc = CharEncoder('english')
    >>> enc.encode("it's")
    [9, 20, 28, 19]
    >>> enc.ctc_decode([0, 0, 8, 8, 0, 5, 5, 5, 0, 12, 12, 0])
    'hel'
"""
from __future__ import annotations

from typing import Iterable, Sequence

__all__ = ["CharEncoder", "ALPHABETS"]

BLANK = "_"  # printable stand-in for the CTC blank in plots and debugging output

# One entry per supported language: the symbols after the blank, in index order.
ALPHABETS: dict[str, str] = {
    "english": "abcdefghijklmnopqrstuvwxyz '",
}


class CharEncoder:
    """Maps text to symbol ids and back.

    Args:
        language: key of :data:`ALPHABETS` (``'english'``: 29 symbols, 0 = blank, 1..26 = a..z,
            27 = space, 28 = apostrophe).

    Text is lower-cased before encoding; any other character is a ``ValueError`` naming it,
    because silently dropping characters would corrupt CTC targets.
    """

    def __init__(self, language: str = "english"):
        if not isinstance(language, str) or language.lower() not in ALPHABETS:
            raise ValueError(
                f"unknown language {language!r}: expected one of {sorted(ALPHABETS)}"
            )
        self.language = language.lower()
        self.blank_idx = 0
        self.symbols: list[str] = [BLANK] + list(ALPHABETS[self.language])
        self._index = {s: i for i, s in enumerate(self.symbols) if i != self.blank_idx}
        self.space_idx = self._index[" "]

    @property
    def vocab_size(self) -> int:
        """Number of output symbols, blank included (29 for English)."""
        return len(self.symbols)

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return f"CharEncoder({self.language!r}, vocab_size={self.vocab_size})"

    def encode(self, text: str) -> list[int]:
        """Lower-case ``text`` and map each character to its id (never the blank)."""
        if not isinstance(text, str):
            raise ValueError(f"encode expects a str, got {type(text).__name__}")
        ids = []
        for pos, ch in enumerate(text.lower()):
            idx = self._index.get(ch)
            if idx is None:
                raise ValueError(
                    f"character {ch!r} at position {pos} of {text!r} is not in the {self.language} "
                    f"alphabet (expected letters a-z, space or apostrophe)"
                )
            ids.append(idx)
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        """Map ids to text, dropping blanks (no merging of repeats: see :meth:`ctc_decode`)."""
        out = []
        for i in _as_int_list(ids):
            if not 0 <= i < self.vocab_size:
                raise ValueError(f"symbol id {i} is out of range: expected 0..{self.vocab_size - 1}")
            if i != self.blank_idx:
                out.append(self.symbols[i])
        return "".join(out)

    def ctc_decode(self, raw_ids: Iterable[int]) -> str:
        """Decode a frame-level path: merge repeats, then drop blanks (``a a _ a`` -> ``aa``)."""
        from .ctc import ctc_collapse  # local import: ctc imports nothing from here at module level

        return self.decode(ctc_collapse(_as_int_list(raw_ids), blank=self.blank_idx))


def _as_int_list(ids: Iterable[int] | Sequence[int]) -> list[int]:
    """Accept lists, tuples, numpy arrays and 1-D tensors of integers."""
    if hasattr(ids, "tolist"):
        ids = ids.tolist()
    out = list(ids)
    for i in out:
        if isinstance(i, bool) or not isinstance(i, int):
            raise ValueError(f"symbol ids must be integers, got {i!r} ({type(i).__name__})")
    return out
