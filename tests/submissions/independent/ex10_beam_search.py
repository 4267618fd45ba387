"""Independent ex10: prefixes as strings, beams pruned with heapq.nlargest, LM terms cached per prefix."""
import heapq
import math

NEG = float("-inf")


def _lse(a, b):
    if a == NEG:
        return b
    if b == NEG:
        return a
    m = max(a, b)
    return m + math.log1p(math.exp(-abs(a - b)))


def prefix_beam_search(log_probs, encoder, beam_width=16, lm=None, alpha=0.5, beta=1.0):
    lp = log_probs.detach().double().tolist()
    V = len(lp[0]) if lp else encoder.vocab_size
    blank = encoder.blank_idx
    chars = {c: encoder.decode([c]) for c in range(V) if c != blank}
    use_lm = lm is not None and alpha != 0

    def word_bonus(words):  # the last word of ``words`` completed
        return beta + (alpha * lm.score(tuple(words[:-1]), words[-1]) if use_lm else 0.0)

    bonus = {"": 0.0}

    def bonus_of(prefix, parent):
        if prefix not in bonus:
            b = bonus[parent]
            if prefix.endswith(" ") and parent and not parent.endswith(" "):
                b += word_bonus(parent.split())
            bonus[prefix] = b
        return bonus[prefix]

    beams = {"": (0.0, NEG)}                     # prefix -> (log p ending in blank, log p ending in a symbol)
    for row in lp:
        nxt = {}

        def add(prefix, pb=NEG, pnb=NEG):
            ob, onb = nxt.get(prefix, (NEG, NEG))
            nxt[prefix] = (_lse(ob, pb), _lse(onb, pnb))

        for prefix, (pb, pnb) in beams.items():
            total = _lse(pb, pnb)
            add(prefix, pb=total + row[blank])
            for c, ch in chars.items():
                p = row[c]
                if p == NEG:
                    continue
                if prefix and prefix[-1] == ch:
                    add(prefix, pnb=pnb + p)
                    new = prefix + ch
                    bonus_of(new, prefix)
                    add(new, pnb=pb + p)
                else:
                    new = prefix + ch
                    bonus_of(new, prefix)
                    add(new, pnb=total + p)
        live = [(_lse(*v) + bonus[k], k) for k, v in nxt.items() if _lse(*v) > NEG]
        keep = heapq.nlargest(beam_width, live)
        beams = {k: nxt[k] for _, k in keep}
    out = []
    for prefix, v in beams.items():
        words = prefix.split()
        q = _lse(*v) + bonus[prefix]
        if words and not prefix.endswith(" "):
            q += word_bonus(words)
        if use_lm:
            q += alpha * lm.end_score(tuple(words))
        out.append((prefix, q))
    out.sort(key=lambda r: (-r[1], r[0]))
    return out[:beam_width]
