"""Free TCP ports on the loopback, where every server of the stack listens."""

from __future__ import annotations

import socket

HOST = "127.0.0.1"


def port_is_free(port: int) -> bool:
    """Nothing listens on `port`; connections in TIME_WAIT do not count (as for the servers,
    which all bind with SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


def free_ports(count: int) -> list[int]:
    """`count` distinct ports free on 127.0.0.1 now (all held open until all are chosen)."""
    probes = []
    try:
        for _ in range(count):
            probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            probes.append(probe)
            probe.bind((HOST, 0))
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def keep_or_pick_ports(kept: dict[str, int], names: tuple[str, ...]) -> dict[str, int]:
    """The ports of the last start while they are all still free, else new free ones."""
    if set(kept) == set(names) and all(port_is_free(port) for port in kept.values()):
        return kept
    return dict(zip(names, free_ports(len(names)), strict=True))
