"""Whose run is it (issue 27, item 6): two machines with the same host name on one tracking
server must not mark each other's live runs KILLED. A pid means something only inside the pid
namespace of one kernel boot, so that is what a run's owner records and what is compared."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from cifar10_mlops.tracking import owners

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_the_owner_tags_name_the_pid_namespace_of_this_boot():
    tags = owners.owner_tags()
    boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert tags[owners.PID_SPACE_TAG].startswith(f"{boot_id}/pid:[")


def test_a_run_of_another_machine_with_the_same_host_name_is_not_taken_for_dead():
    # The other machine's live process: its pid does not exist here, its host name is ours.
    other_machine = {
        owners.HOST_TAG: socket.gethostname(),
        owners.PID_TAG: str(dead_pid()),
        owners.PID_SPACE_TAG: "9f0c6f52-0000-4000-8000-000000000000/pid:[4026531836]",
    }
    assert not owners.owner_is_gone(other_machine)


def test_a_run_without_a_pid_namespace_is_left_alone():
    # Written by an older version, from any machine called like this one: no way to be sure.
    assert not owners.owner_is_gone(
        {owners.HOST_TAG: socket.gethostname(), owners.PID_TAG: str(dead_pid())}
    )


def test_a_dead_owner_in_this_pid_namespace_is_gone():
    tags = {**owners.owner_tags(), owners.PID_TAG: str(dead_pid())}
    tags.pop(owners.PID_START_TAG, None)
    assert owners.owner_is_gone(tags)
