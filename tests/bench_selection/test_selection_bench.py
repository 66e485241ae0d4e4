"""The selection benchmark (bench/selection) end to end on its smoke preset, and its held-out guard."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # bench/ is not an installed package
    sys.path.insert(0, str(REPO))

from bench.selection.leak import LeakError, assert_no_leak, find_leaks, text_key  # noqa: E402
from bench.selection.presets import SMOKE  # noqa: E402


@pytest.fixture(scope="module")
def smoke(spark, shared_data, tmp_path_factory):
    from bench.selection.run import run

    out = tmp_path_factory.mktemp("selection-smoke")
    return out, run(SMOKE, out, spark=spark, seed=0, data=shared_data, log=lambda _: None)


def test_smoke_preset_table_has_every_selection_and_finite_numbers(smoke):
    out, result = smoke
    assert [s["selection"] for s in result["summary"]] == list(SMOKE.selectors)
    assert len(result["rows"]) == len(SMOKE.selectors) * len(SMOKE.seeds)
    for row in result["rows"]:
        assert row["train_tokens"] <= SMOKE.token_budget
        for metric in ("target_bpb", "heldout_loss", "bench_acc", "arc_easy/acc_norm", "piqa/acc_norm"):
            assert math.isfinite(row[metric]), (row["selection"], metric)
        assert 0.5 < row["target_bpb"] < 10 and 0 <= row["bench_acc"] <= 1
    random, dsir = result["summary"]
    assert random["target_bpb_delta"] is None and len(dsir["target_bpb_delta"]) == 2
    assert all(math.isfinite(v) for v in dsir["target_bpb_delta"])
    table = result["table"].splitlines()
    assert table[0].startswith("| selection | selected tokens | epochs | held-out target bits/byte")
    assert "Δ vs random" in table[0] and len(table) == 2 + len(SMOKE.selectors)
    assert (out / "results.csv").is_file() and (out / "results.md").read_text() == result["table"]


def test_leak_check_fires_when_a_selection_contains_heldout_text(smoke):
    from bench.selection.data import Inputs, read_pairs
    from bench.selection.run import heldout_records

    out, _ = smoke
    base = out / "inputs"
    inputs = Inputs(base / "pool.jsonl", base / "pool_heldout.jsonl", base / "target_visible.jsonl",
                    base / "target_heldout.jsonl", {}, {}, {})
    heldout = heldout_records(inputs)
    visible = read_pairs(inputs.target_visible)
    assert assert_no_leak(heldout, {"dsir": read_pairs(inputs.pool) + visible}) > len(visible)
    leaked_id, leaked_text = read_pairs(inputs.target_heldout)[0]
    with pytest.raises(LeakError, match="dsir: 1 record"):
        assert_no_leak(heldout, {"random": visible, "dsir": visible + [("copy-1", "  " + leaked_text.upper())]})


def test_find_leaks_matches_ids_and_folded_text_only():
    heldout = [("t-1", "Which gas do plants absorb?  Carbon dioxide"), ("p-9", "a held-out pool piece")]
    inputs = {"clean": [("x", "Which gas do plants absorb? Oxygen")],
              "by_text": [("y", "which gas do plants absorb?\nCARBON DIOXIDE")],
              "by_id": [("p-9", "other text")]}
    assert find_leaks(heldout, inputs) == {"by_text": ["y"], "by_id": ["p-9"]}
    assert text_key("A  b\tC") == text_key("a b c") != text_key("a bc")
