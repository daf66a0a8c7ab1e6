"""The one-time code in a message: what a sign-up or reset test types back.

A code is a standalone run of digits (4 to 8 by default): not part of a
word, a date (``2026-12-06``, ``06/12/2026``), a time, a decimal or grouped
number (``1,234.50``), a price (``$1234``), a phone number (``+1 555 123
4567``: digit groups side by side), or a URL (``/users/123456``; URLs are
taken out of the text first). When more than one such number is there, one
labelled by a word that names a code ("code", "verification", "OTP",
"PIN", "passcode" ...) a few words before it is preferred ("your code is
1234"), then one labelled a few words after it ("1234 is your code"), then
one that is not a year (1900-2099 in four digits, as in "© 2026"). Anything still ambiguous, or
nothing found, is an AssertionError that shows what was found and where:
a test should fail saying why, never take the wrong number.

A ``pattern`` (a regular expression; its first group if it has one, else
the whole match) replaces the rule, for codes that are not digits.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from .reading import URL

__all__ = ["find_code", "KEYWORDS", "NEAR", "WORDS"]

KEYWORDS = re.compile(
    r"\b(?:code|codes|verification|verify|otp|one[- ]time|passcode|password|pin|token|security|confirm\w*|2fa|mfa)\b",
    re.IGNORECASE,
)
NEAR = 40  # characters between a keyword and its code, either side
WORDS = 3  # words between them ("code: 1234", "code is 1234", "1234 is your code")
WORD = re.compile(r"\w+")
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


def _fail(what: str, found: dict[str, list[int]], text: str) -> AssertionError:
    if not found:
        shown = " ".join(text.split())
        return AssertionError(f"no {what} in the message; its text: {shown[:500]!r}")
    listed = "; ".join(f"{value!r} in ...{_context(text, at[0], at[0] + len(value))}..."
                       for value, at in found.items())
    return AssertionError(f"more than one {what} in the message, pass pattern= to choose: {listed}")


def _by_pattern(text: str, pattern: str | re.Pattern[str]) -> dict[str, list[int]]:
    compiled = re.compile(pattern)
    group = 1 if compiled.groups else 0
    found: dict[str, list[int]] = {}
    for match in compiled.finditer(text):
        if match.group(group):
            found.setdefault(match.group(group), []).append(match.start(group))
    return found


def _labelled(text: str, at: int, size: int, after: bool) -> bool:
    """Whether a keyword is written just before the number at ``at`` (``after``:
    the number comes after it, as in "code: 1234"), or just after it ("1234 is
    your code"): at most ``WORDS`` words and ``NEAR`` characters between."""
    window = text[max(at - NEAR, 0):at] if after else text[at + size:at + size + NEAR]
    for keyword in KEYWORDS.finditer(window):
        between = window[keyword.end():] if after else window[:keyword.start()]
        if len(WORD.findall(between)) <= WORDS:
            return True
    return False


def _prefer(found: dict[str, list[int]], keep: Callable[[str, int], bool]) -> dict[str, list[int]]:
    """Those of ``found`` that ``keep`` keeps, if there are any and there was a choice."""
    if len(found) < 2:
        return found
    kept = {value: at for value, at in found.items() if any(keep(value, where) for where in at)}
    return kept or found


def find_code(text: str, pattern: str | re.Pattern[str] | None = None, digits: tuple[int, int] = (4, 8)) -> str:
    """The one code in ``text`` (see the module); AssertionError if none or
    more than one."""
    text = URL.sub(" ", text)
    if pattern is not None:
        found = _by_pattern(text, pattern)
        if len(found) != 1:
            raise _fail(f"match of {getattr(pattern, 'pattern', pattern)!r}", found, text)
        return next(iter(found))
    low, high = digits
    if not 1 <= low <= high:
        raise ValueError(f"digits must be (fewest, most) with 1 <= fewest <= most, not {digits!r}")
    found = _by_pattern(text, _digits(low, high))
    for keep in (lambda value, at: _labelled(text, at, len(value), after=True),
                 lambda value, at: _labelled(text, at, len(value), after=False),
                 lambda value, at: not _is_year(value)):
        found = _prefer(found, keep)
    if len(found) != 1:
        raise _fail(f"one-time code ({low}-{high} digits)", found, text)
    return next(iter(found))
