"""Same input + config ⇒ byte-identical shards, whatever the master, partitioning or file layout."""
from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import tree_digest

from curate.engine.runner import run_pipeline

STAGES = ["exact_dedup", {"sample": {"fraction": 0.7}}, {"head": {"n": 400}}]


def _docs(n: int = 900) -> list[dict]:
    rng = random.Random(5)
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()
    docs = []
    for i in range(n):
        text = " ".join(rng.choice(words) for _ in range(rng.randint(3, 40)))
        docs.append({"id": f"doc-{i:04d}", "text": text if i % 10 else "the same text",
                     "source": ["web", "books", "code"][i % 3], "url": f"https://example.org/{i}"})
    return docs


def _write(path: Path, docs: list[dict]) -> None:
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))


def _yaml(tmp: Path, inp: Path, out: Path) -> Path:
    path = tmp / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump({"name": "det", "input": str(inp), "output": str(out), "seed": 11,
                                    "stages": STAGES}))
    return path


def _run_subprocess(yaml_path: Path, master: str) -> None:
    out = subprocess.run([sys.executable, "-m", "curate", "run", str(yaml_path), "--master", master],
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout + out.stderr


def _data_digest(out: Path) -> dict[str, str]:
    return {k: v for k, v in tree_digest(out).items() if not k.startswith("_quarantine")}


@pytest.fixture(scope="module")
def reference(spark, tmp_path_factory):
    """The local[2] run on a single input file."""
    tmp = tmp_path_factory.mktemp("det")
    docs = _docs()
    _write(tmp / "single.jsonl", docs)
    spread = tmp / "spread"
    spread.mkdir()
    shuffled = docs[:]
    random.Random(1).shuffle(shuffled)
    for k in range(3):
        _write(spread / f"part-{k}.jsonl", shuffled[k::3])
    run_pipeline({"name": "det", "input": str(tmp / "single.jsonl"), "output": str(tmp / "ref"), "seed": 11,
                  "stages": STAGES}, spark=spark, log=lambda m: None)
    return tmp


def test_reference_has_several_shards_worth_checking(reference):
    digest = _data_digest(reference / "ref")
    assert any(k.startswith("01-exact_dedup/rejected/") for k in digest)
    assert any(k.startswith("final/data/") for k in digest)


def test_shuffled_rows_across_files_give_identical_bytes(spark, reference):
    run_pipeline({"name": "det", "input": str(reference / "spread"), "output": str(reference / "spread-out"),
                  "seed": 11, "stages": STAGES}, spark=spark, log=lambda m: None)
    assert _data_digest(reference / "spread-out") == _data_digest(reference / "ref")


def test_more_shuffle_partitions_give_identical_bytes(spark, reference):
    old = spark.conf.get("spark.sql.shuffle.partitions")
    spark.conf.set("spark.sql.shuffle.partitions", "13")
    try:
        run_pipeline({"name": "det", "input": str(reference / "single.jsonl"), "output": str(reference / "p13"),
                      "seed": 11, "stages": STAGES}, spark=spark, log=lambda m: None)
    finally:
        spark.conf.set("spark.sql.shuffle.partitions", old)
    assert _data_digest(reference / "p13") == _data_digest(reference / "ref")


@pytest.mark.slow
@pytest.mark.cluster
def test_local_cluster_gives_identical_bytes(reference):
    """Separate executor JVMs: nothing may rely on driver-local state."""
    _run_subprocess(_yaml(reference, reference / "spread", reference / "cluster"), "local-cluster[2,1,1024]")
    assert _data_digest(reference / "cluster") == _data_digest(reference / "ref")


@pytest.mark.slow
def test_spark_submit_on_local1_gives_identical_bytes(reference):
    """The same pipeline through spark-submit (its --master wins) on one core writes the same bytes.

    One subprocess checks both: the spark-submit launch path, and local[1] (one task at a time,
    a different partitioning from the local[2] reference)."""
    import curate

    main_py = Path(curate.__file__).with_name("__main__.py")
    submit = Path(sys.executable).with_name("spark-submit")
    yaml_path = _yaml(reference, reference / "single.jsonl", reference / "submitted")
    out = subprocess.run([str(submit), "--master", "local[1]", str(main_py), "run", str(yaml_path)],
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert _data_digest(reference / "submitted") == _data_digest(reference / "ref")
