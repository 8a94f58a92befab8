"""Read one Ray release's Serve config rules out of its own ``ray.serve.schema`` (pydantic v1 or v2).

Run as a script with the Python (and ``PYTHONPATH``) where that release is importable; prints the
rules as JSON on stdout. It imports nothing of ci_serve: ``scripts/gen-serve-rules`` runs it against
each release's package (:mod:`ci_serve.config.rulegen`). What it reads, per model reachable from
``ServeDeploySchema`` (a "section", named by its path: ``applications[].deployments[]``):

- every field: its type (``int``, ``float``, ``str``, ``bool``, ``dict``, ``list[...]``, ``enum(...)``,
  ``model``, unions with ``|``), whether it is required, its default, its numeric bounds
  (``gt``/``ge``/``lt``/``le``) and whether Ray marks it deprecated (``[DEPRECATED]`` in its
  description, or pydantic's ``deprecated``), with the description's first sentence when it is;
- the model's policy on unknown keys (``extra``: ``ignore``, ``forbid`` or ``allow``);
- the names of its validators, per field and on the whole model (recorded, not re-implemented: the
  strict models of :mod:`ci_serve.config.schema` and :mod:`ci_serve.config.validate` carry the checks;
  a new name in a release's file is a check to look at).

``DeploymentSchema.autoscaling_config`` is a plain dict in older releases, checked by
``ray.serve.config.AutoscalingConfig`` when the deployment is built: that model is read for it.
"""

from __future__ import annotations

import enum
import json
import math
import re
import sys
import typing
from typing import Any

#: renames whose deprecation text does not name the new field: (old, new), used only when the release
#: deprecates ``old`` and has ``new`` in the same model
RENAMES = {"max_concurrent_queries": "max_ongoing_requests",
           "target_num_ongoing_requests_per_replica": "target_ongoing_requests"}
#: dict-typed fields Ray validates with another model (section path -> module:class)
VALIDATED_BY = {"applications[].deployments[].autoscaling_config": "ray.serve.config:AutoscalingConfig"}


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and not issubclass(tp, enum.Enum) and \
        (isinstance(getattr(tp, "model_fields", None), dict) or isinstance(getattr(tp, "__fields__", None), dict))


def _fields(model: type) -> dict[str, Any]:
    if hasattr(model, "model_fields") and isinstance(getattr(model, "model_fields", None), dict) \
            and hasattr(model, "model_validate"):
        return dict(model.model_fields)
    return dict(model.__fields__)  # type: ignore[attr-defined]


def _v2(model: type) -> bool:
    return hasattr(model, "model_validate") and isinstance(getattr(model, "model_fields", None), dict)


def _extra(model: type) -> str:
    if _v2(model):
        value = model.model_config.get("extra")  # type: ignore[attr-defined]
    else:
        value = getattr(model.__config__, "extra", None)  # type: ignore[attr-defined]
    value = getattr(value, "value", value)
    return str(value or "ignore")


def _bounds_of(obj: Any, out: dict[str, Any]) -> None:
    for key in ("gt", "ge", "lt", "le"):
        value = getattr(obj, key, None)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out.setdefault(key, value)


def type_name(tp: Any, bounds: dict[str, Any], models: list[type]) -> str:
    """A short, stable name of an annotation; numeric bounds of constrained types go to ``bounds``,
    nested models to ``models``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is None or tp is type(None):
        return "null"
    if tp is typing.Any:
        return "any"
    if origin is typing.Annotated:
        for meta in args[1:]:
            _bounds_of(meta, bounds)
            for sub in getattr(meta, "metadata", []) or []:
                _bounds_of(sub, bounds)
        return type_name(args[0], bounds, models)
    if origin is typing.Union or type(tp).__name__ == "UnionType":
        names = sorted({type_name(a, bounds, models) for a in args})
        return "|".join(names)
    if origin is typing.Literal:
        return "enum(" + ",".join(str(a) for a in args) + ")"
    if origin in (list, tuple, set, frozenset) or tp in (list, tuple, set):
        inner = [type_name(a, bounds, models) for a in args if a is not Ellipsis]
        return f"list[{inner[0]}]" if len(inner) == 1 else "list"
    if origin is dict or tp is dict:
        return "dict"
    if isinstance(tp, type):
        if issubclass(tp, enum.Enum):
            return "enum(" + ",".join(str(m.value) for m in tp) + ")"
        if issubclass(tp, bool):
            return "bool"
        if issubclass(tp, int):
            _bounds_of(tp, bounds)  # pydantic v1 conint / PositiveInt
            return "int"
        if issubclass(tp, float):
            _bounds_of(tp, bounds)
            return "float"
        if issubclass(tp, str):
            return "str"
        if issubclass(tp, (dict,)):
            return "dict"
        if _is_model(tp):
            models.append(tp)
            return "model"
    if callable(tp) and getattr(tp, "__name__", "") in ("Callable",) or origin is not None and \
            getattr(origin, "__name__", "") == "Callable":
        return "callable"
    return getattr(tp, "__name__", None) or str(tp)


def _jsonable(value: Any) -> Any:
    if type(value).__name__ == "DEFAULT":  # Ray's "not set here" sentinel: the code's value, else Serve's default
        return "<unset>"
    if isinstance(value, enum.Enum):
        value = value.value
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if hasattr(value, "model_dump"):
        return _jsonable(value.model_dump())
    if hasattr(value, "dict") and hasattr(value, "__fields__"):
        return _jsonable(value.dict())
    return f"<{type(value).__name__}>"


def _field(name: str, info: Any, models: list[type]) -> dict[str, Any]:
    bounds: dict[str, Any] = {}
    if hasattr(info, "outer_type_"):  # pydantic v1 ModelField
        annotation = info.outer_type_
        if not info.required and info.allow_none:
            annotation = typing.Optional[annotation]  # noqa: UP045 - any annotation object
        required = bool(info.required)
        default = info.default if info.default_factory is None else _call(info.default_factory)
        _bounds_of(info.field_info, bounds)
        description = info.field_info.description or ""
        deprecated = None
    else:
        annotation = info.annotation
        required = info.is_required()
        default = info.default if info.default_factory is None else _call(info.default_factory)
        for meta in info.metadata:
            _bounds_of(meta, bounds)
        description = info.description or ""
        deprecated = getattr(info, "deprecated", None)
    kind = type_name(annotation, bounds, models)
    out: dict[str, Any] = {"type": kind}
    if required:
        out["required"] = True
    else:
        out["default"] = _jsonable(default)
    out.update(bounds)
    text = " ".join(description.split())
    if deprecated or "[DEPRECATED]" in text.upper() or text.upper().startswith("DEPRECATED"):
        out["deprecated"] = (str(deprecated) if isinstance(deprecated, str) else text)[:200] or True
    return out


def _validators(model: type) -> tuple[dict[str, list[str]], list[str]]:
    """Names of the model's own value checks: per field, and on the whole model (root/model validators).
    They are recorded, not re-implemented: a diff between releases shows a check appearing."""
    per_field: dict[str, list[str]] = {}
    whole: list[str] = []
    decorators = getattr(model, "__pydantic_decorators__", None)
    if _v2(model) and decorators is not None:
        for name, dec in decorators.field_validators.items():
            for key in dec.info.fields:
                per_field.setdefault(key, []).append(name)
        whole = sorted(decorators.model_validators)
    else:
        for key, checks in (getattr(model, "__validators__", None) or {}).items():
            per_field[key] = [getattr(c.func, "__name__", "?") for c in checks]
        for item in [*getattr(model, "__pre_root_validators__", []), *getattr(model, "__post_root_validators__", [])]:
            func = item[-1] if isinstance(item, tuple) else item
            whole.append(getattr(func, "__name__", "?"))
        whole = sorted(set(whole))
    return {k: sorted(set(v)) for k, v in per_field.items()}, whole


def _call(factory: Any) -> Any:
    try:
        return factory()
    except Exception:  # noqa: BLE001 - a factory that needs arguments: its name is enough
        return f"<{getattr(factory, '__name__', 'factory')}>"


def _load(target: str) -> type:
    import importlib

    module, name = target.split(":")
    found: type = getattr(importlib.import_module(module), name)
    return found


def extract() -> dict[str, Any]:
    import ray
    from ray.serve.schema import ServeDeploySchema

    sections: dict[str, Any] = {}
    queue: list[tuple[str, type]] = [("", ServeDeploySchema)]
    while queue:
        path, model = queue.pop(0)
        if path in sections:
            continue
        fields: dict[str, Any] = {}
        for name, info in sorted(_fields(model).items()):
            alias = getattr(info, "alias", None)
            key = alias if isinstance(alias, str) and alias else name
            nested: list[type] = []
            fields[key] = _field(key, info, nested)
            child = f"{path}.{key}" if path else key
            if "list[model" in fields[key]["type"]:
                child += "[]"
            if nested:
                queue.append((child, nested[0]))
            elif child in VALIDATED_BY:
                queue.append((child, _load(VALIDATED_BY[child])))
        for key, spec in fields.items():
            if "deprecated" in spec:
                named = re.search(r"\buse `?([a-z_]+)`?", str(spec["deprecated"]))
                use = named.group(1) if named and named.group(1) in fields else RENAMES.get(key)
                if use and use in fields and use != key:
                    spec["use"] = use
        field_checks, model_checks = _validators(model)
        for key, names in field_checks.items():
            if key in fields:
                fields[key]["validators"] = names
        section = {"model": model.__name__, "extra": _extra(model), "fields": fields}
        if model_checks:
            section["validators"] = model_checks
        sections[path] = section
    return {"ray": ray.__version__, "pydantic": "v2" if _v2(ServeDeploySchema) else "v1", "sections": sections}


def dumps(rules: dict[str, Any]) -> str:
    """Diff-friendly JSON: one line per field."""
    lines = ["{", f'  "ray": {json.dumps(rules["ray"])},', f'  "pydantic": {json.dumps(rules["pydantic"])},',
             '  "sections": {']
    sections = sorted(rules["sections"].items())
    for i, (path, section) in enumerate(sections):
        lines.append(f"    {json.dumps(path)}: {{")
        lines.append(f'      "model": {json.dumps(section["model"])}, "extra": {json.dumps(section["extra"])},')
        if section.get("validators"):
            lines.append(f'      "validators": {json.dumps(section["validators"])},')
        lines.append('      "fields": {')
        items = sorted(section["fields"].items())
        for j, (name, spec) in enumerate(items):
            comma = "," if j < len(items) - 1 else ""
            lines.append(f"        {json.dumps(name)}: {json.dumps(spec, sort_keys=True)}{comma}")
        lines.append("      }")
        lines.append("    }" + ("," if i < len(sections) - 1 else ""))
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(dumps(extract()))
