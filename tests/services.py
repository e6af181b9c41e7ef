"""Services the scale-out tests start themselves: PostgreSQL (Debian's package) and an
MLflow tracking server (PyPI's), both on 127.0.0.1 only, in a temporary folder, stopped
afterwards. Nothing here listens on another interface."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
PG_USER = "bench"
PG_PASSWORD = "s3cret-pw"  # a credential the tests check never leaks into MLflow or output


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def chromium() -> str:
    """Debian's headless browser (``.ci/system-packages`` installs it)."""
    import pytest

    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("Debian's chromium is needed for the browser tests: run .ci/system-packages")
    return found


def postgres_bin() -> Path | None:
    """The folder of Debian's PostgreSQL server programs (initdb, pg_ctl), if installed."""
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(candidate) / "initdb").exists():
            return Path(candidate)
    found = shutil.which("initdb")
    return Path(found).parent if found else None


@dataclass(frozen=True)
class Postgres:
    port: int
    folder: Path

    def url(self, database: str, *, driver: str = "postgresql") -> str:
        return f"{driver}://{PG_USER}:{PG_PASSWORD}@{HOST}:{self.port}/{database}"


def _as_postgres_user(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run it as the package's ``postgres`` user then."""
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


@contextlib.contextmanager
def postgres(folder: Path, databases: tuple[str, ...] = ("optuna", "mlflow")) -> Iterator[Postgres]:
    """A throwaway PostgreSQL cluster on 127.0.0.1 with password authentication."""
    bin_dir = postgres_bin()
    if bin_dir is None:
        raise FileNotFoundError("PostgreSQL is not installed (Debian package postgresql)")
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "data"
    pwfile = folder / "pw"
    pwfile.write_text(PG_PASSWORD + "\n")
    if os.geteuid() == 0:
        pg = pwd.getpwnam("postgres")
        for path in (folder, pwfile):
            os.chown(path, pg.pw_uid, pg.pw_gid)
        # runuser needs to reach the folder through its parents
        for parent in folder.parents:
            if str(parent) in ("/", "/tmp"):
                break
            os.chmod(parent, os.stat(parent).st_mode | 0o011)
    subprocess.run(
        _as_postgres_user(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                PG_USER,
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
                "--no-instructions",
            ]
        ),
        check=True,
        capture_output=True,
        text=True,
    )
    port = free_port()
    log = folder / "postgres.log"
    # MLflow 3.17's server starts job consumers that each hold connections to its backend
    # store; with two workers' Optuna pools beside them PostgreSQL's default 100 ran out
    # ("sorry, too many clients already") on a loaded machine.
    options = f"-h {HOST} -p {port} -k {folder} -c max_connections=300"
    subprocess.run(
        _as_postgres_user(
            [str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w", "start"]
        ),
        check=True,
        capture_output=True,
        text=True,
    )
    try:
        env = {**os.environ, "PGPASSWORD": PG_PASSWORD}
        for db in databases:
            subprocess.run(
                [
                    str(bin_dir / "createdb") if (bin_dir / "createdb").exists() else "createdb",
                    "-h",
                    HOST,
                    "-p",
                    str(port),
                    "-U",
                    PG_USER,
                    db,
                ],
                check=True,
                capture_output=True,
                text=True,
                env=env,
            )
        yield Postgres(port, folder)
    finally:
        subprocess.run(
            _as_postgres_user(
                [str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]
            ),
            capture_output=True,
            text=True,
        )


@dataclass(frozen=True)
class MlflowServer:
    url: str
    log: Path


@contextlib.contextmanager
def mlflow_server(
    backend_uri: str, artifacts: Path, log: Path, timeout: float = 120
) -> Iterator[MlflowServer]:
    """``mlflow server`` with a database backend store and a local artifact root, on 127.0.0.1."""
    port = free_port()
    mlflow_cli = Path(sys.executable).parent / "mlflow"
    cmd = [
        str(mlflow_cli),
        "server",
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        backend_uri,
        "--artifacts-destination",
        artifacts.as_uri(),
    ]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited: {log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"mlflow server did not start in {timeout}s: {log.read_text()[-2000:]}"
                )
            time.sleep(0.5)
        yield MlflowServer(url, log)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
