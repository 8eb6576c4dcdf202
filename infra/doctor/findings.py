"""What `mlflow-infra doctor` reports: findings, each naming the bottleneck of the plan's table it
belongs to, how bad it is, the evidence (numbers and the object they concern) and the remedy; and
which sources it could read. Plain data: the checks produce it, the CLI prints it as a table or JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

# The bottlenecks of the reference text, as the plan's table names them (README "What the plan decides").
BOTTLENECKS = ("instance", "replicas", "parameters", "batching", "server", "network", "indexes", "open-files", "connections")
SEVERITIES = ("high", "medium", "low")

EXIT_CLEAN = 0
EXIT_FINDINGS = 1
EXIT_BAD_INPUT = 2
EXIT_UNREACHABLE = 3


@dataclass(frozen=True)
class Finding:
    bottleneck: str
    severity: str
    evidence: str
    """What was seen, with its numbers, naming the object concerned (the index, the parameter, the node)."""
    remedy: str
    """A change to the environment file, or a command."""
    source: str
    """Where the evidence comes from: `primary`, `replica-1`, ..."""

    def __post_init__(self):
        if self.bottleneck not in BOTTLENECKS:
            raise ValueError(f"finding bottleneck {self.bottleneck!r} is not one of {', '.join(BOTTLENECKS)}")
        if self.severity not in SEVERITIES:
            raise ValueError(f"finding severity {self.severity!r} is not one of {', '.join(SEVERITIES)}")


@dataclass
class Source:
    name: str
    reached: bool
    detail: str
    """What was read, or why it could not be."""


@dataclass
class Report:
    environment: str
    findings: list[Finding] = field(default_factory=list)
    sources: list[Source] = field(default_factory=list)
    facts: dict[str, object] = field(default_factory=dict)
    """What was measured beside the findings (the top statements), for the operator's eye."""

    @property
    def exit_code(self) -> int:
        """3 when a source the checks need could not be reached, else 1 with findings, else 0."""
        if any(not s.reached for s in self.sources):
            return EXIT_UNREACHABLE
        return EXIT_FINDINGS if self.findings else EXIT_CLEAN

    def as_json(self) -> dict:
        order = {s: i for i, s in enumerate(SEVERITIES)}
        return {"environment": self.environment,
                "findings": [asdict(f) for f in sorted(self.findings, key=lambda f: (order[f.severity], f.bottleneck))],
                "sources": [asdict(s) for s in self.sources], "facts": self.facts, "exit_code": self.exit_code}
