"""The corpus: real Serve configs and manifests other people wrote (tests/corpus/; where each comes from,
and the Ray release it was written for, is in SOURCES.tsv). Each file is validated for its own release
and must get the verdict VERDICTS.tsv expects, which comes from Ray's own schema of (the installed release
nearest to) that release and the file's known facts, never from ci-serve (tests/corpus_verdicts.py;
regenerate with `python -m tests.corpus_verdicts` and review the diff). validate, smoke and the action
must also agree on every import path in it."""

from __future__ import annotations

import inspect
import re
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml

from ci_serve.config.importpath import import_path_problem
from ci_serve.config.validate import validate_config
from ci_serve.errors import CiServeError, InputError

from .corpus_verdicts import CORPUS, _judge_here, ci_serve_verdict, classify, corpus_files, read, sources

FILES = corpus_files()
RECORDED = {r["file"]: r for r in read()}
#: files ci-serve still judges wrongly, each with why (must stay wrong while listed: remove it once fixed)
KNOWN_WRONG: dict[str, str] = {}


@pytest.fixture(scope="module")
def measured() -> dict[str, tuple[str, int, str]]:
    return {p.name: ci_serve_verdict(p, RECORDED[p.name]["validate_for"]) for p in FILES}


def test_the_corpus_is_real_and_sourced() -> None:
    src = sources()
    assert len(FILES) >= 250
    assert sorted(src) == sorted(p.name for p in FILES) == sorted(RECORDED)
    for row in src.values():
        assert "/" in row["repository"] and re.fullmatch(r"[0-9a-f]{40}", row["commit"]), row
        assert row["release"] and row["release_from"], row  # the Ray release it was written for, and how we know
    assert len({r["repository"] for r in src.values()}) >= 10  # many public repositories, not one
    kinds = {r["kind"] for r in src.values()}
    assert {"kuberay-sample-rayservice", "kuberay-sample-raycluster", "ray-test-config", "rayllm-serve-config",
            "third-party-serve-config", "third-party-rayservice"} <= kinds
    tags = {r["ref"] for r in src.values() if r["repository"] == "ray-project/kuberay" and r["ref"] != "-"}
    assert {f"v1.{n}.0" for n in range(8)} <= tags  # every KubeRay minor release from 1.0
    targets = {r["validate_for"] for r in RECORDED.values()}
    assert len({".".join(t.split(".")[:2]) for t in targets}) >= 15  # validated for many releases, not one


def test_each_file_gets_the_verdict_its_release_expects(measured: dict[str, tuple[str, int, str]]) -> None:
    assert [name for name, (ours, _, _) in measured.items() if ours in ("traceback", "no-rules")] == []
    wrong = {name: f"expected {RECORDED[name]['expected']} ({RECORDED[name]['basis']}), ci-serve {ours}: {why}"
             for name, (ours, _, why) in measured.items()
             if (RECORDED[name]["expected"] == "accept") != (ours == "accepted")}
    assert {n: w for n, w in wrong.items() if n not in KNOWN_WRONG} == {}  # 0 valid rejected, 0 invalid accepted
    assert sorted(n for n in KNOWN_WRONG if n not in wrong) == []  # fixed: take it off KNOWN_WRONG


def test_recorded_ci_serve_verdicts_still_hold(measured: dict[str, tuple[str, int, str]]) -> None:
    # the warnings were recorded with the per-release rules (issue 25): a tree without them warns about
    # legacy keys older releases know (18 files), so only the verdicts are compared there
    per_release = "ray_version" in inspect.signature(validate_config).parameters
    changed = {name: (RECORDED[name]["ci_serve"], RECORDED[name]["warnings"], ours, warnings)
               for name, (ours, warnings, _) in measured.items()
               if (RECORDED[name]["ci_serve"], RECORDED[name]["warnings"] if per_release else "")
               != (ours, str(warnings) if per_release else "")}
    assert changed == {}, "run `python -m tests.corpus_verdicts` and review the diff"


def test_ray_verdicts_recorded_for_the_installed_ray_still_hold() -> None:
    """Ray's verdicts by the .venv's release are re-derived here; those by the cached older releases are
    re-derived by `python -m tests.corpus_verdicts` (one Python start per release)."""
    own = version("ray")
    mine = [p for p in FILES if RECORDED[p.name]["ray_by"] == own]
    assert len(mine) >= 50
    items = [(p.name, text) for p in mine if (text := classify(p)[1]) is not None]
    again = _judge_here(items)
    assert {n: (v["ray"], ",".join(v["unknown"]) or "-") for n, v in again.items()} == \
        {n: (RECORDED[n]["ray"], RECORDED[n]["unknown"]) for n, _ in items}


def test_the_expected_rejections_each_have_a_reason() -> None:
    rejected = [r for r in RECORDED.values() if r["expected"] == "reject"]
    assert rejected and all(r["basis"].startswith(("Ray ", "fact: ")) for r in rejected), rejected


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
