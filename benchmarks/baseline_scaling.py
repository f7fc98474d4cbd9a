"""Estimate how long the classical baseline takes to train on the full Kermany dataset (84,484 scans).

    python benchmarks/baseline_scaling.py DATA

Measures feature extraction on this machine's cores, then the fit time of the solver that 'auto'
picks above 10,000 scans (Nystroem + linear SVM) on the sample's features replicated with small
noise to growing sizes, fits time = a * n^b over the three largest sizes (where fixed costs no
longer dominate), and extrapolates: features + the 9-point x 3-fold
search + the calibrated final fit (4 fits). The exact RBF SVM is timed too, to show why it is
not used at that size.
"""

import argparse
import time

import numpy as np

from baselines.cache import cached_features
from baselines.features import FeatureSettings
from baselines.model import PARAM_GRID, OCTSVMClassifier
from octcore.data import discover, targets

FULL_DATASET = 84_484  # Kermany 2018 (OCT2017): 83,484 train + 1,000 test scans
parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("data", metavar="DATA", help="dataset folder (either layout)")
data = parser.parse_args().data
scans = discover(data)
y, _ = targets(scans)
settings = FeatureSettings()

start = time.perf_counter()
X = cached_features(scans, settings, cache_dir=None, progress=False)
feature_rate = len(scans) / (time.perf_counter() - start)
print(
    f"features: {feature_rate:.0f} scans/s on all cores "
    f"-> {FULL_DATASET / feature_rate / 60:.1f} min for {FULL_DATASET:,} scans"
)


def replicated(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(X), n)
    noise = rng.normal(0, 0.05 * X.std(axis=(0, 1)), size=(n, *X.shape[1:])).astype(np.float32)
    return X[pick] + noise, y[pick]


def fit_seconds(solver: str, n: int) -> float:
    Xn, yn = replicated(n)
    start = time.perf_counter()
    OCTSVMClassifier(solver, calibration_folds=0).fit(Xn, yn)
    return time.perf_counter() - start


for solver, sizes in (("rbf", (1000, 2000, 4000, 6000)), ("nystroem", (4000, 8000, 16000, 32000))):
    seconds = [fit_seconds(solver, n) for n in sizes]
    b, log_a = np.polyfit(np.log(sizes[-3:]), np.log(seconds[-3:]), 1)
    one_fit = float(np.exp(log_a) * FULL_DATASET**b)
    fits = len(PARAM_GRID["C"]) * len(PARAM_GRID["gamma_scale"]) * 3 * (2 / 3) ** b + 4  # search folds train on 2/3
    print(
        f"{solver:9s} fit (one, uncalibrated): "
        + ", ".join(f"{n:,} scans {s:.1f} s" for n, s in zip(sizes, seconds))
        + f"; time ~ n^{b:.2f} -> one fit on {FULL_DATASET:,} scans ~{one_fit / 60:.0f} min; "
        f"search + calibrated fit ~{fits * one_fit / 3600:.1f} h (fits run one after another)"
    )
