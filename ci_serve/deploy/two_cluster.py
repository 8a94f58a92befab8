"""Blue-green across two Ray clusters: the Serve guide's way to ship a heavyweight update.

The whole config goes to the standby cluster (the live one is not touched), is gated and
smoke-checked there through ``--standby-url``; then the user's ``--switch-command`` moves the
traffic (a load balancer API, a Kubernetes Service patch, a proxy reload) and the public entry
(``--verify-url``) must answer the smoke requests from the new version. If it does not, the switch
command runs again with the roles reversed (``CI_SERVE_NEW_URL`` is then the old cluster's Serve
address: ``--serve-url`` when given, else the dashboard's host and the Serve port it reports): exit 1
when the public entry answers again, 3 when not.

On the standby, this release replaces only applications of ours (the ownership marker, or the plain
logical name); others are left alone. On failure its previous config is written back.

The old cluster's applications of ours are removed only after a positive proof that public traffic
moved: the public entry (``--verify-url``) passed the smoke requests, and the old cluster, asked the
same requests at its own Serve proxy (which must answer and list our routes), answers at least one
differently (so they tell the versions apart). Without ``--verify-url``, when the old version passes
the same requests, or when the old cluster cannot be asked (a request that never got an answer proves
nothing), there is no proof: they are kept, the run exits 0, and a warning says so.
``--keep-standby`` keeps them in any case. A switch command that moves nothing thus never empties the
cluster that still takes the traffic. Which applications of the old cluster are ours is
:meth:`ClusterView.members`'s answer, as for a one-cluster deploy.

The release is decided by the one planner (:func:`~ci_serve.deploy.planner.plan_two_clusters`: every write
names its cluster; the switch is a traffic write, declared to change no Serve application) and carried out
by the one executor (:class:`~ci_serve.deploy.release.Release`), with the same write guard, fates of lost
answers and exit-code verdict as on one cluster. This module holds only the options.

A release held for review (:mod:`~ci_serve.deploy.two_cluster_hold`) is this same release in other
modes: ``hold`` writes the standby's applications with the hold marker and stops after the standby's
checks; ``promote`` starts from them (compare-and-swap on the hold's record, at the start and right
before the switch), gated and checked again, then the same switch, verification, proof and retirement;
``abort`` removes them from the standby (through the same write guard), the live cluster only read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ci_serve.deploy.gate import DEPLOY_TIMEOUT_S, UNSCHEDULABLE_GRACE_S
from ci_serve.deploy.planner import Mode
from ci_serve.deploy.traffic import TrafficSettings
from ci_serve.errors import CheckFailed

#: how long the public entry may take to answer from the new cluster after the switch command
VERIFY_TIMEOUT_S = 60.0
#: in-flight requests the old proxy workers still hold get this long before the old apps go
DRAIN_S = 2.0
#: after the way back, the public entry must answer as the old version this many times in a row
OLD_ROUNDS = 10
#: the old cluster is asked this many times for an answer that tells the versions apart (a 5xx proves nothing)
PROOF_ATTEMPTS = 3
PROOF_PAUSE_S = 1.0


@dataclass
class TwoClusterOptions:
    standby_url: str
    switch_command: str
    verify_url: str | None = None
    keep_standby: bool = False
    requests: list[Any] | None = None
    working_dir: Path | None = None
    timeout: float = DEPLOY_TIMEOUT_S
    unschedulable_grace: float = UNSCHEDULABLE_GRACE_S
    version: str | None = None
    #: the live (old) cluster's real Serve address (``--serve-url``), for the switch-back and the proof
    live_url: str | None = None
    switch_timeout: float = 300.0
    verify_timeout: float = VERIFY_TIMEOUT_S
    #: ``deploy --hold``, ``promote``, ``abort`` of release ``version``
    mode: Mode = "deploy"
    #: ``--traffic-command`` and its steps: the traffic moves in steps, each judged, instead of one switch
    traffic: TrafficSettings | None = None


class SwitchFailed(CheckFailed):
    """The switch command failed, or the public entry did not answer from the new cluster."""
