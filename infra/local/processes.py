"""The process toolkit of the local topology and the benchmark: free ports, HTTP probes, one wait
loop, daemons that outlive the CLI, stopping them, and log tails for error messages.

Linux only (reads /proc), like the embedded PostgreSQL binaries it runs beside.
"""

from __future__ import annotations

import errno
import os
import random
import resource
import signal
import socket
import subprocess
import http.client
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

HOST = "127.0.0.1"
T = TypeVar("T")


# ---------------------------------------------------------------------------------------------
# waiting

def wait_until(predicate: Callable[[], T], timeout_s: float, interval_s: float, what: str) -> T:
    """The first truthy result of `predicate()`, polled every `interval_s`; TimeoutError naming `what`
    after `timeout_s`. The predicate may raise to give up early (a server that exited)."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = predicate()
        if result:
            return result
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"timed out after {timeout_s:g} s waiting for {what}")
        # never sleep past the deadline: the last check then falls on it, not an interval later
        time.sleep(min(interval_s, remaining))


# ---------------------------------------------------------------------------------------------
# ports and HTTP

def port_in_use(port: int) -> bool:
    """Whether something holds 127.0.0.1:port. Binds as the servers do (SO_REUSEADDR), so a
    listener on 127.0.0.1 or 0.0.0.0 counts and a closed connection's TIME_WAIT does not."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise
    return False


def free_port() -> int:
    """A port free on 127.0.0.1 now (the kernel's pick)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def free_port_block(count: int, start: int = 21000, stop: int = 40000) -> int:
    """The first port of `count` consecutive free ports (the local topology numbers its databases from
    a base). The scan starts at a random place in the range, so two processes looking at the same
    moment rarely pick the same block."""
    span = range(start, stop - count, count)
    offset = random.randrange(len(span))
    for base in [*span[offset:], *span[:offset]]:
        if not any(port_in_use(port) for port in range(base, base + count)):
            return base
    raise RuntimeError(f"no {count} consecutive free ports between {start} and {stop}")


# Every URL probed is a server on this machine (or in this container): an http_proxy in the
# environment must not carry the probes elsewhere.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_status(url: str, timeout: float = 3, authorization: str | None = None,
                headers: Mapping[str, str] | None = None) -> int | None:
    """The HTTP status of a GET, or None when nothing answers (not listening yet, a worker restarting,
    a garbled answer); `authorization` is sent as the Authorization header (basic-auth servers answer
    401 without), `headers` besides."""
    sent = {**(headers or {}), **({"Authorization": authorization} if authorization else {})}
    try:
        with _DIRECT.open(urllib.request.Request(url, headers=sent), timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, ValueError, http.client.HTTPException):
        return None


def http_ok(url: str, timeout: float = 3) -> bool:
    return http_status(url, timeout) == 200


def log_tail(path: Path, lines: int = 20) -> str:
    """The last `lines` of a log for an error message; empty when it cannot be read (never hides the error)."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


# ---------------------------------------------------------------------------------------------
# processes, read from /proc

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


def process_environment(pid: int) -> dict[str, str]:
    """A running process's environment, as it started (/proc/PID/environ)."""
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


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
    """The group still runs an MLflow server (or the topology's UI balancer): guards against a pid
    reused since the state was written."""
    markers = ("mlflow", "uvicorn", "infra.local.balancer")
    return bool(pgid) and any(m in command_line(pid) for pid in group_pids(pgid) for m in markers)


# ---------------------------------------------------------------------------------------------
# starting and stopping

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


def _escalate(send: Callable[[int], None], gone: Callable[[], bool], steps: Sequence[tuple[int, float]], what: str) -> bool:
    """Send each signal of `steps` in turn until `gone()`, waiting its seconds after each; never
    raises. Whether it is gone."""
    for signum, wait_s in steps:
        if gone():
            return True
        send(signum)
        try:
            wait_until(gone, wait_s, 0.1, what)
            return True
        except TimeoutError:
            continue  # the next, harder signal
    return gone()


def _kill(send: Callable[[int, int], None], target: int, signum: int) -> None:
    try:
        send(target, signum)
    except (ProcessLookupError, PermissionError):  # gone, or its pid now belongs to someone else
        pass


def _reap(process: int | subprocess.Popen) -> None:
    # when this process started it (tests, the benchmark), collect its exit status: no zombie left
    if isinstance(process, subprocess.Popen):
        process.poll()
        return
    try:
        os.waitpid(process, os.WNOHANG)
    except ChildProcessError:
        pass


def stop_group(process: int | subprocess.Popen, grace_s: float = 15, kill_s: float = 30) -> None:
    """SIGTERM the process group led by `process` (a pgid, or a Popen started with start_new_session:
    mlflow, uvicorn and its workers), SIGKILL whatever is left after `grace_s`. Never raises: a group
    already gone is a no-op, and `kill_s` is how long a loaded machine gets to carry out the SIGKILL."""
    pgid = process if isinstance(process, int) else process.pid
    _escalate(lambda signum: _kill(os.killpg, pgid, signum), lambda: not group_pids(pgid),
              ((signal.SIGTERM, grace_s), (signal.SIGKILL, kill_s)), f"process group {pgid} to exit")
    _reap(process)


def stop_postmaster(pid: int, timeout_s: float = 60, quit_s: float = 30) -> bool:
    """SIGINT is PostgreSQL's fast shutdown, what `pg_ctl -m fast` sends: sessions end, a checkpoint
    is written; SIGQUIT (immediate shutdown) after `timeout_s`, which a loaded machine's checkpoint
    may need. By pid, so it works even when the data directory's path is no longer reachable for the
    server's user (a concurrent pytest session resets /tmp/pytest-of-root to 0700). Never raises;
    whether the postmaster is gone."""
    return _escalate(lambda signum: _kill(os.kill, pid, signum), lambda: not pid_alive(pid),
                     ((signal.SIGINT, timeout_s), (signal.SIGQUIT, quit_s)), f"PostgreSQL (pid {pid}) to shut down")
