"""Serve config rules per Ray release, read from ci_serve/config/rules/ray-X.Y.json.

Each file is generated from that release's own ``ray.serve.schema`` by ``scripts/gen-serve-rules``
(:mod:`ci_serve.config.rulegen`): for each model reachable from ``ServeDeploySchema`` (a *section*,
named by its path in the config: ``applications[].deployments[]``), its fields with their types,
defaults, bounds and deprecations. :mod:`ci_serve.config.schema` stays the strict checker (typos,
values, with hints); this module adds what differs per release (:func:`release_findings`):

- a key the target release does not know but a newer one does is an error at its line, naming the
  release that introduced it (Ray's schemas ignore unknown keys: the cluster would silently drop it);
- a key the target knows that newer Ray dropped (``max_concurrent_queries`` on 2.9) is no warning: it
  is the real field there, and its value is checked by that release's type and bounds;
- a key the target release deprecates in favour of another is a warning naming the field it expects.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ci_serve.config.problems import PathT
from ci_serve.config.schema import Finding, short_value
from ci_serve.errors import InputError

RULES_DIR = Path(__file__).with_name("rules")
#: the oldest release ci-serve validates for (and has rules of)
MIN_RELEASE = (2, 9)
_RELEASE = re.compile(r"^\s*v?(\d+)\.(\d+)(?:\.(\d+))?(?:[.+-]?[0-9A-Za-z.+-]*)?\s*$")



def minor_of(version: str) -> tuple[int, int]:
    match = _RELEASE.match(version or "")
    if not match:
        raise InputError(f"{version!r} is not a Ray release number", "write it as X.Y or X.Y.Z, e.g. 2.9.3")
    return int(match.group(1)), int(match.group(2))


def file_for(version: str) -> str:
    major, minor = minor_of(version)
    return f"ray-{major}.{minor}.json"


@functools.cache
def known_files() -> dict[tuple[int, int], Path]:
    """(major, minor) -> its rules file, oldest first."""
    found = {}
    for path in RULES_DIR.glob("ray-*.json"):
        found[minor_of(path.stem.removeprefix("ray-"))] = path
    return dict(sorted(found.items()))


@dataclass(frozen=True)
class ReleaseRules:
    #: the release the rules were generated from ("2.9.3")
    version: str
    sections: dict[str, Any]

    @property
    def release(self) -> str:
        """The minor release the rules stand for ("2.9")."""
        major, minor = minor_of(self.version)
        return f"{major}.{minor}"

    def field(self, section: str, key: str) -> dict[str, Any] | None:
        found = self.sections.get(section, {}).get("fields", {}).get(key)
        return found if isinstance(found, dict) else None

    def knows(self, section: str, key: str) -> bool:
        return self.field(section, key) is not None


@functools.cache
def _load(path: Path) -> ReleaseRules:
    data = json.loads(path.read_text(encoding="utf-8"))
    return ReleaseRules(str(data["ray"]), data["sections"])


def own_ray_version() -> str:
    """The Ray release ci-serve itself runs on (no import of Ray)."""
    return importlib.metadata.version("ray")


def rules_for(version: str | None) -> ReleaseRules:
    """The rules of ``version`` (None: the Ray ci-serve runs on): its minor's file, else the nearest
    older minor that has one (Ray skipped 2.13-2.19 and 2.25-2.29). :class:`InputError` (exit 2) for a
    malformed version, one older than 2.9, or one newer than the newest rules file (except ci-serve's
    own Ray: the newest rules then)."""
    own = version is None
    version = version or own_ray_version()
    wanted = minor_of(version)
    files = known_files()
    oldest, newest = next(iter(files)), next(reversed(files))
    if own and wanted > newest:  # ci-serve installed next to a newer Ray: its newest rules, not a refusal
        return _load(files[newest])
    if wanted < MIN_RELEASE:
        raise InputError(f"Ray {version} is older than the releases ci-serve validates for "
                         f"(Ray {MIN_RELEASE[0]}.{MIN_RELEASE[1]} to {newest[0]}.{newest[1]})",
                         "upgrade the cluster to Ray 2.9 or newer")
    if wanted > newest:
        raise InputError(f"ci-serve has no Serve config rules for Ray {version} (newest known: "
                         f"{newest[0]}.{newest[1]})",
                         f"upgrade ci-serve, or add the release: scripts/gen-serve-rules {version} (docs/config.md)")
    at = max((m for m in files if m <= wanted), default=oldest)
    return _load(files[at])


@functools.cache
def all_rules() -> tuple[ReleaseRules, ...]:
    return tuple(_load(p) for p in known_files().values())


def section_of(path: PathT) -> str:
    """``("applications", 0, "deployments", 1)`` -> ``applications[].deployments[]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += "[]"
        else:
            out += f".{part}" if out else str(part)
    return out


@functools.cache
def introduced_in(section: str, key: str) -> str | None:
    """The first release (of those with rules) whose schema knows ``key`` in ``section``."""
    return next((r.release for r in all_rules() if r.knows(section, key)), None)


def last_in(section: str, key: str, before: ReleaseRules) -> str | None:
    """The newest release older than ``before`` whose schema knew ``key`` in ``section`` (a dropped key)."""
    older = [r.release for r in all_rules() if minor_of(r.version) < minor_of(before.version) and r.knows(section, key)]
    return older[-1] if older else None


def release_findings(data: Any, rules: ReleaseRules) -> tuple[list[Finding], set[PathT]]:
    """(findings, paths of keys the release knows that the strict models do not have) for ``data``."""
    found: list[Finding] = []
    legacy: set[PathT] = set()
    for path, node in _mappings(data, ()):
        section = section_of(path)
        if section not in rules.sections and path:
            continue
        for key, value in node.items():
            if not isinstance(key, str):
                continue
            where = (*path, key)
            spec = rules.field(section, key)
            if spec is None:
                since = introduced_in(section, key)
                if since is not None and minor_of(since) > minor_of(rules.version):
                    found.append(_too_new(where, key, since, rules, section))
                continue
            legacy.add(where)
            wrong = value_problem(value, spec)
            if wrong:
                found.append((where, f"{wrong} (Ray {rules.release} takes {_type_words(spec)})",
                              _accepted_since(section, key, value, rules), False, "error"))
            elif spec.get("deprecated") and spec.get("use") and value != spec.get("default"):  # `serve build`
                # writes every autoscaling field, deprecated ones at their default (null): no effect, no warning
                found.append((where, f"key {key!r} is deprecated in Ray {rules.release}",
                              f"Ray {rules.release} expects `{spec['use']}`; rename the key", True, "warning"))
    return found, legacy


def _too_new(where: PathT, key: str, since: str, rules: ReleaseRules, section: str) -> Finding:
    older = next((k for k, s in rules.sections.get(section, {}).get("fields", {}).items()
                  if isinstance(s, dict) and _renamed_to(section, k) == key), None)
    instead = f"on Ray {rules.release} write `{older}`" if older else \
        f"remove it, or deploy to Ray {since} or newer"
    return (where, f"key {key!r} is not known to Ray {rules.release} (added in Ray {since})",
            f"Ray {rules.release} ignores it and deploys without it; {instead}", True, "error")


@functools.cache
def _renamed_to(section: str, key: str) -> str | None:
    """The field a newer release deprecates ``key`` in favour of (``max_concurrent_queries`` ->
    ``max_ongoing_requests``)."""
    for rules in all_rules():
        spec = rules.field(section, key)
        if spec and spec.get("use"):
            return str(spec["use"])
    return None


def _accepted_since(section: str, key: str, value: Any, rules: ReleaseRules) -> str | None:
    later = next((r.release for r in all_rules() if minor_of(r.version) > minor_of(rules.version)
                  and (s := r.field(section, key)) and value_problem(value, s) is None), None)
    return f"Ray {later} and newer accept this value; on Ray {rules.release} change it" if later else None


def _mappings(node: Any, path: PathT) -> list[tuple[PathT, dict[str, Any]]]:
    """Every mapping in ``data`` with its path, except the insides of free-form values."""
    out: list[tuple[PathT, dict[str, Any]]] = []
    if isinstance(node, dict):
        out.append((path, node))
        for key, value in node.items():
            if isinstance(key, str) and key not in _FREE_FORM:
                out.extend(_mappings(value, (*path, key)))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out.extend(_mappings(value, (*path, i)))
    return out


#: user data and free-form mappings: no rules inside
_FREE_FORM = frozenset({"user_config", "args", "runtime_env", "env_vars", "resources", "policy_kwargs"})


def _alternatives(kind: str) -> list[str]:
    out, depth, current = [], 0, ""
    for ch in kind:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        if ch == "|" and depth == 0:
            out.append(current)
            current = ""
        else:
            current += ch
    return [*out, current]


_NUMBER = re.compile(r"^\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*$")


def _fits(value: Any, kind: str) -> bool:
    """Whether ``value`` passes one alternative of a field's type; lenient where pydantic coerces."""
    if kind == "null":
        return value is None
    if value is None:
        return False
    if kind == "int":
        return (isinstance(value, int) and not isinstance(value, bool)) or \
            (isinstance(value, float) and value.is_integer()) or \
            (isinstance(value, str) and value.strip().lstrip("+-").isdigit())
    if kind == "float":
        return (isinstance(value, (int, float)) and not isinstance(value, bool)) or \
            (isinstance(value, str) and bool(_NUMBER.match(value)))
    if kind == "str":
        return isinstance(value, (str, int, float)) and not isinstance(value, bool)
    if kind == "bool":
        return isinstance(value, bool) or value in (0, 1) or \
            (isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "on", "off", "1", "0"))
    if kind in ("dict", "model"):
        return isinstance(value, dict)
    if kind.startswith("list"):
        return isinstance(value, list)
    if kind.startswith("enum("):
        return str(getattr(value, "value", value)) in kind[5:-1].split(",")
    return True  # any, callables, types the generator names by class: not checked here


def value_problem(value: Any, spec: dict[str, Any]) -> str | None:
    """Why ``value`` does not pass a field of a release's rules (type, then bounds), or None."""
    kinds = _alternatives(str(spec.get("type", "any")))
    if not any(_fits(value, k) for k in kinds):
        return f"value {short_value(value)} has the wrong type"
    number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if number is not None:
        for bound, test, words in (("gt", number.__gt__, "greater than"), ("ge", number.__ge__, "at least"),
                                   ("lt", number.__lt__, "less than"), ("le", number.__le__, "at most")):
            if bound in spec and not test(spec[bound]):
                return f"value {number} must be {words} {spec[bound]}"
    return None


def _type_words(spec: dict[str, Any]) -> str:
    text = str(spec.get("type", "any")).replace("|", " or ")
    bounds = ", ".join(f"{b} {spec[b]}" for b in ("gt", "ge", "lt", "le") if b in spec)
    return text + (f", {bounds}" if bounds else "")

