"""The one place that knows how to reach the warehouse.

With ``WAREHOUSE_URL`` set (a ``postgresql://`` URL) every command uses that server. Without it the
project runs an embedded PostgreSQL from the ``pgserver`` wheel, listening on 127.0.0.1 so that dbt,
Great Expectations, Airflow assets and BI tools all reach it the same way they reach a real server.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import secrets
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import psycopg
from psycopg import sql

from civic_warehouse import settings

log = logging.getLogger(__name__)
# pgserver logs every command at INFO, including from an atexit hook after streams are closed.
logging.getLogger("pgserver").setLevel(logging.WARNING)


class WarehouseError(RuntimeError):
    """The warehouse could not be reached or started."""


@dataclass(frozen=True)
class ConnectionParts:
    host: str
    port: int
    user: str
    password: str
    dbname: str

    @classmethod
    def from_url(cls, url: str) -> ConnectionParts:
        parts = urlsplit(url)
        if parts.scheme not in ("postgresql", "postgres", "postgresql+psycopg"):
            raise WarehouseError(
                f"WAREHOUSE_URL must be a postgresql:// URL, got scheme {parts.scheme!r}"
            )
        query = parse_qs(parts.query)
        # libpq accepts the host (or a socket directory) in the query string as well.
        host = parts.hostname or query.get("host", ["127.0.0.1"])[0]
        return cls(
            host=host,
            port=parts.port or int(query.get("port", ["5432"])[0]),
            user=unquote(parts.username or "postgres"),
            password=unquote(parts.password or ""),
            dbname=(parts.path or "/postgres").lstrip("/") or "postgres",
        )

    def url(self, dbname: str | None = None) -> str:
        auth = self.user + (f":{self.password}" if self.password else "")
        return f"postgresql://{auth}@{self.host}:{self.port}/{dbname or self.dbname}"


def warehouse_url() -> str:
    """The URL of the warehouse database, starting the embedded server when none is configured."""
    url = os.environ.get("WAREHOUSE_URL")
    if url:
        return url
    embedded = EmbeddedWarehouse()
    embedded.start()
    embedded.ensure_database(settings.EMBEDDED_DATABASE)
    return embedded.url(settings.EMBEDDED_DATABASE)


def connection_parts(url: str | None = None) -> ConnectionParts:
    return ConnectionParts.from_url(url or warehouse_url())


def connect(url: str | None = None, **kwargs) -> psycopg.Connection:
    return psycopg.connect(url or warehouse_url(), **kwargs)


def dbt_environ(url: str | None = None) -> dict[str, str]:
    """Variables read by ``dbt_project/profiles.yml``."""
    parts = connection_parts(url)
    return {
        "CW_DB_HOST": parts.host,
        "CW_DB_PORT": str(parts.port),
        "CW_DB_USER": parts.user,
        "CW_DB_PASSWORD": parts.password,
        "CW_DB_NAME": parts.dbname,
    }


# Every TCP connection, the superuser's included, proves a SCRAM password: 127.0.0.1 is reachable
# by every local user and process. The only password-less way in is the superuser's Unix socket,
# which lives in the data directory (mode 700), so only the server's own OS user (and root) can
# reach it; it lets the owner recover when the password file is lost.
PG_HBA = """\
# Written by civic_warehouse (warehouse.py); rewritten on every start.
local   all   postgres                  trust
host    all   all       127.0.0.1/32    scram-sha-256
host    all   all       ::1/128         scram-sha-256
"""
# sun_path holds 108 bytes; a longer socket path would keep the server from starting.
MAX_SOCKET_PATH = 100


class EmbeddedWarehouse:
    """PostgreSQL 16 from the pgserver wheel, data in ``.warehouse/``, TCP on 127.0.0.1."""

    def __init__(self, root: Path | None = None, port: int | None = None) -> None:
        self.root = root or settings.EMBEDDED_DIR
        self.pgdata = self.root / "pgdata"
        self.port = port or settings.EMBEDDED_PORT
        self.password_file = self.root / "superuser.password"

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres:{self.superuser_password()}@127.0.0.1:{self.port}/{dbname}"

    def superuser_password(self) -> str:
        """The superuser's password, generated once into ``superuser.password`` (mode 600)."""
        if not self.password_file.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            # Hex: it goes into URLs unquoted.
            candidate = self.root / f".superuser.password.{os.getpid()}"
            fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_hex(24) + "\n")
            # A link never replaces: when two processes race, both use the first one's password.
            try:
                os.link(candidate, self.password_file)
            except FileExistsError:
                pass
            finally:
                candidate.unlink()
        return self.password_file.read_text().strip()

    def _socket_dir(self) -> str:
        if len(str(self.pgdata.resolve() / f".s.PGSQL.{self.port}")) > MAX_SOCKET_PATH:
            return ""
        return str(self.pgdata.resolve())

    def _owner_connection(self) -> psycopg.Connection:
        """A superuser session that needs no password when the socket is there (trust, mode 700)."""
        socket_dir = self._socket_dir()
        if socket_dir and Path(socket_dir, f".s.PGSQL.{self.port}").exists():
            # A server started by an earlier version has no socket there, or a stale one.
            with contextlib.suppress(psycopg.OperationalError):
                return psycopg.connect(
                    host=socket_dir, port=self.port, user="postgres", dbname="postgres",
                    autocommit=True, connect_timeout=3,
                )  # fmt: skip
        return psycopg.connect(self.url(), autocommit=True, connect_timeout=3)

    def is_running(self) -> bool:
        try:
            with self._owner_connection() as conn:
                data_directory = conn.execute("show data_directory").fetchone()[0]
        except psycopg.OperationalError:
            return False
        if Path(data_directory).resolve() != self.pgdata.resolve():
            raise WarehouseError(
                f"port {self.port} is taken by another PostgreSQL (data directory {data_directory}); "
                "set WAREHOUSE_PORT to a free port, or WAREHOUSE_URL to use that server"
            )
        return True

    def start(self) -> None:
        if self.is_running():
            self._require_passwords()
            return
        self.root.mkdir(parents=True, exist_ok=True)
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb()
        # pgserver's own start (get_server) listens on a unix socket only; its documented wrapper
        # of the wheel's pg_ctl starts it on TCP instead.
        from pgserver import pg_ctl

        log.info("starting embedded PostgreSQL on 127.0.0.1:%s (%s)", self.port, self.pgdata)
        try:
            pg_ctl(
                [
                    "-w",
                    "-o",
                    f"-h 127.0.0.1 -p {self.port} -c unix_socket_directories='{self._socket_dir()}'",
                    "-l",
                    str(self.pgdata / "log"),
                    "start",
                ],
                pgdata=self.pgdata,
                user=self._system_user(),
                timeout=60,
            )
        except subprocess.CalledProcessError as err:
            log_tail = (self.pgdata / "log").read_text(errors="replace")[-2000:]
            raise WarehouseError(f"embedded PostgreSQL did not start:\n{log_tail}") from err
        self._require_passwords()

    def _require_passwords(self) -> None:
        """Give the superuser its password, then make pg_hba.conf require passwords.

        pgserver's initdb trusts every local connection, and data directories made by earlier
        versions of this project do too: both are migrated here, on a running server, in this
        order, so that the superuser is never locked out.
        """
        hba = self.pgdata / "pg_hba.conf"
        if hba.exists() and hba.read_text() == PG_HBA:
            return
        from civic_warehouse import access

        verifier = access.scram_verifier(self.superuser_password())
        with self._owner_connection() as conn:
            conn.execute(sql.SQL("alter role postgres password {}").format(sql.Literal(verifier)))
            # In place, not replaced: the file keeps the server's OS user as owner.
            with open(hba, "w") as out:
                out.write(PG_HBA)
            conn.execute("select pg_reload_conf()")
        # The postmaster reloads asynchronously: return only once a password-less login fails.
        password_less = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        for _ in range(50):
            try:
                psycopg.connect(password_less, connect_timeout=3).close()
            except psycopg.OperationalError:
                break
            time.sleep(0.1)
        else:
            raise WarehouseError(f"{hba} was rewritten, but the server still trusts TCP logins")
        log.info("embedded PostgreSQL: passwords required on TCP (pg_hba.conf rewritten)")

    def stop(self) -> None:
        if not (self.pgdata / "postmaster.pid").exists():
            return
        from pgserver import pg_ctl

        pg_ctl(
            ["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=self._system_user(), timeout=60
        )

    def ensure_database(self, dbname: str) -> None:
        with self._owner_connection() as conn:
            exists = conn.execute(
                "select 1 from pg_database where datname = %s", [dbname]
            ).fetchone()
            if not exists:
                conn.execute(sql.SQL("create database {}").format(sql.Identifier(dbname)))

    def _initdb(self) -> None:
        # pgserver knows how to initialise a data directory, including as root (it creates an
        # unprivileged system user); let it do that, then stop its socket-only server.
        import pgserver

        if self._system_user():
            # As root, pgserver creates its user with useradd, which lives in sbin: a shell started
            # with a minimal PATH (cron, env -i, some CI runners) lacks it.
            path = os.environ.get("PATH", "").split(os.pathsep)
            os.environ["PATH"] = os.pathsep.join(
                [*path, *(d for d in ("/usr/sbin", "/sbin") if d not in path)]
            )
        server = pgserver.get_server(self.pgdata, cleanup_mode="stop")
        server.cleanup()

    @staticmethod
    def _system_user() -> str | None:
        if platform.system() != "Windows" and os.geteuid() == 0:
            return "pgserver"
        return None


def ensure_database(url: str) -> None:
    """Create the database a ``postgresql://`` URL names, on that URL's server, if it is missing."""
    parts = ConnectionParts.from_url(url)
    with psycopg.connect(parts.url("postgres"), autocommit=True) as conn:
        exists = conn.execute(
            "select 1 from pg_database where datname = %s", [parts.dbname]
        ).fetchone()
        if not exists:
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(parts.dbname)))


def drop_database(url: str) -> None:
    parts = ConnectionParts.from_url(url)
    with psycopg.connect(parts.url("postgres"), autocommit=True) as conn:
        conn.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(parts.dbname))
        )


def ensure_schema(conn: psycopg.Connection, schema: str) -> None:
    conn.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(schema)))
