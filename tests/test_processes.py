"""Stopping a PostgreSQL postmaster by pid on a loaded machine: the fast shutdown (SIGINT) first, the
immediate one (SIGQUIT) when the fast one does not finish, and a report instead of an exception when
neither does. Stand-in processes with PostgreSQL's signal behaviour changed, so each path runs."""

from __future__ import annotations

import signal
import subprocess
import sys

from infra.local.processes import pid_alive, stop_postmaster

# Each signal is set either way: one ignored where this process started (a background job of a
# non-interactive shell ignores SIGINT and SIGQUIT, and exec keeps that) must not stand in for one
# the test means to end it; PostgreSQL sets its own handlers for both.
IGNORE = """
import signal, sys, time
for name in ("SIGINT", "SIGQUIT"):
    signal.signal(getattr(signal, name), signal.SIG_IGN if name in sys.argv[1:] else signal.SIG_DFL)
print("ready", flush=True)
time.sleep(600)
"""


def stand_in(*ignored: str) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", IGNORE, *ignored], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "ready"   # its handlers are set before any signal arrives
    return process


def test_a_fast_shutdown_that_does_not_finish_gets_the_immediate_one():
    process = stand_in("SIGINT")   # a checkpoint that outlasts the wait, as on a loaded machine
    try:
        assert stop_postmaster(process.pid, timeout_s=1, quit_s=30) is True
        process.wait(timeout=10)
        assert process.returncode == -signal.SIGQUIT
    finally:
        process.kill()
        process.wait()


def test_one_that_survives_both_is_reported_not_raised():
    process = stand_in("SIGINT", "SIGQUIT")
    try:
        assert stop_postmaster(process.pid, timeout_s=0.5, quit_s=0.5) is False
        assert pid_alive(process.pid)
    finally:
        process.kill()
        process.wait()


def test_a_postgres_that_does_not_stop_says_so_with_its_log(tmp_path, monkeypatch, capsys):
    from infra.local import postgres, processes

    server = postgres.LocalPostgres(tmp_path, 5999)
    (tmp_path / "server.log").write_text("LOG:  received fast shutdown request\nLOG:  checkpoint starting: shutdown immediate\n")
    monkeypatch.setattr(postgres.LocalPostgres, "_live_pid", lambda self: 4242)
    monkeypatch.setattr(processes, "stop_postmaster", lambda pid: False)
    server.stop()   # never raises: a test's own failure stays the one reported
    err = capsys.readouterr().err
    assert err.startswith(f"PostgreSQL (pid 4242, {tmp_path}) did not stop after SIGINT and SIGQUIT; its log's tail:")
    assert "checkpoint starting: shutdown immediate" in err
