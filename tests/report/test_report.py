"""`curate report`: the HTML report of real runs, checked through its DOM (and in headless Chromium)."""
from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser

import pytest
from click.testing import CliRunner
from helpers import manifests

from curate.cli import main
from curate.report import write_report

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars"]


class Rows(HTMLParser):
    """Collects the text of table rows carrying ``data-row`` (by table id) and of every element with an id."""

    def __init__(self):
        super().__init__()
        self.tables: dict[str, dict[str, list[str]]] = {}
        self.text: list[str] = []
        self._table, self._row, self._cell = None, None, None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self._table = a.get("id")
        elif tag == "tr" and "data-row" in a and self._table:
            self._row = a["data-row"]
            self.tables.setdefault(self._table, {})[self._row] = []
        elif tag == "td" and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self.tables[self._table][self._row].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr":
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, d):
        self.text.append(d)
        if self._cell is not None:
            self._cell.append(d)


def parse(page: str) -> Rows:
    p = Rows()
    p.feed(page)
    return p


@pytest.fixture(scope="module")
def report(quickstart, tmp_path_factory):
    path = tmp_path_factory.mktemp("report") / "quickstart.html"
    result = CliRunner().invoke(main, ["report", str(quickstart.output_dir), "-o", str(path)])
    assert result.exit_code == 0, result.output
    return path


def test_report_shows_the_funnel_sources_scores_and_duplicates(quickstart, report):
    page = report.read_text(encoding="utf-8")
    m = manifests(quickstart.output_dir)
    dom = parse(page)
    funnel = dom.tables["funnel-table"]
    assert list(funnel) == list(m)
    for step, manifest in m.items():
        st = manifest["stats"]
        assert funnel[step][1:3] == [f"{st['rows_in']:,}", f"{st['rows_out']:,}"]
    select = funnel["03-select"][-1]
    for reason, n in m["03-select"]["stats"]["rejected"].items():
        assert f"{reason}: {n:,}" in select
    # per source: the kept counts of the final step add up to the final rows
    sources = dom.tables["source-table"]
    assert {"license", "package_description", "stdlib_docstring"} <= set(sources)
    assert sum(int(r[-1].replace(",", "")) for r in sources.values()) == m["final"]["stats"]["rows_out"]
    # score histograms of every numeric field, with the select override drawn as the threshold
    scores = dom.tables["score-table"]
    assert "gopher_quality.words" in scores and "gopher_repetition.dup_5gram" in scores
    assert "min_words = 20" in scores["gopher_quality.words"][-1]
    assert scores["gopher_quality.words"][2] == f"{m['02-score']['stats']['rows_out']:,}"
    assert page.count("data-score=") == len(scores)
    assert "min_words = 20" in page.split('data-score="gopher_quality.words"')[1].split("</svg>")[0]
    # duplicate clusters of minhash_dedup
    text = " ".join(" ".join(dom.text).split())
    assert f"components {m['04-minhash_dedup']['stats']['components']:,}" in text
    # self-contained: no scripts, no external references
    assert "<script" not in page and "http-equiv" not in page and "<link" not in page
    assert 'src="http' not in page and "xlink:href=\"http" not in page


def test_report_shows_mixture_and_quarantine(spark, quickstart, tmp_path):
    """A run with malformed lines, plus a real `curate mix` output over the quickstart."""
    from curate.engine.runner import run_pipeline

    raw = tmp_path / "raw.jsonl"
    good = [json.dumps({"id": f"d{i}", "text": f"document number {i} " * 5, "source": "s"}) for i in range(4)]
    raw.write_text("\n".join([good[0], "{not json", good[1], json.dumps({"id": "no-text"}), *good[2:]]) + "\n")
    run_pipeline({"name": "q", "input": str(raw), "output": str(tmp_path / "out"), "stages": ["exact_dedup"]},
                 spark=spark, log=lambda _m: None)
    spec = tmp_path / "mix.yaml"
    spec.write_text(f"name: m\ntotal_tokens: 20000\nsources:\n  docs: {{path: {quickstart.final_dir}, weight: 1}}\n"
                    f"  tiny: {{path: {tmp_path / 'out' / 'final'}, weight: 1}}\n")
    assert CliRunner().invoke(main, ["mix", str(spec), "-o", str(tmp_path / "mix")]).exit_code == 0
    mixture = json.loads((tmp_path / "mix" / "_manifest.json").read_text())
    page = write_report(tmp_path / "out", tmp_path / "r.html", mixtures=[tmp_path / "mix"]).read_text()
    dom = parse(page)
    read = manifests(tmp_path / "out")["00-read"]["stats"]
    assert read["quarantined"] == 2
    assert f"{read['quarantined']} malformed record(s) quarantined." in " ".join(dom.text)
    assert dom.tables["funnel-table"]["00-read"][3] == "2"
    assert set(read["quarantine_reasons"]) == {"invalid_json", "missing_text"}
    assert all(f"{reason}: 1" in dom.tables["funnel-table"]["00-read"][-1] for reason in read["quarantine_reasons"])
    mix = dom.tables["mixture-table"]
    for name, src in mixture["sources"].items():
        assert mix[name][3] == f"{src['tokens']:,}" and mix[name][5] == f"{src['documents']:,}"
    assert "{not json" in page  # the quarantined line's snippet is shown (escaped)


def test_report_errors_are_one_line(tmp_path):
    result = CliRunner().invoke(main, ["report", str(tmp_path), "-o", str(tmp_path / "r.html")])
    assert result.exit_code == 2 and "no complete stages" in result.output


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium not installed (apt-get install -y chromium chromium-driver)")
def test_report_renders_in_headless_chromium(quickstart, report, tmp_path):
    """Chromium lays the page out (PNG screenshot) and its DOM shows the run's numbers."""
    from PIL import Image

    profile = tmp_path / "profile"
    base = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}"]
    dom = subprocess.run([*base, "--dump-dom", report.as_uri()], capture_output=True, text=True, timeout=180)
    assert dom.returncode == 0, dom.stderr[-2000:]
    rows = parse(dom.stdout).tables["funnel-table"]
    final = manifests(quickstart.output_dir)["final"]["stats"]["rows_out"]
    assert rows["final"][2] == f"{final:,}"
    png = tmp_path / "report.png"
    shot = subprocess.run([*base, f"--screenshot={png}", "--window-size=1280,2400", report.as_uri()],
                          capture_output=True, text=True, timeout=180)
    assert shot.returncode == 0 and png.is_file(), shot.stderr[-2000:]
    image = Image.open(png).convert("RGB")
    assert image.size == (1280, 2400)
    colours = image.getcolors(maxcolors=1 << 20) or []
    assert len(colours) > 50  # text and plots were drawn, not a blank page
