"""``--junit FILE``: one JUnit test case per smoke request, for the test-report actions people use.

A run that failed before the requests (an application did not deploy, a timeout, a cancel) adds a
failing ``deploy`` case and marks the requests that never ran as skipped, so the report says why.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from ci_serve import secrets
from ci_serve.errors import CiServeError
from ci_serve.report import write_text_atomic
from ci_serve.smoke.checks import Outcome


def render(outcomes: list[Outcome], *, suite: str = "ci-serve smoke", elapsed_s: float = 0.0,
           deploy_error: str | None = None, deploy_details: str | None = None) -> str:
    cases = []
    if deploy_error is not None:
        case = ET.Element("testcase", name="deploy", classname="smoke", time="0")
        failure = ET.SubElement(case, "failure", message=deploy_error, type="DeployFailed")
        failure.text = deploy_details or deploy_error
        cases.append(case)
    for out in outcomes:
        case = ET.Element("testcase", name=out.name, classname=f"smoke.{out.app}",
                          time=f"{out.elapsed_ms / 1000:.3f}")
        if out.skipped:
            ET.SubElement(case, "skipped", message=out.error or "not run")
        elif not out.passed:
            message = out.error or "; ".join(out.mismatches) or "failed"
            failure = ET.SubElement(case, "failure", message=message.splitlines()[0], type="CheckFailed")
            failure.text = "\n".join(out.mismatches) or message
        out_el = ET.SubElement(case, "system-out")
        out_el.text = out.line()
        cases.append(case)
    failures = sum(1 for c in cases if c.find("failure") is not None)
    skipped = sum(1 for c in cases if c.find("skipped") is not None)
    root = ET.Element("testsuites", name=suite, tests=str(len(cases)), failures=str(failures),
                      errors="0", skipped=str(skipped), time=f"{elapsed_s:.3f}")
    suite_el = ET.SubElement(root, "testsuite", name=suite, tests=str(len(cases)), failures=str(failures),
                             errors="0", skipped=str(skipped), time=f"{elapsed_s:.3f}")
    suite_el.extend(cases)
    ET.indent(root)
    return secrets.mask('<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n")


def write(path: str | Path, outcomes: list[Outcome], **kwargs: Any) -> None:
    write_text_atomic(Path(path), render(outcomes, **kwargs))


def write_for(path: str | Path, outcomes: list[Outcome], error: CiServeError | None, *, elapsed_s: float) -> None:
    """The JUnit file of a smoke test's result: one case per request; when the test failed before any
    request was sent, a failing ``deploy`` case says why and the requests are marked skipped."""
    ran = any(not o.skipped for o in outcomes)
    write(path, outcomes, elapsed_s=elapsed_s, deploy_error=None if ran or error is None else error.message,
          deploy_details=None if error is None else error.details)
