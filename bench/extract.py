"""HTML extraction throughput: docs/s on one core for each curate extractor, and datatrove's
WarcReader + Trafilatura on the same WARC file, in one run.

    .venv/bin/python bench/extract.py --records 600

The WARC (bench/_data/extract/pages.warc.gz) wraps the real HTML pages installed under
/usr/share/doc (Debian documentation sets: libffi, valgrind, libxslt, nodejs, python3 …),
cycled to ``--records`` responses. curate's figures are the work of one Spark task without Spark:
FastWARC reading + charset decoding (curate.io.warc.read_archive) + the extractor, in-process
(``time_limit_s: 0``) and through the time-limit sandbox (``time_limit_s: 5``, one child process).
datatrove runs in its own venv (bench/.venvs/datatrove, see /work/shared/PEERS.md) with
``LocalPipelineExecutor(tasks=1, workers=1)``: ``WarcReader`` -> ``Trafilatura(favour_precision=True,
timeout=5)``, its defaults apart from the timeout.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / "_data" / "extract"
DATATROVE = HERE / ".venvs" / "datatrove" / "bin" / "python"
DATATROVE_SCRIPT = r"""
import sys, time
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.readers import WarcReader
from datatrove.pipeline.extractors import Trafilatura
from datatrove.pipeline.base import PipelineStep

class Count(PipelineStep):
    name = "count"
    def run(self, data, rank=0, world_size=1):
        n = chars = 0
        for doc in data:
            n += 1
            chars += len(doc.text)
        print("DOCS", n, chars, flush=True)
        return iter(())

folder, logs = sys.argv[1], sys.argv[2]
start = time.perf_counter()
LocalPipelineExecutor(pipeline=[WarcReader(folder, glob_pattern="*.warc.gz"),
                                Trafilatura(favour_precision=True, timeout=5.0), Count()],
                      tasks=1, workers=1, logging_dir=logs).run()
print("SECONDS", time.perf_counter() - start, flush=True)
"""


def build_warc(records: int) -> Path:
    """The real pages under /usr/share/doc as 200 text/html responses, cycled to ``records``."""
    sys.path.insert(0, str(HERE.parent / "tests" / "web"))
    from warc_fixture import Record, write_warc

    pages = sorted(p for p in Path("/usr/share/doc").rglob("*.htm*") if p.is_file() and p.stat().st_size > 2000)
    if not pages:
        raise SystemExit("no HTML pages under /usr/share/doc")
    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / "pages.warc.gz"
    write_warc(path, [Record(f"http://example.org/{i}/{pages[i % len(pages)].name}",
                             pages[i % len(pages)].read_bytes(), content_type="text/html")
                      for i in range(records)], with_requests=False)
    return path, len(pages)


def curate_rate(path: Path, extractor: str, limit: float) -> dict:
    from curate.io.warc import read_archive
    from curate.web.extract import FACTORY, outcome_row
    from curate.web.extractors import make_extractor
    from curate.web.sandbox import Sandbox, run_inline

    config = {"extractor": extractor, "main_content": True, "language": "English"}
    start = time.perf_counter()
    docs = [(r["text"], r["url"]) for r in read_archive(str(path), path.name, "warc") if r.get("_kind") is None]
    read_s = time.perf_counter() - start
    if limit:
        with Sandbox(FACTORY, config, limit, size=lambda item: len(item[0])) as box:
            outcomes = box.map(docs)
    else:
        outcomes = run_inline(make_extractor(config), docs)
    seconds = time.perf_counter() - start
    rows = [outcome_row(o, 1) for o in outcomes]
    kept = [r for r in rows if r[2] is None]
    return {"tool": f"curate {extractor}" + (f" (sandbox, {limit:g} s limit)" if limit else " (in-process)"),
            "docs": len(docs), "kept": len(kept), "chars": sum(len(r[0]) for r in kept),
            "read_s": round(read_s, 2), "seconds": round(seconds, 2), "docs_per_s": round(len(docs) / seconds, 1)}


def datatrove_rate(path: Path, records: int) -> dict:
    if not DATATROVE.exists():
        return {"tool": "datatrove WarcReader + Trafilatura", "error": f"no venv at {DATATROVE}"}
    logs = DATA / "datatrove-logs"
    subprocess.run(["rm", "-rf", str(logs)], check=True)
    proc = subprocess.run([str(DATATROVE), "-c", DATATROVE_SCRIPT, str(path.parent), str(logs)],
                          capture_output=True, text=True)
    lines = {ln.split()[0]: ln.split()[1:] for ln in proc.stdout.splitlines() if ln.startswith(("DOCS", "SECONDS"))}
    if "SECONDS" not in lines:
        return {"tool": "datatrove WarcReader + Trafilatura", "error": proc.stderr[-500:]}
    seconds = float(lines["SECONDS"][0])
    return {"tool": "datatrove WarcReader + Trafilatura(favour_precision, timeout=5)", "docs": records,
            "kept": int(lines["DOCS"][0]), "chars": int(lines["DOCS"][1]), "seconds": round(seconds, 2),
            "docs_per_s": round(records / seconds, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=600)
    args = ap.parse_args()
    path, distinct = build_warc(args.records)
    print(json.dumps({"warc": str(path), "bytes": path.stat().st_size, "records": args.records,
                      "distinct_pages": distinct}))
    runs = [("resiliparse", 0), ("resiliparse", 5.0), ("trafilatura", 0), ("trafilatura", 5.0), ("justext", 0)]
    for extractor, limit in runs:
        print(json.dumps(curate_rate(path, extractor, limit)), flush=True)
    print(json.dumps(datatrove_rate(path, args.records)), flush=True)


if __name__ == "__main__":
    main()
