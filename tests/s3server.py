"""A real S3-API server on 127.0.0.1 for the tests: moto's server in its own process, one per test run.

``start()`` starts it once, points the standard AWS variables of this process (inherited by
subprocesses and, through ``spark.executorEnv.*``, by executors) at it and creates ``BUCKET``;
later calls return the same endpoint. Its own process, so a busy test process (Spark, the GIL)
never starves it; it dies with the test process (``setpriv --pdeathsig``) and at exit.
"""
from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

BUCKET = "curate-test"
START_TIMEOUT = 60.0
_lock = threading.Lock()
_server: dict = {}


def die_with_parent(cmd: list[str]) -> list[str]:
    """``cmd`` wrapped so that it is SIGKILLed when this process dies (``setpriv --pdeathsig``)."""
    return ["setpriv", "--pdeathsig", "KILL", "--", *cmd] if shutil.which("setpriv") else cmd


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start() -> str:
    """The endpoint URL of the running server (started on first use)."""
    with _lock:
        if not _server:
            port = _free_port()
            endpoint = f"http://127.0.0.1:{port}"
            log = tempfile.NamedTemporaryFile(prefix="moto-", suffix=".log", delete=False)
            proc = subprocess.Popen(die_with_parent([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                                     "-p", str(port)]), stdout=log, stderr=subprocess.STDOUT)
            _server.update(proc=proc, endpoint=endpoint, log=log.name)
            atexit.register(stop)
            _wait_until_up(proc, endpoint, log.name)
            os.environ.update(aws_env(endpoint))
            import boto3

            boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
        return _server["endpoint"]


def _wait_until_up(proc: subprocess.Popen, endpoint: str, log: str) -> None:
    deadline = time.time() + START_TIMEOUT
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto server exited with {proc.returncode}: {open(log).read()[-2000:]}")
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"moto server not answering at {endpoint} after {START_TIMEOUT:.0f} s")


def aws_env(endpoint: str) -> dict[str, str]:
    """The variables any S3 client (boto3, s3fs, curate in a subprocess or an executor) reads."""
    return {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1"}


def stop() -> None:
    with _lock:
        proc = _server.pop("proc", None)
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        _server.clear()
