"""The writes this process sent to a cluster's Serve config, remembered for the edge.

An exception nobody named can end a run anywhere; the edge (:mod:`ci_serve.cli`, the action) then
decides the exit code from what is known: whether a Serve config write of this process may have
reached a cluster (:func:`ci_serve.deploy.verdict.exit_code`). The dashboard client records each
PUT of ``/api/serve/applications/`` here before sending it.
"""

from __future__ import annotations

_sent: list[str] = []


def record(address: str) -> None:
    """A write to the Serve config of the cluster at ``address`` is about to be sent."""
    _sent.append(address)


def wrote() -> bool:
    return bool(_sent)


def clear() -> None:
    """For tests running several commands in one process (and the action, between its steps)."""
    _sent.clear()
