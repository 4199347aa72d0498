"""`s2s-jax plot`: a workdir's train.jsonl and metrics.jsonl as a real (non-blank) PNG; one-line errors."""

import json

import matplotlib.image
import numpy as np

from s2s_jax.cli import main


def _workdir(path):
    path.mkdir()
    train = [{"step": s, "loss": 3.0 / s, "lr": 1e-3, "tokens": 96.0} for s in range(1, 41)]
    heldout = [{"step": s, "exact_match": s / 40, "heldout_loss": 2.0 / s} for s in (10, 20, 30, 40)]
    (path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train) + '{"step": 41, "lo')  # cut short
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in heldout))
    return path


def test_plot_writes_the_curves(tmp_path, capsys):
    w = _workdir(tmp_path / "run")
    assert main(["plot", "--workdir", str(w)]) == 0
    png = w / "curves.png"
    assert capsys.readouterr().out.strip() == str(png)
    image = matplotlib.image.imread(png)
    assert image.shape[:2] == (400, 1100)  # figsize (11, 4) at 100 dpi
    rgb = image[..., :3]
    assert rgb.var() > 0.01 and (rgb < 0.5).mean() > 0.005  # lines and text, not an empty canvas
    out = tmp_path / "figs" / "c.png"
    assert main(["plot", "--workdir", str(w), "--out", str(out)]) == 0
    np.testing.assert_array_equal(matplotlib.image.imread(out), image)


def test_plot_errors(tmp_path, capsys):
    for argv, message in ((["--workdir", str(tmp_path / "missing")], "does not exist"),
                          (["--workdir", str(tmp_path)], "no train.jsonl or metrics.jsonl records"),
                          (["--workdir", str(_workdir(tmp_path / "w")), "--out", str(tmp_path / "x.pdf")],
                           "written as PNG")):
        assert main(["plot", *argv]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1
