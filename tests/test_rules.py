"""Issue 25: Serve config rules per Ray release, generated from each release's own ray.serve.schema
(ci_serve/config/rules/, scripts/gen-serve-rules), and validate picking the release."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from ci_serve.config import rulegen
from ci_serve.config.rules import known_files, own_ray_version, rules_for
from ci_serve.config.validate import validate_config
from ci_serve.errors import InputError

from .conftest import REPO, ci_serve_cmd

NEW = """applications:
  - name: greet
    import_path: graph_app:app
    deployments:
      - name: Greeter
        max_ongoing_requests: 5
"""
OLD = NEW.replace("max_ongoing_requests", "max_concurrent_queries")


def test_the_committed_rules_are_what_ray_itself_says() -> None:
    """The CI check: this environment's Ray regenerated (about 3 s), and every other release whose
    package is already in the cache (scripts/gen-serve-rules --keep); none is installed here."""
    assert rulegen.check() == []
    assert own_ray_version() in rulegen.checkable()


def test_every_minor_from_2_9_to_the_images_ray_has_rules() -> None:
    files = known_files()
    minors = set(files)
    assert (2, 9) in minors and rules_for(None).version == own_ray_version()
    # every minor Ray published from 2.9 on (it skipped 2.13-2.19 and 2.25-2.29)
    published = {(2, m) for m in [*range(9, 13), *range(20, 25), *range(30, 61)]}
    assert published <= minors, sorted(published - minors)
    for path in files.values():
        data = json.loads(path.read_text())
        assert path.name == f"ray-{'.'.join(data['ray'].split('.')[:2])}.json"
        assert "applications[].deployments[]" in data["sections"]


@pytest.mark.parametrize("version, rules", [("2.9.3", "2.9"), ("2.9.0", "2.9"), ("2.15.1", "2.12"),
                                            ("2.27.0", "2.24"), ("2.60.0", "2.60"), ("2.40", "2.40")])
def test_a_release_picks_its_minors_rules_or_the_nearest_older(version: str, rules: str) -> None:
    assert rules_for(version).release == rules


@pytest.mark.parametrize("version, message", [("2.8.1", "older than the releases"), ("9.0.0", "no Serve config rules"),
                                              ("latest", "not a Ray release number")])
def test_a_release_without_rules_is_a_clear_error(version: str, message: str) -> None:
    with pytest.raises(InputError) as err:
        rules_for(version)
    assert message in err.value.message and err.value.exit_code == 2


def _check(tmp_path: Path, text: str, version: str | None):
    path = tmp_path / "serve_config.yaml"
    path.write_text(text)
    return validate_config(path, check_imports=False, ray_version=version)


def test_on_2_9_max_ongoing_requests_is_an_error_and_max_concurrent_queries_the_real_field(tmp_path: Path) -> None:
    new = _check(tmp_path, NEW, "2.9.3")
    assert [(p.path, p.line, p.column) for p in new.problems] == [
        ("applications[0].deployments[0].max_ongoing_requests", 6, 9)]
    assert "not known to Ray 2.9 (added in Ray 2.10)" in new.problems[0].message
    assert "write `max_concurrent_queries`" in new.problems[0].hint
    old = _check(tmp_path, OLD, "2.9.3")
    assert old.ok and old.warnings == []
    assert _check(tmp_path, OLD.replace(": 5", ": 0"), "2.9.3").problems[0].message.startswith("value 0 must be")


def test_on_the_images_ray_max_concurrent_queries_is_a_warning_naming_max_ongoing_requests(tmp_path: Path) -> None:
    assert _check(tmp_path, NEW, None).ok and _check(tmp_path, NEW, None).warnings == []
    old = _check(tmp_path, OLD, None)
    assert old.ok and [(w.path, w.line) for w in old.warnings] == [
        ("applications[0].deployments[0].max_concurrent_queries", 6)]
    assert "max_ongoing_requests" in old.warnings[0].hint
    assert f"ignored by Ray {rules_for(None).release}" in old.warnings[0].message


def test_a_release_that_deprecates_a_name_warns_with_the_field_it_expects(tmp_path: Path) -> None:
    old = _check(tmp_path, OLD, "2.30.0")
    assert old.ok and [w.message for w in old.warnings] == ["key 'max_concurrent_queries' is deprecated in Ray 2.30"]
    assert old.warnings[0].hint == "Ray 2.30 expects `max_ongoing_requests`; rename the key"


def test_a_value_only_newer_releases_take_is_an_error_on_older_ones(tmp_path: Path) -> None:
    text = NEW.replace("max_ongoing_requests: 5", "num_replicas: auto")
    assert _check(tmp_path, text, None).ok
    result = _check(tmp_path, text, "2.9.3")
    assert [(p.path, p.line) for p in result.problems] == [("applications[0].deployments[0].num_replicas", 6)]
    assert "Ray 2.10 and newer accept this value" in result.problems[0].hint


def test_duplicate_keys_in_user_config_are_warnings_at_both_lines(tmp_path: Path) -> None:
    """A `serve build` output with generation_kwargs.do_sample twice: Ray (PyYAML) keeps the last."""
    text = NEW + "        user_config:\n          generation_kwargs:\n            do_sample: true\n" \
                 "            max_new_tokens: 64\n            do_sample: false\n"
    result = _check(tmp_path, text, None)
    assert result.ok
    assert [(w.path, w.line) for w in result.warnings] == [
        ("applications[0].deployments[0].user_config.generation_kwargs.do_sample", 9),
        ("applications[0].deployments[0].user_config.generation_kwargs.do_sample", 11)]
    assert "keeps the value at line 11" in result.warnings[0].hint
    # outside user data a repeated key stays an error: Ray would run the last one, silently
    assert not _check(tmp_path, NEW + "        num_replicas: 1\n        num_replicas: 2\n", None).ok


def test_a_local_working_dir_in_a_rayservice_manifest_is_an_error_with_the_fix(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    manifest = tmp_path / "ray-service.yaml"
    manifest.write_text("apiVersion: ray.io/v1\nkind: RayService\nmetadata:\n  name: x\nspec:\n  serveConfigV2: |\n"
                        "    applications:\n      - name: a\n        import_path: m:app\n        runtime_env:\n"
                        '          working_dir: "."\n')
    result = validate_config(manifest, check_imports=False)
    assert [(p.path, p.line) for p in result.problems] == [("applications[0].runtime_env.working_dir", 11)]
    assert "KubeRay" in result.problems[0].message
    assert "remote URI" in result.problems[0].hint and "ci-serve deploy" in result.problems[0].hint
    remote = manifest.read_text().replace('"."', "https://example.com/code.zip")
    manifest.write_text(remote)
    assert validate_config(manifest, check_imports=False).ok


def test_the_command_says_which_release_and_reads_the_pin_as_smoke_does(tmp_path: Path, cli_env: dict) -> None:
    config = tmp_path / "serve_config.yaml"
    config.write_text(NEW)
    reqs = tmp_path / "requirements.txt"
    (tmp_path / "base.txt").write_text("ray[serve]==2.9.3  # the cluster's\n")
    reqs.write_text("-r base.txt\nnumpy\n")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(ci_serve_cmd("validate", str(config), "--no-import", *args), env=cli_env,
                              capture_output=True, text=True, timeout=120, cwd=REPO)

    report = tmp_path / "report.json"
    proc = run("--ray-version", "2.9.3", "--report", str(report))
    assert proc.returncode == 2 and "rules of Ray 2.9 (generated from Ray 2.9.3) for Ray 2.9.3" in proc.stderr
    assert json.loads(report.read_text())["rules"] == {"release": "2.9", "generated_from": "2.9.3"}
    assert f"{config}:6:9: applications[0].deployments[0].max_ongoing_requests" in proc.stderr
    proc = run("--requirements", str(reqs))
    assert proc.returncode == 2 and f"pinned by {reqs}" in proc.stderr
    proc = run()
    assert proc.returncode == 0 and f"for Ray {own_ray_version()} (the Ray ci-serve runs on" in proc.stderr
    proc = run("--ray-version", "2.8.1")
    assert proc.returncode == 2 and "older than the releases ci-serve validates for" in proc.stderr
    proc = run("--ray-version", "2.9.3", "--requirements", str(reqs))
    assert proc.returncode == 2 and "not both" in proc.stderr


def test_smoke_checks_the_config_by_the_rules_of_the_ray_it_tests_on(tmp_path: Path) -> None:
    """`smoke --ray-version 2.9.3 serve_config.yaml`: refused at the key's line before an environment is built."""
    from ci_serve.errors import ConfigError
    from ci_serve.smoke.target import resolve_target

    config = tmp_path / "serve_config.yaml"
    config.write_text(NEW)
    (tmp_path / "graph_app.py").write_text("app = None\n")
    with pytest.raises(ConfigError) as err:
        resolve_target(str(config), [], tmp_path, "2.9.3")
    assert [(p.path, p.line) for p in err.value.problems] == [
        ("applications[0].deployments[0].max_ongoing_requests", 6)]
    assert [a.name for a in resolve_target(str(config), [], tmp_path, None).apps] == ["greet"]
    assert resolve_target(str(config), [], tmp_path, "9.0.0").apps  # newer than the rules: the newest rules



def test_a_key_the_release_still_applies_gets_no_ignored_warning(tmp_path: Path) -> None:
    """Ray 2.9 deprecates a deployment's route_prefix but still applies it (override_deployment_info in
    its application_state.py): the 2.60 warning "Ray ignores a deployment's route_prefix" would be false
    there. Deprecated fields warn only when Ray names their successor."""
    text = OLD.replace("max_concurrent_queries: 5", "route_prefix: /old")
    assert _check(tmp_path, text, "2.9.3").warnings == []
    assert [w.path for w in _check(tmp_path, text, None).warnings] == ["applications[0].deployments[0].route_prefix"]
