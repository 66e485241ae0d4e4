"""The one-run-per-output lease on a local directory and on a real S3-API server (moto)."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest
import s3server

from curate.core import CurateError
from curate.engine import lease as lease_mod
from curate.engine.lease import LEASE_DIR, acquire, describe_holder
from curate.io import fs


@pytest.fixture(params=["local", "s3"])
def output(request, tmp_path) -> str:
    """A fresh output location: a local directory or a prefix in the test bucket."""
    if request.param == "local":
        return str(tmp_path / "out")
    s3server.start()
    return f"s3://{s3server.BUCKET}/lease-{uuid.uuid4().hex[:12]}/out"


def test_moto_server_honours_if_none_match():
    """The conditional create the lease relies on: a second create of one key is refused (412)."""
    s3server.start()
    uri = f"s3://{s3server.BUCKET}/cond-{uuid.uuid4().hex[:8]}"
    assert fs.create_exclusive(uri, b"first") is True
    assert fs.create_exclusive(uri, b"second") is False
    assert fs.read_bytes(uri) == b"first"


def test_second_acquire_is_refused_naming_the_holder(output):
    with acquire(output, owner_command="curate run a.yaml", heartbeat_every=0) as held:
        assert held.generation == 1
        with pytest.raises(CurateError) as err:
            acquire(output, owner_command="curate run b.yaml")
        msg = str(err.value)
        assert "\n" not in msg
        assert msg.startswith(f"{output} is being written by {held.record['owner']} pid {os.getpid()} since ")
        assert "last heartbeat 0 s ago" in msg and "wait until the heartbeat is 120 s old or pass --take-over" in msg
        holder = describe_holder(output)
        assert holder["token"] == held.record["token"] and holder["command"] == "curate run a.yaml"
        assert holder["generation"] == 1 and not holder["stale"] and holder["heartbeat_age"] < 5
    assert describe_holder(output) is None


def test_release_lets_the_next_run_acquire_and_old_generations_are_pruned(output):
    tokens = []
    for _ in range(4):
        with acquire(output, owner_command="run", heartbeat_every=0) as held:
            held.check()
            tokens.append(held.record["token"])
    assert held.generation == 4 and len(set(tokens)) == 4
    assert fs.listdir(fs.join(output, LEASE_DIR)) == ["00000003.json", "00000004.json"]
    record = json.loads(fs.read_bytes(held.uri))
    assert record["released"] is True and record["token"] == tokens[-1]
    with pytest.raises(CurateError, match="was released"):
        held.check()


def test_stale_lease_is_taken_over_and_the_old_holder_learns_it_lost(output):
    old = acquire(output, owner_command="old", stale_after=0.4, heartbeat_every=0)  # a frozen holder
    with pytest.raises(CurateError, match="wait until the heartbeat is 0.4 s old"):  # the holder's timeout
        acquire(output, owner_command="new", stale_after=60)
    time.sleep(0.5)
    new = acquire(output, owner_command="new", stale_after=0.4, heartbeat_every=0)
    assert new.generation == 2
    new.check()
    with pytest.raises(CurateError, match=r"lost the lease on .* now held by .* \(generation 2\)"):
        old.check()
    old.release()  # a lost lease is left alone: the new holder's record is untouched
    assert describe_holder(output)["token"] == new.record["token"]
    new.release()


def test_take_over_takes_a_live_lease(output):
    old = acquire(output, owner_command="old", heartbeat_every=0)
    new = acquire(output, owner_command="new", take_over=True, heartbeat_every=0)
    assert new.generation == old.generation + 1
    with pytest.raises(CurateError, match="lost the lease"):
        old.check()
    new.release()


def test_heartbeat_advances_and_keeps_the_lease(output):
    with acquire(output, owner_command="beat", stale_after=0.8) as held:  # beats every 0.2 s
        first = describe_holder(output)["heartbeat"]
        time.sleep(1.2)  # longer than stale_after: only the heartbeat keeps it alive
        second = describe_holder(output)
        assert second["heartbeat"] > first and not second["stale"]
        with pytest.raises(CurateError, match="is being written by"):
            acquire(output, owner_command="other", stale_after=0.8)
        held.check()


def test_lost_lease_is_noticed_by_the_heartbeat_thread(output):
    with acquire(output, owner_command="beat", stale_after=0.8) as held:
        thief = acquire(output, owner_command="thief", take_over=True, heartbeat_every=0)
        deadline = time.time() + 5
        while held.lost is None and time.time() < deadline:
            time.sleep(0.05)
        assert held.lost and "lost the lease" in held.lost
        thief.release()


@pytest.mark.parametrize("stale", [False, True])
def test_concurrent_takers_exactly_one_wins(output, stale):
    """Eight threads race for a fresh output (or a stale lease): one generation, one winner."""
    if stale:
        acquire(output, owner_command="dead", stale_after=0.2, heartbeat_every=0)
        time.sleep(0.3)
    barrier = threading.Barrier(8)
    won, refused = [], []

    def take(i: int) -> None:
        barrier.wait()
        try:
            won.append(acquire(output, owner_command=f"t{i}", stale_after=60, heartbeat_every=0))
        except CurateError as exc:
            refused.append(str(exc))

    threads = [threading.Thread(target=take, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and len(refused) == 7, refused
    assert won[0].generation == (2 if stale else 1)
    assert all("is being written by" in r for r in refused)
    assert describe_holder(output)["token"] == won[0].record["token"]
    won[0].release()


_HOLD = """
import sys, time
from curate.engine.lease import acquire
lease = acquire(sys.argv[1], owner_command="holder", stale_after=600)
print("held", flush=True)
time.sleep(600)
"""


def test_holder_killed_on_this_host_is_taken_over_at_once(output):
    """A dead pid on this host needs no timeout: a killed run's rerun proceeds immediately."""
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, output], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.getcwd()})
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(CurateError, match=f"pid {proc.pid} since"):
            acquire(output, owner_command="rerun", stale_after=600)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert describe_holder(output)["stale"] is True
    with acquire(output, owner_command="rerun", stale_after=600, heartbeat_every=0) as held:
        assert held.generation == 2


def test_partially_written_local_record_is_waited_for(tmp_path, monkeypatch):
    """A local create is O_EXCL then write: a reader seeing the empty file retries, then uses its mtime."""
    out = str(tmp_path / "out")
    (tmp_path / "out" / LEASE_DIR).mkdir(parents=True)
    (tmp_path / "out" / LEASE_DIR / "00000001.json").write_bytes(b"")
    monkeypatch.setattr(lease_mod.time, "sleep", lambda s: None)
    holder = describe_holder(out)
    assert holder["owner"] == "unknown" and holder["heartbeat_age"] < 5 and not holder["stale"]
    with pytest.raises(CurateError, match="being written by unknown"):
        acquire(out, owner_command="x")


def test_bad_timeout_is_refused(tmp_path):
    with pytest.raises(CurateError, match="lease timeout must be positive"):
        acquire(str(tmp_path), owner_command="x", stale_after=0)


def test_secrets_on_the_command_line_never_reach_the_record(tmp_path):
    command = ("curate run p.yaml --conf spark.executorEnv.AWS_SECRET_ACCESS_KEY=wJalr/K7+x "
               "--conf spark.hadoop.fs.gs.auth.token=ya29.abc --output s3://b/out")
    with acquire(str(tmp_path / "out"), owner_command=command, heartbeat_every=0) as held:
        stored = fs.read_text(held.uri)
    assert "wJalr" not in stored and "ya29" not in stored
    assert json.loads(stored)["command"] == ("curate run p.yaml --conf spark.executorEnv.AWS_SECRET_ACCESS_KEY=*** "
                                             "--conf spark.hadoop.fs.gs.auth.token=*** --output s3://b/out")


def test_curate_run_refuses_an_output_being_written_with_one_line_and_exit_2(tmp_path):
    """The real CLI in its own process, against a lease held here: refused before Spark starts."""
    out = str(tmp_path / "out")
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with acquire(out, owner_command="pytest holder", heartbeat_every=0) as held:
        pipeline = os.path.join(repo, "pipelines", "quickstart.yaml")
        cmd = [sys.executable, "-m", "curate", "run", pipeline, "--output", out, "--master", "local[1]"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=repo)
        assert proc.returncode == 2, proc.stderr[-2000:]
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and re.fullmatch(
            re.escape(f"error: {out} is being written by {held.record['owner']} pid {os.getpid()} since "
                      f"{lease_mod._iso(held.record['started'])}, last heartbeat ") + r"\d+" +
            re.escape(" s ago; if that run is dead, wait until the heartbeat is 120 s old or pass --take-over"),
            lines[0]), lines
        held.check()  # the refused run did not disturb the holder
