"""How the classical pipeline was chosen: candidate feature settings scored by nested, patient-grouped
5-fold cross-validation on the train and validation scans only (the split's test part is never read).

    python benchmarks/classical_search.py --data DATA --split-file SPLIT [--seeds 0 1 2] [--only NAME ...]

For each candidate and seed: 5 outer folds over the train+val patients (patients sharing an identical
image kept together); in each, C and gamma are searched by 3-fold patient-grouped CV on the fold's
training patients (baselines.model.search_hyperparameters), the calibrated SVM is fitted there and
scored on the held-out patients; the pooled predictions give accuracy and macro-F1. A seed sets the
folds and the SVM's random state. Prints the mean and SD over seeds.
"""

import argparse
from collections import Counter
from pathlib import Path

import numpy as np

from baselines.cache import cached_features
from baselines.features import FeatureSettings
from baselines.model import OCTSVMClassifier, search_hyperparameters
from octcore.data import discover, grouped_kfold, load_split, split_scans
from octcore.labels import CLASSES
from octcore.metrics import evaluate

ONE_GRID = ((0, 0),)
CANDIDATES = {  # name -> FeatureSettings fields changed from the current defaults (the chosen pipeline)
    "previous pipeline (retina band, one grid)": {"rpe_strip": False, "grid_shifts": ONE_GRID},
    "+ RPE strip at twice the resolution": {"grid_shifts": ONE_GRID},
    "+ half-cell-shifted grids": {"rpe_strip": False},
    "both (chosen)": {},
    "both, 9 grids": {"grid_shifts": tuple((dy, dx) for dy in (0, 4, -4) for dx in (0, 4, -4))},
}


def nested_cv(X: np.ndarray, y: np.ndarray, groups: np.ndarray, scans: list, seed: int) -> tuple[dict, Counter]:
    proba, chosen = np.zeros((len(y), len(CLASSES))), Counter()
    for train, test in grouped_kfold(scans, 5, seed=seed, groups=groups):
        best = search_hyperparameters(X[train], y[train], groups[train], random_state=seed)
        chosen[f"C={best['C']:g} gamma={best['gamma_scale']:g}/d"] += 1
        model = OCTSVMClassifier(C=best["C"], gamma_scale=best["gamma_scale"], random_state=seed)
        proba[test] = model.fit(X[train], y[train], groups[train]).predict_proba(X[test])
    return evaluate(y, proba, n_boot=0), chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--split-file", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--only", nargs="+", help="candidates to run (default all)")
    parser.add_argument("--cache-dir", default="cache")
    args = parser.parse_args()
    scans = discover(args.data)
    split = split_scans(scans, args.split_file, progress=False)
    kept = [i for i, part in enumerate(load_split(args.split_file, scans)) if part in ("train", "val")]
    scans, groups = [scans[i] for i in kept], split.groups[kept]
    y = np.array([s.label_id for s in scans])
    print(f"{len(scans)} train+val scans of {len(set(groups))} patient groups; the test part is not read")
    for name, changes in CANDIDATES.items():
        if args.only and name not in args.only:
            continue
        X = cached_features(scans, FeatureSettings(**changes), Path(args.cache_dir), progress=False)
        runs = [nested_cv(X, y, groups, scans, seed) for seed in args.seeds]
        accuracy = np.array([r[0]["accuracy"] for r in runs])
        macro_f1 = np.array([r[0]["macro_f1"] for r in runs])
        print(
            f"{name:44s} accuracy {accuracy.mean():.3f} (SD {accuracy.std(ddof=1) if len(runs) > 1 else 0:.3f}), "
            f"macro-F1 {macro_f1.mean():.3f}, {X.shape[-1]:,} features per view; C, gamma chosen: "
            f"{dict(sum((r[1] for r in runs), Counter()))}",
            flush=True,
        )


if __name__ == "__main__":
    main()
