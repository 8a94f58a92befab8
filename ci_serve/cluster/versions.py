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
from typing import Any

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


#: the user-info part of a URL (``https://user:password@host``, ``https://token@host``)
_INCLUDE = re.compile(r"^\s*(-r|--requirement)(\s+|=)(?P<file>\S+)\s*(#.*)?$")
_CONSTRAINT = re.compile(r"^\s*(-c|--constraint)(\s|=)")


#: the line ``smoke`` adds when the Ray line has no ``serve`` extra (``ray==2.40.0``)
SERVE_EXTRA_LINE = "ray[serve]  # added by ci-serve: the smoke test needs Ray Serve's packages"


def lacks_serve_extra(requirements: str) -> bool:
    """A Ray line is there, but none asks for the ``serve`` extra (Serve would not import)."""
    lines = [_RAY_LINE.match(line) for line in requirements.splitlines()]
    extras = [m.group(1) or "" for m in lines if m]
    return bool(extras) and not any(re.search(r"\bserve\b", e, re.I) for e in extras)


def read_requirements(path: str, _seen: tuple[Path, ...] = ()) -> str:
    """The text of a requirements file, its ``-r other.txt`` includes inlined (relative to the file
    that includes them, as pip reads them), so the cache key covers them and the environment is
    built from one text. ``-c`` constraint files are refused (exit 2) with the line named. The
    credentials in its URLs are registered as secrets: every printer, report and summary masks them."""
    from ci_serve import secrets

    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read the requirements file {path}: {exc.strerror}",
                         "pass a pip requirements file, e.g. `ray[serve]==2.40.0` on a line") from None
    except UnicodeDecodeError:
        raise InputError(f"the requirements file {path} is not UTF-8 text") from None
    secrets.register_urls_in(text)
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        include = _INCLUDE.match(line)
        if include:
            child = file.parent / include.group("file")
            if child.resolve() in _seen + (file.resolve(),):
                raise InputError(f"{path} line {number}: `{line.strip()}` includes itself (a loop of -r includes)",
                                 "remove the -r line that closes the loop")
            if not child.is_file():
                raise InputError(f"{path} line {number}: `{line.strip()}`: no file {child}",
                                 "-r paths are read relative to the file that holds the line")
            out.append(f"# {line.strip()}")
            out.append(read_requirements(str(child), _seen + (file.resolve(),)).rstrip("\n"))
            continue
        if _CONSTRAINT.match(line):
            raise InputError(f"{path} line {number}: `{line.strip()}`: constraint files (-c) are not supported",
                             "put the pins into the requirements file itself (or include it with -r)")
        out.append(line)
    return "\n".join(out) + "\n"


def app_ray_pin(requirements_file: str | None, ray_version: str | None) -> tuple[str | None, str]:
    """(the version the app pins, where it is pinned) from ``--ray-version`` or a requirements file."""
    if ray_version:
        return ray_version, "--ray-version"
    if requirements_file:
        return pinned_ray(read_requirements(requirements_file)), requirements_file
    return None, ""


#: the oldest Ray the smoke test's driver runs on (2.9.3 tested; older releases lack the Serve API it uses)
MIN_SMOKE_RAY = (2, 9)
SUPPORTED_SMOKE_RAY = "Ray 2.9 and newer"


def check_smoke_supported(version: str | None, source: str) -> None:
    """Exit 2 when ``version`` is older than the smoke test supports (say the range, and where it came from)."""
    if version and parse(version) and parse(version) < MIN_SMOKE_RAY:
        raise InputError(f"Ray {version} ({source}) is too old for the smoke test: it supports {SUPPORTED_SMOKE_RAY}",
                         "pin ray[serve]==2.9.3 or newer (docs/smoke.md lists pins known to work)")


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

    def as_dict(self) -> dict[str, Any]:
        return {"cluster": self.cluster, "app": self.app, "source": self.source, "same": self.same,
                "differences": self.differences}


def compare(cluster: str, app: str, source: str) -> Skew:
    low, high = sorted([parse(cluster), parse(app)])
    differences = [text for since, text in KNOWN_DIFFERENCES if low < since <= high]
    return Skew(cluster, app, source, differences)


def _in_range(version: str, line: str) -> bool:
    """Whether ``version`` satisfies the requirement line (``ray[serve]>=2.40,<2.41``); True when unknown."""
    try:
        from packaging.requirements import Requirement

        return Requirement(line.split("#")[0].strip()).specifier.contains(version, prereleases=True)
    except Exception:  # noqa: BLE001 - packaging missing or a line it cannot read: do not claim a skew
        return True


class SkewRefused(InputError):
    """``--require-same-ray`` and the cluster's Ray differs from the app's (exit 2); ``record`` says how."""

    def __init__(self, message: str, hint: str, *, record: dict[str, Any]):
        super().__init__(message, hint)
        self.record = record


def check_skew(cluster_version: str | None, requirements_file: str | None, ray_version: str | None,
               require_same: bool) -> dict[str, Any] | None:
    """``plan``/``deploy``: compare the cluster's Ray with the app's pin, warn and, with ``require_same``,
    refuse with exit 2. Returns the skew record (the report's ``ray_skew``, which the job summary shows)
    when the two were compared: an exact pin, or a range the cluster's Ray falls outside. Nothing is
    compared when the app pins no exact Ray or the cluster did not say its version. A refusal
    (:class:`SkewRefused`) carries the same record."""
    from ci_serve.console import say

    pinned, source = app_ray_pin(requirements_file, ray_version)
    if not pinned:
        if requirements_file and not ray_version:  # say why nothing is compared, or that the range misses
            text = read_requirements(requirements_file)
            line = next((x.strip() for x in text.splitlines() if _RAY_LINE.match(x)), None)
            if line and cluster_version and not _in_range(cluster_version, line):
                raise_or_warn = (f"the cluster runs Ray {cluster_version}, outside the range {requirements_file} "
                                 f"allows (`{line}`)")
                record = {"cluster": cluster_version, "app": line, "source": requirements_file, "same": False,
                          "differences": []}
                if require_same:
                    raise SkewRefused(f"{raise_or_warn}; --require-same-ray refuses to go on",
                                      f"pin ray[serve]=={cluster_version} in {requirements_file}", record=record)
                say(f"WARN  Ray version skew: {raise_or_warn}")
                return record
            say(f"WARN  {requirements_file} " + (f"allows a range of Ray (`{line}`), not one release" if line
                else "pins no Ray") + f": the cluster's Ray ({cluster_version or 'unknown'}) is not compared "
                "release for release; pin ray[serve]==X to test and deploy on one Ray")
        if require_same:
            raise InputError("--require-same-ray needs the app's Ray version",
                             "pass --requirements FILE (with `ray[serve]==X`) or --ray-version X")
        return None
    if not cluster_version:
        say(f"WARN  the cluster did not say its Ray version; the app pins Ray {pinned} ({source})")
        return None
    skew = compare(cluster_version, pinned, source)
    for line in skew.lines():
        say(f"WARN  {line}")
    if not skew.same and require_same:
        raise SkewRefused(f"the cluster runs Ray {cluster_version}, the app pins Ray {pinned} ({source}); "
                          "--require-same-ray refuses to go on",
                          f"pin ray[serve]=={cluster_version} in {source} (and a FastAPI of that time), or upgrade "
                          "the cluster first", record=skew.as_dict())
    return skew.as_dict()
