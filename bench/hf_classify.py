"""Benchmark: hf_classify docs/s per core vs a plain transformers loop on the same model and documents.

    .venv/bin/python bench/hf_classify.py [--docs 400] [--rounds 2] [--max-length 256] [--batch-size 32] [--device cpu]

The model is the bundled all-MiniLM-L6-v2 (6 layers, 22M parameters) with a fresh, seeded
2-label head (BertForSequenceClassification), saved as safetensors with its SHA256SUMS: the size
of the small quality classifiers (FineWeb-Edu's and Nemotron-CC's are 4–15x larger). Documents:
Reuters newswire (../shared/data, never copied), mixed lengths. One core: OMP/torch threads = 1,
Spark local[1]. The plain loop tokenizes each batch of ``batch_size`` documents in input order with
truncation + padding, runs the model and a softmax (what one writes by hand or what
``pipeline(..., batch_size=...)`` does). hf_classify times the warm stage (model already loaded in
the Python worker) over a DataFrame, written to Spark's ``noop`` sink; the Python path of the same
scorer (no Spark) is reported too. The three run interleaved, ``--rounds`` times; best of each.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import gzip  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from proctime import timed  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def read_texts(path: Path, limit: int) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    texts = []
    with opener(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            texts.append(json.loads(line)["text"])
            if len(texts) >= limit:
                break
    return texts


def build_model(out: Path, max_length: int) -> Path:
    """MiniLM + a seeded 2-label head, saved in HF format with a manifest."""
    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification

    from curate.quality.hf_models import write_manifest
    from curate.targeted.embedding import resolve_model_dir

    source = str(resolve_model_dir())
    torch.manual_seed(0)
    model = BertForSequenceClassification.from_pretrained(source, num_labels=2, local_files_only=True,
                                                          id2label={0: "lq", 1: "hq"}, label2id={"lq": 0, "hq": 1})
    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
    tokenizer.model_max_length = max_length
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    write_manifest(out)
    return out


def plain_loop(model_dir: Path, texts: list[str], batch_size: int, max_length: int, device: str) -> np.ndarray:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir), local_files_only=True).to(device).eval()
    probs = []
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            batch = tokenizer(texts[i:i + batch_size], truncation=True, max_length=max_length, padding=True,
                              return_tensors="pt").to(device)
            probs.append(torch.softmax(model(**batch).logits.float(), dim=-1)[:, 1].cpu().numpy())
    return np.concatenate(probs)


def main() -> None:
    import torch

    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=400)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--corpus", type=Path, default=DATA / "corpora" / "reuters21578.jsonl.gz")
    args = parser.parse_args()
    torch.set_num_threads(1)
    texts = read_texts(args.corpus, args.docs)
    results = {"docs": len(texts), "avg_chars": round(sum(map(len, texts)) / len(texts)),
               "max_length": args.max_length, "batch_size": args.batch_size, "device": args.device,
               "load_avg_1m_at_start": round(os.getloadavg()[0], 2), "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        from curate.core import StageContext
        from curate.engine.spark import get_spark
        from curate.quality.hf_classify import hf_classify
        from curate.quality.hf_models import classify_texts, load_model

        model_dir = build_model(Path(tmp) / "clf", args.max_length)
        loaded = load_model(model_dir, device=args.device)
        spark = get_spark("local[1]", {"spark.executorEnv.OMP_NUM_THREADS": "1",
                                       "spark.sql.shuffle.partitions": "1"})
        ctx = StageContext(spark, Path(tmp) / "stage")
        rows = [(f"d{i:06d}", t) for i, t in enumerate(texts)]
        df = spark.createDataFrame(rows, "id string, text string").coalesce(1).cache()
        df.count()

        def spark_run(frame):
            out = hf_classify(frame, ctx, model=str(model_dir), batch_size=args.batch_size, device=args.device)
            out.kept.write.format("noop").mode("overwrite").save()

        def plain():
            return plain_loop(model_dir, texts, args.batch_size, args.max_length, args.device)

        plain_loop(model_dir, texts[:args.batch_size], args.batch_size, args.max_length, args.device)  # warm-up
        warm = spark.createDataFrame(rows[:args.batch_size], "id string, text string").coalesce(1)
        _, cold_s = timed(lambda: spark_run(warm))  # worker start + model load (a whole run: the worker is reused)
        results["spark_first_call_s"] = round(cold_s, 2)
        best: dict[str, float] = {}
        for _ in range(args.rounds):  # interleaved, best of rounds: the machine's load varies
            for key, fn in (("plain_transformers", plain),
                            ("hf_classify_python", lambda: classify_texts(texts, loaded, batch_size=args.batch_size)),
                            ("hf_classify_spark", lambda: spark_run(df))):
                value, secs = timed(fn)
                best[key] = min(best.get(key, secs), secs)
                if key == "plain_transformers":
                    want = value
                elif key == "hf_classify_python":
                    results["max_abs_diff_vs_plain"] = float(np.abs(value["score"] - want).max())
        _, unsorted_s = timed(lambda: classify_texts(texts, loaded, batch_size=args.batch_size, layout="input"))
        best["hf_classify_python_unsorted"] = unsorted_s
        for key, secs in best.items():
            results[f"{key}_docs_per_s"] = round(len(texts) / secs, 2)
        results["ratio_spark_vs_plain"] = round(best["plain_transformers"] / best["hf_classify_spark"], 3)
        results["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
        spark.stop()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
