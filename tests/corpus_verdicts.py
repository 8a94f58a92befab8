"""Verdicts on the corpus of real Serve configs and RayService manifests (tests/corpus/).

For each file: the verdict of Ray's own schema (``ServeDeploySchema`` of the installed Ray, on the
file, or on a manifest's ``spec.serveConfigV2``) and of ci-serve (``validate --no-import``: the
applications' code is not imported). ``python -m tests.corpus_verdicts`` rewrites
tests/corpus/VERDICTS.tsv; tests/test_corpus.py checks the recorded verdicts still hold.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

import yaml

CORPUS = Path(__file__).resolve().parent / "corpus"
VERDICTS = CORPUS / "VERDICTS.tsv"
COLUMNS = ("file", "format", "ray", "ci_serve", "warnings", "why")


def corpus_files() -> list[Path]:
    return sorted(p for p in CORPUS.iterdir() if p.is_file() and p.suffix in (".yaml", ".yml"))


def serve_config_text(path: Path) -> tuple[str | None, str]:
    """(the Serve config's YAML text, format) as Ray's tooling would see it: a manifest's serveConfigV2."""
    text = path.read_text(encoding="utf-8")
    docs = [d for d in yaml.safe_load_all(text) if d is not None]
    manifests = [d for d in docs if isinstance(d, dict) and d.get("kind") == "RayService"]
    if manifests:
        spec = manifests[0].get("spec") or {}
        if isinstance(spec.get("serveConfigV2"), str):
            return spec["serveConfigV2"], f"rayservice {manifests[0].get('apiVersion')}"
        return None, f"rayservice {manifests[0].get('apiVersion')} (no serveConfigV2)"
    return text, "file"


def ray_verdict(path: Path) -> tuple[str, str]:
    """("valid" | "invalid" | "cluster-rejects" | "n/a", the first line of Ray's complaint).

    "invalid": ``ServeDeploySchema`` (what ``serve deploy`` and the dashboard check first) refuses it.
    "cluster-rejects": the schema takes it, but the Serve controller's own ``DeploymentConfig`` model,
    applied to each deployment's options when the application is deployed, refuses them (the deploy
    starts, then fails on the cluster).
    """
    from pydantic import ValidationError
    from ray.serve._private.config import DeploymentConfig
    from ray.serve.schema import ServeDeploySchema

    text, _ = serve_config_text(path)
    if text is None:
        return "n/a", "no serveConfigV2 to give Ray"
    try:
        schema = ServeDeploySchema.model_validate(yaml.safe_load(text))
    except ValidationError as exc:
        err = exc.errors()[0]
        return "invalid", f"{'.'.join(map(str, err['loc']))}: {err['msg']}"[:150]
    except ImportError as exc:  # Ray's schema imports an autoscaling policy_function while validating
        return "valid", f"Ray's schema imports the policy, not importable here ({exc})"[:150]
    for app in schema.applications:
        for dep in app.deployments:
            fields = DeploymentConfig.model_fields
            options = {k: v for k, v in dep.model_dump(exclude_unset=True).items() if k in fields}
            if options.get("num_replicas") == "auto":
                options["num_replicas"] = None
            try:
                DeploymentConfig.model_validate(options)
            except ValidationError as exc:
                err = exc.errors()[0]
                return "cluster-rejects", f"{app.name}/{dep.name}: {'.'.join(map(str, err['loc']))}: {err['msg']}"[:150]
            except ImportError:
                pass
    return "valid", ""


def ci_serve_verdict(path: Path) -> tuple[str, int, str, str]:
    """("accepted" | "rejected" | "traceback", warnings, format, first problem)."""
    from ci_serve.config.validate import validate_config

    try:
        result = validate_config(path, check_imports=False)
    except Exception:  # noqa: BLE001 - a traceback is a verdict here (and fails the suite)
        return "traceback", 0, "?", traceback.format_exc().strip().splitlines()[-1][:150]
    fmt = result.config.format if result.config else "?"
    if result.config is not None and result.config.upgraded:
        fmt += " (2.0 upgraded)"
    first = result.problems[0] if result.problems else None
    why = f"{first.path}: {first.message}"[:150] if first else ""
    return ("rejected" if result.problems else "accepted"), len(result.warnings), fmt, why


def verdicts() -> list[dict[str, str]]:
    rows = []
    for path in corpus_files():
        ray, ray_why = ray_verdict(path)
        ours, warnings, fmt, our_why = ci_serve_verdict(path)
        rows.append({"file": path.name, "format": fmt, "ray": ray, "ci_serve": ours, "warnings": str(warnings),
                     "why": our_why or ray_why})
    return rows


def write(rows: list[dict[str, str]]) -> None:
    lines = ["\t".join(COLUMNS)] + ["\t".join(r[c].replace("\t", " ").replace("\n", " ") for c in COLUMNS)
                                    for r in rows]
    VERDICTS.write_text("\n".join(lines) + "\n", encoding="utf-8")


def read() -> list[dict[str, str]]:
    lines = VERDICTS.read_text(encoding="utf-8").splitlines()
    return [dict(zip(COLUMNS, line.split("\t"), strict=True)) for line in lines[1:]]


if __name__ == "__main__":
    rows = verdicts()
    write(rows)
    count = {k: sum(1 for r in rows if r["ray"] == k) for k in ("valid", "invalid", "n/a")}
    ours = {k: sum(1 for r in rows if r["ci_serve"] == k) for k in ("accepted", "rejected", "traceback")}
    print(f"{len(rows)} files; Ray: {count}; ci-serve: {ours}", file=sys.stderr)
