"""The exit code of every deploy path, decided in one place from what was finally seen. Pure.

Every ending of a deploy (blue-green, in-place, unchanged, two clusters, a cancel, an error nobody
named) describes what it saw last in a :class:`Final` and asks :func:`exit_code`:

- 0: the run finished and each public route is served by the version this run checked;
- 2: stopped before any write of ours could reach a cluster, on bad input, credentials or a refusal;
- 1: stopped, and each public route is seen served, answering, by a version that passed its checks
  (the previous live one, or a version this run checked), with nothing of ours left half-done;
- 3: anything else: a route nobody serves, a version serving that fails its checks, our write
  half-applied, or a cluster that could not be read.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass

from ci_serve import secrets
from ci_serve.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_NOT_RESTORED, EXIT_OK, Unexpected


@dataclass(frozen=True)
class Seen:
    """One logical application at the end: who serves its public route (route-less: runs), and how."""

    logical: str
    #: the physical application seen holding the public route (None: nobody, or route-less)
    holder: str | None
    #: what was expected is seen: that version serves and answers without a 5xx (route-less: RUNNING);
    #: or, when nothing of ours was live before, nothing of ours runs
    answers: bool
    #: the expected version passed its checks (the previous live one unless its checks failed in this run,
    #: or one this run checked)
    passed: bool

    @property
    def good(self) -> bool:
        return self.answers and self.passed


@dataclass(frozen=True)
class Final:
    #: an error or a cancel ended the run
    failed: bool
    #: a write of ours may have reached the cluster
    wrote: bool = False
    #: the run was refused for its input, credentials, or what it found, before any write
    refused: bool = False
    #: what serves, per logical application of the run (None: not seen, e.g. the cluster did not answer)
    seen: tuple[Seen, ...] | None = None
    #: something of ours is left half-done (a candidate beside, an undo that did not finish)
    half_done: bool = False


def exit_code(final: Final) -> int:
    if not final.failed:
        # 0 only for what was seen serving: a run that saw nothing (the cluster could not be read) says 3
        return EXIT_OK if final.seen is not None and all(s.good for s in final.seen) else EXIT_NOT_RESTORED
    if not final.wrote and final.refused:
        return EXIT_BAD_INPUT
    if final.seen is not None and all(s.good for s in final.seen) and not final.half_done:
        return EXIT_FAILED
    if not final.wrote and final.seen is None:
        return EXIT_BAD_INPUT  # nothing written, nothing seen: "nothing was changed" is all that is known
    return EXIT_NOT_RESTORED


def unexpected(exc: BaseException, *, wrote: bool) -> Unexpected:
    """The error an exception nobody named becomes: its verdict knows only whether a write was sent."""
    code = exit_code(Final(failed=True, wrote=wrote, refused=True))
    trace = secrets.scrub("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    return Unexpected(exc, exit_code=code, trace=trace)
