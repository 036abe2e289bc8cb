"""What a SIGTERM means before, during and after a command's answer (sync/termination.py), without signals."""

from __future__ import annotations

import pytest

from destination_crowdtwist.sync.termination import Terminated, Termination


def _termination() -> tuple[Termination, list[int], list[str]]:
    exits: list[int] = []
    restored: list[str] = []
    return Termination(exit_process=exits.append, restore_default=lambda: restored.append("default")), exits, restored


def test_before_the_answer_a_sigterm_stops_the_command() -> None:
    t, exits, restored = _termination()
    with pytest.raises(Terminated):
        t.on_sigterm()
    assert exits == [] and restored == ["default"]  # a second SIGTERM ends the process at once


def test_once_the_answer_is_written_a_sigterm_exits_0() -> None:
    t, exits, _ = _termination()
    with t.answering():
        pass
    t.on_sigterm()
    assert exits == [0]


def test_a_sigterm_while_the_answer_is_written_waits_for_it_then_exits_0() -> None:
    t, exits, _ = _termination()
    with t.answering():
        t.on_sigterm()  # e.g. between the write and the flush
        assert exits == []
    assert exits == [0]


def test_a_sigterm_while_an_answer_fails_to_go_out_stops_the_command() -> None:
    t, exits, restored = _termination()

    def answer_that_fails() -> None:
        with t.answering():
            t.on_sigterm()
            raise BrokenPipeError

    with pytest.raises(Terminated):
        answer_that_fails()
    assert exits == [] and restored == ["default"]


def test_after_a_sync_finished_a_sigterm_exits_0() -> None:
    t, exits, _ = _termination()
    t.finished()
    t.on_sigterm()
    assert exits == [0]
