"""The YAML of the rule files, read as plain data with the line of every mapping and key, so
every problem can be reported as `file:line: message`. Pure but for reading the file.
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


class _Loader(yaml.SafeLoader):
    """yaml.safe_load with line numbers on every mapping; nothing but plain data is built.
    A key written twice in one mapping (YAML keeps the last silently) is remembered."""

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
