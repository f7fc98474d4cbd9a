"""A classical model folder (written by `python -m baselines.train`) as an `OCTModel`.

The folder holds the estimator as skops (never pickle), its feature settings in config.json and
its figures. Loading names the types it trusts; a skops file holding anything else is refused.
"""

import json
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import skops.io as sio

from baselines.features import (
    FeatureSettings,
    FeatureSettingsError,
    band_features,
    feature_band,
    feature_maps,
    n_features,
)
from models.base import Classification, ModelFormatError, Prediction, UntrustedModelError
from models.scope import Calibration
from octcore.data import row_parts
from octcore.imaging import ScanInput, read_scan
from octcore.labels import CLASSES

FORMAT = "oct-classical"  # config.json's "format": how load_model tells a classical folder from a ViT's
MODEL_FILE, CONFIG_FILE = "model.skops", "config.json"
HUB_FILES = ["*.json", "*.md", "*.skops", "*.safetensors", "*.png"]
# Beyond what skops trusts by default (scikit-learn estimators, numpy, builtins): exactly these.
TRUSTED_TYPES = {
    "baselines.model.OCTSVMClassifier",
    "baselines.model.RBFKernel",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
}


def scaled_features(estimator, features: np.ndarray) -> np.ndarray:
    """(n, d) the scaled features the out-of-scope detector reads, from (n, 2, d) feature pairs. Taken a part at a
    time, so a whole dataset's features are never scaled (copied) at once."""
    scaled = np.empty((len(features), features.shape[-1]), dtype=np.float32)
    for part in row_parts(len(features)):
        scaled[part] = estimator.scaled(features[part])
    return scaled


def embed(estimator, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Logits (the log of the Platt-calibrated probabilities, averaged over the two views) and the scaled
    features (`scaled_features`), from (n, 2, d) feature pairs: for the trainer and the loader."""
    proba = np.zeros((len(features), len(CLASSES)))
    for part in row_parts(len(features)):
        proba[part, estimator.classes_] = estimator.predict_proba(features[part])  # a class not trained: 0
    return np.log(np.clip(proba, 1e-12, 1)), scaled_features(estimator, features)


class ClassicalModel:
    """A loaded classical model: scans in, class probabilities and the features' pictures out."""

    kind = "classical"
    classes = CLASSES

    def __init__(self, folder: Path):
        self.folder = folder
        self.config = json.loads((folder / CONFIG_FILE).read_text())
        if self.config.get("classes") != list(CLASSES):
            raise ModelFormatError(
                f"{folder} was trained for classes {self.config.get('classes')}, not {list(CLASSES)}"
            )
        try:
            self.settings = FeatureSettings.from_dict(self.config.get("features"), str(folder))
        except FeatureSettingsError as e:
            raise ModelFormatError(str(e)) from None
        self.name = f"{self.settings.kind.upper()} SVM"
        path = folder / MODEL_FILE
        try:
            untrusted = set(sio.get_untrusted_types(file=path)) - TRUSTED_TYPES
        except zipfile.BadZipFile:
            raise UntrustedModelError(f"refusing to load {path}: it is not a skops file (a pickle renamed?)") from None
        if untrusted:
            raise UntrustedModelError(
                f"refusing to load {path}: it holds types this project does not trust: {sorted(untrusted)}"
            )
        self.estimator = sio.load(path, trusted=sorted(TRUSTED_TYPES))
        self.calibration = Calibration.load(folder)
        expected, made = getattr(self.estimator, "n_features_in_", None), n_features(self.settings)
        if expected is not None and expected != made:
            raise ModelFormatError(
                f"{folder} was trained on {expected} features per view, but its saved feature "
                f"settings make {made} here: retrain it with python -m baselines.train"
            )

    def features(self, scans: Sequence[ScanInput]) -> np.ndarray:
        """(n, 2, d) features of the scans and their mirror images."""
        return np.stack([band_features(feature_band(read_scan(s), self.settings), self.settings) for s in scans])

    def embed(self, scans: Sequence[ScanInput]) -> tuple[np.ndarray, np.ndarray]:
        return embed(self.estimator, self.features(scans))

    def classify(self, scans: Sequence[ScanInput]) -> Classification:
        return Classification.of(*self.embed(scans), self.calibration)

    def predict_proba(self, scans: Sequence[ScanInput]) -> np.ndarray:
        return self.classify(scans).proba

    def analyse(self, scan: ScanInput, explain: bool = True) -> Prediction:
        """Probabilities, out-of-scope score and `feature_maps`, all from the one retina band."""
        small = feature_band(read_scan(scan), self.settings)
        classified = Classification.of(
            *embed(self.estimator, band_features(small, self.settings)[None]), self.calibration
        )
        return classified.prediction(0, feature_maps(small, self.settings) if explain else None)

    def explain(self, scan: ScanInput) -> dict[str, np.ndarray]:
        return self.analyse(scan).maps


def load_classical(folder: Path) -> ClassicalModel:
    if not (folder / MODEL_FILE).is_file():
        raise ModelFormatError(
            f"{folder} is not a classical model folder (no {MODEL_FILE}; pickle files are never loaded)"
        )
    return ClassicalModel(folder)
