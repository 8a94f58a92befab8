"""Ray's own verdict on Serve configs, run by the Python of the Ray release that judges them.

Input (stdin): a JSON list of ``[name, serve config text]``. Output (stdout): a JSON object
``{"ray": version, "verdicts": {name: {"ray": ..., "why": ..., "unknown": [...]}}}`` where ``ray`` is

- ``"valid"``: the release's ``ServeDeploySchema`` takes it and the Serve controller's ``DeploymentConfig``
  model takes each deployment's options;
- ``"invalid"``: ``ServeDeploySchema`` refuses it (``why``: the first error, ``where``: its location);
- ``"cluster-rejects"``: the schema takes it, ``DeploymentConfig`` does not (the deploy starts, then fails);

and ``unknown`` lists the keys this release's models do not declare (Ray ignores them: ``Extra.ignore``),
as dotted paths. Only Ray and PyYAML are imported, so the script runs in any release's environment
(pydantic 1 or 2 API). It is a test helper: tests/corpus_verdicts.py starts it in each cached release.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import yaml


def _fields(model: Any) -> set[str]:
    fields = getattr(model, "model_fields", None) or getattr(model, "__fields__", {})
    names = set(fields)
    for f in fields.values():  # a field's alias is what a file writes
        alias = getattr(f, "alias", None)
        if alias:
            names.add(alias)
    return names


def _models() -> dict[str, Any]:
    from ray.serve import schema

    found = {
        "": schema.ServeDeploySchema,
        "http_options": schema.HTTPOptionsSchema,
        "applications[]": schema.ServeApplicationSchema,
        "applications[].deployments[]": schema.DeploymentSchema,
        "applications[].deployments[].ray_actor_options": schema.RayActorOptionsSchema,
    }
    grpc = getattr(schema, "gRPCOptionsSchema", None)
    if grpc is not None:
        found["grpc_options"] = grpc
    try:
        from ray.serve.config import AutoscalingConfig

        found["applications[].deployments[].autoscaling_config"] = AutoscalingConfig
    except ImportError:
        pass
    return found


def _unknown(config: Any, models: dict[str, Any]) -> list[str]:
    out: list[str] = []

    def walk(value: Any, section: str, where: str) -> None:
        model = models.get(section)
        if model is None or not isinstance(value, dict):
            return
        known = _fields(model)
        for key, sub in value.items():
            path = f"{where}.{key}" if where else str(key)
            if key not in known:
                out.append(path)
                continue
            child = f"{section}.{key}" if section else str(key)
            if isinstance(sub, list) and f"{child}[]" in models:
                for i, item in enumerate(sub):
                    walk(item, f"{child}[]", f"{path}[{i}]")
            else:
                walk(sub, child, path)

    walk(config, "", "")
    return out


def _first_error(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        err = errors()[0]
        return f"{'.'.join(map(str, err['loc']))}: {err['msg']}"
    return str(exc).splitlines()[0]


def judge(text: str, models: dict[str, Any]) -> dict[str, Any]:
    from ray.serve._private.config import DeploymentConfig
    from ray.serve.schema import ServeDeploySchema

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        return {"ray": "invalid", "why": f"YAML: {str(exc).splitlines()[0]}", "unknown": []}
    unknown = _unknown(data, models)
    parse = getattr(ServeDeploySchema, "model_validate", None) or ServeDeploySchema.parse_obj
    try:
        schema = parse(data)
    except ImportError as exc:  # the schema imports an autoscaling policy_function while validating
        return {"ray": "valid", "why": f"the schema imports the policy, not importable here ({exc})",
                "unknown": unknown}
    except Exception as exc:  # noqa: BLE001 - pydantic 1 and 2 raise different classes; any refusal counts
        return {"ray": "invalid", "why": _first_error(exc)[:200], "unknown": unknown}
    fields = _fields(DeploymentConfig)
    for app in schema.applications:
        for dep in app.deployments:
            dump = getattr(dep, "model_dump", None)
            options = dump(exclude_unset=True) if dump else dep.dict(exclude_unset=True)
            options = {k: v for k, v in options.items() if k in fields}
            if options.get("num_replicas") == "auto":
                options["num_replicas"] = None
            make = getattr(DeploymentConfig, "model_validate", None) or DeploymentConfig.parse_obj
            try:
                make(options)
            except ImportError:
                pass
            except Exception as exc:  # noqa: BLE001
                return {"ray": "cluster-rejects", "why": f"{app.name}/{dep.name}: {_first_error(exc)}"[:200],
                        "unknown": unknown}
    return {"ray": "valid", "why": "", "unknown": unknown}


def main() -> None:
    import ray

    models = _models()
    items = json.load(sys.stdin)
    verdicts = {name: judge(text, models) for name, text in items}
    json.dump({"ray": ray.__version__, "verdicts": verdicts}, sys.stdout)


if __name__ == "__main__":
    main()
