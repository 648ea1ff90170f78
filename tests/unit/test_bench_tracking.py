"""The terminal-latency benchmark's figures (bench/tracking_terminal.py): pure, no broker."""

import pytest

from bench.tracking_terminal import figures, interval_after, max_reads_in_1s, runs_of, summary
from bridge.config.tracking import TargetTracking
from bridge.sandbox.config import SandboxConfig
from bridge.sandbox.server import SandboxState
from bridge.sandbox.state import RecordedRequest
from bridge.sandbox.zuora_runs import ZuoraSandboxSettings

POLICY = TargetTracking(first_poll_s=2, max_interval_s=16, jitter=0.2)


def test_the_interval_replays_the_trackers_policy():
    # the first read reports running (a change): the next one comes after first_poll_s again
    assert [interval_after(k, POLICY) for k in range(7)] == [2, 2, 4, 8, 16, 16, 16]


def test_a_run_finished_between_two_reads_is_measured_against_the_interval_before_it():
    run = figures(
        finished_at=110.0, reads=[102.0, 104.1, 108.2, 117.0], seen_at=117.3, stamped_at=117.2, policy=POLICY
    )
    assert run.interval_s == 8  # three reads found it running
    assert run.latency_s == pytest.approx(7.3)
    assert run.stamped_s == pytest.approx(7.2)
    assert run.slack_s == pytest.approx(-0.7)
    assert run.late_read_s == pytest.approx(117.0 - 108.2 - 8)
    assert not run.exceeded


def test_a_run_seen_later_than_its_interval_plus_one_second_exceeds_the_bound():
    run = figures(finished_at=100.5, reads=[100.0, 104.5], seen_at=104.6, stamped_at=104.6, policy=POLICY)
    assert (run.interval_s, run.exceeded) == (2, True)
    early = figures(finished_at=100.5, reads=[103.5], seen_at=103.6, stamped_at=103.6, policy=POLICY)
    assert (early.interval_s, early.late_read_s, early.exceeded) == (2, None, True)
    assert summary([run, early])["exceeded"] == 2


def test_the_most_reads_in_one_second():
    assert max_reads_in_1s([]) == 0
    assert max_reads_in_1s([0.0, 0.5, 0.99, 1.0, 1.2, 5.0]) == 4


def test_the_sandbox_reports_each_runs_finish_and_its_reads():
    state = SandboxState.create(SandboxConfig(providers={"zuora": ZuoraSandboxSettings(run_duration_s=5.0)}))
    instance = state.emulator("zuora")._create_instance(398, 1000.0)
    for at, path in ((1001.0, f"/zuora/workflows/workflow_runs/{instance['id']}"), (1002.0, "/zuora/x")):
        state.log.add(RecordedRequest("zuora", "GET", path, path, {}, {}, None, 200, arrived_at=at))
    assert runs_of(state)[str(instance["id"])] == {"finished_at": 1005.0, "reads": [1001.0]}
