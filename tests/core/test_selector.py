from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tsf_adapter.core.errors import SelectorError
from tsf_adapter.core.selector import Matcher, MatchOp, Selector, parse_selector, quote
from tsf_adapter.core.series import make_labels

EQ, NEQ, RE, NRE = MatchOp.EQ, MatchOp.NEQ, MatchOp.RE, MatchOp.NRE


@pytest.mark.parametrize(
    ("text", "matchers"),
    [
        ("up", [("__name__", EQ, "up")]),
        ("up{}", [("__name__", EQ, "up")]),
        ("job:http_requests:rate5m", [("__name__", EQ, "job:http_requests:rate5m")]),
        (
            'm{a="x", b=~"re.*", c!="y", d!~"z|w"}',
            [("__name__", EQ, "m"), ("a", EQ, "x"), ("b", RE, "re.*"), ("c", NEQ, "y"), ("d", NRE, "z|w")],
        ),
        ('{__name__=~"node_.+"}', [("__name__", RE, "node_.+")]),
        ('{job="node",}', [("job", EQ, "node")]),
        (
            '  up \n{\tjob = "a" ,\n instance!~ `x` , }  ',
            [("__name__", EQ, "up"), ("job", EQ, "a"), ("instance", NRE, "x")],
        ),
        ("{job='single'}", [("job", EQ, "single")]),
        ('{_x="", y!=""}', [("_x", EQ, ""), ("y", NEQ, "")]),
        # PromQL allows the name twice inside braces: it just selects nothing.
        ('{__name__="a", __name__="b"}', [("__name__", EQ, "a"), ("__name__", EQ, "b")]),
    ],
)
def test_parse(text: str, matchers: list[tuple[str, MatchOp, str]]) -> None:
    sel = parse_selector(text)
    assert [(m.name, m.op, m.value) for m in sel.matchers] == matchers
    assert sel.text == text.strip()


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        (r'"a\"b"', 'a"b'),
        (r"'it\'s'", "it's"),
        (r'"tab\there"', "tab\there"),
        (r'"\a\b\f\n\r\t\v\\"', "\a\b\f\n\r\t\v\\"),
        (r'"\x41\101"', "AA"),
        (r'"\u00e9\U0001F600"', "é\U0001f600"),
        (r'"\xc3\xa9"', "é"),  # \x escapes are bytes, as in Go: two of them make one UTF-8 character
        (r'"\303\251"', "é"),
        ("`raw \\n \\d+ \"q\" 'q'`", "raw \\n \\d+ \"q\" 'q'"),
        ("`two\nlines`", "two\nlines"),
        ('"ünïcödé"', "ünïcödé"),
    ],
)
def test_string_escapes(literal: str, value: str) -> None:
    sel = parse_selector(f"x{{a={literal}}}")
    assert sel.matchers[1].value == value


EVERY_SERIES = (
    "it would select every series; at least one matcher must not match the empty string"
    ' (e.g. a metric name or job!="")'
)


@pytest.mark.parametrize(
    ("text", "char", "what"),
    [
        ("", 1, "expected a metric name or '{' (got end of input)"),
        ("5up", 1, "expected a metric name or '{' (got '5')"),
        ('up{a="x}', 6, "unterminated quoted string"),
        ('up{a="x\n"}', 6, "unterminated quoted string"),
        ("up{a=`x}", 6, "unterminated raw string"),
        ('up{a="x"', 9, "expected ',' or '}' (got end of input)"),
        ('up{a="x" b="y"}', 10, "expected ',' or '}' (got 'b')"),
        ("up{,}", 4, "expected a label name (got ',')"),
        ('up{a.b="x"}', 5, "expected one of =, !=, =~, !~ (got '.')"),
        ('up{a=="x"}', 6, "expected a quoted string (got '=')"),
        ("up{a=x}", 6, "expected a quoted string (got 'x')"),
        ('up{a=~"("}', 7, "invalid regex '(': missing ), unterminated subpattern"),
        (r'up{a="\q"}', 7, r"unknown escape sequence \q"),
        (r"up{a='\"'}", 7, r"unknown escape sequence \""),
        (r'up{a="\x4"}', 7, r'escape \x4" needs 2 digits in base 16'),
        (r'up{a="\400"}', 7, r"escape \400 is above \377, the largest byte"),
        (r'up{a="\ud800"}', 7, r"escape \ud800 is not a valid Unicode code point"),
        (r'up{a="\xff"}', 6, "escapes do not form valid UTF-8 in string"),
        (
            "up[5m]",
            3,
            "expected end of selector (got '['); a range like [5m] is not part of a series selector",
        ),
        ("up offset 5m", 4, "expected end of selector (got 'o')"),
        ("{}", None, EVERY_SERIES),
        ('{a=""}', None, EVERY_SERIES),
        ('{a=~".*"}', None, EVERY_SERIES),
        ('{a!~"x", b=~"|y"}', None, EVERY_SERIES),
        ('up{__name__="x"}', 1, "metric name set twice: 'up' and __name__=\"x\""),
        ('up{__name__=~"u.*"}', 1, "metric name set twice: 'up' and __name__=~\"u.*\""),
    ],
)
def test_errors_say_what_and_where(text: str, char: int | None, what: str) -> None:
    where = "" if char is None else f" at char {char}"
    with pytest.raises(SelectorError) as caught:
        parse_selector(text)
    assert str(caught.value) == f"invalid selector {text!r}{where}: {what}"


def test_one_matcher_rejecting_empty_is_enough() -> None:
    assert parse_selector('{a!~"x", b!=""}').matches(make_labels({"b": "1"}))


def test_selector_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="invalid selector"):
        parse_selector("{")


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ('{a=~"a"}', {"a": "ab"}, False),  # anchored: a whole-value match, not a search
        ('{a=~"a"}', {"a": "a"}, True),
        ('{a=~"a|b"}', {"a": "b"}, True),
        ('{a=~".*b"}', {"a": "x\nb"}, True),  # "." matches newlines, as in RE2 with (?s)
        ('up{a=""}', {"__name__": "up"}, True),  # an absent label matches ""
        ('up{a=""}', {"__name__": "up", "a": "x"}, False),
        ('{a!=""}', {"a": "x"}, True),
        ('{a!=""}', {"b": "x"}, False),
        ('up{a!~"x.*"}', {"__name__": "up", "a": "xy"}, False),
        ('up{a!~"x.*"}', {"__name__": "up", "a": "yx"}, True),
        ('up{a!~"x.*"}', {"__name__": "up"}, True),  # "" does not match x.*
        ('up{a!="x"}', {"__name__": "up"}, True),
        ("up", {"__name__": "upp"}, False),
        ('{__name__=~"node_.+", job="n"}', {"__name__": "node_load1", "job": "n"}, True),
        ('{__name__=~"node_.+", job="n"}', {"__name__": "node_", "job": "n"}, False),
    ],
)
def test_semantics(text: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_selector(text).matches(make_labels(labels)) is expected


@pytest.mark.parametrize(
    "text",
    ["up", 'up{job="a"}', '{__name__=~"x.*", a!~`\\d+`}', "m{a='q\\'s'}", "up {  }"],
)
def test_str_of_a_parsed_selector_is_its_text_and_parses_back(text: str) -> None:
    sel = parse_selector(text)
    assert str(sel) == text
    assert parse_selector(str(sel)) == sel


def test_str_of_a_built_selector_parses_back() -> None:
    sel = Selector((Matcher("__name__", EQ, "up"), Matcher("path", RE, 'C:\\\\dir\n"x"')))
    assert str(sel) == '{__name__="up", path=~"C:\\\\\\\\dir\\n\\"x\\""}'
    assert parse_selector(str(sel)).matchers == sel.matchers


_LABEL_NAMES = st.from_regex(re.compile(r"[a-zA-Z_][a-zA-Z0-9_]{0,8}"), fullmatch=True)


@st.composite
def _matchers(draw: st.DrawFn) -> Matcher:
    op = draw(st.sampled_from(list(MatchOp)))
    value = draw(st.text(max_size=12))
    if op in (RE, NRE):
        value = re.escape(value)
    return Matcher(draw(_LABEL_NAMES), op, value)


@given(st.text(min_size=1, max_size=12), st.lists(_matchers(), max_size=4))
def test_any_selector_round_trips_through_str(anchor: str, rest: list[Matcher]) -> None:
    # The anchor matcher rejects "", so every generated selector is one PromQL accepts.
    sel = Selector((Matcher("job", EQ, anchor), *rest))
    assert parse_selector(str(sel)).matchers == sel.matchers


@given(st.text(max_size=30))
def test_quote_round_trips_any_text(value: str) -> None:
    sel = parse_selector(f"x{{a={quote(value)}}}")
    assert sel.matchers[1].value == value
