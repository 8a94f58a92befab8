"""Generate the per-release Serve config rules (ci_serve/config/rules/ray-X.Y.json) from Ray itself.

``scripts/gen-serve-rules 2.9.3 2.40.0`` installs each release's ``ray`` package alone (``uv pip install
--no-deps --target``: only ``ray.serve.schema`` has to import, and it does on this environment's
pydantic/fastapi), runs :mod:`ci_serve.config.rules_extract` against it in a child Python, and writes the
rules of that minor release. ``--all`` regenerates every release that has a file; ``--current`` the one
this environment runs; ``--check`` regenerates what is cheap (this environment's Ray, and every release
whose package is already in the cache) and fails on any difference with the committed file.

Packages are cached under ``<cache>/ci-serve/serve-rules/ray-X.Y.Z`` (about 160 MB each; ``--keep`` keeps
them, by default they are removed after extraction, except this environment's own).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ci_serve.cluster.pyenv import cache_root, uv_executable
from ci_serve.config.rules import RULES_DIR, file_for, known_files, minor_of

EXTRACTOR = Path(__file__).with_name("rules_extract.py")


def package_cache() -> Path:
    return cache_root().parent / "serve-rules"


def cached_package(version: str) -> Path | None:
    path = package_cache() / f"ray-{version}"
    return path if (path / "ray" / "__init__.py").exists() else None


def install(version: str) -> Path:
    """``ray==version`` alone, in the cache (reused when there)."""
    found = cached_package(version)
    if found:
        return found
    root = package_cache()
    root.mkdir(parents=True, exist_ok=True)
    uv = uv_executable()
    partial = Path(tempfile.mkdtemp(prefix=f"ray-{version}.", dir=root))
    cmd = [uv, "pip", "install", "--quiet", "--no-deps", "--target", str(partial), f"ray=={version}"] if uv else \
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(partial), f"ray=={version}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        raise SystemExit(f"ray=={version} could not be installed:\n{proc.stderr.strip()[-2000:]}")
    final = root / f"ray-{version}"
    shutil.rmtree(final, ignore_errors=True)
    os.replace(partial, final)
    return final


def extract(package: Path | None) -> str:
    """The rules text of the Ray in ``package`` (None: the one this environment runs)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["PYTHONPATH"] = str(package) if package else ""
    # -P: the extractor's own folder (ci_serve/config, which has an inspect.py) is not put on sys.path
    proc = subprocess.run([sys.executable, "-P", str(EXTRACTOR)], env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=300)
    if proc.returncode != 0:
        raise SystemExit(f"reading the rules of {package or 'this Ray'} failed:\n{proc.stderr.strip()[-3000:]}")
    return proc.stdout


def own_ray() -> str:
    return importlib.metadata.version("ray")


def generate(version: str, *, keep: bool = False) -> Path:
    """Write the rules file of ``version``'s minor release; return its path."""
    package = None if version == own_ray() else install(version)
    text = extract(package)
    target = RULES_DIR / file_for(version)
    target.write_text(text, encoding="utf-8")
    if package is not None and not keep:
        shutil.rmtree(package, ignore_errors=True)
    return target


def check() -> list[str]:
    """Regenerate what is cheap and compare: (release, what differs) for each file that is stale; the
    releases checked are printed by :func:`main`."""
    stale = []
    for checked in checkable():
        text = extract(None if checked == own_ray() else cached_package(checked))
        if text != (RULES_DIR / file_for(checked)).read_text(encoding="utf-8"):
            stale.append(checked)
    return stale


def checkable() -> list[str]:
    """The releases :func:`check` can regenerate without installing anything: this environment's, and
    each committed file's release whose package is cached."""
    out = [own_ray()]
    for minor, path in known_files().items():
        version = path_version(path)
        if version != own_ray() and cached_package(version):
            out.append(version)
        del minor
    return out


def path_version(path: Path) -> str:
    import json

    version: str = json.loads(path.read_text(encoding="utf-8"))["ray"]
    return version


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gen-serve-rules", description=__doc__.split("\n\n")[0])
    parser.add_argument("versions", nargs="*", metavar="X.Y.Z", help="releases to (re)generate, e.g. 2.9.3")
    parser.add_argument("--all", action="store_true", help="regenerate every release that has a rules file")
    parser.add_argument("--current", action="store_true", help="the Ray this environment runs")
    parser.add_argument("--check", action="store_true", help="compare what is cheap to regenerate; exit 1 if stale")
    parser.add_argument("--keep", action="store_true", help="keep the installed packages in the cache")
    args = parser.parse_args(argv)
    if args.check:
        stale = check()
        print(f"checked: {', '.join(checkable())}; stale: {', '.join(stale) or 'none'}")
        return 1 if stale else 0
    versions = list(args.versions)
    if args.all:
        versions += [path_version(p) for p in known_files().values()]
    if args.current:
        versions.append(own_ray())
    if not versions:
        parser.error("name a release (X.Y.Z), or --all / --current / --check")
    for version in dict.fromkeys(versions):
        minor_of(version)  # a malformed release stops here
        print(f"{version}: {generate(version, keep=args.keep)}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
