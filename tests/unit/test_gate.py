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


LEAK_BOUNDS = {"roc_auc": 0.999, "log_loss": 0.001}


@pytest.mark.parametrize(
    ("metrics", "failed"),
    [
        ({"roc_auc": 1.0, "log_loss": 0.0}, ["roc_auc", "log_loss"]),
        ({"roc_auc": 0.999, "log_loss": 0.2}, ["roc_auc"]),
        ({"roc_auc": 0.95, "log_loss": 0.001}, ["log_loss"]),
        ({"roc_auc": 0.9989, "log_loss": 0.0011}, []),
    ],
    ids=["perfect", "at-ceiling", "at-floor", "just-inside"],
)
def test_implausibly_perfect_metrics_are_rejected_as_a_suspected_leak(
    metrics: dict[str, float], failed: list[str]
) -> None:
    decision = decide(GATE, metrics, None, leak_bounds=LEAK_BOUNDS)
    leaks = [c for c in decision.checks if c.rule.startswith("suspected leak")]
    assert sorted(c.metric for c in leaks if not c.passed) == sorted(failed)
    assert decision.passed is (not failed)
    if failed:
        assert "[FAIL] suspected leak: implausibly" in decision.summary()


def test_leak_check_is_off_without_bounds() -> None:
    assert decide(GATE, {"roc_auc": 1.0, "log_loss": 0.0}, None).passed


def test_incompatible_champion_fails_the_gate_naming_why() -> None:
    decision = decide(
        GATE,
        {"roc_auc": 0.9, "log_loss": 0.3},
        None,
        champion_version="4",
        incompatible="it predicts classes [0, 1], the challenger [0, 1, 2]",
    )
    assert not decision.passed
    (check,) = [c for c in decision.checks if c.metric is None]
    assert not check.passed
    assert check.rule == (
        "champion v4 cannot score this holdout: it predicts classes [0, 1], the challenger "
        "[0, 1, 2] (to replace it anyway, run with replace_incompatible_champion)"
    )
    assert f"[FAIL] {check.rule}" in decision.summary()
    assert decision.replaced_incompatible_champion is None
    assert decision.tags() == {"gate_decision": "rejected"}


def test_incompatible_champion_is_replaced_only_when_the_run_asks() -> None:
    decision = decide(
        GATE,
        {"roc_auc": 0.9, "log_loss": 0.3},
        None,
        champion_version="4",
        incompatible="it needs columns this holdout lacks: ['region']",
        replace_incompatible=True,
    )
    assert decision.passed
    assert decision.replaced_incompatible_champion == (
        "v4: it needs columns this holdout lacks: ['region']"
    )
    assert decision.tags() == {
        "gate_decision": "passed",
        "replaced_incompatible_champion": "v4: it needs columns this holdout lacks: ['region']",
    }
    # Floors still apply to a replacement.
    worse = decide(
        GATE,
        {"roc_auc": 0.6, "log_loss": 0.3},
        None,
        champion_version="4",
        incompatible="x",
        replace_incompatible=True,
    )
    assert not worse.passed
