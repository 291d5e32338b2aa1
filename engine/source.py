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
from yaml.composer import ComposerError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.parser import Parser
from yaml.reader import Reader
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
#: The first characters of the texts `_YAML11_BOOL` and `_YAML11_NUMBERS` can match.
_AMBIGUOUS_START = frozenset("yYnNoO+-.0123456789")
_YAML11_BOOL = re.compile(r"(y|Y|yes|Yes|YES|n|N|no|No|NO|on|On|ON|off|Off|OFF)")
#: Plain scalars some YAML reader would take for a number, with what it would read.
_YAML11_NUMBERS = (
    (re.compile(r"[-+]?0[0-9]+"), "an octal number in YAML 1.1"),
    (re.compile(r"[-+]?0[xXoObB][0-9a-fA-F_]+"), "a hexadecimal, octal or binary number"),
    (re.compile(r"[-+]?[0-9][0-9_]*(:[0-5]?[0-9])+(\.[0-9_]*)?"), "a base-60 number in YAML 1.1"),
    (re.compile(r"[-+]?[0-9][0-9_]*_[0-9_]*(\.[0-9_]*)?"), "a number with _ in YAML 1.1"),
    (re.compile(r"[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN)"), "infinity or not-a-number"),
)


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


_PLAIN = "tag:guichet,plain"  # a plain scalar, typed by `_Builder` with YAML 1.2 core rules
_TAGGED = "tag:guichet,tagged"  # a plain scalar with a standard tag (reported once, then typed)
_TEXT = "tag:yaml.org,2002:str"
_STANDARD = "tag:yaml.org,2002:"
_TAG_ADVICE = {
    "str": "quote the value to mean text", "int": "write the number without a tag",
    "float": "write the number without a tag", "bool": "write true or false without a tag",
    "null": "leave the value empty", "seq": "write the list without a tag",
    "map": "write the mapping without a tag",
}

_CParser: Any
try:  # libyaml's C parser: the same events and positions, about ten times faster
    from yaml._yaml import CParser as _CParser
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    _CParser = None

#: Whether libyaml's C parser is used (PyYAML was built with it).
LIBYAML = _CParser is not None


class _PyParser(Reader, Scanner, Parser):
    """PyYAML's pure-Python parser, used when libyaml is not available."""

    def __init__(self, text: str) -> None:
        Reader.__init__(self, text)
        Scanner.__init__(self)
        Parser.__init__(self)


def _parser(text: str, fast: bool = True) -> Any:
    """An event parser of `text`: libyaml's when PyYAML has it (and `fast`), else PyYAML's."""
    return _CParser(text) if fast and _CParser is not None else _PyParser(text)


class _Composer:
    """The node graph of one document, built from parser events.

    Every tag is reported (a standard one like `!!str` as an error that does not stop the
    load, any other at once). Nesting depth, the number of aliases and the number of values
    the document expands to (an alias counts as many values as its anchor's) are bounded as
    the events arrive, so an alias bomb is refused before anything is built.
    """

    def __init__(self, events: Any) -> None:
        self.events = events
        self.anchors: dict[str, tuple[Node, int]] = {}  # name: node and its expanded size
        self.open: set[str] = set()  # anchors of the collections being composed
        self.aliases = 0
        self.depth = 0
        self.problems: list[_Refused] = []

    def single_node(self) -> Node | None:
        """The root node (None for an empty stream); refuses a second document."""
        get, check = self.events.get_event, self.events.check_event
        get()  # stream start
        root = None
        if not check(yaml.StreamEndEvent):
            get()  # document start
            root = self.node()[0]
            get()  # document end
        if not check(yaml.StreamEndEvent):
            raise ComposerError("expected a single document in the stream",
                                root.start_mark if root else None,
                                "but found another document", get().start_mark)
        return root

    def node(self) -> tuple[Node, int]:
        """The next node and the number of values it expands to."""
        event: Any = self.events.get_event()  # its marks are PyYAML's or libyaml's
        if isinstance(event, yaml.AliasEvent):
            return self.alias(event)
        self.tag(event)
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _refused_at(event, "yaml-depth", f"nesting deeper than {MAX_DEPTH} levels")
        composed: tuple[Node, int]
        if isinstance(event, yaml.ScalarEvent):
            composed = self.scalar(event), 1
        elif isinstance(event, yaml.SequenceStartEvent):
            composed = self.collection(event, SequenceNode, yaml.SequenceEndEvent)
        else:
            composed = self.collection(event, MappingNode, yaml.MappingEndEvent)
        self.depth -= 1
        if event.anchor is not None:
            self.anchors[event.anchor] = composed
        return composed

    def collection(self, event: Any, kind: type[SequenceNode | MappingNode], end: type[Any]
                   ) -> tuple[Node, int]:
        node = kind(_STANDARD + ("seq" if kind is SequenceNode else "map"), [],
                    event.start_mark, None, flow_style=event.flow_style)
        self.anchor(event)
        items: list[Any] = node.value
        size = 1
        while not self.events.check_event(end):
            item, item_size = self.node()
            if kind is MappingNode:
                value, value_size = self.node()
                items.append((item, value))
                item_size += value_size
            else:
                items.append(item)
            size += item_size
            if size > MAX_VALUES:
                raise _refused_at(event, "yaml-alias-limit",
                                  f"aliases expand this file to more than {MAX_VALUES} values "
                                  "(an alias bomb?); write the values out")
        node.end_mark = self.events.get_event().end_mark
        self.open.discard(event.anchor)
        return node, size

    def alias(self, event: Any) -> tuple[Node, int]:
        self.aliases += 1
        if self.aliases > MAX_ALIASES:
            raise _refused_at(event, "yaml-alias-limit",
                              f"more than {MAX_ALIASES} aliases; write the values out instead")
        if event.anchor in self.open:
            raise _refused_at(event, "yaml-alias-limit",
                              "an alias refers to the value that contains it")
        if event.anchor not in self.anchors:
            raise ComposerError(None, None, f"found undefined alias {event.anchor!r}",
                                event.start_mark)
        return self.anchors[event.anchor]

    def anchor(self, event: Any) -> None:
        """Refuse an anchor name used twice (checked when the anchored value starts)."""
        name = event.anchor
        if name is None:
            return
        if name in self.anchors or name in self.open:
            first = self.anchors[name][0].start_mark if name in self.anchors else None
            raise ComposerError(f"found duplicate anchor {name!r}; first occurrence", first,
                                "second occurrence", event.start_mark)
        if not isinstance(event, yaml.ScalarEvent):
            self.open.add(name)

    def tag(self, event: Any) -> None:
        """Report the event's tag: a standard one for later, any other at once."""
        tag = event.tag
        if tag is None:
            return
        name = tag.removeprefix(_STANDARD)
        advice = _TAG_ADVICE.get(name) if tag.startswith(_STANDARD) else None
        short = "!!" + name if tag.startswith(_STANDARD) else tag
        problem = _refused_at(event, "yaml-tag", f'tag "{short}" is not allowed'
                                                 + (f"; {advice}" if advice else ""))
        if advice is None:
            raise problem
        self.problems.append(problem)

    def scalar(self, event: Any) -> ScalarNode:
        """A scalar node tagged for `_Builder`: text, plain, or plain with a reported tag."""
        tag = _TEXT if event.style else _PLAIN if event.tag is None else _TAGGED
        self.anchor(event)
        return ScalarNode(tag, event.value, event.start_mark, event.end_mark,
                          style=event.style or None)


def _refused_at(event: Any, rule: str, message: str) -> _Refused:
    return _Refused(rule, message, event.start_mark.line, event.start_mark.column)


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
        if path not in self.values:  # an alias repeats its anchor's location
            self.values[path] = self.location(node)
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
        if node.style == '"' and _SURROGATE.search(text):  # "\ud800" in PyYAML's parser
            self.report(node, "yaml-syntax", "a quoted text has an escape sequence that is "
                                             "not a Unicode character")
        if node.style is not None:
            return text  # quoted or block text
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
        if node.tag == _PLAIN and text[:1] in _AMBIGUOUS_START:  # a tagged one was reported
            self.ambiguity(node, text)
        return text

    def ambiguity(self, node: ScalarNode, text: str) -> None:
        """Report a plain text some YAML reader would take for a boolean or a number."""
        if _YAML11_BOOL.fullmatch(text):
            self.report(node, "yaml-ambiguous",
                        f'"{text}" is a boolean in YAML 1.1 and text in YAML 1.2; '
                        f"write true or false, or quote it ('{text}') to mean text")
            return
        for pattern, reading in _YAML11_NUMBERS:
            if pattern.fullmatch(text):
                self.report(node, "yaml-ambiguous",
                            f'"{text}" may be read as {reading}; write the number in '
                            f"decimal, or quote it ('{text}') to mean text")
                return

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


def load(raw: bytes | str, path: str, fast: bool = True
         ) -> tuple[Document | None, list[Diagnostic]]:
    """Load one YAML file strictly. Returns the document (None when unusable) and diagnostics.

    `fast=False` parses with PyYAML's pure-Python parser even where libyaml is available (the
    two give the same values, locations and diagnostics on every shipped and test file, which
    tests compare; on unusual input, such as tabs as separators or `%YAML` directives, they
    may disagree)."""
    if isinstance(raw, bytes):
        text, problems = decode(raw, path)
        if text is None:
            return None, problems
    else:
        text = raw
    surrogate = _SURROGATE.search(text)
    if surrogate:  # text that is not Unicode (a str from an editor or a test, never a file)
        return None, [_not_unicode(text, surrogate.start(), path)]
    builder = _Builder(path)

    def refused(line: int, column: int, rule: str, message: str) -> tuple[None, list[Diagnostic]]:
        where = Location(path, line + 1, column + 1)
        return None, [Diagnostic(where, "error", rule, message)]

    try:
        composer = _Composer(_parser(text, fast))
        root = composer.single_node()
        if root is None:
            return refused(0, 0, "file-empty", "file is empty; a procedure starts with "
                                               "id, version, title, roles, states and transitions")
        data = builder.build(root, ())
        builder.diagnostics += [Diagnostic(Location(path, p.line + 1, p.column + 1), "error",
                                           p.rule, p.message) for p in composer.problems]
    except _Refused as exc:
        return refused(exc.line, exc.column, exc.rule, exc.message)
    except yaml.MarkedYAMLError as exc:
        return None, [_syntax_error(exc, path)]
    except yaml.reader.ReaderError as exc:  # control characters and the like
        return None, [_control_character(exc, text, path, fast and LIBYAML)]
    except ValueError:  # PyYAML's parser on an escape past U+10FFFF ("\U00110000")
        return refused(0, 0, "yaml-syntax", "a quoted text has an escape sequence that is not "
                                            "a Unicode character")
    if not isinstance(data, dict):
        kind = ("a list" if isinstance(data, list) else "nothing" if data is None
                else f'the value "{data}"')
        return refused(root.start_mark.line, root.start_mark.column, "not-a-mapping",
                       f"a procedure must be a mapping of keys (id, title, states, ...); "
                       f"found {kind}")
    document = Document(path, data, builder.values, builder.keys)
    return document, builder.diagnostics


def _syntax_error(exc: yaml.MarkedYAMLError, path: str) -> Diagnostic:
    """`yaml-syntax` (or `yaml-depth` for libyaml's own nesting limit), at the parser's mark."""
    mark = exc.problem_mark or exc.context_mark
    where = Location(path, mark.line + 1 if mark else 1, mark.column + 1 if mark else 1)
    message = (exc.problem or exc.context or "invalid YAML").strip()
    if exc.context and "duplicate anchor" in exc.context:
        message = exc.context.split(";")[0] + "; each anchor name must be unique"
    elif exc.context and exc.problem:
        message = f"{exc.problem} ({exc.context})"
    if "maximum nesting depth" in message:  # libyaml's own limit, met before ours
        return Diagnostic(where, "error", "yaml-depth", f"nesting deeper than {MAX_DEPTH} levels")
    return Diagnostic(where, "error", "yaml-syntax", _lower_first(message))


_SURROGATE = re.compile("[\ud800-\udfff]")


def _not_unicode(text: str, position: int, path: str) -> Diagnostic:
    """`yaml-syntax` for a lone surrogate, located in `text`."""
    line = text.count("\n", 0, position)
    column = position - (text.rfind("\n", 0, position) + 1)
    return Diagnostic(Location(path, line + 1, column + 1), "error", "yaml-syntax",
                      f"character U+{ord(text[position]):04X} is not Unicode text "
                      "(half of a surrogate pair)")


def _control_character(exc: yaml.reader.ReaderError, text: str, path: str,
                       counts_bytes: bool) -> Diagnostic:
    """`yaml-syntax` for a character YAML refuses, located in `text`."""
    position = exc.position
    if counts_bytes:  # libyaml counts bytes of the UTF-8 text
        position = len(text.encode("utf-8")[:position].decode("utf-8", "ignore"))
    line = text.count("\n", 0, position)
    column = position - (text.rfind("\n", 0, position) + 1)
    character = exc.character if isinstance(exc.character, str) else chr(exc.character)
    return Diagnostic(Location(path, line + 1, column + 1), "error", "yaml-syntax",
                      f"control character {character!r} (U+{ord(character):04X}) is not "
                      "allowed in YAML text")


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]

