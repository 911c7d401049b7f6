"""The promotion gate: a pure decision from metrics and the spec's rules."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from trainyard.core.metrics import greater_is_better
from trainyard.core.spec import Gate


class GateCheck(BaseModel):
    """One rule and whether the challenger met it."""

    model_config = ConfigDict(frozen=True)

    rule: str
    metric: str
    value: float
    bound: float
    passed: bool


class GateDecision(BaseModel):
    """Whether the challenger may become champion, and every number behind it."""

    model_config = ConfigDict(frozen=True)

    passed: bool
    challenger: dict[str, float]
    champion: dict[str, float] | None
    champion_version: str | None
    checks: list[GateCheck]
    note: str = ""

    def summary(self) -> str:
        """Multi-line explanation for logs and MLflow."""
        verdict = "PASSED" if self.passed else "REJECTED BY GATE"
        lines = [f"gate {verdict}"]
        for check in self.checks:
            mark = "ok  " if check.passed else "FAIL"
            lines.append(
                f"  [{mark}] {check.rule}: {check.metric}={check.value:.4f} "
                f"vs bound {check.bound:.4f}"
            )
        if self.note:
            lines.append(f"  note: {self.note}")
        return "\n".join(lines)


def decide(
    gate: Gate,
    challenger: dict[str, float],
    champion: dict[str, float] | None,
    champion_version: str | None = None,
    note: str = "",
) -> GateDecision:
    """Apply the gate.

    The challenger passes only if every floor holds and, when there is a champion scored on the
    same holdout, it is not worse than the champion by more than ``gate.max_regression``.

    Args:
        gate: Floors, comparison metric and allowed regression.
        challenger: The new model's holdout metrics.
        champion: The current champion's metrics on the same holdout, or None.
        champion_version: For the record.
        note: Anything the caller wants recorded (e.g. why the champion was not compared).

    Returns:
        The decision with one check per rule.
    """
    checks: list[GateCheck] = []
    for metric, bound in sorted(gate.floors.items()):
        value = challenger[metric]
        greater = greater_is_better(metric)
        checks.append(
            GateCheck(
                rule="floor" if greater else "ceiling",
                metric=metric,
                value=value,
                bound=bound,
                passed=value >= bound if greater else value <= bound,
            )
        )
    if champion is not None:
        metric = gate.champion_metric
        greater = greater_is_better(metric)
        bound = (
            champion[metric] - gate.max_regression
            if greater
            else champion[metric] + gate.max_regression
        )
        value = challenger[metric]
        checks.append(
            GateCheck(
                rule=f"not worse than champion v{champion_version} by more than "
                f"{gate.max_regression}",
                metric=metric,
                value=value,
                bound=bound,
                passed=value >= bound if greater else value <= bound,
            )
        )
    return GateDecision(
        passed=all(check.passed for check in checks),
        challenger=challenger,
        champion=champion,
        champion_version=champion_version,
        checks=checks,
        note=note,
    )
