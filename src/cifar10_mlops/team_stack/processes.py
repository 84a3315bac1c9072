"""Servers as child processes: start one in a process group of its own with its output in a
log, wait until it answers, tell it from a later process that reused its pid, stop the group.

The team stack's servers and the tests' own `mlflow server` (tests/helpers/tracking_server.py)
are started and stopped with these.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cifar10_mlops.team_stack.errors import StackError
from cifar10_mlops.team_stack.state import save_state

READY_TIMEOUT_S = 180  # the MLflow server's first start creates its schema: ~30 s on 2 busy cores
STOP_TIMEOUT_S = 30


def venv_tool(name: str, install_hint: str) -> str:
    """A console script of this environment (next to its python), else from PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.is_file() else shutil.which(name)
    if not found:
        raise StackError(f"`{name}` not found; {install_hint}")
    return found


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def run_tool(command: list[str], what: str, log: Path | None = None, **kwargs) -> None:
    """Run a command to its end; a failure is a StackError with its last line of output."""
    result = subprocess.run(
        command, capture_output=True, text=True, stdin=subprocess.DEVNULL, **kwargs
    )
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        last = detail[-1] if detail else f"exit {result.returncode}"
        where = f"; see {log}" if log else ""
        raise StackError(f"{what} failed: {last}{where}")


def process_start_ticks(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat: tells our process from a later one that reused its pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def alive(record: dict[str, Any] | None) -> bool:
    """The process a record (from process_record) names still runs: same pid, same start."""
    if not record:
        return False
    ticks = process_start_ticks(int(record["pid"]))
    return ticks is not None and ticks == record.get("start")


def spawn(command: list[str], log: Path, env: dict[str, str], cwd: Path) -> subprocess.Popen:
    """Start `command` in a process group of its own, stdout and stderr appended to `log`
    (mode 600: a server's log can hold paths, users and request details)."""
    with open(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as handle:
        return subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: stopped as a whole, not by Ctrl-C
        )


def process_record(process: subprocess.Popen, log: Path) -> dict[str, Any]:
    """What stack.json keeps of a started server: enough to find and stop it later."""
    return {"pid": process.pid, "start": process_start_ticks(process.pid), "log": str(log)}


def stop_process_group(pid: int, is_ours: Callable[[], bool] = lambda: True) -> None:
    """SIGTERM the process group `pid` leads, SIGKILL it after STOP_TIMEOUT_S, reap it."""
    stop_process_groups([(pid, is_ours)])


def stop_process_groups(groups: list[tuple[int, Callable[[], bool]]]) -> None:
    """Stop several process groups at once: SIGTERM to all, wait; SIGKILL what is left."""
    left = list(groups)
    for sig, wait_s in ((signal.SIGTERM, STOP_TIMEOUT_S), (signal.SIGKILL, 10)):
        left = [(pid, is_ours) for pid, is_ours in left if is_ours() and _signal_group(pid, sig)]
        deadline = time.monotonic() + wait_s
        while left and time.monotonic() < deadline:
            left = [(pid, is_ours) for pid, is_ours in left if not _gone(pid)]
            if left:
                time.sleep(0.1)
        if not left:
            return


def stop_recorded(records: list[dict[str, Any]]) -> None:
    """Stop the process groups of these records, each only while it is still ours."""
    stop_process_groups(
        [(int(record["pid"]), functools.partial(alive, record)) for record in records]
    )


def _signal_group(pid: int, sig: int) -> bool:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        return False
    return True


def _gone(pid: int) -> bool:
    try:  # our own child (a failed start) must be reaped, or it stays a zombie
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return True
    except ChildProcessError:
        pass  # not our child: an earlier `up` started it
    return process_start_ticks(pid) is None


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def wait_until(
    ready: Callable[[], bool],
    what: str,
    record: dict[str, Any] | None = None,
    timeout_s: float = READY_TIMEOUT_S,
    port: int | None = None,
) -> None:
    """Poll `ready` until it answers True; fail when the process exits or after the timeout.

    With `port`, an answer counts only when the recorded process's group holds the listening
    socket: another program squatting on the port would answer just as well."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ready():
            if port is None or record is None or group_listens_on(int(record["pid"]), port):
                return
            raise StackError(
                f"{what}: 127.0.0.1:{port} answers, but not from the process started here "
                f"(pid {record['pid']}): another program holds the port; stop it and start again"
            )
        if record is not None and not alive(record):
            _reap(int(record["pid"]))
            raise StackError(f"{what} exited while starting{log_tail(record)}")
        time.sleep(0.25)
    raise StackError(f"{what} did not answer within {timeout_s:g} s{log_tail(record)}")


def start_server(
    name: str,
    command: list[str],
    env: dict[str, str],
    directory: Path,
    state: dict[str, Any],
    ready: Callable[[], bool],
    what: str,
    port: int,
) -> None:
    """Start one of the stack's servers: spawn it (its log logs/<name>.log), record it in
    stack.json under processes.<name> before waiting (so `down` finds even a start that then
    fails), and wait until `ready` answers from that process on `port`."""
    log = directory / "logs" / f"{name}.log"
    record = process_record(spawn(command, log, env, directory), log)
    state.setdefault("processes", {})[name] = record
    save_state(directory, state)
    wait_until(ready, what, record, port=port)


def group_listens_on(group: int, port: int) -> bool:
    """A process of process group `group` holds a socket listening on TCP `port` (Linux /proc:
    the listening sockets' inodes, then the group's open files). Without /proc: True."""
    if not Path("/proc/net/tcp").exists():
        return True
    sockets = {f"socket:[{inode}]" for inode in _listening_inodes(port)}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if int((proc / "stat").read_text().rsplit(")", 1)[1].split()[2]) != group:
                continue  # field 5, the process group
            if any(os.readlink(fd) in sockets for fd in (proc / "fd").iterdir()):
                return True
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile, or not ours to read
    return False


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(inode)
    return inodes


def log_tail(record: dict[str, Any] | None) -> str:
    """'; its log ends "<last line>" (see <log>)', for a one-line error."""
    if not record:
        return ""
    try:
        lines = Path(record["log"]).read_text(errors="replace").strip().splitlines()
    except OSError:
        lines = []
    last = f' ends "{lines[-1].strip()[:300]}"' if lines else " is empty"
    return f"; its log{last} (see {record['log']})"


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
