"""Word n-gram language models for beam-search decoding (DS2 section 3.8).

DS2 rescores CTC hypotheses with an n-gram language model: the decoder maximises

    Q(y) = log p_ctc(y | x) + alpha * log p_lm(y) + beta * word_count(y)

where ``p_lm(y)`` is the probability of the *words* of ``y`` (the paper uses a 5-gram
trained with KenLM on a large text corpus).  This module defines what the decoder needs from
a language model (:class:`LanguageModel`) and a small from-scratch implementation,
:class:`NGramLM`, with interpolated modified Kneser-Ney smoothing: the standard n-gram
smoothing (Chen & Goodman 1998, "An empirical study of smoothing techniques for language
modeling", section 3.6), and what KenLM builds.

All probabilities are natural logs.  A sentence ``w1 .. wk`` is scored as

    log p(w1 .. wk) = sum_i log p(w_i | <s> w_1 .. w_{i-1}) + log p(</s> | <s> w_1 .. w_k)

so the end of the sentence counts: a model that never ends sentences is not rewarded for
short hypotheses.  Words the model never saw are all mapped to the one symbol ``<unk>``.

    >>> lm = NGramLM.train(["the cat sat", "the dog sat", "a cat ran"], order=2)
    >>> round(lm.sentence_logprob(["the", "cat", "sat"]), 3) > round(lm.sentence_logprob(["sat", "cat", "the"]), 3)
    True
"""
from __future__ import annotations

import abc
import bisect
import functools
import json
import math
from collections import defaultdict
from typing import Iterable, Sequence

__all__ = [
    "LanguageModel",
    "pyctcdecode_language_model",
    "NGramLM",
    "ArpaLM",
    "SphinxLM",
    "InterpolatedLM",
    "BOS",
    "EOS",
    "UNK",
    "estimate_discounts",
    "FALLBACK_DISCOUNTS",
]

BOS = "<s>"  # start of sentence: only ever a context, never predicted
EOS = "</s>"  # end of sentence: predicted by :meth:`LanguageModel.end_score`
UNK = "<unk>"  # every word outside the vocabulary
_SPECIALS = (BOS, EOS, UNK)

# KenLM's ``--discount_fallback`` values, used when a corpus is too small to estimate a discount.
FALLBACK_DISCOUNTS: tuple[float, float, float] = (0.5, 1.0, 1.5)

_LOG10 = math.log(10.0)


def _check_word(word, what: str = "word") -> str:
    if not isinstance(word, str) or not word or any(ch.isspace() for ch in word):
        raise ValueError(f"{what} must be a non-empty str without whitespace, got {word!r}")
    return word


def _check_history(history) -> tuple[str, ...]:
    if isinstance(history, str):
        raise ValueError(
            f"history must be a sequence of words (e.g. a tuple of str), got the str {history!r}; "
            "use tuple(text.split())"
        )
    try:
        history = tuple(history)
    except TypeError:
        raise ValueError(f"history must be a sequence of words, got {type(history).__name__}") from None
    for w in history:
        _check_word(w, "each word of history")
    return history


class LanguageModel(abc.ABC):
    """What :func:`reference.decoding.prefix_beam_search` needs from a language model.

    Subclasses implement :meth:`score` and :meth:`end_score`; :meth:`sentence_logprob` and
    :meth:`perplexity` follow from them.

    Attributes:
        order: the n of the n-gram (how many words, the predicted one included, matter).
    """

    order: int
    #: the words the model can spell, for :meth:`starts_word` (``None``: it cannot tell)
    lexicon: frozenset | None = None

    @abc.abstractmethod
    def score(self, history: Sequence[str], word: str) -> float:
        """Natural log ``p(word | history)``.

        ``history`` holds the preceding words of the sentence, oldest first, *without*
        ``<s>``; it may be longer than ``order - 1`` (the model keeps only what it uses).
        An out-of-vocabulary ``word`` gets the probability of ``<unk>``.
        """

    @abc.abstractmethod
    def end_score(self, history: Sequence[str]) -> float:
        """Natural log ``p(</s> | history)``: the probability that the sentence ends here."""

    def starts_word(self, prefix: str) -> bool | None:
        """Whether some word of :attr:`lexicon` begins with ``prefix`` (``None`` without a lexicon).

        The beam search's ``oov_prefix_logp`` asks this of each prefix's open word: a word that
        can no longer become one the model knows is ranked lower before its space is reached."""
        if self.lexicon is None:
            return None
        words = self._sorted_lexicon
        i = bisect.bisect_left(words, prefix)
        return i < len(words) and words[i].startswith(prefix)

    @functools.cached_property
    def _sorted_lexicon(self) -> list[str]:
        return sorted(self.lexicon)

    def unigram_score(self, word: str) -> float:
        """Natural log of the model's unigram (history-free) probability of ``word`` (``</s>`` included;
        an unknown word scores as ``<unk>``).  :class:`InterpolatedLM` shares one model's ``<unk>``
        mass among the words the others know by these; a model without it is mixed as it is."""
        raise NotImplementedError(f"{type(self).__name__} has no unigram_score")

    def sentence_logprob(self, words: Sequence[str]) -> float:
        """``sum_i score(words[:i], words[i]) + end_score(words)`` (the end of sentence counts)."""
        if isinstance(words, str):
            raise ValueError(f"words must be a sequence of words, got the str {words!r}; use text.split()")
        words = tuple(words)
        total = 0.0
        for i, w in enumerate(words):
            total += self.score(words[:i], w)
        return total + self.end_score(words)

    def perplexity(self, sentences: Iterable[str]) -> float:
        """Per-token perplexity ``exp(-total log prob / (n_words + n_sentences))`` (``</s>`` counts)."""
        total, n_tokens = 0.0, 0
        for s in sentences:
            words = s.split()
            total += self.sentence_logprob(words)
            n_tokens += len(words) + 1
        if n_tokens == 0:
            raise ValueError("perplexity needs at least one sentence")
        return math.exp(-total / n_tokens)


def estimate_discounts(count_of_counts: Sequence[int]) -> tuple[float, float, float] | None:
    """Modified Kneser-Ney discounts ``(D1, D2, D3+)`` from ``n1..n4`` (Chen & Goodman eq. 26).

    ``n_k`` is the number of distinct n-grams (of one order) seen exactly ``k`` times::

        Y   = n1 / (n1 + 2 n2)
        D1  = 1 - 2 Y n2 / n1
        D2  = 2 - 3 Y n3 / n2
        D3+ = 3 - 4 Y n4 / n3

    Returns ``None`` when the counts cannot support an estimate (an ``n_k`` is zero, or a
    discount falls outside ``(0, k]``), as happens on tiny corpora.
    """
    if len(count_of_counts) != 4:
        raise ValueError(f"count_of_counts must be (n1, n2, n3, n4), got {count_of_counts!r}")
    n1, n2, n3, n4 = (float(n) for n in count_of_counts)
    if min(n1, n2, n3, n4) <= 0:
        return None
    y = n1 / (n1 + 2.0 * n2)
    d = (1.0 - 2.0 * y * n2 / n1, 2.0 - 3.0 * y * n3 / n2, 3.0 - 4.0 * y * n4 / n3)
    if not all(0.0 < dk <= k for k, dk in zip((1, 2, 3), d)):
        return None
    return d


class NGramLM(LanguageModel):
    """Word n-gram model with interpolated modified Kneser-Ney smoothing, from scratch.

    Build one with :meth:`train`.  Each sentence is lower-cased (optional), split on
    whitespace and wrapped as ``<s> w1 .. wk </s>``; every n-gram of order ``1..order``
    inside it is counted (``<s>`` only ever as a context, as in KenLM).

    **Adjusted counts.** The highest order uses raw counts ``c(h w)``.  Lower orders use
    *continuation counts* ``N1+(. h w)``: the number of distinct words seen just before
    ``h w``.  ("Francisco" is frequent but only after "San", so as a backoff it should be
    rare.)  An n-gram that starts with ``<s>`` has no word before it and keeps its raw count.

    **Interpolation.** With ``a`` the adjusted counts of the order of ``h w``, ``h'`` the
    history ``h`` without its oldest word::

        p(w | h) = max(a(h w) - D(a(h w)), 0) / sum_v a(h v)  +  gamma(h) p(w | h')
        gamma(h) = (D1 N1(h .) + D2 N2(h .) + D3+ N3+(h .)) / sum_v a(h v)

    where ``N_k(h .)`` counts the words ``v`` with ``a(h v) = k`` (``N3+``: ``>= 3``) and
    ``D(a)`` is ``D1``, ``D2`` or ``D3+``.  A history never seen backs off entirely:
    ``p(w | h) = p(w | h')``.  The recursion ends at the unigrams, which are interpolated with
    the uniform distribution over the vocabulary (training words, ``</s>`` and ``<unk>``)::

        p(w) = max(a(w) - D(a(w)), 0) / sum_v a(v)  +  gamma() / |V|

    so every word, seen or not, has a non-zero probability, and for every history the
    probabilities of the vocabulary words, ``</s>`` and ``<unk>`` sum to exactly 1.

    **Discounts.** One triple ``(D1, D2, D3+)`` per order, from the count-of-counts of that
    order's adjusted counts (:func:`estimate_discounts`); where a corpus is too small for
    that, :data:`FALLBACK_DISCOUNTS` (KenLM's ``--discount_fallback``).  ``discounts`` can
    also be given explicitly.

    Attributes:
        order: n of the model.
        vocab: the training words (``frozenset``, without ``<s>``, ``</s>``, ``<unk>``).
        discounts: ``discounts[k - 1]`` is the ``(D1, D2, D3+)`` of order ``k``.
    """

    def __init__(
        self,
        order: int,
        counts: Sequence[dict[tuple[str, ...], int]],
        discounts: Sequence[Sequence[float]],
        lowercase: bool = True,
    ):
        if isinstance(order, bool) or not isinstance(order, int) or order < 1:
            raise ValueError(f"order must be an int >= 1, got {order!r}")
        if len(counts) != order or len(discounts) != order:
            raise ValueError(
                f"need one counts dict and one discount triple per order ({order}), "
                f"got {len(counts)} and {len(discounts)}"
            )
        self.order = order
        self.lowercase = bool(lowercase)
        self.counts = [dict(c) for c in counts]  # counts[k-1]: k-gram tuple -> adjusted count
        self.discounts = [tuple(float(x) for x in _check_discount_triple(d, k + 1)) for k, d in enumerate(discounts)]
        self.vocab = frozenset(w for (w,) in self.counts[0] if w not in _SPECIALS)
        self.lexicon = self.vocab
        # |V| for the uniform floor: the words, </s> and <unk>
        self._n_vocab = len(self.vocab) + 2
        # Per history (a (k-1)-gram, k = its order + 1): (sum_v a(h v), gamma(h)).
        self._context: list[dict[tuple[str, ...], tuple[float, float]]] = []
        for k, table in enumerate(self.counts, start=1):
            d1, d2, d3 = self.discounts[k - 1]
            totals: dict[tuple[str, ...], list[float]] = defaultdict(lambda: [0.0, 0.0])
            for gram, a in table.items():
                entry = totals[gram[:-1]]
                entry[0] += a
                entry[1] += d1 if a == 1 else d2 if a == 2 else d3
            self._context.append({h: (s, mass / s) for h, (s, mass) in totals.items()})
        self._cache: dict[tuple[tuple[str, ...], str], float] = {}

    # ------------------------------------------------------------------ training
    @classmethod
    def train(
        cls,
        sentences: Iterable[str],
        order: int = 3,
        discounts: Sequence[float] | Sequence[Sequence[float]] | None = None,
        lowercase: bool = True,
    ) -> "NGramLM":
        """Count n-grams in ``sentences`` and build the smoothed model.

        Args:
            sentences: one sentence per string; words are separated by whitespace.
            order: n of the n-gram (3 = trigram).
            discounts: ``None`` to estimate them per order (Chen & Goodman), one triple
                ``(D1, D2, D3+)`` for every order, or one triple per order (lowest first).
            lowercase: lower-case the text first (the English :class:`CharEncoder` emits
                lower case only).  Queries are lower-cased the same way.
        """
        if isinstance(order, bool) or not isinstance(order, int) or order < 1:
            raise ValueError(f"order must be an int >= 1, got {order!r}")
        if isinstance(sentences, str):
            raise ValueError("sentences must be an iterable of str (one sentence each), got a single str")
        raw: dict[tuple[str, ...], int] = defaultdict(int)  # every n-gram, all orders, raw counts
        n_sentences = 0
        for s in sentences:
            if not isinstance(s, str):
                raise ValueError(f"each sentence must be a str, got {type(s).__name__}")
            words = (s.lower() if lowercase else s).split()
            for w in words:
                if w in _SPECIALS:
                    raise ValueError(f"training text may not contain the reserved token {w!r}")
            tokens = [BOS] + words + [EOS]
            n_sentences += 1
            for i in range(1, len(tokens)):  # position of the predicted word (never <s>)
                for k in range(1, order + 1):
                    if i - k + 1 < 0:
                        break
                    raw[tuple(tokens[i - k + 1 : i + 1])] += 1
        if n_sentences == 0:
            raise ValueError("cannot train a language model on zero sentences")

        counts: list[dict[tuple[str, ...], int]] = [dict() for _ in range(order)]
        left_contexts: dict[tuple[str, ...], set] = defaultdict(set)
        for gram in raw:
            if len(gram) >= 2:
                left_contexts[gram[1:]].add(gram[0])
        for gram, c in raw.items():
            k = len(gram)
            if k == order or gram[0] == BOS:
                counts[k - 1][gram] = c
            else:
                counts[k - 1][gram] = len(left_contexts[gram])
        # Every n-gram not starting with <s> has at least <s> before it, so no adjusted count is 0.

        per_order = _resolve_discounts(discounts, order, counts)
        return cls(order, counts, per_order, lowercase=lowercase)

    # ------------------------------------------------------------------ queries
    def _normalise(self, word: str) -> str:
        if self.lowercase:
            word = word.lower()
        if word == EOS:
            return EOS
        if word == BOS:
            raise ValueError("<s> is never predicted: it only starts the history")
        return word if word in self.vocab else UNK

    def _context_of(self, history: Sequence[str]) -> tuple[str, ...]:
        history = _check_history(history)
        ctx = (BOS,) + tuple(self._normalise(w) for w in history)
        if self.order == 1:
            return ()
        return ctx[-(self.order - 1) :]

    def _prob(self, context: tuple[str, ...], word: str) -> float:
        """Interpolated probability (not log) of ``word`` after ``context`` (both normalised)."""
        key = (context, word)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        if not context:
            lower = 1.0 / self._n_vocab
        else:
            lower = self._prob(context[1:], word)
        k = len(context) + 1  # order of context + word
        ctx = self._context[k - 1].get(context)
        if ctx is None:
            p = lower  # unseen history: back off completely
        else:
            total, gamma = ctx
            a = self.counts[k - 1].get(context + (word,), 0)
            if a > 0:
                d1, d2, d3 = self.discounts[k - 1]
                d = d1 if a == 1 else d2 if a == 2 else d3
                p = max(a - d, 0.0) / total + gamma * lower
            else:
                p = gamma * lower
        self._cache[key] = p
        return p

    def score(self, history: Sequence[str], word: str) -> float:
        """Natural log ``p(word | <s> history)``; unseen words score as ``<unk>``."""
        _check_word(word)
        if word == EOS:
            return self.end_score(history)
        p = self._prob(self._context_of(history), self._normalise(word))
        return math.log(p) if p > 0 else -math.inf

    def end_score(self, history: Sequence[str]) -> float:
        """Natural log ``p(</s> | <s> history)``."""
        p = self._prob(self._context_of(history), EOS)
        return math.log(p) if p > 0 else -math.inf

    def unigram_score(self, word: str) -> float:
        """Natural log of the interpolated unigram probability (order 1 of the recursion above)."""
        p = self._prob((), EOS if word == EOS else self._normalise(_check_word(word)))
        return math.log(p) if p > 0 else -math.inf

    def __repr__(self) -> str:
        sizes = ", ".join(str(len(c)) for c in self.counts)
        return f"NGramLM(order={self.order}, vocab={len(self.vocab)} words, n-grams per order=[{sizes}])"

    # ------------------------------------------------------------------ persistence
    def save(self, path) -> None:
        """Write the model as JSON (adjusted counts and discounts: reloads exactly)."""
        data = {
            "format": "ds2-ngram-kn",
            "version": 1,
            "order": self.order,
            "lowercase": self.lowercase,
            "discounts": [list(d) for d in self.discounts],
            "counts": [[[*gram, a] for gram, a in sorted(table.items())] for table in self.counts],
        }
        with open(path, "w", encoding="utf-8") as f:
            json.dump(data, f)

    @classmethod
    def load(cls, path) -> "NGramLM":
        """Read a model written by :meth:`save`."""
        with open(path, "r", encoding="utf-8") as f:
            data = json.load(f)
        if not isinstance(data, dict) or data.get("format") != "ds2-ngram-kn":
            raise ValueError(f"{path} is not a model written by NGramLM.save (expected format 'ds2-ngram-kn')")
        counts = [{tuple(row[:-1]): int(row[-1]) for row in table} for table in data["counts"]]
        return cls(int(data["order"]), counts, data["discounts"], lowercase=bool(data.get("lowercase", True)))

    def to_arpa(self, path) -> None:
        """Export in the standard ARPA back-off format (log10), readable by KenLM and :class:`ArpaLM`.

        Interpolated KN is exactly a back-off model: for a listed n-gram ``h w`` the entry is
        the interpolated ``p(w | h)``; otherwise ``p(w | h) = bow(h) p(w | h')`` with the
        back-off weight ``bow(h) = gamma(h)``.  ``<s>`` is listed with probability
        ``10^-99`` (never predicted) so that its back-off weight can be stored.
        """
        entries: list[list[tuple[tuple[str, ...], float, float | None]]] = []
        for k in range(1, self.order + 1):
            grams = set(self.counts[k - 1])
            if k == 1:
                grams |= {(EOS,), (UNK,), (BOS,)}
            rows = []
            for gram in sorted(grams):
                if gram[-1] == BOS:
                    logp = -99.0
                else:
                    logp = math.log10(self._prob(gram[:-1], gram[-1]))
                bow = None
                if k < self.order:
                    ctx = self._context[k].get(gram)
                    if ctx is not None:
                        bow = math.log10(ctx[1]) if ctx[1] > 0 else -99.0
                rows.append((gram, logp, bow))
            entries.append(rows)
        with open(path, "w", encoding="utf-8") as f:
            f.write("\\data\\\n")
            for k, rows in enumerate(entries, start=1):
                f.write(f"ngram {k}={len(rows)}\n")
            for k, rows in enumerate(entries, start=1):
                f.write(f"\n\\{k}-grams:\n")
                for gram, logp, bow in rows:
                    line = f"{logp:.10f}\t{' '.join(gram)}"
                    if bow is not None:
                        line += f"\t{bow:.10f}"
                    f.write(line + "\n")
            f.write("\n\\end\\\n")


class ArpaLM(LanguageModel):
    """A back-off n-gram model read from an ARPA file (e.g. from KenLM's ``lmplz`` or :meth:`NGramLM.to_arpa`).

    ``p(w | h)`` is the listed probability of ``h w`` if there is one, otherwise
    ``bow(h) * p(w | h')`` (``bow`` is 1 for a history without a listed back-off weight).
    Words missing from the unigrams score as ``<unk>`` (``-inf`` if the file has no ``<unk>``).
    """

    def __init__(self, order: int, logprobs: dict[tuple[str, ...], float], backoffs: dict[tuple[str, ...], float],
                 lowercase: bool = True):
        self.order = order
        self.lowercase = lowercase
        self._logp = logprobs  # natural logs
        self._bow = backoffs  # natural logs
        self.vocab = frozenset(g[0] for g in logprobs if len(g) == 1 and g[0] not in _SPECIALS)
        self.lexicon = self.vocab

    @classmethod
    def load(cls, path, lowercase: bool = True) -> "ArpaLM":
        """Parse an ARPA file (log10 values are converted to natural logs)."""
        logprobs: dict[tuple[str, ...], float] = {}
        backoffs: dict[tuple[str, ...], float] = {}
        order, section = 0, None
        with open(path, "r", encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                line = line.strip()
                if not line or line == "\\data\\" or line.startswith("ngram "):
                    if line.startswith("ngram "):
                        order = max(order, int(line.split()[1].split("=")[0]))
                    continue
                if line == "\\end\\":
                    break
                if line.startswith("\\") and line.endswith("-grams:"):
                    section = int(line[1:].split("-")[0])
                    continue
                if section is None:
                    raise ValueError(f"{path}:{lineno}: expected an ARPA header, got {line!r}")
                parts = line.split()
                if len(parts) not in (section + 1, section + 2):
                    raise ValueError(
                        f"{path}:{lineno}: expected a log10 prob, {section} words and an optional back-off"
                    )
                gram = tuple(parts[1 : section + 1])
                logprobs[gram] = float(parts[0]) * _LOG10
                if len(parts) == section + 2:
                    backoffs[gram] = float(parts[-1]) * _LOG10
        if order == 0 or not logprobs:
            raise ValueError(f"{path} has no n-grams: is it an ARPA file?")
        return cls(order, logprobs, backoffs, lowercase=lowercase)

    def _norm(self, w: str) -> str:
        if self.lowercase:
            w = w.lower()
        return w if w in _SPECIALS or w in self.vocab else UNK

    def _logprob(self, context: tuple[str, ...], word: str) -> float:
        penalty = 0.0
        while True:
            lp = self._logp.get(context + (word,))
            if lp is not None:
                return penalty + lp
            if not context:
                return -math.inf
            penalty += self._bow.get(context, 0.0)
            context = context[1:]

    def _context_of(self, history: Sequence[str]) -> tuple[str, ...]:
        ctx = (BOS,) + tuple(self._norm(w) for w in _check_history(history))
        return ctx[-(self.order - 1) :] if self.order > 1 else ()

    def score(self, history: Sequence[str], word: str) -> float:
        _check_word(word)
        return self._logprob(self._context_of(history), self._norm(word))

    def end_score(self, history: Sequence[str]) -> float:
        return self._logprob(self._context_of(history), EOS)

    def unigram_score(self, word: str) -> float:
        return self._logprob((), self._norm(_check_word(word)))


class SphinxLM(LanguageModel):
    """A CMU Sphinx n-gram model (``.lm.bin``, ``.DMP`` or ARPA) read and scored by the ``pocketsphinx`` package.

    ``SphinxLM.us_english()`` is the general US-English trigram that pocketsphinx 5 bundles (72,547
    words, 3.7 million n-grams, trained on general English text, not on any of the course's data): the
    language model of pocketsphinx's own recognizer, so that a course model decoded with it and
    pocketsphinx differ only in their acoustic models.  pocketsphinx computes the back-off
    probabilities in its integer log base 1.0001; they come back here as natural logs.  A word outside
    its vocabulary (it has no ``<unk>``) scores ``unk_logprob``.  Its :attr:`lexicon` holds the words of
    ``dictionary`` (a pocketsphinx pronunciation dictionary; ``us_english`` passes the bundled one) that
    the model knows; without one it has none.  Optional: ``pip install pocketsphinx``.
    """

    LOG_BASE = math.log(1.0001)         # pocketsphinx's default logmath base
    _ZERO = -(1 << 28)                  # anything below this is pocketsphinx's log of zero

    def __init__(self, path, unk_logprob: float = math.log(1e-8), dictionary=None):
        try:
            import pocketsphinx
        except ImportError:
            raise ImportError("SphinxLM needs the pocketsphinx package: pip install pocketsphinx") from None
        from pathlib import Path
        if not Path(path).is_file():
            raise FileNotFoundError(f"language model {str(path)!r} does not exist")
        self._model = pocketsphinx.NGramModel.readfile(str(path))
        self.order = int(self._model.size())
        self.unk_logprob = float(unk_logprob)
        self._cache: dict[tuple[str, ...], float] = {}
        if dictionary is not None:
            if not Path(dictionary).is_file():
                raise FileNotFoundError(f"pronunciation dictionary {str(dictionary)!r} does not exist")
            with open(dictionary, encoding="utf-8") as f:          # "word(2) PHONES": alternatives numbered
                words = {line.split(None, 1)[0].split("(")[0].lower() for line in f if line.strip()}
            self.lexicon = frozenset(w for w in words if self._model.prob([w]) > self._ZERO)

    @classmethod
    def us_english(cls, **kw) -> "SphinxLM":
        """The US-English model that pocketsphinx bundles (``en-us/en-us.lm.bin``)."""
        try:
            import pocketsphinx
        except ImportError:
            raise ImportError("the US-English LM comes with the pocketsphinx package: pip install pocketsphinx") from None
        kw.setdefault("dictionary", pocketsphinx.get_model_path("en-us/cmudict-en-us.dict"))
        return cls(pocketsphinx.get_model_path("en-us/en-us.lm.bin"), **kw)

    def _logprob(self, words: tuple[str, ...]) -> float:     # (word, newest history word, ..., oldest)
        lp = self._cache.get(words)
        if lp is None:
            raw = self._model.prob(list(words))
            lp = self.unk_logprob if raw <= self._ZERO else raw * self.LOG_BASE
            self._cache[words] = lp
        return lp

    def _reversed_context(self, history: Sequence[str]) -> tuple[str, ...]:
        ctx = (BOS,) + tuple(w.lower() for w in _check_history(history))
        return tuple(reversed(ctx[-(self.order - 1):])) if self.order > 1 else ()

    def score(self, history: Sequence[str], word: str) -> float:
        _check_word(word)
        return self._logprob((word.lower(),) + self._reversed_context(history))

    def end_score(self, history: Sequence[str]) -> float:
        return self._logprob((EOS,) + self._reversed_context(history))

    def unigram_score(self, word: str) -> float:
        return self._logprob((_check_word(word).lower(),))


class InterpolatedLM(LanguageModel):
    """``p(w | h) = sum_k weight_k * p_k(w | h)``: linear interpolation of language models.

    The standard way to join a small in-domain model (here: the Asterisk TRAIN texts) with a large
    general one (Jelinek & Mercer; Chen & Goodman 1998, section 2.3): the domain model knows the
    phrasing, the general one the words the domain model never saw.  ``weights`` sum to 1.

    Vocabularies differ, and a model with a closed vocabulary (:class:`NGramLM`, :class:`ArpaLM`) gives
    *every* word outside it the one probability of ``<unk>``: mixed as they are, "exactly" (a word of
    general English the domain texts lack) and "axzackly" (no word at all) would score the same, and
    the domain model's ``<unk>`` mass (1e-4 here) would drown what the general model knows.  So the
    mixture shares each closed model's ``<unk>`` mass among the words outside its vocabulary, in
    proportion to how likely the *other* models find them (their unigram probabilities, weighted):

        p_k(w | h) = p_k(<unk> | h) * u_k(w) / Z_k        for w outside V_k
        u_k = sum_{j != k} weight_j * p_j(w) / sum_{j != k} weight_j        (unigram probabilities)
        Z_k = 1 - u_k(</s>) - sum_{v in V_k} u_k(v)      (the others' mass on words V_k lacks)

    A word no model knows gets ``<unk>``'s share ``u_k(w) / Z_k`` as each string that maps to ``<unk>``;
    with closed models whose vocabularies cover V_k, model k then sums to exactly 1 over the known words,
    ``</s>`` and ``<unk>`` (tests/test_lm.py).  Models without a vocabulary (:class:`SphinxLM`), or
    without :meth:`~LanguageModel.unigram_score`, are mixed as they are.  ``share_unknown=False``
    is the plain weighted sum.
    """

    def __init__(self, models: Sequence[LanguageModel], weights: Sequence[float], share_unknown: bool = True):
        models, weights = list(models), [float(w) for w in weights]
        if not models or len(models) != len(weights):
            raise ValueError(f"need one weight per model, got {len(models)} models and {len(weights)} weights")
        if any(w < 0 for w in weights) or abs(sum(weights) - 1.0) > 1e-9:
            raise ValueError(f"weights must be >= 0 and sum to 1, got {weights}")
        self.models, self.weights = models, weights
        self.order = max(m.order for m in models)
        self.vocab = frozenset().union(*(getattr(m, "vocab", frozenset()) for m in models))
        lexicons = [m.lexicon for m in models if getattr(m, "lexicon", None) is not None]
        self.lexicon = frozenset().union(*lexicons) if lexicons else None
        # per model: None (scored as it is) or (its vocabulary, the others with their weights, log Z_k)
        self._share: list = [None] * len(models)
        if share_unknown:
            for k, m in enumerate(models):
                others = [(j, w) for j, w in enumerate(weights) if j != k and w > 0]
                vocab = getattr(m, "vocab", None)
                if not vocab or not others or not self._has_unigrams([models[j] for j, _ in others]):
                    continue
                total = sum(w for _, w in others)
                others = [(models[j], w / total) for j, w in others]
                z = 1.0 - self._unigram(others, EOS) - sum(self._unigram(others, v) for v in vocab)
                if z > 1e-12:
                    self._share[k] = (vocab, others, math.log(z))

    @staticmethod
    def _has_unigrams(models) -> bool:
        try:
            for m in models:
                m.unigram_score(EOS)
        except NotImplementedError:
            return False
        return True

    @staticmethod
    def _unigram(others, word: str) -> float:
        return sum(w * math.exp(m.unigram_score(word)) for m, w in others)

    def _mix(self, logps: Iterable[float]) -> float:
        terms = [math.log(w) + lp for w, lp in zip(self.weights, logps) if w > 0 and lp > -math.inf]
        if not terms:
            return -math.inf
        top = max(terms)
        return top + math.log(sum(math.exp(t - top) for t in terms))

    def _component(self, k: int, history: Sequence[str], word: str) -> float:
        lp = self.models[k].score(history, word)
        share = self._share[k]
        if share is None or word == EOS:
            return lp
        vocab, others, log_z = share
        key = word.lower() if getattr(self.models[k], "lowercase", True) else word
        if key in vocab:
            return lp
        u = self._unigram(others, word)
        return lp + math.log(u) - log_z if u > 0 else -math.inf

    def score(self, history: Sequence[str], word: str) -> float:
        _check_word(word)
        return self._mix(self._component(k, history, word) for k in range(len(self.models)))

    def end_score(self, history: Sequence[str]) -> float:
        return self._mix(m.end_score(history) for m in self.models)

    def unigram_score(self, word: str) -> float:
        return self._mix(m.unigram_score(word) for m in self.models)


def _check_discount_triple(d, k: int) -> tuple[float, float, float]:
    try:
        d = tuple(float(x) for x in d)
    except TypeError:
        raise ValueError(f"discounts of order {k} must be a triple (D1, D2, D3+), got {d!r}") from None
    if len(d) != 3 or not all(0.0 < dk <= j for j, dk in zip((1, 2, 3), d)):
        raise ValueError(
            f"discounts of order {k} must be (D1, D2, D3+) with 0 < D1 <= 1, 0 < D2 <= 2, 0 < D3+ <= 3, got {d!r}"
        )
    return d  # type: ignore[return-value]


def _resolve_discounts(discounts, order: int, counts) -> list[tuple[float, float, float]]:
    if discounts is None:
        out = []
        for table in counts:
            n = [0, 0, 0, 0]
            for a in table.values():
                if a <= 4:
                    n[a - 1] += 1
            out.append(estimate_discounts(n) or FALLBACK_DISCOUNTS)
        return out
    discounts = list(discounts)
    if discounts and all(isinstance(x, (int, float)) for x in discounts):
        return [_check_discount_triple(discounts, k) for k in range(1, order + 1)]
    if len(discounts) != order:
        raise ValueError(f"discounts must be one triple or one triple per order ({order}), got {len(discounts)}")
    return [_check_discount_triple(d, k) for k, d in enumerate(discounts, start=1)]


def load_lm(path) -> LanguageModel:
    """Load a language model file: ARPA (``.arpa``), CMU Sphinx binary (``.lm.bin``, ``.dmp``: :class:`SphinxLM`),
    ``en-us`` (the US-English model bundled with pocketsphinx), or this module's JSON (anything else).

    A missing file is a ``FileNotFoundError``; a file of neither kind a ``ValueError``.
    """
    from pathlib import Path

    if str(path) == "en-us":
        return SphinxLM.us_english()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"language model {str(path)!r} does not exist")
    if path.suffix.lower() == ".arpa":
        return ArpaLM.load(path)
    if path.name.lower().endswith((".lm.bin", ".dmp")):
        return SphinxLM(path)
    try:
        return NGramLM.load(path)
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{str(path)!r} is not an NGramLM JSON file ({err}); ARPA files need the .arpa suffix") from None


def pyctcdecode_language_model(lm: LanguageModel, alpha: float = 0.5, beta: float = 1.0):
    """``lm`` as a pyctcdecode language model that scores hypotheses with DS2's objective.

    ``pyctcdecode.BeamSearchDecoderCTC(Alphabet.build_alphabet(labels), language_model=...)``
    then searches for the same ``Q = log p_ctc + alpha log p_lm + beta word_count`` as
    :func:`reference.decoding.prefix_beam_search`: a completed word adds
    ``alpha * lm.score(history, word) + beta`` (natural logs), the last word also
    ``alpha * lm.end_score(words)``, and partial words score 0 (pyctcdecode's own
    ``LanguageModel`` would add an out-of-vocabulary offset and convert KenLM's base-10 scores).
    The search itself stays pyctcdecode's, with its own pruning.  Needs ``pip install
    pyctcdecode`` (its numpy<2 pin is conservative: ``make setup`` installs it without its
    dependencies and the tests check it works).
    """
    from pyctcdecode.language_model import AbstractLanguageModel

    class _DS2Objective(AbstractLanguageModel):
        @property
        def order(self) -> int:
            return lm.order

        def get_start_state(self):
            return ()                                     # the words so far

        def score_partial_token(self, partial_token: str) -> float:
            return 0.0

        def score(self, prev_state, word: str, is_last_word: bool = False):
            if not word:                                  # pyctcdecode closes a sentence that ends in a space
                return (alpha * lm.end_score(prev_state) if is_last_word else 0.0), prev_state
            state = tuple(prev_state) + (word,)
            s = alpha * lm.score(prev_state, word) + beta
            if is_last_word:
                s += alpha * lm.end_score(state)
            return s, state

    return _DS2Objective()

