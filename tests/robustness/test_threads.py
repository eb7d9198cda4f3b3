"""The CPU thread count: one thread for a tiny model, the free cores for a heavy one, named errors."""

from __future__ import annotations

import time

import pytest
import torch

from robustness.cli import main
from robustness.config import parse_config
from robustness.core import threads
from robustness.core.errors import ConfigError


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture
def two_idle_cores(monkeypatch):
    monkeypatch.setattr(threads, "available_cores", lambda: 2)
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (0.0, 0.0, 0.0))


def test_explicit_count_is_used_as_given(restore_threads):
    assert threads.apply_threads(3, probe=lambda: None) == 3
    assert torch.get_num_threads() == 3


def test_tiny_batch_pass_keeps_one_thread(two_idle_cores, restore_threads):
    calls = []
    assert threads.choose_threads("auto", probe=lambda: calls.append(torch.get_num_threads())) == 1
    assert calls == [1, 1]  # a warm-up and a timed pass, both on one thread


def test_heavy_batch_pass_gets_the_free_cores(two_idle_cores, restore_threads):
    assert threads.choose_threads("auto", probe=lambda: time.sleep(2 * threads.SMALL_PASS_SECONDS)) == 2


def test_busy_cores_are_not_counted(monkeypatch, restore_threads):
    monkeypatch.setattr(threads, "available_cores", lambda: 4)
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (2.8, 2.0, 1.0))  # about 3 cores busy elsewhere
    assert threads.choose_threads("auto", probe=lambda: time.sleep(2 * threads.SMALL_PASS_SECONDS)) == 1


def test_cgroup_quota_caps_the_cores(monkeypatch, tmp_path):
    quota = tmp_path / "cpu.max"
    quota.write_text("150000 100000\n")  # 1.5 CPUs
    monkeypatch.setattr(threads, "_CGROUP_CPU_MAX", quota)
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    assert threads.available_cores() == 2
    quota.write_text("max 100000\n")
    assert threads.available_cores() == 4


def test_digits_model_batch_pass_is_tiny(digits_model, digits_test, restore_threads):
    # the demo model: one thread is as fast as two, and beside another job far faster
    probe = threads.batch_pass_probe(digits_model, digits_test.x, 100)
    assert threads.choose_threads("auto", probe) == 1


@pytest.mark.parametrize("bad", [0, -2, 2.5, True, "many"])
def test_bad_thread_setting_is_named(bad):
    with pytest.raises(ConfigError) as e:
        threads.check_threads(bad)
    assert e.value.field == "threads"
    cfg = {
        "model": {"spec": "zoo:digits-cnn"},
        "data": {"spec": "builtin:digits"},
        "threat": {"norm": "linf", "eps": [0.1]},
        "threads": bad,
    }
    with pytest.raises(ConfigError, match="threads"):
        parse_config(cfg)


@pytest.mark.parametrize("command", [["evaluate"], ["attack", "--attack", "fgsm", "--eps", "0.1"]])
def test_bad_threads_flag_exits_2(command, capsys):
    code = _exit_code([*command, "--model", "zoo:digits-cnn", "--data", "builtin:digits", "--threads", "0"])
    assert code == 2
    assert "--threads: must be auto or an integer from 1 to 1024, got '0'" in capsys.readouterr().err


def test_audit_records_the_thread_count(tmp_path, restore_threads):
    from robustness.audit import run_audit

    cfg = {
        "model": {"spec": "zoo:digits-cnn", "device": "cpu"},
        "data": {"spec": "builtin:digits", "n_examples": 8, "batch_size": 8},
        "threat": {"norm": "linf", "eps": [0.1]},
        "attacks": [{"name": "fgsm"}],
        "sanity_checks": {"enabled": False, "reason": "only the environment record is under test"},
        "output": {"dir": str(tmp_path), "formats": ["json"]},
        "threads": 2,
    }
    assert run_audit(cfg)["environment"]["threads"] == 2


def _exit_code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse's usage errors
        return int(exc.code)
