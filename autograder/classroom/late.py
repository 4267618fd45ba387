"""Late submissions: ``batch --deadline ISO --late-rule RULE``.

A rule is ``P%/UNIT`` with optional ``,cap=C%`` and ``,grace=N UNIT``::

    10%/day              10 % of the score per started day late, up to 100 %
    10%/day,cap=50%      ... never more than 50 %
    2%/hour,grace=15min  15 minutes of grace, then 2 % per started hour
    none                 late submissions are marked in the CSV, no penalty (also: 0)

UNIT is ``min``, ``hour`` (``h``), ``day`` (``d``) or ``week`` (``w``).  Every *started* unit counts
(one second late is one day late with ``/day``).  The penalty is a percentage of the student's score:
``final = raw * (1 - penalty / 100)``.  Times without a UTC offset are the grading machine's local time.

A deadline names the last moment that is on time, at the precision it is written in
(:func:`parse_deadline`): ``2026-12-01T23:59`` is the end of that minute (23:59:59.999999 on time,
00:00:00 late), ``2026-12-01`` the end of that day, ``2026-12-01T23:59:30`` that second.  Extensions
(the id map's fourth column, :func:`apply_extension`) are a duration (``2d``, ``36h``, ``90min``) added to
the deadline, or a deadline of the student's own.
"""
from __future__ import annotations

import datetime
import math
import re
from dataclasses import dataclass

UNITS = {"min": 60, "minute": 60, "minutes": 60, "m": 60, "hour": 3600, "hours": 3600, "h": 3600,
         "day": 86400, "days": 86400, "d": 86400, "week": 604800, "weeks": 604800, "w": 604800}
_RULE = re.compile(r"^\s*(?P<p>\d+(?:\.\d+)?)\s*%\s*/\s*(?P<unit>[a-z]+)\s*$")
_CAP = re.compile(r"^\s*cap\s*=\s*(?P<c>\d+(?:\.\d+)?)\s*%\s*$")
_GRACE = re.compile(r"^\s*grace\s*=\s*(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>[a-z]+)\s*$")


class LateRuleError(ValueError):
    pass


@dataclass(frozen=True)
class LateRule:
    percent: float = 0.0          # per started unit
    unit_seconds: int = 86400
    cap: float = 100.0            # at most this percentage
    grace_seconds: float = 0.0
    text: str = "none"

    def penalty(self, late_seconds: float) -> float:
        """The penalty in percent for a submission ``late_seconds`` after the deadline."""
        late = late_seconds - self.grace_seconds
        if late <= 0 or self.percent <= 0:
            return 0.0
        return min(self.cap, self.percent * math.ceil(late / self.unit_seconds))


def parse_rule(text: str | None) -> LateRule:
    if text is None or text.strip().lower() in ("", "none", "0", "0%"):
        return LateRule()
    parts = [p for p in text.lower().split(",")]
    m = _RULE.match(parts[0])
    if not m or m.group("unit") not in UNITS:
        raise LateRuleError(f"late rule {text!r}: expected P%/UNIT (UNIT: min, hour, day or week), e.g. "
                            "'10%/day' or '10%/day,cap=50%' or 'none'")
    percent, unit, cap, grace = float(m.group("p")), UNITS[m.group("unit")], 100.0, 0.0
    for part in parts[1:]:
        if (c := _CAP.match(part)):
            cap = float(c.group("c"))
        elif (g := _GRACE.match(part)) and g.group("unit") in UNITS:
            grace = float(g.group("n")) * UNITS[g.group("unit")]
        else:
            raise LateRuleError(f"late rule {text!r}: cannot read {part.strip()!r} (expected cap=C% or "
                                "grace=N UNIT, e.g. cap=50% or grace=15min)")
    if not 0 <= cap <= 100:
        raise LateRuleError(f"late rule {text!r}: the cap must be between 0% and 100%")
    return LateRule(percent, unit, cap, grace, text.strip())


def parse_time(text: str) -> datetime.datetime:
    """An ISO time (``2026-12-01T23:59``, ``2026-12-01 23:59:00+01:00``, ``...Z``) as an aware datetime;
    without an offset, the local time of this machine."""
    t = datetime.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return t if t.tzinfo is not None else t.astimezone()


_PRECISION = re.compile(r"^\s*(?P<date>\d{4}-\d\d-\d\d)(?:[T ](?P<hm>\d\d:\d\d)(?P<s>:\d\d(?:\.\d+)?)?)?"
                        r"\s*(?:Z|[+-]\d\d:?\d\d)?\s*$")


def parse_deadline(text: str) -> datetime.datetime:
    """A deadline as the last moment that is on time: ``...T23:59`` is 23:59:59.999999, a date alone the end
    of that day, a time with seconds that second (:func:`parse_time` otherwise)."""
    t = parse_time(text)
    m = _PRECISION.match(text)
    if m and not m.group("hm"):
        return t + datetime.timedelta(days=1, microseconds=-1)
    if m and not m.group("s"):
        return t + datetime.timedelta(minutes=1, microseconds=-1)
    if m and m.group("s") and "." not in m.group("s"):
        return t + datetime.timedelta(seconds=1, microseconds=-1)
    return t


_DURATION = re.compile(r"^\s*\+?\s*(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>[a-z]+)\s*$")


def apply_extension(deadline: datetime.datetime, extension: str) -> datetime.datetime:
    """The deadline for a student with ``extension``: ``2d`` / ``36h`` / ``90min`` / ``1w`` added to
    ``deadline``, or an ISO deadline of their own (``2026-12-03T23:59``); ``""`` changes nothing."""
    text = (extension or "").strip().lower()
    if not text:
        return deadline
    m = _DURATION.match(text)
    if m and m.group("unit") in UNITS:
        return deadline + datetime.timedelta(seconds=float(m.group("n")) * UNITS[m.group("unit")])
    try:
        return parse_deadline(extension)
    except ValueError:
        raise LateRuleError(f"extension {extension!r}: expected a duration (2d, 36h, 90min, 1w) or an ISO "
                            "deadline (2026-12-03T23:59)") from None


def lateness(submitted: str, deadline: datetime.datetime, rule: LateRule) -> tuple[float, float] | None:
    """``(seconds late (<= 0: on time), penalty %)``, or None when ``submitted`` is empty or unreadable."""
    if not submitted:
        return None
    try:
        t = parse_time(submitted)
    except ValueError:
        return None
    late = (t - deadline).total_seconds()
    return late, rule.penalty(late)


def describe(seconds: float) -> str:
    """``3 h 20 min`` / ``2 d 4 h`` / ``on time``."""
    if seconds <= 0:
        return "on time"
    m = int(math.ceil(seconds / 60))
    d, rem = divmod(m, 1440)
    h, mi = divmod(rem, 60)
    if d:
        return f"{d} d {h} h"
    return f"{h} h {mi} min" if h else f"{mi} min"
