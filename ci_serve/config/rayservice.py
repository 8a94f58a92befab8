"""KubeRay ``RayService`` manifests: the Serve config is the YAML string in ``spec.serveConfigV2``.

Reading: the manifest (one or several ``---`` documents) is parsed once; the ``RayService`` document
is found by ``kind`` and ``apiVersion: ray.io/v1`` (or ``v1alpha1``), and its ``serveConfigV2``
string is parsed as the Serve config. Every position inside that string is moved to the manifest's
own line and column (exact for the usual ``serveConfigV2: |`` literal block, whose lines are the
manifest's lines; the value's own position for a quoted or folded string), so a problem, and the
Action's ``::error`` annotation, lands on the manifest's line in the pull request.

Writing (:func:`replace_serve_config`): only the block's content lines change; the rest of the file,
comments, key order, other documents and the ``serveConfigV2: |`` line itself, stays byte for byte.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ci_serve.config.positions import Document, Positions
from ci_serve.config.problems import Problem
from ci_serve.errors import ConfigError

API_VERSIONS = ("ray.io/v1", "ray.io/v1alpha1")
_TYPES = {"NoneType": "nothing", "dict": "a mapping", "list": "a list", "int": "a number", "float": "a number",
          "bool": "a boolean"}
SERVE_KEY = "serveConfigV2"


@dataclass(frozen=True)
class ServeConfigBlock:
    """Where ``spec.serveConfigV2`` is in the manifest text."""

    #: the document's index in the stream, and the RayService's metadata.name
    document: int
    name: str
    api_version: str
    #: the YAML string (the Serve config text)
    text: str
    #: 1-based line and column of the value (the ``|`` indicator of a block)
    line: int
    column: int
    #: '|' for a literal block (positions map line for line), else the scalar's style
    style: str | None
    #: 1-based line of the ``|`` indicator (content line N is manifest line first_line + N), indentation
    first_line: int
    indent: int
    #: character range of the scalar value in the manifest text
    start: int
    end: int
    #: ``spec.serveConfigType: SINGLE_APP`` (KubeRay 0.6's, dropped in 1.0) is set
    single_app_type: bool = False

    def position(self, line: int, column: int) -> tuple[int, int]:
        """A 1-based (line, column) inside the Serve config text, as a manifest position."""
        if self.style != "|":
            return self.line, self.column
        return self.first_line + line, self.indent + column


def is_rayservice(doc: Any) -> bool:
    return isinstance(doc, dict) and doc.get("kind") == "RayService" and \
        str(doc.get("apiVersion", "")).startswith("ray.io/")


_KIND_LINE = re.compile(r"^kind:[ \t]*[\"']?RayService[\"']?[ \t]*(#.*)?\r?$", re.MULTILINE)


def is_rayservice_file(path: str | Path) -> bool:
    """Whether the file at ``path`` (if any) holds a top-level ``kind: RayService`` document: the action
    then writes a build into its serveConfigV2 (``--rayservice``) instead of replacing the manifest."""
    try:
        return bool(_KIND_LINE.search(Path(path).read_bytes()[:10 * 1024 * 1024].decode("utf-8", "replace")))
    except OSError:
        return False


def looks_like_manifest(docs: list[Document]) -> bool:
    """Any document with ``apiVersion`` and ``kind``: a Kubernetes manifest, not a Serve config."""
    return any(isinstance(d.data, dict) and "apiVersion" in d.data and "kind" in d.data for d in docs)


def find_serve_config(docs: list[Document], text: str, file: str) -> ServeConfigBlock:
    """The ``serveConfigV2`` of the manifest's RayService; :class:`ConfigError` (located) otherwise."""
    services = [(i, d) for i, d in enumerate(docs) if is_rayservice(d.data)]
    if not services:
        kinds = ", ".join(sorted({f"{d.data.get('kind')} ({d.data.get('apiVersion')})" for d in docs
                                  if isinstance(d.data, dict)}))
        raise _located(file, docs[0].positions.locate(("kind",)) if docs else None, "kind",
                       f"a Kubernetes manifest without a RayService (found: {kinds or 'nothing'})",
                       "give the RayService manifest (kind: RayService, apiVersion: ray.io/v1), or the Serve "
                       "config file itself")
    if len(services) > 1:
        names = ", ".join(_name(d.data) or "(unnamed)" for _, d in services)
        raise _located(file, services[1][1].positions.locate(("kind",)), "kind",
                       f"{len(services)} RayService documents in one file ({names}); ci-serve reads one "
                       "Serve config per run",
                       "give each RayService its own file, and run ci-serve once per file")
    index, doc = services[0]
    data = doc.data
    api = str(data.get("apiVersion"))
    name = _name(data)
    if api not in API_VERSIONS:
        raise _located(file, doc.positions.locate(("apiVersion",)), "apiVersion",
                       f"RayService apiVersion {api!r} is not one ci-serve reads",
                       f"use one of {', '.join(API_VERSIONS)}")
    spec = data.get("spec")
    if not isinstance(spec, dict) or SERVE_KEY not in spec:
        old = next((k for k in ("serveConfig", "serveDeploymentGraphConfig") if isinstance(spec, dict) and k in spec),
                   None)
        if old:
            raise _located(
                file, doc.positions.locate(("spec", old), key=True), f"spec.{old}",
                f"spec.{old} is KubeRay's old structured single-application format (v1alpha1, "
                "importPath/serveConfigs in camelCase), which KubeRay 1.0 replaced by serveConfigV2",
                "move it to `serveConfigV2: |` holding a Ray Serve multi-application config "
                "(applications: [{name, import_path, route_prefix, deployments}]) in snake_case")
        raise _located(file, doc.positions.locate(("spec",)), "spec",
                       f"RayService {name or '(unnamed)'} has no spec.serveConfigV2",
                       "add `serveConfigV2: |` with the Serve config (the output of `ci-serve build`)")
    value = spec[SERVE_KEY]
    node = _value_node(doc.node, ("spec", SERVE_KEY))
    line, column = doc.positions.values.get(("spec", SERVE_KEY), (1, 1))
    if not isinstance(value, str) or node is None:
        raise _located(file, (line, column), f"spec.{SERVE_KEY}",
                       f"spec.{SERVE_KEY} must be a YAML string (a `|` block), found "
                       f"{_TYPES.get(type(value).__name__, type(value).__name__)}",
                       f"write `{SERVE_KEY}: |` and the Serve config indented under it")
    style = getattr(node, "style", None)
    first_line, indent = _block_layout(text, node.start_mark.line)
    explicit = re.match(r"[|>](?:([1-9])[+-]?|[+-]([1-9]))", text[node.start_mark.index:])
    if explicit:  # `|2`: the content is indented 2 more than the key, whatever its first line looks like
        key_column = doc.positions.keys.get(("spec", SERVE_KEY), (1, 1))[1] - 1
        indent = key_column + int(explicit.group(1) or explicit.group(2))
    return ServeConfigBlock(index, name, api, value, line, column, style, first_line, indent,
                            node.start_mark.index, node.end_mark.index,
                            str(spec.get("serveConfigType", "")).upper() == "SINGLE_APP")


def _name(data: dict[str, Any]) -> str:
    metadata = data.get("metadata")
    return str(metadata.get("name", "")) if isinstance(metadata, dict) else ""


def _located(file: str, pos: tuple[int, int] | None, path: str, message: str, hint: str) -> ConfigError:
    line, column = pos if pos else (None, None)
    problem = Problem(file, line, column, path, message, hint)
    return ConfigError(f"{problem.where}: {message}", hint, problems=[problem])


def _value_node(root: yaml.Node | None, path: tuple[str, ...]) -> yaml.Node | None:
    node = root
    for part in path:
        if not isinstance(node, yaml.MappingNode):
            return None
        node = next((v for k, v in reversed(node.value) if isinstance(k, yaml.ScalarNode) and k.value == part), None)
    return node


def _block_layout(text: str, indicator_line: int) -> tuple[int, int]:
    """(1-based line of the indicator, indentation) of a block scalar whose indicator is on the 0-based
    ``indicator_line``: the indentation is that of the first non-blank content line."""
    lines = text.splitlines()
    for line in lines[indicator_line + 1:]:
        if line.strip():
            return indicator_line + 1, len(line) - len(line.lstrip(" "))
    return indicator_line + 1, 0


def map_positions(block: ServeConfigBlock, positions: Positions) -> Positions:
    return positions.mapped(block.position)


def replace_serve_config(text: str, block: ServeConfigBlock, config_text: str) -> str:
    """``text`` with the serveConfigV2 value replaced by ``config_text``; every other byte kept."""
    lines = config_text.rstrip("\n").split("\n")
    eol = "\r\n" if "\r\n" in text else "\n"
    if block.style == "|":
        indent = " " * (block.indent or 4)
        start = text.index("\n", block.start) + 1  # after the `serveConfigV2: |` line, kept as it is
        end = _block_end(text, start, len(indent))
        body = "".join(f"{indent}{ln}{eol}" if ln.strip() else eol for ln in lines)
        return text[:start] + body + text[end:]
    # a quoted or folded string: written as a literal block, indented under the key
    key_indent = " " * (block.column - 1 - len(SERVE_KEY) - 2 if block.column > len(SERVE_KEY) + 2 else 0)
    indent = key_indent + "  "
    body = "|" + eol + "".join(f"{indent}{ln}{eol}" if ln.strip() else eol for ln in lines)
    end = block.end
    if text[end:end + 1] == "\n":
        end += 1
    return text[:block.start] + body + text[end:]


def _block_end(text: str, start: int, indent: int) -> int:
    """End of a block scalar's content starting at ``start``: before the first line indented less
    than ``indent`` that is not blank; trailing blank lines are left outside (they stay as they are)."""
    pos = start
    last_content_end = start
    while pos < len(text):
        nl = text.find("\n", pos)
        line_end = len(text) if nl == -1 else nl + 1
        line = text[pos:line_end].rstrip("\r\n")
        if line.strip():
            if len(line) - len(line.lstrip(" ")) < indent:
                break
            last_content_end = line_end
        pos = line_end
    return last_content_end
