"""Real-data path end to end on a tiny corpus: `train --data`, the Translator API (greedy, beam, sampling),
`translate`/`evaluate` verbs, and torch_ref through the numpy search giving the JAX tokens."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from s2s_jax.cli import main
from s2s_jax.errors import UserError
from s2s_jax.run.config import DecodeOptions
from s2s_jax.run.translate import Translator
from s2s_jax.run.workdir import load_run

WORDS = ["rot", "blau", "grün", "hund", "katze", "haus", "baum"]
EN = {"rot": "red", "blau": "blue", "grün": "green", "hund": "dog", "katze": "cat", "haus": "house", "baum": "tree"}


def corpus(n, seed):
    rng = np.random.default_rng(seed)
    src = [" ".join(rng.choice(WORDS, rng.integers(1, 6))) for _ in range(n)]
    return src, [" ".join(EN[w] for w in s.split()) for s in src]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("translation")
    files = {}
    for split, n, seed in (("train", 200, 0), ("validation", 16, 1), ("test", 24, 2)):
        src, tgt = corpus(n, seed)
        (root / f"{split}.de").write_text("\n".join(src) + "\n")
        (root / f"{split}.en").write_text("\n".join(tgt) + "\n")
        files[split] = f"{root / f'{split}.de'},{root / f'{split}.en'}"
    data = "parallel_text:" + ";".join(f"{k}={v}" for k, v in files.items())
    path = root / "run"
    assert main(["train", "--preset", "bentrevett-attention", "--data", data, "--data-dir", str(root / "tfds"),
                 "--min-freq", "1", "--buckets", "8,16", "--workdir", str(path), "--set", "emb_dim=8",
                 "--set", "hid_dim=8", "--set", "dropout=0.0", "--steps", "40", "--batch-size", "16",
                 "--lr", "0.03", "--eval-every", "20", "--best-metric", "bleu", "--schedule", "constant"]) == 0
    return path


@pytest.fixture(scope="module")
def setup(workdir):
    run = load_run(workdir, "best")  # what the verbs load by default
    texts = corpus(24, 2)[0]
    src, src_lengths = run.task.encode_inputs(texts)
    return run, Translator(run.config.model, run.params, run.task, batch_size=8), texts, src, src_lengths


def logprob(run, src, src_lengths, outputs):
    """Teacher-forced model log-prob of each output (ids through eos)."""
    from s2s_jax.models import build_model

    width = max(len(o) for o in outputs)
    tgt = np.zeros((len(outputs), width), np.int32)
    for i, o in enumerate(outputs):
        tgt[i, : len(o)] = o
    tgt_in = np.concatenate([np.full((len(outputs), 1), run.config.model.bos_id), tgt[:, :-1]], axis=1)
    logits = build_model(run.config.model).apply({"params": run.params}, src, src_lengths, tgt_in)
    logits = logits[0] if isinstance(logits, tuple) else logits
    picked = jnp.take_along_axis(jax.nn.log_softmax(logits), tgt[:, :, None], axis=2)[..., 0]
    mask = np.arange(width)[None, :] < np.array([len(o) for o in outputs])[:, None]
    return np.asarray(jnp.sum(jnp.where(mask, picked, 0.0), axis=1))


def test_workdir_keeps_tokenizer_and_vocab(workdir, setup):
    run = setup[0]
    assert (workdir / "tokenizer.json").exists() and run.task.src_vocab.unk_id is not None
    v = run.task.src_vocab
    assert run.task.encode_source("hund zebra").tolist() == [v.index["hund"], v.unk_id]  # OOV -> unk


def test_beam_one_equals_greedy(setup):
    """The Translator's beam 1 is the greedy loop; the beam algorithm at K = 1 over the same chunks (per-row
    bounds included) gives the same tokens and scores."""
    from s2s_jax.decoding.beam import beam_search
    from s2s_jax.decoding.search import model_step
    from s2s_jax.models import build_model

    run, tr, _, src, lengths = setup
    model, cfg = build_model(run.config.model), run.config.model
    greedy, _ = tr.decode_ids(src, lengths, DecodeOptions())
    assert len({len(g) for g in greedy}) > 1, "the test needs outputs of different lengths"
    for c in tr.chunks(src, lengths):
        tokens, out_lengths, scores = tr.decode_chunk(c, DecodeOptions(beam=1))
        v = {"params": run.params}
        enc = model.apply(v, c.src, c.src_lengths, method="encode")
        state = model.apply(v, enc, max_decode_len=c.max_len, method="init_decode_state")
        beam1 = beam_search(enc=enc, state=state, batch=len(c.src), beam=1, max_len=c.max_len, bos_id=cfg.bos_id,
                            eos_id=cfg.eos_id, pad_id=cfg.pad_id, row_max_len=c.limits,
                            **model_step(model, run.params))
        np.testing.assert_array_equal(tokens, np.asarray(beam1.tokens[:, 0]))
        np.testing.assert_array_equal(out_lengths, np.asarray(beam1.lengths[:, 0]))
        np.testing.assert_allclose(scores, np.asarray(beam1.scores[:, 0]), rtol=1e-6)


@pytest.mark.parametrize("opts", [DecodeOptions(), DecodeOptions(beam=3)])
def test_rows_do_not_depend_on_their_batch(setup, opts):
    run, tr, _, src, lengths = setup
    full, _ = tr.decode_ids(src, lengths, opts)
    pick = np.array([5, 0, 17])
    alone = Translator(run.config.model, run.params, run.task, batch_size=2)
    part, _ = alone.decode_ids(src[pick], lengths[pick], opts)
    assert all(np.array_equal(part[i], full[j]) for i, j in enumerate(pick))


def test_progress_counts_every_sentence_once(setup):
    """What `evaluate`'s progress bar is fed: the real rows of each chunk (19 sentences in chunks of 8: the last
    one holds 3, padded with copies that do not count)."""
    run, tr, texts, _, _ = setup
    done = []
    assert tr.translate(texts[:19], progress=done.append) == tr.translate(texts[:19])
    assert done == [8, 8, 3]


def test_beam_five_never_scores_worse_than_greedy(setup):
    run, tr, _, src, lengths = setup
    greedy, g_scores = tr.decode_ids(src, lengths, DecodeOptions())
    beam5, scores = tr.decode_ids(src, lengths, DecodeOptions(beam=5))
    g, b = logprob(run, src, lengths, greedy), logprob(run, src, lengths, beam5)
    np.testing.assert_allclose(scores, b, rtol=1e-4, atol=1e-4)  # alpha 0: the score is the log-prob
    np.testing.assert_allclose(g_scores, g, rtol=1e-4, atol=1e-4)  # greedy's too (scores mean one thing)
    assert np.all(b >= g - 1e-4)


def test_length_limit_is_relative_to_the_source(setup):
    run, tr, _, src, lengths = setup
    for opts in (DecodeOptions(), DecodeOptions(beam=2), DecodeOptions(sample=True, seed=3)):
        outs, _ = tr.decode_ids(src, lengths, opts)
        assert all(len(o) <= lim for o, lim in zip(outs, run.task.decode_limit(lengths), strict=True))


def test_sampling_is_seeded_and_top1_is_greedy(setup):
    run, tr, texts, _, _ = setup
    greedy = tr.translate(texts, DecodeOptions())
    assert tr.translate(texts, DecodeOptions(sample=True, top_k=1)) == greedy
    hot = [tr.translate(texts, DecodeOptions(sample=True, temperature=5.0, seed=s)) for s in (1, 1, 2)]
    assert hot[0] == hot[1] and hot[0] != hot[2]
    with pytest.raises(UserError, match="temperature=0.0 must be a finite number > 0"):
        DecodeOptions(sample=True, temperature=0.0)


def test_translate_verb_reads_a_file_and_beams(workdir, setup, tmp_path, capsys):
    run, tr, texts, _, _ = setup
    (tmp_path / "in.txt").write_text("\n".join(texts[:5]) + "\n")
    assert main(["translate", "--workdir", str(workdir), "--input", str(tmp_path / "in.txt"), "--beam", "3",
                 "--batch-size", "8"]) == 0
    assert capsys.readouterr().out.splitlines() == tr.translate(texts[:5], DecodeOptions(beam=3))


def test_evaluate_verb_writes_hypotheses_and_scores(workdir, capsys):
    assert main(["evaluate", "--workdir", str(workdir), "--split", "test", "--beam", "2", "--batch-size", "8"]) == 0
    result = json.loads((workdir / "eval" / "test.beam2.json").read_text())
    assert result["sentences"] == 24 and 0.0 <= result["bleu"] <= 100.0 and "chrf" in result
    assert len((workdir / "eval" / "test.beam2.hyp").read_text().splitlines()) == 24
    assert main(["evaluate", "--workdir", str(workdir), "--split", "nope"]) == 2
    assert "no split 'nope'" in capsys.readouterr().err


def test_evaluate_scores_a_plain_file_pair(workdir, capsys):
    """`--src/--ref`: any test set as two files, scored as a split is (the test split's own files here)."""
    root = workdir.parent
    argv = ["evaluate", "--workdir", str(workdir), "--beam", "2", "--batch-size", "8"]
    assert main([*argv, "--src", str(root / "test.de"), "--ref", str(root / "test.en")]) == 0
    files = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert main([*argv, "--split", "test"]) == 0
    split = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert files["split"] == "test" and files["sentences"] == 24 and files["bleu"] == split["bleu"]
    assert (workdir / "eval" / "test.beam2.hyp").read_text().count("\n") == 24
    (root / "short.en").write_text("red\n")
    assert main([*argv, "--src", str(root / "test.de"), "--ref", str(root / "short.en")]) == 2
    assert "aligned line by line" in capsys.readouterr().err
    assert main([*argv, "--src", str(root / "test.de")]) == 2
    assert "--src and --ref go together" in capsys.readouterr().err


def test_sources_padded_past_a_learned_position_table_still_translate(setup):
    # buckets 8,16: a 12-token source pads to 16, wider than a 12-row learned position table
    from s2s_jax import presets
    from s2s_jax.checks import init_params, random_batch

    run = setup[0]
    vocab = dict(src_vocab_size=run.config.model.src_vocab_size, tgt_vocab_size=run.config.model.tgt_vocab_size)
    cfg = presets.get("bentrevett-transformer", **vocab, hid_dim=8, emb_dim=8, n_layers=1, n_heads=2, ff_dim=16,
                      max_len=12)
    params = init_params(cfg, random_batch(cfg, src_len=6, tgt_len=4))
    tr = Translator(cfg, params, run.task, batch_size=4)
    texts = [" ".join(["rot"] * n) for n in (12, 3, 9)]
    assert run.task.encode_inputs(texts)[0].shape[1] == 16
    for opts in (DecodeOptions(), DecodeOptions(beam=2)):
        outs, _ = tr.decode_ids(*run.task.encode_inputs(texts), opts)
        assert all(1 <= len(o) <= 12 for o in outs)
        # each sentence alone (narrower padding) decodes the same
        assert all(np.array_equal(o, tr.decode_ids(*run.task.encode_inputs([t]), opts)[0][0])
                   for o, t in zip(outs, texts, strict=True))
    with pytest.raises(UserError, match="an input has 13 source tokens; the transformer model has 12 positions"):
        tr.translate([" ".join(["rot"] * 13)])


def test_best_checkpoint_by_validation_bleu(workdir):
    from s2s_jax.run.evaluate import corpus_scores

    history = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    bleu = {h["step"]: h["bleu"] for h in history if "bleu" in h}
    assert sorted(bleu) == [20, 40]
    best = load_run(workdir, "best")
    assert best.step == max(bleu, key=lambda s: (bleu[s], -s))  # ties keep the earlier step
    # the recorded score is sacreBLEU of greedy validation output, as `evaluate` would score it
    src, tgt = corpus(16, 1)
    hyps = Translator(best.config.model, best.params, best.task, batch_size=8).translate(src, DecodeOptions())
    assert corpus_scores(hyps, tgt, pretokenized=best.task.pretokenized)["bleu"] == pytest.approx(bleu[best.step])


def test_torch_ref_decoding_gives_the_jax_tokens(setup):
    """torch_ref driven by the numpy search (`export.search.search`, the ONNX runtime's) gives the JAX tokens,
    greedy and beam, under the task's per-row length limits, and the same scores."""
    torch = pytest.importorskip("torch")
    from export.graphs import numpy_stepper
    from export.search import search
    from torch_ref import build_model as build_torch
    from torch_ref.convert import flax_to_torch

    run, tr, _, src, lengths = setup
    tmodel = build_torch(run.config.model)
    tmodel.load_state_dict(flax_to_torch(run.config.model, run.params))
    tmodel.eval()
    width = int(lengths.max())
    max_len, limits = tr._limits(width, lengths)
    c = run.config.model
    ids = dict(max_len=max_len, bos_id=c.bos_id, eos_id=c.eos_id, pad_id=c.pad_id, row_max_len=limits)
    full = Translator(run.config.model, run.params, run.task, batch_size=len(src))
    for opts, beam in ((DecodeOptions(), 1), (DecodeOptions(beam=3), 3)):
        step, enc, state = numpy_stepper(tmodel, torch.from_numpy(np.asarray(src[:, :width])).long(),
                                         torch.from_numpy(np.asarray(lengths)).long(), max_len)
        r = search(step, enc, state, batch=len(src), beam=beam, **ids)
        jax_out, jax_scores = full.decode_ids(src[:, :width], lengths, opts)
        torch_out = [r.tokens[i, 0, : r.lengths[i, 0]] for i in range(len(src))]
        assert all(np.array_equal(a, b) for a, b in zip(jax_out, torch_out, strict=True)), opts.method
        assert np.all(np.isfinite(r.scores[:, 0]))
        np.testing.assert_allclose(r.scores[:, 0], jax_scores, rtol=1e-4, atol=1e-4)


def test_decode_bench_gives_every_decoder_the_same_chunks(setup):
    """bench/decode.py's turn-taking loop: JAX and torch_ref decoders fed the Translator's chunks put every
    sentence back in input order, with the tokens `decode_ids` gives."""
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    import importlib.util
    from pathlib import Path

    from torch_ref import build_model as build_torch
    from torch_ref.convert import flax_to_torch

    spec = importlib.util.spec_from_file_location("bench_decode", Path(__file__).parents[2] / "bench" / "decode.py")
    bench_decode = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_decode)

    run, tr, _, src, lengths = setup
    tmodel = build_torch(run.config.model)
    tmodel.load_state_dict(flax_to_torch(run.config.model, run.params))
    tmodel.eval()
    opts = DecodeOptions(beam=3)
    decoders = {"JAX": bench_decode.jax_decoder(tr, opts),
                "torch": bench_decode.torch_decoder(tmodel, run.config.model, opts)}
    times, outs = bench_decode.interleaved(tr, src, lengths, decoders)
    expected, _ = tr.decode_ids(src, lengths, opts)
    assert set(times) == {"JAX", "torch"} and all(t > 0 for t in times.values())
    for name in decoders:
        assert bench_decode.same(outs[name], expected).all(), name


def test_chunks_are_cut_to_the_longest_row_rounded_to_the_width_step(setup):
    """A chunk's width is its longest row rounded up to WIDTH_STEP within the training bucket (here 8, 16), and
    the tokens do not depend on it: the same chunk padded out to its bucket decodes the same."""
    from s2s_jax.data.batching import bucket_width
    from s2s_jax.run.translate import WIDTH_STEP

    run, _, _, src, lengths = setup
    tr = Translator(run.config.model, run.params, run.task, batch_size=4)
    widths = set()
    for c in tr.chunks(src, lengths):
        longest = int(c.src_lengths.max())
        assert c.src.shape[1] == min(bucket_width(longest, run.task.buckets), -(-longest // WIDTH_STEP) * WIDTH_STEP)
        widths.add(c.src.shape[1])
        bucket = bucket_width(longest, run.task.buckets)
        if c.src.shape[1] < bucket:
            wide = c._replace(src=np.pad(c.src, ((0, 0), (0, bucket - c.src.shape[1]))))
            for opts in (DecodeOptions(), DecodeOptions(beam=3)):
                np.testing.assert_array_equal(tr.decode_chunk(c, opts)[0], tr.decode_chunk(wide, opts)[0])
    assert WIDTH_STEP in widths, "the test needs a chunk narrower than its bucket"
