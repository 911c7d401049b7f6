"""Governance's pure parts: alias-move plans, event identity, replay, rollback refusals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from trainyard.airflow.common import actor
from trainyard.governance.aliases import plan, unfinished
from trainyard.governance.approval import Verdict, request_text, verdict
from trainyard.governance.audit import Cause, event_id, new_event, replay, timeline
from trainyard.governance.rollback import RollbackRefused, choose_target

CAUSE = Cause(actor="alice", reason="nightly", dag_id="train_churn", run_id="r1")
T0 = datetime(2026, 6, 1, 2, 0, tzinfo=UTC)


# ---- plans --------------------------------------------------------------------------------------


def test_promote_moves_champion_and_keeps_the_old_one_as_previous() -> None:
    assert plan("promote", {"champion": "1", "previous": "0"}, "2") == (
        {"champion": "2", "previous": "1"},
        [],
    )
    assert plan("promote", {}, "1") == ({"champion": "1"}, [])


def test_promoting_the_champion_moves_nothing() -> None:
    assert plan("promote", {"champion": "2", "previous": "1"}, "2") == ({}, [])


def test_champion_is_set_before_previous() -> None:
    to_set, _ = plan("rollback", {"champion": "3", "previous": "2"}, "2")
    assert list(to_set) == ["champion", "previous"]
    assert to_set == {"champion": "2", "previous": "3"}


def test_approval_flow_plans() -> None:
    assert plan("submit", {"champion": "1"}, "2") == ({"challenger": "2"}, [])
    assert plan("submit", {"champion": "2"}, "2") == ({}, [])  # a rerun of the champion
    waiting = {"champion": "1", "challenger": "2"}
    assert plan("approve", waiting, "2") == ({"champion": "2", "previous": "1"}, ["challenger"])
    assert plan("reject", waiting, "2") == ({}, ["challenger"])
    assert plan("timeout", waiting, "2") == ({}, ["challenger"])
    assert plan("timeout", waiting, "2", crown=True) == (
        {"champion": "2", "previous": "1"},
        ["challenger"],
    )
    # A challenger that is another version (a newer submission) is left alone.
    assert plan("reject", {"champion": "1", "challenger": "3"}, "2") == ({}, [])


def test_a_move_interrupted_after_champion_is_unfinished() -> None:
    moved = new_event("churn", "promote", CAUSE, from_version="1", to_version="2",
                      aliases_set={"champion": "2", "previous": "1"})  # fmt: skip
    assert unfinished(moved, {"champion": "2"})
    assert not unfinished(moved, {"champion": "2", "previous": "1"})
    # Not even champion moved (the first step failed), or someone moved it since: not ours.
    assert not unfinished(moved, {"champion": "1"})
    approved = new_event("churn", "approve", CAUSE, from_version="1", to_version="2",
                         aliases_set={"champion": "2", "previous": "1"},
                         aliases_removed=["challenger"])  # fmt: skip
    assert unfinished(approved, {"champion": "2", "previous": "1", "challenger": "2"})
    rejected = new_event("churn", "reject", CAUSE, from_version="1", to_version="2",
                         aliases_set={}, aliases_removed=["challenger"])  # fmt: skip
    assert not unfinished(rejected, {"champion": "1", "challenger": "2"})


def test_restore_is_not_a_planned_move() -> None:
    with pytest.raises(ValueError, match="restore"):
        plan("restore", {}, "1")


# ---- events -------------------------------------------------------------------------------------


def test_event_identity_is_per_model_action_run_and_version() -> None:
    same = event_id("churn", "promote", CAUSE, "2")
    assert same == event_id("churn", "promote", CAUSE.model_copy(update={"actor": "bob"}), "2")
    other_run = CAUSE.model_copy(update={"run_id": "r2"})
    assert len({same, event_id("churn", "promote", other_run, "2"),
                event_id("churn", "rollback", CAUSE, "2"), event_id("churn", "promote", CAUSE, "3"),
                event_id("churn_x", "promote", CAUSE, "2")}) == 5  # fmt: skip


def test_event_keys_sort_by_time() -> None:
    first = new_event("churn", "promote", CAUSE, from_version=None, to_version="1",
                      aliases_set={"champion": "1"}, at=T0)  # fmt: skip
    later = new_event("churn", "promote", CAUSE.model_copy(update={"run_id": "r0"}),
                      from_version="1", to_version="2", aliases_set={"champion": "2"},
                      at=T0 + timedelta(microseconds=1))  # fmt: skip
    assert first.key() < later.key()
    assert first.key().startswith("churn/20260601T020000000000Z-")


def _history() -> list:
    moves = [
        ("promote", None, "1", {"champion": "1"}, ()),
        ("promote", "1", "2", {"champion": "2", "previous": "1"}, ()),
        ("submit", "2", "3", {"challenger": "3"}, ()),
        ("reject", "2", "3", {}, ("challenger",)),
        ("rollback", "2", "1", {"champion": "1", "previous": "2"}, ()),
    ]
    return [
        new_event(
            "churn",
            action,
            CAUSE.model_copy(update={"run_id": f"r{i}"}),
            from_version=source,
            to_version=target,
            aliases_set=dict(set_),
            aliases_removed=removed,
            at=T0 + timedelta(hours=i),
        )  # fmt: skip
        for i, (action, source, target, set_, removed) in enumerate(moves)
    ]


def test_replay_applies_each_events_effects_in_order() -> None:
    events = _history()
    assert replay(events) == {"champion": "1", "previous": "2"}
    assert replay(events[:3]) == {"champion": "2", "previous": "1", "challenger": "3"}
    assert replay([]) == {}


def test_timeline_lists_every_event_in_order_with_who_and_why() -> None:
    text = timeline("churn", _history())
    lines = text.splitlines()
    assert lines[0] == "churn: 5 alias event(s)"
    actions = [line.split()[3] for line in lines[1:6]]
    assert actions == ["promote", "promote", "submit", "reject", "rollback"]
    assert "champion v2 → v1  by alice: nightly" in lines[5]
    assert "(train_churn / r4)" in lines[5]
    assert lines[-1] == "  aliases now: @champion=v1, @previous=v2"
    assert timeline("churn", []) == "churn: no alias events recorded"


# ---- rollback refusals --------------------------------------------------------------------------

ALIASES = {"champion": "3", "previous": "2"}
VERSIONS = {"1", "2", "3"}


def test_rollback_defaults_to_previous_and_accepts_version_spellings() -> None:
    assert choose_target("churn", None, ALIASES, VERSIONS, "bad v3") == "2"
    for spelling in ("1", "v1", "churn/1", "models:/churn/1"):
        assert choose_target("churn", spelling, ALIASES, VERSIONS, "why") == "1"


@pytest.mark.parametrize(
    ("requested", "aliases", "reason", "message"),
    [
        ("3", ALIASES, "why", "v3 already is the champion"),
        ("other/1", ALIASES, "why", "is a version of model 'other', not of 'churn'"),
        ("models:/other/1", ALIASES, "why", "is a version of model 'other'"),
        ("7", ALIASES, "why", "it has no version 7 (versions: v1, v2, v3)"),
        ("latest", ALIASES, "why", "target 'latest' is not a version"),
        (None, {"champion": "3"}, "why", "no version holds @previous"),
        ("1", ALIASES, "  ", "a reason is required"),
    ],
)
def test_rollback_refusals_name_why(requested, aliases, reason, message) -> None:
    with pytest.raises(RollbackRefused, match="^rollback of churn: ") as error:
        choose_target("churn", requested, aliases, VERSIONS, reason)
    assert message in str(error.value)


# ---- who ----------------------------------------------------------------------------------------


def _context(run_type: str, user: str | None, report: str = "") -> dict:
    dag_run = SimpleNamespace(run_type=run_type, triggering_user_name=user)
    return {"dag_run": dag_run, "params": {"drift_report_uri": report}}


def test_actor_is_the_user_the_schedule_or_the_drift_monitor() -> None:
    assert actor(_context("manual", "alice")) == "alice"
    assert actor(_context("scheduled", None)) == "schedule"
    assert actor(_context("manual", "admin", "s3://trainyard/drift/x.html")) == "drift monitor"
    assert actor(_context("asset_triggered", None)) == "asset_triggered"


# ---- approval -----------------------------------------------------------------------------------


def _decision(champion: dict | None = None):
    from trainyard.training.gate import GateCheck, GateDecision

    return GateDecision(
        passed=True,
        challenger={"roc_auc": 0.91, "log_loss": 0.31},
        champion=champion,
        champion_version="3" if champion else None,
        checks=[GateCheck(rule="floor", metric="roc_auc", value=0.91, bound=0.75, passed=True)],
        note="",
    )


def test_the_request_shows_checks_both_sides_links_and_the_timeout_rule() -> None:
    subject, body = request_text(
        "churn",
        "4",
        _decision({"roc_auc": 0.9, "log_loss": 0.33}),
        {"MLflow run": "http://mlflow/#/r", "drift report": ""},
        timedelta(hours=24),
        "reject",
    )
    assert subject == "Promote churn v4 to champion? (champion now: v3)"
    assert "| roc_auc | 0.9100 | 0.9000 |" in body
    assert "| log_loss | 0.3100 | 0.3300 |" in body
    assert "[ok  ] floor: roc_auc=0.9100 vs bound 0.7500" in body
    assert "- [MLflow run](http://mlflow/#/r)" in body and "drift report" not in body
    assert "within 1 day, 0:00:00, it is **rejected**" in body
    _, first = request_text("churn", "1", _decision(), {}, timedelta(minutes=5), "approve")
    assert "| roc_auc | 0.9100 | - |" in first and "**approved**" in first


def test_verdict_reads_the_reviewer_or_the_timeout() -> None:
    day = timedelta(hours=24)
    answer = {
        "chosen_options": ["Approve"],
        "params_input": {"comment": " looks right "},
        "responded_by_user": {"id": "alice", "name": "alice"},
    }
    assert verdict(answer, "reject", day) == Verdict(
        action="approve", crown=True, actor="alice", comment="looks right"
    )
    rejected = verdict({**answer, "chosen_options": ["Reject"]}, "approve", day)
    assert (rejected.action, rejected.crown) == ("reject", False)
    assert rejected.describe() == "rejected by alice: looks right"
    for choice, crown in (("reject", False), ("approve", True)):
        default = "Approve" if crown else "Reject"
        timed_out = verdict(
            {"chosen_options": [default], "params_input": {}, "responded_by_user": None},
            choice,
            day,
        )
        assert (timed_out.action, timed_out.crown, timed_out.actor) == ("timeout", crown, "timeout")
        assert f"on_timeout: {choice}" in timed_out.comment
