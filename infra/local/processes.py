"""Processes of the local topology: free ports, daemons that outlive the CLI, and stopping them.

Linux only (reads /proc), like the embedded PostgreSQL binaries it runs beside.
"""

from __future__ import annotations

import errno
import os
import resource
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path


def port_in_use(port: int) -> bool:
    """Whether something holds 127.0.0.1:port. Binds as the servers do (SO_REUSEADDR), so a
    listener on 127.0.0.1 or 0.0.0.0 counts and a closed connection's TIME_WAIT does not."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise
    return False


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after the command name (which may hold spaces): state, ppid, pgrp, ..."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def pid_alive(pid: int | None) -> bool:
    """A running process; a zombie (exited, not yet reaped by its parent) counts as gone."""
    if not pid:
        return False
    fields = _stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def parent_pid(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[1]) if fields else None


def group_pids(pgid: int) -> list[int]:
    """Live processes of the process group `pgid` (a daemon and everything it forked)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields and fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return sorted(members)


def is_mlflow_group(pgid: int | None) -> bool:
    """The group still runs an MLflow server: guards against a pid reused since the state was written."""
    return bool(pgid) and any("mlflow" in command_line(pid) or "uvicorn" in command_line(pid) for pid in group_pids(pgid))


def nofile_soft_limit(planned: int) -> int:
    """The open-files soft limit a server gets here: the plan's, unless the hard limit is lower."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return planned if hard == resource.RLIM_INFINITY else min(planned, hard)


def _raise_nofile(limit: int) -> None:
    """In the child before exec (an unprivileged process may not raise its hard limit)."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (nofile_soft_limit(limit), hard))


def spawn_daemon(argv: Sequence[str], env: Mapping[str, str], log: Path, nofile: int) -> int:
    """Start `argv` in its own session (it outlives this process), output appended to `log`; its pid."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen(list(argv), env=dict(env), stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True,
                                   preexec_fn=lambda: _raise_nofile(nofile))
    return process.pid


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        pass


def _reap(pid: int) -> None:
    # when this process started the daemon (tests, the benchmark), collect its exit status
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def stop_group(pgid: int, grace_s: float = 15) -> None:
    """SIGTERM the whole group (mlflow, uvicorn and its workers), SIGKILL whatever is left after `grace_s`."""
    for signum, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5)):
        if not group_pids(pgid):
            break
        _signal_group(pgid, signum)
        deadline = time.monotonic() + wait_s
        while group_pids(pgid) and time.monotonic() < deadline:
            _reap(pgid)
            time.sleep(0.1)
    _reap(pgid)


def stop_postmaster(pid: int, timeout_s: float = 60) -> None:
    """SIGINT is PostgreSQL's fast shutdown, what `pg_ctl -m fast` sends: sessions end, a checkpoint
    is written. By pid, so it works even when the data directory's path is no longer reachable
    for the server's user (a concurrent pytest session resets /tmp/pytest-of-root to 0700)."""
    for signum, wait_s in ((signal.SIGINT, timeout_s), (signal.SIGQUIT, 10)):  # SIGQUIT: immediate shutdown
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait_s
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not pid_alive(pid):
            return


def http_status(url: str, timeout: float = 3) -> int | None:
    """The HTTP status of a GET, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, ValueError):
        return None


def log_tail(path: Path, lines: int = 20) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def uvicorn_workers(pgid: int) -> list[int]:
    """The worker processes under the uvicorn supervisor of a server's group (what --workers counts)."""
    members = group_pids(pgid)
    supervisors = {pid for pid in members if "uvicorn" in command_line(pid)}
    return [pid for pid in members if parent_pid(pid) in supervisors and "spawn_main" in command_line(pid)]
