"""One run per output: a lease taken before any work, kept alive by a heartbeat.

The lease is a series of generation-numbered records ``<output>/_lease/<generation:08d>.json``,
each created with a conditional create (``O_EXCL`` locally, ``If-None-Match: *`` on S3, see
:func:`curate.io.fs.create_exclusive`), so no two runs can ever hold the same generation. The
holder is the run that created the highest generation that is not marked released.

- acquire: no record, or the highest is released → create the next generation.
- the highest is held: refuse with one line naming the holder, unless its heartbeat is older
  than the holder's own ``stale_after`` (recorded in its record), its pid is dead on this very
  host, or ``take_over`` is set → create the next generation (two takers race for the same
  name: exactly one wins).
- heartbeat: a background thread rewrites the holder's own record every ``stale_after / 4``.
- check: before committing a stage the holder verifies it still owns the highest generation.
- release: the record is marked released (never deleted, so the highest generation never
  goes back to an older holder); generations older than the previous one are removed.

Heartbeat ages compare the holder's wall clock with the reader's: hosts need NTP-level clock
agreement, which the default 120 s timeout leaves ample room for.
"""
from __future__ import annotations

import getpass
import json
import os
import re
import secrets
import socket
import threading
import time
from datetime import datetime, timezone
from typing import Any, Callable

from curate.core import CurateError
from curate.io import fs
from curate.io.layout import LEASE_DIR

DEFAULT_STALE_AFTER = 120.0
_RECORD = re.compile(r"^(\d{8})\.json$")
_MAX_ATTEMPTS = 8
_SECRET = re.compile(r"(?i)([\w.\-]*(secret|password|passwd|token|credential|access_key|session_key)[\w.\-]*=)\S+")


def redact(command: str) -> str:
    """``command`` with the values of secret-looking ``key=value`` pairs masked (``--conf
    spark.executorEnv.AWS_SECRET_ACCESS_KEY=…`` must not reach a lease record)."""
    return _SECRET.sub(r"\1***", command)


def lease_dir(output_uri: str) -> str:
    return fs.join(output_uri, LEASE_DIR)


def _record_uri(output_uri: str, generation: int) -> str:
    return fs.join(lease_dir(output_uri), f"{generation:08d}.json")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (containers): the uid still names the account
        return f"uid{os.getuid()}"


def _generations(output_uri: str) -> list[int]:
    """Generation numbers present, ascending, from a fresh (uncached) listing."""
    directory = lease_dir(output_uri)
    filesystem, path = fs.filesystem(directory)
    filesystem.invalidate_cache(path)
    return sorted(int(m.group(1)) for m in map(_RECORD.match, fs.listdir(directory)) if m)


def _read_record(output_uri: str, generation: int) -> dict[str, Any] | None:
    """The record of one generation; None when it vanished.

    A local record is written just after its exclusive create, so a reader may briefly see it
    empty: retry, then fall back to the file's modification time as its heartbeat.
    """
    uri = _record_uri(output_uri, generation)
    for _ in range(20):
        try:
            return json.loads(fs.read_bytes(uri))
        except FileNotFoundError:
            return None
        except ValueError:
            time.sleep(0.05)
    try:
        mtime = float(os.stat(fs.strip_file_scheme(uri)).st_mtime) if not fs.is_remote(uri) else time.time()
    except FileNotFoundError:
        return None
    return {"owner": "unknown", "host": "unknown", "pid": 0, "token": "", "started": mtime,
            "heartbeat": mtime, "command": "", "released": False, "unreadable": True}


def _pid_dead_here(record: dict) -> bool:
    """True when the holder ran on this host and its process no longer exists."""
    if record.get("host") != socket.gethostname() or not record.get("pid"):
        return False
    try:
        os.kill(int(record["pid"]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # exists, owned by someone else
        return False
    return False


def _holder(output_uri: str) -> tuple[int, dict[str, Any] | None]:
    """``(highest generation, its record)``; ``(0, None)`` when there is none."""
    for _ in range(_MAX_ATTEMPTS):
        gens = _generations(output_uri)
        if not gens:
            return 0, None
        record = _read_record(output_uri, gens[-1])
        if record is not None:
            return gens[-1], record
    raise CurateError(f"{lease_dir(output_uri)}: lease records keep disappearing; is another tool deleting them?")


def _describe(record: dict, generation: int, now: float) -> dict[str, Any]:
    age = max(0.0, now - float(record["heartbeat"]))
    stale_after = float(record.get("stale_after", DEFAULT_STALE_AFTER))
    return {**record, "generation": generation, "heartbeat_age": age,
            "stale": age >= stale_after or _pid_dead_here(record)}


def describe_holder(output_uri: str) -> dict[str, Any] | None:
    """The current holder's record plus ``generation``, ``heartbeat_age`` (s) and ``stale``;
    None when no run holds the output."""
    generation, record = _holder(str(output_uri))
    if record is None or record.get("released"):
        return None
    return _describe(record, generation, time.time())


def holder_message(output_uri: str, holder: dict[str, Any]) -> str:
    """The one-line refusal naming the holder and the way out (the holder's own timeout)."""
    stale_after = float(holder.get("stale_after", DEFAULT_STALE_AFTER))
    return (f"{output_uri} is being written by {holder['owner']} pid {holder['pid']} since "
            f"{_iso(float(holder['started']))}, last heartbeat {holder['heartbeat_age']:.0f} s ago; "
            f"if that run is dead, wait until the heartbeat is {stale_after:g} s old or pass --take-over")


class Lease:
    """A held lease; use as a context manager or call :meth:`release`."""

    def __init__(self, output_uri: str, generation: int, record: dict[str, Any], stale_after: float,
                 heartbeat_every: float, log: Callable[[str], None] | None = None):
        self.output_uri, self.generation, self.record = output_uri, generation, record
        self.stale_after = stale_after
        self.lost: str | None = None
        self._log = log
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = None
        if heartbeat_every > 0:
            self._thread = threading.Thread(target=self._beat, args=(heartbeat_every,), daemon=True,
                                            name=f"curate-lease-{generation}")
            self._thread.start()

    @property
    def uri(self) -> str:
        return _record_uri(self.output_uri, self.generation)

    def heartbeat(self) -> None:
        """Rewrite this generation's record with the current time (only this run writes it)."""
        with self._lock:
            if self._stop.is_set():
                return
            self.record = {**self.record, "heartbeat": time.time()}
            fs.write_bytes(self.uri, _encode(self.record))

    def _beat(self, every: float) -> None:
        while not self._stop.wait(every):
            try:
                self.heartbeat()
                self._check_owner()
            except CurateError as exc:
                self.lost = str(exc)
                return
            except Exception as exc:  # a transient store error: keep trying, say so once per failure
                if self._log:
                    self._log(f"lease heartbeat on {self.output_uri} failed: {type(exc).__name__}: {exc}")

    def _check_owner(self) -> None:
        generation, record = _holder(self.output_uri)
        if generation != self.generation or record is None or record.get("token") != self.record["token"]:
            who = (f"{record['owner']} pid {record['pid']} (generation {generation})" if record
                   else "nobody (the lease records were deleted)")
            raise CurateError(f"lost the lease on {self.output_uri}: it is now held by {who}; "
                              "this run stops without committing")

    def check(self) -> None:
        """Raise :class:`CurateError` unless this run still holds the lease (call before each commit)."""
        if self._stop.is_set():
            raise CurateError(f"the lease on {self.output_uri} was released; this run cannot commit")
        if self.lost:
            raise CurateError(self.lost)
        self._check_owner()

    def release(self) -> None:
        """Stop the heartbeat and mark the record released (idempotent; a lost lease is left alone)."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        try:
            self._check_owner()
        except CurateError:
            return
        with self._lock:
            self.record = {**self.record, "released": True, "heartbeat": time.time()}
            fs.write_bytes(self.uri, _encode(self.record))

    def __enter__(self) -> "Lease":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _encode(record: dict) -> bytes:
    return json.dumps(record, sort_keys=True, indent=1).encode()


def _new_record(owner_command: str, stale_after: float) -> dict[str, Any]:
    now = time.time()
    host = socket.gethostname()
    return {"owner": f"{_user()}@{host}", "host": host, "pid": os.getpid(), "token": secrets.token_hex(16),
            "started": now, "started_utc": _iso(now), "heartbeat": now, "command": redact(owner_command),
            "stale_after": stale_after, "released": False}


def acquire(output_uri: str, *, owner_command: str, stale_after: float = DEFAULT_STALE_AFTER,
            take_over: bool = False, heartbeat_every: float | None = None,
            log: Callable[[str], None] | None = None) -> Lease:
    """Take the lease on ``output_uri`` or raise a one-line :class:`CurateError` naming the holder.

    ``take_over`` takes it even from a live-looking holder (whose next :meth:`Lease.check`
    then fails). ``heartbeat_every`` defaults to ``stale_after / 4``; 0 disables the thread.
    """
    output_uri = str(output_uri)
    if stale_after <= 0:
        raise CurateError(f"lease timeout must be positive, got {stale_after}")
    every = stale_after / 4 if heartbeat_every is None else heartbeat_every
    for _ in range(_MAX_ATTEMPTS):
        generation, record = _holder(output_uri)
        if record is not None and not record.get("released"):
            holder = _describe(record, generation, time.time())
            if not (holder["stale"] or take_over):
                raise CurateError(holder_message(output_uri, holder))
            if log:
                log(f"taking over the lease on {output_uri} from {holder['owner']} pid {holder['pid']} "
                    f"(last heartbeat {holder['heartbeat_age']:.0f} s ago)")
        mine = {**_new_record(owner_command, stale_after), "generation": generation + 1}
        if fs.create_exclusive(_record_uri(output_uri, generation + 1), _encode(mine)):
            _remove_old(output_uri, generation)
            return Lease(output_uri, generation + 1, mine, stale_after, every, log)
        take_over = False  # someone else created that generation first: judge the new holder afresh
    raise CurateError(f"{output_uri}: could not take the lease after {_MAX_ATTEMPTS} attempts "
                      "(other runs keep taking it)")


def _remove_old(output_uri: str, previous: int) -> None:
    """Remove generations before ``previous`` (kept: the previous holder's, so it sees it lost)."""
    for gen in _generations(output_uri):
        if gen < previous:
            fs.remove(_record_uri(output_uri, gen))
