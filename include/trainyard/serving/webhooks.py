"""MLflow registry webhooks: the server learns of an alias move when it happens.

At start-up, with ``TRAINYARD_SERVING_WEBHOOK_URL`` set, the server registers (or updates) one
webhook on the MLflow server for ``model_version_alias.created`` / ``.deleted`` pointing at its
own ``POST /webhooks/mlflow``, with ``TRAINYARD_SERVING_WEBHOOK_SECRET`` as the HMAC secret.
Each delivery is checked as MLflow 3.17 signs it (``mlflow/webhooks/delivery.py``): header
``X-MLflow-Signature: v1,<base64 HMAC-SHA256 of "<delivery id>.<timestamp>.<body>">``, with
``X-MLflow-Delivery-Id`` and ``X-MLflow-Timestamp``; a timestamp older than five minutes is
refused (replays). A valid event only *nudges* the alias follower, which re-reads the alias from
the registry itself, so a forged or stale payload could at worst cause one extra lookup.

Webhooks need a SQL backend and, on the MLflow server, ``MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY``
(a Fernet key shared by all its workers) plus, for a server on a private network over plain
HTTP, ``MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS=true`` and ``MLFLOW_WEBHOOK_ALLOWED_SCHEMES=http,https``.
MLflow caches the webhook list for ``MLFLOW_WEBHOOK_CACHE_TTL`` seconds (default 60): a new
webhook is used after that. Where registration fails, the server logs why and relies on polling.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from typing import Any

from trainyard.core.tracking import CHAMPION

log = logging.getLogger(__name__)

WEBHOOK_NAME = "trainyard-serving"
ALIAS_EVENTS = ("model_version_alias.created", "model_version_alias.deleted")
#: Deliveries signed longer ago than this are refused.
MAX_AGE_SECONDS = 300


def signature(secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    """The ``X-MLflow-Signature`` value MLflow sends for a delivery."""
    signed = f"{delivery_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(secret: str, headers: Any, body: bytes, now: float) -> str | None:
    """Why a delivery is not authentic (None when it is).

    Args:
        secret: The webhook's HMAC secret.
        headers: The request headers (case-insensitive mapping).
        body: The raw body, exactly as received.
        now: The current Unix time.

    Returns:
        A one-line reason, or None.
    """
    delivery_id = headers.get("x-mlflow-delivery-id")
    timestamp = headers.get("x-mlflow-timestamp")
    given = headers.get("x-mlflow-signature")
    if not (delivery_id and timestamp and given):
        return "missing X-MLflow-Signature, X-MLflow-Delivery-Id or X-MLflow-Timestamp"
    if not timestamp.isdigit() or abs(now - int(timestamp)) > MAX_AGE_SECONDS:
        return f"X-MLflow-Timestamp {timestamp!r:.20} is not within {MAX_AGE_SECONDS} s of now"
    if not hmac.compare_digest(given, signature(secret, delivery_id, timestamp, body)):
        return "X-MLflow-Signature does not match"
    return None


def champion_moved(payload: Any) -> str | None:
    """The registered model whose ``champion`` alias an event moved or removed, else None."""
    if not isinstance(payload, dict) or payload.get("entity") != "model_version_alias":
        return None
    data = payload.get("data")
    if not isinstance(data, dict) or data.get("alias") != CHAMPION:
        return None
    name = data.get("name")
    return name if isinstance(name, str) else None


def register_webhook(url: str, secret: str) -> str | None:
    """Create or update this server's webhook on the MLflow server.

    Args:
        url: Where MLflow delivers (this server's ``/webhooks/mlflow``, as MLflow reaches it).
        secret: The HMAC secret.

    Returns:
        The webhook id, or None when the MLflow server does not accept it (then polling alone
        follows the alias; the reason is logged).
    """
    from mlflow import MlflowClient

    client = MlflowClient()
    try:
        existing = [hook for hook in client.list_webhooks(max_results=1000) if hook.url == url]
        if existing:
            hook = client.update_webhook(
                existing[0].webhook_id,
                events=list(ALIAS_EVENTS),
                secret=secret,
                status="ACTIVE",
            )
        else:
            hook = client.create_webhook(
                name=WEBHOOK_NAME,
                url=url,
                events=list(ALIAS_EVENTS),
                description="trainyard model server: follow the champion alias",
                secret=secret,
            )
    except Exception as error:  # noqa: BLE001 (an old or file-based MLflow: poll instead)
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        log.warning("MLflow did not accept the webhook to %s (%s); polling only", url, reason)
        return None
    log.info("MLflow webhook %s delivers alias moves to %s", hook.webhook_id, url)
    return hook.webhook_id
