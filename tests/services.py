"""Throwaway PostgreSQL, Redis and Celery workers on loopback, for tests and benchmarks.

Each starts from the system's binaries in a fresh temporary folder and is stopped and removed on
exit. PostgreSQL refuses to run as root, so as root its folder belongs to the ``postgres`` user
(``nobody`` where there is none) and ``initdb`` and the server run as that user (started with
``user=``, not through ``runuser``, so that stop signals reach the server itself).
"""

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PG_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def postgres_bin() -> Path | None:
    """The folder with ``initdb`` and ``postgres`` (newest Debian version first, else on PATH), or None."""
    for folder in PG_BIN_DIRS:
        if (folder / "initdb").exists() and (folder / "postgres").exists():
            return folder
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb and shutil.which("postgres") else None


def missing_services() -> str:
    """Why the PostgreSQL/Redis tests cannot run here ('' when they can)."""
    missing = [name for name, found in (("PostgreSQL (initdb, postgres)", postgres_bin()),
                                        ("redis-server", shutil.which("redis-server"))) if not found]
    return f"not installed: {', '.join(missing)} (.ci/run installs postgresql and redis-server)" if missing else ""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait(ready, what: str, process: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start (exit {process.poll()}); its log:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


def _stop(process: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass(frozen=True)
class Postgres:
    host: str
    port: int
    user: str
    password: str
    database: str

    def env(self) -> dict[str, str]:
        """The ``DAGSTER_PG_*`` variables of the agency profile for this server."""
        return {"DAGSTER_PG_HOST": self.host, "DAGSTER_PG_PORT": str(self.port), "DAGSTER_PG_USERNAME": self.user,
                "DAGSTER_PG_PASSWORD": self.password, "DAGSTER_PG_DB": self.database}


@contextlib.contextmanager
def postgres_server(database: str = "export_impact"):
    """A PostgreSQL server on 127.0.0.1 with password authentication and one empty database."""
    binaries = postgres_bin()
    folder = Path(tempfile.mkdtemp(prefix="export-impact-pg-"))
    as_user: dict = {}
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres" if _has_user("postgres") else "nobody")
        os.chown(folder, owner.pw_uid, owner.pw_gid)
        as_user = {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": [], "cwd": folder}
    password, port = "export-impact-test", free_port()
    (folder / "pw").write_text(password)
    os.chmod(folder / "pw", 0o644)
    log = folder / "server.log"
    server = None
    try:
        subprocess.run([str(binaries / "initdb"), "-D", str(folder / "data"), "-U", "dagster",
                        f"--pwfile={folder / 'pw'}", "-A", "scram-sha-256", "--no-sync", "-E", "UTF8"],
                       check=True, capture_output=True, **as_user)
        with open(log, "w") as out:
            server = subprocess.Popen(
                [str(binaries / "postgres"), "-D", str(folder / "data"), "-p", str(port), "-k", str(folder),
                 "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=200"],
                stdout=out, stderr=subprocess.STDOUT, **as_user)
        env = {**os.environ, "PGPASSWORD": password}
        address = ["-h", "127.0.0.1", "-p", str(port), "-U", "dagster"]
        _wait(lambda: subprocess.run([str(binaries / "pg_isready"), *address], capture_output=True).returncode == 0,
              "PostgreSQL", server, log)
        subprocess.run([str(binaries / "createdb"), *address, database], check=True, env=env, capture_output=True)
        yield Postgres("127.0.0.1", port, "dagster", password, database)
    finally:
        if server is not None:
            _stop(server, signal.SIGINT)  # PostgreSQL's fast shutdown
        shutil.rmtree(folder, ignore_errors=True)


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@contextlib.contextmanager
def redis_server():
    """A Redis server on 127.0.0.1 without persistence; yields its ``redis://`` URL (database 0)."""
    import redis

    folder = Path(tempfile.mkdtemp(prefix="export-impact-redis-"))
    port, log = free_port(), folder / "server.log"
    with open(log, "w") as out:
        server = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--daemonize", "no", "--dir", str(folder)], stdout=out, stderr=subprocess.STDOUT)
    try:
        client = redis.Redis(host="127.0.0.1", port=port)

        def ready() -> bool:
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False

        _wait(ready, "Redis", server, log)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        _stop(server)
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def celery_workers(env: dict[str, str], count: int = 2, log_dir: Path | None = None):
    """``count`` Celery workers of ``pipelines.celery_app`` (one process each), started with ``env``.

    Returns once every worker answers a ping on the broker; stopped (warm shutdown) on exit.
    """
    from celery import Celery

    log_dir = Path(log_dir or tempfile.mkdtemp(prefix="export-impact-celery-"))
    names = [f"export-impact-{k}-{os.getpid()}@{socket.gethostname()}" for k in range(count)]
    workers = []
    try:
        for name in names:
            with open(log_dir / f"{name.split('@')[0]}.log", "w") as out:
                workers.append(subprocess.Popen(
                    [sys.executable, "-m", "celery", "-A", "pipelines.celery_app", "worker", "--concurrency", "1",
                     "--prefetch-multiplier", "1", "-n", name, "--loglevel", "INFO", "--without-gossip",
                     "--without-mingle"],
                    cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)}, stdout=out, stderr=subprocess.STDOUT))
        probe = Celery(broker=env["EXPORT_IMPACT_CELERY_BROKER"])

        def ready() -> bool:
            answered = {name for reply in probe.control.ping(timeout=1) for name in reply}
            return answered >= set(names)

        deadline = time.monotonic() + 120
        while not ready():
            dead = [w for w in workers if w.poll() is not None]
            if dead or time.monotonic() > deadline:
                logs = "\n".join(p.read_text()[-2000:] for p in log_dir.glob("*.log"))
                raise RuntimeError(f"Celery workers did not start; their logs:\n{logs}")
        yield names
    finally:
        for worker in workers:
            _stop(worker)
