"""End to end on a real standalone cluster over a real S3-API server: ``s3://`` in, ``s3://`` out.

The driver is a ``curate run`` subprocess; the executors run as another user who cannot see the
driver's disk. Each pipeline's shard bytes (sha256 in the manifests) must equal those of
``local[2]`` on local files; a run SIGKILLed mid-stage and rerun gives the same bytes; a second
run on an output being written is refused with one line naming the holder.
"""
from __future__ import annotations

import json
import random
import re
import time
from pathlib import Path

import pytest
import s3server

from curate.engine.lease import describe_holder
from curate.engine.runner import run_pipeline
from curate.io import fs

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "pipelines" / "quickstart.yaml"
STEP = re.compile(r"^(\d\d-.+|final)$")
DEDUP_ORDER = """\
name: dedup_order
input: {path: wiki.jsonl, format: jsonl}
output: out
seed: 0
stages:
  - minhash_dedup: {ngram: 5, num_perm: 64, threshold: 0.8}
  - knn_order: {k: 5, duplicate_threshold: 0.97}
"""


def s3_uri(*parts: str) -> str:
    return "s3://" + "/".join([s3server.BUCKET, *parts])


def shard_digests(output: str) -> dict[str, dict[str, list[tuple[int, str]]]]:
    """``{step: {output name: [(rows, sha256) per shard]}}`` from every committed manifest."""
    found = {}
    for step in filter(STEP.match, fs.listdir(output)):
        manifest = fs.join(output, step, "_manifest.json")
        if fs.exists(manifest):
            outputs = json.loads(fs.read_bytes(manifest))["outputs"]
            found[step] = {name: [(s["rows"], s["sha256"]) for s in entry["shards"]]
                           for name, entry in sorted(outputs.items())}
    return found


def near_duplicates(docs: list[dict], n: int, seed: int = 0) -> list[dict]:
    """Copies of ``n`` documents with one word changed: what MinHash should remove."""
    rng = random.Random(seed)
    copies = []
    for doc in rng.sample(docs, n):
        words = doc["text"].split(" ")
        words[rng.randrange(len(words))] = "changed"
        copies.append({"id": f"{doc['id']}-copy", "text": " ".join(words)})
    return copies


def write_jsonl(path: Path, docs: list[dict]) -> None:
    path.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")


@pytest.fixture(scope="module")
def inputs(s3, private_tmp, shared_data) -> dict[str, tuple[Path, str]]:
    """Real-text inputs as local files (for local[2]) and as objects in the bucket (for the cluster)."""
    from curate.io.localdocs import write_local_docs

    docs = private_tmp / "local-docs.jsonl"
    write_local_docs(docs, limit=300)
    lines = (shared_data / "corpora" / "wikitext2.jsonl").read_text(encoding="utf-8").splitlines()
    wiki = [json.loads(line) for line in lines[:60]]  # 60 articles: enough shards and pairs, half the embedding
    write_jsonl(private_tmp / "wiki.jsonl", wiki + near_duplicates(wiki, 8))
    found = {}
    for name in ("local-docs.jsonl", "wiki.jsonl"):
        uri = s3_uri("inputs", name)
        fs.write_bytes(uri, (private_tmp / name).read_bytes())
        found[name] = (private_tmp / name, uri)
    (private_tmp / "dedup_order.yaml").write_text(DEDUP_ORDER)
    return found


def local_reference(spark, pipeline: Path, local_input: Path, out: Path) -> dict:
    run_pipeline(pipeline, input=str(local_input), output=str(out), spark=spark, log=lambda m: None)
    return shard_digests(str(out))


def wait_for(condition, run, what: str, timeout: float = 900.0) -> None:
    deadline = time.time() + timeout
    while not condition():
        if run.proc.poll() is not None:
            code, err = run.wait()
            pytest.fail(f"curate exited with {code} before {what}:\n{err[-3000:]}")
        if time.time() > deadline:
            run.kill()
            pytest.fail(f"no {what} after {timeout:.0f} s")
        time.sleep(0.5)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_workers_are_separate_users_that_cannot_see_the_driver_disk(cluster, private_tmp, check_isolated):
    workers = cluster.status()["workers"]
    assert [(w["state"], w["cores"]) for w in workers] == [("ALIVE", 1), ("ALIVE", 1)]
    check_isolated(private_tmp)


def test_quickstart_from_s3_to_s3_on_the_cluster_matches_local_and_refuses_a_second_run(
        spark, curate_on_cluster, inputs, private_tmp):
    local_input, s3_input = inputs["local-docs.jsonl"]
    expected = local_reference(spark, QUICKSTART, local_input, private_tmp / "quickstart-local")
    assert set(expected) == {"00-read", "01-exact_dedup", "02-score", "03-select", "04-minhash_dedup", "final"}

    out = s3_uri("runs", "quickstart")
    first = curate_on_cluster("run", str(QUICKSTART), "--input", s3_input, "--output", out)
    wait_for(lambda: describe_holder(out) is not None, first, "lease on the output")
    second = curate_on_cluster("run", str(QUICKSTART), "--input", s3_input, "--output", out, master="local[1]")
    code, err = second.wait(timeout=180)
    assert code == 2, err[-3000:]
    assert len(error_lines(err)) == 1, err[-3000:]
    line = error_lines(err)[0]
    assert line.startswith(f"error: {out} is being written by ") and f" pid {first.proc.pid} since " in line
    assert "pass --take-over" in line

    code, err = first.wait()
    assert code == 0, err[-3000:]
    assert shard_digests(out) == expected
    assert describe_holder(out) is None  # released at the end


def test_minhash_and_knn_order_killed_mid_stage_then_rerun_match_local(
        spark, curate_on_cluster, inputs, private_tmp):
    pipeline = private_tmp / "dedup_order.yaml"
    local_input, s3_input = inputs["wiki.jsonl"]
    expected = local_reference(spark, pipeline, local_input, private_tmp / "dedup-order-local")
    assert set(expected) == {"00-read", "01-minhash_dedup", "02-knn_order", "final"}
    assert len(expected["01-minhash_dedup"]["rejected"]) >= 1  # the near-duplicate copies

    out = s3_uri("runs", "dedup-order")
    killed = curate_on_cluster("run", str(pipeline), "--input", s3_input, "--output", out)
    wait_for(lambda: fs.exists(fs.join(out, "00-read", "_manifest.json")), killed, "first stage manifest")
    killed.kill()
    assert "final" not in shard_digests(out)

    rerun = curate_on_cluster("run", str(pipeline), "--input", s3_input, "--output", out)
    code, err = rerun.wait()
    assert code == 0, err[-3000:]
    assert shard_digests(out) == expected
