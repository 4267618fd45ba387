"""Text side of Deep Speech 2: the output alphabet and its encoders (DS2 sections 3.1 and 3.6).

The English model of DS2 emits one of 29 symbols per frame: the CTC blank, the 26 letters,
space and apostrophe.  Index 0 is the blank, as ``torch.nn.functional.ctc_loss`` expects by
default.

    >>> enc = CharEncoder('english')
    >>> enc.encode("it's")
    [9, 20, 28, 19]
    >>> enc.ctc_decode([0, 0, 8, 8, 0, 5, 5, 5, 0, 12, 12, 0])
    'hel'

:class:`BigramEncoder` is DS2's other output set (section 3.6): non-overlapping bigrams, so a
model with a larger time stride still has enough output frames per token for CTC.
:func:`make_encoder` builds either from the name stored in a checkpoint's config.
"""
from __future__ import annotations

from typing import Iterable, Sequence

__all__ = ["CharEncoder", "BigramEncoder", "make_encoder", "ALPHABETS", "OUTPUTS"]

BLANK = "_"  # printable stand-in for the CTC blank in plots and debugging output

# One entry per supported language: the symbols after the blank, in index order.
ALPHABETS: dict[str, str] = {
    "english": "abcdefghijklmnopqrstuvwxyz '",
}


class _Tokens:
    """What every encoder shares: ``symbols[i]`` is token ``i``'s text (``blank_idx``'s is empty)."""

    symbols: list[str]
    blank_idx: int
    language: str
    _unit = "symbol"

    @property
    def vocab_size(self) -> int:
        """Number of output tokens, blank included (English: 29 characters, 758 with bigrams)."""
        return len(self.symbols)

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.language!r}, vocab_size={self.vocab_size})"

    def decode(self, ids: Iterable[int]) -> str:
        """Map ids to text, dropping blanks (no merging of repeats: see :meth:`ctc_decode`)."""
        out = []
        for i in _as_int_list(ids):
            if not 0 <= i < self.vocab_size:
                raise ValueError(f"{self._unit} id {i} is out of range: expected 0..{self.vocab_size - 1}")
            if i != self.blank_idx:
                out.append(self.symbols[i])
        return "".join(out)

    def ctc_decode(self, raw_ids: Iterable[int]) -> str:
        """Decode a frame-level path: merge repeated tokens, then drop blanks (``a a _ a`` -> ``aa``)."""
        from .ctc import ctc_collapse  # local import: ctc imports nothing from here at module level

        return self.decode(ctc_collapse(_as_int_list(raw_ids), blank=self.blank_idx))


class CharEncoder(_Tokens):
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


class BigramEncoder(_Tokens):
    """DS2's non-overlapping bigram outputs (section 3.6): fewer tokens per utterance than characters.

    Each word is cut into pairs of characters from its left end; a word of odd length ends in a
    single character; every space is its own token.  "the cat" becomes ``th``, ``e``, space,
    ``ca``, ``t``.  The segmentation is deterministic, so a transcript has exactly
    one target sequence, and with up to two characters per token a model can stride further in
    time (DS2 section 3.6) and still have at least one output frame per token.

    Vocabulary (English: 758 = 29 + 27 * 27): the CTC blank and the 28 single symbols at the same
    ids as :class:`CharEncoder` (0 = blank, 1..26 = a..z, 27 = space, 28 = apostrophe), then every
    pair of word characters (letters and apostrophe) in order: 29 = ``aa``, 30 = ``ab``, ...
    A bigram never holds a space, so words end exactly where a space token is emitted.

    Same interface as :class:`CharEncoder` (``encode``, ``decode``, ``ctc_decode``, ``blank_idx``,
    ``space_idx``, ``symbols``, ``vocab_size``), so collation, training and greedy decoding use it
    unchanged; the CTC rules (merge repeats, then drop blanks) apply to tokens, not characters.

        >>> enc = BigramEncoder()
        >>> [enc.symbols[i] for i in enc.encode("it's a cat")]
        ['it', "'s", ' ', 'a', ' ', 'ca', 't']
        >>> enc.decode(enc.encode("it's a cat"))
        "it's a cat"
    """

    def __init__(self, language: str = "english"):
        chars = CharEncoder(language)                 # validates the language, gives the unigram ids
        self.language = chars.language
        self.blank_idx = chars.blank_idx
        self.space_idx = chars.space_idx
        self._chars = set(chars.symbols[1:])
        word_chars = [c for c in chars.symbols[1:] if c != " "]
        self.symbols: list[str] = list(chars.symbols) + [a + b for a in word_chars for b in word_chars]
        self._index = {s: i for i, s in enumerate(self.symbols) if i != self.blank_idx}

    _unit = "token"

    def segment(self, text: str) -> list[str]:
        """The token texts of ``text``: each word in pairs from the left, each space alone."""
        if not isinstance(text, str):
            raise ValueError(f"encode expects a str, got {type(text).__name__}")
        original, text = text, text.lower()
        for pos, ch in enumerate(text):
            if ch not in self._chars:
                raise ValueError(
                    f"character {ch!r} at position {pos} of {original!r} is not in the {self.language} "
                    f"alphabet (expected letters a-z, space or apostrophe)"
                )
        tokens, i = [], 0
        while i < len(text):
            if text[i] != " " and i + 1 < len(text) and text[i + 1] != " ":
                tokens.append(text[i: i + 2])         # two characters of the same word
                i += 2
            else:
                tokens.append(text[i])                # a space, or the last character of an odd word
                i += 1
        return tokens

    def encode(self, text: str) -> list[int]:
        """Lower-case ``text``, segment it (:meth:`segment`) and map each token to its id (never the blank)."""
        return [self._index[tok] for tok in self.segment(text)]


#: The output sets a model can have (``DeepSpeech2Config.outputs``, ``reference.train --outputs``).
OUTPUTS = ("chars", "bigram")


def make_encoder(outputs: str = "chars", language: str = "english"):
    """The encoder of an output set: ``'chars'`` -> :class:`CharEncoder`, ``'bigram'`` -> :class:`BigramEncoder`."""
    if outputs == "chars":
        return CharEncoder(language)
    if outputs == "bigram":
        return BigramEncoder(language)
    raise ValueError(f"unknown outputs {outputs!r}: expected one of {list(OUTPUTS)}")


def _as_int_list(ids: Iterable[int] | Sequence[int]) -> list[int]:
    """Accept lists, tuples, numpy arrays and 1-D tensors of integers."""
    if hasattr(ids, "tolist"):
        ids = ids.tolist()
    out = list(ids)
    for i in out:
        if isinstance(i, bool) or not isinstance(i, int):
            raise ValueError(f"symbol ids must be integers, got {i!r} ({type(i).__name__})")
    return out
