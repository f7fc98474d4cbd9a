"""What one evaluation (`octcore.metrics.evaluate`, every model's report) costs: time and peak memory.

    python benchmarks/evaluate_cost.py [--scans 190 1000 8000] [--repeats 3]

For each number of scans: random four-class probabilities leaning to the true class, and patient ids about half
as many as the scans (so the bootstrap resamples patients, as it does on the Kermany split), evaluated with the
default 1,000 bootstrap resamples. Prints the best of --repeats wall times and the peak memory that Python
allocated (`tracemalloc`) in one more run. The cost depends on the number of scans and patients, not on what the
scores are, so no model or scan is needed; run it from an older commit's worktree to compare.
"""

import argparse
import time
import tracemalloc

import numpy as np

from octcore.labels import CLASSES
from octcore.metrics import evaluate


def random_report_input(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    truth = rng.integers(0, len(CLASSES), n)
    proba = rng.dirichlet(np.ones(len(CLASSES)), n)
    proba[np.arange(n), truth] += 0.5
    return truth, proba / proba.sum(axis=1, keepdims=True), rng.integers(0, max(1, n // 2), n)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scans", type=int, nargs="+", default=[190, 1000, 8000], help="default: 190 1000 8000")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per size, the best kept (default 3)")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    print(f"{'scans':>7} {'best time':>10} {'peak memory':>12}")
    for n in args.scans:
        truth, proba, patients = random_report_input(n, rng)
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            evaluate(truth, proba, patients)
            times.append(time.perf_counter() - start)
        tracemalloc.start()
        evaluate(truth, proba, patients)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        print(f"{n:>7,} {min(times):>9.2f}s {peak / 2**20:>9.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
