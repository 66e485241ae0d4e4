"""Issue 19's end-to-end pipeline, this checkout against an earlier commit, in one run.

    git worktree add /tmp/base 8005ba3          # the commit issue 19 measured ("today")
    .venv/bin/python bench/e2e.py --docs 100000 --baseline /tmp/base

Builds (once, under bench/_data/e2e-<docs>/) ``--docs`` web-like documents of ~4 KB, each packed
from real paragraphs of ../shared/data drawn at random (the sources of bench/decontam.py), 8% of
them exact copies and 8% edited near copies (bench/dedup_corpus.near_copy), shuffled into 8 JSONL
files. Then runs
``curate run`` of read -> score [gopher_quality, gopher_repetition, c4, fineweb] -> select ->
minhash_dedup on Spark local[2], alternating this checkout and ``--baseline`` (its code first on
PYTHONPATH) for ``--rounds`` rounds, each in a fresh process and output directory. Reports each
step's seconds (from its manifest), wall seconds, CPU seconds of the whole machine (/proc/stat:
run it on an otherwise idle machine), MB/s per core, the peak resident memory of the largest
process so far (the driver or its JVM: ``ru_maxrss`` of waited descendants), and the ratio
baseline / this checkout.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from dedup_corpus import near_copy, read_corpus  # noqa: E402

PIPELINE = """\
name: e2e
input: {input}
output: {output}
seed: 0
stages:
  - score: [gopher_quality, gopher_repetition, c4, fineweb]
  - select: {{}}
  - minhash_dedup: {{}}
"""
FILES = 8


def packed_documents(count: int, rng: random.Random, chars: int = 4000) -> list[str]:
    """``count`` documents of about ``chars`` characters, each packed from paragraphs drawn at
    random from the shared corpora: the pool (~60 MB) is far smaller than 100k documents, so
    packing it in order would repeat runs of paragraphs and make most documents near copies."""
    from decontam import DATA, SOURCES

    paragraphs = sorted({p.strip() for name in SOURCES for row in read_corpus(DATA, name)
                         for p in row["text"].split("\n\n") if len(p.strip()) > 40})
    docs = []
    for _ in range(count):
        parts, size = [], 0
        while size < chars:
            parts.append(rng.choice(paragraphs))
            size += len(parts[-1]) + 2
        docs.append("\n\n".join(parts)[:chars])
    return docs


def build_corpus(out: Path, docs: int, seed: int = 0) -> float:
    """Write the corpus (unless there) and return its size in MB."""
    if not (out / "done").exists():
        rng = random.Random(seed)
        copies = round(0.08 * docs)
        originals = packed_documents(docs - 2 * copies, rng)
        rows = [{"id": f"doc-{i:07d}", "text": t} for i, t in enumerate(originals)]
        for kind, rate in (("exact", 0.0), ("near", 0.08)):
            for i in rng.sample(range(len(originals)), copies):
                text = originals[i] if kind == "exact" else near_copy(originals[i], rate, rng)
                rows.append({"id": f"doc-{i:07d}-{kind}", "text": text})
        rng.shuffle(rows)
        out.mkdir(parents=True, exist_ok=True)
        for k in range(FILES):
            with open(out / f"part-{k}.jsonl", "w", encoding="utf-8") as fh:
                fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows[k::FILES])
        (out / "done").write_text(str(len(rows)))
    return sum(p.stat().st_size for p in out.glob("part-*.jsonl")) / 1e6


def busy_seconds() -> float:
    """CPU seconds the whole machine has been busy since boot (every state but idle and iowait)."""
    with open("/proc/stat") as fh:
        ticks = [int(x) for x in fh.readline().split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def run_once(code: Path, corpus: Path, out: Path) -> dict:
    """One ``curate run`` of the pipeline with ``code`` first on PYTHONPATH: step seconds, wall, CPU."""
    out.mkdir(parents=True)
    yaml_path = out / "e2e.yaml"
    yaml_path.write_text(PIPELINE.format(input=corpus, output=out / "run"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(code), os.environ.get("PYTHONPATH")])),
           "PYSPARK_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1"}
    cpu0, t0 = busy_seconds(), time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "curate", "run", str(yaml_path), "--master", "local[2]"],
                          cwd=code, env=env, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - t0, busy_seconds() - cpu0
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # so far, any one process
    if done.returncode != 0:
        raise SystemExit(f"curate run failed in {code}:\n{done.stderr[-3000:]}")
    steps = {}
    for manifest in sorted((out / "run").glob("*/_manifest.json")):
        m = json.loads(manifest.read_text())
        if "timings" in m:  # a step, not the quarantine
            steps[manifest.parent.name] = (m["timings"]["seconds"], m["stats"].get("rows_out"))
    return {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "steps": steps, "peak_rss_mb": round(peak_mb)}


def report(name: str, mb: float, runs: list[dict]) -> dict:
    best = min(runs, key=lambda r: r["wall_s"])
    print(f"{name}: best of {len(runs)} wall {best['wall_s']} s, CPU {best['cpu_s']} s, "
          f"{mb / best['cpu_s']:.2f} MB/s per core, largest process so far {best['peak_rss_mb']} MB "
          f"(all walls: {[r['wall_s'] for r in runs]})")
    for step, (seconds, rows) in best["steps"].items():
        per_core = mb / max(seconds, 1e-9) / 2
        print(f"    {step:<20} {seconds:7.1f} s  {rows} rows out  {per_core:6.1f} MB/s per core (wall)")
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--baseline", type=Path, help="a worktree of an earlier commit to run side by side")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--work", type=Path, default=Path("/tmp/curate-e2e"))
    args = ap.parse_args()
    corpus = HERE / "_data" / f"e2e-{args.docs}"
    mb = build_corpus(corpus, args.docs)
    print(f"corpus: {(corpus / 'done').read_text()} documents, {mb:.0f} MB in {FILES} files ({corpus})")
    codes = {"this checkout": REPO, **({"baseline": args.baseline.resolve()} if args.baseline else {})}
    results: dict[str, list[dict]] = {name: [] for name in codes}
    for r in range(args.rounds):
        for name, code in codes.items():
            out = args.work / f"{name.replace(' ', '-')}-{r}-{int(time.time())}"
            results[name].append(run_once(code, corpus, out))
            print(f"round {r + 1} {name}: {results[name][-1]['wall_s']} s wall, {results[name][-1]['cpu_s']} CPU s",
                  flush=True)
    best = {name: report(name, mb, runs) for name, runs in results.items()}
    if "baseline" in best:
        new, old = best["this checkout"], best["baseline"]
        print(f"baseline / this checkout: wall {old['wall_s'] / new['wall_s']:.2f}x, "
              f"CPU {old['cpu_s'] / new['cpu_s']:.2f}x")


if __name__ == "__main__":
    main()
