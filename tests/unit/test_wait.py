"""kdlib.wait.wait_until: the one polling loop."""

import time

import pytest

from kdlib.wait import wait_until


def test_returns_the_first_true_value_of_the_condition():
    calls = iter([None, 0, "ready"])
    assert wait_until(lambda: next(calls), timeout=5, interval=0.001) == "ready"


def test_raises_the_given_error_at_the_deadline_after_trying_at_least_once():
    calls = []
    with pytest.raises(ValueError, match="late"):
        wait_until(lambda: calls.append(1), deadline=time.monotonic() - 1, error=lambda: ValueError("late"))
    assert calls == [1]


def test_names_what_it_waited_for_without_an_error_of_its_own():
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="the socket: not reached within 0.05 s"):
        wait_until(lambda: False, timeout=0.05, interval=0.01, what="the socket")
    assert 0.05 <= time.monotonic() - started < 1


def test_an_exception_of_the_condition_ends_the_wait_at_once():
    calls = []

    def dead():
        calls.append(1)
        raise RuntimeError("component exited")

    with pytest.raises(RuntimeError, match="exited"):
        wait_until(dead, timeout=5, interval=0.001)
    assert calls == [1]


def test_needs_exactly_one_of_timeout_and_deadline():
    with pytest.raises(TypeError):
        wait_until(lambda: True)
    with pytest.raises(TypeError):
        wait_until(lambda: True, timeout=1, deadline=time.monotonic())
