"""SQL ``LIKE`` matching in Python, in linear-time pieces (no regular expressions).

``%`` matches any run of characters (also none) and ``_`` exactly one; every other character
matches itself (there is no escape character, as in SQLite's default ``LIKE``). ``ILIKE``
compares the characters lower-cased one by one.

Why not a regex: translating ``%`` to ``.*`` lets a pattern such as ``%a%a%a...%b`` against a
long run of ``a`` backtrack through every way of splitting the value, which takes time
exponential in the number of ``%``. Here the pattern is cut at ``%`` into segments; the first
must match at the start, the last at the end, and each one between is taken at its leftmost
place after the one before. Taking the leftmost place never loses a match (a later segment can
only gain room), so there is no backtracking. The segments are searched one after the other,
each from where the one before ended: ``str.find`` for a segment without ``_``, else a
bit-parallel scan of one step per character. No character of the value is looked at by more
than one segment's search, so the work is at most ``len(value) * len(pattern)`` character
comparisons (``str.find``'s worst case) and in practice about linear in ``len(value)``.

Patterns are limited to :data:`MAX_LIKE_PATTERN` characters (:func:`check_like_pattern`), for
the SQL back ends too.

>>> like_match("phi4-%-L_", "phi4-flow-L8")
True
>>> like_match("%A%", "flat", ignore_case=True)
True
"""

from __future__ import annotations

#: The longest ``LIKE``/``ILIKE`` pattern accepted, in characters.
MAX_LIKE_PATTERN = 256


class LikePatternError(ValueError):
    """A ``LIKE`` pattern that is refused (too long); the message names the limit and the fix."""


def check_like_pattern(pattern: str, what: str = "LIKE pattern") -> str:
    """The pattern, if it is at most :data:`MAX_LIKE_PATTERN` characters long.

    Args:
        pattern: the pattern as sent.
        what: how to name it in the error, e.g. ``"LIKE pattern for tags.model"``.

    Raises:
        LikePatternError: for a longer pattern.
    """
    if len(pattern) > MAX_LIKE_PATTERN:
        raise LikePatternError(
            f"{what} is {len(pattern)} characters long; the limit is {MAX_LIKE_PATTERN}. "
            "Match a shorter, distinctive part of the text with % around it, e.g. '%flow-L8%'"
        )
    return pattern


def _fold(text: str) -> str:
    """``text`` lower-cased character by character (keeping positions where that would not)."""
    return "".join(low if len(low := ch.lower()) == 1 else ch for ch in text)


def _matches_at(segment: str, value: str, start: int) -> bool:
    """Whether ``segment`` (literals and ``_``) matches ``value`` at ``start`` (it fits)."""
    for offset, ch in enumerate(segment):
        if ch != "_" and ch != value[start + offset]:
            return False
    return True


def _find(segment: str, value: str, start: int, end: int) -> int:
    """The leftmost ``i >= start`` where ``segment`` matches ``value[i:]`` ending by ``end``.

    A segment without ``_`` is found with ``str.find``; one with ``_`` by the bit-parallel
    shift-and scan (one integer of ``len(segment)`` bits for the places where a partial match
    may end), one step per character of ``value``.

    Returns:
        The position, or -1 when there is none.
    """
    if "_" not in segment:
        return value.find(segment, start, end)
    wild = 0
    for i, ch in enumerate(segment):
        if ch == "_":
            wild |= 1 << i
    masks: dict[str, int] = {}
    for i, ch in enumerate(segment):
        if ch != "_":
            masks[ch] = masks.get(ch, wild) | 1 << i
    done = 1 << (len(segment) - 1)
    state = 0
    for j in range(start, end):
        state = ((state << 1) | 1) & masks.get(value[j], wild)
        if state & done:
            return j - len(segment) + 1
    return -1


def like_match(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    """Whether ``value`` matches the SQL ``LIKE`` ``pattern`` (the whole value).

    Args:
        pattern: ``%`` for any run of characters, ``_`` for one character; the length is not
            checked here (see :func:`check_like_pattern`).
        value: the text to test.
        ignore_case: ``ILIKE``: compare characters lower-cased.

    Returns:
        True when the pattern matches all of ``value``.

    >>> like_match("%a%a%b", "a" * 200)
    False
    >>> like_match("a_c", "abc"), like_match("a_c", "abbc")
    (True, False)
    """
    if ignore_case:
        pattern, value = _fold(pattern), _fold(value)
    segments = pattern.split("%")
    if len(segments) == 1:
        return len(value) == len(pattern) and _matches_at(pattern, value, 0)
    first, *middle, last = segments
    end = len(value) - len(last)
    if end < len(first):
        return False
    if not (_matches_at(first, value, 0) and _matches_at(last, value, end)):
        return False
    position = len(first)
    for segment in middle:
        if not segment:
            continue  # '%%' is one '%'
        found = _find(segment, value, position, end)
        if found < 0:
            return False
        position = found + len(segment)
    return True
