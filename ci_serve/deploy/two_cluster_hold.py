"""A release held on the standby cluster (``deploy --hold`` across two clusters): what it is, decided. Pure.

Across two clusters the candidate is the whole config, on the standby, under its own routes: the standby
takes no public traffic until the switch command moves it. ``deploy --hold`` writes the standby's
applications with the hold marker (:func:`~ci_serve.deploy.ownership.with_hold`, written once, at
creation), recording the application live on the *other* cluster then (name and config digest) and the
candidate's own digest. Nothing else marks the hold: a CI job has no memory, so ``promote`` and ``abort``
find it from the two clusters alone.

The marker stays on the application for good (editing ``env_vars`` would restart its replicas), so a
promoted release still carries it after the roles swap: the next deploy names the old live cluster as
the standby, and that cluster may keep (``--keep-standby``) an application that was itself promoted from
a hold long ago. Which hold-marked application on the standby is *still* held is decided against the
live cluster (:func:`hold_state`):

- ``held``: the live cluster's live application is the one the hold recorded (same name, same config
  digest; or nothing was live and nothing is). Promote may take it; a plain deploy is refused.
- ``superseded``: the live cluster's live application was itself promoted from a hold that recorded
  this one as the live version it replaced: this application is the previous live version, kept on the
  old cluster, not a release waiting for review.
- ``stale``: neither: the live cluster changed since the hold (another deploy, a person). Promote
  refuses it (the reviewer saw it beside another live version); abort removes it; a plain deploy
  replaces it with a warning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ci_serve.deploy.ownership import config_digest
from ci_serve.deploy.view import AppView, ClusterView

HoldState = Literal["held", "superseded", "stale"]


@dataclass(frozen=True)
class StandbyHold:
    """One hold-marked application of ours on the standby, judged against the live cluster."""

    logical: str
    #: the application on the standby (its ``hold`` is set)
    app: AppView
    #: the live cluster's live version of ``logical`` now (None: none)
    live: AppView | None
    state: HoldState

    @property
    def release(self) -> str:
        return self.app.version or "(no version)"


def hold_state(app: AppView, live: AppView | None) -> HoldState:
    """``app`` (hold-marked, on the standby) against ``live``, the live cluster's live version of its app."""
    hold = app.hold
    assert hold is not None
    if (live.name if live else None) == hold.live and (live is None or config_digest(live.config) == hold.live_digest):
        return "held"
    if live is not None and live.hold is not None and app.config is not None \
            and live.hold.live == app.name and live.hold.live_digest == config_digest(app.config):
        return "superseded"
    return "stale"


def standby_holds(standby: ClusterView, live: ClusterView, logical: str, route: str | None) -> list[StandbyHold]:
    """The hold-marked applications of ``logical`` on the standby, each with its state."""
    now = live.live_of(logical, route)
    return [StandbyHold(logical, m, now, hold_state(m, now)) for m in standby.members(logical, route)
            if m.hold is not None]


def cas_failure(h: StandbyHold, route: str | None) -> str | None:
    """Why promoting ``h`` is refused (compare-and-swap on what the hold recorded), or None."""
    hold = h.app.hold
    assert hold is not None
    if hold.route != route:
        return (f"release {h.release} of {h.logical} was held for route {hold.route}, but the config gives {route}")
    if h.state != "held":
        now = f"{h.live.name} (version {h.live.version or '-'})" if h.live else "nothing"
        return (f"the live cluster's version of {h.logical} changed since release {h.release} was held: it was "
                f"{hold.live or 'nothing'}, now {now} runs there, or its config changed; the reviewer saw the "
                "release beside another live version")
    if h.app.config is None or config_digest(h.app.config) != hold.digest:
        return (f"the held application {h.app.name} of {h.logical} on the standby changed since release "
                f"{h.release} was held: it is not what was checked and reviewed")
    return None


def probably_promoted(h: StandbyHold) -> bool:
    """The hold recorded a live application that the live cluster no longer runs at all: the usual trace of a
    promote whose old cluster was retired, run again with the roles of before (the 'standby' serves now)."""
    hold = h.app.hold
    assert hold is not None
    return hold.live is not None and h.live is None
