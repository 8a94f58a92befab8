"""The corpus: real Serve configs and RayService manifests other people wrote (tests/corpus/, where each
comes from is in SOURCES.tsv). Ray's own verdict and ci-serve's are recorded in VERDICTS.tsv (regenerate
with `python -m tests.corpus_verdicts`): no config Ray deploys is rejected, nothing crashes, and
validate, smoke and the action agree on every import path in it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from ci_serve.config.importpath import import_path_problem
from ci_serve.config.validate import validate_config
from ci_serve.errors import CiServeError, InputError

from .corpus_verdicts import CORPUS, corpus_files, read, verdicts

FILES = corpus_files()


@pytest.fixture(scope="module")
def measured() -> list[dict[str, str]]:
    return verdicts()


def test_the_corpus_is_real_and_sourced() -> None:
    assert len(FILES) >= 60
    sources = [line.split("\t") for line in (CORPUS / "SOURCES.tsv").read_text().splitlines()[1:]]
    assert sorted(s[0] for s in sources) == sorted(p.name for p in FILES)
    assert all(len(s) == 4 and "/" in s[1] and re.fullmatch(r"[0-9a-f]{40}", s[3]) for s in sources), sources
    assert len({s[1] for s in sources}) >= 4  # several public repositories, not one


def test_no_config_ray_deploys_is_rejected_and_nothing_crashes(measured: list[dict[str, str]]) -> None:
    assert [r["file"] for r in measured if r["ci_serve"] == "traceback"] == []
    rejected_valid = [(r["file"], r["why"]) for r in measured if r["ray"] == "valid" and r["ci_serve"] != "accepted"]
    assert rejected_valid == []
    # the other way round, each with its reason: Ray's schema refuses what ci-serve upgrades (2.0 files)
    for row in measured:
        if row["ray"] == "invalid" and row["ci_serve"] == "accepted":
            assert "2.0 upgraded" in row["format"], row
        if row["ray"] == "cluster-rejects":  # the schema takes it, the controller's DeploymentConfig does not
            assert row["ci_serve"] == "rejected", row


def test_recorded_verdicts_still_hold(measured: list[dict[str, str]]) -> None:
    recorded = {r["file"]: r for r in read()}
    assert {r["file"]: r for r in measured} == recorded, "run `python -m tests.corpus_verdicts` and review the diff"


def corpus_import_paths() -> list[str]:
    found: set[str] = set()
    for path in FILES:
        for value in re.findall(r"^\s*(?:- )?import_path:\s*(.+?)\s*$", path.read_text(), re.M):
            found.add(yaml.safe_load(value) if value[0] in "'\"" else value)
    return sorted(found)


IMPORT_PATHS = corpus_import_paths()


def test_the_corpus_has_import_paths_ray_imports_that_are_not_identifiers() -> None:
    assert len(IMPORT_PATHS) >= 40
    assert "ray-operator.config.samples.vllm.serve_tpu:model" in IMPORT_PATHS
    assert all(import_path_problem(p) is None for p in IMPORT_PATHS if "-" in p.split(":")[0])


@pytest.mark.parametrize("text", IMPORT_PATHS)
def test_validate_smoke_and_the_action_agree_on_every_import_path(text: str, tmp_path: Path) -> None:
    from ci_serve.action.inputs import read_inputs
    from ci_serve.smoke.target import resolve_target

    config = tmp_path / "serve_config.yaml"
    config.write_text(yaml.safe_dump({"applications": [{"name": "a", "import_path": text}]}))
    by_validate = not any(p.path.endswith("import_path") for p in validate_config(config, check_imports=False).problems)
    try:
        resolve_target(text, [], tmp_path)
        by_smoke = True
    except InputError as err:
        by_smoke = "not found in" in err.message  # the path was taken; only its module is not here
    try:
        read_inputs({"INPUT_TARGET": text, "INPUT_COMMAND": "smoke"}, tmp_path)
        by_action = True
    except InputError:
        by_action = False
    assert by_validate == by_smoke == by_action == (import_path_problem(text) is None)


ACCEPTED = [p for p in FILES if p.name in {r["file"] for r in read() if r["ci_serve"] == "accepted"}]


@pytest.mark.parametrize("path", ACCEPTED, ids=[p.name for p in ACCEPTED])
def test_smoke_takes_every_config_validate_accepts(path: Path) -> None:
    from ci_serve.smoke.target import resolve_target

    try:
        target = resolve_target(str(path), [], CORPUS)
    except CiServeError as err:  # only the application's own module may be missing on this machine
        assert isinstance(err, InputError) and "not found in" in err.message, err.message
        return
    assert [a.name for a in target.apps] == [str(a.get("name", "default"))
                                             for a in validate_config(path, check_imports=False).config.applications]
