"""Per-filter behaviour: crafted texts that trip exactly one rule, real documents that pass."""
from __future__ import annotations

import pytest
from click.testing import CliRunner
from helpers import (
    LINES,
    LONG_LINE,
    PROSE,
    SENTENCES,
    UDHR,
    configured_filters,
    lid_model,
    read_jsonl,
    spaced,
    udhr_examples,
)

import filters
from curate.core import CurateError


def reason(name: str, text: str, **params) -> str | None:
    flt = filters.build(name, params)
    flt.setup()
    return flt.reject(flt.score({"text": text}))


def trips_only(name: str, text: str, expected: str, **relax) -> None:
    """``text`` is rejected for ``expected``, and kept once that rule (``relax``) is loosened."""
    assert reason(name, text) == expected
    assert reason(name, text, **relax) is None


# ------------------------------------------------------------------ gopher_quality

@pytest.mark.parametrize("text, expected, relax", [
    ("The cat and the dog sat with the man.", "word_count", {"min_words": 5}),
    (" ".join(["the", "and"] + ["incomprehensibilities"] * 60), "mean_word_length",
     {"max_mean_word_length": 30}),
    (PROSE + " #tag" * 20, "hash_ratio", {"max_hash_ratio": 1.0}),
    (" ".join(["wait..."] * 20) + " " + PROSE, "ellipsis_ratio", {"max_ellipsis_ratio": 1.0}),
    ("\n".join("- " + s for s in SENTENCES), "bullet_lines", {"max_bullet_lines": 1.0}),
    ("\n".join(s[:-1] + "…" if i % 2 else s for i, s in enumerate(SENTENCES)), "ellipsis_lines",
     {"max_ellipsis_lines": 0.5}),
    (PROSE + " 1234" * 30, "alpha_words", {"min_alpha_words": 0.5}),
    ("Cats sleep all day in warm sunny spots near big windows. Dogs bark loudly at every passing "
     "car on quiet roads. Birds sing sweet songs from tall green trees in spring. " * 3, "stop_words",
     {"min_stop_words": 0}),
])
def test_gopher_quality_rules(text, expected, relax):
    trips_only("gopher_quality", text, expected, **relax)


def test_gopher_quality_measures_prose():
    scores = filters.build("gopher_quality").score({"text": PROSE})
    assert scores["words"] == 81
    assert scores["stop_words"] == 7  # all but "be"
    assert scores["alpha_words"] == 1.0
    assert reason("gopher_quality", PROSE) is None
    assert reason("gopher_quality", PROSE, min_words=82) == "word_count"


def test_gopher_quality_custom_stop_words(tmp_path):
    words = tmp_path / "stop.txt"
    words.write_text("# my list\nriver\nbridge\n", encoding="utf-8")
    assert filters.build("gopher_quality", {"stop_words_file": str(words)}).score({"text": PROSE})["stop_words"] == 2


# ------------------------------------------------------------------ gopher_repetition

NGRAM_RELAX = {f"max_dup_{n}gram": 1.0 for n in range(5, 11)}


@pytest.mark.parametrize("text, expected, relax", [
    (LINES + "\n" + "\n".join(["Ok."] * 5), "dup_line_frac", {"max_dup_line_frac": 0.5}),
    (LINES + "\n\nOk.\n\nOk.", "dup_para_frac", {"max_dup_para_frac": 0.5}),
    (LINES + "\n" + "\n".join([LONG_LINE] * 3), "dup_line_char_frac",
     {"max_dup_line_char_frac": 0.5, "max_dup_para_char_frac": 0.5, **NGRAM_RELAX}),
    (LINES + "\n" + spaced("big cat", 25), "top_2gram", {"max_top_2gram": 0.3}),
    (LINES + "\n" + spaced("red big cat", 15), "top_3gram", {"max_top_3gram": 0.3}),
    (LINES + "\n" + spaced("one big red cat", 9), "top_4gram", {"max_top_4gram": 0.3}),
    (LINES + "\n" + spaced("alpha beta gamma delta epsilon", 3), "dup_5gram", {"max_dup_5gram": 0.2}),
    (LINES + "\n" + "\n".join([LONG_LINE] * 2), "dup_5gram", NGRAM_RELAX),
])
def test_gopher_repetition_rules(text, expected, relax):
    trips_only("gopher_repetition", text, expected, **relax)


def test_gopher_repetition_paragraph_characters():
    text = "\n\n".join(SENTENCES + [LONG_LINE] * 3)
    flt = filters.build("gopher_repetition", {"max_dup_line_char_frac": 1.0})
    scores = flt.score({"text": text})
    assert scores["dup_para_frac"] == pytest.approx(2 / 9)
    assert scores["dup_para_char_frac"] == pytest.approx(2 * len(LONG_LINE) / len(text))
    assert flt.reject(scores) == "dup_para_char_frac"


def test_duplicated_ngrams_count_each_word_once():
    # "a b c d e" twice and overlapping repeats: every word of both copies is covered exactly once.
    text = "a b c d e x a b c d e"
    scores = filters.build("gopher_repetition").score({"text": text})
    assert scores["dup_5gram"] == pytest.approx(10 / 11)
    assert scores["dup_6gram"] == 0.0


# ------------------------------------------------------------------ c4 and fineweb

@pytest.mark.parametrize("text, expected, relax", [
    (LINES + "\nLorem ipsum dolor sit amet.", "lorem_ipsum", {"reject_lorem_ipsum": False}),
    (LINES + "\nfunction f() { return 1; }", "curly_brace", {"reject_curly_brace": False}),
    ("\n".join(SENTENCES[:4]), "too_few_sentences", {"min_sentences": 4}),
])
def test_c4_rules(text, expected, relax):
    trips_only("c4", text, expected, **relax)


def test_c4_line_rules():
    text = "\n".join([*SENTENCES[:3], "Please enable JavaScript to view this page.",
                      "This site uses cookies to improve your experience.", "Read more", "Short line.", ""])
    scores = filters.build("c4").score({"text": text})
    assert scores == {"lines": 7.0, "kept_lines": 3.0, "sentences": 3.0, "javascript_lines": 1.0,
                      "policy_lines": 1.0, "lorem_ipsum": 0.0, "curly_brace": 0.0, "bad_words": 0.0}
    assert filters.build("c4").score({"text": "One. Two three four! Five six seven? Eight nine ten."})["sentences"] == 4


def test_c4_bad_words_file(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("market\n", encoding="utf-8")
    assert reason("c4", LINES, bad_words_file=str(bad)) == "bad_words"
    assert reason("c4", LINES, bad_words_file=str(bad), max_bad_words=1) is None


@pytest.mark.parametrize("text, expected, relax", [
    ("\n".join(s[:-1] for s in SENTENCES), "line_punct_ratio", {"min_line_punct_ratio": -1.0}),
    ("\n".join(["Short line one.", "Tiny two.", "Small three."] + SENTENCES[:1]), "short_line_ratio",
     {"max_short_line_ratio": 0.9}),
    (LINES + "\n" + SENTENCES[0], "dup_line_char_ratio", {"max_dup_line_char_ratio": 0.2}),
    ("\n".join(f"Item {i}." for i in range(8)), "newline_word_ratio",
     {"max_newline_word_ratio": 0.5, "max_short_line_ratio": 1.1}),
])
def test_fineweb_rules(text, expected, relax):
    if expected == "newline_word_ratio":
        assert reason("fineweb", text, max_short_line_ratio=1.1) == expected
        assert reason("fineweb", text, **relax) is None
    else:
        trips_only("fineweb", text, expected, **relax)


# ------------------------------------------------------------------ length and char_ratio

def test_length_and_char_ratio():
    assert reason("length", "") == "too_short"
    assert reason("length", PROSE, max_chars=100) == "too_long"
    assert reason("length", PROSE, min_words=100) == "too_few_words"
    assert reason("length", PROSE, max_words=10) == "too_many_words"
    assert reason("length", PROSE) is None
    assert reason("char_ratio", "2024 " * 20) == "max_digit"
    assert reason("char_ratio", "HELLO WORLD " * 10) == "max_uppercase"
    assert reason("char_ratio", "!?#$% " * 10) == "max_symbol"
    assert reason("char_ratio", PROSE, min_whitespace=0.5) == "min_whitespace"
    scores = filters.build("char_ratio").score({"text": "Ab1 !"})
    assert scores == {"digit": 0.2, "uppercase": 0.2, "symbol": 0.2, "whitespace": 0.2}


# ------------------------------------------------------------------ url_blocklist, bad_words, pii

def test_url_blocklist(tmp_path):
    flt = configured_filters(tmp_path)["url_blocklist"]

    def why(url):
        return flt.reject(flt.score({"text": "x", "url": url}))

    assert why("https://www.bad.example/page") == "domain"
    assert why("http://BAD.example") == "domain"
    assert why("https://notbad.example/") is None  # a suffix match must be a whole label
    assert why("https://news.test/ads/banner") == "substring"
    assert why("https://casino-news.org/") == "substring"
    assert why("https://example.org/") is None
    assert why(None) is None


def test_bad_words_per_language(tmp_path):
    german = tmp_path / "de.txt"
    german.write_text("mist\n", encoding="utf-8")
    flt = filters.build("bad_words", {"files": {"de": str(german)}, "max_ratio": 0.1})
    assert flt.reject(flt.score({"text": "so ein Mist", "language": "de"})) == "bad_word_ratio"
    assert flt.score({"text": "so ein Mist", "language": "fr"})["has_list"] == 0.0
    default = filters.build("bad_words")
    assert default.reject(default.score({"text": PROSE})) is None
    assert default.reject(default.score({"text": PROSE + " shit" * 3})) == "bad_word_ratio"


def test_pii_redacts_public_addresses_only():
    pii = filters.build("pii", {"phones": True})
    text = ("Mail jane.doe@example.com or ops@mail.example.org. Server 8.8.8.8 and 192.168.1.10 and "
            "10.0.0.1 and 127.0.0.1; v6 2606:4700:4700::1111 vs fe80::1 and ::1. Call +1 415-555-0123.")
    new, counts = pii.apply(text)
    assert counts == {"emails": 2.0, "ipv4": 1.0, "ipv6": 1.0, "phones": 1.0}
    assert "jane.doe" not in new and "8.8.8.8" not in new and "2606:4700" not in new
    assert "192.168.1.10" in new and "10.0.0.1" in new and "fe80::1" in new
    assert new.count("<EMAIL>") == 2 and new.count("<IP_ADDRESS>") == 2 and "<PHONE>" in new
    assert pii.reject(counts) is None
    assert filters.build("pii").apply("version 1.2.3.4.5 at 12:30:45")[1]["ipv4"] == 0.0


# ------------------------------------------------------------------ lang_id

@pytest.mark.skipif(not UDHR.is_file(), reason="shared UDHR data absent")
def test_lang_id_on_held_out_udhr(tmp_path):
    path, report = lid_model(tmp_path)
    assert report["languages"] == 10 and report["valid"] > 30
    assert report["valid_accuracy"] >= 0.9
    flt = filters.build("lang_id", {"model": str(path), "languages": ["en"], "min_score": 0.5})
    english = flt.score({"text": PROSE})
    assert english["language"] == "en" and english["score"] > 0.5
    assert flt.reject(english) is None
    german = flt.score({"text": "Alle Menschen sind frei und gleich an Würde und Rechten geboren."})
    assert german["language"] == "de"
    assert flt.reject(german) == "language"
    assert filters.build("lang_id", {"model": str(path), "languages": "en"}).languages == ("en",)


@pytest.mark.skipif(not UDHR.is_file(), reason="shared UDHR data absent")
def test_lang_id_checks_sha256_sidecar(tmp_path):
    path, _ = lid_model(tmp_path)
    copy = tmp_path / "copy.bin"
    copy.write_bytes(path.read_bytes())
    with pytest.raises(CurateError, match="no sha256 sidecar"):
        filters.build("lang_id", {"model": str(copy)}).setup()
    (tmp_path / "copy.bin.sha256").write_text("0" * 64 + "  copy.bin\n")
    with pytest.raises(CurateError, match="does not match"):
        filters.build("lang_id", {"model": str(copy)}).setup()
    with pytest.raises(CurateError, match="set `model`"):
        filters.build("lang_id").setup()


@pytest.mark.skipif(not UDHR.is_file(), reason="shared UDHR data absent")
def test_langid_train_command(tmp_path):
    import json

    from curate.commands.langid import command
    from curate.integrity import sha256_file

    subset = tmp_path / "udhr10.jsonl"  # a temporary subset; nothing is copied into the repo
    subset.write_text("".join(json.dumps({"text": text, "meta": {"lang": lang}}) + "\n"
                              for lang, text in udhr_examples()), encoding="utf-8")
    out = tmp_path / "m.bin"
    args = ["train", str(subset), "-o", str(out), "--language-field", "meta.lang", "--bucket", "50000"]
    result = CliRunner().invoke(command, args)
    assert result.exit_code == 0, result.output
    assert "(10 languages" in result.output and "held-out accuracy" in result.output
    assert float(result.output.split("accuracy ")[1].split()[0]) >= 0.8
    assert (tmp_path / "m.bin.sha256").read_text().split()[0] == sha256_file(out)
    bad = CliRunner().invoke(command, ["train", str(subset), "-o", str(out), "--language-field", "lang"])
    assert bad.exit_code != 0 and "needs string fields 'text' and 'lang'" in str(bad.exception)


# ------------------------------------------------------------------ registry and real text

def test_registry_errors():
    assert {"gopher_quality", "gopher_repetition", "c4", "fineweb", "length", "char_ratio", "url_blocklist",
            "lang_id", "pii", "bad_words"} <= set(filters.registry())
    with pytest.raises(CurateError, match="valid filters: .*gopher_quality"):
        filters.build("gopher")
    with pytest.raises(CurateError, match="unknown parameter.*min_word.*valid: min_words"):
        filters.build("gopher_quality", {"min_word": 3})
    with pytest.raises(CurateError, match="must be a number"):
        filters.build("gopher_quality", {"min_words": "80"})
    assert filters.parse_spec({"c4": None}) == ("c4", {})
    with pytest.raises(CurateError, match="one-key mapping"):
        filters.parse_spec({"c4": {}, "fineweb": {}})


def test_real_speeches_pass_heuristics(shared_data):
    docs = read_jsonl(shared_data / "corpora" / "nltk_inaugural.jsonl")
    for name in ["gopher_quality", "gopher_repetition", "c4", "fineweb", "length", "char_ratio"]:
        flt = filters.build(name)
        kept = sum(flt.reject(flt.score(d)) is None for d in docs)
        assert kept >= len(docs) - 1, name
