"""What a model may not judge, and how sure it may be: an out-of-scope detector and a temperature.

Both are fitted by the trainers after training, on the model's own features and logits (never on
the test split), saved in the model folder (calibration.json, out_of_scope.safetensors) and applied
by the loaded model to every prediction, so the Space, the batch CSV and `compare` see the same.

- Out of scope (Lee et al. 2018): the model's features, scaled to unit length, are projected on their
  first principal components (fitted on the training split); a scan's score is its smallest
  Mahalanobis distance to a class mean (tied covariance). Scans far from every class the model was
  taught, a condition it never saw or an image that is not an OCT B-scan, score high (or, relative, by how much
  more they differ from every class than from the training scans as a whole: OutOfScope). The threshold
  is the split-conformal quantile of the validation scans' scores: on average at least ACCEPT of
  new in-scope scans pass it, however few validation scans there are. (Method, components and unit
  length were chosen on validation scans with one class left out of training: benchmarks/out_of_scope.py.)
- Temperature scaling (Guo et al. 2017): probabilities = softmax(logits / T), with T fitted on the
  validation split by minimising the negative log-likelihood; T > 1 softens an over-confident model.
"""

import json
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
from scipy.optimize import minimize_scalar

from models.base import read_json
from octcore.data import row_parts

CALIBRATION_FILE, SCOPE_FILE = "calibration.json", "out_of_scope.safetensors"
ACCEPT = 0.95  # share of new in-scope scans the threshold accepts, on average
MIN_WRONG_TO_FIT = 2  # validation scans the model must get wrong before a fitted temperature is kept (fit_calibration)
# Principal components the distance is measured in, per kind of model: chosen on validation scans with a
# class left out of training (benchmarks/out_of_scope.py --choose).
COMPONENTS = {"vit": 128, "classical": 32}
# Detectors cross-fitted on folds of the training patients (OutOfScope.fit), chosen the same way: the classical
# model's 9,504 features outnumber its training scans; the ViT's 768 do not, and one detector does not flag its
# training scans more than new ones.
FOLDS = {"vit": 1, "classical": 5}
# The relative distance's background weight (OutOfScope; 0: the distance itself), per kind of model: chosen the
# same way, in a round whose rule was written first (docs/results.md, "The relative distance").
BACKGROUND_WEIGHT = {"vit": 0.0, "classical": 0.0}
PCA_ROWS = 20_000  # training scans the principal axes are fitted on, at most
EXACT_SVD_VALUES = 20_000_000  # above this many (rows x features), the leading axes by randomized SVD


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    exp = np.exp(scaled - scaled.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature that minimises the negative log-likelihood of the labels (searched on log T)."""
    labels = np.asarray(labels, dtype=int)

    def nll(log_t: float) -> float:
        return -float(np.log(softmax(logits, np.exp(log_t))[np.arange(len(labels)), labels] + 1e-12).mean())

    return float(np.exp(minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded").x))


def unit(features: np.ndarray) -> np.ndarray:
    """Features scaled to unit length: the distance then measures direction, not the size of the activations."""
    features = np.asarray(features, dtype=np.float64)
    return features / (np.linalg.norm(features, axis=1, keepdims=True) + 1e-12)


def _as_float64(features: np.ndarray, unit_length: bool) -> np.ndarray:
    return unit(features) if unit_length else np.asarray(features, dtype=np.float64)


def project(
    features: np.ndarray, mean: np.ndarray, axes: np.ndarray, unit_length: bool, rows: np.ndarray | None = None
) -> np.ndarray:
    """(n, k) coordinates on the principal axes of `features` (or of its `rows`), a part at a time: a float64
    copy of a whole dataset's features (6 GB for the classical model's on the full dataset) is never made."""
    rows = np.arange(len(features)) if rows is None else rows
    z = np.empty((len(rows), len(axes)))
    for part in row_parts(len(rows)):
        z[part] = (_as_float64(features[rows[part]], unit_length) - mean) @ axes.T
    return z


def leading_axes(centred: np.ndarray, k: int) -> np.ndarray:
    """(k, d) the first k right singular vectors of a centred (n, d) matrix. Exact at the sample's size; beyond
    EXACT_SVD_VALUES by randomized SVD (Halko et al. 2011), which finds the k leading axes of the full
    dataset's 20,000 x 9,504 classical features in seconds, where the exact SVD computes all 9,504 of them."""
    if centred.size <= EXACT_SVD_VALUES:
        return np.linalg.svd(centred, full_matrices=False)[2][:k]
    from sklearn.utils.extmath import randomized_svd

    return randomized_svd(centred, k, n_oversamples=4 * k, n_iter=7, random_state=0)[2]


def _fit_detector(
    features: np.ndarray, labels: np.ndarray, rows: np.ndarray, k: int, unit_length: bool
) -> tuple[np.ndarray, ...]:
    """One detector's mean, k axes, class means and precision, and its background's mean and precision (one Gaussian
    over the same scans, for the relative distance), from the training scans in `rows`. The principal
    axes come from at most PCA_ROWS of them (all up to that size), drawn at random: the leading axes are stable
    long before that, and an SVD of the full dataset's classical features would need tens of GB. The mean, class
    means and covariance use every scan in `rows`."""
    mean = sum(_as_float64(features[rows[part]], unit_length).sum(axis=0) for part in row_parts(len(rows)))
    mean = mean / len(rows)
    sampled = rows
    if len(rows) > PCA_ROWS:
        sampled = np.sort(np.random.default_rng(0).choice(rows, PCA_ROWS, replace=False))
    centred = _as_float64(features[sampled], unit_length) - mean
    axes = leading_axes(centred, k)
    z, kept = project(features, mean, axes, unit_length, rows), labels[rows]
    classes = np.unique(kept)
    class_means = np.stack([z[kept == c].mean(axis=0) for c in classes])
    centred = z - class_means[np.searchsorted(classes, kept)]
    covariance = centred.T @ centred / len(z) + 1e-6 * np.eye(z.shape[1])
    # One Gaussian over all of them, classes ignored, for the relative distance (OutOfScope.score)
    background_mean = z.mean(axis=0)
    background = (z - background_mean).T @ (z - background_mean) / len(z) + 1e-6 * np.eye(z.shape[1])
    return mean, axes, class_means, np.linalg.inv(covariance), background_mean, np.linalg.inv(background)


@dataclass
class OutOfScope:
    """Mahalanobis distance to the nearest class mean, in a principal-component space of the features; with
    several detectors (cross-fitted, see `fit`), the smallest of their distances. Each array has one row per
    detector.

    Relative (Ren et al. 2021, "A simple fix to Mahalanobis distance for improving near-OOD detection"): with a
    background Gaussian (one mean and covariance over all training scans, classes ignored), a scan's score is its
    squared distance to the nearest class mean less `background_weight` times its squared distance to the
    background. Directions in which every retina varies (brightness, tilt, the device's texture) count in both and
    cancel; what is left is how much less the scan looks like any one condition than like retinas in general. At a
    weight of 1 (Ren et al.'s) an image far from every retina can cancel out too; below 1 it keeps a part of its
    distance."""

    mean: np.ndarray  # (detectors, d) feature mean of its training scans
    components: np.ndarray  # (detectors, k, d) principal axes
    class_means: np.ndarray  # (detectors, classes, k)
    precision: np.ndarray  # (detectors, k, k) inverse of the tied class covariance
    threshold: float = float("inf")
    unit_length: bool = True  # features scaled to unit length first
    background_weight: float = 0.0  # 0: the distance to the nearest class mean itself
    background_mean: np.ndarray | None = None  # (detectors, k), where background_weight > 0
    background_precision: np.ndarray | None = None  # (detectors, k, k)

    def __post_init__(self) -> None:
        if self.mean.ndim == 1:  # one detector, as folders saved before cross-fitting hold it
            self.mean, self.components, self.class_means, self.precision = (
                a[None] for a in (self.mean, self.components, self.class_means, self.precision)
            )
            if self.background_mean is not None:
                self.background_mean, self.background_precision = (
                    a[None] for a in (self.background_mean, self.background_precision)
                )

    @property
    def relative(self) -> bool:
        return self.background_weight > 0

    @cached_property
    def _projection(self) -> tuple[np.ndarray, np.ndarray]:
        """Every detector's axes as one float32 matrix, and each detector's mean projected on its axes."""
        stacked = np.ascontiguousarray(self.components.reshape(-1, self.components.shape[-1]), dtype=np.float32)
        return stacked, np.einsum("fd,fkd->fk", self.mean, self.components)

    def score(self, features: np.ndarray) -> np.ndarray:
        """(n,) distances, or with a background weight squared distances less the weighted background's (which may be
        negative); higher means further from everything the model was taught. Every detector's projection
        in one float32 product: (x - mean) @ axes.T = x @ axes.T - mean @ axes.T, so the detectors' axes are read
        once per scan, at half the bytes (read in float64, one detector after another, the classical model's
        axes slowed the Space's request beside the ViT)."""
        detectors, k, _ = self.components.shape
        stacked, offsets = self._projection
        z = np.empty((len(features), detectors, k))
        for part in row_parts(len(features)):
            x = _as_float64(features[part], self.unit_length).astype(np.float32)
            z[part] = (x @ stacked.T).reshape(-1, detectors, k) - offsets
        gaps = z[:, :, None, :] - self.class_means[None]
        nearest = np.einsum("nfcj,fjk,nfck->nfc", gaps, self.precision, gaps).min(axis=2)  # (n, detectors) squared
        if not self.relative:
            return np.sqrt(nearest.min(axis=1))
        off = z - self.background_mean[None]
        background = np.einsum("nfj,fjk,nfk->nf", off, self.background_precision, off)
        return (nearest - self.background_weight * background).min(axis=1)

    @classmethod
    def fit(
        cls,
        features: np.ndarray,
        labels: np.ndarray,
        components: int = 64,
        unit_length: bool = True,
        folds: int = 1,
        groups: np.ndarray | None = None,
        background_weight: float = 0.0,
    ) -> "OutOfScope":
        """One detector on every training scan, or with folds > 1 one per fold of patients (`groups`), each fitted
        on the other folds, and a scan's score the smallest of theirs. Why: where the features outnumber the
        training scans (the classical model's 9,504 against a few hundred), the principal axes follow the
        training scans' own variation, so a training scan sits further out than a new scan, and one detector
        flags its own training scans several times as often as new ones. Cross-fitted, every training scan was
        left out of one detector, which judges it as it judges a new scan (benchmarks/out_of_scope.py --choose
        compares both on validation scans of a class left out of training)."""
        from sklearn.model_selection import StratifiedGroupKFold

        if background_weight < 0:
            raise ValueError(f"background_weight must be 0 or more, not {background_weight}")
        features, labels = np.asarray(features), np.asarray(labels)
        groups = np.arange(len(labels)) if groups is None else np.asarray(groups)
        classes, fold_rows = np.unique(labels), [np.arange(len(labels))]
        if folds > 1 and min(len(np.unique(groups[labels == c])) for c in classes) >= folds:
            split = StratifiedGroupKFold(folds, shuffle=True, random_state=0).split(features, labels, groups)
            fold_rows = [kept for kept, _ in split]
            if any(len(np.unique(labels[kept])) < len(classes) for kept in fold_rows):
                fold_rows = [np.arange(len(labels))]  # each detector must know every class
        if folds > 1 and len(fold_rows) == 1:
            warnings.warn(
                f"too few patients of some class for {folds} folds: one out-of-scope detector, which flags its own "
                "training scans more often than new ones",
                stacklevel=2,
            )
        # the same number of axes for every detector (the smallest fold's limit), so that their arrays stack
        k = min(components, min(min(len(rows), PCA_ROWS) for rows in fold_rows) - 1, features.shape[1])
        fitted = [_fit_detector(features, labels, rows, k, unit_length) for rows in fold_rows]
        mean, axes, class_means, precision, background_mean, background = (np.stack(a) for a in zip(*fitted))
        if not background_weight:
            background_mean = background = None
        return cls(
            mean,
            axes,
            class_means,
            precision,
            unit_length=unit_length,
            background_weight=background_weight,
            background_mean=background_mean,
            background_precision=background,
        )

    def with_threshold(self, in_scope_features: np.ndarray, accept: float = ACCEPT) -> "OutOfScope":
        """The ceil((n + 1) * accept)-th smallest of n in-scope scores (split conformal): a new in-scope scan
        passes with probability at least `accept` (the highest score, when n is too small to promise it)."""
        scores = np.sort(self.score(in_scope_features))
        self.threshold = float(scores[min(int(np.ceil((len(scores) + 1) * accept)), len(scores)) - 1])
        return self

    def arrays(self) -> dict[str, np.ndarray]:
        arrays = {
            "mean": self.mean,
            "components": self.components,
            "class_means": self.class_means,
            "precision": self.precision,
        }
        if self.relative:
            arrays.update(background_mean=self.background_mean, background_precision=self.background_precision)
        return arrays


@dataclass
class Calibration:
    """What a model folder says about trusting its answers; a model without one is used as it is."""

    temperature: float = 1.0
    out_of_scope: OutOfScope | None = None
    report: dict = field(default_factory=dict)  # how both were fitted, and their figures on validation

    def save(self, folder: Path) -> None:
        from safetensors.numpy import save_file

        record = {"temperature": self.temperature, **self.report}
        if self.out_of_scope is not None:
            record["out_of_scope"] = {
                **record.get("out_of_scope", {}),
                "threshold": self.out_of_scope.threshold,
                "unit_length": self.out_of_scope.unit_length,
                "background_weight": self.out_of_scope.background_weight,
            }
            save_file(self.out_of_scope.arrays(), folder / SCOPE_FILE)
        (folder / CALIBRATION_FILE).write_text(json.dumps(record, indent=2))

    @classmethod
    def load(cls, folder: Path) -> "Calibration":
        path = folder / CALIBRATION_FILE
        if not path.is_file():
            return cls()
        record = read_json(path)
        scope = None
        if (folder / SCOPE_FILE).is_file() and "out_of_scope" in record:
            from safetensors.numpy import load_file

            arrays = {k: v.astype(np.float64) for k, v in load_file(folder / SCOPE_FILE).items()}
            saved = record["out_of_scope"]
            scope = OutOfScope(
                **arrays,
                threshold=float(saved["threshold"]),
                unit_length=saved.get("unit_length", True),
                background_weight=float(saved.get("background_weight", 0.0)),
            )
        return cls(float(record["temperature"]), scope, {k: v for k, v in record.items() if k != "temperature"})


def fit_detector(kind: str, features: np.ndarray, labels: np.ndarray, groups: np.ndarray | None = None) -> OutOfScope:
    """The out-of-scope detector the trainers fit for a model of this kind (COMPONENTS, FOLDS), before its threshold;
    groups: the scans' patients, for cross-fitting."""
    return OutOfScope.fit(
        features, labels, COMPONENTS[kind], folds=FOLDS[kind], groups=groups, background_weight=BACKGROUND_WEIGHT[kind]
    )


def fit_calibration(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    val_logits: np.ndarray,
    val_features: np.ndarray,
    val_labels: np.ndarray,
    kind: str,
    features_name: str,
    train_groups: np.ndarray | None = None,
) -> Calibration:
    """Temperature and out-of-scope detector from the training and validation splits, with their report.
    train_groups: the training scans' patients, for cross-fitting the detector (FOLDS) by patient."""
    from octcore.metrics import expected_calibration_error

    fitted = fit_temperature(val_logits, val_labels)
    before = expected_calibration_error(val_labels, softmax(val_logits))
    with_fitted = expected_calibration_error(val_labels, softmax(val_logits, fitted))
    # A temperature minimises the likelihood's loss, not the calibration error people see; on a small validation
    # split the two can disagree (an SVM's probabilities come already calibrated by cross-validation), and then
    # the model's own probabilities are kept. So are they where the model gets every validation scan right: the
    # loss then falls without end as the temperature shrinks, the search stops at its smallest, and the scans do
    # not say how sure the model may be (a ViT trained without one class was sharpened twentyfold so: certain of
    # every scan, of the condition it never saw too; the quick start's 19 validation scans risk the same). With one
    # scan wrong the loss falls until that scan's loss stops it, so its margin alone decides how sure the model may
    # be (the sixth round's ViT, right on 94 of 95 in float32, was sharpened 5.5-fold so): two at least, then.
    wrong = int((np.argmax(val_logits, axis=1) != np.asarray(val_labels)).sum())
    temperature = fitted if with_fitted <= before and wrong >= MIN_WRONG_TO_FIT else 1.0
    scope = fit_detector(kind, train_features, train_labels, train_groups).with_threshold(val_features)
    detectors = len(scope.mean)
    report = {
        "fitted_on": {
            "temperature": f"validation split ({len(val_labels)} scans)",
            "out_of_scope": f"training split ({len(train_labels)} scans), threshold on validation",
        },
        "fitted_temperature": fitted,
        "temperature_rule": "the validation NLL's minimiser, kept only where it lowers the validation ECE and the "
        f"model gets at least {MIN_WRONG_TO_FIT} validation scans wrong (with none, the loss falls without end as the "
        "temperature shrinks; with one, that scan's margin alone sets it)",
        "validation_scans_wrong": wrong,
        "ece_validation": {
            "before": before,
            "with_fitted_temperature": with_fitted,
            "after": expected_calibration_error(val_labels, softmax(val_logits, temperature)),
        },
        "out_of_scope": {
            "method": "Mahalanobis distance to the nearest class mean, features at unit length"
            + (
                f", relative: squared, less {scope.background_weight:g} x the squared distance to one Gaussian over "
                "all training scans"
                if scope.relative
                else ""
            )
            + (
                f"; cross-fitted: the smallest of {detectors} such distances, from detectors each fitted without "
                f"one of {detectors} folds of the training patients"
                if detectors > 1
                else ""
            ),
            "features": features_name,
            "components": int(scope.components.shape[1]),
            "detectors": detectors,
            "accept": ACCEPT,
        },
    }
    return Calibration(temperature, scope, report)


def test_summary(calibration: Calibration, logits: np.ndarray, labels: np.ndarray, flagged: np.ndarray) -> dict:
    """metrics.json's record of calibration and out-of-scope flags on the test split (all in scope)."""
    from octcore.metrics import expected_calibration_error

    return {
        "calibration": {
            "temperature": calibration.temperature,
            "ece_before": expected_calibration_error(labels, softmax(logits)),
            "ece_after": expected_calibration_error(labels, softmax(logits, calibration.temperature)),
        },
        "out_of_scope": {"in_scope_flagged": float(np.mean(flagged))} if calibration.out_of_scope else None,
    }
