"""The decoding options beyond beam search on a small trained model, in s2s-jax and in the ONNX runtime alike:
no-repeat n-gram blocking, forced prefixes, per-token scores, sampling (temperature, top-k, top-p, seeded),
ensembles; and, in s2s-jax, alignments and unknown-word replacement.

Two attention models trained by `s2s-jax train` on the same toy corpus with different seeds, each exported by
`s2s-jax export`. The two implementations give identical outputs (texts; scores within 1e-4) for greedy, beam,
n-gram blocking, prefixes and ensembles; sampling is reproducible from its seed in each; and a sentence's output
never depends on the other sentences of its batch (batch 1 against batch 17, mixed lengths), for every option.
"""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest

from export.runtime import Translator
from export.runtime_cli import main as runtime_main
from s2s_jax.cli import main as cli_main
from s2s_jax.errors import UserError
from s2s_jax.run.config import DecodeOptions
from s2s_jax.run.translate import Translator as JaxTranslator
from s2s_jax.run.translate import ensemble_members
from s2s_jax.run.workdir import load_run
from tests.export.test_export_text import TINY, sentences_100, toy_corpus

SENTENCES = sentences_100()[::6][:17]  # in-domain, noisy and long ones: mixed lengths
PREFIXES = ["the", "", "red dog", "zebra", *[""] * 13]  # "zebra" is not in the vocabulary: <unk> forced


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """[(workdir, export dir)] of two attention models, seeds 0 and 1, on the same 400 toy pairs."""
    root = tmp_path_factory.mktemp("runtime_options")
    src, tgt = toy_corpus(400, 0)
    (root / "train.de").write_text("\n".join(src) + "\n", encoding="utf-8")
    (root / "train.en").write_text("\n".join(tgt) + "\n", encoding="utf-8")
    data = f"parallel_text:{root / 'train.de'},{root / 'train.en'}"
    out = []
    for seed, steps in ((0, 250), (1, 150)):
        work, onnx = root / f"run{seed}", root / f"onnx{seed}"
        assert cli_main(["train", "--preset", "bentrevett-attention", "--data", data, "--data-dir", str(root / "tfds"),
                         "--tokenizer", "word", "--lowercase", "--min-freq", "1", "--buckets", "8,16",
                         "--workdir", str(work), *TINY, "--steps", str(steps), "--batch-size", "32", "--lr", "0.03",
                         "--eval-every", "0", "--schedule", "constant", "--seed", str(seed)]) == 0
        assert cli_main(["export", "--workdir", str(work), "--out", str(onnx)]) == 0
        out.append((work, onnx))
    return out


@pytest.fixture(scope="module")
def jax_translators(runs):
    """batch size -> s2s-jax Translator of the first run (one chunk of 17, or one sentence a chunk)."""
    run = load_run(runs[0][0])
    return {b: JaxTranslator(run.config.model, run.params, run.task, batch_size=b) for b in (1, 17)}


def jax_details(translator, opts, prefixes=None, n_best=1):
    return [[h._asdict() for h in row] for row in translator.details(SENTENCES, opts, n_best, prefixes)]


def assert_same(jax_rows, ort_rows):
    for j_row, o_row in zip(jax_rows, ort_rows, strict=True):
        for j, o in zip(j_row, o_row, strict=True):
            assert (j["text"], j["tokens"]) == (o["text"], o["tokens"])
            np.testing.assert_allclose(j["score"], o["score"], rtol=1e-4, atol=1e-4)
            np.testing.assert_allclose(j["token_scores"], o["token_scores"], rtol=1e-4, atol=1e-4)


CASES = {"ngram": dict(no_repeat_ngram=2), "prefix": {}, "ngram+prefix": dict(no_repeat_ngram=1)}


@pytest.mark.parametrize("beam", [1, 4])
@pytest.mark.parametrize("case", list(CASES))
def test_jax_and_runtime_give_the_same_outputs(runs, jax_translators, beam, case):
    prefixes = PREFIXES if "prefix" in case else None
    opts = DecodeOptions(beam=beam, **CASES[case])
    n_best = 2 if beam > 1 else 1
    jax_rows = jax_details(jax_translators[17], opts, prefixes, n_best)
    ort = Translator.load(runs[0][1])
    ort_rows = ort.details(SENTENCES, beam=beam, batch_size=17, n_best=n_best, prefixes=prefixes, **CASES[case])
    assert_same(jax_rows, ort_rows)
    plain = ort.details(SENTENCES, beam=beam, batch_size=17)
    assert [r[0]["text"] for r in plain] != [r[0]["text"] for r in ort_rows]  # the option changed something
    for row in ort_rows:
        np.testing.assert_allclose(sum(row[0]["token_scores"]), row[0]["score"], rtol=1e-4)  # alpha 0
    if prefixes:
        for p, row in zip(PREFIXES, ort_rows, strict=True):
            words = p.replace("zebra", "<unk>").split()
            assert row[0]["tokens"][: len(words)] == words


SAMPLE = dict(sample=True, temperature=1.5, top_k=6, top_p=0.9, seed=3)


@pytest.mark.parametrize("case", ["ngram", "prefix", "sample", "top_p_jax"])
def test_a_sentence_does_not_depend_on_its_batch(runs, jax_translators, case):
    """Batch 1 against batch 17, in both implementations, for each new option."""
    ort = Translator.load(runs[0][1])
    prefixes = PREFIXES if case == "prefix" else None
    kwargs = dict(no_repeat_ngram=2) if case == "ngram" else SAMPLE if case.startswith(("sample", "top_p")) else {}
    opts = DecodeOptions(**kwargs)
    alone, together = (jax_details(jax_translators[b], opts, prefixes) for b in (1, 17))
    assert_same(alone, together)  # same tokens; scores to float rounding (other shapes, other matmul blocking)
    if case != "top_p_jax":
        ort_alone, ort_together = (ort.details(SENTENCES, batch_size=b, prefixes=prefixes, **kwargs) for b in (1, 17))
        assert_same(ort_alone, ort_together)


def test_sampling_is_reproducible_from_the_seed(runs, jax_translators):
    ort = Translator.load(runs[0][1])
    texts = lambda rows: [r[0]["text"] for r in rows]  # noqa: E731
    jax_runs = [texts(jax_details(jax_translators[17], DecodeOptions(**dict(SAMPLE, seed=s)))) for s in (3, 3, 4)]
    ort_runs = [texts(ort.details(SENTENCES, batch_size=17, **dict(SAMPLE, seed=s))) for s in (3, 3, 4)]
    for a, b, c in (jax_runs, ort_runs):
        assert a == b and a != c
    greedy = texts(ort.details(SENTENCES, batch_size=17))
    assert ort_runs[0] != greedy


@pytest.mark.parametrize("beam", [1, 3])
def test_ensembles_agree_and_differ_from_their_members(runs, beam):
    first, second = (load_run(w) for w, _ in runs)
    jax = JaxTranslator(first.config.model, first.params, first.task, batch_size=17,
                        ensemble=ensemble_members([first, second]))
    opts = DecodeOptions(beam=beam)
    jax_rows = jax_details(jax, opts)
    ort = Translator.load(runs[0][1], ensemble=[runs[1][1]])
    assert_same(jax_rows, ort.details(SENTENCES, beam=beam, batch_size=17))
    alone = [Translator.load(o).details(SENTENCES, beam=beam, batch_size=17) for _, o in runs]
    for member in alone:
        assert [r[0]["score"] for r in member] != [r[0]["score"] for r in jax_rows]
    one_by_one = JaxTranslator(first.config.model, first.params, first.task, batch_size=1,
                               ensemble=ensemble_members([first, second]))
    assert_same(jax_details(one_by_one, opts), jax_rows)


def test_ensemble_members_must_share_vocabularies(runs, tmp_path):
    first = load_run(runs[0][0])
    other = load_run(runs[1][0])
    other.task.tgt_vocab.tokens[5], other.task.tgt_vocab.tokens[6] = (other.task.tgt_vocab.tokens[6],
                                                                      other.task.tgt_vocab.tokens[5])
    with pytest.raises(UserError, match="target vocabularies differ"):
        ensemble_members([first, other])


def test_alignments_and_unknown_word_replacement(jax_translators):
    """Each output token's source position is in the source; a forced <unk> is replaced by the source word it is
    aligned to."""
    translator = jax_translators[17]
    rows = translator.details(SENTENCES, DecodeOptions(), 1, PREFIXES, align=True)
    replaced = translator.details(SENTENCES, DecodeOptions(), 1, PREFIXES, replace_unk=True)
    for text, [h], [r] in zip(SENTENCES, rows, replaced, strict=True):
        source = translator.task.src_tok.tokenize(text)
        assert len(h.alignment) == len(h.tokens) and all(0 <= a < len(source) for a in h.alignment)
        assert (r.tokens, r.score) == (h.tokens, h.score)
        if "<unk>" not in h.tokens:
            assert r.text == h.text
    unk = rows[3][0]
    assert unk.tokens[0] == "<unk>" and replaced[3][0].text.split()[0] == translator.task.src_tok.tokenize(
        SENTENCES[3])[unk.alignment[0]]


def test_both_command_lines_print_the_same(runs, capsys, tmp_path):
    """`s2s-jax translate` and `python -m export.runtime` with the new flags: prefixes from INPUT<TAB>PREFIX
    lines and from --prefix-file, n-gram blocking, --print-scores in jsonl."""
    lines = [f"{s}\t{p}" if p else s for s, p in zip(SENTENCES, PREFIXES, strict=True)]
    (tmp_path / "in.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (tmp_path / "src.txt").write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    (tmp_path / "prefix.txt").write_text("\n".join(PREFIXES) + "\n", encoding="utf-8")
    flags = ["--no-repeat-ngram", "2", "--beam", "3", "--n-best", "2", "--print-scores", "--format", "jsonl"]
    outputs = []
    for inputs in (["--input", tmp_path / "in.txt"], ["--input", tmp_path / "src.txt", "--prefix-file",
                                                       tmp_path / "prefix.txt"]):
        for argv in (["translate", "--workdir", runs[0][0]], [runs[0][1]]):
            entry = cli_main if argv[0] == "translate" else runtime_main
            assert entry([str(a) for a in [*argv, *inputs, *flags]]) == 0
            outputs.append([json.loads(line) for line in capsys.readouterr().out.splitlines()])
    for other in outputs[1:]:
        for a, b in zip(outputs[0], other, strict=True):
            assert a["input"] == b["input"]
            for x, y in zip(a["hypotheses"], b["hypotheses"], strict=True):
                assert (x["text"], x["tokens"]) == (y["text"], y["tokens"])
                np.testing.assert_allclose(x["token_scores"], y["token_scores"], atol=1e-4)
    first_tokens = [h["hypotheses"][0]["tokens"][0] for h in outputs[0][:4]]
    assert [first_tokens[i] for i in (0, 2, 3)] == ["the", "red", "<unk>"]


def test_jax_command_line_alignment_and_errors(runs, capsys, tmp_path):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli_main(["translate", "--workdir", str(runs[0][0]), "--print-alignment", *SENTENCES[:3]]) == 0
    for line in out.getvalue().splitlines():
        translation, pairs = line.split("\t")
        assert len(pairs.split()) == len(translation.split()) + 1  # eos is aligned too
    (tmp_path / "prefix.txt").write_text("the\n", encoding="utf-8")
    for argv, match in ((["--prefix-file", tmp_path / "prefix.txt", *SENTENCES[:2]], "1 lines for 2 inputs"),
                        (["--sample", "--top-p", "0", SENTENCES[0]], "top_p=0.0")):
        assert cli_main(["translate", "--workdir", str(runs[0][0]), *map(str, argv)]) == 2
        assert match in capsys.readouterr().err
    for argv, match in ((["--top-p", "1.5"], "--top-p 1.5"), (["--sample", "--beam", "2"], "--sample takes one"),
                        (["--ensemble", runs[0][1]], None)):
        code = runtime_main([str(runs[0][1]), *map(str, argv), SENTENCES[0]])
        err = capsys.readouterr().err
        assert (code, match is None or match in err) == ((0, True) if match is None else (2, True)), err


def test_runtime_help_lists_every_option(capsys):
    with pytest.raises(SystemExit):
        runtime_main(["--help"])
    text = capsys.readouterr().out
    for flag in ("--beam", "--alpha", "--n-best", "--no-repeat-ngram", "--prefix-file", "--print-scores", "--sample",
                 "--temperature", "--top-k", "--top-p", "--seed", "--ensemble", "--format"):
        assert flag in text


@pytest.mark.parametrize("temperature,top_k,top_p", [(1.0, 0, 0.9), (0.8, 5, 1.0), (1.5, 8, 0.7)])
def test_both_sample_from_the_same_distribution_on_the_trained_model(runs, temperature, top_k, top_p):
    """The first decoding step of the exported model in onnxruntime and of the JAX model: the same support (top-k,
    nucleus) and the same probabilities to sample from."""
    import jax
    import jax.numpy as jnp

    from export.search_rules import NEG_INF, sampling_logits
    from s2s_jax.decoding.sampling import sampling_logits as jax_sampling_logits
    from s2s_jax.decoding.search import model_step
    from s2s_jax.models import build_model

    run = load_run(runs[0][0])
    src, lengths = run.task.encode_inputs(SENTENCES)
    ort = Translator.load(runs[0][1])
    bos = np.full(len(src), run.config.model.bos_id, np.int64)
    enc_arrays, state_arrays = ort.encode(src.astype(np.int64), lengths.astype(np.int64))
    ort_logp, _ = ort.step(enc_arrays, bos, state_arrays)
    model, v = build_model(run.config.model), {"params": run.params}
    enc = model.apply(v, src, lengths, method="encode")
    state = model.apply(v, enc, max_decode_len=8, method="init_decode_state")
    jax_logp, _ = model_step(model, run.params)["step"](enc, jnp.asarray(bos, jnp.int32), state)
    n = sampling_logits(ort_logp, temperature, top_k, top_p)
    j = np.asarray(jax_sampling_logits(jax_logp, temperature, top_k, top_p))
    np.testing.assert_array_equal(n > NEG_INF / 2, j > NEG_INF / 2)
    np.testing.assert_allclose(jax.nn.softmax(n, axis=-1), jax.nn.softmax(j, axis=-1), atol=1e-5)
    assert (n > NEG_INF / 2).sum() < n.size  # something was cut
