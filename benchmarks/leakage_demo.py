"""The patient-leakage trap, shown: one model, scored by image-level and by patient-level cross-validation.

    python benchmarks/leakage_demo.py DATA

The same classical model (HOG+LBP, RBF SVM, C=10, gamma=0.5/d) and the same cached features, scored
by 5-fold CV twice: folds drawn over images (a patient's other scans, or the same scan filed under
another patient id, can sit in training) and folds drawn over patients linked by identical images.
The difference is what a leaky split adds to a reported accuracy.
"""

import argparse

import numpy as np
from sklearn.model_selection import StratifiedKFold

from baselines.cache import cached_features
from baselines.features import FeatureSettings
from baselines.model import fixed_cv_accuracy
from octcore.data import discover, fingerprint_all, grouped_kfold, linked_groups, targets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", metavar="DATA", help="dataset folder (either layout)")
    data = parser.parse_args().data
    scans = discover(data)
    y, patients = targets(scans)
    X = cached_features(scans, FeatureSettings(), cache_dir=None, progress=False)
    groups = linked_groups(scans, [d for d, _ in fingerprint_all(scans, progress=False)])
    by_image = list(StratifiedKFold(5, shuffle=True, random_state=0).split(X, y))
    shared = np.mean(
        [len(set(patients[test]) & set(patients[train])) / len(set(patients[test])) for train, test in by_image]
    )
    print(
        f"{len(scans)} scans of {len(set(patients))} patients; in image-level folds {shared:.0%} of test patients "
        "also have scans in training"
    )
    print(f"image-level 5-fold CV (leaky):     accuracy {fixed_cv_accuracy(X, y, by_image):.3f}")
    print(
        "patient-level 5-fold CV (honest):  accuracy "
        f"{fixed_cv_accuracy(X, y, grouped_kfold(scans, 5, seed=0, groups=groups)):.3f}"
    )


if __name__ == "__main__":
    main()
