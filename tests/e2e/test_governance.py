"""Audit trail and rollback on the real MLflow server and S3: functions, CLI and the DAG.

Versions are small scikit-learn models logged straight to MLflow (training is not what is
tested). Tests that need no spec use a registered model of their own; the CLI and DAG tests use
``churn_rollback`` (tests/pipelines) and look only at what they did themselves, so the cases
pass in any order.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from typing import Any

import pytest

from tests.support import champion_of, register_tiny_model

pytestmark = pytest.mark.e2e

SPEC_MODEL = "churn_rollback"


def _cause(run_id: str, actor: str = "tester", reason: str = "test") -> Any:
    from trainyard.governance.audit import Cause

    return Cause(actor=actor, reason=reason, dag_id="tests", run_id=run_id)


def _promote(settings: Any, model_name: str, version: str) -> Any:
    from trainyard.governance.aliases import move

    return move(settings, model_name, "promote", version, _cause(f"promote-{uuid.uuid4().hex}"))


@pytest.fixture
def model_name(stack: Any) -> str:
    """A registered-model name no other test uses."""
    return f"gov_{uuid.uuid4().hex[:10]}"


def _aliases(model_name: str) -> dict[str, str]:
    from trainyard.governance.aliases import current_aliases

    return current_aliases(model_name)


def test_every_move_is_an_event_on_s3_and_on_the_versions_tags(settings, model_name) -> None:
    from mlflow import MlflowClient

    from trainyard.core import storage
    from trainyard.governance import audit
    from trainyard.governance.aliases import move
    from trainyard.governance.rollback import rollback

    v1, v2 = register_tiny_model(model_name), register_tiny_model(model_name)
    _promote(settings, model_name, v1)
    second = move(settings, model_name, "promote", v2, _cause("nightly-2", reason="nightly"))
    assert _aliases(model_name) == {"champion": v2, "previous": v1}

    # A retried task (same run) records nothing twice and changes nothing.
    assert move(settings, model_name, "promote", v2, _cause("nightly-2")) == second
    # Promoting the champion again is not an event.
    assert _promote(settings, model_name, v2) is None

    rolled = rollback(settings, model_name, None, _cause("rb-1", actor="alice", reason="v2 bad"))
    assert rolled.to_version == v1 and rolled.from_version == v2
    assert _aliases(model_name) == {"champion": v1, "previous": v2}

    events = audit.read_events(settings, model_name)
    assert [(e.action, e.from_version, e.to_version) for e in events] == [
        ("promote", None, v1),
        ("promote", v1, v2),
        ("rollback", v2, v1),
    ]
    assert events[-1].cause.actor == "alice" and events[-1].cause.reason == "v2 bad"
    keys = storage.list_keys(settings, settings.artifacts_bucket, f"audit/{model_name}/")
    assert len(keys) == 3
    assert audit.replay(events) == _aliases(model_name)

    tags = MlflowClient().get_model_version(model_name, v1).tags
    rollback_tags = [value for key, value in tags.items() if key.endswith(".rollback")]
    assert rollback_tags == [rolled.describe()]
    assert "by alice: v2 bad" in rollback_tags[0]


def test_aliases_are_rebuilt_from_the_events_alone(settings, model_name) -> None:
    from mlflow import MlflowClient

    from trainyard.governance import audit
    from trainyard.governance.aliases import move, restore
    from trainyard.governance.rollback import rollback

    v1, v2, v3 = (register_tiny_model(model_name) for _ in range(3))
    _promote(settings, model_name, v1)
    _promote(settings, model_name, v2)
    move(settings, model_name, "submit", v3, _cause("approval-3"))
    move(settings, model_name, "reject", v3, _cause("approval-3", actor="bob", reason="too new"))
    rollback(settings, model_name, v1, _cause("rb", reason="back to the first"))
    before = _aliases(model_name)
    assert before == {"champion": v1, "previous": v2}

    client = MlflowClient()
    for alias in before:  # the registry loses its aliases
        client.delete_registered_model_alias(model_name, alias)
    client.set_registered_model_alias(model_name, "champion", v3)  # or holds wrong ones
    assert _aliases(model_name) == {"champion": v3}

    changed = restore(settings, model_name, _cause("restore", reason="registry restored"))
    assert changed == {"set": before, "removed": []}
    assert _aliases(model_name) == before
    events = audit.read_events(settings, model_name)
    assert events[-1].action == "restore"
    assert audit.replay(events) == before
    # Restoring again finds nothing to do and records nothing.
    assert restore(settings, model_name, _cause("restore-2")) == {"set": {}, "removed": []}
    assert len(audit.read_events(settings, model_name)) == len(events)


def _break_artifact(settings: Any, stack: Any, model_name: str, version: str) -> None:
    """Delete a version's model files from S3 (its registry entry stays)."""
    from mlflow import MlflowClient

    from trainyard.core import storage

    client = MlflowClient()
    model_id = client.get_model_version(model_name, version).source.removeprefix("models:/")
    bucket = stack.buckets[2]
    keys = [k for k in storage.list_keys(settings, bucket, "artifacts/") if f"/{model_id}/" in k]
    assert keys, f"no artifact of {model_id} found in s3://{bucket}/artifacts/"
    for key in keys:
        storage.client(settings).delete_object(Bucket=bucket, Key=key)


def test_refused_rollbacks_move_nothing_and_record_nothing(settings, stack, model_name) -> None:
    from trainyard.governance import audit
    from trainyard.governance.rollback import RollbackRefused, rollback

    v1, v2, v3 = (register_tiny_model(model_name) for _ in range(3))
    for version in (v1, v2, v3):
        _promote(settings, model_name, version)
    before, events_before = _aliases(model_name), audit.read_events(settings, model_name)
    _break_artifact(settings, stack, model_name, v1)

    refusals = {
        v3: f"v{v3} already is the champion",
        f"churn/{v1}": "is a version of model 'churn'",
        "99": "it has no version 99",
        v1: f"v{v1} cannot be loaded, so it cannot serve",
    }
    for target, message in refusals.items():
        with pytest.raises(RollbackRefused, match="^rollback of gov_") as error:
            rollback(settings, model_name, target, _cause(f"refused-{target}"))
        assert message in str(error.value)
    assert _aliases(model_name) == before
    assert audit.read_events(settings, model_name) == events_before


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "trainyard", *args], capture_output=True, text=True, timeout=300
    )


def test_cli_rollback_then_history_lists_promote_then_rollback(settings) -> None:
    old, new = register_tiny_model(SPEC_MODEL), register_tiny_model(SPEC_MODEL)
    _promote(settings, SPEC_MODEL, old)
    _promote(settings, SPEC_MODEL, new)

    done = _cli("rollback", "churn_rollback", "--reason", "cli: new one misbehaves")
    assert done.returncode == 0, done.stderr
    assert champion_of(SPEC_MODEL).version == old
    assert f"rollback champion v{new} → v{old}  by cli:" in done.stdout

    history = _cli("history", "churn_rollback")
    assert history.returncode == 0, history.stderr
    events = [line for line in history.stdout.splitlines() if line.startswith("  20")]
    promoted, rolled_back = events[-2:]
    assert promoted.split()[3] == "promote" and f"v{old} → v{new}" in promoted
    assert rolled_back.split()[3] == "rollback" and f"v{new} → v{old}" in rolled_back
    assert "cli: new one misbehaves" in rolled_back

    refused = _cli("rollback", "churn_rollback", "--to", old, "--reason", "again")
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines()[-1] == (
        f"trainyard: rollback of churn_rollback: v{old} already is the champion"
    )
    assert "Traceback" not in refused.stderr


def test_rollback_dag_moves_champion_and_records_who(settings, run_dag) -> None:
    from trainyard.governance import audit

    old, new = register_tiny_model(SPEC_MODEL), register_tiny_model(SPEC_MODEL)
    _promote(settings, SPEC_MODEL, old)
    _promote(settings, SPEC_MODEL, new)

    run = run_dag("rollback_churn_rollback", {"to_version": old, "reason": "dag: roll back"})
    assert run.state == "success", run.task_states
    assert champion_of(SPEC_MODEL).version == old
    (event,) = [e for e in audit.read_events(settings, SPEC_MODEL) if e.cause.run_id == run.run_id]
    assert (event.action, event.from_version, event.to_version) == ("rollback", new, old)
    assert event.cause.reason == "dag: roll back"
    assert event.cause.dag_id == "rollback_churn_rollback"
    assert event.cause.actor == "dag_test"  # the user dag.test() triggers as

    refused = run_dag("rollback_churn_rollback", {"to_version": old, "reason": "again"})
    assert refused.state == "failed"
    assert champion_of(SPEC_MODEL).version == old
