"""The promotion gate decision."""

from __future__ import annotations

import pytest

from trainyard.core.spec import Gate
from trainyard.training.gate import decide

GATE = Gate(
    floors={"roc_auc": 0.75, "log_loss": 0.6}, champion_metric="roc_auc", max_regression=0.01
)


def test_passes_floors_without_champion() -> None:
    decision = decide(GATE, {"roc_auc": 0.8, "log_loss": 0.5}, None)
    assert decision.passed
    assert [c.rule for c in decision.checks] == ["ceiling", "floor"]


@pytest.mark.parametrize(
    "metrics",
    [{"roc_auc": 0.74, "log_loss": 0.5}, {"roc_auc": 0.9, "log_loss": 0.61}],
    ids=["below-floor", "above-ceiling"],
)
def test_any_bound_failing_rejects(metrics: dict[str, float]) -> None:
    decision = decide(GATE, metrics, None)
    assert not decision.passed
    assert "REJECTED BY GATE" in decision.summary()


def test_floors_are_inclusive() -> None:
    assert decide(GATE, {"roc_auc": 0.75, "log_loss": 0.6}, None).passed


@pytest.mark.parametrize(
    ("challenger", "passed"),
    [(0.81, True), (0.79, True), (0.7899, False)],
)
def test_champion_margin(challenger: float, passed: bool) -> None:
    decision = decide(
        GATE,
        {"roc_auc": challenger, "log_loss": 0.5},
        {"roc_auc": 0.80, "log_loss": 0.5},
        champion_version="3",
    )
    assert decision.passed is passed
    comparison = decision.checks[-1]
    assert comparison.rule.startswith("not worse than champion v3")
    assert comparison.bound == pytest.approx(0.79)


def test_lower_is_better_metric_compared_the_right_way() -> None:
    gate = Gate(champion_metric="log_loss", max_regression=0.02)
    assert decide(gate, {"log_loss": 0.51}, {"log_loss": 0.50}).passed
    assert not decide(gate, {"log_loss": 0.53}, {"log_loss": 0.50}).passed
