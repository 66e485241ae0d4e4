"""`curate ablate` at toy scale: two real selections, one tokenizer, same token budget, one table."""
from __future__ import annotations

import json

from click.testing import CliRunner
from helpers import read_jsonl

from curate.train.ablate import markdown_table


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps({"id": r["id"], "text": r["text"][:3000]}) + "\n" for r in rows))
    return path


def test_ablation_trains_each_selection_on_the_same_budget(shared_data, tmp_path):
    from curate.cli import main

    news = write_jsonl(tmp_path / "news.jsonl",
                       read_jsonl(shared_data / "corpora" / "reuters21578.jsonl.gz", limit=150))
    wiki = write_jsonl(tmp_path / "wiki.jsonl", read_jsonl(shared_data / "corpora" / "wikitext2.jsonl", limit=12))
    held = write_jsonl(tmp_path / "held.jsonl", read_jsonl(shared_data / "corpora" / "enwiki_gensim.jsonl", limit=4))
    copa = shared_data / "benchmarks" / "copa.jsonl"
    (tmp_path / "ablate.yaml").write_text(f"""
seed: 0
token_budget: 6000
max_epochs: 4
tokenizer: {{vocab_size: 400}}
heldout: {held}
selections: {{news: {news}, wiki: {wiki}}}
train:
  device: cpu
  cpu_threads: 1
  model: {{n_layer: 1, n_head: 2, d_model: 32, context: 32}}
  optim: {{lr: 0.01, min_lr: 0.001, warmup_steps: 2}}
  batch: {{micro_batch: 8}}
  eval: {{benchmarks: [{copa}], max_examples: 40, heldout_batches: 4}}
  log: {{every: 5, progress: false}}
""")
    result = CliRunner().invoke(main, ["ablate", str(tmp_path / "ablate.yaml"), "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [r["selection"] for r in rows] == ["news", "wiki"]
    assert all(r["train_tokens"] == 23 * 8 * 32 for r in rows)  # 6000 // 256 steps each
    assert all(3.0 < r["heldout_loss"] < 6.5 and 0 <= r["copa/acc"] <= 1 for r in rows)
    assert rows[0]["heldout_loss"] != rows[1]["heldout_loss"]
    assert "| news |" in (tmp_path / "out" / "results.md").read_text()
    assert (tmp_path / "out" / "results.png").stat().st_size > 1000
    for name in ("news", "wiki"):
        log = (tmp_path / "out" / name / "run" / "log.jsonl").read_text().splitlines()
        assert json.loads(log[-1])["step"] == 23


def test_markdown_table_formats_numbers():
    table = markdown_table([{"selection": "a", "train_tokens": 1000, "heldout_loss": 3.14159}])
    assert "| a | 1,000 | 3.1416 |" in table
