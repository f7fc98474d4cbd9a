"""The classical model's out-of-scope detector, fitted on its training scans with their speckled copies (as the
trainer has done since the speckle round) or on the training scans alone; scored on validation scans only.

    python benchmarks/classical_detector.py --data DATA --split-file SPLIT --ood DIR --model FOLDER

DIR is `benchmarks/out_of_scope.py --models classical`'s folder: the HOG+LBP SVMs its default command trained on
the split's train part without DRUSEN and without DME. For each of them and each candidate, the trainer's detector
(`models.scope.fit_calibration`'s settings) is fitted on the in-scope training scans' features and thresholded on
the in-scope validation scans; printed: the AUROC of the in-scope validation scans against the left-out class's,
and the share of the training scans themselves flagged. FOLDER is the default model trained on all four classes:
per candidate, the share of the validation scans flagged as they are and under the acquisition benchmark's heavy
speckle, and of the training scans. The split's test part is never read. The rule that picks from these figures is
in docs/results.md (*The classical detector and the speckled copies*), committed before the first run.
"""

import argparse
from pathlib import Path

import numpy as np
from acquisition_shift import CHANGES, changed  # run as a script, so benchmarks/ is on the path
from sklearn.metrics import roc_auc_score

from baselines.cache import cached_features
from baselines.features import scan_features
from models.classical import ClassicalModel, load_classical, scaled_features
from models.scope import OutOfScope, fit_detector
from octcore.data import discover, parallel_map, split_scans
from octcore.imaging import read_scan
from octcore.labels import CLASSES

CANDIDATES = ("training scans and their speckled copies", "training scans alone")
SPECKLE = "more speckle (x gamma noise, sd 0.5)"


def speckled_features(job: tuple[Path, int, object]) -> np.ndarray:
    """(2, d) one scan's features under the acquisition benchmark's heavy speckle, its seed the scan's index in its
    part, as the benchmark seeds it (module level, so worker processes can run it)."""
    path, index, settings = job
    return scan_features(changed(read_scan(path), CHANGES[SPECKLE], index), settings)


def detectors(features: np.ndarray, labels: np.ndarray, groups: np.ndarray, n_train: int) -> dict[str, OutOfScope]:
    """Each candidate's detector, the trainer's settings; rows [0, n_train) are the training scans, the rest their
    speckled copies, in the same order."""
    rows = {CANDIDATES[0]: slice(None), CANDIDATES[1]: slice(0, n_train)}
    return {name: fit_detector("classical", features[r], labels[r], groups[r]) for name, r in rows.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--split-file", required=True)
    parser.add_argument("--ood", required=True, help="benchmarks/out_of_scope.py's --out folder (classical models)")
    parser.add_argument("--model", required=True, help="the default HOG+LBP SVM trained on all four classes")
    parser.add_argument("--left-out", nargs="+", default=["DRUSEN", "DME"], choices=CLASSES)
    parser.add_argument("--cache-dir", default="cache")
    args = parser.parse_args()
    scans = discover(args.data)
    split = split_scans(scans, args.split_file, progress=False)
    labels = np.array([s.label_id for s in scans])
    train, val = np.array(split.indices("train")), np.array(split.indices("val"))
    cache = Path(args.cache_dir)

    def features_of(model: ClassicalModel, rows: np.ndarray, copy: int = 0) -> np.ndarray:
        """The model's scaled features (what its detector reads) of scans[rows], or of their speckled copy."""
        X = cached_features([scans[i] for i in rows], model.settings, cache, False, copy=[copy] * len(rows))
        return scaled_features(model.estimator, X)

    # Near: a class left out of training; each candidate scored on the validation scans.
    print("| left out | candidate | validation AUROC, in scope against the left-out class | training scans flagged |")
    print("|---|---|---|---|")
    scores: dict[str, list[float]] = {name: [] for name in CANDIDATES}
    for left in args.left_out:
        trained = load_classical(Path(args.ood) / f"without-{left}" / "hog-lbp-svm")
        keep = labels[train] != CLASSES.index(left)
        inside, outside = val[labels[val] != CLASSES.index(left)], val[labels[val] == CLASSES.index(left)]
        taught = train[keep]
        X = np.concatenate([features_of(trained, taught), features_of(trained, taught, copy=1)])
        y, g = np.tile(labels[taught], 2), np.tile(split.groups[taught], 2)
        X_in, X_out = features_of(trained, inside), features_of(trained, outside)
        truth = np.r_[np.zeros(len(inside)), np.ones(len(outside))]
        for name, detector in detectors(X, y, g, len(taught)).items():
            detector.with_threshold(X_in)
            auroc = roc_auc_score(truth, np.r_[detector.score(X_in), detector.score(X_out)])
            own = np.mean(detector.score(X[: len(taught)]) > detector.threshold)
            scores[name].append(auroc)
            print(f"| {left} ({len(outside)} scans) | {name} | {auroc:.4f} | {own:.1%} |", flush=True)
    for name, values in scores.items():
        print(f"score (mean AUROC) of {name}: **{np.mean(values):.4f}**")

    # The default model, all four classes: what each candidate flags of the validation scans, as they are and
    # under heavy speckle, and of the training scans.
    model = load_classical(Path(args.model))
    X = np.concatenate([features_of(model, train), features_of(model, train, copy=1)])
    X_val = features_of(model, val)
    jobs = [(scans[i].path, index, model.settings) for index, i in enumerate(val)]
    speckled = scaled_features(
        model.estimator, np.stack(parallel_map(speckled_features, jobs, "speckle", progress=False))
    )
    g = np.tile(split.groups[train], 2)
    print("\n| all four classes | validation flagged | under heavy speckle | training scans flagged |")
    print("|---|---|---|---|")
    for name, detector in detectors(X, np.tile(labels[train], 2), g, len(train)).items():
        detector.with_threshold(X_val)
        shares = [np.mean(detector.score(x) > detector.threshold) for x in (X_val, speckled, X[: len(train)])]
        print(f"| {name} | " + " | ".join(f"{s:.1%}" for s in shares) + " |")


if __name__ == "__main__":
    main()
