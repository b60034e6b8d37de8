"""Is a run that says `running` really running? A record outlives the process that wrote it (a
SIGKILL, a reboot, a preempted node), so readers check the process and the heartbeat."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

# A run whose heartbeat is older than this is reported stale (runs beat every heartbeat_s = 30 s).
DEFAULT_STALE_AFTER_S = 900.0


def process_start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), which tells a live process from
    a later one that reuses its pid; None where /proc cannot say."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] in ("Z", "X"):  # a zombie has finished: it only waits to be reaped
        return None
    return int(fields[19])


def process_alive(pid: int, started: int | None) -> bool:
    """Whether process `pid` on this host is still the one that wrote the record."""
    if Path("/proc").is_dir():
        now_started = process_start_time(pid)
        return now_started is not None and (started is None or now_started == started)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def effective_status(summary: dict[str, Any], stale_after_s: float = DEFAULT_STALE_AFTER_S,
                     now: float | None = None) -> str:
    """The recorded status, except that a `running` run whose process is gone (same host) or whose
    heartbeat is older than `stale_after_s` is `stale`: killed without a chance to say so."""
    status = summary.get("status", "unknown")
    if status != "running":
        return status
    pid, host = summary.get("pid"), summary.get("host")
    if isinstance(pid, int) and host == socket.gethostname() \
            and not process_alive(pid, summary.get("pid_started")):
        return "stale"
    heartbeat = summary.get("heartbeat_at")
    now = time.time() if now is None else now
    if not isinstance(heartbeat, int | float) or now - heartbeat > stale_after_s:
        return "stale"
    return status
