r"""PromQL series selectors: ``metric{a="x", b=~"re", c!="y", d!~"re"}`` as matchers.

Semantics follow PromQL: regexes are fully anchored (``=~"a.*"`` is ``^(?:a.*)$``),
and a label that is absent matches as if its value were the empty string, so
``{a=""}`` selects series without ``a`` and ``{a!=""}`` series that have it.

``parse_selector`` (below the data types) reads PromQL's series-selector syntax and enforces
the two rules PromQL applies at parse time: the metric name is given at most once, and at least
one matcher must reject the empty string, so a typo cannot silently select every series.

Strings are quoted as in PromQL: ``"..."`` or ``'...'`` with Go escapes (``\n``, ``\x41``,
``\u00e9``, ``\101``), or raw between backticks. Regexes are checked with Python's ``re``; the
RE2 dialect Prometheus uses differs at the edges (``\p{L}`` is RE2-only, lookarounds are
Python-only), so keep regexes to the common subset when a selector is also sent to Prometheus.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Final, NoReturn

from tsf_adapter.core.errors import SelectorError
from tsf_adapter.core.series import METRIC_NAME_LABEL, Labels


class MatchOp(IntEnum):
    """Matcher types; the values are the remote-read ``LabelMatcher.Type`` numbers."""

    EQ = 0
    NEQ = 1
    RE = 2
    NRE = 3

    @property
    def symbol(self) -> str:
        return ("=", "!=", "=~", "!~")[self]


@dataclass(frozen=True, slots=True)
class Matcher:
    """One label matcher; regexes are compiled once, anchored."""

    name: str
    op: MatchOp
    value: str
    _regex: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.op in (MatchOp.RE, MatchOp.NRE):
            object.__setattr__(self, "_regex", re.compile(f"(?:{self.value})", re.DOTALL))

    def matches(self, value: str) -> bool:
        """Does a label value (``""`` when absent) satisfy this matcher?"""
        if self.op is MatchOp.EQ:
            return value == self.value
        if self.op is MatchOp.NEQ:
            return value != self.value
        assert self._regex is not None
        hit = self._regex.fullmatch(value) is not None
        return hit if self.op is MatchOp.RE else not hit

    def __str__(self) -> str:
        return f"{self.name}{self.op.symbol}{quote(self.value)}"


@dataclass(frozen=True, slots=True)
class Selector:
    """A conjunction of matchers, as written in PromQL between ``{}`` (plus the metric name)."""

    matchers: tuple[Matcher, ...]
    text: str = ""

    def matches(self, labels: Labels) -> bool:
        """True when every matcher holds for this label set."""
        values = dict(labels)
        return all(m.matches(values.get(m.name, "")) for m in self.matchers)

    @property
    def metric_name(self) -> str | None:
        """The metric name when the selector pins it with ``=``, else None."""
        for m in self.matchers:
            if m.name == METRIC_NAME_LABEL and m.op is MatchOp.EQ:
                return m.value
        return None

    def __str__(self) -> str:
        return self.text or "{" + ", ".join(str(m) for m in self.matchers) + "}"


# ---------------------------------------------------------------------------------------------
# Parser

_SPACE: Final = " \t\n\r"
_METRIC_NAME: Final = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME: Final = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# Two-character operators first, so that "=~" is not read as "=" followed by garbage.
_OPS: Final = (MatchOp.RE, MatchOp.NRE, MatchOp.NEQ, MatchOp.EQ)
_SIMPLE_ESCAPES: Final = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92}
# Escape letter -> (number of digits, base, is a single byte). As in Go, \x and octal escapes
# give one byte each (so "\xc3\xa9" is "é"), while \u and \U give a whole code point.
_NUMERIC_ESCAPES: Final = {"x": (2, 16, True), "u": (4, 16, False), "U": (8, 16, False)}
_QUOTE_ESCAPES: Final = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def quote(value: str) -> str:
    r"""A double-quoted PromQL string literal that ``parse_selector`` reads back as ``value``.

    >>> print(quote('say "hi"\n'))
    "say \"hi\"\n"
    """
    out = []
    for ch in value:
        if ch in _QUOTE_ESCAPES:
            out.append(_QUOTE_ESCAPES[ch])
        elif ch < " " or ch == "\x7f":
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def parse_selector(text: str) -> Selector:
    """Parse a PromQL series selector; ``SelectorError`` says what is wrong and where.

    The metric name, when written before the braces, becomes the first matcher.

    >>> sel = parse_selector('node_cpu_seconds_total{mode!="idle", cpu=~"0|1"}')
    >>> [str(m) for m in sel.matchers]
    ['__name__="node_cpu_seconds_total"', 'mode!="idle"', 'cpu=~"0|1"']
    >>> sel.matches((("__name__", "node_cpu_seconds_total"), ("cpu", "1"), ("mode", "user")))
    True
    """
    return _Parser(text).selector()


class _Parser:
    """Recursive descent over one selector string; ``pos`` is the index of the next character."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def selector(self) -> Selector:
        self.skip_space()
        name_at = self.pos
        name = self.take(_METRIC_NAME)
        matchers: list[Matcher] = []
        if name is not None:
            matchers.append(Matcher(METRIC_NAME_LABEL, MatchOp.EQ, name))
            self.skip_space()
        if self.peek() == "{":
            matchers.extend(self.braces())
        elif name is None:
            self.expected("a metric name or '{'")
        self.skip_space()
        if self.pos < len(self.text):
            hint = "; a range like [5m] is not part of a series selector" if self.peek() == "[" else ""
            self.expected("end of selector", hint=hint)
        if name is not None:
            for m in matchers[1:]:
                if m.name == METRIC_NAME_LABEL:
                    self.fail(f"metric name set twice: {name!r} and {m}", name_at)
        if all(m.matches("") for m in matchers):
            self.fail(
                "it would select every series; at least one matcher must not match the empty string"
                ' (e.g. a metric name or job!="")'
            )
        return Selector(tuple(matchers), text=self.text.strip(_SPACE))

    def braces(self) -> list[Matcher]:
        self.pos += 1  # the "{"
        out: list[Matcher] = []
        while True:
            self.skip_space()
            if self.peek() == "}":
                self.pos += 1
                return out
            out.append(self.matcher())
            self.skip_space()
            if self.peek() == ",":
                self.pos += 1
            elif self.peek() != "}":
                self.expected("',' or '}'")

    def matcher(self) -> Matcher:
        name = self.take(_LABEL_NAME)
        if name is None:
            self.expected("a label name")
        self.skip_space()
        op = next((op for op in _OPS if self.text.startswith(op.symbol, self.pos)), None)
        if op is None:
            self.expected("one of =, !=, =~, !~")
        self.pos += len(op.symbol)
        self.skip_space()
        value_at = self.pos
        value = self.string()
        try:
            return Matcher(name, op, value)
        except re.error as err:
            self.fail(f"invalid regex {value!r}: {err.msg}", value_at)

    def string(self) -> str:
        """A quoted string at ``pos``: backticks are raw, single and double quotes take escapes."""
        text, start = self.text, self.pos
        quote_char = self.peek()
        if quote_char == "`":
            end = text.find("`", start + 1)
            if end < 0:
                self.fail("unterminated raw string", start)
            self.pos = end + 1
            return text[start + 1 : end]
        if quote_char not in ('"', "'"):
            self.expected("a quoted string")
        # Bytes, because \x and octal escapes may build a UTF-8 sequence one byte at a time.
        out = bytearray()
        i = start + 1
        while True:
            # PromQL, like Go, does not let a quoted string run over a line end.
            if i >= len(text) or text[i] == "\n":
                self.fail("unterminated quoted string", start)
            ch = text[i]
            if ch == quote_char:
                break
            if ch == "\\":
                i = self.escape(i, quote_char, out)
            else:
                out += ch.encode("utf-8", "surrogatepass")
                i += 1
        self.pos = i + 1
        try:
            return out.decode("utf-8")
        except UnicodeDecodeError:
            self.fail("escapes do not form valid UTF-8 in string", start)

    def escape(self, at: int, quote_char: str, out: bytearray) -> int:
        """Append the escape starting with the backslash at ``at``; return the index after it."""
        text = self.text
        letter = text[at + 1 : at + 2]
        if letter in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[letter])
            return at + 2
        if letter == quote_char:
            out += letter.encode()
            return at + 2
        if letter and letter in "01234567":
            width, base, one_byte, first = 3, 8, True, at + 1
        elif letter and letter in _NUMERIC_ESCAPES:
            (width, base, one_byte), first = _NUMERIC_ESCAPES[letter], at + 2
        elif letter in ("", "\n"):
            self.fail("unterminated quoted string", at)
        else:
            self.fail(f"unknown escape sequence {text[at : at + 2]}", at)
        digits = text[first : first + width]
        allowed = string.octdigits if base == 8 else string.hexdigits
        if len(digits) < width or any(d not in allowed for d in digits):
            self.fail(f"escape {text[at : first + width]} needs {width} digits in base {base}", at)
        value = int(digits, base)
        if one_byte:
            if value > 0xFF:
                self.fail(f"escape {text[at : first + width]} is above \\377, the largest byte", at)
            out.append(value)
        else:
            if value > 0x10FFFF or 0xD800 <= value <= 0xDFFF:
                self.fail(f"escape {text[at : first + width]} is not a valid Unicode code point", at)
            out += chr(value).encode()
        return first + width

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in _SPACE:
            self.pos += 1

    def peek(self) -> str:
        return self.text[self.pos : self.pos + 1]

    def take(self, pattern: re.Pattern[str]) -> str | None:
        match = pattern.match(self.text, self.pos)
        if match is None:
            return None
        self.pos = match.end()
        return match.group()

    def expected(self, what: str, *, hint: str = "") -> NoReturn:
        got = repr(self.peek()) if self.pos < len(self.text) else "end of input"
        self.fail(f"expected {what} (got {got}){hint}", self.pos)

    def fail(self, what: str, at: int | None = None) -> NoReturn:
        where = "" if at is None else f" at char {at + 1}"
        raise SelectorError(f"invalid selector {self.text!r}{where}: {what}")
