"""The MLflow UI as a newcomer first sees it: screenshots of the links bench prints.

Runs a small comparison (two variants, two seeds) and a small tuning study into a temporary
store, serves it with ``mlflow ui`` on 127.0.0.1, and saves what Debian's headless Chromium
shows at exactly the links the two commands printed (1400 x 900, a fresh browser profile
each) as ``docs/images/compare.png`` and ``docs/images/tune.png``::

    .venv/bin/python docs/screenshots.py --data-dir ../shared/data

About two minutes on two CPU cores. ``--keep`` leaves the store in place and prints where.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VARIANTS = "vanilla-shallow,dropout-shallow"
SIZE = "1400,900"


def _bench(*args: str, cwd: Path) -> str:
    """Run ``bench`` with ``args``; its output (which ends with the link to open)."""
    done = subprocess.run(
        [sys.executable, "-m", "bench", *args], cwd=cwd, capture_output=True, text=True
    )
    if done.returncode:
        sys.exit(f"bench {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def _printed_link(output: str, label: str) -> str:
    [line] = [line for line in output.splitlines() if line.startswith(label)]
    return line.split("then open ", 1)[1].strip()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(uri: str, port: int) -> subprocess.Popen:
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "ui",
            "--backend-store-uri",
            uri,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(120):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
            return server
        except OSError:
            time.sleep(1)
    server.terminate()
    sys.exit("mlflow ui did not start")


def _screenshot(url: str, png: Path, profile: Path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if not browser:
        sys.exit("needs Debian's chromium (.ci/system-packages installs it)")
    subprocess.run(
        [
            browser,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--window-size={SIZE}",
            "--virtual-time-budget=30000",
            f"--screenshot={png}",
            url,
        ],
        capture_output=True,
        timeout=180,
        check=True,
    )
    print(f"{png.relative_to(REPO) if png.is_relative_to(REPO) else png}: {url}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data-dir", default=os.environ.get("BENCH_DATA_DIR", str(REPO.parent / "shared" / "data"))
    )
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images")
    parser.add_argument("--epochs", default="8")
    parser.add_argument("--trials", default="8")
    parser.add_argument(
        "--limit", default="12000", help="training images (the last 2,000 validate)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary store")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-screenshots-"))
    uri = f"sqlite:///{work / 'mlflow.db'}"
    common = [
        "--data-dir",
        args.data_dir,
        "--tracking-uri",
        uri,
        "--epochs",
        args.epochs,
        "--limit",
        args.limit,
        "--validation-size",
        "2000",
    ]
    try:
        compared = _bench(
            "compare", "--variants", VARIANTS, "--seeds", "2", "--no-model", *common, cwd=work
        )
        tuned = _bench(
            "tune",
            "--variants",
            "dropout-shallow",
            "--trials",
            args.trials,
            "--no-model",
            *common,
            cwd=work,
        )
        port = _free_port()
        server = _serve(uri, port)
        try:
            args.out.mkdir(parents=True, exist_ok=True)
            for name, output, label in (
                ("compare", compared, "browse:"),
                ("tune", tuned, "browse runs:"),
            ):
                link = _printed_link(output, label).replace(
                    "http://127.0.0.1:5000", f"http://127.0.0.1:{port}"
                )
                _screenshot(link, args.out / f"{name}.png", work / f"chromium-{name}")
        finally:
            server.terminate()
            server.wait(timeout=30)
    finally:
        if args.keep:
            print(f"store kept: {uri}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
