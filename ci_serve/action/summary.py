"""The job summary (Markdown) and the ``::error`` annotations, from the commands' reports: pure.

The summary shows, for a reader who opens the run: the result, the smoke requests as a table, the
plan as a table, each command's steps with their times, and on failure the cause and the fix (the
error's message and hint). Every string passes :func:`ci_serve.secrets.mask` on its way out.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ci_serve import secrets
from ci_serve.action import followup
from ci_serve.action.inputs import Inputs
from ci_serve.action.steps import RELEASE_WRITERS, Outcome, preview_urls, release_of
from ci_serve.deploy.traffic import markdown_table

_ICON = {"passed": "✅", "deployed": "✅", "unchanged": "✅", "held": "⏸️", "aborted": "⏹️", "failed": "❌",
         "rolled-back": "↩️", "error": "⚠️"}
_MAX_ROWS = 200
_MAX_DETAIL = 20_000  # characters of an error's details (a log tail); GitHub caps a summary at 1 MiB


def cell(value: Any) -> str:
    """One Markdown table cell: pipes escaped, newlines as <br>, secrets masked."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    text = secrets.mask(str(value))
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", "").replace("\n", "<br>")


def table(headers: list[str], rows: Iterable[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    rows = list(rows)
    for row in rows[:_MAX_ROWS]:
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    if len(rows) > _MAX_ROWS:
        lines.append(f"\n{len(rows) - _MAX_ROWS} more rows in the report.")
    return lines


def requests_section(requests: list[dict[str, Any]]) -> list[str]:
    rows: list[list[Any]] = []
    for req in requests:
        if not isinstance(req, dict):
            continue
        ok = req.get("passed")
        rows.append([req.get("name"), req.get("app"), "✅ pass" if ok else "❌ fail", req.get("status"),
                     req.get("elapsed_ms"), req.get("error")])
    if not rows:
        return []
    passed = sum(1 for r in rows if r[2].endswith("pass"))
    return [f"**Smoke requests:** {passed} of {len(rows)} passed", "",
            *table(["request", "app", "result", "status", "ms", "error"], rows), ""]


def ray_section(report: dict[str, Any]) -> list[str]:
    """Which Ray the smoke test ran on; a warning when the cluster's Ray differs from the app's pin."""
    lines = []
    if report.get("ray_version"):
        lines += [f"Ran on **Ray {cell(report['ray_version'])}**.", ""]
    skew = report.get("ray_skew")
    if isinstance(skew, dict) and skew.get("same") is False:
        lines += [f"> ⚠️ **Ray version skew:** the cluster runs Ray {cell(skew.get('cluster'))}, the app pins "
                  f"Ray {cell(skew.get('app'))} ({cell(skew.get('source'))})."]
        lines += [f"> - {cell(d)}" for d in skew.get("differences") or []]
        lines.append("")
    return lines


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def plan_section(plan: dict[str, Any]) -> list[str]:
    apps = [a for a in plan.get("applications") or [] if isinstance(a, dict)]
    lines = [f"**Plan:** verdict `{cell(plan.get('verdict', '?'))}`", ""]
    if not apps:
        return lines + ["No application changes.", ""]
    preferred = ["name", "app", "action", "change", "verdict", "reason", "live_name", "live_version", "candidate"]
    keys = [k for k in preferred if any(a.get(k) not in (None, "") for a in apps)]
    if not keys:  # an unknown shape: its scalar fields, in the order the report has them
        for app in apps:
            keys += [k for k, v in app.items() if k not in keys and _scalar(v)]
    keys = keys[:7]
    rows = [[a.get(k) if _scalar(a.get(k)) else "…" for k in keys] for a in apps]
    return lines + table(keys, rows) + [""]


def steps_section(steps: list[dict[str, Any]]) -> list[str]:
    rows = [[s.get("name"), s.get("status"), _seconds(s.get("elapsed_s")), s.get("detail")]
            for s in steps if isinstance(s, dict)]
    return table(["step", "status", "time", "detail"], rows) + [""] if rows else []


def _seconds(value: Any) -> str:
    return f"{value:.1f} s" if isinstance(value, (int, float)) else ""


def problems_section(problems: list[dict[str, Any]]) -> list[str]:
    rows = [[_where(p), p.get("path"), p.get("message"), p.get("hint")] for p in problems]
    return [f"**Config problems:** {len(rows)}", "", *table(["where", "field", "problem", "fix"], rows), ""]


def _where(problem: dict[str, Any]) -> str:
    where = str(problem.get("file") or "")
    if problem.get("line"):
        where += f":{problem['line']}"
        if problem.get("column"):
            where += f":{problem['column']}"
    return where


def failure_section(errors: list[dict[str, Any]]) -> list[str]:
    lines: list[str] = []
    for err in errors:
        if not isinstance(err, dict):
            continue
        lines.append(f"**What happened:** {cell(err.get('message'))}")
        if err.get("hint"):
            lines += ["", f"**What to do:** {cell(err.get('hint'))}"]
        if err.get("details"):
            detail = secrets.mask(str(err["details"])[-_MAX_DETAIL:]).replace("```", "ʼʼʼ")
            lines += ["", "<details><summary>details</summary>", "", "```", detail.rstrip(), "```", "",
                      "</details>"]
        lines.append("")
    return lines


def problems_of(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Config problems from a report: its ``problems`` section, or those carried by its errors."""
    found = [p for p in report.get("problems") or [] if isinstance(p, dict)]
    for err in report.get("errors") or []:
        if isinstance(err, dict):
            found += [p for p in err.get("problems") or [] if isinstance(p, dict) and p not in found]
    return found


def warnings_section(warnings: list[str]) -> list[str]:
    if not warnings:
        return []
    lines = [f"**Warnings:** {len(warnings)}", ""]
    for text in warnings[:_MAX_ROWS]:
        first, *rest = str(text).splitlines() or [""]
        lines.append(f"- ⚠️ {cell(first)}" + "".join(f"<br>{cell(r.strip())}" for r in rest))
    return lines + [""]


def changes_section(outcomes: list[Outcome]) -> list[str]:
    """What the run changed on the cluster, one sentence per deploy, promote or abort (none: a smoke
    test touches no cluster)."""
    writers = [o for o in outcomes if o.invocation.command in RELEASE_WRITERS]
    if not writers:
        return ["**Changed on the cluster:** nothing (no deploy ran; a smoke test runs on a temporary head in "
                "the job, stopped at its end).", ""]
    return [line for outcome in writers for line in (f"**Changed on the cluster:** {_change(outcome)}", "")]


def _change(outcome: Outcome) -> str:
    report, command = outcome.report or {}, outcome.invocation.command
    result = str(report.get("result") or "")
    release = cell(release_of(outcome) or "?")
    live = cell(report.get("live_app") or "?")
    packages = [p for p in report.get("packages") or [] if isinstance(p, dict)]
    uploaded = sum(1 for p in packages if p.get("uploaded"))
    plan = report.get("plan") if isinstance(report.get("plan"), dict) else {}
    changes = [f"`{cell(a.get('name'))}`: {cell(a.get('change'))}" for a in (plan or {}).get("applications") or []
               if isinstance(a, dict) and a.get("change") not in (None, "none", "unchanged")]
    if outcome.exit_code == 2:
        return "nothing (refused before any write)."
    if outcome.exit_code not in (0, 1):
        return "**the previous state could not be restored**: see what to do below."
    if result == "unchanged" and command == "abort":
        return f"nothing: no release `{release}` was held here (see the warning)."
    if result == "unchanged":
        return "nothing: the cluster already serves this version (no package uploaded, no config written)."
    if outcome.exit_code == 1 and command == "deploy":
        return ("nothing lasting: the candidate was removed and the version that passed its checks keeps "
                f"serving ({result or 'failed'}); {uploaded} package(s) were uploaded.")
    if outcome.exit_code == 1:
        return (f"release `{release}` was not {'promoted' if command == 'promote' else 'aborted'}; a version "
                f"that passed its checks is seen serving ({result or 'failed'}): see what happened below.")
    if result == "held":
        was = f"what serves (`{live}`) is untouched until it is promoted" if report.get("live_app") else \
            "no version served before it, and it takes no traffic until it is promoted"
        return (f"release `{release}` is **held** for review: its candidate is written, RUNNING and checked on "
                f"its preview URL; {was}; {uploaded} package(s) uploaded.")
    if command == "abort":
        return f"release `{release}` aborted: its held candidate was removed; what serves (`{live}`) is as it was."
    if command == "promote":
        return f"release `{release}` promoted: it takes the traffic now (live: `{live}`)."
    return (f"deployed ({', '.join(changes) or 'config written'}); {uploaded} package(s) uploaded; "
            f"live: `{live}`.")


def hold_section(outcome: Outcome, inputs: Inputs | None) -> list[str]:
    """A held release: its preview URLs, and how to promote or abort it (command and workflow step)."""
    urls = preview_urls(outcome.report or {})
    release = release_of(outcome)
    if not urls and not release:
        return []
    lines = [f"### ⏸️ Release `{cell(release)}` is held for review", ""]
    if urls:
        lines += ["Try the new version on its preview URL before it takes any traffic:", "",
                  *table(["application", "preview URL"], [[app, url] for app, url in urls.items()]), ""]
    if inputs is not None and inputs.address and release:
        lines += followup.next_steps(inputs, release)
    return lines


def held_releases_section(report: dict[str, Any]) -> list[str]:
    """`status`: the releases held on the cluster, waiting for a promote or an abort."""
    managed = report.get("managed") if isinstance(report.get("managed"), dict) else {}
    rows = [[logical, h.get("release"), h.get("candidate"), h.get("status"), h.get("preview_url"),
             _ago(h.get("held_ago_s"))]
            for logical, m in (managed or {}).items() if isinstance(m, dict)
            for h in m.get("held") or [] if isinstance(h, dict)]
    standby = report.get("standby") if isinstance(report.get("standby"), dict) else {}
    rows += [[h.get("app"), h.get("release"), f"{h.get('standby_app')} (standby)", h.get("status"),
              h.get("preview_url"), _ago(h.get("held_ago_s"))]
             for h in (standby or {}).get("held") or [] if isinstance(h, dict)]
    if not rows:
        return []
    return [f"**Held releases:** {len(rows)}, each waiting for `command: promote` or `command: abort` with its "
            "`release`", "", *table(["application", "release", "candidate", "status", "preview URL", "held"], rows),
            ""]


#: the step the walk logs when it set the new version's share back to 0 % (ci_serve/deploy/traffic.py)
_BACK_TO_ZERO = "traffic back to 0%"
NO_METRICS = ("> ⚠️ **No metric was analysed**: no `prometheus-url` was given, so each step held its interval "
              "and then only checked the public entry (`verify-url`): answers without a 5xx below 100 %, every "
              "request of `requests` at 100 %. The numbers are empty. See docs/progressive.md to judge each "
              "step by both versions' request metrics in Prometheus.")


def _traffic_entry(entry: Any) -> bool:
    return isinstance(entry, dict) and isinstance(entry.get("weight"), int) and \
        isinstance(entry.get("new"), dict) and isinstance(entry.get("old"), dict)


def traffic_section(report: dict[str, Any]) -> list[str]:
    """A progressive release: each step reached with its verdict and both versions' numbers, whether any
    metric was analysed, and whether the new version's share went back to 0 %."""
    if not isinstance(report.get("traffic_steps"), list) and "traffic_analysed" not in report:
        return []
    entries = [e for e in report.get("traffic_steps") or [] if _traffic_entry(e)]
    lines = [f"**Traffic steps:** {len(entries)} reached" + (f", up to {entries[-1]['weight']} %" if entries else ""),
             ""]
    if report.get("traffic_analysed") is False:
        lines += [NO_METRICS, ""]
    if entries:
        lines += [markdown_table(entries[:_MAX_ROWS]), ""]
    else:
        lines += ["No traffic step was reached: the new version took no public traffic.", ""]
    back = [s for s in report.get("steps") or [] if isinstance(s, dict) and s.get("name") == _BACK_TO_ZERO]
    if back and back[-1].get("status") == "ok":
        lines += ["The traffic command then set the new version's share **back to 0 %**.", ""]
    elif back:
        lines += [f"Setting the new version's share back to 0 % **{cell(back[-1].get('status'))}**: traffic may "
                  "still reach the new version; see what to do below.", ""]
    return lines


def _ago(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)):
        return ""
    for limit, unit, size in ((120, "s", 1), (7200, "min", 60), (172800, "h", 3600)):
        if seconds < limit:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{seconds / 86400:.1f} days ago"


def render(outcomes: list[Outcome], outputs: dict[str, str], failure: dict[str, Any] | None = None,
           warnings: list[str] | None = None, inputs: Inputs | None = None) -> str:
    """The whole job summary. ``failure`` is an error that stopped the action before a command ran;
    ``warnings`` the warnings the run printed (they are annotations too); ``inputs`` what the next
    steps of a held release are written from."""
    result = outputs.get("result", "error")
    lines = [f"## {_ICON.get(result, '')} Ray Serve: {result}", ""]
    if outputs.get("release"):
        lines += [f"Release: `{cell(outputs['release'])}`", ""]
    if outputs.get("live-app"):
        lines += [f"Live application: `{cell(outputs['live-app'])}`", ""]
    if outputs.get("url"):
        lines += [f"Serving at: {cell(outputs['url'])}", ""]
    if failure:
        lines += failure_section([failure])
    if outcomes:
        lines += changes_section(outcomes)
    for outcome in outcomes:
        if (outcome.report or {}).get("result") == "held" and outcome.exit_code == 0:
            lines += hold_section(outcome, inputs)
    lines += warnings_section(list(warnings or []))
    for outcome in outcomes:
        report = outcome.report or {}
        word = report.get("result") or ("ok" if outcome.exit_code == 0 else "failed")
        lines += [f"### `{cell(outcome.invocation.title)}`: {cell(word)} (exit {outcome.exit_code})", ""]
        if outcome.report is None:
            lines += ["The command wrote no report; see the step's log.", ""]
            continue
        lines += ray_section(report)
        if isinstance(report.get("requests"), list):
            lines += requests_section(report["requests"])
        problems = problems_of(report)
        if problems:
            lines += problems_section(problems)
        if isinstance(report.get("plan"), dict):
            lines += plan_section(report["plan"])
        lines += traffic_section(report)
        if outcome.invocation.command == "status":
            lines += held_releases_section(report)
        steps = steps_section(report.get("steps") or [])
        if steps and outcome.invocation.command in RELEASE_WRITERS:
            lines += ["**Steps:**", "", *steps]
        elif steps:
            lines += ["<details><summary>steps</summary>", "", *steps, "</details>", ""]
        if outcome.exit_code != 0:
            lines += failure_section(report.get("errors") or [])
    if outputs.get("report"):
        lines += [f"Report: `{cell(outputs['report'])}`" + (f", JUnit: `{cell(outputs['junit'])}`"
                                                            if outputs.get("junit") else ""), ""]
    return "\n".join(lines)


@dataclass(frozen=True)
class Annotation:
    """One ``::error`` annotation; ``file`` relative to the workspace so GitHub links the line."""

    message: str
    title: str
    file: str | None = None
    line: int | None = None
    col: int | None = None
    level: str = "error"  # or "warning", "notice"


def relative(file: Any, workspace: Path) -> str | None:
    if not file:
        return None
    path = Path(str(file))
    if path.is_absolute():
        try:
            return str(path.resolve().relative_to(workspace.resolve()))
        except ValueError:
            return None  # not in the repository: GitHub could not link it
    return str(path)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def annotations(outcomes: list[Outcome], workspace: Path) -> list[Annotation]:
    """Config problems with their file and line; otherwise one annotation per error, its hint included."""
    notes: list[Annotation] = []
    for outcome in outcomes:
        report = outcome.report or {}
        problems = problems_of(report)
        for p in problems:
            message = str(p.get("message") or "invalid")
            if p.get("path"):
                message = f"{p['path']}: {message}"
            if p.get("hint"):
                message += f" (fix: {p['hint']})"
            notes.append(Annotation(secrets.mask(message), "Serve config problem", relative(p.get("file"), workspace),
                                    _int(p.get("line")), _int(p.get("column"))))
        if outcome.exit_code == 0 and report.get("result") == "held":
            notes.append(held_notice(outcome))
        if outcome.exit_code != 0 and outcome.report is None:
            notes.append(Annotation(f"ci-serve {outcome.invocation.command} failed (exit {outcome.exit_code}) "
                                    "and wrote no report; see its log", f"ci-serve {outcome.invocation.command}"))
        elif outcome.exit_code != 0 and not problems:
            for err in report.get("errors") or []:
                if isinstance(err, dict) and err.get("message"):
                    text = str(err["message"]) + (f" (fix: {err['hint']})" if err.get("hint") else "")
                    notes.append(Annotation(secrets.mask(text), f"ci-serve {outcome.invocation.command}"))
    return notes


def held_notice(outcome: Outcome) -> Annotation:
    """A hold waits for someone: say so on the run's page, not only in the summary."""
    release = release_of(outcome)
    where = "; ".join(f"{app} at {url}" for app, url in preview_urls(outcome.report or {}).items())
    return Annotation(secrets.mask(f"Release {release} is held for review (the new version answers: {where or '?'}); "
                                   f"what serves is untouched. Promote it (`command: promote`, `release: {release}`) "
                                   "or abort it (`command: abort`): the job summary has both, in full."),
                      "release held", level="notice")
