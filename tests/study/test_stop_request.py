"""A stop request survives a KeyboardInterrupt that Python swallowed (raised inside a GC callback)."""

from __future__ import annotations

import pytest

from sensitivity import interrupt
from sensitivity.tasks import get_task
from sensitivity.train import train_trial


@pytest.fixture()
def clean_flag(monkeypatch):
    monkeypatch.setattr(interrupt, "_requested", False)
    yield


def test_a_swallowed_interrupt_still_stops_training_at_the_next_step(clean_flag):
    try:  # as when the signal lands inside a weakref callback: raised, then dropped by Python
        interrupt.request()
    except KeyboardInterrupt:
        pass
    assert interrupt.requested()
    task = get_task("digits-mlp")
    with pytest.raises(KeyboardInterrupt):
        train_trial(task, task.config(), "adam", {"lr": 1e-3}, seed=0, epochs=1, divergence_factor=5.0)


def test_check_is_silent_without_a_request(clean_flag):
    interrupt.check()
    assert not interrupt.requested()
