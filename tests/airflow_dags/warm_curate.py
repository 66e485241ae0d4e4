"""A warm ``curate`` for the Airflow DAG test: one process, one JVM, runs the command of every task.

Each DAG task still runs the exact ``curate run PIPELINE --only STEP …`` line the DAG builds;
``CURATE_AIRFLOW_COMMAND`` (the DAG file's documented command prefix) points at this client
instead of ``python -m curate``, so the six tasks of the quickstart share one started Spark
rather than paying for six JVM starts.

    python warm_curate.py serve SOCKET      # import curate, start Spark, then serve requests
    python warm_curate.py SOCKET ARGS...    # client: run ``curate ARGS...`` in the server

The client imports only the stdlib, waits for the server's socket, prints the command's output
and exits with its exit code. ``python warm_curate.py SOCKET --stop`` ends the server.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import sys
import time
import traceback

STOP = "--stop"


def _send(conn: socket.socket, message: dict) -> None:
    conn.sendall(json.dumps(message).encode() + b"\n")


def _receive(conn: socket.socket) -> dict:
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(1 << 16)
        if not chunk:
            raise ConnectionError("warm curate server closed the connection")
        data += chunk
    return json.loads(data)


def run_curate(argv: list[str]) -> tuple[int, str]:
    """``curate ARGV`` in this process, as the console script would run it: (exit code, output)."""
    from curate.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            main.main(args=argv, prog_name="curate", standalone_mode=False)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except Exception as exc:  # click's own errors carry a code; anything else is a crash
            code = getattr(exc, "exit_code", 1)
            show = getattr(exc, "show", None)
            show() if show else traceback.print_exc()
    return code, out.getvalue()


def serve(path: str) -> None:
    """Start Spark as ``curate run`` would, then run one request at a time until told to stop."""
    from curate.engine.spark import get_spark

    spark = get_spark()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(path + ".tmp")
        os.replace(path + ".tmp", path)  # the socket appears only once Spark is up
        server.listen(1)
        while True:
            conn, _ = server.accept()
            with conn:
                request = _receive(conn)
                if request["argv"] == [STOP]:
                    _send(conn, {"code": 0, "output": ""})
                    break
                os.chdir(request["cwd"])
                code, output = run_curate(request["argv"])
                _send(conn, {"code": code, "output": output})
    spark.stop()


def request(path: str, argv: list[str], wait_s: float = 600) -> int:
    """Send ``argv`` to the server at ``path`` (waiting for it to come up); print its output."""
    deadline = time.monotonic() + wait_s
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            print(f"warm curate server did not come up at {path}", file=sys.stderr)
            return 1
        time.sleep(0.2)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect(path)
        _send(conn, {"argv": argv, "cwd": os.getcwd()})
        reply = _receive(conn)
    print(reply["output"], end="")
    return reply["code"]


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(sys.argv[2])
    else:
        sys.exit(request(sys.argv[1], sys.argv[2:]))
