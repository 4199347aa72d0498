"""The reliability points of a workdir's life, checked through the CLI only, against any checkout: so that an
older version can be measured by the same script (issue 15 compared 7ad6a63 with its fix).

    .venv/bin/python bench/reliability_points.py CHECKOUT SCRATCH_DIR

runs `python -m s2s_jax.cli` with PYTHONPATH=CHECKOUT and prints one PASS/FAIL line per point: the best
checkpoint after two kills (1), two trainers (2), readers beside a live run (3), the TensorBoard curve of a
killed run (4), Ctrl-C (5), the --minutes budget (6), one-line errors (8), stderr noise, --version and
streaming stdin (9), then the time of two `translate` calls.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.tensorboard_curve import tensorboard_curve  # noqa: E402

REPO = Path(sys.argv[1]).resolve()
ROOT = Path(sys.argv[2]).resolve()
shutil.rmtree(ROOT, ignore_errors=True)
ROOT.mkdir(parents=True)
ENV = {**{k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu",
       "S2S_JAX_CACHE_DIR": str(ROOT / "cache")}
CLI = [sys.executable, "-m", "s2s_jax.cli"]
TINY = ["--preset", "addition-gru", "--digits", "1", "--batch-size", "8", "--set", "emb_dim=8", "--set", "hid_dim=8",
        "--no-progress"]


def run(*args, timeout=300, **kw):
    return subprocess.run([*CLI, *args], env=ENV, capture_output=True, text=True, timeout=timeout, **kw)


def start(*args):
    return subprocess.Popen([*CLI, *args], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def steps_logged(w):
    f = w / "train.jsonl"
    return [json.loads(x)["step"] for x in f.read_text().splitlines() if x.strip()] if f.exists() else []


def wait_step(proc, w, n, limit=240):
    end = time.monotonic() + limit
    while time.monotonic() < end and proc.poll() is None:
        if steps_logged(w) and steps_logged(w)[-1] >= n:
            return True
        time.sleep(0.01)
    return False


def one_line(p):
    return p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr


def report(point, ok, detail):
    print(f"{'PASS' if ok else 'FAIL'}  {point}: {detail}", flush=True)


# 1 + 4: best survives two kills; TB events survive SIGKILL
w = ROOT / "best"
args = ["train", "--workdir", str(w), *TINY, "--steps", "100000", "--eval-every", "50", "--checkpoint-every", "10",
        "--keep", "1", "--log-every", "5", "--lr", "1e-30", "--schedule", "constant"]
p = start(*args)
wait_step(p, w, 75)
p.kill()
p.wait()
tb_steps = [s for s, _ in tensorboard_curve(w / "tb", "train/loss")]
last_logged = steps_logged(w)[-1]
jsonl_steps = steps_logged(w)
p = start(*args)  # resumed, killed again before its next evaluation
wait_step(p, w, last_logged + 12)
p.kill()
p.wait()
m = json.loads((w / "manifest.json").read_text())
report(1, m.get("best") == 50 and (w / "checkpoints" / "50").is_dir(),
       f"after two kills best={m.get('best')}, kept steps {sorted(m['steps'], key=int)}")
tb_last = tb_steps[-1] if tb_steps else None
report(4, tb_steps == jsonl_steps, f"killed run: TensorBoard has train/loss up to step {tb_last}, train.jsonl up to "
           f"{jsonl_steps[-1]}")

# 2: two trainers
w = ROOT / "two"
a = start("train", "--workdir", str(w), *TINY, "--steps", "100000", "--eval-every", "0", "--checkpoint-every", "20")
wait_step(a, w, 100)
t0 = time.monotonic()
try:
    b = run("train", "--workdir", str(w), *TINY, "--steps", "100000", "--eval-every", "0", "--checkpoint-every", "20",
            timeout=90)
    detail = f"second trainer exit {b.returncode} after {time.monotonic() - t0:.1f}s: {b.stderr.strip()[-160:]!r}"
    ok = one_line(b) and "in use by PID" in b.stderr
except subprocess.TimeoutExpired:
    ok, detail = False, "second trainer still running after 90 s"

# 3: readers beside the live run (a is still training)
fails = []
for _ in range(8):
    r = run("translate", "--workdir", str(w), "--checkpoint", "latest", "1+2")
    if r.returncode != 0:
        fails.append(r.stderr.strip().splitlines()[-1][:120] if r.stderr.strip() else f"exit {r.returncode}")
live = a.poll() is None
a.kill()
a.wait()
report(2, ok, detail)
report(3, live and not fails, f"{len(fails)} of 8 translate calls failed beside a live run {fails[:2]}")

# 5: Ctrl-C
w = ROOT / "ctrlc"
p = start("train", "--workdir", str(w), *TINY, "--steps", "100000", "--eval-every", "0", "--checkpoint-every", "1000",
          "--log-every", "10")
wait_step(p, w, 150)
p.send_signal(signal.SIGINT)
out, err = p.communicate(timeout=120)
latest = json.loads((w / "manifest.json").read_text())["latest"] if (w / "manifest.json").exists() else None
report(5, "Traceback" not in err and latest is not None and latest >= 150,
       f"exit {p.returncode}, traceback {'Traceback' in err}, saved step {latest} (interrupted after step >= 150)")

# 6: --minutes
w = ROOT / "minutes"
t0 = time.monotonic()
r = run("train", "--workdir", str(w), "--preset", "addition-attn", "--digits", "2", "--batch-size", "32", "--steps",
        "1000000", "--eval-every", "0", "--minutes", "0.25", "--set", "decoding.beam=4", "--no-progress")
wall = time.monotonic() - t0
report(6, r.returncode == 0 and wall <= 15 * 1.1 + 6, f"--minutes 0.25 (15 s): the process took {wall:.1f} s")

# 8: one-line errors
w = ROOT / "add"
run("train", "--workdir", str(w), *TINY, "--steps", "30", "--eval-every", "0")
(ROOT / "in.txt").write_text("1+2\n\n3+4\n")
cases = {
    "top-k above the vocabulary": run("translate", "--workdir", str(w), "--sample", "--top-k", "999", "1+2"),
    "--input with arguments": run("translate", "--workdir", str(w), "--input", str(ROOT / "in.txt"), "1+2"),
    "--task translation without --data": run("train", "--workdir", str(ROOT / "t"), *TINY, "--task", "translation"),
    "--beam 0": run("translate", "--workdir", str(w), "--beam", "0", "1+2"),
    "--alpha nan": run("translate", "--workdir", str(w), "--beam", "2", "--alpha", "nan", "1+2"),
}
for name, r in cases.items():
    report(8, one_line(r), f"{name}: exit {r.returncode}, {len(r.stderr.strip().splitlines())} stderr line(s)")
r = run("translate", "--workdir", str(w), "--input", str(ROOT / "in.txt"))
report(8, one_line(r) and "remove the pair" not in r.stderr, f"empty input line: {r.stderr.strip()[-90:]!r}")

# 9: noise, --version, streaming
r = run("translate", "--workdir", str(w), "1+2")
report(9, r.stderr == "", f"translate stderr: {r.stderr.strip()[:100]!r}")
r = run("--version")
report(9, r.returncode == 0, f"--version: exit {r.returncode} {r.stdout.strip()!r}")
p = subprocess.Popen([*CLI, "translate", "--workdir", str(w)], env=ENV, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE, text=True, bufsize=1)
p.stdin.write("1+2\n")
p.stdin.flush()
import select  # noqa: E402

ready = select.select([p.stdout], [], [], 60)[0]
report(9, bool(ready), "streaming: first answer before stdin closed" if ready else "no answer in 60 s while stdin open")
p.kill()
for _ in range(2):
    t0 = time.monotonic()
    run("translate", "--workdir", str(w), "1+2")
    print(f"      translate call: {time.monotonic() - t0:.2f} s")
