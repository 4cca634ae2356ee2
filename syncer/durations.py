"""Durations as people write them: ``"90s"``, ``"15m"``, ``"2h"``, ``"1d"``, ``"1h30m"``."""

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


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
