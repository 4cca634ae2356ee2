"""Durations as people write them: ``"90s"``, ``"15m"``, ``"2h"``, ``"1d"``, ``"1h30m"``.

Two ways to write one, on purpose: :func:`format_duration` exactly, the way a configuration
says it and :func:`parse_duration` reads it back (``every 15m``, ``timed out after 1h30m``);
:func:`format_rounded` to the second and in two units at most, for a reader watching a run
(``about 14m 30s left``, ``2h 05m``), its second unit padded to two digits so that a live
display keeps its width. A rounded figure is not one to copy into a configuration.
"""

from __future__ import annotations

import re

_UNIT_S = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}

# Units in descending order, each at most once: "1h30m" but not "30m1h" or "1m1m".
_DURATION = re.compile(
    r"(?:(?P<d>\d+(?:\.\d+)?)d)?"
    r"(?:(?P<h>\d+(?:\.\d+)?)h)?"
    r"(?:(?P<m>\d+(?:\.\d+)?)m)?"
    r"(?:(?P<s>\d+(?:\.\d+)?)s)?"
)

_EXAMPLES = '"90s", "15m", "2h", "1d" or "1h30m"'


def parse_duration(text: str) -> float:
    """Return the number of seconds ``text`` stands for.

    Raises :class:`ValueError` with a message that says how to write a duration when ``text``
    is not one.
    """
    cleaned = text.strip().lower()
    match = _DURATION.fullmatch(cleaned)
    if not cleaned or match is None:
        if cleaned and _is_number(cleaned):
            raise ValueError(
                f'invalid duration "{text}": add a unit (d, h, m or s), e.g. "{cleaned}s"'
            )
        raise ValueError(
            f'invalid duration "{text}": write numbers with units d, h, m, s '
            f"from largest to smallest, e.g. {_EXAMPLES}"
        )
    return sum(float(value) * _UNIT_S[unit] for unit, value in match.groupdict().items() if value)


def format_duration(seconds: float) -> str:
    """Return ``seconds`` written the way :func:`parse_duration` reads it, e.g. ``"1h30m"``."""
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative: {seconds}")
    whole = int(seconds)
    fraction = seconds - whole
    parts: list[str] = []
    for unit in ("d", "h", "m"):
        size = int(_UNIT_S[unit])
        count, whole = divmod(whole, size)
        if count:
            parts.append(f"{count}{unit}")
    if whole or fraction or not parts:
        rest = whole + fraction
        parts.append(f"{rest:g}s" if fraction else f"{whole}s")
    return "".join(parts)


def format_rounded(seconds: float) -> str:
    """``seconds`` rounded, for reading: ``45s``, ``14m 30s``, ``2h 05m`` (0 for less than 0)."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def format_age(seconds: float) -> str:
    """An age for people, at most two units, rounded down: "45s", "3m", "2h 5m", "4d 3h"."""
    whole = int(max(0.0, seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m"
    if whole < 86400:
        (major, minor), units = divmod(whole // 60, 60), ("h", "m")
    else:
        (major, minor), units = divmod(whole // 3600, 24), ("d", "h")
    return f"{major}{units[0]}" + (f" {minor}{units[1]}" if minor else "")
