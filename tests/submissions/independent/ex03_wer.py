"""Independent ex03: edit distance by memoised recursion."""
import sys
from functools import lru_cache


def edit_distance(ref, hyp):
    ref, hyp = tuple(ref), tuple(hyp)
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 4 * (len(ref) + len(hyp)) + 100))

    @lru_cache(maxsize=None)
    def d(i, j):
        if i == 0:
            return j
        if j == 0:
            return i
        return min(d(i - 1, j) + 1, d(i, j - 1) + 1, d(i - 1, j - 1) + (ref[i - 1] != hyp[j - 1]))

    return int(d(len(ref), len(hyp)))


def _pairs(refs, hyps):
    refs = [refs] if isinstance(refs, str) else list(refs)
    hyps = [hyps] if isinstance(hyps, str) else list(hyps)
    if len(refs) != len(hyps):
        raise ValueError("refs and hyps differ in length")
    return refs, hyps


def word_error_rate(refs, hyps):
    refs, hyps = _pairs(refs, hyps)
    words = sum(len(r.split()) for r in refs)
    if words == 0:
        raise ValueError("no reference words")
    return float(sum(edit_distance(r.split(), h.split()) for r, h in zip(refs, hyps)) / words)


def char_error_rate(refs, hyps):
    refs, hyps = _pairs(refs, hyps)
    refs, hyps = [r.strip() for r in refs], [h.strip() for h in hyps]
    chars = sum(map(len, refs))
    if chars == 0:
        raise ValueError("no reference characters")
    return float(sum(edit_distance(r, h) for r, h in zip(refs, hyps)) / chars)
