"""CTC prefix beam search with a language model (DS2 section 3.8).

Greedy decoding (``reference/ctc.py``) takes the most likely symbol of every frame.  DS2
instead searches for the transcription ``y`` that maximises

    Q(y) = log p_ctc(y | x) + alpha * log p_lm(y) + beta * word_count(y)

* ``p_ctc(y | x)`` sums the probabilities of *every* frame-level alignment that collapses
  to ``y`` (merge repeats, then drop blanks; a doubled letter needs a blank in between);
* ``p_lm(y)`` is a word language model (:mod:`reference.lm`), including the end of sentence;
* ``word_count(y) = len(y.split())``; ``beta`` rewards words, balancing the LM's preference
  for short sentences.  ``alpha`` and ``beta`` are tuned on held-out data.

Prefix beam search (Hannun et al. 2014, "First-pass large vocabulary continuous speech
recognition using bi-directional recurrent DNNs"; used by DS2) scans the frames once and
keeps, for each candidate *prefix* ``l`` of a transcription, two numbers:

    p_b(l)  = probability of all alignments of frames 1..t that collapse to l and end in a blank
    p_nb(l) = the same for alignments that end in l's last symbol

At frame ``t`` with symbol probabilities ``p_t``:

    blank:          p_b(l)      += (p_b(l) + p_nb(l)) * p_t(blank)
    repeat last c:  p_nb(l)     += p_nb(l) * p_t(c)                # "a a" collapses to "a"
    new symbol c:   p_nb(l + c) += (p_b(l) + p_nb(l)) * p_t(c)     # c != last symbol of l
                    p_nb(l + c) += p_b(l) * p_t(c)                 # c == last: "a _ a" is "aa"

Paths that reach the same prefix are *summed*, never maxed: that is what makes
``p_b + p_nb`` equal ``p_ctc`` of the prefix.  The language model scores whole words, so
its term (and ``beta``) is added when a word is completed by a space, and for the last,
open word plus ``</s>`` at the end.  After each frame only the ``beam_width`` prefixes
with the best ``Q`` so far survive: ``log(p_b + p_nb)`` plus the LM and ``beta`` terms of
the prefix's completed words.  Everything is in log space.

    >>> import torch
    >>> from reference.text import CharEncoder
    >>> enc = CharEncoder()
    >>> lp = torch.full((3, 29), -30.0); lp[0, 1] = lp[1, 0] = lp[2, 2] = 0.0   # "a _ b"
    >>> prefix_beam_search(lp.log_softmax(-1), enc, beam_width=4)[0][0]
    'ab'

:func:`prefix_beam_search_fast` is the same search with pyctcdecode's two prunings (symbols
below a log probability per frame, prefixes far below the best) and a leaner inner loop; with
its pruning off it returns exactly what :func:`prefix_beam_search` returns (tested).

Because the LM speaks only when a space closes a word, a narrow beam can fill with spellings that
no word begins with ("axz...") and lose the real word ("exa...") before its space arrives.  Both
searches can rank such prefixes as pyctcdecode does (``oov_prefix_logp``, off by default): as if
the LM had already given the open word that log probability.  It only ranks: ``Q`` is unchanged.

Both also decode models whose tokens are longer than one character (DS2 section 3.6's bigram
outputs, :class:`reference.text.BigramEncoder`): they hand such an encoder to
:func:`prefix_beam_search_tokens`, the same search keyed by ``(text, last token)``; the
character search itself is unchanged.
"""
from __future__ import annotations

import heapq
import math

import numpy as np
import torch

__all__ = ["prefix_beam_search", "prefix_beam_search_fast", "prefix_beam_search_tokens", "DEFAULT_CHAR_CUTOFF",
           "DEFAULT_OOV_PREFIX_LOGP", "check_oov_prefix"]

NEG_INF = -math.inf

#: Default per-frame pruning of symbols: a symbol whose log probability at a frame is below
#: this (probability below 2e-9) is not tried at that frame.  Paths through such a symbol
#: have a negligible share of any hypothesis worth keeping; pass ``char_cutoff=None`` for
#: the exact search, which considers every symbol at every frame.
DEFAULT_CHAR_CUTOFF = -20.0


def _logaddexp(a: float, b: float) -> float:
    """``log(exp(a) + exp(b))`` for Python floats, exact at ``-inf``."""
    if a < b:
        a, b = b, a
    if b == NEG_INF:
        return a
    return a + math.log1p(math.exp(b - a))


class _WordScores:
    """The LM and word-count terms of ``Q`` for the fast searches: per completed word
    ``alpha log p_lm(word | history) + beta`` (cached per ``(history, word)``), and the sentence's end."""

    def __init__(self, lm, alpha: float, beta: float, oov_prefix_logp: float | None = None):
        self.lm = lm if lm is not None and alpha != 0.0 else None
        self.alpha = float(alpha) if self.lm is not None else 0.0
        self.beta = float(beta)
        self.cache: dict[tuple[tuple[str, ...], str], float] = {}
        # alpha * oov_prefix_logp for an open word that begins no word of the LM's lexicon (0: off),
        # cached per open word for this search
        self.oov = self.alpha * oov_prefix_logp if oov_prefix_logp is not None and self.lm is not None else 0.0
        self.prefix_cache: dict[str, float] = {}

    def partial(self, word: str) -> float:
        """The ranking's term for the open word: ``alpha * oov_prefix_logp`` if no word the LM knows
        begins with it, else 0.  Not part of ``Q``: a closed word gets its LM score instead."""
        if not self.oov or not word:
            return 0.0
        s = self.prefix_cache.get(word)
        if s is None:
            s = self.prefix_cache[word] = 0.0 if self.lm.starts_word(word) else self.oov
        return s

    def word(self, history: tuple[str, ...], word: str) -> float:
        if self.lm is None:
            return self.beta
        key = (history, word)
        s = self.cache.get(key)
        if s is None:
            s = self.cache[key] = self.alpha * float(self.lm.score(history, word)) + self.beta
        return s

    def end(self, bonus: float, words: tuple[str, ...], word: str) -> float:
        """``bonus`` plus the open word's term and the LM's end of sentence."""
        if word:
            bonus += self.word(words, word)
            words = words + (word,)
        if self.lm is not None:
            bonus += self.alpha * float(self.lm.end_score(words))
        return bonus


def _candidates(lp: np.ndarray, blank: int, token_min_logp: float | None) -> list[list[tuple[int, float]]]:
    """Per frame, the ``(symbol id, log p)`` worth trying: never the blank; at or above ``token_min_logp``
    (every finite one for ``None``), and always the frame's most likely symbol."""
    n_frames = lp.shape[0]
    tried = lp > NEG_INF if token_min_logp is None else lp >= token_min_logp
    if n_frames:
        tried[np.arange(n_frames), np.argmax(lp, axis=1)] = True
        tried &= lp > NEG_INF
    tried[:, blank] = False
    candidates: list[list[tuple[int, float]]] = [[] for _ in range(n_frames)]
    for t, c in zip(*np.nonzero(tried)):
        candidates[t].append((int(c), float(lp[t, c])))
    return candidates


def _best(scored: list, beam_width: int, beam_prune_logp: float | None) -> list:
    """The ``beam_width`` best ``(score, key)`` pairs, without those more than ``-beam_prune_logp`` below the best."""
    if len(scored) > beam_width:
        scored = heapq.nlargest(beam_width, scored)
    if beam_prune_logp is not None and scored:
        floor = max(scored)[0] + beam_prune_logp
        scored = [sk for sk in scored if sk[0] >= floor]
    return scored


def prefix_beam_search(
    log_probs: torch.Tensor,
    encoder,
    beam_width: int = 16,
    lm=None,
    alpha: float = 0.5,
    beta: float = 1.0,
    char_cutoff: float | None = DEFAULT_CHAR_CUTOFF,
    oov_prefix_logp: float | None = None,
) -> list[tuple[str, float]]:
    """CTC prefix beam search with an optional word language model (DS2 section 3.8).

    Args:
        log_probs: ``(T, V)`` natural-log probabilities of one utterance (rows of a
            log-softmax; slice ``log_probs[:length, b]`` out of the model's ``(T', B, V)``).
        encoder: a :class:`reference.text.CharEncoder`; ``V`` must be its ``vocab_size``;
            its ``blank_idx`` is the CTC blank and the space symbol separates words.  An encoder
            whose tokens are longer than one character (:class:`reference.text.BigramEncoder`)
            is searched by :func:`prefix_beam_search_tokens` (``char_cutoff`` as its ``token_min_logp``).
        beam_width: number of prefixes kept after every frame (and at most returned).
        lm: a :class:`reference.lm.LanguageModel`, or ``None`` for no language model.
        alpha: weight of the language model (ignored when ``lm`` is ``None``).
        beta: reward per word (applies with or without ``lm``).
        char_cutoff: symbols with ``log_probs[t, c] < char_cutoff`` are skipped at frame
            ``t`` (the frame's most likely symbol and the blank are always tried); ``None``
            tries every symbol.  See :data:`DEFAULT_CHAR_CUTOFF`.
        oov_prefix_logp: ``None`` (DS2's search) or a log probability <= 0: while a prefix's open
            word begins no word of ``lm.lexicon``, the prefix is *ranked* as if the LM had already
            given that word ``oov_prefix_logp`` (times ``alpha``), so that spellings of known words
            keep their places in the beam (pyctcdecode's ``unk_score_offset``; see
            :data:`DEFAULT_OOV_PREFIX_LOGP`).  ``Q`` itself is unchanged: a completed word gets its
            LM score, and with a beam that keeps every prefix the result is the same.

    Returns:
        Up to ``beam_width`` pairs ``(text, Q(text))``, best first (ties by text).  ``text``
        is the labelling exactly as emitted, so leading, trailing or double spaces are kept
        (``" ".join(text.split())`` normalises); words are ``text.split()``, the same split
        ``word_count`` and the LM use.  ``Q = log p_ctc + alpha log p_lm + beta word_count``;
        with a beam wide enough to keep every prefix, it is exact.
    """
    lp = _check_inputs(log_probs, encoder, beam_width, lm, alpha, beta, char_cutoff)
    check_oov_prefix(oov_prefix_logp, lm)
    n_frames, vocab = lp.shape
    blank = int(encoder.blank_idx)
    symbols = [encoder.decode([i]) if i != blank else "" for i in range(vocab)]
    if any(len(s) > 1 for s in symbols):   # bigram (or longer) tokens: the token-level search
        return _token_search(lp, symbols, blank, beam_width, lm, alpha, beta, char_cutoff, None, oov_prefix_logp)
    scores = _WordScores(lm, alpha, beta, oov_prefix_logp)   # alpha log p(word | history) + beta per word, cached
    word_score, partial = scores.word, scores.partial
    # Candidate symbols per frame (blank excluded), pruned by char_cutoff (the frame's best always kept).
    candidates = [[(symbols[c], p) for c, p in frame] for frame in _candidates(lp, blank, char_cutoff)]
    rows = lp.tolist()

    # prefix -> [log p_b, log p_nb, bonus]; bonus = sum over the *completed* words of the prefix
    # of (alpha log p_lm(word | previous words) + beta).  A word is completed by the space after
    # it: in "ab c", "ab" is completed and "c" is still open.  The bonus depends on the text
    # only, so prefixes merged by different paths always agree on it.
    beam: dict[str, list[float]] = {"": [0.0, NEG_INF, 0.0]}
    logaddexp = _logaddexp
    for t in range(n_frames):
        p_blank = rows[t][blank]
        chars = candidates[t]
        nxt: dict[str, list[float]] = {}
        for prefix, (pb, pnb, bonus) in beam.items():
            p_total = logaddexp(pb, pnb)
            same = nxt.get(prefix)
            if same is None:
                same = nxt[prefix] = [NEG_INF, NEG_INF, bonus]
            if p_blank != NEG_INF:
                same[0] = logaddexp(same[0], p_total + p_blank)
            last = prefix[-1] if prefix else None
            closes_word = last is not None and last != " "
            for sym, p in chars:
                if sym == last:
                    # "a a" stays "a"; only "a _ a" makes "aa"
                    same[1] = logaddexp(same[1], pnb + p)
                    p_ext = pb + p
                else:
                    p_ext = p_total + p
                ext = prefix + sym
                entry = nxt.get(ext)
                if entry is None:  # the usual case: a prefix not reached yet in this frame
                    ext_bonus = bonus
                    if sym == " " and closes_word:
                        words = prefix.split()
                        ext_bonus += word_score(tuple(words[:-1]), words[-1])
                    nxt[ext] = [NEG_INF, p_ext, ext_bonus]
                else:
                    entry[1] = logaddexp(entry[1], p_ext)
        # Drop impossible prefixes (e.g. "aa" with no blank yet), keep the best beam_width by Q
        # (and the open word's oov_prefix_logp term, 0 unless asked for).
        scored = [
            (logaddexp(v[0], v[1]) + v[2] + partial(k[k.rfind(" ") + 1:]), k)
            for k, v in nxt.items() if v[0] != NEG_INF or v[1] != NEG_INF
        ]
        beam = {k: nxt[k] for _, k in _best(scored, beam_width, None)}

    # Close the open last word and the sentence: + alpha log p(w_last | ...) + beta + alpha log p(</s> | words).
    results = []
    for prefix, (pb, pnb, bonus) in beam.items():
        words = tuple(prefix.split())
        open_word = words[-1] if prefix and prefix[-1] != " " else ""
        results.append((prefix, logaddexp(pb, pnb) + scores.end(bonus, words[:-1] if open_word else words, open_word)))
    results.sort(key=lambda r: (-r[1], r[0]))
    return results[:beam_width]


#: pyctcdecode 0.5.0's defaults, the fast search's: a symbol below this log probability at a frame is
#: not tried there (the frame's best symbol always is) ...
FAST_TOKEN_MIN_LOGP = -5.0
#: ... and after each frame a prefix whose score is this far below the best prefix's is dropped.
FAST_BEAM_PRUNE_LOGP = -10.0
#: pyctcdecode's ``unk_score_offset``: what ``reference.transcribe`` ranks an open word with while it
#: begins no word the LM knows (``oov_prefix_logp``).  On the Asterisk dev prompts -5 / -10 / -20 gave
#: CER 8.0 / 7.6 / 8.1 % against 8.6 % without (docs/figures.md).
DEFAULT_OOV_PREFIX_LOGP = -10.0


def prefix_beam_search_fast(
    log_probs: torch.Tensor,
    encoder,
    beam_width: int = 16,
    lm=None,
    alpha: float = 0.5,
    beta: float = 1.0,
    token_min_logp: float | None = FAST_TOKEN_MIN_LOGP,
    beam_prune_logp: float | None = FAST_BEAM_PRUNE_LOGP,
    oov_prefix_logp: float | None = None,
) -> list[tuple[str, float]]:
    """:func:`prefix_beam_search`'s search and result, faster: the fast path beside the readable one.

    The same recursion over ``(p_b, p_nb)`` per prefix and the same objective ``Q``; what differs:

    * ``token_min_logp``: at each frame only symbols with ``log_probs[t, c] >= token_min_logp`` are
      tried (and the frame's most likely symbol; the blank's update is always made): the readable
      search's ``char_cutoff``, with pyctcdecode's default of -5 instead of -20.  On a peaky
      acoustic model most frames then try one or two symbols instead of all 28;
    * ``beam_prune_logp``: after each frame, prefixes scoring more than ``-beam_prune_logp`` below
      the best one are dropped too, as pyctcdecode does (``None``: keep the ``beam_width`` best);
    * frames where no symbol but the blank is tried skip the bookkeeping: every prefix moves to
      "ends in a blank" and all scores shift by the same amount, so the beam is unchanged;
    * each prefix carries its completed words and its open word, so closing a word never
      re-splits the text, and the language model's scores are cached per ``(history, word)``.

    ``oov_prefix_logp`` ranks prefixes as :func:`prefix_beam_search`'s does.  With ``token_min_logp=c``
    and ``beam_prune_logp=None`` the result equals ``prefix_beam_search(..., char_cutoff=c)`` (``None``
    for both: the exact search); the tests check it.
    """
    lp = _check_inputs(log_probs, encoder, beam_width, lm, alpha, beta, token_min_logp, "token_min_logp")
    _check_prune(beam_prune_logp)
    check_oov_prefix(oov_prefix_logp, lm)
    n_frames, vocab = lp.shape
    blank = int(encoder.blank_idx)
    symbols = [encoder.decode([i]) if i != blank else "" for i in range(vocab)]
    if any(len(s) > 1 for s in symbols):   # bigram (or longer) tokens: the token-level search
        return _token_search(lp, symbols, blank, beam_width, lm, alpha, beta, token_min_logp, beam_prune_logp,
                             oov_prefix_logp)
    scores = _WordScores(lm, alpha, beta, oov_prefix_logp)
    word_score, partial, oov = scores.word, scores.partial, scores.oov
    candidates = [[(symbols[c], p) for c, p in frame] for frame in _candidates(lp, blank, token_min_logp)]
    blank_col = lp[:, blank].tolist()

    log1p, exp = math.log1p, math.exp
    # prefix -> [log p_b, log p_nb, bonus, completed words, open word]; bonus as in prefix_beam_search
    beam: dict[str, list] = {"": [0.0, NEG_INF, 0.0, (), ""]}
    for t in range(n_frames):
        p_blank = blank_col[t]
        chars = candidates[t]
        if not chars and p_blank != NEG_INF:
            # blank only: p_b <- (p_b + p_nb) p(blank), p_nb <- 0; every Q shifts by log p(blank)
            for v in beam.values():
                a, b = v[0], v[1]
                if a < b:
                    a, b = b, a
                v[0] = a + p_blank if b == NEG_INF else a + log1p(exp(b - a)) + p_blank
                v[1] = NEG_INF
            continue
        nxt: dict[str, list] = {}
        for prefix, (pb, pnb, bonus, words, word) in beam.items():
            if pb < pnb:
                p_total = pnb if pb == NEG_INF else pnb + log1p(exp(pb - pnb))
            else:
                p_total = pb if pnb == NEG_INF else pb + log1p(exp(pnb - pb))
            same = nxt.get(prefix)
            if same is None:
                same = nxt[prefix] = [NEG_INF, NEG_INF, bonus, words, word]
            if p_blank != NEG_INF:
                a, b = same[0], p_total + p_blank
                if a < b:
                    a, b = b, a
                same[0] = a if b == NEG_INF else a + log1p(exp(b - a))
            last = prefix[-1] if prefix else None
            for sym, p in chars:
                if sym == last:
                    a, b = same[1], pnb + p                       # "a a" stays "a"
                    if a < b:
                        a, b = b, a
                    same[1] = a if b == NEG_INF else a + log1p(exp(b - a))
                    p_ext = pb + p                                # only "a _ a" makes "aa"
                else:
                    p_ext = p_total + p
                ext = prefix + sym
                entry = nxt.get(ext)
                if entry is None:
                    if sym == " ":
                        if word:                                  # the space completes the open word
                            nxt[ext] = [NEG_INF, p_ext, bonus + word_score(words, word), words + (word,), ""]
                        else:
                            nxt[ext] = [NEG_INF, p_ext, bonus, words, ""]
                    else:
                        nxt[ext] = [NEG_INF, p_ext, bonus, words, word + sym]
                else:
                    a, b = entry[1], p_ext
                    if a < b:
                        a, b = b, a
                    entry[1] = a if b == NEG_INF else a + log1p(exp(b - a))
        scored = []
        for k, v in nxt.items():
            a, b = v[0], v[1]
            if a < b:
                a, b = b, a
            if a != NEG_INF:
                scored.append(((a if b == NEG_INF else a + log1p(exp(b - a))) + v[2] + (partial(v[4]) if oov else 0.0), k))
        beam = {k: nxt[k] for _, k in _best(scored, beam_width, beam_prune_logp)}

    results = [(prefix, _logaddexp(pb, pnb) + scores.end(bonus, words, word))
               for prefix, (pb, pnb, bonus, words, word) in beam.items()]
    results.sort(key=lambda r: (-r[1], r[0]))
    return results[:beam_width]


def prefix_beam_search_tokens(
    log_probs: torch.Tensor,
    encoder,
    beam_width: int = 16,
    lm=None,
    alpha: float = 0.5,
    beta: float = 1.0,
    token_min_logp: float | None = DEFAULT_CHAR_CUTOFF,
    beam_prune_logp: float | None = None,
    oov_prefix_logp: float | None = None,
) -> list[tuple[str, float]]:
    """Prefix beam search over CTC *tokens* that may hold several characters (DS2 section 3.6's bigrams).

    :func:`prefix_beam_search` and :func:`prefix_beam_search_fast` call this for an encoder such as
    :class:`reference.text.BigramEncoder`; it works for any encoder (for a :class:`CharEncoder` it
    returns what :func:`prefix_beam_search` returns, tested).  Arguments and result as there;
    ``token_min_logp`` and ``beam_prune_logp`` prune as in :func:`prefix_beam_search_fast` (the
    defaults, -20 and ``None``, are :func:`prefix_beam_search`'s).

    Two alphabets meet here.  CTC works on tokens: an alignment collapses by merging repeated
    *tokens* and dropping blanks, so ``th th`` is one ``th`` and ``th _ th`` two.  The language
    model and the word bonus work on characters: words are the token texts joined, split at
    spaces.  Several token sequences can spell one text ("the" is ``th e`` but also ``t he`` or
    ``t h e``), so a prefix cannot be keyed by its text alone, nor merged on it: ``t h`` and ``th``
    spell the same "th", yet a next frame of ``h`` repeats the first's last token (no new text)
    and extends the second ("thh").  What a prefix's future depends on is

    * its ``p_b`` and ``p_nb`` (the recursion of :func:`prefix_beam_search`, over tokens),
    * its last token (whether the next token repeats it), and
    * its text (the language model's words).

    So prefixes are keyed by ``(text, last token)``.  Two token sequences with the same key have
    the same future: every later frame multiplies both by the same factors, so storing their sum
    is exact (the merged score at the end is the sum of the two separate ones).  Sequences with
    different last tokens are kept apart.  At the end, hypotheses are merged by text, summing
    ``p_ctc`` over their last tokens (the LM term, a function of the text, is the same), so the
    objective is :func:`prefix_beam_search`'s with ``p_ctc(y | x)`` the total probability of all
    alignments, over every token sequence, whose text is ``y`` -- the sum a brute force over all
    alignments computes (tested).  A model trained on :class:`~reference.text.BigramEncoder`
    targets puts almost all of that mass on the one canonical segmentation.  Pruning (``beam_width``
    and the two cutoffs) applies to keys, so a text may come back with fewer than ``beam_width``
    others; with no pruning the search is exact.
    """
    lp = _check_inputs(log_probs, encoder, beam_width, lm, alpha, beta, token_min_logp, "token_min_logp")
    _check_prune(beam_prune_logp)
    check_oov_prefix(oov_prefix_logp, lm)
    blank = int(encoder.blank_idx)
    symbols = [encoder.decode([i]) if i != blank else "" for i in range(lp.shape[1])]
    return _token_search(lp, symbols, blank, beam_width, lm, alpha, beta, token_min_logp, beam_prune_logp, oov_prefix_logp)


def _token_search(lp: np.ndarray, symbols: list[str], blank: int, beam_width: int, lm, alpha: float, beta: float,
                  token_min_logp: float | None, beam_prune_logp: float | None,
                  oov_prefix_logp: float | None = None) -> list[tuple[str, float]]:
    """The search of :func:`prefix_beam_search_tokens` on checked inputs (``symbols[i]``: token i's text)."""
    n_frames = lp.shape[0]
    scores = _WordScores(lm, alpha, beta, oov_prefix_logp)
    word_score, partial = scores.word, scores.partial
    logaddexp = _logaddexp

    def extend(bonus: float, words: tuple, word: str, text: str):
        """``(bonus, completed words, open word)`` after appending ``text``: each space completes the open word."""
        for ch in text:
            if ch == " ":
                if word:
                    bonus += word_score(words, word)
                    words, word = words + (word,), ""
            else:
                word += ch
        return bonus, words, word

    candidates = _candidates(lp, blank, token_min_logp)
    blank_col = lp[:, blank].tolist()

    # (text, last token id or -1) -> [log p_b, log p_nb, bonus, completed words, open word]; bonus as in
    # prefix_beam_search (alpha log p_lm + beta of each completed word), a function of the text only
    beam: dict[tuple[str, int], list] = {("", -1): [0.0, NEG_INF, 0.0, (), ""]}
    for t in range(n_frames):
        p_blank = blank_col[t]
        nxt: dict[tuple[str, int], list] = {}
        for key, (pb, pnb, bonus, words, word) in beam.items():
            text, last = key
            p_total = logaddexp(pb, pnb)
            same = nxt.get(key)
            if same is None:
                same = nxt[key] = [NEG_INF, NEG_INF, bonus, words, word]
            if p_blank != NEG_INF:
                same[0] = logaddexp(same[0], p_total + p_blank)
            for c, p in candidates[t]:
                if c == last:
                    same[1] = logaddexp(same[1], pnb + p)     # "th th" stays "th"
                    p_ext = pb + p                            # only "th _ th" makes "thth"
                else:
                    p_ext = p_total + p
                ext = (text + symbols[c], c)
                entry = nxt.get(ext)
                if entry is None:
                    nxt[ext] = [NEG_INF, p_ext, *extend(bonus, words, word, symbols[c])]
                else:
                    entry[1] = logaddexp(entry[1], p_ext)
        scored = [(logaddexp(v[0], v[1]) + v[2] + partial(v[4]), k) for k, v in nxt.items() if v[0] != NEG_INF or v[1] != NEG_INF]
        beam = {k: nxt[k] for _, k in _best(scored, beam_width, beam_prune_logp)}

    # merge by text (sum over last tokens), then close the open word and the sentence as prefix_beam_search does
    by_text: dict[str, list] = {}
    for (text, _), (pb, pnb, bonus, words, word) in beam.items():
        p = logaddexp(pb, pnb)
        if text in by_text:
            by_text[text][0] = logaddexp(by_text[text][0], p)
        else:
            by_text[text] = [p, bonus, words, word]
    results = [(text, p + scores.end(bonus, words, word)) for text, (p, bonus, words, word) in by_text.items()]
    results.sort(key=lambda r: (-r[1], r[0]))
    return results[:beam_width]


def check_oov_prefix(oov_prefix_logp, lm) -> None:
    """``ValueError`` unless ``oov_prefix_logp`` is ``None`` or a log probability <= 0 and ``lm`` has a lexicon."""
    if oov_prefix_logp is None:
        return
    if isinstance(oov_prefix_logp, bool) or not isinstance(oov_prefix_logp, (int, float)) or not oov_prefix_logp <= 0:
        raise ValueError(f"oov_prefix_logp must be a number <= 0 (a log probability) or None, got {oov_prefix_logp!r}")
    if lm is not None and getattr(lm, "lexicon", None) is None:
        raise ValueError(f"oov_prefix_logp needs an lm with a lexicon (the words it knows) to check prefixes against; "
                         f"{type(lm).__name__} has none: pass oov_prefix_logp=None")


def _check_prune(beam_prune_logp) -> None:
    if beam_prune_logp is not None and (isinstance(beam_prune_logp, bool) or not isinstance(beam_prune_logp, (int, float))
                                        or not beam_prune_logp <= 0):
        raise ValueError(f"beam_prune_logp must be a number <= 0 (a log-probability margin) or None, got {beam_prune_logp!r}")


def _check_inputs(log_probs, encoder, beam_width, lm, alpha, beta, char_cutoff, cutoff_name="char_cutoff") -> np.ndarray:
    """Validate the arguments of :func:`prefix_beam_search`; return ``log_probs`` as float64 numpy."""
    if isinstance(log_probs, np.ndarray):
        log_probs = torch.from_numpy(log_probs)
    if not isinstance(log_probs, torch.Tensor):
        raise ValueError(f"log_probs must be a (T, V) torch.Tensor, got {type(log_probs).__name__}")
    if log_probs.dim() != 2:
        hint = " (take one utterance: log_probs[:length, b])" if log_probs.dim() == 3 else ""
        raise ValueError(f"log_probs must be 2-D (T, V), got shape {tuple(log_probs.shape)}{hint}")
    if not log_probs.is_floating_point():
        raise ValueError(f"log_probs must be a floating tensor of log-probabilities, got dtype {log_probs.dtype}")
    for name in ("vocab_size", "blank_idx", "decode"):
        if not hasattr(encoder, name):
            raise ValueError(f"encoder must be a CharEncoder (with vocab_size, blank_idx, decode), got {encoder!r}")
    if log_probs.shape[1] != encoder.vocab_size:
        raise ValueError(
            f"log_probs has {log_probs.shape[1]} symbols per frame but the encoder has "
            f"vocab_size={encoder.vocab_size}: expected shape (T, {encoder.vocab_size})"
        )
    lp = log_probs.detach().to("cpu", torch.float64).numpy()
    if np.isnan(lp).any():
        raise ValueError("log_probs contains NaN")
    if lp.size and lp.max() > 1e-4:
        raise ValueError(
            f"log_probs must be log-probabilities (<= 0), got a maximum of {lp.max():.4g}: "
            "did you pass logits or probabilities? apply log_softmax over the symbols first"
        )
    if isinstance(beam_width, bool) or not isinstance(beam_width, (int, np.integer)) or beam_width < 1:
        raise ValueError(f"beam_width must be an int >= 1, got {beam_width!r}")
    for name, v in (("alpha", alpha), ("beta", beta)):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)) or not math.isfinite(v):
            raise ValueError(f"{name} must be a finite number, got {v!r}")
    if char_cutoff is not None and (
        isinstance(char_cutoff, bool) or not isinstance(char_cutoff, (int, float)) or math.isnan(char_cutoff)
    ):
        raise ValueError(f"{cutoff_name} must be a number (a log probability) or None, got {char_cutoff!r}")
    if lm is not None and not (callable(getattr(lm, "score", None)) and callable(getattr(lm, "end_score", None))):
        raise ValueError(
            f"lm must be None or a LanguageModel with score(history, word) and end_score(history), got {lm!r}"
        )
    return np.minimum(lp, 0.0)

