"""Code is shipped as users keep it (issue 12), checked with real git repositories: ``.git`` and what
git ignores are neither hashed nor zipped, the executable bit is part of the hash (and of the zip),
and each application's ``excludes`` gets its own package. The upload itself against a real head is
in tests/test_multinode.py."""

from __future__ import annotations

import os
import subprocess
import zipfile
from pathlib import Path

import pytest

from ci_serve.cluster.packages import directory_uri, ship_working_dirs, upload_directory

pytestmark = pytest.mark.skipif(subprocess.run(["git", "--version"], capture_output=True).returncode != 0,
                                reason="git is not installed")


def git(repo: Path, *args: str) -> str:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com", "HOME": str(repo), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, env=env).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A checkout as in the examples: the app at the top, served with ``working_dir: .``."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "app.py").write_text("def answer():\n    return 1\n")
    (root / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (root / ".gitignore").write_text("__pycache__/\n*.log\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "v1")
    return root


class Store:
    """Stands in for the dashboard's package store: which URIs were asked for and uploaded."""

    def __init__(self):
        self.packages: dict[str, bytes] = {}

    def package_exists(self, uri: str) -> bool:
        return uri in self.packages

    def upload_package(self, uri: str, data: bytes) -> None:
        self.packages[uri] = data


def names(data: bytes, tmp: Path) -> set[str]:
    path = tmp / "pkg.zip"
    path.write_bytes(data)
    with zipfile.ZipFile(path) as z:
        return set(z.namelist())


def test_a_commit_that_changes_no_shipped_file_keeps_the_uri(repo, tmp_path):
    before = directory_uri(repo)
    (repo / "NOTES").write_text("only history changes\n")
    git(repo, "add", "NOTES")
    git(repo, "commit", "-q", "-m", "notes")
    git(repo, "rm", "-q", "NOTES")
    git(repo, "commit", "-q", "-m", "drop notes")
    git(repo, "gc", "-q")
    assert directory_uri(repo) == before  # .git changed a lot; the shipped files did not
    store = Store()
    uri, uploaded = upload_directory(store, repo)
    assert uploaded and uri == before
    shipped = names(store.packages[uri], tmp_path)
    assert not any(n == ".git" or n.startswith(".git/") for n in shipped), sorted(shipped)
    assert {"app.py", "run.sh", ".gitignore"} <= shipped


def test_a_code_change_changes_the_uri(repo):
    before = directory_uri(repo)
    (repo / "app.py").write_text("def answer():\n    return 2\n")
    assert directory_uri(repo) != before


def test_what_git_ignores_is_not_shipped(repo, tmp_path):
    before = directory_uri(repo)
    (repo / "__pycache__").mkdir()
    (repo / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"\x00" * 64)
    (repo / "debug.log").write_text("noise\n")
    (repo / "scratch.txt").write_text("ignored by .git/info/exclude\n")
    (repo / ".git" / "info").mkdir(exist_ok=True)
    (repo / ".git" / "info" / "exclude").write_text("scratch.txt\n")
    assert directory_uri(repo) == before
    store = Store()
    uri, _ = upload_directory(store, repo)
    shipped = names(store.packages[uri], tmp_path)
    assert not {"debug.log", "scratch.txt"} & shipped and not any("__pycache__" in n for n in shipped)


def test_a_gitignore_above_the_working_dir_applies(tmp_path):
    root = tmp_path / "mono"
    (root / "services" / "shop").mkdir(parents=True)
    git(root, "init", "-q")
    (root / ".gitignore").write_text("*.secret\n")
    (root / "services" / "shop" / "app.py").write_text("x = 1\n")
    before = directory_uri(root / "services" / "shop")
    (root / "services" / "shop" / "creds.secret").write_text("do not ship\n")
    assert directory_uri(root / "services" / "shop") == before


def test_a_tracked_file_is_shipped_even_if_a_pattern_matches_it(repo):
    # git keeps tracked files whatever .gitignore says; so do we (Ray's own .gitignore reading aside)
    before = directory_uri(repo)
    (repo / "new.py").write_text("y = 2\n")
    assert directory_uri(repo) != before


def test_the_executable_bit_is_part_of_the_hash_and_of_the_zip(repo, tmp_path):
    before = directory_uri(repo)
    (repo / "run.sh").chmod(0o755)
    after = directory_uri(repo)
    assert after != before
    (repo / "run.sh").chmod(0o644)
    assert directory_uri(repo) == before  # back to the same content and mode: the same package
    (repo / "run.sh").chmod(0o755)
    store = Store()
    uri, _ = upload_directory(store, repo)
    assert uri == after
    path = tmp_path / "pkg.zip"
    path.write_bytes(store.packages[uri])
    with zipfile.ZipFile(path) as z:
        assert (z.getinfo("run.sh").external_attr >> 16) & 0o111  # Ray 2.60's unzip restores it


def test_outside_git_only_dot_git_and_excludes_go(tmp_path):
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "app.py").write_text("x = 1\n")
    before = directory_uri(folder)
    (folder / "big.bin").write_bytes(b"\x01" * 100)
    assert directory_uri(folder) != before
    assert directory_uri(folder, ["big.bin"]) == before


def test_each_applications_excludes_are_honoured(repo, tmp_path):
    (repo / "data").mkdir()
    (repo / "data" / "model.bin").write_bytes(b"\x02" * 100)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "data")
    config = {"applications": [
        {"name": "full", "import_path": "app:x", "runtime_env": {"working_dir": "."}},
        {"name": "slim", "import_path": "app:x", "runtime_env": {"working_dir": ".", "excludes": ["data/"]}},
        {"name": "slim2", "import_path": "app:x", "runtime_env": {"working_dir": ".", "excludes": ["data/"]}},
    ]}
    store = Store()
    out, shipped = ship_working_dirs(store, config, base_dir=repo)
    uris = {r["app"]: r["uri"] for r in shipped}
    assert uris["full"] != uris["slim"] and uris["slim"] == uris["slim2"]
    assert len(store.packages) == 2
    assert "data/model.bin" in names(store.packages[uris["full"]], tmp_path)
    assert not any(n.startswith("data") for n in names(store.packages[uris["slim"]], tmp_path))
    assert out["applications"][1]["runtime_env"]["excludes"] == ["data/"]  # Ray ignores it for a gcs:// URI


@pytest.mark.parametrize("in_git", [True, False])
def test_what_the_tool_writes_is_never_shipped(tmp_path, in_git):
    """No .gitignore names them, in git or not, at any depth: the report folder (timings change every
    run), the Action's temporary requirements file and the bytecode importing the app leaves. So a
    second release of the same commit has the same package and is `unchanged`."""
    root = tmp_path / "checkout"
    (root / "pkg").mkdir(parents=True)
    (root / "app.py").write_text("x = 1\n")
    (root / "pkg" / "mod.py").write_text("y = 2\n")
    if in_git:
        git(root, "init", "-q", "-b", "main")
        git(root, "add", "-A")
        git(root, "commit", "-q", "-m", "v1")
    before = directory_uri(root)
    (root / ".ci-serve").mkdir()
    (root / ".ci-serve" / "smoke.json").write_text('{"elapsed_s": 12.3}\n')
    (root / ".ci-serve-req-abc.txt").write_text("requests\n")
    for folder in (root, root / "pkg"):
        (folder / "__pycache__").mkdir()
        (folder / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"\x00" * 32)
    (root / "pkg" / "stray.pyc").write_bytes(b"\x00" * 8)
    assert directory_uri(root) == before
    store = Store()
    uri, _ = upload_directory(store, root)
    assert names(store.packages[uri], tmp_path) >= {"app.py", "pkg/mod.py"}
    assert not any(".ci-serve" in n or n.endswith(".pyc") or "__pycache__" in n
                   for n in names(store.packages[uri], tmp_path))
