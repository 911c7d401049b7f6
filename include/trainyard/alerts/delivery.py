"""Sending an alert: every configured channel, at most once per event and channel, never fatal.

Channels come from :class:`~trainyard.core.settings.AlertSettings` (environment variables):
SMTP, a Slack-compatible incoming webhook, a generic JSON webhook. Every alert is also written
to the task's log, which is all that happens when no channel is configured.

**One event → one message.** After a channel accepted an alert, a *sent-marker* is stored at a
key derived from the event, ``s3://<artifacts>/alerts/<pipeline>/<kind>/<event id>/<channel>.json``,
with a conditional put (``If-None-Match: *``: the first record is never overwritten). Before
sending, a channel's marker is looked up: a retried task, a cleared-and-rerun task or a rerun
of the same DAG run builds the same event id (:attr:`trainyard.alerts.messages.Alert.identity`)
and sends nothing again. A channel that failed has no marker, so a later attempt of the same
event may still deliver it. What this cannot exclude: a crash between a server accepting the
message and the marker being written (then the message may come twice), and S3 being
unreachable (then the alert is sent anyway: a duplicate is better than silence).

**A failing channel never fails the pipeline:** its error is logged (``alert … via … FAILED``)
and the other channels still get the alert.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from trainyard.alerts.messages import Alert, slack_payload, webhook_payload
from trainyard.core.settings import AlertSettings, Settings

log = logging.getLogger(__name__)


def marker_uri(settings: Settings, alert: Alert, channel: str) -> str:
    """Where the record that ``channel`` delivered ``alert``'s event is kept."""
    return (
        f"s3://{settings.artifacts_bucket}/alerts/{alert.pipeline}/{alert.kind}/"
        f"{alert.event_id}/{channel}.json"
    )


def send_email(settings: AlertSettings, alert: Alert) -> None:
    """Send the alert as a plain-text e-mail through the configured SMTP server."""
    import smtplib
    from email.message import EmailMessage

    message = EmailMessage()
    message["Subject"] = alert.subject
    message["From"] = settings.email_from
    message["To"] = ", ".join(settings.email_to)
    message["X-Trainyard-Event"] = alert.event_id
    message.set_content(alert.text)
    with smtplib.SMTP(
        settings.smtp_host, settings.smtp_port, timeout=settings.timeout_seconds
    ) as server:
        if settings.smtp_starttls:
            server.starttls()
        if settings.smtp_user:
            server.login(settings.smtp_user, settings.smtp_password or "")
        server.send_message(message)


def _post_json(url: str, payload: Mapping[str, object], timeout: float) -> None:
    """POST JSON; an answer other than 2xx raises (urllib raises HTTPError for 4xx/5xx)."""
    from urllib.request import Request, urlopen

    request = Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urlopen(request, timeout=timeout) as response:  # noqa: S310 (URL from the operator's settings)
        response.read()


def send_slack(settings: AlertSettings, alert: Alert) -> None:
    """Post the alert to the Slack-compatible incoming webhook."""
    _post_json(settings.slack_webhook_url or "", slack_payload(alert), settings.timeout_seconds)


def send_webhook(settings: AlertSettings, alert: Alert) -> None:
    """Post the whole alert as JSON to the generic webhook."""
    _post_json(settings.webhook_url or "", webhook_payload(alert), settings.timeout_seconds)


SENDERS: dict[str, Callable[[AlertSettings, Alert], None]] = {
    "smtp": send_email,
    "slack": send_slack,
    "webhook": send_webhook,
}


def _already_sent(store: Settings, uri: str) -> bool:
    from trainyard.core import storage

    try:
        return storage.exists(store, uri)
    except Exception as error:  # noqa: BLE001 (an unreadable marker must not stop the alert)
        log.warning("cannot read alert marker %s (%s): sending anyway", uri, error)
        return False


def _mark_sent(store: Settings, uri: str, alert: Alert, channel: str) -> None:
    from trainyard.core import storage

    record = {
        "event_id": alert.event_id,
        "identity": alert.identity,
        "channel": channel,
        "subject": alert.subject,
        "sent_at": datetime.now(UTC).isoformat(),
    }
    try:
        storage.put_if_absent(store, uri, json.dumps(record).encode(), "application/json")
    except Exception as error:  # noqa: BLE001 (sent is sent; only a rerun could repeat it)
        log.warning("alert sent via %s but not recorded at %s (%s)", channel, uri, error)


def deliver(alert: Alert | None, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Log the alert and send it through every configured channel that has not sent it yet.

    Never raises: a channel that fails is logged and reported in the result.

    Args:
        alert: What to send; None (an event that does not alert) does nothing.
        environ: Where to read the settings (default: the process environment).

    Returns:
        Channel → ``sent``, ``already sent`` or ``failed: <why>``; ``{"log": "logged"}`` when no
        channel is configured (or the alert settings are invalid).
    """
    if alert is None:
        return {}
    log.warning("ALERT %s [%s]\n%s", alert.subject, alert.event_id, alert.text)
    try:
        settings = AlertSettings.from_env(environ)
        store = Settings.from_env(environ)
    except ValueError as error:
        log.error("alert settings are invalid, the alert is only logged: %s", error)
        return {"log": "logged"}
    if not settings.channels:
        return {"log": "logged"}
    results = {}
    for channel in settings.channels:
        uri = marker_uri(store, alert, channel)
        if _already_sent(store, uri):
            log.info("alert %s already sent via %s (%s)", alert.event_id, channel, uri)
            results[channel] = "already sent"
            continue
        try:
            SENDERS[channel](settings, alert)
        except Exception as error:  # noqa: BLE001 (a failing notifier never fails the pipeline)
            log.error("alert %s via %s FAILED, not sent: %s", alert.event_id, channel, error)
            results[channel] = f"failed: {error}"
            continue
        _mark_sent(store, uri, alert, channel)
        log.info("alert %s sent via %s", alert.event_id, channel)
        results[channel] = "sent"
    return results
