"""A real S3-API server on 127.0.0.1 for the tests: moto's threaded server, one per test process.

``start()`` starts it once, points the standard AWS variables of this process (inherited by
subprocesses) at it and creates ``BUCKET``; later calls return the same endpoint. One server
per process because fsspec caches its S3 filesystem with the endpoint it first saw.
"""
from __future__ import annotations

import os
import threading

BUCKET = "curate-test"
_lock = threading.Lock()
_server: dict = {}


def start() -> str:
    """The endpoint URL of the running server (started on first use)."""
    with _lock:
        if not _server:
            import logging

            import boto3
            from moto.server import ThreadedMotoServer

            logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
            server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            server.start()
            host, port = server.get_host_and_port()
            endpoint = f"http://{host}:{port}"
            os.environ.update(aws_env(endpoint))
            boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
            _server.update(server=server, endpoint=endpoint)
        return _server["endpoint"]


def aws_env(endpoint: str) -> dict[str, str]:
    """The variables any S3 client (boto3, s3fs, curate in a subprocess or an executor) reads."""
    return {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1"}


def stop() -> None:
    with _lock:
        if _server:
            _server.pop("server").stop()
            _server.clear()
