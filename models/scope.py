"""What a model may not judge, and how sure it may be: an out-of-scope detector and a temperature.

Both are fitted by the trainers after training, on the model's own features and logits (never on
the test split), saved in the model folder (calibration.json, out_of_scope.safetensors) and applied
by the loaded model to every prediction, so the Space, the batch CSV and `compare` see the same.

- Out of scope (Lee et al. 2018): the model's features, scaled to unit length, are projected on their
  first principal components (fitted on the training split); a scan's score is its smallest
  Mahalanobis distance to a class mean (tied covariance). Scans far from every class the model was
  taught, a condition it never saw or an image that is not an OCT B-scan, score high. The threshold
  is the split-conformal quantile of the validation scans' scores: on average at least ACCEPT of
  new in-scope scans pass it, however few validation scans there are. (Method, components and unit
  length were chosen on validation scans with one class left out of training: benchmarks/out_of_scope.py.)
- Temperature scaling (Guo et al. 2017): probabilities = softmax(logits / T), with T fitted on the
  validation split by minimising the negative log-likelihood; T > 1 softens an over-confident model.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.optimize import minimize_scalar

from models.base import read_json
from octcore.data import row_parts

CALIBRATION_FILE, SCOPE_FILE = "calibration.json", "out_of_scope.safetensors"
ACCEPT = 0.95  # share of new in-scope scans the threshold accepts, on average
# Principal components the distance is measured in, per kind of model: chosen on validation scans with a
# class left out of training (benchmarks/out_of_scope.py --choose).
COMPONENTS = {"vit": 128, "classical": 32}
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


def project(features: np.ndarray, mean: np.ndarray, axes: np.ndarray, unit_length: bool) -> np.ndarray:
    """(n, k) coordinates on the principal axes, a part at a time: a float64 copy of a whole dataset's
    features (6 GB for the classical model's on the full dataset) is never made."""
    z = np.empty((len(features), len(axes)))
    for part in row_parts(len(features)):
        z[part] = (_as_float64(features[part], unit_length) - mean) @ axes.T
    return z


def leading_axes(centred: np.ndarray, k: int) -> np.ndarray:
    """(k, d) the first k right singular vectors of a centred (n, d) matrix. Exact at the sample's size; beyond
    EXACT_SVD_VALUES by randomized SVD (Halko et al. 2011), which finds the k leading axes of the full
    dataset's 20,000 x 9,504 classical features in seconds, where the exact SVD computes all 9,504 of them."""
    if centred.size <= EXACT_SVD_VALUES:
        return np.linalg.svd(centred, full_matrices=False)[2][:k]
    from sklearn.utils.extmath import randomized_svd

    return randomized_svd(centred, k, n_oversamples=4 * k, n_iter=7, random_state=0)[2]


@dataclass
class OutOfScope:
    """Mahalanobis distance to the nearest class mean, in a principal-component space of the features."""

    mean: np.ndarray  # (d,) feature mean of the training split
    components: np.ndarray  # (k, d) principal axes
    class_means: np.ndarray  # (classes, k)
    precision: np.ndarray  # (k, k) inverse of the tied class covariance
    threshold: float = float("inf")
    unit_length: bool = True  # features scaled to unit length first

    def score(self, features: np.ndarray) -> np.ndarray:
        """(n,) distances; higher means further from everything the model was taught."""
        z = project(features, self.mean, self.components, self.unit_length)
        gaps = z[:, None, :] - self.class_means[None]
        return np.sqrt(np.einsum("ncj,jk,nck->nc", gaps, self.precision, gaps).min(axis=1))

    @classmethod
    def fit(
        cls, features: np.ndarray, labels: np.ndarray, components: int = 64, unit_length: bool = True
    ) -> "OutOfScope":
        """The principal axes come from at most PCA_ROWS training scans (all of them up to that size), drawn at
        random: the leading axes are stable long before that, and an SVD of the full dataset's classical
        features would need tens of GB. The mean, class means and covariance use every scan."""
        features, labels = np.asarray(features), np.asarray(labels)
        mean = sum(_as_float64(features[part], unit_length).sum(axis=0) for part in row_parts(len(features)))
        mean = mean / len(features)
        rows = np.arange(len(features))
        if len(rows) > PCA_ROWS:
            rows = np.sort(np.random.default_rng(0).choice(len(rows), PCA_ROWS, replace=False))
        centred, k = _as_float64(features[rows], unit_length) - mean, min(components, len(rows) - 1, features.shape[1])
        axes = leading_axes(centred, k)
        z = project(features, mean, axes, unit_length)
        classes = np.unique(labels)
        class_means = np.stack([z[labels == c].mean(axis=0) for c in classes])
        centred = z - class_means[np.searchsorted(classes, labels)]
        covariance = centred.T @ centred / len(z) + 1e-6 * np.eye(z.shape[1])
        return cls(mean, axes, class_means, np.linalg.inv(covariance), unit_length=unit_length)

    def with_threshold(self, in_scope_features: np.ndarray, accept: float = ACCEPT) -> "OutOfScope":
        """The ceil((n + 1) * accept)-th smallest of n in-scope scores (split conformal): a new in-scope scan
        passes with probability at least `accept` (the highest score, when n is too small to promise it)."""
        scores = np.sort(self.score(in_scope_features))
        self.threshold = float(scores[min(int(np.ceil((len(scores) + 1) * accept)), len(scores)) - 1])
        return self

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "mean": self.mean,
            "components": self.components,
            "class_means": self.class_means,
            "precision": self.precision,
        }


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
                **arrays, threshold=float(saved["threshold"]), unit_length=saved.get("unit_length", True)
            )
        return cls(float(record["temperature"]), scope, {k: v for k, v in record.items() if k != "temperature"})


def fit_calibration(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    val_logits: np.ndarray,
    val_features: np.ndarray,
    val_labels: np.ndarray,
    kind: str,
    features_name: str,
) -> Calibration:
    """Temperature and out-of-scope detector from the training and validation splits, with their report."""
    from octcore.metrics import expected_calibration_error

    fitted = fit_temperature(val_logits, val_labels)
    before = expected_calibration_error(val_labels, softmax(val_logits))
    with_fitted = expected_calibration_error(val_labels, softmax(val_logits, fitted))
    # A temperature minimises the likelihood's loss, not the calibration error people see; on a small validation
    # split the two can disagree (an SVM's probabilities come already calibrated by cross-validation), and then
    # the model's own probabilities are kept.
    temperature = fitted if with_fitted <= before else 1.0
    scope = OutOfScope.fit(train_features, train_labels, COMPONENTS[kind]).with_threshold(val_features)
    report = {
        "fitted_on": {
            "temperature": f"validation split ({len(val_labels)} scans)",
            "out_of_scope": f"training split ({len(train_labels)} scans), threshold on validation",
        },
        "fitted_temperature": fitted,
        "temperature_rule": "the validation NLL's minimiser, kept only where it lowers the validation ECE",
        "ece_validation": {
            "before": before,
            "with_fitted_temperature": with_fitted,
            "after": expected_calibration_error(val_labels, softmax(val_logits, temperature)),
        },
        "out_of_scope": {
            "method": "Mahalanobis distance to the nearest class mean, features at unit length",
            "features": features_name,
            "components": int(scope.components.shape[0]),
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
