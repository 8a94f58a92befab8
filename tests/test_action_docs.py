"""action.yml is the contract: the README's tables and example workflows must say the same."""

from __future__ import annotations

import re

import yaml

from tests.container.runner import REPO

START, END = "<!-- action:start -->", "<!-- action:end -->"


def action() -> dict:
    return yaml.safe_load((REPO / "action.yml").read_text(encoding="utf-8"))


def region() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert START in text and END in text, "README.md needs the action region markers"
    return text[text.index(START):text.index(END)]


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def expected_tables() -> str:
    """The tables as they must appear in the README (printed on a mismatch, to paste)."""
    data = action()
    lines = ["| input | default | description |", "| --- | --- | --- |"]
    for name, spec in data["inputs"].items():
        default = str(spec.get("default", ""))
        lines.append(f"| `{name}` | {f'`{default}`' if default else '(empty)'} | {_one_line(spec['description'])} |")
    lines += ["", "| output | description |", "| --- | --- |"]
    for name, spec in data["outputs"].items():
        lines.append(f"| `{name}` | {_one_line(spec['description'])} |")
    return "\n".join(lines)


def test_readme_tables_match_action_yml():
    assert expected_tables() in region(), "README action tables are out of date; expected:\n" + expected_tables()


def test_every_input_has_a_description_and_a_default_and_kebab_case_name():
    data = action()
    assert data["runs"]["using"] == "docker"
    for name, spec in data["inputs"].items():
        assert re.fullmatch(r"[a-z]+(-[a-z]+)*", name), name
        assert spec.get("description") and "default" in spec, name
    assert {"result", "report", "junit", "live-app", "plan", "live-address", "standby-address"} <= set(data["outputs"])
    for name in ("command", "target", "config", "requests", "app-dir", "address", "ray-auth-token", "strategy",
                 "working-dir", "timeout", "requirements", "standby-address", "standby-url", "switch-command",
                 "verify-url"):
        assert name in data["inputs"], name


def test_readme_shows_both_example_workflows_verbatim():
    text = region()
    for name in ("pr-smoke.yml", "release-blue-green.yml"):
        body = (REPO / "examples" / "workflows" / name).read_text(encoding="utf-8")
        assert body.strip() in text, f"README action region must include examples/workflows/{name} verbatim"
