"""The classical models under speckle: candidate defaults scored by patient-grouped 4-fold cross-validation over
the train and validation scans, each held-out scan also changed as `acquisition_shift.py` changes the test scans
(the split's test part is never read).

    python benchmarks/classical_robustness.py --data DATA --split-file SPLIT [--only NAME ...]

The folds are the ViT recipe rounds' (`octcore.data.cross_validation_parts`, seed 0). In each, C and gamma are
searched by patient-grouped CV on the fold's training scans (and their speckled copies, where the candidate makes
them; scored on the held-out scans and copies, or on the held-out scans alone, as the candidate says), as
`python -m baselines.train` does; the calibrated SVM is fitted there and scores the held-out scans as
they are and under each of the benchmark's eight changes. Prints, per candidate, the pooled accuracy under each
condition and the candidate's score: the mean over the nine conditions. The rule that picks the default from these
figures is in docs/results.md (*The classical models under speckle*; for the last candidate, *The classical search
and the speckled copies*), each committed before its first run.
"""

import argparse
import time
from pathlib import Path

import numpy as np
from acquisition_shift import CHANGES, changed  # run as a script, so benchmarks/ is on the path

from baselines.cache import cached_features
from baselines.features import FeatureSettings, scan_features
from baselines.model import OCTSVMClassifier, search_hyperparameters
from octcore.data import cross_validation_parts, discover, parallel_map, split_scans
from octcore.imaging import read_scan

# name -> (FeatureSettings fields changed from the defaults, speckled copies of each training scan, whether the
# C and gamma search scores the copies too). The speckle round's four candidates first ("current" was the default
# then), then the search round's (docs/results.md, *The classical search and the speckled copies*).
CANDIDATES = {
    "current": ({}, 0, True),
    "median 3": ({"median": 3}, 0, True),
    "speckled copies": ({}, 1, True),
    "median 3 + speckled copies": ({"median": 3}, 1, True),
    "speckled copies, search scores the scans alone": ({}, 1, False),
}
FOLDS = 4


def changed_features(job: tuple[Path, int, dict]) -> np.ndarray:
    """(changes, 2, d): one scan's features under each of the benchmark's changes but the first (none), its seed the
    scan's index, as the benchmark seeds it (module level, so worker processes can run it)."""
    path, index, fields = job
    settings, scan = FeatureSettings(**fields), read_scan(path)
    return np.stack([scan_features(changed(scan, change, index), settings) for change in list(CHANGES.values())[1:]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--split-file", required=True)
    parser.add_argument("--only", nargs="+", choices=list(CANDIDATES), help="candidates to run (default all)")
    parser.add_argument("--cache-dir", default="cache")
    args = parser.parse_args()
    scans = discover(args.data)
    split = split_scans(scans, args.split_file, progress=False)
    folds = cross_validation_parts(split, scans, FOLDS, seed=0)
    pool = split.indices("train") + split.indices("val")
    used, groups = [scans[i] for i in pool], split.groups[pool]
    y = np.array([s.label_id for s in used])
    held_out = [np.array([parts[i] == "val" for i in pool]) for parts in folds]
    print(f"{len(used)} train+val scans of {len(set(groups))} patients in {FOLDS} folds; the test part is not read")
    print("| candidate | " + " | ".join(CHANGES) + " | score (mean) |\n|---|" + "---|" * (len(CHANGES) + 1))
    changed_by_settings: dict[str, np.ndarray] = {}
    for name, (fields, copies, score_copies) in CANDIDATES.items():
        if args.only and name not in args.only:
            continue
        start = time.perf_counter()
        settings = FeatureSettings(**fields)
        X = cached_features(used, settings, Path(args.cache_dir), progress=False)
        copied = [
            cached_features(used, settings, Path(args.cache_dir), False, copy=[k] * len(used))
            for k in range(1, copies + 1)
        ]
        key = repr(sorted(fields.items()))
        if key not in changed_by_settings:
            jobs = [(s.path, i, fields) for i, s in enumerate(used)]
            changed_by_settings[key] = np.stack(parallel_map(changed_features, jobs, "changed", progress=False), 1)
        conditions = np.concatenate([X[None], changed_by_settings[key]])  # (conditions, scans, 2, d)
        predicted = np.zeros((len(conditions), len(y)), dtype=int)
        for test in held_out:
            train = ~test
            X_train = np.concatenate([X[train], *(c[train] for c in copied)])
            y_train, g_train = np.tile(y[train], copies + 1), np.tile(groups[train], copies + 1)
            scored = None if score_copies else np.arange(len(y_train)) < train.sum()  # the scans come first
            best = search_hyperparameters(X_train, y_train, g_train, random_state=0, scored=scored)
            model = OCTSVMClassifier(C=best["C"], gamma_scale=best["gamma_scale"], random_state=0)
            model.fit(X_train, y_train, g_train)
            for c, features in enumerate(conditions):
                predicted[c, test] = model.predict_proba(features[test]).argmax(axis=1)
        accuracy = (predicted == y).mean(axis=1)
        cells = " | ".join(f"{a:.4f}" for a in accuracy)
        print(f"| {name} | {cells} | **{accuracy.mean():.4f}** |  ({time.perf_counter() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
