"""Which Ray an app pins, which Ray a cluster runs, and what differs between the two: pure functions.

A team's PR check should run the Ray its cluster runs. ``plan`` and ``deploy`` read the cluster's
``/api/version`` and compare it with the Ray the app pins (its requirements file, or
``--ray-version``); on a mismatch they warn, with what is known to differ between the two releases
(:data:`KNOWN_DIFFERENCES`), and ``--require-same-ray`` turns the warning into exit 2.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ci_serve.errors import InputError

#: ``ray==X`` / ``ray[serve,default]==X`` (``===`` too), a trailing comment or environment marker allowed
_PIN = re.compile(r"^\s*ray(\[[^\]]*\])?\s*===?\s*([0-9][0-9A-Za-z.+-]*)\s*(;.*)?(#.*)?$", re.I)
_RAY_LINE = re.compile(r"^\s*ray(\[[^\]]*\])?\s*($|[<>=!~;#@])", re.I)

#: (first release with the change, what changed): shown when the two versions lie on either side
KNOWN_DIFFERENCES: list[tuple[tuple[int, ...], str]] = [
    ((2, 10), "deployment graphs: DAGDriver/InputNode were removed; graphs are built with .bind() and "
              "DeploymentHandle"),
    ((2, 41), "the newest FastAPI cannot be pickled by Ray up to 2.40 (\"Failed to serialize the FastAPI "
              "app\"): pin a FastAPI of the same time as the older Ray (2.40: fastapi==0.115.6)"),
    ((2, 52), "token authentication exists only from Ray 2.52: an older dashboard ignores the Authorization "
              "header, a newer one started with a token refuses calls without it"),
]


def pinned_ray(requirements: str) -> str | None:
    """The exact Ray version the requirements text pins (``ray[serve]==2.40.0``), or None."""
    for line in requirements.splitlines():
        match = _PIN.match(line)
        if match:
            return match.group(2)
    return None


def mentions_ray(requirements: str) -> bool:
    return any(_RAY_LINE.match(line) for line in requirements.splitlines())


def read_requirements(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read the requirements file {path}: {exc.strerror}",
                         "pass a pip requirements file, e.g. `ray[serve]==2.40.0` on a line") from None
    except UnicodeDecodeError:
        raise InputError(f"the requirements file {path} is not UTF-8 text") from None


def app_ray_pin(requirements_file: str | None, ray_version: str | None) -> tuple[str | None, str]:
    """(the version the app pins, where it is pinned) from ``--ray-version`` or a requirements file."""
    if ray_version:
        return ray_version, "--ray-version"
    if requirements_file:
        return pinned_ray(read_requirements(requirements_file)), requirements_file
    return None, ""


def parse(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split("."):
        digits = re.match(r"\d+", piece)
        if not digits:
            break
        parts.append(int(digits.group()))
    return tuple(parts)


def _padded(version: str) -> tuple[int, ...]:
    parts = parse(version)
    return parts + (0,) * (3 - len(parts))


@dataclass(frozen=True)
class Skew:
    """The cluster's Ray against the app's: ``same`` or not, and what is known to differ."""

    cluster: str
    app: str
    source: str
    differences: list[str] = field(default_factory=list)

    @property
    def same(self) -> bool:
        return _padded(self.cluster) == _padded(self.app)

    def lines(self) -> list[str]:
        if self.same:
            return []
        out = [f"Ray version skew: the cluster runs Ray {self.cluster}, the app pins Ray {self.app} "
               f"({self.source}); the smoke test ran the app on {self.app}, not on what the cluster runs"]
        out += [f"  differs: {d}" for d in self.differences]
        if not self.differences and parse(self.cluster)[:2] == parse(self.app)[:2]:
            out.append("  (same minor release: patch releases rarely differ in behaviour)")
        return out

    def as_dict(self) -> dict:
        return {"cluster": self.cluster, "app": self.app, "source": self.source, "same": self.same,
                "differences": self.differences}


def compare(cluster: str, app: str, source: str) -> Skew:
    low, high = sorted([parse(cluster), parse(app)])
    differences = [text for since, text in KNOWN_DIFFERENCES if low < since <= high]
    return Skew(cluster, app, source, differences)


def check_skew(run, cluster_version: str | None, requirements_file: str | None, ray_version: str | None,
               require_same: bool) -> Skew | None:
    """``plan``/``deploy``: compare the cluster's Ray with the app's pin, warn (log and report's
    ``ray_skew``, which the job summary shows) and, with ``require_same``, refuse with exit 2.
    Nothing is compared when the app pins no exact Ray or the cluster did not say its version."""
    from ci_serve.console import say

    pinned, source = app_ray_pin(requirements_file, ray_version)
    if not pinned:
        if require_same:
            raise InputError("--require-same-ray needs the app's Ray version",
                             "pass --requirements FILE (with `ray[serve]==X`) or --ray-version X")
        return None
    if not cluster_version:
        say(f"WARN  the cluster did not say its Ray version; the app pins Ray {pinned} ({source})")
        return None
    skew = compare(cluster_version, pinned, source)
    run.data["ray_skew"] = skew.as_dict()
    for line in skew.lines():
        say(f"WARN  {line}")
    if not skew.same and require_same:
        raise InputError(f"the cluster runs Ray {cluster_version}, the app pins Ray {pinned} ({source}); "
                         "--require-same-ray refuses to go on",
                         f"pin ray[serve]=={cluster_version} in {source} (and a FastAPI of that time), or upgrade "
                         "the cluster first")
    return skew
