"""What each preprocessing step adds to the classical baseline (HOG+LBP, RBF SVM).

    python benchmarks/baseline_ablation.py DATA

Each row adds one step; all rows use the same 5-fold patient-grouped folds (linked groups) and
fixed C=10, gamma=0.5/d with an uncalibrated SVM, so only the features change. The searched,
calibrated model is benchmarks/baseline_cv.py.
"""

import argparse
from functools import partial

import numpy as np
from PIL import Image

from baselines.features import FeatureSettings, grid_lbp, hog_features, scan_features
from baselines.model import fixed_cv_accuracy
from octcore.data import discover, fingerprint_all, grouped_kfold, linked_groups, parallel_map, targets
from octcore.imaging import read_scan, resize

PLAIN = {"rpe_strip": False, "grid_shifts": ((0, 0),)}  # the first steps: the retina band alone, one cell grid


def plain_224(path) -> np.ndarray:
    """The usual starting point: the whole scan squashed to 224x224, HOG + LBP, no mirror."""
    small, settings = resize(read_scan(path).gray, (224, 224), Image.Resampling.BOX), FeatureSettings(**PLAIN)
    lbp = np.sqrt(grid_lbp(small, settings.lbp_grid, settings)).ravel()
    return np.concatenate([hog_features(small, settings), lbp])[None].astype(np.float32)


def band(path, mirror: bool, **settings) -> np.ndarray:
    pair = scan_features(path, FeatureSettings(**settings))
    return pair if mirror else pair[:1]


STEPS = [
    ("whole scan resized to 224x224", plain_224),
    ("+ padding removed, fixed band crop (no flattening)", partial(band, False, flatten=False, sigma=0.0, **PLAIN)),
    ("+ flattened along the fitted RPE curve", partial(band, False, sigma=0.0, **PLAIN)),
    ("+ Gaussian denoising (sigma 0.7)", partial(band, False, **PLAIN)),
    ("+ mirror image as a second view (train and predict)", partial(band, True, **PLAIN)),
    ("+ RPE strip at twice the resolution", partial(band, True, grid_shifts=((0, 0),))),
    ("+ histograms averaged over half-cell-shifted grids", partial(band, True)),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", metavar="DATA", help="dataset folder (either layout)")
    data = parser.parse_args().data
    scans = discover(data)
    y, _ = targets(scans)
    groups = linked_groups(scans, [d for d, _ in fingerprint_all(scans, progress=False)])
    folds = grouped_kfold(scans, 5, seed=0, groups=groups)
    for name, features in STEPS:
        X = np.stack(parallel_map(features, [s.path for s in scans], name, progress=False))
        print(f"{name:55s} accuracy {fixed_cv_accuracy(X, y, folds):.3f}  ({X.shape[-1]} features)", flush=True)


if __name__ == "__main__":
    main()
