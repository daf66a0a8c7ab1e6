"""The one-time code in a message: what a sign-up or reset test types back.

A code is a standalone run of digits (4 to 8 by default): not part of a
word, a date (``2026-12-06``, ``06/12/2026``), a time, a decimal or grouped
number (``1,234.50``), a price (``$1234``), a phone number (``+1 555 123
4567``: digit groups side by side), or a URL (``/users/123456``; URLs are
taken out of the text first). When more than one such number is there, the
one written near a word that names a code ("code", "verification", "OTP",
"PIN", "passcode" ...) is preferred, then one that is not a year
(1900-2099 in four digits, as in "© 2026"). Anything still ambiguous, or
nothing found, is an AssertionError that shows what was found and where:
a test should fail saying why, never take the wrong number.

A ``pattern`` (a regular expression; its first group if it has one, else
the whole match) replaces the rule, for codes that are not digits.
"""

from __future__ import annotations

import re

from .reading import URL

__all__ = ["find_code", "KEYWORDS", "NEAR"]

KEYWORDS = re.compile(
    r"\b(?:code|codes|verification|verify|otp|one[- ]time|passcode|password|pin|token|security|confirm\w*|2fa|mfa)\b",
    re.IGNORECASE,
)
NEAR = 40  # characters between a keyword and its code, either side
_GROUPED = r"[-/.:,]\d"  # a date, a time, a decimal, a grouped number


def _digits(low: int, high: int) -> re.Pattern[str]:
    return re.compile(
        r"(?<![\w$€£¥+#])"            # not inside a word, not a price, a phone's +, an order's #
        r"(?<!\d[-/.:,])(?<!\d[ ])"    # not after a date's, a number's or a phone's group
        rf"(\d{{{low},{high}}})"
        rf"(?!\w)(?!{_GROUPED})(?![ ]\d)",  # nor before one
    )


def _is_year(value: str) -> bool:
    return len(value) == 4 and value[:2] in ("19", "20")


def _context(text: str, start: int, end: int) -> str:
    return " ".join(text[max(start - 30, 0):end + 30].split())


def _fail(what: str, found: dict[str, int], text: str) -> AssertionError:
    if not found:
        shown = " ".join(text.split())
        return AssertionError(f"no {what} in the message; its text: {shown[:500]!r}")
    listed = "; ".join(f"{value!r} in ...{_context(text, at, at + len(value))}..." for value, at in found.items())
    return AssertionError(f"more than one {what} in the message, pass pattern= to choose: {listed}")


def _by_pattern(text: str, pattern: str | re.Pattern[str]) -> dict[str, int]:
    compiled = re.compile(pattern)
    found: dict[str, int] = {}
    for match in compiled.finditer(text):
        group = 1 if compiled.groups else 0
        if match.group(group):
            found.setdefault(match.group(group), match.start(group))
    return found


def _near_keyword(text: str, at: int, size: int) -> bool:
    return any(k.end() <= at and at - k.end() <= NEAR or k.start() >= at + size and k.start() - at - size <= NEAR
               for k in KEYWORDS.finditer(text, max(at - NEAR - 30, 0), at + size + NEAR + 30))


def find_code(text: str, pattern: str | re.Pattern[str] | None = None, digits: tuple[int, int] = (4, 8)) -> str:
    """The one code in ``text`` (see the module); AssertionError if none or
    more than one."""
    text = URL.sub(" ", text)
    found: dict[str, int]  # each value found, at its first place
    if pattern is not None:
        found = _by_pattern(text, pattern)
        if len(found) != 1:
            raise _fail(f"match of {getattr(pattern, 'pattern', pattern)!r}", found, text)
        return next(iter(found))
    low, high = digits
    if not 1 <= low <= high:
        raise ValueError(f"digits must be (fewest, most) with 1 <= fewest <= most, not {digits!r}")
    found = {}
    for match in _digits(low, high).finditer(text):
        found.setdefault(match.group(1), match.start(1))
    candidates = found
    if len(candidates) > 1:
        candidates = {v: at for v, at in found.items() if _near_keyword(text, at, len(v))} or found
    if len(candidates) > 1:
        candidates = {v: at for v, at in candidates.items() if not _is_year(v)} or candidates
    if len(candidates) != 1:
        raise _fail(f"one-time code ({low}-{high} digits)", candidates, text)
    return next(iter(candidates))
