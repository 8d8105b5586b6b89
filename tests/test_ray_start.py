"""Ray's node must register within a fixed 30 s: a busy machine gets retries, then one clear line."""

import pytest

from bench import tuner as tune_mod
from bench.errors import BenchError

TIMEOUT = "The current node timed out during startup. This could happen because some of the raylet failed"


def _init_failing(monkeypatch, times: int, error: Exception) -> list:
    calls = []

    def init(**kwargs):
        calls.append(kwargs)
        if len(calls) <= times:
            raise error

    monkeypatch.setattr(tune_mod.ray, "is_initialized", lambda: False)
    monkeypatch.setattr(tune_mod.ray, "init", init)
    monkeypatch.setattr(tune_mod.ray, "shutdown", lambda: None)
    monkeypatch.setattr(tune_mod.ray, "cluster_resources", lambda: {"CPU": 2.0})
    # The real one kills this process's Ray children: under xdist that is the shared test Ray when this
    # worker holds it (it took a worker down with it).
    monkeypatch.setattr(tune_mod, "_stop_orphans", lambda: None)
    return calls


def test_a_missed_startup_deadline_is_retried(monkeypatch, capsys):
    calls = _init_failing(monkeypatch, tune_mod.STARTUP_TRIES - 1, Exception(TIMEOUT))
    assert tune_mod.init_ray(None) == {"CPU": 2.0}
    assert len(calls) == tune_mod.STARTUP_TRIES
    assert "attempt 1 of" in capsys.readouterr().err


def test_a_machine_too_busy_every_time_gets_one_clear_error(monkeypatch):
    calls = _init_failing(monkeypatch, 99, Exception(TIMEOUT))
    with pytest.raises(BenchError, match=f"in {tune_mod.STARTUP_TRIES} attempts: the machine is too busy"):
        tune_mod.init_ray(None)
    assert len(calls) == tune_mod.STARTUP_TRIES


@pytest.mark.parametrize("error", [ConnectionError("refused"), Exception("something else")])
def test_other_failures_are_not_retried(monkeypatch, error):
    calls = _init_failing(monkeypatch, 99, error)
    with pytest.raises((BenchError, Exception)):
        tune_mod.init_ray("127.0.0.1:1")
    assert len(calls) == 1


def test_a_running_ray_is_used_and_left_running(monkeypatch):
    calls = _init_failing(monkeypatch, 0, Exception("unused"))
    stopped = []
    monkeypatch.setattr(tune_mod.ray, "is_initialized", lambda: True)
    monkeypatch.setattr(tune_mod.ray, "shutdown", lambda: stopped.append(1))
    with tune_mod.ray_session(None) as resources:
        assert resources == {"CPU": 2.0}
    assert calls == [] and stopped == []


def test_a_ray_started_for_the_run_is_stopped_after_it(monkeypatch):
    calls = _init_failing(monkeypatch, 0, Exception("unused"))
    stopped = []
    monkeypatch.setattr(tune_mod.ray, "shutdown", lambda: stopped.append(1))
    with pytest.raises(KeyboardInterrupt), tune_mod.ray_session(None):
        raise KeyboardInterrupt
    assert len(calls) == 1 and stopped == [1]
