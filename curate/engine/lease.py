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

``curate run`` holds it through :func:`acquire`; the other writing commands (``mix``,
``tokenize``, ``train``, ``ablate``) through :func:`holding`, which also stops the command when
its lease is taken over. Outputs replaced whole by a rename (``mix``, ``tokenize``) keep their
records beside them (:func:`beside_dir`, ``<output>.lease``) so the rename cannot remove them.
"""
from __future__ import annotations

import _thread
import getpass
import json
import os
import re
import secrets
import socket
import sys
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Callable, Iterator

from curate.core import CurateError
from curate.io import fs
from curate.io.layout import LEASE_DIR

LEASE_SUFFIX = ".lease"

DEFAULT_STALE_AFTER = 120.0
_RECORD = re.compile(r"^(\d{8})\.json$")
_MAX_ATTEMPTS = 8
_SECRET = re.compile(r"(?i)([\w.\-]*(secret|password|passwd|token|credential|access_key|session_key)[\w.\-]*=)\S+")


def redact(command: str) -> str:
    """``command`` with the values of secret-looking ``key=value`` pairs masked (``--conf
    spark.executorEnv.AWS_SECRET_ACCESS_KEY=…`` must not reach a lease record)."""
    return _SECRET.sub(r"\1***", command)


def lease_dir(output_uri: str) -> str:
    """Where the lease records of an output that is written in place live: ``<output>/_lease``."""
    return fs.join(output_uri, LEASE_DIR)


def beside_dir(output_uri: str) -> str:
    """Where the lease records of an output *replaced whole* live (``curate mix`` and ``curate
    tokenize`` rename a new directory over theirs): beside it, ``<output>.lease``."""
    if fs.is_remote(output_uri) and "/" not in str(output_uri).split("://", 1)[1].strip("/"):
        raise CurateError(f"{output_uri} is a bucket root; write this output under a prefix "
                          f"({str(output_uri).rstrip('/')}/NAME) so its lease can live beside it")
    return fs.join(fs.parent(output_uri), f"{fs.name(output_uri)}{LEASE_SUFFIX}")


def _record_uri(records: str, generation: int) -> str:
    return fs.join(records, f"{generation:08d}.json")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (containers): the uid still names the account
        return f"uid{os.getuid()}"


def _generations(records: str) -> list[int]:
    """Generation numbers present, ascending, from a fresh (uncached) listing."""
    filesystem, path = fs.filesystem(records)
    filesystem.invalidate_cache(path)
    return sorted(int(m.group(1)) for m in map(_RECORD.match, fs.listdir(records)) if m)


def _read_record(records: str, generation: int) -> dict[str, Any] | None:
    """The record of one generation; None when it vanished.

    A local record is written just after its exclusive create, so a reader may briefly see it
    empty: retry, then fall back to the file's modification time as its heartbeat.
    """
    uri = _record_uri(records, generation)
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


def _holder(records: str) -> tuple[int, dict[str, Any] | None]:
    """``(highest generation, its record)``; ``(0, None)`` when there is none."""
    for _ in range(_MAX_ATTEMPTS):
        gens = _generations(records)
        if not gens:
            return 0, None
        record = _read_record(records, gens[-1])
        if record is not None:
            return gens[-1], record
    raise CurateError(f"{records}: lease records keep disappearing; is another tool deleting them?")


def _describe(record: dict, generation: int, now: float) -> dict[str, Any]:
    age = max(0.0, now - float(record["heartbeat"]))
    stale_after = float(record.get("stale_after", DEFAULT_STALE_AFTER))
    return {**record, "generation": generation, "heartbeat_age": age,
            "stale": age >= stale_after or _pid_dead_here(record)}


def describe_holder(output_uri: str, records: str | None = None) -> dict[str, Any] | None:
    """The current holder's record plus ``generation``, ``heartbeat_age`` (s) and ``stale``;
    None when no run holds the output. ``records``: the lease directory (default :func:`lease_dir`)."""
    generation, record = _holder(records or lease_dir(str(output_uri)))
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
                 heartbeat_every: float, log: Callable[[str], None] | None = None, *, records: str | None = None,
                 on_lost: Callable[[], None] | None = None):
        self.output_uri, self.generation, self.record = output_uri, generation, record
        self.records = records or lease_dir(output_uri)
        self.stale_after = stale_after
        self.lost: str | None = None
        self._log, self._on_lost = log, on_lost
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = None
        if heartbeat_every > 0:
            self._thread = threading.Thread(target=self._beat, args=(heartbeat_every,), daemon=True,
                                            name=f"curate-lease-{generation}")
            self._thread.start()

    @property
    def uri(self) -> str:
        return _record_uri(self.records, self.generation)

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
                if self._on_lost:
                    self._on_lost()
                return
            except Exception as exc:  # a transient store error: keep trying, say so once per failure
                if self._log:
                    self._log(f"lease heartbeat on {self.output_uri} failed: {type(exc).__name__}: {exc}")

    def _check_owner(self) -> None:
        generation, record = _holder(self.records)
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
            log: Callable[[str], None] | None = None, records: str | None = None,
            on_lost: Callable[[], None] | None = None) -> Lease:
    """Take the lease on ``output_uri`` or raise a one-line :class:`CurateError` naming the holder.

    ``take_over`` takes it even from a live-looking holder (whose next :meth:`Lease.check`
    then fails). ``heartbeat_every`` defaults to ``stale_after / 4``; 0 disables the thread.
    ``records`` is the lease directory (default :func:`lease_dir`; :func:`beside_dir` for an
    output replaced whole). ``on_lost`` is called by the heartbeat thread when another run
    took the lease (:func:`holding` uses it to stop the work).
    """
    output_uri = str(output_uri)
    records = records or lease_dir(output_uri)
    if stale_after <= 0:
        raise CurateError(f"lease timeout must be positive, got {stale_after}")
    every = stale_after / 4 if heartbeat_every is None else heartbeat_every
    for _ in range(_MAX_ATTEMPTS):
        generation, record = _holder(records)
        if record is not None and not record.get("released"):
            holder = _describe(record, generation, time.time())
            if not (holder["stale"] or take_over):
                raise CurateError(holder_message(output_uri, holder))
            if log:
                log(f"taking over the lease on {output_uri} from {holder['owner']} pid {holder['pid']} "
                    f"(last heartbeat {holder['heartbeat_age']:.0f} s ago)")
        mine = {**_new_record(owner_command, stale_after), "generation": generation + 1}
        if fs.create_exclusive(_record_uri(records, generation + 1), _encode(mine)):
            _remove_old(records, generation)
            return Lease(output_uri, generation + 1, mine, stale_after, every, log, records=records,
                         on_lost=on_lost)
        take_over = False  # someone else created that generation first: judge the new holder afresh
    raise CurateError(f"{output_uri}: could not take the lease after {_MAX_ATTEMPTS} attempts "
                      "(other runs keep taking it)")


def _remove_old(records: str, previous: int) -> None:
    """Remove generations before ``previous`` (kept: the previous holder's, so it sees it lost)."""
    for gen in _generations(records):
        if gen < previous:
            fs.remove(_record_uri(records, gen))


@contextmanager
def holding(output_uri: str, *, take_over: bool = False, replaced_whole: bool = False,
            stale_after: float = DEFAULT_STALE_AFTER, log: Callable[[str], None] | None = None) -> Iterator[Lease]:
    """The lease of one command on ``output_uri`` for the whole block, released after it.

    For the commands besides ``curate run`` (``mix``, ``tokenize``, ``train``, ``ablate``):
    ``replaced_whole`` keeps the records beside the output (:func:`beside_dir`), since those
    outputs are renamed into place whole. When another run takes the lease over while the
    block runs, the heartbeat thread interrupts the main thread and the block ends with the
    one-line "lost the lease" error instead of finishing its work.
    """
    output_uri = str(output_uri)
    in_main = threading.current_thread() is threading.main_thread()
    lease = acquire(output_uri, owner_command=" ".join(sys.argv) or "curate", take_over=take_over,
                    stale_after=stale_after, log=log,
                    records=beside_dir(output_uri) if replaced_whole else lease_dir(output_uri),
                    on_lost=_thread.interrupt_main if in_main else None)
    try:
        yield lease
    except KeyboardInterrupt:
        if lease.lost:
            raise CurateError(lease.lost) from None
        raise
    finally:
        lease.release()
