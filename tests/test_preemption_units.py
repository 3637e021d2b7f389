"""The stop request in one process: which signals ask for what, the stop file, the spec key
that names the signals (one-line errors), and the keys that stay out of a run's identity."""

from __future__ import annotations

import os
import signal

import pytest
from conftest import one_line_error

from advfusion_cli.spec.loading import resolve_spec
from advfusion_cli.workflows import stages
from advfusion_cli.workflows.preemption import CTRL_C, NO_STOP, REQUEUE, StopRequest


def test_stop_signals_ask_for_a_requeue_and_repeating_them_changes_nothing():
    stop = StopRequest(["SIGTERM", "SIGUSR1"])
    before = signal.getsignal(signal.SIGTERM)
    with stop.listening():
        assert stop.level() == NO_STOP
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGUSR1)  # the launcher and the scheduler both send it
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.level() == REQUEUE and stop.signal_name == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) == before  # handlers restored


def test_ctrl_c_twice_aborts_and_a_stop_signal_wins_over_ctrl_c():
    stop = StopRequest(["SIGUSR2"])
    with stop.listening():
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.level() == CTRL_C
        os.kill(os.getpid(), signal.SIGUSR2)
        assert stop.level() == REQUEUE  # the scheduler wants a requeue, not a plain stop
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)  # a Ctrl-C after a request stops at once


def test_the_stop_file_counts_as_a_stop_signal(tmp_path, monkeypatch):
    path = tmp_path / "stop"
    monkeypatch.setenv("ADVFUSION_STOP_FILE", str(path))
    stop = StopRequest()
    assert stop.level() == NO_STOP
    path.touch()
    assert stop.level() == REQUEUE and stop.signal_name == f"stop file {path}"


def test_signals_outside_the_configured_ones_keep_their_default():
    stop = StopRequest(["SIGUSR1"])
    before = signal.getsignal(signal.SIGTERM)
    with stop.listening():
        assert signal.getsignal(signal.SIGTERM) == before
        assert signal.getsignal(signal.SIGUSR1) == stop._handle


@pytest.mark.parametrize("value", ["SIGFOO", "SIGKILL", "SIGINT"])
def test_a_bad_stop_signal_is_a_one_line_error(cli, value):
    result = cli(
        "train-adapters", "--langs", "ruby", "--dry-run", "--set", f"training.stop_signals={value}"
    )
    line = one_line_error(result, "training.stop_signals", value)
    assert "is not a signal a run can stop on" in line


def test_spellings_of_a_signal_are_normalised():
    spec = resolve_spec(sets=["training.stop_signals=term,usr2,SIGTERM"])
    assert spec.training.stop_signals == ["SIGTERM", "SIGUSR2"]


def test_how_a_run_is_stopped_or_waited_for_is_not_part_of_its_identity():
    plain = resolve_spec()
    cluster = resolve_spec(sets=["training.stop_signals=SIGUSR2", "training.timeout_minutes=90"])
    assert stages.run_id_for(plain, "ruby") == stages.run_id_for(cluster, "ruby")
    assert "stop_signals" not in stages.identity(cluster)["training"]
