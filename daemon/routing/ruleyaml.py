"""The YAML of the rule files, read as plain data with the line of every mapping and key, so
every problem can be reported as `file:line: message`. Pure but for reading the file.

Reading is bounded by the file's size: YAML aliases (`*name`) are refused, so a few lines of
nested aliases (a "billion laughs") cannot stand for a tree that checking would walk for
hours, and nesting deeper than MAX_DEPTH is refused before Python's recursion gives out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from daemon.errors import Problem


class Node(dict[str, Any]):
    """A YAML mapping that remembers the line it started on and the line of each key."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.line = 0
        self.key_lines: dict[str, int] = {}


MAX_DEPTH = 50  # levels of nested lists and mappings; real rule files use under ten


class Refused(yaml.MarkedYAMLError):
    """Valid YAML that a rule file may not use (an alias, too deep a nesting)."""


class _Bounded(yaml.SafeLoader):
    """yaml.safe_load without aliases and with bounded nesting."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            # types-pyyaml leaves Parser.peek_event unannotated; it returns the next Event.
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise Refused(None, None, f"an alias (*{event.anchor}) is not allowed in rule files: "
                          "write the value out", event.start_mark)
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                event = self.peek_event()  # type: ignore[no-untyped-call]
                raise Refused(None, None, f"nested deeper than {MAX_DEPTH} levels",
                              event.start_mark)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def safe_load(text: str) -> Any:
    """yaml.safe_load of a rule-related file (e.g. rule expectations), refusing aliases and
    deep nesting with a yaml.YAMLError."""
    loader = _Bounded(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


class _Loader(_Bounded):
    """Plain data with line numbers on every mapping. A key written twice in one mapping
    (YAML keeps the last silently) is remembered."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[tuple[str, int]] = []


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> Node:
    mapping = Node({str(k): v for k, v in loader.construct_mapping(node, deep=True).items()})
    mapping.line = node.start_mark.line + 1
    for key_node, _ in node.value:
        key = str(loader.construct_object(key_node, deep=True))
        if key in mapping.key_lines:
            loader.duplicates.append((key, key_node.start_mark.line + 1))
        mapping.key_lines[key] = key_node.start_mark.line + 1
    return mapping


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read(path: Path, problems: list[Problem]) -> Any:
    """The data of the YAML file at `path`, or None with the reason added to `problems`.
    A key written twice is a problem too (the data is still returned)."""
    try:
        loader = _Loader(path.read_text(encoding="utf-8"))
        try:
            data = loader.get_single_data()
        finally:
            loader.dispose()
    except Refused as err:
        mark = err.problem_mark
        problems.append(Problem(str(path), mark.line + 1 if mark else None, str(err.problem)))
        return None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        problems.append(Problem(str(path), mark.line + 1 if mark else None,
                                f"not valid YAML: {getattr(err, 'problem', err)}"))
        return None
    except OSError as err:
        problems.append(Problem(str(path), None, f"cannot read: {err.strerror}"))
        return None
    except UnicodeDecodeError:
        problems.append(Problem(str(path), None, "not UTF-8 text"))
        return None
    for key, line in loader.duplicates:
        problems.append(Problem(str(path), line, f"key {key!r} written twice"))
    return data


def line_of(node: Any, key: str | None = None) -> int | None:
    """The line of `node`'s `key` when it is known, else of the node; None for a value that
    is not a mapping (YAML scalars and lists carry no line)."""
    if not isinstance(node, Node):
        return None
    return node.key_lines.get(key, node.line) if key else node.line


def strings(value: Any) -> tuple[str, ...] | None:
    """A string or a list of strings as a tuple; None for anything else."""
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    return None
