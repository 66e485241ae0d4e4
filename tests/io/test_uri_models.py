"""Model files as URIs: the lang_id filter's fastText model under ``s3://`` (moto) is fetched with
its sidecar, hash-checked and scores like the local file — also in a fresh Python process that
imports only what a Spark worker running the score stage imports (the scorer adapter and the
filter), which is where the URI fetcher must already be registered."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest
from helpers import UDHR, lid_model

import filters
from curate.core import CurateError
from curate.io import fs

s3server = pytest.importorskip("s3server")
pytest.importorskip("s3fs")
pytest.importorskip("fasttext")

TEXTS = ["The quick brown fox jumps over the lazy dog and runs away.",
         "Le renard brun saute par-dessus le chien paresseux.", "Der schnelle braune Fuchs springt."]

WORKER = """
import json, sys
import curate.quality.columns  # what a score task unpickles: the adapter, then the filter's module
import filters
f = filters.build("lang_id", {"model": sys.argv[1]})
f.setup()
print(json.dumps([f.score({"text": t}) for t in json.loads(sys.argv[2])]))
"""


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    if not UDHR.is_file():
        pytest.skip("shared UDHR data not found")
    s3server.start()
    local, _ = lid_model(tmp_path_factory.mktemp("lid"))
    remote = f"s3://{s3server.BUCKET}/models-{uuid.uuid4().hex[:8]}/lid.bin"
    fs.put_file(local, remote)
    fs.put_file(f"{local}.sha256", f"{remote}.sha256")
    mp = pytest.MonkeyPatch()
    mp.setenv("CURATE_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield local, remote
    mp.undo()


def test_lang_id_model_on_s3_scores_like_the_local_file(models):
    local, remote = models
    scores = {}
    for where, path in (("local", str(local)), ("s3", remote)):
        flt = filters.build("lang_id", {"model": path})
        flt.setup()
        scores[where] = [flt.score({"text": t}) for t in TEXTS]
    assert scores["s3"] == scores["local"] and [s["language"] for s in scores["s3"]][:2] == ["en", "fr"]
    env = {**os.environ, "CURATE_CACHE": os.environ["CURATE_CACHE"] + "-worker"}
    done = subprocess.run([sys.executable, "-c", WORKER, remote, json.dumps(TEXTS)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == scores["local"]


def test_a_replaced_model_object_or_a_missing_one_is_refused(models):
    local, remote = models
    tampered = remote.replace("lid.bin", "tampered.bin")
    fs.write_bytes(tampered, fs.read_bytes(remote)[:-16] + b"\0" * 16)
    fs.put_file(f"{local}.sha256", f"{tampered}.sha256")
    with pytest.raises(CurateError, match=r"does not match its sidecar .*refusing to load it"):
        filters.build("lang_id", {"model": tampered}).setup()
    with pytest.raises(CurateError, match=f"file not found: {remote.replace('lid.bin', 'nope.bin')}"):
        filters.build("lang_id", {"model": remote.replace("lid.bin", "nope.bin")}).setup()
