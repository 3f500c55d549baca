#!/usr/bin/python3
"""Side-by-side benchmark of marlin's CPU kernels against numpy/OpenBLAS.

Runs the Go benchmarks of ./kernels and numpy on the same shapes, alternating
the two within one run (so both see the same machine load), and prints the
best figure of each side and the ratio ours/reference. Goals (issue 7):

  SGEMM 2048x4096x4096, all cores   >= 0.7x numpy (OpenBLAS)
  dequant-GEMV MXFP4/INT4           >= 0.6x a plain copy of the same bytes
  FWHT (one core)                   >= 2 GB/s

Needs Debian's python3-numpy and libopenblas0
(apt-get install -y python3-numpy libopenblas0). Usage:

  /usr/bin/python3 scripts/bench_numpy.py [--count N] [--only REGEX]

Timings on a shared machine are noisy; --count repeats each pair; the best
figure of each side, their ratio, the median of the per-pair ratios and the
ranges are printed.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

try:
    import numpy as np
except ImportError:
    sys.exit("numpy missing: apt-get install -y python3-numpy libopenblas0")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build_go_bench(tmp):
    exe = os.path.join(tmp, "kernels.bench")
    subprocess.run(["go", "test", "-c", "-o", exe, "./kernels"], cwd=ROOT, check=True)
    return exe


def go_bench(exe, pattern, benchtime):
    """Runs one Go benchmark and returns {sub-benchmark name: {unit: value}}."""
    out = subprocess.run(
        [exe, "-test.run", "^$", "-test.bench", pattern, "-test.benchtime", benchtime],
        cwd=os.path.join(ROOT, "kernels"), check=True, capture_output=True, text=True,
    ).stdout
    res = {}
    for line in out.splitlines():
        if not line.startswith("Benchmark"):
            continue
        f = line.split()
        name = re.sub(r"-\d+$", "", f[0])
        metrics = {}
        for i in range(2, len(f) - 1):
            try:
                metrics[f[i + 1]] = float(f[i])
            except ValueError:
                pass
        res[name] = metrics
    return res


def timeit(fn, reps):
    fn()  # warm up
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def np_sgemm(m, n, k):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    reps = 3 if m >= 1024 else 10
    return 2.0 * m * n * k / timeit(lambda: a @ b, reps) / 1e9


def np_fwht(rows, cols, block):
    """Blocked, normalised FWHT with numpy (one butterfly stage per pass)."""
    x = np.random.default_rng(2).standard_normal((rows, cols), dtype=np.float32)

    def run():
        y = x.reshape(-1, block)
        h = 1
        while h < block:
            y = y.reshape(y.shape[0], -1, 2, h)
            a, b = y[:, :, 0, :], y[:, :, 1, :]
            y = np.stack((a + b, a - b), axis=2)
            h *= 2
        return y.reshape(rows, cols) * np.float32(1 / np.sqrt(block))

    return 4.0 * rows * cols / timeit(run, 3) / 1e9


def np_cholesky(n):
    rng = np.random.default_rng(3)
    g = rng.standard_normal((n, n), dtype=np.float32)
    a = (g @ g.T) / np.float32(n) + np.eye(n, dtype=np.float32)
    return n**3 / 3.0 / timeit(lambda: np.linalg.cholesky(a), 2) / 1e9


def np_gemv_f32(rows, cols):
    """numpy y = W x with F32 weights, in GB/s of F32 weight bytes."""
    rng = np.random.default_rng(4)
    w = rng.standard_normal((rows, cols), dtype=np.float32)
    x = rng.standard_normal(cols, dtype=np.float32)
    return 4.0 * rows * cols / timeit(lambda: w @ x, 20) / 1e9


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=3, help="repetitions of each pair (best and median ratio reported)")
    ap.add_argument("--only", default="", help="run only cases whose name matches this regex")
    args = ap.parse_args()

    cores = os.cpu_count()
    print(f"machine: {cores} cores; numpy {np.__version__}; OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'default (all)')}")
    print("figures are the best of --count alternating runs (ratio of bests; the median ratio of")
    print("adjacent pairs and the ranges follow); a loaded machine makes them noisy\n")

    cases = []  # (name, go pattern, go result key, unit, ref fn | None, ref key, ref label, goal)
    for m, n, k in [(1, 4096, 4096), (128, 4096, 4096), (2048, 4096, 4096)]:
        cases.append((f"sgemm {m}x{n}x{k}", f"^BenchmarkSgemm$/^{m}x{n}x{k}/tB=false$",
                      f"BenchmarkSgemm/{m}x{n}x{k}/tB=false", "GFLOP/s",
                      (lambda m=m, n=n, k=k: np_sgemm(m, n, k)), None, "numpy a@b",
                      0.7 if m == 2048 else None, "3x" if m == 2048 else "5x"))
    for fmt in ["mxfp4", "int4"]:
        cases.append((f"dequant-gemv {fmt} 4096x4096", f"^BenchmarkDequantGEMV$/^{fmt}$/^(copy-)?threads=0$",
                      f"BenchmarkDequantGEMV/{fmt}/threads=0", "GB/s", None,
                      f"BenchmarkDequantGEMV/{fmt}/copy-threads=0", "copy of same bytes", 0.6, "100x"))
        # The exact path (float32 activations, Options.F32Activations).
        cases.append((f"dequant-gemv {fmt} f32 activations", f"^BenchmarkDequantGEMV$/^{fmt}$/^(copy-|f32act-)threads=0$",
                      f"BenchmarkDequantGEMV/{fmt}/f32act-threads=0", "GB/s", None,
                      f"BenchmarkDequantGEMV/{fmt}/copy-threads=0", "copy of same bytes", None, "100x"))
        # The same pair per CPU second of the process (both sides alike):
        # steadier than wall-clock GB/s when other processes hold the cores.
        cases.append((f"dequant-gemv {fmt} per cpu-s", f"^BenchmarkDequantGEMV$/^{fmt}$/^(copy-)?threads=0$",
                      f"BenchmarkDequantGEMV/{fmt}/threads=0", "GB/cpu-s", None,
                      f"BenchmarkDequantGEMV/{fmt}/copy-threads=0", "copy, per CPU second", None, "100x"))
    cases.append(("fwht block 128, 1 core", "^BenchmarkFWHT$/^block=128$/threads=1",
                  "BenchmarkFWHT/block=128/threads=1", "GB/s",
                  (lambda: np_fwht(1024, 4096, 128)), None, "numpy butterflies (abs goal 2 GB/s)", None, "20x"))
    cases.append(("cholesky 4096", "^BenchmarkCholesky$", "BenchmarkCholesky", "GFLOP/s",
                  (lambda: np_cholesky(4096)), None, "np.linalg.cholesky f32", None, "2x"))

    with tempfile.TemporaryDirectory() as tmp:
        exe = build_go_bench(tmp)
        rows = []
        for name, pat, key, unit, ref, refkey, reflabel, goal, bt in cases:
            if args.only and not re.search(args.only, name):
                continue
            ours, theirs = [], []
            for _ in range(args.count):
                res = go_bench(exe, pat, bt)
                if key not in res:
                    sys.exit(f"benchmark {key} not found in output: {sorted(res)}")
                ours.append(res[key][unit])
                if refkey:
                    theirs.append(res[refkey][unit])
                else:
                    theirs.append(ref())
            # Best of the runs estimates what each side can do when it gets
            # the machine; the median of the per-pair ratios shows the spread.
            o, t = max(ours), max(theirs)
            ratio = o / t if t else float("nan")
            pair = statistics.median(a / b for a, b in zip(ours, theirs) if b)
            verdict = ""
            if goal is not None:
                verdict = "goal %.2fx: %s" % (goal, "MET" if ratio >= goal else "missed")
            if name.startswith("fwht"):
                verdict = "goal 2 GB/s/core: %s" % ("MET" if o >= 2 else "missed")
            rows.append((name, o, unit, reflabel, t, ratio, verdict))
            print(f"{name:30s} ours {o:8.2f} {unit:8s} {reflabel:36s} {t:8.2f}  ratio {ratio:5.2f} (pairs: median {pair:5.2f}, {min(ours):.3g}..{max(ours):.3g} vs {min(theirs):.3g}..{max(theirs):.3g})  {verdict}", flush=True)
        if not args.only or re.search(args.only, "dequant"):
            print(f"\nfor scale: numpy F32 GEMV 4096x4096 reads {np_gemv_f32(4096, 4096):.2f} GB/s of F32 weights")


if __name__ == "__main__":
    main()
