"""The one import-path rule: Ray's own, used by validate, smoke, build and the action alike.

Ray resolves ``import_path`` with ``ray._common.utils.import_attr`` (Ray 2.60; ``ray._private.utils``
before): with a colon, ``module:attr`` (at most one colon); without one, the text is split at its
last dot, ``module.attr``. The module part goes to ``importlib.import_module`` unchanged, so a module
name is whatever the importer finds on ``sys.path``: each dotted component is looked up as a file or
folder name, which is why ``whisperx-deployment:entrypoint`` (a file ``whisperx-deployment.py``) and
``ray-operator.config.samples.vllm.serve_tpu:model`` import fine although they are not Python
identifiers. The attribute is read with one ``getattr``.

Ray's schema (``ServeApplicationSchema.import_path_format_valid``) only checks the colon and dot
placement. This rule accepts everything that check accepts and the importer can resolve, and
refuses, with a fix, the shapes that can never import: an empty component, a path separator, a
``.py`` file name, surrounding whitespace, or a dotted attribute after the colon.
"""

from __future__ import annotations

from dataclasses import dataclass

from ci_serve.errors import InputError

#: characters no module-name component can hold: '.' splits components, ':' the attribute, and
#: the importer looks each component up as one file name (no separators, no NUL)
_NEVER_IN_MODULE = ("/", "\\", "\0")
CONFIG_SUFFIXES = (".yaml", ".yml", ".json")


class ImportPathError(InputError):
    """An import path that Ray cannot import, whatever the code."""


@dataclass(frozen=True)
class ImportPath:
    """``module:attr`` or ``module.attr``, split the way Ray splits it."""

    text: str
    module: str
    attr: str

    @property
    def top_module(self) -> str:
        """The first component: what must be on the import path (``sys.path``)."""
        return self.module.split(".")[0]

    def __str__(self) -> str:
        return self.text


def parse_import_path(text: object) -> ImportPath:
    """Split ``text`` as Ray does; raise :class:`ImportPathError` (with a fix) when it cannot import."""
    if not isinstance(text, str) or not text:
        raise ImportPathError(f"import path {text!r} is not a string like 'module:app'",
                              "write the module, then ':' and the application's variable, e.g. `my_app.main:app`")
    if text != text.strip() or any(c.isspace() for c in text):
        raise ImportPathError(f"import path {text!r} contains whitespace",
                              f"write {''.join(text.split())!r}: Ray imports the text as written")
    if text.count(":") > 1:
        raise ImportPathError(f"import path {text!r} has more than one ':'",
                              "write `module.sub:attribute` (one ':' between the module and the attribute)")
    if ":" in text:
        module, attr = text.split(":")
        if not module or not attr:
            raise ImportPathError(f"import path {text!r} starts or ends with ':'",
                                  "write `module:attribute`, e.g. `fruit:deployment_graph`")
        if "." in attr:
            raise ImportPathError(
                f"import path {text!r}: Ray reads {attr!r} as one attribute name, so it cannot be found",
                f"write `{module}.{attr.rsplit('.', 1)[0]}:{attr.rsplit('.', 1)[1]}` if "
                f"{attr.rsplit('.', 1)[0]!r} is a module")
    else:
        if "." not in text:
            raise ImportPathError(f"import path {text!r} names no attribute",
                                  f"write `{text}:app` (the module, ':', then the application's variable)")
        module, _, attr = text.rpartition(".")
        if attr == "py":
            raise ImportPathError(f"import path {text!r} names a file, not an application",
                                  f"write `{module}:app` (the module, ':', then the application's variable)")
        if not module or not attr:
            raise ImportPathError(f"import path {text!r} starts or ends with '.'",
                                  "write `module:attribute`, e.g. `fruit:deployment_graph`")
    _check_module(text, module)
    return ImportPath(text, module, attr)


def _check_module(text: str, module: str) -> None:
    parts = module.split(".")
    if any(not p for p in parts):
        raise ImportPathError(f"import path {text!r} has an empty module name between dots",
                              "remove the extra '.' (relative imports are not supported by Ray)")
    if any(c in module for c in _NEVER_IN_MODULE):
        dotted = module.replace("/", ".").replace("\\", ".").removesuffix(".py")
        raise ImportPathError(f"import path {text!r} is a file path, not a module name",
                              f"write the module with dots, relative to the app dir: `{dotted}:...`, or put "
                              "the folder in runtime_env.working_dir / --app-dir")
    if parts[-1] == "py" and len(parts) > 1:
        raise ImportPathError(f"import path {text!r} names a file ({'.'.join(parts[-2:])}), not a module",
                              f"drop '.py': `{'.'.join(parts[:-1])}:...`")


def import_path_problem(text: object) -> tuple[str, str | None] | None:
    """``(message, hint)`` when ``text`` breaks the rule, else ``None``."""
    try:
        parse_import_path(text)
    except ImportPathError as err:
        return err.message, err.hint
    return None


def is_import_path(text: object) -> bool:
    return import_path_problem(text) is None


def looks_like_config_file(text: str, *, exists: bool = False) -> bool:
    """A command-line TARGET that names a config file rather than an import path.

    A config file's name is itself a valid Ray import path (``serve_config.yaml`` reads as module
    ``serve_config``, attribute ``yaml``), so a YAML/JSON suffix or an existing file wins; otherwise
    a ':' means an import path (``src/app:app`` is then refused with the fix), and a '/' a file.
    """
    if exists or text.endswith(CONFIG_SUFFIXES):
        return not (":" in text and is_import_path(text) and not text.endswith(CONFIG_SUFFIXES))
    return ":" not in text and "/" in text
