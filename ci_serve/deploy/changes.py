"""What kind of change a deploy makes to each application: the plan stage's verdict, deploy's words.

The diff and the lightweight/heavyweight classes are :func:`ci_serve.config.plan.plan_changes`'s
(one source of truth for ``ci-serve plan`` and ``deploy``). On top of it, deploy adds one rule: an
application with nothing *live* (no incarnation holding its route prefix) is ``new``, even if a
leftover candidate of an earlier run has the same config, so a re-run always brings it live.

- ``none``: same config, same code (the version marker aside): no write at all.
- ``lightweight``: only options Ray applies to running replicas: safe in place.
- ``heavyweight``: code, environment, actor options, deployments added or removed: blue-green.
- ``new``: nothing live yet: blue-green with nothing to remove.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from ci_serve.config.plan import Plan, plan_changes

Kind = Literal["none", "lightweight", "heavyweight", "new"]


@dataclass(frozen=True)
class Change:
    kind: Kind
    reasons: tuple[str, ...] = ()


def classify_all(desired: dict[str, Any], snapshot: dict[str, Any], has_live: dict[str, bool]) -> tuple[
        dict[str, Change], Plan]:
    """Per logical application, its :class:`Change`; and the plan itself (for the report)."""
    plan = plan_changes(desired, snapshot)
    out: dict[str, Change] = {}
    for app in plan.applications:
        if not has_live.get(app.name, False):
            out[app.name] = Change("new", ("nothing live yet",))
            continue
        reasons = [c.field for c in app.changes]
        reasons += [f"{d.name}.{c.field}" for d in app.deployments for c in d.changes]
        reasons += [f"{d.name} {d.action}" for d in app.deployments if d.action in ("added", "removed")]
        out[app.name] = Change(app.verdict, tuple(reasons))
    return out, plan


def verdict(kinds: list[Kind]) -> str:
    """The overall verdict over every application."""
    if any(k in ("heavyweight", "new") for k in kinds):
        return "heavyweight"
    return "lightweight" if "lightweight" in kinds else "none"
