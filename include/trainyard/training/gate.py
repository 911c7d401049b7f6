"""The promotion gate: a pure decision from metrics and the spec's rules."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict

from trainyard.core.metrics import greater_is_better
from trainyard.core.spec import Gate


class GateCheck(BaseModel):
    """One rule and whether the challenger met it.

    Metric rules carry the metric, the challenger's value and the bound; the rule that the
    champion can be scored on this holdout carries none of them, only the rule text.
    """

    model_config = ConfigDict(frozen=True)

    rule: str
    metric: str | None = None
    value: float | None = None
    bound: float | None = None
    passed: bool

    def describe(self) -> str:
        """One line: verdict, rule and (for metric rules) value against bound."""
        mark = "ok  " if self.passed else "FAIL"
        if self.metric is None:
            return f"[{mark}] {self.rule}"
        return f"[{mark}] {self.rule}: {self.metric}={self.value:.4f} vs bound {self.bound:.4f}"


class GateDecision(BaseModel):
    """Whether the challenger may become champion, and every number behind it."""

    model_config = ConfigDict(frozen=True)

    passed: bool
    challenger: dict[str, float]
    champion: dict[str, float] | None
    champion_version: str | None
    checks: list[GateCheck]
    note: str = ""
    #: Set when the run asked to replace a champion it could not be compared with, and did:
    #: which version and why it was incompatible.
    replaced_incompatible_champion: str | None = None
    #: Set when this run's window ends before the champion's (a rerun or backfill of an older
    #: window): how much older. Such a run is refused unless it asked (``allow_older_window``).
    older_window: str | None = None
    allowed_older_window: bool = False

    @property
    def refused_older_window(self) -> bool:
        """Whether the gate refused this run because its window is older than the champion's."""
        return self.older_window is not None and not self.allowed_older_window

    def summary(self) -> str:
        """Multi-line explanation for logs and MLflow."""
        verdict = "PASSED" if self.passed else "REJECTED BY GATE"
        lines = [f"gate {verdict}"]
        lines += [f"  {check.describe()}" for check in self.checks]
        if self.note:
            lines.append(f"  note: {self.note}")
        return "\n".join(lines)

    def tags(self) -> dict[str, str]:
        """Lineage tags of the verdict (and of an incompatible champion replaced on request)."""
        tags = {"gate_decision": "passed" if self.passed else "rejected"}
        if self.replaced_incompatible_champion:
            tags["replaced_incompatible_champion"] = self.replaced_incompatible_champion
        if self.older_window and self.allowed_older_window:
            tags["allowed_older_window"] = self.older_window
        return tags


def _bound_check(rule: str, metric: str, value: float, bound: float, passed: bool) -> GateCheck:
    return GateCheck(rule=rule, metric=metric, value=value, bound=bound, passed=passed)


def decide(
    gate: Gate,
    challenger: dict[str, float],
    champion: dict[str, float] | None,
    champion_version: str | None = None,
    note: str = "",
    *,
    leak_bounds: Mapping[str, float] | None = None,
    incompatible: str | None = None,
    replace_incompatible: bool = False,
    older_window: str | None = None,
    allow_older_window: bool = False,
) -> GateDecision:
    """Apply the gate.

    The challenger passes only if every floor holds, no metric is implausibly perfect (a
    suspected leak of the label into a feature), and, when there is a champion, it was scored on
    the same holdout and the challenger is not worse than it by more than
    ``gate.max_regression``. A champion that cannot be scored on this holdout fails the gate
    (it never falls back to "floors only") unless the run asked to replace it. A run whose
    window ends before the champion's (a rerun or backfill of older data) fails too, unless it
    asked for that (``allow_older_window``): a backfill must not silently replace the model
    trained on newer data.

    Args:
        gate: Floors, comparison metric and allowed regression.
        challenger: The new model's holdout metrics.
        champion: The current champion's metrics on the same holdout, or None.
        champion_version: For the record.
        note: Anything the caller wants recorded.
        leak_bounds: Metric -> implausible value (see ``PipelineSpec.leak_bounds``).
        incompatible: Why the champion could not be scored on this holdout, if it could not.
        replace_incompatible: The run explicitly asked to replace an incompatible champion.
        older_window: How this run's window is older than the champion's, if it is.
        allow_older_window: The run explicitly asked to replace a champion trained on a newer
            window.

    Returns:
        The decision with one check per rule.
    """
    checks: list[GateCheck] = []
    for metric, bound in sorted(gate.floors.items()):
        value = challenger[metric]
        greater = greater_is_better(metric)
        passed = value >= bound if greater else value <= bound
        checks.append(_bound_check("floor" if greater else "ceiling", metric, value, bound, passed))
    for metric, bound in sorted((leak_bounds or {}).items()):
        value = challenger[metric]
        greater = greater_is_better(metric)
        passed = value < bound if greater else value > bound
        rule = "suspected leak: implausibly " + ("high" if greater else "low")
        checks.append(_bound_check(rule, metric, value, bound, passed))
    replaced = None
    if incompatible is not None:
        if replace_incompatible:
            replaced = f"v{champion_version}: {incompatible}"
            rule = (
                f"champion v{champion_version} cannot score this holdout ({incompatible}); "
                "replacing it as this run asked (replace_incompatible_champion)"
            )
        else:
            rule = (
                f"champion v{champion_version} cannot score this holdout: {incompatible} "
                "(to replace it anyway, run with replace_incompatible_champion)"
            )
        checks.append(GateCheck(rule=rule, passed=replace_incompatible))
    elif champion is not None:
        metric = gate.champion_metric
        greater = greater_is_better(metric)
        bound = (
            champion[metric] - gate.max_regression
            if greater
            else champion[metric] + gate.max_regression
        )
        value = challenger[metric]
        rule = f"not worse than champion v{champion_version} by more than {gate.max_regression}"
        checks.append(
            _bound_check(rule, metric, value, bound, value >= bound if greater else value <= bound)
        )
    if older_window is not None:
        if allow_older_window:
            rule = f"{older_window}; replacing it as this run asked (allow_older_window)"
        else:
            rule = f"{older_window} (to replace it anyway, run with allow_older_window)"
        checks.append(GateCheck(rule=rule, passed=allow_older_window))
    return GateDecision(
        passed=all(check.passed for check in checks),
        challenger=challenger,
        champion=champion,
        champion_version=champion_version,
        checks=checks,
        note=note,
        replaced_incompatible_champion=replaced,
        older_window=older_window,
        allowed_older_window=allow_older_window and older_window is not None,
    )
