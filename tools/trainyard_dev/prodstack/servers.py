"""The local PostgreSQL and Redis servers the production shape provisions its databases on."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

from trainyard_dev.services import HOST, StackError

REDIS_CLAIM_KEY = "trainyard:prodstack:owner"


@dataclass(frozen=True)
class PostgresServer:
    """A PostgreSQL server reached through an admin URL (a role that may create databases)."""

    url: str

    @property
    def parts(self) -> urllib.parse.SplitResult:
        """The URL, split."""
        return urllib.parse.urlsplit(self.url)

    def database_url(self, database: str, user: str, password: str, scheme: str) -> str:
        """URL of one database for one role, e.g. ``postgresql+psycopg2://u:p@host:5432/db``."""
        parts = self.parts
        credentials = f"{urllib.parse.quote(user, safe='')}:{urllib.parse.quote(password, safe='')}"
        return f"{scheme}://{credentials}@{parts.hostname}:{parts.port or 5432}/{database}"

    def psql_env(self) -> dict[str, str]:
        """libpq variables pointing ``psql`` at this server as the admin role."""
        parts = self.parts
        env = {
            "PGHOST": parts.hostname or HOST,
            "PGPORT": str(parts.port or 5432),
            "POSTGRES_USER": urllib.parse.unquote(parts.username or "postgres"),
            "POSTGRES_DB": parts.path.lstrip("/") or "postgres",
        }
        if parts.password:
            env["PGPASSWORD"] = urllib.parse.unquote(parts.password)
        return env

    def reachable(self) -> str | None:
        """None when the admin role can connect, else why not."""
        import psycopg2

        try:
            psycopg2.connect(self.url, connect_timeout=3).close()
        except psycopg2.Error as error:
            return f"PostgreSQL at {self.parts.hostname}:{self.parts.port or 5432}: {error}".strip()
        return None

    def drop(self, databases: list[str], roles: list[str]) -> None:
        """Drop databases (closing their connections) and then roles; missing ones are fine."""
        import psycopg2
        from psycopg2 import sql

        connection = psycopg2.connect(self.url, connect_timeout=5)
        connection.autocommit = True
        try:
            with connection.cursor() as cursor:
                for database in databases:
                    cursor.execute(
                        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                            sql.Identifier(database)
                        )
                    )
                for role in roles:
                    cursor.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
        finally:
            connection.close()

    def existing(self, databases: list[str]) -> list[str]:
        """Which of these databases exist."""
        import psycopg2

        connection = psycopg2.connect(self.url, connect_timeout=5)
        try:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT datname FROM pg_database WHERE datname = ANY(%s)", (databases,)
                )
                return sorted(row[0] for row in cursor.fetchall())
        finally:
            connection.close()


def redis_reachable(url: str) -> str | None:
    """None when Redis answers PING, else why not."""
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=3).ping()
    except redis.RedisError as error:
        return f"Redis at {url}: {error}"
    return None


def claim_redis_db(url: str, owner: str) -> int:
    """Claim an empty Redis database index for this run (highest first; 0 is left alone).

    Returns:
        The index; it holds the key ``trainyard:prodstack:owner`` = ``owner`` until released.

    Raises:
        StackError: Every index is in use.
    """
    import redis

    server = redis.Redis.from_url(url, socket_connect_timeout=3)
    try:
        count = int(server.config_get("databases").get("databases", 16))
    except redis.ResponseError:  # CONFIG disabled on managed servers
        count = 16
    for index in range(count - 1, 0, -1):
        database = redis.Redis.from_url(url, db=index, socket_connect_timeout=3)
        if database.dbsize() == 0 and database.set(REDIS_CLAIM_KEY, owner, nx=True):
            return index
    raise StackError(f"no empty Redis database index left on {url} (checked 1..{count - 1})")


def release_redis_db(url: str, index: int, owner: str) -> bool:
    """Empty the database index if this run still owns it.

    Returns:
        Whether it was flushed.
    """
    import redis

    database = redis.Redis.from_url(url, db=index, socket_connect_timeout=3)
    if database.get(REDIS_CLAIM_KEY) != owner.encode():
        return False
    database.flushdb()
    return True


def redis_db_url(url: str, index: int) -> str:
    """The server URL with its path set to a database index."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{index}"))
