"""Run a per-item function in a child process with a time limit per item.

HTML extractors sometimes take minutes on one page (quadratic tree building on unclosed
markup) and their C code cannot be interrupted: a thread cannot be killed, and ``SIGALRM``
only fires when control returns to Python. So the function runs in a child Python process
(one per Spark task, started once); the parent sends items in chunks and waits at most
``time_limit`` seconds for each result. When an item runs over, or the child dies (a crash in
C code), the child is killed, that item gets ``("timeout" | "error", detail)``, and a fresh
child continues with the next item: the task itself never hangs or dies.

The protocol is ``multiprocessing.connection`` over two pipes between the two processes of
one task (never a file or a socket), so pickle here only carries our own messages.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from multiprocessing.connection import Connection
from typing import Any, Callable, Sequence

CHUNK_ITEMS = 64
CHUNK_CHARS = 4 << 20
STARTUP_TIMEOUT_S = 300.0


class SandboxError(RuntimeError):
    """The child could not be started or set up (a missing package, a bad option)."""


class Sandbox:
    """``map(items)`` -> per item ``("ok", value)``, ``("error", detail)`` or ``("timeout", detail)``.

    ``factory`` is ``"module:function"``; the child calls ``function(config)`` once and then the
    returned callable on every item.
    """

    def __init__(self, factory: str, config: dict, time_limit_s: float, size: Callable[[Any], int] = len):
        self.factory, self.config, self.time_limit_s, self.size = factory, config, float(time_limit_s), size
        self.proc: subprocess.Popen | None = None
        self.restarts = 0

    # ------------------------------------------------------------ child lifecycle

    def _start(self) -> None:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        code = "import sys; from curate.web.sandbox import serve; serve(int(sys.argv[1]), int(sys.argv[2]))"
        self.proc = subprocess.Popen([sys.executable, "-c", code, str(to_child_r), str(from_child_w)],
                                     pass_fds=(to_child_r, from_child_w), stdin=subprocess.DEVNULL,
                                     close_fds=True)
        os.close(to_child_r)
        os.close(from_child_w)
        self.send_conn = Connection(to_child_w, readable=False)
        self.recv_conn = Connection(from_child_r, writable=False)
        self.send_conn.send(("setup", self.factory, self.config))
        if not self.recv_conn.poll(STARTUP_TIMEOUT_S):
            self._kill()
            raise SandboxError(f"extractor process did not start within {STARTUP_TIMEOUT_S:.0f} s")
        try:
            reply = self.recv_conn.recv()
        except EOFError:
            code = self._kill()
            raise SandboxError(f"extractor process exited during setup (exit code {code})") from None
        if reply[0] != "ready":
            self._kill()
            raise SandboxError(f"extractor setup failed: {reply[1]}")

    def _kill(self) -> int | None:
        proc, self.proc = self.proc, None
        for conn in (getattr(self, "send_conn", None), getattr(self, "recv_conn", None)):
            if conn is not None:
                conn.close()
        self.send_conn = self.recv_conn = None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.kill()
        return proc.wait()

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.send_conn.send(("close",))
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self._kill()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------ work

    def map(self, items: Sequence[Any]) -> list[tuple[str, Any]]:
        results: list[tuple[str, Any]] = []
        while len(results) < len(items):
            chunk = _chunk(items, len(results), self.size)
            if self.proc is None:
                self._start()
            self.send_conn.send(("items", chunk))
            for _ in chunk:
                outcome = self._next_result()
                results.append(outcome)
                if outcome[0] in ("timeout", "crash"):
                    break
        return [("error", r[1]) if r[0] == "crash" else r for r in results]

    def _next_result(self) -> tuple[str, Any]:
        started = time.monotonic()
        if not self.recv_conn.poll(self.time_limit_s):
            self._kill()
            self.restarts += 1
            return "timeout", f"over {self.time_limit_s:g} s (after {time.monotonic() - started:.1f} s)"
        try:
            return self.recv_conn.recv()
        except (EOFError, OSError):
            code = self._kill()
            self.restarts += 1
            return "crash", f"extractor process died (exit code {code})"


def _chunk(items: Sequence[Any], start: int, size: Callable[[Any], int]) -> list[Any]:
    chunk, chars = [], 0
    for item in items[start:start + CHUNK_ITEMS]:
        if chunk and chars + size(item) > CHUNK_CHARS:
            break
        chunk.append(item)
        chars += size(item)
    return chunk


def run_inline(fn: Callable[[Any], Any], items: Sequence[Any]) -> list[tuple[str, Any]]:
    """The same outcomes without a child process or a time limit (``time_limit_s: 0``)."""
    out = []
    for item in items:
        try:
            out.append(("ok", fn(item)))
        except Exception as exc:  # an extractor failing on one page rejects that page only
            out.append(("error", _describe(exc)))
    return out


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:300]


def load_factory(spec: str) -> Callable[[dict], Callable[[Any], Any]]:
    import importlib

    module, name = spec.split(":")
    return getattr(importlib.import_module(module), name)


def _die_with_parent() -> None:
    """Linux: the child gets SIGKILL when its parent (the Spark worker) dies."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            import signal

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:
            pass


def serve(read_fd: int, write_fd: int) -> None:
    """The child's loop: set up from the first message, then answer every item in order."""
    _die_with_parent()
    recv, send = Connection(read_fd, writable=False), Connection(write_fd, readable=False)
    try:
        _, factory, config = recv.recv()
        try:
            fn = load_factory(factory)(config)
        except Exception as exc:
            send.send(("failed", _describe(exc)))
            return
        send.send(("ready",))
        while True:
            message = recv.recv()
            if message[0] == "close":
                return
            for item in message[1]:
                try:
                    send.send(("ok", fn(item)))
                except Exception as exc:  # the page's own failure, reported for that page
                    send.send(("error", _describe(exc)))
    except EOFError:  # the parent went away
        return
