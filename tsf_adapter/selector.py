"""PromQL series selectors: ``metric{a="x", b=~"re", c!="y", d!~"re"}`` as matchers.

Semantics follow PromQL: regexes are fully anchored (``=~"a.*"`` is ``^(?:a.*)$``),
and a label that is absent matches as if its value were the empty string, so
``{a=""}`` selects series without ``a`` and ``{a!=""}`` series that have it.

The parser (``parse_selector``) lives below the data types.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import IntEnum

from tsf_adapter.series import METRIC_NAME_LABEL, Labels


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
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"')
        return f'{self.name}{self.op.symbol}"{escaped}"'


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
