"""sacreBLEU scoring: tokenize none for pre-tokenized text, 13a for raw, chrF alongside."""

import pytest

from s2s_jax.errors import UserError
from s2s_jax.run.evaluate import corpus_scores

REFS = ["a man in an orange hat .", "two dogs play in the snow ."]


def test_perfect_and_partial_scores():
    assert corpus_scores(REFS, REFS, pretokenized=True)["bleu"] == 100.0
    partial = corpus_scores(["a man in a red hat .", "two dogs run in the snow ."], REFS, pretokenized=True)
    assert 0 < partial["bleu"] < 100 and 0 < partial["chrf"] < 100
    assert "tok:none" in partial["bleu_signature"]


def test_raw_text_is_tokenized_by_13a():
    raw = corpus_scores(["A man in an orange hat."], ["A man in an orange hat ."], pretokenized=False)
    none = corpus_scores(["A man in an orange hat."], ["A man in an orange hat ."], pretokenized=True)
    assert raw["bleu"] == 100.0 and none["bleu"] < 100.0 and "tok:13a" in raw["bleu_signature"]


def test_lowercase_and_length_mismatch():
    assert corpus_scores(["A MAN IN A HAT ."], ["a man in a hat ."], pretokenized=True, lowercase=True)["bleu"] == 100
    with pytest.raises(UserError, match="1 hypotheses for 2 references"):
        corpus_scores(["x"], REFS, pretokenized=True)
