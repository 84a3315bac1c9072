"""Which process owns a RUNNING run, and marking runs whose owner died KILLED.

A process killed outright (SIGKILL, out of memory, power cut) cannot end its run, so every run
records its owner (tags cifar10_mlops.pid / .host / .pid_start / .pid_space), and each stage
start marks RUNNING runs whose owner process here is gone KILLED.

"Here" is the pid namespace of this kernel boot (.pid_space: the boot id and the namespace's
inode), not the host name: two machines (or containers) called alike share a tracking server,
and a pid of one means nothing on the other.
"""

from __future__ import annotations

import datetime
import os
import socket
from pathlib import Path

PID_TAG = "cifar10_mlops.pid"
HOST_TAG = "cifar10_mlops.host"
PID_START_TAG = "cifar10_mlops.pid_start"
PID_SPACE_TAG = "cifar10_mlops.pid_space"
KILLED_REASON_TAG = "cifar10_mlops.killed_reason"


def _pid_space() -> str | None:
    """`<boot id>/pid:[<inode>]`: where a pid is meaningful. The boot id is random per kernel
    boot (another machine never shares it); the inode tells containers of one kernel apart."""
    try:
        boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return None
    return f"{boot_id}/{namespace}"


def _proc_stat(pid: int) -> list[str] | None:
    """Linux /proc/<pid>/stat fields from field 3 (state) on; None where there is no /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()  # the command name in (...) may hold spaces


def _process_start(pid: int) -> str | None:
    """Start time in clock ticks since boot (field 22): tells a reused pid apart."""
    fields = _proc_stat(pid)
    return fields[19] if fields else None


def owner_tags() -> dict[str, str]:
    pid = os.getpid()
    tags = {PID_TAG: str(pid), HOST_TAG: socket.gethostname()}
    started = _process_start(pid)
    if started:
        tags[PID_START_TAG] = started
    space = _pid_space()
    if space:
        tags[PID_SPACE_TAG] = space
    return tags


def owner_is_gone(tags: dict[str, str]) -> bool:
    """True only when sure: the owner ran in this pid namespace of this boot and its process
    no longer exists (or exited unreaped, or its pid now belongs to a process started later)."""
    if os.name != "posix" or tags.get(HOST_TAG) != socket.gethostname():
        return False  # another machine's process, or no safe probe (os.kill kills on Windows)
    space = _pid_space()
    if space is None or tags.get(PID_SPACE_TAG) != space:
        return False  # a machine with the same name, another container, or an older run
    try:
        pid = int(tags[PID_TAG])
    except (KeyError, ValueError):
        return False  # not a run this project started
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # exists, owned by another user
    fields = _proc_stat(pid)
    if fields is None:
        return False
    recorded_start = tags.get(PID_START_TAG)
    return fields[0] == "Z" or (recorded_start is not None and recorded_start != fields[19])


def mark_orphaned_runs_killed(mlflow_client, experiment_id: str) -> list[str]:
    """RUNNING runs whose owner process is gone can never end themselves: mark them KILLED."""
    running = mlflow_client.search_runs([experiment_id], "attributes.status = 'RUNNING'")
    orphans = [run for run in running if owner_is_gone(run.data.tags)]
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    for run in orphans:
        tags = run.data.tags
        reason = (
            f"owner process {tags[PID_TAG]} on {tags[HOST_TAG]} no longer existed at {now}; "
            f"marked KILLED by process {os.getpid()}"
        )
        mlflow_client.set_tag(run.info.run_id, KILLED_REASON_TAG, reason)
        mlflow_client.set_terminated(run.info.run_id, "KILLED")
    if orphans:
        ids = ", ".join(run.info.run_id for run in orphans)
        print(f"mlflow: marked KILLED (their process had died): {ids}")
    return [run.info.run_id for run in orphans]
