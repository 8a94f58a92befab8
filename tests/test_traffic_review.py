"""Findings of issue 23's review that need no head, fixed: the walk's report entries on a cancel during a query
and on a failing command, a fault at a step's start reading, and an infinite interval the CLI once accepted."""

from __future__ import annotations

import math

import pytest

from ci_serve.action.inputs import _number
from ci_serve.deploy.analysis import Samples, Thresholds
from ci_serve.deploy.traffic import TrafficOptions, parse_interval, walk
from ci_serve.errors import Cancelled, InputError
from ci_serve.steps import StepLog
from tests.test_traffic import FakeClock as Clock


class CancelledDuringQuery:
    """A source whose end-of-step query is where SIGINT lands (the handler raises Cancelled wherever the main
    thread is: inside requests' call to Prometheus)."""

    def __init__(self) -> None:
        self.calls = 0

    def totals(self, at: float) -> tuple[Samples, Samples]:
        self.calls += 1
        if self.calls == 2:
            raise Cancelled("cancelled by SIGINT")
        return Samples(100.0 * self.calls), Samples()

    def ready(self, at: float) -> bool:
        return True

    def describe(self) -> str:
        return "fake"


def test_a_cancel_during_the_steps_query_leaves_no_entry(tmp_path):
    """Contract (traffic.py docstring, issue 23): a step cut short by a cancel has no verdict and no entry."""
    clock = Clock()
    opts = TrafficOptions(f"echo $CI_SERVE_TRAFFIC_WEIGHT >> {tmp_path / 'w'}", (10, 100), 5.0,
                          Thresholds(min_requests=1))
    result = walk(opts, CancelledDuringQuery(), log=StepLog(), clock=clock, sleep=clock.sleep)
    assert isinstance(result.error, Cancelled)
    assert result.weights_set == [10, 0]
    assert result.entries() == [], result.entries()


def test_a_traffic_command_that_fails_at_a_step_gives_that_step_an_entry(tmp_path):
    """traffic.py's docstring: 'A step cut short by a fault counts as failed' (the issue: one entry per step
    reached, with its final verdict)."""
    clock = Clock()
    opts = TrafficOptions('[ "$CI_SERVE_TRAFFIC_WEIGHT" != 50 ]', (10, 50, 100), 5.0, Thresholds(min_requests=1))

    class Good(CancelledDuringQuery):
        def totals(self, at: float) -> tuple[Samples, Samples]:
            self.calls += 1
            return Samples(100.0 * self.calls), Samples()

    result = walk(opts, Good(), log=StepLog(), clock=clock, sleep=clock.sleep)
    assert result.weights_set == [10, 50, 0]
    assert [(e["weight"], e["verdict"]) for e in result.entries()] == [(10, "pass"), (50, "fail")]


@pytest.mark.parametrize("value", [math.inf, 1e309])
def test_cli_refuses_an_infinite_step_interval_as_the_action_does(value):
    with pytest.raises(InputError):
        _number(str(value), "step-interval", "60", low=1.0)  # the Action refuses it
    with pytest.raises(InputError):
        parse_interval(value)  # the CLI's --step-interval: accepted, each step then holds forever


class FailsAtTheStartReading(CancelledDuringQuery):
    """Prometheus answers the settle, then fails the step's start reading."""

    def totals(self, at: float) -> tuple[Samples, Samples]:
        from ci_serve.deploy.prometheus import PrometheusFault

        raise PrometheusFault("http://prom did not answer (ConnectionError)")


def test_a_fault_at_the_steps_start_reading_is_a_failed_step(tmp_path):
    clock = Clock()
    opts = TrafficOptions(f"echo $CI_SERVE_TRAFFIC_WEIGHT >> {tmp_path / 'w'}", (10, 100), 5.0,
                          Thresholds(min_requests=1))
    result = walk(opts, FailsAtTheStartReading(), log=StepLog(), clock=clock, sleep=clock.sleep)
    assert result.weights_set == [10, 0]
    assert [(e["weight"], e["verdict"]) for e in result.entries()] == [(10, "fail")]
