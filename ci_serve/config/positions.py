"""YAML loading that remembers the line and column of every node, for `file:line:column` problems.

One parse (libyaml when available): the composed node tree gives the marks, the same tree is then
constructed into plain data. Aliases are walked once (an alias bomb costs nothing extra), and
duplicate keys, which YAML loaders silently resolve to the last one, are recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml

from ci_serve.config.problems import PathT

try:
    _Loader: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - PyYAML without libyaml
    _Loader = yaml.SafeLoader


@dataclass
class Positions:
    """1-based (line, column) of each value and each mapping key, by field path."""

    values: dict[PathT, tuple[int, int]] = field(default_factory=dict)
    keys: dict[PathT, tuple[int, int]] = field(default_factory=dict)
    #: (path of the repeated key, line, column) for every key that appears twice in one mapping
    duplicates: list[tuple[PathT, int, int]] = field(default_factory=list)
    #: path of a repeated key -> (line, column) of its first appearance
    first_keys: dict[PathT, tuple[int, int]] = field(default_factory=dict)

    def locate(self, path: PathT, *, key: bool = False) -> tuple[int, int] | None:
        """The position of ``path`` (its key when ``key``), else of its nearest existing parent."""
        path = tuple(path)
        if key and path in self.keys:
            return self.keys[path]
        while True:
            if path in self.values:
                return self.values[path]
            if not path:
                return None
            path = path[:-1]

    def mapped(self, where: Callable[[int, int], tuple[int, int]]) -> Positions:
        """The same positions moved through ``where`` (e.g. from a string embedded in another file)."""
        return Positions(values={p: where(*lc) for p, lc in self.values.items()},
                         keys={p: where(*lc) for p, lc in self.keys.items()},
                         duplicates=[(p, *where(line, col)) for p, line, col in self.duplicates],
                         first_keys={p: where(*lc) for p, lc in self.first_keys.items()})


def _mark(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _walk(root: yaml.Node, positions: Positions) -> None:
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, PathT]] = [(root, ())]
    while stack:  # iterative: deeply nested input must not hit the recursion limit here
        node, path = stack.pop()
        positions.values[path] = _mark(node)  # a repeated key: the last one wins, as in the data
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            names: set[str] = set()
            children = []
            for key_node, value_node in node.value:
                name = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(_mark(key_node))
                child = (*path, name)
                if name in names:
                    positions.duplicates.append((child, *_mark(key_node)))
                    positions.first_keys.setdefault(child, positions.keys[child])
                names.add(name)
                positions.keys[child] = _mark(key_node)
                children.append((value_node, child))
            stack.extend(reversed(children))  # popped in document order
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(reversed([(item, (*path, index)) for index, item in enumerate(node.value)]))


@dataclass
class Document:
    """One YAML document of a stream: its data, positions and composed root node."""

    data: Any
    positions: Positions
    node: yaml.Node | None


def load_yaml_documents(text: str) -> list[Document]:
    """Parse every document of a YAML stream (a Kubernetes manifest may hold several, split by ``---``)."""
    loader = _Loader(text)
    docs: list[Document] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            positions = Positions()
            if node is None:
                continue
            _walk(node, positions)
            docs.append(Document(loader.construct_document(node), positions, node))
    finally:
        loader.dispose()
    return docs
