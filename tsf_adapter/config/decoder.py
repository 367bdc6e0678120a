"""The strict YAML decoder: plain data in, frozen sections out, or one ``ConfigError`` naming every key.

Every failure names the file, the dotted key and what was expected, e.g.
``config.yaml: prometheus.remote_write.queue.max_samples_per_send: must be > 0 (got -5)``;
unknown keys are rejected (our ``UnmarshalStrict``), with a guess at what was meant. A file
with several mistakes gets them all, one line each, in the order of the file: a key that fails
is left out and the decoder goes on with the next, so fixing a config is one round, not one per
mistake. A section's own ``problems()`` (checks across its keys) run only when each of its keys
decoded, since they would otherwise judge values that are not there.
One generic decoder reads any section by its type hints, applying the rules its
fields' types carry (``fields.Check``) and then the section's ``problems()``, to
lists of sections too, with paths such as ``targets[0].step``.

>>> cfg = config_from_dict({"server": {"listen_address": ":9201", "max_compressed_bytes": "8MiB"}})
>>> cfg.server.max_compressed_bytes, cfg.prometheus.remote_write.queue.min_backoff
(8388608, 0.03)
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from collections.abc import Hashable, Mapping
from pathlib import Path
from types import MappingProxyType, NoneType, UnionType
from typing import (
    Annotated,
    Any,
    Final,
    Literal,
    NoReturn,
    Protocol,
    TypeVar,
    Union,
    get_args,
    get_origin,
    get_type_hints,
    runtime_checkable,
)
from urllib.parse import urlsplit

import yaml

from tsf_adapter.config.fields import Check, Problems, show
from tsf_adapter.config.sections import Config
from tsf_adapter.core.address import split_host_port
from tsf_adapter.core.errors import ConfigError, SelectorError
from tsf_adapter.core.selector import Selector, parse_selector
from tsf_adapter.core.units import Duration, parse_size

_T = TypeVar("_T")


def load_config(path: str | Path) -> Config:
    """Read, decode and validate a YAML config file; every failure is a ``ConfigError`` naming it.

    Relative file paths inside (``password_file``, ``ca_file``...) are taken from the config
    file's directory, as Prometheus does, and stored absolute.
    """
    data = read_yaml(path)
    return config_from_dict(data, str(path), base_dir=Path(path).absolute().parent)


def read_yaml(path: str | Path) -> object:
    """A YAML file's plain data, read strictly (no key twice, YAML 1.2 booleans); every failure is
    a ``ConfigError`` naming the file. Shared by every config file the daemon reads."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{source}: cannot read config file: {err.strerror or err}") from err
    except UnicodeDecodeError as err:
        raise ConfigError(f"{source}: not UTF-8 text (byte {err.start})") from err
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader: plain data only
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        context = ""
        if err.context and err.context_mark is not None and err.context_mark != mark:
            start = err.context_mark
            context = f" ({err.context} at line {start.line + 1}, column {start.column + 1})"
        raise ConfigError(f"{source}: invalid YAML{where}: {err.problem}{context}") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"{source}: invalid YAML: {' '.join(str(err).split())}") from err
    return data


def config_from_dict(data: object, source: str = "<dict>", *, base_dir: Path | None = None) -> Config:
    """Decode and validate an already parsed config; an empty file is refused.

    ``source`` prefixes error messages; ``base_dir`` anchors relative file paths (default: cwd).
    An empty file (or one of comments only) is far more often the wrong file, or one a
    deployment left empty, than a request for every default, which leaving out ``--config`` gives.
    """
    if data is None or data == {}:
        raise ConfigError(
            f"{source}: the config is empty: give at least one section (leave out --config for every default)"
        )
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections (got {show(data)})")
    return decode_section(Config, data, source=source, base_dir=base_dir)


def decode_section(
    cls: type[_T], data: object, *, source: str = "<dict>", base_dir: Path | None = None, path: str = ""
) -> _T:
    """Strictly decode one config dataclass (and everything under it) from YAML-shaped data.

    Raises one ``ConfigError`` whose message has a line per problem found.
    """
    decoder = _Decoder(source, base_dir)
    try:
        decoded: _T = decoder.section(cls, data, path)
    except _Invalid:
        raise ConfigError("\n".join(decoder.errors)) from None
    return decoded


@runtime_checkable
class _HasProblems(Protocol):
    def problems(self) -> Problems: ...


class _Invalid(Exception):
    """A value could not be decoded; what was wrong is already in ``_Decoder.errors``."""


class _Decoder:
    """Turns plain YAML data into frozen dataclasses by their type hints, noting every problem."""

    def __init__(self, source: str, base_dir: Path | None) -> None:
        self.source = source
        self.base_dir = base_dir
        self.errors: list[str] = []

    def note(self, path: str, message: str) -> None:
        """Record a problem and go on."""
        self.errors.append(f"{self.source}: {path}: {message}" if path else f"{self.source}: {message}")

    def fail(self, path: str, message: str) -> NoReturn:
        """Record a problem; the value being decoded is abandoned."""
        self.note(path, message)
        raise _Invalid

    def section(self, cls: Any, data: object, path: str) -> Any:
        if data is None:  # "server:" with nothing under it: all defaults
            data = {}
        if not isinstance(data, dict):
            self.fail(path, f"expected a mapping (got {show(data)})")
        hints = get_type_hints(cls, include_extras=True)
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
        values: dict[str, Any] = {}
        before = len(self.errors)
        for key, raw in data.items():
            if not isinstance(key, str):
                self.note(path, f"keys must be strings (got {show(key)})")
            elif key not in fields:
                self.note(_join(path, key), _unknown_key(key, list(fields)))
            else:
                try:
                    values[key] = self.value(hints[key], raw, _join(path, key), ())
                except _Invalid:
                    continue
        for name, f in fields.items():
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            if required and name not in data:
                self.note(_join(path, name), "missing required key")
        if len(self.errors) > before:
            raise _Invalid
        obj = cls(**values)
        if isinstance(obj, _HasProblems):
            for key, message in obj.problems():
                self.note(_join(path, key), message)
            if len(self.errors) > before:
                raise _Invalid
        return obj

    def items(self, tp: Any, data: list[object], path: str, checks: tuple[Check, ...]) -> tuple[Any, ...]:
        """Every item of a list, each one's problems noted; ``_Invalid`` after all when any had one."""
        out = []
        failed = False
        for i, item in enumerate(data):
            try:
                out.append(self.value(tp, item, f"{path}[{i}]", checks))
            except _Invalid:
                failed = True
        if failed:
            raise _Invalid
        return tuple(out)

    def value(self, tp: Any, data: object, path: str, checks: tuple[Check, ...]) -> Any:
        origin, args = get_origin(tp), get_args(tp)
        if origin is Annotated:
            extra = tuple(a for a in args[1:] if isinstance(a, Check))
            return self.value(args[0], data, path, checks + extra)
        if origin in (Union, UnionType):
            if data is None and NoneType in args:
                return None
            (inner,) = (a for a in args if a is not NoneType)
            return self.value(inner, data, path, checks)
        if tp is Selector:  # a dataclass too, but written as PromQL text
            return self.selector(data, path)
        if dataclasses.is_dataclass(tp):
            return self.section(tp, data, path)
        # An empty list or mapping in YAML is often every item commented out, which reads as null.
        if origin is tuple:
            if data is None:
                data = []
            if not isinstance(data, list):
                self.fail(path, f"expected a list (got {show(data)})")
            return self.items(args[0], data, path, checks)
        if origin is Mapping:
            if data is None:
                data = {}
            if not isinstance(data, dict):
                self.fail(path, f"expected a mapping (got {show(data)})")
            out = {}
            before = len(self.errors)
            for key, item in data.items():
                if not isinstance(key, str):
                    self.note(path, f"keys must be strings (got {show(key)})")
                    continue
                try:
                    out[key] = self.value(args[1], item, _join(path, key), ())
                except _Invalid:
                    continue
            if len(self.errors) > before:
                raise _Invalid
            return MappingProxyType(out)
        if origin is Literal:
            if not isinstance(data, str) or data not in args:
                self.fail(path, f"must be one of {', '.join(map(repr, args))} (got {show(data)})")
            return data
        return self.scalar(tp, data, path, checks)

    def scalar(self, tp: Any, data: object, path: str, checks: tuple[Check, ...]) -> Any:
        value: Any
        if Check.DURATION in checks:
            value = self.duration(data, path)
        elif Check.SIZE in checks:
            value = self.size(data, path)
        elif tp is bool:
            if not isinstance(data, bool):
                self.fail(path, f"expected true or false (got {show(data)})")
            value = data
        elif tp is int:
            if isinstance(data, bool) or not isinstance(data, int):
                self.fail(path, f"expected an integer (got {show(data)})")
            value = data
        elif tp is float:
            if isinstance(data, bool) or not isinstance(data, int | float):
                self.fail(path, f"expected a number (got {show(data)})")
            value = float(data)
        elif tp is str:
            if not isinstance(data, str):
                self.fail(path, f"expected a string (got {show(data)}); quote it in YAML")
            value = data
        else:  # a section field of a type this decoder was never taught: a bug, not bad config
            raise TypeError(f"{path}: config fields of type {tp!r} are not supported")
        if Check.POSITIVE in checks and not value > 0:
            self.fail(path, f"must be > 0 (got {show(data)})")
        if Check.FILE in checks:
            value = self.readable_file(value, path)
        if Check.HTTP_URL in checks and not _is_http_url(value):
            self.fail(path, f"must be an http:// or https:// URL with a host (got {show(data)})")
        if Check.DIRECTORY in checks:
            self.directory(value, path)
        if Check.HOST_PORT in checks and not _is_host_port(value):
            self.fail(path, f"must be host:port with a port from 0 to 65535, e.g. :9201 (got {show(data)})")
        return value

    def duration(self, data: object, path: str) -> Duration:
        """Seconds, spelt as written (a horizon's label keeps the config's spelling)."""
        if isinstance(data, str):
            try:
                return Duration.parse(data)
            except ValueError as err:
                self.fail(path, f"invalid duration {err}")
        if isinstance(data, int | float) and not isinstance(data, bool) and math.isfinite(data) and data >= 0:
            return Duration(float(data))  # a plain number is seconds, spelt the canonical way
        self.fail(path, f"expected a duration such as 30s or 1h30m (got {show(data)})")

    def size(self, data: object, path: str) -> int:
        if isinstance(data, str):
            try:
                return parse_size(data)
            except ValueError as err:
                self.fail(path, f"invalid size {err}")
        if isinstance(data, int) and not isinstance(data, bool):
            return data  # a plain number is bytes; the sign is left to POSITIVE
        self.fail(path, f"expected a size such as 16MiB (got {show(data)})")

    def readable_file(self, name: str, path: str) -> str:
        """Open the file now, so a typo fails at startup rather than at the first request."""
        if not name:
            self.fail(path, "must not be empty")
        file = Path(name)
        if not file.is_absolute() and self.base_dir is not None:
            file = self.base_dir / file
        try:
            with file.open("rb"):
                pass
        except OSError as err:
            shown = repr(name) if str(file) == name else f"{name!r} (as {file})"
            self.fail(path, f"cannot read file {shown}: {err.strerror or err}")
        return str(file)

    def directory(self, name: str, path: str) -> None:
        """Only what can be known now: a path that is not empty and, where it exists, a directory.

        The directory itself may be created later (the daemon makes it before its first save),
        and the value is kept as written so that ``config.yaml`` still equals the defaults.
        """
        if not name:
            self.fail(path, "must not be empty")
        target = Path(name)
        if not target.is_absolute() and self.base_dir is not None:
            target = self.base_dir / target
        if target.exists() and not target.is_dir():
            shown = repr(name) if str(target) == name else f"{name!r} (as {target})"
            self.fail(path, f"must be a directory or a path where one can be created (got {shown}, a file)")

    def selector(self, data: object, path: str) -> Selector:
        if not isinstance(data, str):
            hint = (
                "; YAML reads an unquoted {...} as a mapping, so quote it" if isinstance(data, dict) else ""
            )
            self.fail(path, f"expected a selector string (got {show(data)}){hint}")
        try:
            return parse_selector(data)
        except SelectorError as err:
            self.fail(path, str(err))


class _StrictLoader(yaml.SafeLoader):
    """A SafeLoader that rejects a key given twice in one mapping; PyYAML would keep the last silently."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                if (key_node.tag, key_node.value) in seen:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"duplicate key {key_node.value!r}",
                        key_node.start_mark,
                    )
                seen.add((key_node.tag, key_node.value))
        return super().construct_mapping(node, deep=deep)


# YAML 1.2 booleans and floats instead of PyYAML's YAML 1.1 ones. In YAML 1.1 the key `on:` (as in
# `threshold: {on: [...]}`) is the boolean true, `yes`/`no`/`off` are booleans too, and `1e12` is a
# string because a float needs a dot; YAML 1.2, like Go's yaml.v3 and most users' intuition, differs.
_BOOL_TAG: Final = "tag:yaml.org,2002:bool"
_FLOAT_TAG: Final = "tag:yaml.org,2002:float"
_StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, regex) for tag, regex in resolvers if tag not in (_BOOL_TAG, _FLOAT_TAG)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_StrictLoader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_StrictLoader.add_implicit_resolver(
    _FLOAT_TAG,
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path and key else path or key


def _unknown_key(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    if close:
        return f"unknown key (did you mean {close[0]}?)"
    return f"unknown key (expected one of {', '.join(known)})"


def _is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _is_host_port(address: str) -> bool:
    try:
        split_host_port(address)
    except ValueError:
        return False
    return True
