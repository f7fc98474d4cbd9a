"""Save, load and publish a classical model folder: skops (never pickle), a JSON config, metrics, a card.

Loading names the types it trusts; a skops file holding anything else is refused.
"""
import json
import zipfile
from pathlib import Path

import numpy as np
import skops.io as sio

from baselines.features import FEATURE_SIZE, band_features, feature_maps, scan_band, scan_features
from octcore.hub import push_folder, writing_folder
from octcore.labels import CLASSES

MODEL_FILE, CONFIG_FILE = "model.skops", "config.json"
# Beyond what skops trusts by default (scikit-learn estimators, numpy, builtins): exactly these.
TRUSTED_TYPES = {
    "baselines.model.OCTSVMClassifier",
    "baselines.model.RBFKernel",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
}


class UntrustedModelError(ValueError):
    """A model file that holds types this project does not trust; it is never loaded."""


def save_model_folder(out: str | Path, model, config: dict, metrics: dict, card: str) -> Path:
    """Write the folder next to its final place, then rename: a crash never leaves a half-written model."""
    with writing_folder(out) as staging:
        sio.dump(model, staging / MODEL_FILE)
        (staging / CONFIG_FILE).write_text(json.dumps(config, indent=1) + "\n")
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
        (staging / "README.md").write_text(card)
    return Path(out)


class ClassicalModel:
    """A loaded classical model: scans in, class probabilities out, with the features it was trained on."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.config = json.loads((folder / CONFIG_FILE).read_text())
        if self.config.get("classes") != list(CLASSES):
            raise ValueError(f"{folder} was trained for classes {self.config.get('classes')}, not {list(CLASSES)}")
        path = folder / MODEL_FILE
        try:
            untrusted = set(sio.get_untrusted_types(file=path)) - TRUSTED_TYPES
        except zipfile.BadZipFile:
            raise UntrustedModelError(f"refusing to load {path}: it is not a skops file (a pickle renamed?)") from None
        if untrusted:
            raise UntrustedModelError(f"refusing to load {path}: it holds types this project does not trust: {sorted(untrusted)}")
        self.estimator = sio.load(path, trusted=sorted(TRUSTED_TYPES))
        expected = getattr(self.estimator, "n_features_in_", None)
        made = band_features(np.zeros(FEATURE_SIZE, np.float32), self.config["features"]["kind"]).shape[-1]
        if expected is not None and expected != made:
            raise ValueError(f"{folder} was trained on {expected} features per view, but this version's feature "
                             f"settings make {made}: retrain it with python -m baselines.train")

    def predict_proba(self, scans: list) -> np.ndarray:
        """(n, 4) probabilities in CLASSES order for paths, bytes, PIL images or arrays."""
        return self.estimator.predict_proba(np.stack([scan_features(s, self.config["features"]) for s in scans]))

    def explain(self, scan) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """One scan's probabilities and `feature_maps`, both from the one retina band."""
        small = scan_band(scan, self.config["features"])
        return self.estimator.predict_proba(band_features(small, self.config["features"]["kind"])[None])[0], feature_maps(small)


def load_baseline(path_or_repo_id: str | Path) -> ClassicalModel:
    """A classical model from a local folder or a Hugging Face Hub repo id."""
    folder = Path(path_or_repo_id)
    if not folder.is_dir():
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(str(path_or_repo_id), allow_patterns=["*.json", "*.md", "*.skops"]))
    if not (folder / MODEL_FILE).is_file():
        raise FileNotFoundError(f"{folder} is not a classical model folder (no {MODEL_FILE}; pickle files are never loaded)")
    return ClassicalModel(folder)


def push_to_hub(folder: str | Path, repo_id: str, private: bool = False) -> str:
    return push_folder(folder, repo_id, "Upload classical OCT baseline", private=private)
