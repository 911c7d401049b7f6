"""Approval before promotion: what the reviewer is shown, and what their answer means.

With ``promotion.mode: approval`` a version that passed the gate becomes ``challenger`` and an
Airflow ``ApprovalOperator`` waits for a person (Browse → Required Actions). These pure functions
write the request (gate checks, challenger against champion, links) and read the answer
(approve, reject, or nobody in time, which the spec's ``on_timeout`` settles).
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from trainyard.training.gate import GateDecision

#: The task of a training DAG in which a person approves a challenger (Required Actions).
APPROVAL_TASK_ID = "approval"
APPROVE = "Approve"
REJECT = "Reject"
_PAST = {"approve": "approved", "reject": "rejected"}


class Verdict(BaseModel):
    """What the approval came to, and who decided."""

    model_config = ConfigDict(frozen=True)

    action: Literal["approve", "reject", "timeout"]
    #: Whether the version becomes champion.
    crown: bool
    actor: str
    comment: str

    def describe(self) -> str:
        """One line for logs and the run's report."""
        if self.action == "timeout":
            outcome = "approved" if self.crown else "rejected"
            return f"no answer in time: {outcome} as the spec says ({self.comment})"
        return f"{_PAST[self.action]} by {self.actor}: {self.comment or '-'}"


def request_text(
    model_name: str,
    version: str,
    decision: GateDecision,
    links: dict[str, str],
    timeout: timedelta,
    on_timeout: str,
) -> tuple[str, str]:
    """The subject and Markdown body a reviewer sees.

    Args:
        model_name: The registered model.
        version: The challenger's version.
        decision: The gate's verdict with both sides' metrics and every check.
        links: Label → URL (MLflow run, validation result, drift report).
        timeout: How long the request waits.
        on_timeout: What happens then (``approve`` or ``reject``).

    Returns:
        ``(subject, body)``.
    """
    champion = f"v{decision.champion_version}" if decision.champion_version else "none yet"
    subject = f"Promote {model_name} v{version} to champion? (champion now: {champion})"
    rows = ["| metric | challenger | champion |", "| --- | --- | --- |"]
    for metric, value in decision.challenger.items():
        theirs = (decision.champion or {}).get(metric)
        rows.append(f"| {metric} | {value:.4f} | {'-' if theirs is None else f'{theirs:.4f}'} |")
    checks = [f"- {check.describe()}" for check in decision.checks]
    if decision.note:
        checks.append(f"- note: {decision.note}")
    link_lines = [f"- [{label}]({url})" for label, url in links.items() if url]
    body = "\n".join(
        [
            f"**{model_name} v{version}** passed the gate and waits as `challenger`.",
            "",
            *rows,
            "",
            "**Gate checks**",
            *checks,
            "",
            *(["**Links**", *link_lines, ""] if link_lines else []),
            f"Approve makes it `champion` (v{decision.champion_version} becomes `previous`); "
            "Reject keeps the champion. Say why in the comment: it is kept in the audit trail. "
            f"Without an answer within {timeout}, it is **{_PAST[on_timeout]}**.",
        ]
    )
    return subject, body


def verdict(response: dict[str, Any], on_timeout: str, timeout: timedelta) -> Verdict:
    """Read the approval task's result (its XCom).

    Args:
        response: ``chosen_options``, ``params_input`` (``comment``), ``responded_by_user``
            (None when the timeout chose the default).
        on_timeout: The spec's choice.
        timeout: The spec's timeout (for the record).

    Returns:
        The verdict.
    """
    chosen = (response.get("chosen_options") or [REJECT])[0]
    comment = str((response.get("params_input") or {}).get("comment") or "").strip()
    user = response.get("responded_by_user")
    if not user:
        return Verdict(
            action="timeout",
            crown=on_timeout == "approve",
            actor="timeout",
            comment=f"nobody answered within {timeout}; on_timeout: {on_timeout}",
        )
    name = str(user.get("name") or user.get("id")) if isinstance(user, dict) else str(user)
    return Verdict(
        action="approve" if chosen == APPROVE else "reject",
        crown=chosen == APPROVE,
        actor=name,
        comment=comment,
    )
