"""Parser for MLflow-style run search filters and order-by clauses.

Implements the grammar of the ``filter`` and ``order_by`` fields of MLflow's
REST API 2.0 ``runs/search`` so that filters sent by the unmodified mlflow
client work. The parser is pure: it turns text into :class:`Comparison` and
:class:`OrderBy` values and leaves translation to SQL to another layer.

Example:
    >>> parse_filter("metrics.loss < 0.5 and params.lr = '0.01'")[0]
    Comparison(kind='metric', key='loss', op='<', value=0.5)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .likematch import LikePatternError, check_like_pattern

FILTER_EXAMPLE = "metrics.loss < 0.5 and params.lr = '0.01'"
ORDER_BY_EXAMPLE = "metrics.loss DESC"
MAX_FILTER_LENGTH = 10_000
MAX_COMPARISONS = 100

_PLURAL = {"metric": "metrics", "param": "params", "tag": "tags", "attribute": "attributes"}
_PREFIXES = {name: kind for kind, plural in _PLURAL.items() for name in (kind, plural)}
_ATTRIBUTE_NAMES: tuple[str, ...] = ("run_id", "run_name", "status", "user_id", "start_time")
_ATTRIBUTE_NAMES += ("end_time", "artifact_uri", "experiment_id")
_ATTRIBUTES = {**{n: n for n in _ATTRIBUTE_NAMES}, "user": "user_id", "created": "start_time"}
_NUMERIC_ATTRIBUTES = frozenset({"start_time", "end_time"})
_NUMERIC_OPS = ("=", "!=", ">", ">=", "<", "<=")
_STRING_OPS = ("=", "!=", "LIKE", "ILIKE", "IN", "NOT IN")
_WORD_OPS = frozenset({"LIKE", "ILIKE", "IN", "NOT"})
_KEYWORDS = frozenset({"AND", "OR", "NOT", "LIKE", "ILIKE", "IN", "ASC", "DESC"})
_WORD_PUNCT = "_.-/"
_QUOTED_KEY = ("`", '"')  # quotes allowed around a key after its prefix


class SearchError(ValueError):
    """Bad filter/order-by; message says what is wrong and shows a correct example."""


@dataclass(frozen=True)
class Comparison:
    """One ``<identifier> <operator> <value>`` comparison of a filter.

    Attributes:
        kind: ``"metric"``, ``"param"``, ``"tag"`` or ``"attribute"``.
        key: The metric/param/tag key, or the canonical attribute name.
        op: One of ``= != > >= < <= LIKE ILIKE IN NOT IN`` (words upper case).
        value: A float for numeric comparisons, a str for string ones and a
            tuple of str for ``IN`` / ``NOT IN``.
    """

    kind: str
    key: str
    op: str
    value: float | str | tuple[str, ...]


@dataclass(frozen=True)
class OrderBy:
    """One order-by item.

    Attributes:
        kind: ``"metric"``, ``"param"``, ``"tag"`` or ``"attribute"``.
        key: The metric/param/tag key, or the canonical attribute name.
        ascending: True for ``ASC`` (the default), False for ``DESC``.
    """

    kind: str
    key: str
    ascending: bool


@dataclass(frozen=True)
class _Token:
    type: str  # name, qname, string, number, op, "(", ")", ",", end
    text: str  # raw source text
    pos: int
    value: str = ""  # unescaped string, or the key of a name/qname
    prefix: str | None = None  # prefix of a name/qname ("metrics"), None when bare


def _is_word_char(c: str) -> bool:
    return c.isalnum() or c in _WORD_PUNCT


class _Parser:
    def __init__(self, text: str, what: str, example: str) -> None:
        self.text, self.what, self.example = text, what, f"Example: {example}"
        self.tokens = self._tokenize()
        self.i = 0

    def fail(self, message: str, pos: int) -> SearchError:
        return SearchError(f"Invalid {self.what}: {message} (at character {pos}). {self.example}")

    # -- tokenizer ---------------------------------------------------------------

    def _tokenize(self) -> list[_Token]:
        text, tokens, i = self.text, [], 0
        while i < len(text):
            c, start = text[i], i
            nxt = text[i + 1 : i + 2]
            if c.isspace():
                i += 1
                continue
            if c in "(),":
                tokens.append(_Token(c, c, start))
                i += 1
            elif c in "'\"`":
                value, i = self._read_quoted(i)
                kind = "qname" if c == "`" else "string"
                tokens.append(_Token(kind, text[start:i], start, value))
            elif c.isdigit() or (c in "+-." and (nxt.isdigit() or (nxt == "." and c != "."))):
                i = self._read_number(i)
                tokens.append(_Token("number", text[start:i], start, text[start:i]))
            elif c.isalpha() or c == "_":
                while i < len(text) and _is_word_char(text[i]):
                    i += 1
                word, quoted = text[start:i], ""
                if word.endswith(".") and text[i : i + 1] in _QUOTED_KEY:
                    quoted, i = self._read_quoted(i)
                    kind = "qname"
                else:
                    kind = "name"
                head, _, rest = word.partition(".")
                prefix: str | None = head
                if "." not in word:
                    prefix, rest = None, word
                tokens.append(_Token(kind, text[start:i], start, rest + quoted, prefix))
            elif c in "=!<>":
                op = text[i : i + 2] if text[i : i + 2] in ("==", "!=", "<=", ">=", "<>") else c
                if op == "==":
                    raise self.fail("'==' is not supported, use '='", start)
                if op in ("<>", "!"):
                    raise self.fail(f"{op!r} is not supported, use '!='", start)
                tokens.append(_Token("op", op, start))
                i += len(op)
            else:
                raise self.fail(f"unexpected character {c!r}", start)
        tokens.append(_Token("end", "end of input", len(text)))
        return tokens

    def _read_quoted(self, i: int) -> tuple[str, int]:
        """Read a quoted string at ``i``; return its unescaped value and end index."""
        text, quote, start, out = self.text, self.text[i], i, []
        i += 1
        while i < len(text):
            c = text[i]
            if c == "\\" and text[i + 1 : i + 2] in (quote, "\\"):
                out.append(text[i + 1])
                i += 2
            elif c == quote and text[i + 1 : i + 2] == quote:
                out.append(quote)
                i += 2
            elif c == quote:
                return "".join(out), i + 1
            else:
                out.append(c)
                i += 1
        raise self.fail(f"unterminated string starting with {text[start : start + 20]!r}", start)

    def _read_number(self, i: int) -> int:
        """Read a number at ``i`` (sign, digits, fraction, exponent); return its end index."""
        text, start = self.text, i

        def digits(j: int) -> int:
            while j < len(text) and text[j].isdigit():
                j += 1
            return j

        if text[i] in "+-":
            i += 1
        i = digits(i)
        if text[i : i + 1] == ".":
            i = digits(i + 1)
        if not any(ch.isdigit() for ch in text[start:i]):
            raise self.fail(f"malformed number {text[start : i + 1]!r}", start)
        if text[i : i + 1] in ("e", "E"):
            j = i + 1 + (text[i + 1 : i + 2] in ("+", "-"))
            if digits(j) == j:
                raise self.fail(f"malformed number {text[start : j + 1]!r}", start)
            i = digits(j)
        if i < len(text) and (_is_word_char(text[i]) or text[i] in "`\"'"):
            raise self.fail(f"malformed number starting {text[start : i + 1]!r}", start)
        if not math.isfinite(float(text[start:i])):
            raise self.fail(f"number {text[start:i]!r} is out of range", start)
        return i

    # -- parser ------------------------------------------------------------------

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def next(self) -> _Token:
        tok = self.tokens[self.i]
        self.i = min(self.i + 1, len(self.tokens) - 1)
        return tok

    @staticmethod
    def is_word(tok: _Token, *words: str) -> bool:
        return tok.type == "name" and tok.prefix is None and tok.value.upper() in words

    def identifier(self) -> tuple[str, str]:
        tok = self.next()
        if tok.type == "(":
            raise self.fail("parentheses are not supported, only AND is supported", tok.pos)
        if tok.type == "end":
            raise self.fail("missing identifier at the end", tok.pos)
        if tok.type not in ("name", "qname") or self.is_word(tok, *_KEYWORDS):
            raise self.fail(
                f"expected an identifier such as metrics.loss, got {tok.text!r}", tok.pos
            )
        if tok.prefix is None:
            if tok.type == "name" and tok.value.lower() in _PREFIXES:
                raise self.fail(
                    f"missing key after {tok.value!r}, write {tok.value}.<key>", tok.pos
                )
            return "attribute", self.attribute(tok.value, tok)
        kind = _PREFIXES.get(tok.prefix.lower())
        if kind is None:
            raise self.fail(
                f"unknown prefix {tok.prefix!r} in {tok.text!r}, "
                "use metrics., params., tags. or attributes.",
                tok.pos,
            )
        if not tok.value:
            raise self.fail(f"missing key after {tok.text!r}", tok.pos)
        return kind, self.attribute(tok.value, tok) if kind == "attribute" else tok.value

    def attribute(self, name: str, tok: _Token) -> str:
        canonical = _ATTRIBUTES.get(name.lower())
        if canonical is None:
            allowed = ", ".join(sorted(_ATTRIBUTES))
            raise self.fail(
                f"unknown attribute {name!r} (allowed: {allowed}); "
                "metrics, params and tags need a prefix like metrics.<key>",
                tok.pos,
            )
        return canonical

    def filter(self) -> list[Comparison]:
        comparisons = []
        while True:
            comparisons.append(self.comparison())
            if len(comparisons) > MAX_COMPARISONS:
                raise self.fail(f"more than {MAX_COMPARISONS} comparisons", self.peek().pos)
            tok = self.next()
            if tok.type == "end":
                return comparisons
            if self.is_word(tok, "OR"):
                raise self.fail("OR is not supported, only AND is supported", tok.pos)
            if not self.is_word(tok, "AND"):
                raise self.fail(f"unexpected {tok.text!r}, join comparisons with AND", tok.pos)
            if self.peek().type == "end":
                raise self.fail("dangling AND, a comparison must follow it", tok.pos)

    def comparison(self) -> Comparison:
        kind, key = self.identifier()
        subject = f"{_PLURAL[kind]}.{key}"
        numeric = kind == "metric" or (kind == "attribute" and key in _NUMERIC_ATTRIBUTES)
        allowed = _NUMERIC_OPS if numeric else _STRING_OPS
        tok = self.next()
        if tok.type == "op":
            op = tok.text
        elif self.is_word(tok, *_WORD_OPS):
            op = tok.value.upper()
            if op == "NOT":
                if not self.is_word(self.peek(), "IN"):
                    raise self.fail("expected IN after NOT", self.peek().pos)
                op = f"NOT {self.next().value.upper()}"
        else:
            raise self.fail(f"expected an operator after {subject}, got {tok.text!r}", tok.pos)
        if op not in allowed:
            raise self.fail(
                f"operator {op!r} is not allowed for {subject}, allowed: {', '.join(allowed)}",
                tok.pos,
            )
        if op in ("IN", "NOT IN"):
            return Comparison(kind, key, op, self.in_list(op))
        tok = self.next()
        if tok.type == "number" and numeric:
            return Comparison(kind, key, op, float(tok.value))
        if tok.type == "string" and not numeric:
            if op in ("LIKE", "ILIKE"):
                try:
                    check_like_pattern(tok.value, f"the {op} pattern for {subject}")
                except LikePatternError as e:
                    raise self.fail(str(e), tok.pos) from None
            return Comparison(kind, key, op, tok.value)
        if tok.type == "end":
            raise self.fail(f"missing value after {subject} {op}", tok.pos)
        hint = f", quote it: {subject} {op} '{tok.text}'" if tok.type == "number" else ""
        expected = "a number" if numeric else "a quoted string"
        raise self.fail(f"{subject} needs {expected}, got {tok.text}{hint}", tok.pos)

    def in_list(self, op: str) -> tuple[str, ...]:
        tok = self.next()
        if tok.type != "(":
            raise self.fail(f"{op} needs a list like ('a', 'b'), got {tok.text!r}", tok.pos)
        if self.peek().type == ")":
            raise self.fail(f"empty {op} list", self.peek().pos)
        values = []
        while True:
            tok = self.next()
            if tok.type != "string":
                raise self.fail(
                    f"{op} list items must be quoted strings, got {tok.text!r}", tok.pos
                )
            values.append(tok.value)
            tok = self.next()
            if tok.type == ")":
                return tuple(values)
            if tok.type != ",":
                raise self.fail(f"expected ',' or ')' in {op} list, got {tok.text!r}", tok.pos)

    def order_by(self) -> OrderBy:
        kind, key = self.identifier()
        tok = self.next()
        ascending = True
        if self.is_word(tok, "ASC", "DESC"):
            ascending = tok.value.upper() == "ASC"
            tok = self.next()
        elif tok.type == "name":
            raise self.fail(f"unknown sort direction {tok.text!r}, use ASC or DESC", tok.pos)
        if tok.type != "end":
            raise self.fail(f"unexpected {tok.text!r}, give one key per order_by item", tok.pos)
        return OrderBy(kind, key, ascending)


def parse_filter(text: str | None) -> list[Comparison]:
    """Parse an MLflow ``search_runs`` filter string.

    Args:
        text: A filter such as ``"metrics.loss < 0.5 and params.lr = '0.01'"``;
            None, empty or blank means no filter.

    Returns:
        The comparisons, in order, all of which must hold (they are ANDed).

    Raises:
        SearchError: The filter is malformed, too long (over ``MAX_FILTER_LENGTH``
            characters, or a ``LIKE``/``ILIKE`` pattern over ``MAX_LIKE_PATTERN``) or uses
            an unsupported construct (OR, parentheses, unknown identifiers or operators).
    """
    if text is None:
        return []
    if not isinstance(text, str):
        raise SearchError(f"Invalid filter: expected a string. Example: {FILTER_EXAMPLE}")
    if len(text) > MAX_FILTER_LENGTH:
        raise SearchError(
            f"Invalid filter: longer than {MAX_FILTER_LENGTH} characters. Example: {FILTER_EXAMPLE}"
        )
    if not text.strip():
        return []
    return _Parser(text, "filter", FILTER_EXAMPLE).filter()


def parse_order_by(items: list[str] | None) -> list[OrderBy]:
    """Parse MLflow ``search_runs`` order-by items.

    Args:
        items: Items such as ``["metrics.loss", "attributes.start_time DESC"]``;
            None or an empty list means no ordering.

    Returns:
        One :class:`OrderBy` per item, in order.

    Raises:
        SearchError: An item is empty, malformed, names an unknown identifier
            or has a direction other than ASC/DESC.
    """
    if items is None:
        return []
    if isinstance(items, str) or not isinstance(items, list | tuple):
        raise SearchError(
            f"Invalid order_by: expected a list of strings like [{ORDER_BY_EXAMPLE!r}]"
        )
    if len(items) > MAX_COMPARISONS:
        raise SearchError(f"Invalid order_by: more than {MAX_COMPARISONS} items")
    result = []
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise SearchError(
                f"Invalid order_by item {item!r}: expected a non-empty string. "
                f"Example: {ORDER_BY_EXAMPLE}"
            )
        if len(item) > MAX_FILTER_LENGTH:
            raise SearchError(f"Invalid order_by item: longer than {MAX_FILTER_LENGTH} characters")
        result.append(_Parser(item, "order_by item", ORDER_BY_EXAMPLE).order_by())
    return result
