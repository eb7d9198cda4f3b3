"""How a run ends: never exit 0 without a result, one audit per output folder, named IO errors.

- ``sys.exit()``, ``KeyboardInterrupt`` or any ``BaseException`` from the user's model code is
  exit 2 naming file:line (only a real Ctrl-C is 130), and an audit never exits 0 without its
  results.json.
- The output folder's lock: a live run's folder is left alone (``--restart`` too), a stale lock
  is taken over, the lock goes on every exit path.
- A folder that is a file or not writable, a full disk, a checkpoint batch with the wrong arrays:
  named input errors (exit 2), and ``--restart`` recovers from the checkpoint one.
- A reader of stdout that leaves early (``| head -1``) ends the command quietly.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from robustness.checkpoint import FOLDER, batch_problem
from robustness.cli import main
from robustness.core.errors import OutputError, RunLockedError
from robustness.core.runlock import LOCK_FILE, RunLock, process_start, process_state

REPO = Path(__file__).resolve().parents[2]
MODULE = "lifecycle_models"

MODELS = textwrap.dedent(
    """
    import os
    import signal
    import sys
    import time

    import torch
    from torch import nn


    class Stop(BaseException):
        pass


    class Net(nn.Module):
        def __init__(self, how):
            super().__init__()
            self.fc = nn.Linear(64, 10)
            self.how = how

        def forward(self, x):
            if self.how == "exit":
                sys.exit(0)  # line: exit
            if self.how == "interrupt":
                raise KeyboardInterrupt  # line: interrupt
            if self.how == "base":
                raise Stop("the model says stop")  # line: base
            if self.how == "sigint":
                os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C, arriving in the model's code
                time.sleep(10)
            return self.fc(x.flatten(1))


    def exits():
        return Net("exit")


    def interrupts():
        return Net("interrupt")


    def base_exception():
        return Net("base")


    def ctrl_c():
        return Net("sigint")
    """
)


def line_of(path: Path, marker: str) -> int:
    return next(i for i, text in enumerate(path.read_text().splitlines(), 1) if f"# line: {marker}" in text)


@pytest.fixture
def models(tmp_path, monkeypatch) -> Path:
    """The module of misbehaving models, importable in this process and in subprocesses."""
    folder = tmp_path / "code"
    folder.mkdir()
    path = folder / f"{MODULE}.py"
    path.write_text(MODELS)
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.delitem(sys.modules, MODULE, raising=False)
    yield path
    sys.modules.pop(MODULE, None)


def write_config(path: Path, outdir: Path, model: str = "zoo:digits-cnn") -> Path:
    """The smallest audit: 8 samples, one FGSM at one eps, checks waived."""
    cfg = {
        "model": {"spec": model, "device": "cpu"},
        "data": {"spec": "builtin:digits", "n_examples": 8, "batch_size": 4},
        "threat": {"norm": "linf", "eps": [0.1]},
        "attacks": [{"name": "fgsm"}],
        "sanity_checks": {"enabled": False, "reason": "lifecycle tests: only how the run ends matters"},
        "output": {"dir": str(outdir), "formats": ["json"]},
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


def audit(capsys, config: Path, *extra: str) -> tuple[int, str, str]:
    code = main(["audit", str(config), "--progress", "off", *extra])
    out, err = capsys.readouterr()
    return code, out, err


def one_paragraph(err: str, command: str) -> str:
    """The error paragraph (after any notes such as 'resuming ...'); checks it is one line."""
    assert "Traceback" not in err, err
    last = err.splitlines()[-1] + "\n" if err else ""
    assert last.startswith(f"robustness {command}: error: ") and err.endswith(last), err
    return last


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def write_lock(outdir: Path, **record) -> Path:
    path = outdir / LOCK_FILE
    path.write_text(
        json.dumps({"started": "2030-01-01T00:00:00Z", "command": "robustness audit other.yaml", **record})
    )
    return path


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished tiny audit's output folder (copy it before changing anything)."""
    root = tmp_path_factory.mktemp("finished")
    out = root / "out"
    assert main(["audit", str(write_config(root / "audit.yaml", out)), "--progress", "off", "-q"]) == 0
    assert (out / "results.json").exists() and not (out / LOCK_FILE).exists()
    return out


@pytest.fixture
def run_dir(finished, tmp_path) -> tuple[Path, Path]:
    """A copy of the finished audit and its config (a rerun loads every batch: fast)."""
    out = tmp_path / "out"
    shutil.copytree(finished, out)
    return write_config(tmp_path / "audit.yaml", out), out


# ---------------------------------------------------------------------------------------
# sys.exit(), KeyboardInterrupt, BaseException in the user's code: exit 2 naming file:line


@pytest.mark.parametrize("command", ["evaluate", "audit"])
def test_sys_exit_0_in_the_models_forward_exits_2_naming_the_line(command, models, tmp_path):
    spec = f"{MODULE}:exits"
    outdir = tmp_path / "out"
    if command == "evaluate":
        argv = ["evaluate", "--model", spec, "--data", "builtin:digits", "--device", "cpu"]
    else:
        argv = ["audit", str(write_config(tmp_path / "a.yaml", outdir, spec)), "--progress", "off"]
    proc = subprocess.run(
        [sys.executable, "-m", "robustness", *argv], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert proc.returncode == 2, proc.stderr
    one_paragraph(proc.stderr, command)
    assert f"sys.exit(0) in {models}:{line_of(models, 'exit')} (your model's" in proc.stderr
    assert "no result" in proc.stderr
    assert not outdir.exists()  # the audit's folder was created for the lock and removed with it


@pytest.mark.parametrize("how, name", [("interrupts", "interrupt"), ("base_exception", "base")])
@pytest.mark.parametrize("command", ["evaluate", "audit"])
def test_keyboard_interrupt_or_base_exception_from_the_model_exits_2(
    capsys, models, tmp_path, command, how, name
):
    spec = f"{MODULE}:{how}"
    outdir = tmp_path / "out"
    if command == "evaluate":
        code = main(["evaluate", "--model", spec, "--data", "builtin:digits", "--device", "cpu"])
        err = capsys.readouterr().err
    else:
        code, _, err = audit(capsys, write_config(tmp_path / "a.yaml", outdir, spec))
    assert code == 2
    one_paragraph(err, command)
    assert f"in {models}:{line_of(models, name)} (your model's or data's own code)" in err
    assert not outdir.exists()


@pytest.mark.skipif(
    signal.getsignal(signal.SIGINT) is not signal.default_int_handler, reason="SIGINT is handled elsewhere"
)
def test_a_real_ctrl_c_still_exits_130(capsys, models):
    code = main(["evaluate", "--model", f"{MODULE}:ctrl_c", "--data", "builtin:digits", "--device", "cpu"])
    assert code == 130 and capsys.readouterr().err == "robustness: interrupted\n"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


def test_argparse_exits_are_untouched(capsys):
    for argv, expected in ((["--version"], 0), (["audit", "--help"], 0), (["audit"], 2)):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == expected, argv
    capsys.readouterr()


def test_an_audit_whose_results_json_is_missing_never_exits_0(capsys, run_dir, monkeypatch):
    import robustness.audit.outputs

    config, out = run_dir
    (out / "results.json").unlink()
    monkeypatch.setattr(robustness.audit.outputs, "write_results", lambda outdir, results: None)
    code, stdout, err = audit(capsys, config, "--exit-zero")
    assert code == 2 and stdout == ""
    one_paragraph(err, "audit")
    assert "without writing its results" in err and str(out / "results.json") in err
    assert not (out / LOCK_FILE).exists()


# ---------------------------------------------------------------------------------------
# the output folder's lock


@pytest.mark.parametrize("restart", [False, True])
def test_a_live_runs_folder_is_left_alone(capsys, run_dir, restart):
    config, out = run_dir
    lock = write_lock(
        out, pid=os.getpid(), host=socket.gethostname(), process_start=process_start(os.getpid())
    )
    before = snapshot(out)
    code, stdout, err = audit(capsys, config, *(["--restart"] if restart else []))
    assert code == 2 and stdout == ""
    one_paragraph(err, "audit")
    assert f"in use by a running audit (pid {os.getpid()} on {socket.gethostname()}, since 2030-01-01" in err
    assert "robustness audit other.yaml" in err and "-o" in err
    assert ("Nothing was deleted" in err) == restart
    assert snapshot(out) == before and lock.exists()


HOLDER = (
    "import sys; from robustness.core.runlock import RunLock; lock = RunLock(sys.argv[1], command='holder'); "
    "lock.acquire(); print('held', flush=True); sys.stdin.read(); lock.release()"
)


def hold_lock(outdir: Path) -> subprocess.Popen:
    """Another process holding ``outdir``'s lock until its stdin closes."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(outdir)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline() == "held\n"
    return proc


def test_a_run_in_another_process_holds_the_lock_until_it_ends(capsys, run_dir):
    config, out = run_dir
    with hold_lock(out) as holder:
        before = snapshot(out)
        code, _, err = audit(capsys, config, "--restart")
        assert code == 2 and f"running audit (pid {holder.pid} on {socket.gethostname()}" in err
        assert snapshot(out) == before  # --restart deleted nothing
        holder.stdin.close()  # the holder ends normally: its lock goes with it
        assert holder.wait(timeout=60) == 0
    assert not (out / LOCK_FILE).exists()
    # kill -9 leaves the lock behind; the next run finds its process gone and takes it over
    with hold_lock(out) as holder:
        holder.kill()
    assert (out / LOCK_FILE).exists()
    code, _, err = audit(capsys, config)
    assert code == 0 and "taking the lock over" in err
    assert not (out / LOCK_FILE).exists()


def test_a_stale_lock_is_taken_over_and_released(capsys, run_dir):
    config, out = run_dir
    write_lock(out, pid=dead_pid(), host=socket.gethostname())
    code, _, err = audit(capsys, config)
    assert code == 0, err
    assert "no longer running: its process has ended" in err and "taking the lock over" in err
    assert not (out / LOCK_FILE).exists() and not list(out.glob(f"{LOCK_FILE}*"))


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="process start times come from /proc")
def test_a_reused_pid_or_a_zombie_is_stale(tmp_path):
    # pid 1 is alive, but it started at another time than the recorded one: the pid was reused
    write_lock(tmp_path, pid=1, host=socket.gethostname(), process_start=-5)
    with RunLock(tmp_path, quiet=True) as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    assert not (tmp_path / LOCK_FILE).exists()
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 60
        while process_state(zombie.pid) != "Z" and time.monotonic() < deadline:
            time.sleep(0.01)  # until it has exited, unreaped
        assert process_state(zombie.pid) == "Z"
        write_lock(tmp_path, pid=zombie.pid, host=socket.gethostname())
        with RunLock(tmp_path, quiet=True):
            pass
    finally:
        zombie.wait()


def test_a_lock_from_another_host_is_refused_with_how_to_remove_it(capsys, run_dir):
    config, out = run_dir
    lock = write_lock(out, pid=4242, host="other-machine")
    code, _, err = audit(capsys, config, "--restart")
    assert code == 2
    one_paragraph(err, "audit")
    assert "another machine (pid 4242 on other-machine" in err and f"delete {lock}" in err
    assert lock.exists() and (out / FOLDER).exists()


def test_an_unreadable_lock_is_refused_while_fresh(capsys, tmp_path):
    (tmp_path / LOCK_FILE).write_text("{not json")
    with pytest.raises(RunLockedError, match="cannot be read"):
        RunLock(tmp_path).acquire()
    os.utime(tmp_path / LOCK_FILE, (0, 0))  # old: its writer died before finishing it
    with RunLock(tmp_path):
        pass
    assert "its lock file was never completed" in capsys.readouterr().err
    assert not (tmp_path / LOCK_FILE).exists()


def test_release_keeps_another_runs_lock(tmp_path):
    lock = RunLock(tmp_path)
    lock.acquire()
    with pytest.raises(RunLockedError):
        RunLock(tmp_path).acquire()  # this process is alive: held
    lock.path.write_text(lock.path.read_text().replace('"token"', '"other"'))  # taken over meanwhile
    lock.release()
    assert lock.path.exists()


def test_the_lock_is_released_after_an_error(capsys, run_dir):
    config, out = run_dir
    code, _, err = audit(capsys, config, "--model", "zoo:nope")
    assert code == 2 and "unknown zoo model" in err
    assert not (out / LOCK_FILE).exists()


# ---------------------------------------------------------------------------------------
# output folders, full disks, checkpoint files: named input errors


def test_an_output_folder_that_is_a_file(capsys, tmp_path):
    config = write_config(tmp_path / "a.yaml", tmp_path / "out")
    (tmp_path / "afile").write_text("x")
    for target, needle in (("afile", "afile is a file, not a folder"), ("afile/sub", "afile is a file")):
        code, _, err = audit(capsys, config, "-o", str(tmp_path / target))
        assert code == 2
        one_paragraph(err, "audit")
        assert "output.dir: " in err and needle in err and "-o" in err
    assert (tmp_path / "afile").read_text() == "x"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root may write anywhere")
def test_an_output_folder_that_is_not_writable(capsys, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        code, _, err = audit(capsys, write_config(tmp_path / "a.yaml", folder))
    finally:
        folder.chmod(0o755)
    assert code == 2
    one_paragraph(err, "audit")
    assert f"output.dir: cannot write {folder}: permission denied" in err


def test_a_lock_that_cannot_be_created_is_named(tmp_path, monkeypatch):
    # (as root, chmod does not stop a write: the refusal is simulated where the lock is created)
    real_open = os.open

    def no_permission(path, *args, **kwargs):
        if str(path).endswith(LOCK_FILE):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", no_permission)
    with pytest.raises(OutputError) as info:
        RunLock(tmp_path / "out").acquire()
    assert str(info.value).startswith(f"output.dir: cannot write {tmp_path / 'out'}: permission denied")
    assert not (tmp_path / "out").exists()  # the folder it created is gone again


@pytest.mark.parametrize("where", ["atomic writer", "a library's own write"])
def test_a_full_disk_is_named(capsys, tmp_path, monkeypatch, where):
    import robustness.checkpoint
    import robustness.core.io

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out" / "x"))

    if where == "atomic writer":
        monkeypatch.setattr(robustness.core.io, "_atomic_write", full)
    else:  # an OSError the atomic writer did not name: the command line still does
        monkeypatch.setattr(robustness.checkpoint, "atomic_write_json", full)
    config = write_config(tmp_path / "a.yaml", tmp_path / "out")
    code, _, err = audit(capsys, config)
    assert code == 2
    one_paragraph(err, "audit")
    assert "No space left on device (the disk is full or over its quota)" in err
    assert "internal error" not in err and "Free space" in err
    assert not (tmp_path / "out" / LOCK_FILE).exists()
    monkeypatch.undo()  # space freed: the same command now runs
    assert audit(capsys, config)[0] == 0


def test_atomic_write_names_the_file_on_a_full_disk(tmp_path):
    from robustness.core.io import atomic_write

    def write(tmp: str) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", tmp)

    target = tmp_path / "results.json"
    with pytest.raises(OutputError) as info:
        atomic_write(target, write)
    assert str(info.value).startswith(f"{target}: cannot write it: No space left on device")
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind


def _rewrite(path: Path, change) -> None:
    with np.load(path) as f:
        rec = {k: f[k] for k in f.files}
    change(rec)
    buf = io.BytesIO()
    np.savez(buf, **rec)
    path.write_bytes(buf.getvalue())


@pytest.mark.parametrize(
    "change, needle",
    [
        (lambda rec: rec.pop("x_adv"), "missing x_adv"),
        (lambda rec: rec.update(extra=np.zeros(2)), "unexpected extra"),
        (lambda rec: rec.update(pnorm=rec["pnorm"][:-1]), "pnorm has float32 of shape (3,)"),
        (lambda rec: rec.update(x_adv=np.zeros((int(rec["success"].sum()), 3, 3), np.float32)), "x_adv has"),
    ],
)
def test_a_checkpoint_batch_with_the_wrong_arrays_is_named_and_restart_recovers(
    capsys, run_dir, change, needle
):
    config, out = run_dir
    batch = sorted((out / FOLDER).glob("*.npz"))[0]
    _rewrite(batch, change)
    code, _, err = audit(capsys, config)
    assert code == 2
    err = one_paragraph(err, "audit")
    assert err.startswith(f"robustness audit: error: {batch}: this checkpoint batch file") and needle in err
    assert "Rerun the same command with --restart" in err
    assert not (out / LOCK_FILE).exists()
    code, _, err = audit(capsys, config, "--restart")  # the hint works
    assert code == 0, err
    assert json.loads((out / "results.json").read_text())["timing"]["resumed_batches"] == 0


def test_batch_problem_accepts_what_the_audit_writes(finished):
    for path in (finished / FOLDER).glob("*.npz"):
        with np.load(path) as f:
            assert batch_problem({k: f[k] for k in f.files}, (1, 8, 8)) is None
            assert "x_adv" in batch_problem({k: f[k] for k in f.files}, (1, 9, 9))


# ---------------------------------------------------------------------------------------
# a reader of stdout that leaves early


def test_robustness_attacks_into_head_is_quiet(tmp_path):
    err = tmp_path / "err"
    proc = subprocess.run(
        ["bash", "-c", f'robustness attacks 2>{err} | head -1; echo "${{PIPESTATUS[0]}}"'],
        capture_output=True,
        text=True,
        timeout=300,
    )
    first, code = proc.stdout.splitlines()
    assert first.startswith("name") and code == "0" and err.read_text() == ""


@pytest.mark.parametrize("argv", [["attacks"], ["attacks", "--json"], ["--help"]])
def test_a_closed_stdout_ends_quietly(argv):
    # The reader is gone before the first write: every write fails with EPIPE (python -m, too).
    read, write = os.pipe()
    os.close(read)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "robustness", *argv],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=300,
        )
    finally:
        os.close(write)
    assert proc.returncode == 0 and proc.stderr == ""


def test_an_audit_into_a_closed_pipe_keeps_its_verdict(run_dir):
    config, out = run_dir
    read, write = os.pipe()
    os.close(read)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "robustness", "audit", str(config), "--progress", "off"],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=300,
        )
    finally:
        os.close(write)
    assert proc.returncode == 0 and "error" not in proc.stderr
    assert (out / "results.json").exists() and not (out / LOCK_FILE).exists()
