"""`domain_label` on real text: from a column, URL host rules, k-means of an embedding column and an
hf_classify struct; documents and tokens per domain in the stats."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from helpers import read_jsonl

from curate.core import CurateError, get_stage
from curate.mixture import domains

CORPORA = {"news": "reuters21578.jsonl.gz", "code_docs": "python_docs.jsonl", "reviews": "nltk_movie_reviews.jsonl"}


def lsa_embeddings(texts: list[str], dim: int = 4) -> np.ndarray:
    """A real-text embedding with no model: TF-IDF of words, reduced by SVD (latent semantic analysis)."""
    docs = [re.findall(r"[a-z]{3,}", t.lower()) for t in texts]
    vocab = {w: i for i, w in enumerate(sorted({w for d in docs for w in d}))}
    counts = np.zeros((len(docs), len(vocab)))
    for i, d in enumerate(docs):
        for w in d:
            counts[i, vocab[w]] += 1
    tfidf = np.log1p(counts) * np.log(len(docs) / (counts > 0).sum(0))
    u, s, _ = np.linalg.svd(tfidf, full_matrices=False)
    return u[:, :dim] * s[:dim]


@pytest.fixture(scope="module")
def docs(shared_data):
    rows = []
    for domain, name in CORPORA.items():
        for r in read_jsonl(shared_data / "corpora" / name, limit=12):
            text = r["text"][:1500]
            rows.append({"id": r["id"], "text": text, "source": domain,
                         "url": f"https://www.{domain.replace('_', '-')}.example.org/{r['id']}"})
    return rows


@pytest.fixture(scope="module")
def embedded(docs):
    """News and code docs with an embedding: k-means on 24 points needs two well-separated corpora."""
    two = [r for r in docs if r["source"] != "reviews"]
    return [{**r, "embedding": v.tolist()} for r, v in zip(two, lsa_embeddings([r["text"] for r in two]))]


def run(spark, stage_ctx, rows, schema=None, **params):
    spec = get_stage("domain_label")
    out = spec.fn(spark.createDataFrame(rows, schema), stage_ctx(seed=7), **spec.validate(params))
    kept = out.kept
    return {r["id"]: r for r in (r.asDict() for r in kept.collect())}, out.stats(kept, None)


def test_domain_from_a_column_counts_documents_and_tokens(spark, stage_ctx, docs):
    labelled, stats = run(spark, stage_ctx, docs, column="source")
    assert all(r["domain"] == r["source"] for r in labelled.values())
    words = {d: sum(len(r["text"].split()) for r in docs if r["source"] == d) for d in CORPORA}
    assert stats["domains"] == {d: {"documents": 12, "tokens": words[d]} for d in sorted(CORPORA)}


def test_domain_from_url_host_rules_first_match_wins_and_default(spark, stage_ctx, docs):
    rows = docs[:13] + [{**docs[13], "url": None}]
    labelled, stats = run(spark, stage_ctx, rows, rules={"wire": ["news.example.org"], "docs": "*.code-docs.*",
                                                         "all": ["example.org"]}, default="unknown")
    assert {r["domain"] for r in labelled.values() if r["source"] == "news"} == {"wire"}
    assert labelled[docs[12]["id"]]["domain"] == "docs"
    assert labelled[docs[13]["id"]]["domain"] == "unknown"
    assert stats["domains"]["wire"]["documents"] == 12


def test_host_patterns():
    assert domains.host_matches("www.bbc.co.uk", "bbc.co.uk") and not domains.host_matches("notbbc.co.uk", "bbc.co.uk")
    assert domains.host_matches("data.nasa.gov", "*.gov") and not domains.host_matches("gov.uk", "*.gov")
    assert domains.url_host("HTTPS://WWW.Example.ORG./a") == "www.example.org" and domains.url_host("nope") is None


def test_domain_from_kmeans_of_embeddings_separates_corpora_and_names_terms(spark, stage_ctx, embedded):
    labelled, stats = run(spark, stage_ctx, embedded, embedding_column="embedding", clusters=2, top_terms=5)
    by_source = {d: {r["domain"] for r in labelled.values() if r["source"] == d} for d in ("news", "code_docs")}
    assert all(len(names) == 1 for names in by_source.values()), by_source  # each corpus is one cluster
    assert sorted(n for (n,) in by_source.values()) == ["cluster_00", "cluster_01"]
    (news,), (code,) = by_source["news"], by_source["code_docs"]
    assert stats["domains"][news]["documents"] == stats["domains"][code]["documents"] == 12
    assert len(stats["domains"][code]["top_terms"]) == 5, stats
    assert {"mln", "said", "pct"} & set(stats["domains"][news]["top_terms"]), stats
    # the run report shows each cluster with its documents, tokens and top terms
    from curate.report.data import Step, domain_summaries
    from curate.report.html import domain_section

    page = domain_section(domain_summaries([Step("03-domain_label", Path("."), {"stage": "domain_label",
                                                                                "stats": stats})]))
    row = page.split(f'data-row="{news}">')[1].split("</tr>")[0]
    assert ">12<" in row and " ".join(stats["domains"][news]["top_terms"]) in row
    assert 'id="domains-03-domain_label"' in page and "from embedding_column" in page


def test_domain_from_an_hf_classify_label(spark, stage_ctx, docs):
    rows = [(r["id"], r["text"], (0.9, "positive" if i % 2 else "negative", [0.1, 0.9])) for i, r in enumerate(docs)]
    schema = "id string, text string, hf_classify struct<score: double, label: string, probs: array<float>>"
    labelled, stats = run(spark, stage_ctx, rows, schema, classifier="hf_classify")
    assert {r["domain"] for r in labelled.values()} == {"positive", "negative"}
    assert stats["domains"]["positive"]["documents"] == 18


def test_bad_parameters_fail_in_one_line(spark, stage_ctx, docs):
    with pytest.raises(CurateError, match="exactly one of"):
        run(spark, stage_ctx, docs, column="source", classifier="x")
    with pytest.raises(CurateError, match="classifier 'source' must be an hf_classify struct"):
        run(spark, stage_ctx, docs, classifier="source")
    with pytest.raises(CurateError, match="column 'nope' not found"):
        run(spark, stage_ctx, docs, column="nope")
