"""Strict, bounded YAML loading that remembers where every value came from.

PyYAML's safe loader is used only up to its node graph (scanner, parser, composer); values are
then built here so that:
- every value and every mapping key keeps its file:line:col;
- duplicate keys, merge keys (`<<`), unknown tags and YAML 1.1 surprises (`no` read as false,
  `010` as octal 8, `1:20` as 80) are reported instead of silently changing the meaning;
- file size, nesting depth, alias count and the number of values an alias expands to are
  bounded, so a 400-byte alias bomb is refused in milliseconds;
- only a regular file is read, and its size is checked before reading (`read`), so
  `/dev/zero`, a FIFO or a directory is refused at once;
- numbers are bounded: integers of at most MAX_DIGITS digits, floats finite.
"""

from __future__ import annotations

import math
import os
import re
import stat
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import BaseResolver
from yaml.scanner import Scanner

from .errors import Diagnostic, Location

MAX_BYTES = 1024 * 1024
MAX_DEPTH = 40
MAX_ALIASES = 100
MAX_VALUES = 20_000
MAX_DIGITS = 100

Path = tuple[str | int, ...]

_NULL = {"", "~", "null", "Null", "NULL"}
_TRUE = {"true", "True", "TRUE"}
_FALSE = {"false", "False", "FALSE"}
_INT = re.compile(r"[-+]?(0|[1-9][0-9]*)")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_YAML11_BOOL = re.compile(r"(y|Y|yes|Yes|YES|n|N|no|No|NO|on|On|ON|off|Off|OFF)")
#: Plain scalars some YAML reader would take for a number, with what it would read.
_YAML11_NUMBERS = (
    (re.compile(r"[-+]?0[0-9]+"), "an octal number in YAML 1.1"),
    (re.compile(r"[-+]?0[xXoObB][0-9a-fA-F_]+"), "a hexadecimal, octal or binary number"),
    (re.compile(r"[-+]?[0-9][0-9_]*(:[0-5]?[0-9])+(\.[0-9_]*)?"), "a base-60 number in YAML 1.1"),
    (re.compile(r"[-+]?[0-9][0-9_]*_[0-9_]*(\.[0-9_]*)?"), "a number with _ in YAML 1.1"),
    (re.compile(r"[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN)"), "infinity or not-a-number"),
)
_TAGS = {
    "tag:yaml.org,2002:" + name for name in ("str", "int", "float", "bool", "null", "seq", "map")
}


@dataclass(frozen=True)
class Document:
    """A loaded YAML file: plain JSON-like data plus the location of every value and key."""

    path: str
    data: Any
    values: dict[Path, Location] = field(repr=False)
    keys: dict[Path, Location] = field(repr=False)

    def at(self, path: Path) -> Location:
        """Location of the value at `path`, or of its nearest existing parent."""
        for end in range(len(path), -1, -1):
            found = self.values.get(path[:end])
            if found is not None:
                return found
        return Location(self.path)

    def key_at(self, path: Path) -> Location:
        """Location of the mapping key that introduces `path` (falls back to the value)."""
        return self.keys.get(path) or self.at(path)


class _Refused(Exception):
    def __init__(self, rule: str, message: str, line: int = 0, column: int = 0) -> None:
        super().__init__(message)
        self.rule, self.message, self.line, self.column = rule, message, line, column


_PLAIN = "tag:guichet,plain"


class _Resolver(BaseResolver):
    """No implicit typing: plain scalars are typed by `_Builder` with YAML 1.2 core rules."""

    def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
        if kind is ScalarNode and implicit[0]:
            return _PLAIN
        return str(super().resolve(kind, value, implicit))  # type: ignore[no-untyped-call]


class _Composer(Reader, Scanner, Parser, Composer, _Resolver):
    def __init__(self, text: str) -> None:
        Reader.__init__(self, text)
        Scanner.__init__(self)
        Parser.__init__(self)
        Composer.__init__(self)
        _Resolver.__init__(self)
        self.depth = 0
        self.aliases = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        event: Any = self.peek_event()  # type: ignore[no-untyped-call]
        mark: Any = event.start_mark
        if isinstance(event, yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                raise _Refused("yaml-alias-limit",
                               f"more than {MAX_ALIASES} aliases; write the values out instead",
                               mark.line, mark.column)
        tag = getattr(event, "tag", None)
        if tag not in (None, "!") and tag not in _TAGS:
            short = str(tag).replace("tag:yaml.org,2002:", "!!")
            raise _Refused("yaml-tag", f'tag "{short}" is not allowed', mark.line, mark.column)
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _Refused("yaml-depth", f"nesting deeper than {MAX_DEPTH} levels",
                           mark.line, mark.column)
        node = super().compose_node(parent, index)
        self.depth -= 1
        return node


class _Builder:
    """Turns the node graph into plain values, collecting diagnostics and locations."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.values: dict[Path, Location] = {}
        self.keys: dict[Path, Location] = {}
        self.diagnostics: list[Diagnostic] = []
        self.budget = MAX_VALUES

    def location(self, node: Node) -> Location:
        return Location(self.path, node.start_mark.line + 1, node.start_mark.column + 1)

    def report(self, node: Node, rule: str, message: str) -> None:
        self.diagnostics.append(Diagnostic(self.location(node), "error", rule, message))

    def build(self, node: Node, path: Path, depth: int = 0) -> Any:
        self.budget -= 1
        if self.budget < 0 or depth > MAX_DEPTH:
            rule = "yaml-alias-limit" if self.budget < 0 else "yaml-depth"
            raise _Refused(
                rule,
                f"the file expands to more than {MAX_VALUES} values (an alias bomb?)"
                if self.budget < 0 else f"nesting deeper than {MAX_DEPTH} levels",
                node.start_mark.line, node.start_mark.column,
            )
        self.values.setdefault(path, self.location(node))
        if isinstance(node, MappingNode):
            return self.mapping(node, path, depth)
        if isinstance(node, SequenceNode):
            return [self.build(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        assert isinstance(node, ScalarNode)
        return self.scalar(node)

    def mapping(self, node: MappingNode, path: Path, depth: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        first_seen: dict[str, Node] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                self.report(key_node, "yaml-key",
                            "a key must be a plain name, not a list or mapping")
                continue
            key = str(key_node.value)
            if key == "<<" and key_node.style is None:
                self.report(key_node, "yaml-merge-key", 'merge keys ("<<") are not allowed; '
                            "write the keys out")
                continue
            if key in first_seen:
                first = first_seen[key].start_mark.line + 1
                self.report(key_node, "duplicate-key",
                            f'duplicate key "{key}"; first defined on line {first}')
                continue
            first_seen[key] = key_node
            self.keys[(*path, key)] = self.location(key_node)
            result[key] = self.build(value_node, (*path, key), depth + 1)
        return result

    def scalar(self, node: ScalarNode) -> Any:
        text = node.value
        if node.style is not None or node.tag == "tag:yaml.org,2002:str":
            return text  # quoted, block or explicitly tagged text
        if text in _NULL:
            return None
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        if _INT.fullmatch(text):
            return self.integer(node, text)
        if _FLOAT.fullmatch(text) and not _YAML11_NUMBERS[0][0].fullmatch(text):
            return self.real(node, text)
        if _YAML11_BOOL.fullmatch(text):
            self.report(node, "yaml-ambiguous",
                        f'"{text}" is a boolean in YAML 1.1 and text in YAML 1.2; '
                        f"write true or false, or quote it ('{text}') to mean text")
        else:
            for pattern, reading in _YAML11_NUMBERS:
                if pattern.fullmatch(text):
                    self.report(node, "yaml-ambiguous",
                                f'"{text}" may be read as {reading}; write the number in '
                                f"decimal, or quote it ('{text}') to mean text")
                    break
        return text

    def integer(self, node: ScalarNode, text: str) -> int:
        """An integer of at most MAX_DIGITS digits; a longer one is reported (and read as the
        largest allowed, so that nothing else is reported about it)."""
        digits = len(text.lstrip("+-"))
        if digits <= MAX_DIGITS:
            return int(text)
        self.report(node, "yaml-number", f"integer of {digits:,} digits; the limit is "
                                         f"{MAX_DIGITS} digits (quote it to mean text)")
        return int(("-" if text.startswith("-") else "") + "9" * MAX_DIGITS)

    def real(self, node: ScalarNode, text: str) -> float:
        """A finite float; one too large for a float (read as infinity) is reported."""
        value = float(text)
        if math.isfinite(value):
            return value
        self.report(node, "yaml-number", f'number "{_shorten(text)}" is too large '
                                         "(it would be read as infinity)")
        return math.copysign(1e308, value)


def _shorten(text: str, length: int = 40) -> str:
    return text if len(text) <= length else text[:length - 3] + "..."


_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
          (stat.S_ISSOCK, "a socket"))


def read(path: str | os.PathLike[str]) -> tuple[bytes | None, list[Diagnostic]]:
    """The bytes of a procedure file, or one diagnostic: not a regular file (`file-kind`),
    over MAX_BYTES (`file-size`, from its size before reading anything) or unreadable.

    The file is opened without blocking (a FIFO with no writer is refused, not waited on) and
    checked on the opened descriptor, so it cannot be swapped between the check and the read.
    """
    where = Location(str(path))
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        descriptor = os.open(path, flags)
    except OSError as exc:
        return None, [unreadable(str(path), exc)]
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            kind = next((name for test, name in _KINDS if test(info.st_mode)), "not a file")
            return None, [Diagnostic(where, "error", "file-kind",
                                     f"not a regular file: this is {kind}")]
        if info.st_size > MAX_BYTES:
            return None, [_too_large(where, info.st_size)]
        with open(descriptor, "rb", closefd=False) as stream:
            return stream.read(MAX_BYTES + 1), []  # a file grown meanwhile: decode refuses it
    except OSError as exc:
        return None, [unreadable(str(path), exc)]
    finally:
        os.close(descriptor)


def unreadable(path: str, exc: OSError) -> Diagnostic:
    """`file-unreadable`: why the system could not open or read `path`."""
    reason = (exc.strerror or str(exc)).lower()
    return Diagnostic(Location(path), "error", "file-unreadable", f"cannot read file: {reason}")


def _too_large(where: Location, size: int) -> Diagnostic:
    return Diagnostic(where, "error", "file-size",
                      f"file is {size} bytes; the limit is {MAX_BYTES} bytes")


def decode(raw: bytes, path: str) -> tuple[str | None, list[Diagnostic]]:
    """Check size, binary content and encoding; return the text or one diagnostic."""
    where = Location(path)

    def refuse(rule: str, message: str) -> tuple[None, list[Diagnostic]]:
        return None, [Diagnostic(where, "error", rule, message)]

    if len(raw) > MAX_BYTES:
        return None, [_too_large(where, len(raw))]
    if b"\x00" in raw:
        return refuse("file-binary", "file is binary (it contains NUL bytes), not YAML text")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        where = Location(path, line, column)
        return None, [Diagnostic(where, "error", "file-encoding",
                                 f"file is not UTF-8 (byte 0x{raw[exc.start]:02x}); "
                                 "save it as UTF-8")]
    return text.removeprefix("\ufeff"), []


def load(raw: bytes | str, path: str) -> tuple[Document | None, list[Diagnostic]]:
    """Load one YAML file strictly. Returns the document (None when unusable) and diagnostics."""
    if isinstance(raw, bytes):
        text, problems = decode(raw, path)
        if text is None:
            return None, problems
    else:
        text = raw
    builder = _Builder(path)

    def refused(line: int, column: int, rule: str, message: str) -> tuple[None, list[Diagnostic]]:
        where = Location(path, line + 1, column + 1)
        return None, [Diagnostic(where, "error", rule, message)]

    try:
        composer = _Composer(text)
        root = composer.get_single_node()
        if root is None:
            return refused(0, 0, "file-empty", "file is empty; a procedure starts with "
                                               "id, version, title, roles, states and transitions")
        _check_expansion(root)
        data = builder.build(root, ())
    except _Refused as exc:
        return refused(exc.line, exc.column, exc.rule, exc.message)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = (exc.problem or exc.context or "invalid YAML").strip()
        if exc.context and "duplicate anchor" in exc.context:
            message = exc.context.split(";")[0] + "; each anchor name must be unique"
        elif exc.context and exc.problem:
            message = f"{exc.problem} ({exc.context})"
        return refused(mark.line if mark else 0, mark.column if mark else 0, "yaml-syntax",
                       _lower_first(message))
    except yaml.reader.ReaderError as exc:  # control characters and the like
        line = text.count("\n", 0, exc.position)
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1)
        character = exc.character if isinstance(exc.character, str) else chr(exc.character)
        return refused(line, column, "yaml-syntax",
                       f"control character {character!r} (U+{ord(character):04X}) is not "
                       "allowed in YAML text")
    if not isinstance(data, dict):
        kind = ("a list" if isinstance(data, list) else "nothing" if data is None
                else f'the value "{data}"')
        return refused(root.start_mark.line, root.start_mark.column, "not-a-mapping",
                       f"a procedure must be a mapping of keys (id, title, states, ...); "
                       f"found {kind}")
    document = Document(path, data, builder.values, builder.keys)
    return document, builder.diagnostics


def _check_expansion(root: Node) -> None:
    """Refuse before building when aliases would expand the file past MAX_VALUES values.

    Sizes are memoised per node, so this costs one visit per distinct node however many
    times aliases repeat it.
    """
    sizes: dict[int, int] = {}
    pending: set[int] = set()

    def size(node: Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in pending:
            raise _Refused("yaml-alias-limit", "an alias refers to the value that contains it",
                           node.start_mark.line, node.start_mark.column)
        pending.add(key)
        total = 1
        if isinstance(node, MappingNode):
            total += sum(size(k) + size(v) for k, v in node.value)
        elif isinstance(node, SequenceNode):
            total += sum(size(item) for item in node.value)
        pending.discard(key)
        sizes[key] = total
        if total > MAX_VALUES:
            raise _Refused("yaml-alias-limit",
                           f"aliases expand this file to more than {MAX_VALUES} values "
                           "(an alias bomb?); write the values out",
                           node.start_mark.line, node.start_mark.column)
        return total

    size(root)


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]

