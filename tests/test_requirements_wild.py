"""Requirements files as teams write them, and environments built under bad conditions (issue 14 review).

Pure and fake-installer tests: no Ray head is started. The fake ``uv`` stands in for the installer
only to make a build hang (to kill it) or count builds; the resolver's real messages are covered by
tests/test_pyenv_units.py and tests/test_smoke_pinned.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from ci_serve import secrets
from ci_serve.cluster import pyenv, versions
from ci_serve.cluster.pyenv import EnvBuildError, ensure_env
from ci_serve.errors import InputError
from ci_serve.smoke.runner import SmokeOptions, _requirements

PASSWORD = "s3cret-PW-4711"
TOKEN = "ghp-token-as-user-0815"

# shapes collected from public requirements files (ray-project/ray doc examples, KubeRay samples)
WILD = f"""# Serve app
--extra-index-url https://alice:{PASSWORD}@pypi.example.invalid/simple

ray[serve]==2.40.0 ; python_version >= "3.9"   # the cluster's Ray
fastapi==0.115.6
--index-url https://{TOKEN}@pkgs.example.invalid/simple
"""


@pytest.fixture(autouse=True)
def _clean_secrets():
    secrets.clear()
    yield
    secrets.clear()


def test_pins_in_the_shapes_teams_write() -> None:
    assert versions.pinned_ray(WILD) == "2.40.0"
    assert versions.pinned_ray("ray==2.40.0\n") == "2.40.0"  # without [serve]
    assert versions.pinned_ray("RAY[default,serve] === 2.9.3 # x\n") == "2.9.3"
    assert versions.pinned_ray("ray[serve,default]>=2.40,<2.41\n") is None  # a range: no single release
    assert versions.mentions_ray("ray[serve,default]>=2.40,<2.41\n")
    assert versions.pinned_ray("# ray[serve]==2.40.0\nfastapi\n") is None
    assert not versions.mentions_ray("raydp==1.0\nrayon\n")


def test_credentials_in_index_urls_are_registered_and_masked(tmp_path: Path) -> None:
    req = tmp_path / "requirements.txt"
    req.write_text(WILD)
    versions.read_requirements(str(req))
    shown = secrets.mask(WILD)
    assert PASSWORD not in shown and TOKEN not in shown
    assert secrets.mask_urls(WILD).count("://***@") == 2


def test_a_failed_install_never_shows_the_credentials() -> None:
    output = f"error: Failed to fetch: https://alice:{PASSWORD}@pypi.example.invalid/simple/x/"
    with pytest.raises(EnvBuildError) as err:
        pyenv._run([sys.executable, "-c", f"import sys; sys.stderr.write({output!r}); sys.exit(1)"],
                   dict(os.environ), WILD)
    text = json.dumps(err.value.as_dict())
    assert PASSWORD not in text and TOKEN not in text
    assert "https://***@pypi.example.invalid" in text
    with pytest.raises(EnvBuildError) as silent:  # the fallback sentence lists the packages, not option lines
        pyenv._run([sys.executable, "-c", "raise SystemExit(1)"], dict(os.environ), WILD)
    assert "installing ray[serve], fastapi failed" in silent.value.message
    assert PASSWORD not in json.dumps(silent.value.as_dict())


def test_includes_are_read_relative_to_the_including_file(tmp_path: Path) -> None:
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "common.txt").write_text("fastapi==0.115.6\n")
    (tmp_path / "requirements.txt").write_text("ray[serve]==2.40.0\n-r base/common.txt\n")
    text = versions.read_requirements(str(tmp_path / "requirements.txt"))
    assert "fastapi==0.115.6" in text and "\n-r" not in text
    (tmp_path / "base" / "common.txt").write_text("fastapi==0.115.12\n")  # the key follows the included file
    assert pyenv.env_key(versions.read_requirements(str(tmp_path / "requirements.txt"))) != pyenv.env_key(text)


@pytest.mark.parametrize("line,words", [
    ("-r missing.txt", ["line 2", "-r missing.txt", "no file"]),
    ("--requirement=requirements.txt", ["line 2", "includes itself"]),
    ("-c constraints.txt", ["line 2", "-c constraints.txt", "not supported"]),
])
def test_unsupported_lines_are_exit_2_naming_the_line(tmp_path: Path, line: str, words: list[str]) -> None:
    (tmp_path / "requirements.txt").write_text(f"ray[serve]==2.40.0\n{line}\n")
    with pytest.raises(InputError) as err:
        versions.read_requirements(str(tmp_path / "requirements.txt"))
    assert err.value.exit_code == 2
    for word in words:
        assert word in err.value.message


@pytest.mark.parametrize("version", ["2.5.0", "2.8.0", "1.13.1"])
def test_a_ray_too_old_for_the_driver_is_exit_2_with_the_range(tmp_path: Path, version: str) -> None:
    with pytest.raises(InputError) as err:
        _requirements(SmokeOptions(target="app:app", args=[], ray_version=version))
    assert err.value.exit_code == 2
    assert f"Ray {version} (pinned by --ray-version) is too old" in err.value.message
    assert "Ray 2.9 and newer" in err.value.message
    (tmp_path / "requirements.txt").write_text(f"ray=={version}\n")
    with pytest.raises(InputError, match="Ray 2.9 and newer"):
        _requirements(SmokeOptions(target="app:app", args=[], requirements=str(tmp_path / "requirements.txt")))
    versions.check_smoke_supported("2.9.3", "x")  # the oldest tested release passes
    versions.check_smoke_supported(None, "x")


def test_no_ray_line_means_the_newest_ray(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("fastapi==0.115.6\n")
    opts = SmokeOptions(target="app:app", args=[], requirements=str(tmp_path / "requirements.txt"))
    text, where = _requirements(opts)
    assert text.splitlines()[0] == "ray[serve]" and where.endswith("requirements.txt")


# --- builds under bad conditions, with a stand-in installer --------------------------------------

FAKE_UV = """#!{python}
import os, sys, time
from pathlib import Path
if sys.argv[1] == "venv":
    path = Path(sys.argv[-1]); (path / "bin").mkdir(parents=True)
    (path / "bin" / "python").symlink_to(sys.executable)
    sys.exit(0)
log = Path(os.environ["FAKE_UV_LOG"])
with open(log, "a") as fh:
    fh.write(f"{{os.getpid()}}\\n")
if os.environ.get("FAKE_UV_HANG"):
    while True:
        time.sleep(1)  # an install that never ends, until it is killed
"""


@pytest.fixture
def fake_uv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    uv = tmp_path / "fake-uv"
    uv.write_text(FAKE_UV.format(python=sys.executable))
    uv.chmod(0o755)
    monkeypatch.setattr(pyenv, "uv_executable", lambda: str(uv))
    monkeypatch.setenv("FAKE_UV_LOG", str(tmp_path / "uv.log"))
    return uv


def test_a_killed_build_is_rebuilt_not_reused(tmp_path: Path, fake_uv: Path) -> None:
    root, log = tmp_path / "envs", tmp_path / "uv.log"
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; from pathlib import Path; from ci_serve.cluster import pyenv; "
         f"pyenv.uv_executable = lambda: {str(fake_uv)!r}; "
         "pyenv.ensure_env('ray[serve]==2.40.0\\n', root=Path(sys.argv[1]))",
         str(root)], env=dict(os.environ, FAKE_UV_HANG="1"))
    try:
        while not (log.exists() and log.read_text().strip()):  # wait until the install runs
            assert child.poll() is None, "the build ended before it was killed"
            threading.Event().wait(0.05)
        child.send_signal(signal.SIGKILL)  # as a cancelled CI job: no cleanup runs
        child.wait()
    finally:
        for pid in log.read_text().split():
            os.kill(int(pid), signal.SIGKILL)
    half = root / pyenv.env_key("ray[serve]==2.40.0\n")
    assert (half / "bin" / "python").exists() and not (half / pyenv.MARKER).exists()
    env = ensure_env("ray[serve]==2.40.0\n", root=root)  # the lock died with the killed process
    assert env.built and (half / pyenv.MARKER).is_file()
    assert len(log.read_text().split()) == 2


def test_a_half_written_marker_is_rebuilt(tmp_path: Path, fake_uv: Path) -> None:
    root = tmp_path / "envs"
    ensure_env("six\n", root=root)
    marker = root / pyenv.env_key("six\n") / pyenv.MARKER
    marker.write_text('{"installer": "u')  # a marker cut off by a full disk
    assert ensure_env("six\n", root=root).built


def test_two_builds_of_the_same_requirements_build_once(tmp_path: Path, fake_uv: Path) -> None:
    root, results = tmp_path / "envs", []
    threads = [threading.Thread(target=lambda: results.append(ensure_env("six\n", root=root))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(e.built for e in results) == [False, True]
    assert len((tmp_path / "uv.log").read_text().split()) == 1


def test_an_unusable_cache_folder_is_exit_2_naming_it(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(EnvBuildError) as err:
        ensure_env("six\n", root=tmp_path / "file" / "envs")  # what a read-only or odd mount gives
    assert err.value.exit_code == 2
    assert str(tmp_path / "file" / "envs") in err.value.message and "CI_SERVE_ENV_CACHE" in err.value.hint


def test_a_full_disk_during_the_build_leaves_nothing(tmp_path: Path, fake_uv: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "envs"

    def full(path: Path, *args, **kwargs) -> str:
        (path / "bin").mkdir(parents=True)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pyenv, "_build", full)
    with pytest.raises(EnvBuildError, match="No space left on device") as err:
        ensure_env("six\n", root=root)
    assert err.value.exit_code == 2
    assert not (root / pyenv.env_key("six\n")).exists()


@pytest.mark.parametrize("line,added", [
    ('ray==2.40.0 ; python_version >= "3.9"', True), ("ray[default]==2.40.0", True),
    ("ray[serve]==2.40.0", False), ("ray[serve,default]>=2.40,<2.41", False), ("Ray[Serve] == 2.40.0", False),
])
def test_a_ray_pin_without_the_serve_extra_gets_it(tmp_path: Path, line: str, added: bool) -> None:
    (tmp_path / "requirements.txt").write_text(f"{line}\nfastapi==0.115.6\n")
    text, _ = _requirements(SmokeOptions(target="app:app", args=[], requirements=str(tmp_path / "requirements.txt")))
    assert (versions.SERVE_EXTRA_LINE in text) is added
    assert versions.pinned_ray(text) == versions.pinned_ray(line)  # the pin still names the release
