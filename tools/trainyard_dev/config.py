"""Every setting of the local stacks, read from the environment here and nowhere else.

| variable | meaning | default |
| --- | --- | --- |
| ``TRAINYARD_STATE_DIR`` | the embedded stack's state folder | ``.stack/`` |
| ``TRAINYARD_PROD_STATE_DIR`` | the production shape's state folder | ``.prod-local/`` |
| ``TRAINYARD_<NAME>_PORT`` | each port of the embedded stack (:class:`Ports`) | 8080, 5000, ... |
| ``TRAINYARD_POSTGRES_URL`` | a role that may create roles and databases | local PostgreSQL |
| ``TRAINYARD_REDIS_URL`` | the Celery broker's server | local Redis |

The runtime settings (buckets, endpoints, credentials): :class:`trainyard.core.settings.Settings`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from trainyard_dev.services import Ports

REPO_DIR = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class StackConfig:
    """Where the local stacks keep their state, their ports and the local servers they use."""

    state_dir: Path = REPO_DIR / ".stack"
    prod_state_dir: Path = REPO_DIR / ".prod-local"
    ports: Ports = field(default_factory=Ports)
    postgres_url: str = "postgresql://postgres@127.0.0.1:5432/postgres"
    redis_url: str = "redis://127.0.0.1:6379"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> StackConfig:
        """Read the configuration from ``environ`` (default: ``os.environ``)."""
        env = os.environ if environ is None else environ
        defaults = cls()
        return cls(
            state_dir=Path(env.get("TRAINYARD_STATE_DIR", defaults.state_dir)),
            prod_state_dir=Path(env.get("TRAINYARD_PROD_STATE_DIR", defaults.prod_state_dir)),
            ports=Ports.from_env(env),
            postgres_url=env.get("TRAINYARD_POSTGRES_URL", defaults.postgres_url),
            redis_url=env.get("TRAINYARD_REDIS_URL", defaults.redis_url),
        )
