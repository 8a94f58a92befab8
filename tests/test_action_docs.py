"""action.yml is the contract: the README's tables and example workflows must say the same."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
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
    """The tables as they must appear in the README and docs/action.md, written independently of the
    generator (scripts/action-docs) so that a bug there cannot hide a stale table."""
    data = action()
    lines = ["| input | default | description |", "| --- | --- | --- |"]
    for name, spec in data["inputs"].items():
        default = str(spec.get("default", ""))
        lines.append(f"| `{name}` | {f'`{default}`' if default else '(empty)'} | {_one_line(spec['description'])} |")
    lines += ["", "| output | description |", "| --- | --- |"]
    for name, spec in data["outputs"].items():
        lines.append(f"| `{name}` | {_one_line(spec['description'])} |")
    return "\n".join(lines)


@pytest.mark.parametrize("name", ["README.md", "docs/action.md"])
def test_tables_of_every_input_and_output_match_action_yml(name: str):
    text = (REPO / name).read_text(encoding="utf-8")
    assert expected_tables() in text, f"{name}: action tables are out of date; run scripts/action-docs"
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "action-docs"), "--check"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    for input_name in action()["inputs"]:
        assert f"| `{input_name}` |" in text, input_name


def test_docs_say_preview_url_is_set_by_a_hold_and_what_several_apps_give():
    spec = action()["outputs"]["preview-url"]["description"]
    assert "After a hold" in spec and "several applications, the first one's" in spec and "preview_urls" in spec


def test_every_release_example_sets_environment_url_from_what_serves_or_the_preview():
    for path in sorted((REPO / "examples" / "workflows").glob("release-*.yml")):
        jobs = yaml.safe_load(path.read_text(encoding="utf-8"))["jobs"]
        urls = {name: job["environment"]["url"] for name, job in jobs.items() if "environment" in job}
        if path.name == "release-with-approval.yml":  # the reviewers see the held version, before it serves
            assert urls == {"promote": "${{ needs.hold.outputs.preview-url }}"}
        else:
            assert urls and set(urls.values()) == {"${{ steps.serve.outputs.url }}"}, path.name


def test_the_approval_example_holds_then_promotes_in_a_protected_environment_or_aborts():
    body = (REPO / "examples" / "workflows" / "release-with-approval.yml").read_text(encoding="utf-8")
    flow = yaml.safe_load(body)
    on = flow[True]  # YAML 1.1 reads the key `on` as true
    assert on["push"]["tags"] == ["v*"] and on["workflow_dispatch"]["inputs"]["release"]["required"] is True
    jobs = flow["jobs"]
    assert list(jobs) == ["hold", "promote", "abort"]

    def serve(job: str) -> dict:
        step, = [s for s in jobs[job]["steps"] if s.get("uses", "").startswith("serve-deploy-action/")]
        assert set(step["with"]) <= set(action()["inputs"]), job
        return step["with"]

    hold, promote, abort = serve("hold"), serve("promote"), serve("abort")
    assert hold["command"] == "deploy" and hold["hold"] is True and "release" not in hold  # $GITHUB_SHA
    assert jobs["hold"]["outputs"] == {"preview-url": "${{ steps.serve.outputs.preview-url }}",
                                       "release": "${{ steps.serve.outputs.release }}"}
    assert jobs["promote"]["needs"] == "hold" and jobs["promote"]["environment"]["name"] == "production"
    assert promote["command"] == "promote" and promote["release"] == "${{ needs.hold.outputs.release }}"
    assert jobs["abort"]["needs"] == ["hold", "promote"] and "failure()" in jobs["abort"]["if"]
    assert "workflow_dispatch" in jobs["abort"]["if"] and "environment" not in jobs["abort"]
    assert abort["command"] == "abort"
    assert abort["release"].startswith("${{ inputs.release || needs.hold.outputs.release")
    for name in ("config", "address", "serve-url", "ray-auth-token"):  # one cluster, one config, all three jobs
        assert hold[name] == promote[name] == abort[name], name
    assert "Required reviewers" in body  # the comments say how to set the environment up


def test_every_input_has_a_description_and_a_default_and_kebab_case_name():
    data = action()
    assert data["runs"]["using"] == "docker"
    for name, spec in data["inputs"].items():
        assert re.fullmatch(r"[a-z][a-z0-9]*(-[a-z0-9]+)*", name), name
        assert spec.get("description") and "default" in spec, name
    assert {"result", "report", "junit", "live-app", "plan", "live-address", "standby-address"} <= set(data["outputs"])
    assert {"url", "preview-url"} <= set(data["outputs"])
    for name in ("command", "target", "config", "requests", "app-dir", "address", "ray-auth-token", "strategy",
                 "working-dir", "timeout", "requirements", "standby-address", "standby-url", "switch-command",
                 "verify-url", "serve-url", "ca-cert", "insecure", "ray-auth-token-path", "extra-args"):
        assert name in data["inputs"], name


def test_readme_shows_both_example_workflows_verbatim():
    text = region()
    for name in ("pr-smoke.yml", "release-blue-green.yml"):
        body = (REPO / "examples" / "workflows" / name).read_text(encoding="utf-8")
        assert body.strip() in text, f"README action region must include examples/workflows/{name} verbatim"


PIN = REPO / "scripts" / "pin-action-image"
DIGEST = "sha256:" + "ab" * 32


def _pin(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(PIN), *args], capture_output=True, text=True, timeout=60)


def test_the_release_pins_action_yml_to_the_version_and_digest_and_checks_it(tmp_path):
    """What .github/workflows/release.yml runs on the released commit: only the image line changes."""
    copy = tmp_path / "action.yml"
    original = (REPO / "action.yml").read_text(encoding="utf-8")
    copy.write_text(original, encoding="utf-8")
    ref = f"docker://ghcr.io/octo/serve-deploy-action:v1.2.3@{DIGEST}"
    assert _pin("--check", ref, f"--file={copy}").returncode == 1  # the development tree names no release
    assert _pin(ref, f"--file={copy}").returncode == 0
    pinned = copy.read_text(encoding="utf-8")
    assert yaml.safe_load(pinned)["runs"]["image"] == ref
    assert len(original.splitlines()) == len(pinned.splitlines())
    changed = [(a, b) for a, b in zip(original.splitlines(), pinned.splitlines(), strict=True) if a != b]
    assert len(changed) == 1
    assert _pin("--check", ref, f"--file={copy}").returncode == 0
    for moving in ("docker://ghcr.io/octo/serve-deploy-action:v1", "docker://ghcr.io/octo/serve-deploy-action:v1.2.3",
                   f"docker://ghcr.io/octo/serve-deploy-action:latest@{DIGEST}"):
        assert _pin(moving, f"--file={copy}").returncode == 2, moving


def test_the_release_workflow_pins_and_checks_the_image():
    body = (REPO / ".github" / "workflows" / "release.yml").read_text(encoding="utf-8")
    assert 'scripts/pin-action-image "$ref"' in body and 'scripts/pin-action-image --check "$PINNED"' in body
    assert 'git show "${tag}:action.yml"' in body  # the pushed tags are read back


def test_the_readme_excerpt_of_the_approval_example_says_what_the_example_does():
    """The README shows the heart of release-with-approval.yml, not all of it: the same jobs, links
    between them, conditions and the inputs it shows."""
    text = region()
    assert "examples/workflows/release-with-approval.yml" in text
    excerpt = yaml.safe_load(text.split("The heart of it")[1].split("```yaml\n", 1)[1].split("```", 1)[0])["jobs"]
    example = yaml.safe_load((REPO / "examples" / "workflows" / "release-with-approval.yml").read_text())["jobs"]
    assert list(excerpt) == list(example)
    for name, job in excerpt.items():
        for key in ("needs", "if", "outputs", "environment"):
            assert job.get(key) == example[name].get(key), (name, key)
        shown = [s["with"] for s in job["steps"] if "with" in s]
        real = [s["with"] for s in example[name]["steps"] if str(s.get("uses", "")).startswith("serve-deploy")]
        for key, value in shown[0].items():
            assert value == "..." or real[0][key] == value, (name, key)


def test_the_progressive_example_walks_steps_with_every_traffic_input_from_variables_and_secrets():
    body = (REPO / "examples" / "workflows" / "release-progressive.yml").read_text(encoding="utf-8")
    flow = yaml.safe_load(body)
    assert flow[True]["push"]["tags"] == ["v*"]
    steps = flow["jobs"]["deploy"]["steps"]
    serve, = [s for s in steps if s.get("uses", "").startswith("serve-deploy-action/")]
    given = serve["with"]
    assert set(given) <= set(action()["inputs"])
    assert "switch-command" not in given and "socat" in given["traffic-command"]
    for name in ("traffic-steps", "step-interval", "prometheus-url", "prometheus-header", "max-error-rate",
                 "max-p99-ms", "min-requests", "metrics-lag"):
        assert name in given, name
    assert given["prometheus-header"] == "${{ secrets.PROMETHEUS_HEADER }}"  # a secret, never a variable
    assert given["standby-address"] == "${{ steps.roles.outputs.standby-address }}"
    assert set(serve["env"]) == {"HAPROXY_API", "NEW_SERVER", "OLD_SERVER"}  # what the traffic command reads
    assert "docs/progressive.md" in body and "stats socket ipv4@" in body
