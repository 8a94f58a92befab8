"""Verdicts on the corpus of real Serve configs and manifests (tests/corpus/), each for its own Ray release.

SOURCES.tsv says where each file comes from (repository, path, commit, tag) and the Ray release it was
written for (``release``, with ``release_from``: the manifest's ``rayVersion``, its Ray image, the
repository's pins, a ``serve build`` header; ``current`` when nothing pins one).

VERDICTS.tsv records, per file:

- ``validate_for``: the release ``validate --ray-version`` is given (a release older than 2.9, the oldest
  ci-serve supports, is checked as 2.9; ``current``: the Ray ci-serve runs on);
- ``ray``: Ray's own verdict (tests/corpus_ray_judge.py: ``ServeDeploySchema``, then the Serve
  controller's ``DeploymentConfig`` on each deployment) by ``ray_by``, the installed release nearest to
  ``validate_for`` (the .venv's and the cached ones under ~/.cache/ci-serve/envs), and ``unknown``: the
  keys that release does not declare (Ray drops them);
- ``expected``: accept or reject, from Ray's verdict and the file's known facts only (``basis`` says which),
  never from ci-serve;
- ``ci_serve``: what ``validate --no-import --ray-version validate_for`` does (accepted, rejected,
  traceback), its warnings and first problem.

``python -m tests.corpus_verdicts`` rewrites VERDICTS.tsv (it starts each cached release's Python once:
about 10 s each); tests/test_corpus.py checks the recorded verdicts still hold, fast, with the .venv's
Ray alone.
"""

from __future__ import annotations

import inspect
import json
import re
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any

import yaml

CORPUS = Path(__file__).resolve().parent / "corpus"
SOURCES = CORPUS / "SOURCES.tsv"
VERDICTS = CORPUS / "VERDICTS.tsv"
JUDGE = Path(__file__).resolve().parent / "corpus_ray_judge.py"
SOURCE_COLUMNS = ("file", "repository", "path", "commit", "ref", "kind", "release", "release_from")
COLUMNS = ("file", "validate_for", "format", "ray", "ray_by", "unknown", "expected", "basis", "ci_serve",
           "warnings", "why")
OLDEST = (2, 9)
LOCAL_WORKDIR = "remote URIs in working_dir"


def corpus_files() -> list[Path]:
    return sorted(p for p in CORPUS.iterdir() if p.is_file() and p.suffix in (".yaml", ".yml"))


def read_tsv(path: Path, columns: tuple[str, ...]) -> list[dict[str, str]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    assert tuple(lines[0].lstrip("# ").split("\t")) == columns, (path, lines[0])
    return [dict(zip(columns, line.split("\t"), strict=True)) for line in lines[1:]]


def sources() -> dict[str, dict[str, str]]:
    return {r["file"]: r for r in read_tsv(SOURCES, SOURCE_COLUMNS)}


def read() -> list[dict[str, str]]:
    return read_tsv(VERDICTS, COLUMNS)


def minor(version: str) -> tuple[int, int]:
    major, minor_, *_ = (int(x) for x in re.findall(r"\d+", version)[:2] + ["0"])
    return major, minor_


def validate_for(release: str) -> str:
    """The release the file is validated for: its own, 2.9 for older ones, ``current`` when unknown."""
    if release in ("", "current"):
        return "current"
    return release if minor(release) >= OLDEST else f"{OLDEST[0]}.{OLDEST[1]}"


def classify(path: Path) -> tuple[str, str | None, str]:
    """(format, the Serve config text Ray would get or None, why there is none)."""
    text = path.read_text(encoding="utf-8")
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        return "yaml-error", None, f"not YAML: {str(exc).splitlines()[0]}"
    kinds = [d.get("kind") for d in docs if isinstance(d, dict) and d.get("kind")]
    services = [d for d in docs if isinstance(d, dict) and d.get("kind") == "RayService"]
    if len(services) > 1:
        return "rayservice x2", None, f"{len(services)} RayServices in one file"
    if services:
        spec = services[0].get("spec") or {}
        value = spec.get("serveConfigV2")
        if isinstance(value, str):
            return f"rayservice {services[0].get('apiVersion')}", value, ""
        old = [k for k in ("serveConfig", "serveDeploymentGraphConfig") if k in spec]
        return (f"rayservice {services[0].get('apiVersion')} (no serveConfigV2)", None,
                f"spec.{old[0]}, KubeRay's pre-1.0 structured format" if old else "no spec.serveConfigV2")
    if kinds:
        return f"manifest ({', '.join(sorted(set(kinds)))})", None, \
            f"a Kubernetes manifest with no RayService ({', '.join(sorted(set(kinds)))}): no Serve config in it"
    if len(docs) == 1 and isinstance(docs[0], dict) and "applications" not in docs[0] and "import_path" in docs[0]:
        return "serve-config 2.0 single-app", text, ""
    return "serve-config", text, ""


def local_working_dirs(text: str | None) -> tuple[str, ...]:
    """The applications' runtime_env.working_dir values that are local folders (no ``://``)."""
    try:
        data = yaml.safe_load(text) if text else None
    except yaml.YAMLError:
        return ()
    apps = data.get("applications") if isinstance(data, dict) else None
    found = []
    for app in apps if isinstance(apps, list) else []:
        env = app.get("runtime_env") if isinstance(app, dict) else None
        wd = env.get("working_dir") if isinstance(env, dict) else None
        if isinstance(wd, str) and "://" not in wd:
            found.append(wd)
    return tuple(found)


def judges() -> dict[str, str]:
    """Ray release -> the Python that has it: the .venv's, and every cached environment."""
    from importlib.metadata import version

    from ci_serve.cluster.pyenv import cache_root

    found = {version("ray"): sys.executable}
    root = cache_root()
    for marker in sorted(root.glob("*/ci-serve-env.json")) if root.is_dir() else []:
        ray = json.loads(marker.read_text()).get("ray_version")
        python = marker.parent / "bin" / "python"
        if ray and python.exists():
            found.setdefault(ray, str(python))
    return found


def nearest(target: str, releases: list[str], own: str) -> str:
    """The judging release for ``target``: same minor first, else the nearest minor (the lower on a tie)."""
    want = minor(own if target == "current" else target)
    return min(releases, key=lambda r: (abs(minor(r)[1] - want[1]) + 100 * abs(minor(r)[0] - want[0]),
                                        minor(r) > want))


def run_judge(python: str, items: list[tuple[str, str]]) -> dict[str, dict[str, Any]]:
    out = subprocess.run([python, str(JUDGE)], input=json.dumps(items), capture_output=True, text=True,
                         check=True, timeout=600)
    verdicts: dict[str, dict[str, Any]] = json.loads(out.stdout)["verdicts"]
    return verdicts


def expectation(fmt: str, why_none: str, ray: dict[str, Any] | None, by: str, target: str,
                newer_keys: list[str], older_keys: list[str], undetermined: list[str],
                folder: Path = CORPUS, local_dirs: tuple[str, ...] = ()) -> tuple[str, str]:
    """(accept | reject, the basis): from Ray's verdict and the file's facts, not from ci-serve."""
    manifest = fmt.startswith("rayservice")
    if ray is None:
        return "reject", f"fact: {why_none}"
    verdict, why = ray["ray"], ray["why"]
    if verdict == "invalid" and LOCAL_WORKDIR in why:
        if manifest:
            return "reject", (f"Ray {by} refuses a local working_dir, and KubeRay hands serveConfigV2 to it as is "
                              "(no upload)")
        missing = [d for d in local_dirs if not (folder / d).expanduser().is_dir()]
        if missing:
            return "reject", (f"fact: the local working_dir {', '.join(missing)} is not next to this copy (only the "
                              "YAML was copied): nothing to upload")
        return "accept", f"Ray {by}'s schema refuses a local working_dir; fact: ci-serve deploy uploads it"
    if verdict == "invalid" and fmt == "serve-config 2.0 single-app":
        return "accept", f"Ray {by}: {why}; fact: a Serve 2.0 single-app file, upgraded by ci-serve (docs/config.md)"
    if verdict != "valid":
        return "reject", f"Ray {by} ({verdict}): {why}"
    if newer_keys:
        return "reject", (f"Ray {by} does not know {', '.join(newer_keys)} (a newer release does): dropped on "
                          f"{target}")
    notes = []
    if older_keys:
        notes.append(f"{', '.join(older_keys)}: known to an older release only (legacy)")
    if undetermined:
        notes.append(f"{', '.join(undetermined)}: added between the installed releases around {target}, "
                     "taken as known (the file's authors ran it on that release)")
    return "accept", "; ".join([f"Ray {by} valid", *notes])


def ci_serve_verdict(path: Path, target: str) -> tuple[str, int, str]:
    """(accepted | rejected | traceback | no-rules, warnings, first problem) of ``validate --no-import`` for
    ``target``."""
    from ci_serve.config.validate import validate_config

    kwargs: dict[str, Any] = {"check_imports": False}
    if "ray_version" in inspect.signature(validate_config).parameters:  # the per-release rules (issue 25)
        kwargs["ray_version"] = None if target == "current" else target
    from ci_serve.errors import InputError

    try:
        result = validate_config(path, **kwargs)
    except InputError as err:  # a release ci-serve has no rules for: give it a validate_for that has some
        return "no-rules", 0, err.message[:150]
    except Exception:  # noqa: BLE001 - a traceback is a verdict here (and fails the suite)
        return "traceback", 0, traceback.format_exc().strip().splitlines()[-1][:150]
    first = result.problems[0] if result.problems else None
    why = f"{first.path}: {first.message}"[:150] if first else ""
    return ("rejected" if result.problems else "accepted"), len(result.warnings), why


def verdicts(only_installed: bool = False) -> list[dict[str, str]]:
    """Every file's row. ``only_installed``: judge with the .venv's Ray alone (the fast check of the test)."""
    from importlib.metadata import version

    own = version("ray")
    pythons = {own: sys.executable} if only_installed else judges()
    src = sources()
    files = corpus_files()
    classified = {p.name: classify(p) for p in files}
    targets = {p.name: validate_for(src[p.name]["release"]) for p in files}
    items = [(name, text) for name, (_, text, _) in classified.items() if text is not None]
    by_release = {r: run_judge(py, items) if py != sys.executable else _judge_here(items)
                  for r, py in pythons.items()}
    rows = []
    for path in files:
        fmt, text, why_none = classified[path.name]
        target = targets[path.name]
        by = nearest(target, list(by_release), own)
        ray = by_release[by].get(path.name) if text is not None else None
        unknown = ray["unknown"] if ray else []
        newer, older, undetermined = _unknown_to_target(path.name, unknown, target, own, by_release)
        expected, basis = expectation(fmt, why_none, ray, by, target, newer, older, undetermined,
                                      path.parent, local_working_dirs(text))
        ours, warnings, our_why = ci_serve_verdict(path, target)
        rows.append({"file": path.name, "validate_for": target, "format": fmt,
                     "ray": ray["ray"] if ray else "n/a", "ray_by": by if ray else "-",
                     "unknown": ",".join(unknown) or "-", "expected": expected, "basis": basis[:220],
                     "ci_serve": ours, "warnings": str(warnings), "why": our_why or "-"})
    return rows


def _unknown_to_target(name: str, unknown: list[str], target: str, own: str,
                       by_release: dict[str, dict[str, dict[str, Any]]]) -> tuple[list[str], list[str], list[str]]:
    """Split the keys the judging release ignores: (added after ``target``, dropped before it, undetermined).

    A key is unknown to ``target`` when the installed releases on both sides of it (the nearest at or
    below, the nearest at or above) ignore it; then it is newer when a later release knows it, legacy
    when an earlier one does. Known on one side only: it changed between them (undetermined)."""
    want = minor(own if target == "current" else target)
    below = [r for r in by_release if minor(r) <= want]
    above = [r for r in by_release if minor(r) >= want]
    low = max(below, key=minor) if below else None
    high = min(above, key=minor) if above else None

    def knows(release: str | None, key: str) -> bool | None:
        return None if release is None else key not in by_release[release][name]["unknown"]

    newer, older, undetermined = [], [], []
    for key in unknown:
        sides = {knows(low, key), knows(high, key)} - {None}
        if True in sides and False in sides:
            undetermined.append(key)
        elif True in sides:
            continue
        elif any(minor(r) > want and knows(r, key) for r in by_release):
            newer.append(key)
        elif any(minor(r) < want and knows(r, key) for r in by_release):
            older.append(key)
    return newer, older, undetermined


def _judge_here(items: list[tuple[str, str]]) -> dict[str, dict[str, Any]]:
    sys.path.insert(0, str(JUDGE.parent))
    try:
        import corpus_ray_judge as judge
    finally:
        sys.path.pop(0)
    models = judge._models()
    return {name: judge.judge(text, models) for name, text in items}


def write(rows: list[dict[str, str]]) -> None:
    def cell(value: str) -> str:
        return value.replace("\t", " ").replace("\n", " ")

    lines = ["\t".join(COLUMNS)] + ["\t".join(cell(r[c]) for c in COLUMNS) for r in rows]
    VERDICTS.write_text("\n".join(lines) + "\n", encoding="utf-8")


def wrong(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """Rows where ci-serve disagrees with the expected verdict (or crashes)."""
    return [r for r in rows if r["ci_serve"] == "traceback"
            or (r["expected"] == "accept") != (r["ci_serve"] == "accepted")]


if __name__ == "__main__":
    measured = verdicts()
    write(measured)
    count: dict[str, int] = {}
    for r in measured:
        count[f"{r['expected']}/{r['ci_serve']}"] = count.get(f"{r['expected']}/{r['ci_serve']}", 0) + 1
    print(f"{len(measured)} files; expected/ci-serve: {count}", file=sys.stderr)
    for r in wrong(measured):
        print(f"WRONG {r['file']}: expected {r['expected']} ({r['basis']}); ci-serve {r['ci_serve']}: {r['why']}",
              file=sys.stderr)
