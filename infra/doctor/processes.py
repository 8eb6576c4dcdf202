"""The servers' processes as the kernel sees them (`/proc`): open files against each process's
soft limit. "Too many open files" is the reference text's last bottleneck: every connection, log
file and pooled database socket of a worker is a descriptor, and the limit is per process.

Linux only (the local topology runs there); a process that is gone or unreadable is skipped, not
raised: the server source reports the process group itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from .findings import Finding

# Above this share of its soft limit a worker is one traffic burst from EMFILE (accept() fails, the
# database pool cannot open a socket); the plan sizes the limit at several times the steady need.
OPEN_FILES_SHARE = 0.8
PROC = Path("/proc")


def open_files(pid: int, proc: Path = PROC) -> tuple[int, int] | None:
    """(open descriptors, soft RLIMIT_NOFILE) of a process, or None when it cannot be read."""
    try:
        count = sum(1 for _ in (proc / str(pid) / "fd").iterdir())
        for line in (proc / str(pid) / "limits").read_text().splitlines():
            if line.startswith("Max open files"):
                soft = line.split()[3]
                return count, (int(soft) if soft.isdigit() else 0)
    except (OSError, ValueError, IndexError):
        return None
    return None


def open_files_findings(rows: Iterable[tuple[str, int, int, int]], remedy: str) -> list[Finding]:
    """`rows`: (server, pid, open descriptors, soft limit). A process over OPEN_FILES_SHARE of its limit."""
    findings = []
    for server, pid, count, limit in rows:
        if limit and count > limit * OPEN_FILES_SHARE:
            findings.append(Finding("open-files", "high", f"the {server} server's process {pid} has {count:,} files open of its"
                                    f" limit {limit:,} ({count / limit:.0%})", remedy, server))
    return findings
