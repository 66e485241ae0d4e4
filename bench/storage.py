"""Object-storage overhead: the quickstart pipeline on local files vs on a local S3-API server.

    .venv/bin/python bench/storage.py --docs 100000

Builds (from ../shared/data, never copied into the repository) a web-like JSONL corpus of about
``--docs`` documents in 8 files under bench/_data/storage-<docs>/: real documents, edited
near-copies of most of them (bench/dedup_corpus.py's builder) and exact copies of a few, shuffled.
Then, in one run, each in a fresh ``curate run`` subprocess (its own JVM) on ``--master``:

  (a) ``local``: pipelines/quickstart.yaml (exact_dedup -> score -> select -> minhash_dedup),
      local input files -> a local output directory;
  (b) ``s3``: the same files uploaded to moto's S3 server on 127.0.0.1 (tests/s3server.py: its own
      process, standard AWS_* variables) -> an ``s3://`` output on that server.

Reports each stage's seconds (from its manifest's ``timings``), the sum, the subprocess wall
time and CPU seconds (the curate process tree; the S3 server's own CPU separately), and the
S3/local ratio of each. Fails (exit 1) unless every committed manifest lists the same shards
(file, rows, sha256) in both runs.

moto keeps objects in memory, in Python, behind a single HTTP server: a pessimistic stand-in for
the HTTP and serialisation cost of an object store, not for S3's network latency.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(HERE), str(REPO / "tests"), str(REPO)]

import dedup_corpus  # noqa: E402
import s3server  # noqa: E402
from proctime import tree_cpu_seconds  # noqa: E402

from curate.io import fs  # noqa: E402

SHARED = Path(os.environ.get("SHARED_DATA_DIR", REPO.parent / "shared" / "data"))
PIPELINE = REPO / "pipelines" / "quickstart.yaml"
FILES = 8
COPIES, COPY_FRACTION, EXACT_FRACTION = 4, 0.8, 0.05
STEP = re.compile(r"^(\d\d-.+|final)$")


def build_corpus(n_docs: int, seed: int = 0) -> list[dict]:
    """About ``n_docs`` documents: sources, near-copies (``<id>~k``) and exact copies (``<id>=dup``).

    Capped by the shared corpora: at most ~23.7k sources of >= 30 words, i.e. ~105k documents.
    """
    n_sources = round(n_docs / (1 + COPIES * COPY_FRACTION) / (1 + EXACT_FRACTION))
    docs = dedup_corpus.build(SHARED, n_sources, COPIES, COPY_FRACTION, seed=seed)
    rng = random.Random(seed)
    docs += [{"id": f"{d['id']}=dup", "text": d["text"]} for d in rng.sample(docs, round(EXACT_FRACTION * len(docs)))]
    rng.shuffle(docs)
    return docs


def write_corpus(docs: list[dict], path: Path) -> list[Path]:
    """``docs`` round-robin into ``FILES`` JSONL files under ``path`` (replacing what was there)."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    files = []
    for k in range(FILES):
        f = path / f"part-{k}.jsonl"
        f.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs[k::FILES]), encoding="utf-8")
        files.append(f)
    return files


def upload(files: list[Path], prefix: str) -> float:
    """Put every file under ``prefix``; the seconds it took."""
    t0 = time.perf_counter()
    for f in files:
        fs.write_bytes(fs.join(prefix, f.name), f.read_bytes())
    return time.perf_counter() - t0


def read_manifests(output: str) -> dict[str, dict]:
    """``{step: {"seconds": s, "shards": {output: [(file, rows, sha256)]}}}`` of every committed step."""
    found = {}
    for step in filter(STEP.match, fs.listdir(output)):
        path = fs.join(output, step, "_manifest.json")
        if not fs.exists(path):
            continue
        manifest = json.loads(fs.read_bytes(path))
        found[step] = {"seconds": manifest.get("timings", {}).get("seconds"),
                       "shards": {name: [(s["file"], s["rows"], s["sha256"]) for s in entry["shards"]]
                                  for name, entry in sorted(manifest["outputs"].items())}}
    return found


def tree_cpu_polled(proc: subprocess.Popen, every: float = 1.0) -> float:
    """CPU seconds of ``proc``'s process tree (driver, JVM, Python workers), sampled until it exits.

    The JVM is not reaped by the driver, so rusage of children misses it; the last sample taken
    while the tree was alive is the figure (at most ``every`` seconds of shutdown are missed).
    """
    last = 0.0
    while proc.poll() is None:
        last = max(last, sum(tree_cpu_seconds(proc.pid).values()))
        time.sleep(every)
    return last


def curate_run(input_uri: str, output: str, master: str, server_pid: int | None) -> dict:
    """One ``curate run`` of the quickstart pipeline in a fresh process: wall, CPU, per-stage seconds."""
    cmd = [sys.executable, "-m", "curate", "run", str(PIPELINE), "--input", input_uri, "--output", output,
           "--master", master]
    server0 = sum(tree_cpu_seconds(server_pid).values()) if server_pid else 0.0
    load0, t0 = os.getloadavg()[0], time.perf_counter()
    with open(os.devnull, "w") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=err, text=True)
        cpu = tree_cpu_polled(proc)
        wall = time.perf_counter() - t0
        err.seek(0)
        stderr = err.read()
    if proc.returncode != 0:
        sys.exit(f"curate run failed ({proc.returncode}): {' '.join(cmd)}\n{stderr[-4000:]}")
    steps = read_manifests(output)
    return {"command": " ".join(cmd[1:]), "wall_s": round(wall, 1),
            "cpu_s": round(cpu, 1),
            "server_cpu_s": round(sum(tree_cpu_seconds(server_pid).values()) - server0, 1) if server_pid else None,
            "stages_s": round(sum(s["seconds"] or 0 for s in steps.values()), 1),
            "load_before": round(load0, 1), "load_after": round(os.getloadavg()[0], 1), "steps": steps}


def ratio(a, b) -> float | None:
    return round(a / b, 2) if a and b else None


def compare(local: dict, s3: dict) -> list[str]:
    """Steps whose shard listings differ between the two runs (missing steps included)."""
    return [step for step in sorted(set(local["steps"]) | set(s3["steps"]))
            if local["steps"].get(step, {}).get("shards") != s3["steps"].get(step, {}).get("shards")]


def summed(results: list[dict]) -> dict:
    """The runs of one kind added up: seconds per step, sum of stages, wall, CPU."""
    steps = {step: {"seconds": round(sum(r["steps"][step]["seconds"] or 0 for r in results), 3)}
             for step in results[0]["steps"]}
    return {"steps": steps, **{k: round(sum(r[k] for r in results), 1) for k in ("stages_s", "wall_s", "cpu_s")}}


def table(local: dict, s3: dict) -> str:
    rows = ["| step | local s | S3 s | S3 / local |", "|---|---:|---:|---:|"]
    for step in sorted(local["steps"]):
        a, b = local["steps"][step]["seconds"], s3["steps"].get(step, {}).get("seconds")
        rows.append(f"| {step} | {a} | {b} | {ratio(b, a)} |")
    for key, label in (("stages_s", "sum of stages"), ("wall_s", "process wall"), ("cpu_s", "process CPU")):
        rows.append(f"| **{label}** | {local[key]} | {s3[key]} | **{ratio(s3[key], local[key])}** |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--rounds", type=int, default=1, help="rounds of (local, S3), alternate rounds in the "
                    "reverse order")
    args = ap.parse_args()
    work = HERE / "_data" / f"storage-{args.docs}"
    docs = build_corpus(args.docs)
    files = write_corpus(docs, work / "input")
    size = sum(f.stat().st_size for f in files)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=REPO).stdout.strip()
    print(f"commit {commit}: {len(docs)} docs, {FILES} files, {size / 1e6:.1f} MB, master {args.master}, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}", flush=True)

    endpoint = s3server.start()  # sets AWS_* in this process; curate inherits them
    server = s3server._server["proc"].pid
    prefix = f"s3://{s3server.BUCKET}/storage-{args.docs}"
    upload_s = upload(files, f"{prefix}/input")
    print(f"uploaded to {endpoint} in {upload_s:.1f} s", flush=True)
    runs: dict[str, list[dict]] = {"local": [], "s3": []}
    for k in range(args.rounds):
        for kind in (("local", "s3") if k % 2 == 0 else ("s3", "local")):  # ABBA: drift in load cancels
            if kind == "local":
                out = str(work / f"out-{k}")
                shutil.rmtree(out, ignore_errors=True)
                result = curate_run(str(work / "input"), out, args.master, None)
            else:
                out = f"{prefix}/out-{k}"
                result = curate_run(f"{prefix}/input", out, args.master, server)
                fs.remove(out, recursive=True)  # moto holds every object in memory
            runs[kind].append(result)
            print(json.dumps({"round": k, "kind": kind, **{x: v for x, v in result.items() if x != "steps"}}),
                  flush=True)
    s3server.stop()

    reference = runs["local"][0]
    differing = sorted({step for r in runs["local"][1:] + runs["s3"] for step in compare(reference, r)})
    local, s3 = summed(runs["local"]), summed(runs["s3"])
    report = {"commit": commit, "docs": len(docs), "files": FILES, "bytes": size, "master": args.master,
              "rounds": args.rounds, "upload_s": round(upload_s, 1), "runs": runs, "identical_shards": not differing}
    (work / "result.json").write_text(json.dumps(report, indent=2, default=str))
    print(f"seconds summed over {args.rounds} round(s) of each:")
    print(table(local, s3))
    kept = reference["steps"].get("final", {}).get("shards", {}).get("data", [])
    print(f"final rows: {sum(r for _, r, _ in kept)}; result: {work / 'result.json'}")
    if differing:
        sys.exit(f"FAIL: shard sha256s differ from the first local run in {differing}")
    print(f"shard sha256s identical in every committed manifest of all {2 * args.rounds} runs")


if __name__ == "__main__":
    main()
