"""The write guard: pure checks of a PUT body against a fresh read, before it is sent.

- :func:`check_drift`: the cluster still holds exactly what this deploy last saw or wrote. Any other
  application created, changed or removed meanwhile (another deploy, a person; also during a gate)
  is :class:`ClusterChanged`: nothing more is written.
- :func:`check_effect`: the body's effect on the cluster (applications created, changed, removed)
  is the write's declared effect, and touches only applications of ours. Otherwise
  :class:`WriteRefused`: nothing is written. Whatever a Ray release reports, a write meant to "add
  candidate shop-green" cannot replace an application that already runs under that name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ci_serve.deploy.gate import config_matches
from ci_serve.deploy.ownership import adoptable
from ci_serve.deploy.planner import Effect, Write
from ci_serve.deploy.view import ClusterView
from ci_serve.errors import DeployFailed


class ClusterChanged(DeployFailed):
    """Someone else changed the cluster between our read and our write; we did not write."""


class WriteRefused(DeployFailed):
    """The body would not do what the write declared; we did not write."""


@dataclass(frozen=True)
class Expected:
    """What one application must look like: ``config`` as read (``exact``) or as we sent it (Ray may add)."""

    config: dict[str, Any]
    exact: bool


def _same(expected: Expected, seen: Any) -> bool:
    a = {k: v for k, v in expected.config.items() if k != "name"}
    b = {k: v for k, v in seen.items() if k != "name"} if isinstance(seen, dict) else None
    if b is None:
        return False
    return config_matches(a, b) and (not expected.exact or config_matches(b, a))


def expected_from(view: ClusterView) -> dict[str, Expected]:
    return {n: Expected(c, True) for n, c in view.declarative_configs().items()}


def after_write(expected: Mapping[str, Expected], body: Mapping[str, Any]) -> dict[str, Expected]:
    """What the cluster must hold after ``body`` was accepted: its apps (unchanged ones as before)."""
    out = {}
    for app in body.get("applications") or []:
        name = app["name"]
        before = expected.get(name)
        out[name] = before if before is not None and _same(before, app) else Expected(app, False)
    return out


def drifted(expected: Mapping[str, Expected], fresh: ClusterView) -> list[str]:
    """The applications that differ from what we expect (created, changed or removed by someone else)."""
    present = {n: a for n, a in fresh.apps.items() if a.config is not None and a.status != "DELETING"}
    out = [n for n in expected if n not in present]
    out += [n for n in present if n not in expected or not _same(expected[n], present[n].config)]
    return sorted(set(out))


def unexplained(expected: Mapping[str, Expected], fresh: ClusterView, removing: Iterable[str] = ()) -> list[str]:
    """Applications we saw (or wrote) that a read does not list at all, though no write of ours removes them:
    a read that contradicts what we saw (a recovering controller answers an empty list once). Being
    deleted still counts as listed: that is a change someone made, for :func:`check_drift`."""
    gone = set(removing)
    return sorted(n for n in expected if n not in fresh.apps and n not in gone)


#: what became of a write whose answer was lost
WriteFate = Literal["applied", "not applied", "overtaken"]


def classify(before: Mapping[str, Expected], body: Mapping[str, Any], now: ClusterView) -> WriteFate:
    """After a PUT whose answer never came back, judged on the applications the write touched: the cluster
    holds them as sent (``applied``), as before (``not applied``), or otherwise (``overtaken``: another
    writer). A change to other applications meanwhile is left to :func:`check_drift` on the next read."""
    sent = after_write(before, body)
    touched = {n for n in set(before) | set(sent) if n not in before or n not in sent or sent[n] is not before[n]}
    if not [n for n in drifted(sent, now) if n in touched]:
        return "applied"
    if not [n for n in drifted(before, now) if n in touched]:
        return "not applied"
    return "overtaken"


def check_drift(expected: Mapping[str, Expected], fresh: ClusterView) -> None:
    changed = drifted(expected, fresh)
    if changed:
        raise ClusterChanged(
            f"the cluster changed while this deploy ran (applications: {', '.join(changed)}); stopped without "
            "writing so as not to overwrite that change",
            "another deploy or a person changed the Serve config; re-run this deploy when it has finished")


def effect_of(fresh: ClusterView, body: Mapping[str, Any]) -> Effect:
    """What sending ``body`` would do to the applications in ``fresh`` (imperative apps are left alone by Ray)."""
    now = fresh.declarative_configs()
    sent = {a["name"]: a for a in body.get("applications") or []}
    # an app being deleted is gone for Ray's goal: sending its name again creates it anew (measured on 2.60)
    created = frozenset(n for n in sent if n not in fresh.apps or fresh.apps[n].deleting)
    changed = frozenset(n for n in sent if n in now and not _same(Expected(now[n], True), sent[n]))
    # an imperative app under a name we send would be taken over: count it as changed
    changed |= frozenset(n for n in sent if n in fresh.apps and n not in now and not fresh.apps[n].deleting)
    removed = frozenset(n for n in now if n not in sent)
    return Effect(created, changed, removed)


def check_effect(fresh: ClusterView, body: Mapping[str, Any], write: Write, logicals: Iterable[str]) -> Effect:
    """Raise :class:`WriteRefused` unless ``body`` does exactly what ``write`` declares (a part of it for a
    clean-up write) and changes or removes only applications of ours."""
    actual = effect_of(fresh, body)
    # Declared "changed" may turn out identical (a leftover that already holds this very config): fine.
    ok = actual.is_within(write.effect) if write.cleanup else (
        actual.created == write.effect.created and actual.removed == write.effect.removed
        and actual.changed <= write.effect.changed)
    problems = [] if ok else [f"it would {actual}, but was declared to {write.effect}"]
    for name, logical, route in write.held_only:
        if name in fresh.apps and name not in {h.name for h in fresh.held(logical, route, stale=True)}:
            problems.append(f"{name} is no longer a held candidate waiting on its preview prefix (promoted or "
                            "moved since this run read the cluster)")
    logicals = set(logicals)
    for name in sorted(actual.changed | actual.removed):
        app = fresh.apps.get(name)
        ours = app is not None and (app.owner in logicals or any(adoptable(name, app.config, x) for x in logicals))
        if not ours:
            problems.append(f"{name} is not ours (no ci-serve marker)")
    if problems:
        raise WriteRefused(
            f"the write {write.step!r} was not sent: " + "; ".join(problems),
            "the cluster is not what this deploy planned from (another writer, or a Ray release reporting "
            "differently); `ci-serve status` shows what runs; re-run the deploy")
    return actual
