"""Stage ``domain_label``: one domain per document, the unit a training mixture is weighted by
(RegMix, Liu et al. 2024; Olmix). Four sources of the label, exactly one per stage:

- ``column``: an existing column (``source``, a crawl name, a ``quality_bucket``);
- ``rules``: ``{domain: [host pattern, ...]}`` matched against the host of ``url_column``
  (``*.gov`` globs the whole host, ``bbc.co.uk`` matches the host and its subdomains; first
  matching domain in rule order wins);
- ``embedding_column``: seeded spherical k-means over an ``embed``-stage column (FAISS, trained
  on the driver on a hash sample sorted by id), each cluster summarised by its most
  distinctive terms (class-based TF-IDF, BERTopic, Grootendorst 2022) in the stats;
- ``classifier``: the ``label`` field of an ``hf_classify`` struct column.

Documents without a label get ``default``. Stats: documents and tokens per domain (whitespace
words, or a ``tokenizer``), and for clusters their top terms.
"""
from __future__ import annotations

import functools

from curate.core import ID, TEXT, CurateError, StageContext, StageOutput, stage
from curate.io.vectors import count_and_dimension, nearest_centroid
from curate.mixture import domains

VECTOR = "_vector"
KMEANS_SAMPLE_CAP = 100_000


@stage("domain_label")
def domain_label(df, ctx: StageContext, *, column: str | None = None, rules: dict | None = None,
                 url_column: str = "url", embedding_column: str | None = None, clusters: int = 8,
                 classifier: str | None = None, name: str = "domain", default: str = "other",
                 tokenizer: str | None = None, top_terms: int = 10, kmeans_iterations: int = 20) -> StageOutput:
    """Label each document's domain: a column, URL host rules, embedding k-means or an hf_classify label.

    Writes column ``name``; stats: documents and tokens per domain (mixture weights are per
    domain, RegMix, Liu et al. 2024).

    Give exactly one of ``column``, ``rules`` (``{domain: [host pattern, ...]}`` on ``url_column``),
    ``embedding_column`` (``clusters`` seeded k-means clusters named ``cluster_NN``, each with its
    ``top_terms`` in the stats) or ``classifier`` (an ``hf_classify`` struct). Unlabelled: ``default``.
    Tokens: whitespace words, or ``tokenizer`` (a tokenizer.json).
    """
    from pyspark.sql import functions as F

    given = {k: v for k, v in (("column", column), ("rules", rules), ("embedding_column", embedding_column),
                               ("classifier", classifier)) if v is not None}
    if len(given) != 1:
        raise CurateError("domain_label: give exactly one of column, rules, embedding_column, classifier "
                          f"(got {', '.join(given) or 'none'})")
    if name in df.columns:
        raise CurateError(f"domain_label: column '{name}' already exists; choose another 'name'")
    (mode,) = given
    if mode == "column":
        labelled = df.withColumn(name, _required(df, column, "column").cast("string"))
    elif mode == "rules":
        labelled = df.withColumn(name, _host_rule_column(domains.parse_rules(rules),
                                                         _required(df, url_column, "url_column")))
    elif mode == "classifier":
        labelled = df.withColumn(name, _classifier_label(df, classifier))
    else:
        labelled = _cluster_labels(df, ctx, embedding_column, name, clusters, kmeans_iterations)
    kept = labelled.withColumn(name, F.coalesce(F.col(name), F.lit(default)))
    tok = str(ctx.resolve(tokenizer)) if tokenizer else None
    summarise = top_terms if mode == "embedding_column" else 0
    return StageOutput(kept=kept, stats=functools.partial(_domain_stats, name, tok, summarise, mode), adds=(name,))


# --------------------------------------------------------------------------- label sources

def _required(df, column: str, param: str):
    from pyspark.sql import functions as F

    if column.split(".")[0] not in df.columns:
        raise CurateError(f"domain_label: {param} '{column}' not found; columns: {', '.join(df.columns)}")
    return F.col(column)


def _host_rule_column(rules, url):
    """The domain of each URL's host under ``rules`` (a pandas UDF over the pure matcher)."""
    from pyspark.sql import functions as F

    @F.pandas_udf("string")
    def by_host(urls):
        import pandas as pd

        return pd.Series([domains.domain_of_url(u, rules) for u in urls], dtype=object)

    return by_host(url.cast("string"))


def _classifier_label(df, classifier: str):
    """``<classifier>.label`` of an ``hf_classify`` struct (regression models have no label)."""
    from pyspark.sql.types import StructType

    field = df.schema[classifier] if classifier in df.columns else None
    if field is None or not isinstance(field.dataType, StructType) or "label" not in field.dataType.names:
        raise CurateError(f"domain_label: classifier '{classifier}' must be an hf_classify struct column with "
                          f"a 'label' field; columns: {', '.join(df.columns)}")
    return _required(df, f"{classifier}.label", "classifier").cast("string")


def _cluster_labels(df, ctx: StageContext, embedding_column: str, name: str, k: int, iterations: int):
    """``df`` plus ``name`` = the nearest of ``k`` seeded spherical k-means centroids."""
    import numpy as np
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType, StructField, StructType

    if k < 1 or iterations < 1:
        raise CurateError(f"domain_label: clusters and kmeans_iterations must be >= 1, got {k} and {iterations}")
    features = df.select(ID, _required(df, embedding_column, "embedding_column").cast("array<float>").alias(VECTOR))
    n, _dim = count_and_dimension(features, VECTOR, embedding_column, "domain_label")
    bits = F.xxhash64(F.lit(ctx.seed), F.col(ID)).bitwiseAND(F.lit((1 << 53) - 1)).cast("double")
    fraction = min(1.0, KMEANS_SAMPLE_CAP / max(n, 1))
    sample = features.where(bits / F.lit(float(1 << 53)) < fraction).toPandas().sort_values(ID, kind="stable")
    centroids = domains.kmeans_centroids(np.stack(sample[VECTOR].to_numpy()) if len(sample) else
                                         np.zeros((0, 1)), k, ctx.seed, iterations)
    schema = StructType([*df.schema.fields, StructField(name, StringType())])
    return df.mapInArrow(functools.partial(_assign, vector=embedding_column, name=name, centroids=centroids), schema)


def _assign(batches, *, vector: str, name: str, centroids):
    import pyarrow as pa

    k = len(centroids)
    for batch in batches:
        if batch.num_rows == 0:
            continue
        flat = batch.column(vector).flatten().to_numpy(zero_copy_only=False)
        nearest = nearest_centroid(flat.reshape(batch.num_rows, -1), centroids, "domain_label")
        yield batch.append_column(name, pa.array([domains.cluster_name(int(i), k) for i in nearest], pa.string()))


# --------------------------------------------------------------------------- stats

def _domain_stats(name: str, tokenizer: str | None, top_terms: int, mode: str, kept, _rejected) -> dict:
    """Documents and tokens per domain (one Spark job), plus each cluster's top terms."""
    from pyspark.sql import functions as F

    from curate.quality.tokens import token_count_column

    rows = (kept.groupBy(name).agg(F.count(F.lit(1)).alias("documents"),
                                   F.sum(token_count_column(TEXT, tokenizer)).alias("tokens"))
            .orderBy(name).collect())
    per_domain = {r[name]: {"documents": int(r["documents"]), "tokens": int(r["tokens"] or 0)} for r in rows}
    if top_terms > 0:
        for domain, terms in distinctive_terms(kept, name, top_terms).items():
            per_domain[domain]["top_terms"] = terms
    return {"source": mode, "column": name, "token_count": f"tokenizer: {tokenizer}" if tokenizer else "words",
            "domains": per_domain}


def distinctive_terms(df, group: str, n: int) -> dict[str, list[str]]:
    """The ``n`` most distinctive words (≥ 3 letters) per ``group`` value, by class-based TF-IDF
    (BERTopic): ``tf(t, c) · log(1 + A / f(t))``, ``tf`` the word's share of the group's words,
    ``f(t)`` its count over all groups, ``A`` the mean words per group; ties by word. Only
    ``n`` rows per group reach the driver."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    words = (df.select(group, F.explode(F.split(F.lower(F.col(TEXT)), r"[^\p{L}]+")).alias("term"))
             .where(F.length("term") >= 3).groupBy(group, "term").count())
    in_group = F.sum("count").over(Window.partitionBy(group))
    overall = F.sum("count").over(Window.partitionBy("term"))
    scored = words.withColumn("tf", F.col("count") / in_group).withColumn("f", overall)
    mean_words = words.agg((F.sum("count") / F.countDistinct(group)).alias("a")).first()["a"] or 0.0
    weight = F.col("tf") * F.log1p(F.lit(float(mean_words)) / F.col("f"))
    rank = F.row_number().over(Window.partitionBy(group).orderBy(weight.desc(), F.col("term")))
    rows = scored.withColumn("rank", rank).where(F.col("rank") <= n).orderBy(group, "rank").collect()
    out: dict[str, list[str]] = {}
    for r in rows:
        out.setdefault(r[group], []).append(r["term"])
    return out
