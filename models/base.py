"""What every model offers its consumers (the `OCTModel` protocol), and the errors its loading can raise."""

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from octcore.hub import names_hub_repo
from octcore.imaging import ScanInput

if TYPE_CHECKING:
    from models.scope import Calibration


class ModelFormatError(ValueError):
    """A folder or Hub repo that is not a model this project can load; the message says what it expected."""


class UnsafeModelError(ModelFormatError):
    """Weights stored only as pickles, which can run code when loaded: never loaded."""


class UntrustedModelError(ModelFormatError):
    """A skops file holding types this project does not trust: never loaded."""


def read_json(path: Path) -> dict:
    """A JSON file of a model folder; a damaged one (a cut-off download, an edit gone wrong) is a
    ModelFormatError naming it, not a parser's traceback."""
    import json

    try:
        record = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise ModelFormatError(f"{path} is not valid JSON ({e})") from None
    if not isinstance(record, dict):
        raise ModelFormatError(f"{path} holds a {type(record).__name__}, not a JSON object")
    return record


@dataclass
class Prediction:
    """One scan through one model: what the Space shows."""

    proba: np.ndarray  # (4,) probabilities in CLASSES order (temperature-scaled when the model is calibrated)
    maps: dict[str, np.ndarray] = field(default_factory=dict)  # explanation images in [0, 1], by name
    out_of_scope: float | None = None  # distance from what the model was taught; None without a detector
    flagged: bool = False  # out_of_scope above the model's saved threshold


@dataclass
class Classification:
    """Several scans through one model: what `compare` scores and the batch CSV records."""

    logits: np.ndarray  # (n, 4) before the temperature
    proba: np.ndarray  # (n, 4) after it
    out_of_scope: np.ndarray | None  # (n,) scores; None without a detector
    flagged: np.ndarray  # (n,) bool

    @classmethod
    def of(cls, logits: np.ndarray, features: np.ndarray, calibration: "Calibration") -> "Classification":
        """A model's raw outputs with its calibration applied: the one place both kinds do it."""
        from models.scope import softmax

        scope = calibration.out_of_scope
        scores = scope.score(features) if scope is not None else None
        flagged = scores > scope.threshold if scores is not None else np.zeros(len(logits), dtype=bool)
        return cls(logits, softmax(logits, calibration.temperature), scores, flagged)

    def prediction(self, i: int, maps: dict[str, np.ndarray] | None = None) -> Prediction:
        score = None if self.out_of_scope is None else float(self.out_of_scope[i])
        return Prediction(self.proba[i], maps or {}, score, bool(self.flagged[i]))


@runtime_checkable
class OCTModel(Protocol):
    """A trained classifier of OCT B-scans, whatever its kind.

    Scans may be paths, bytes, PIL images, arrays or `ScanImage`s (`octcore.imaging.read_scan`); a
    `ScanImage` is used as it is, so a caller that decoded a scan once passes it to every model.
    """

    name: str  # how people see it named, e.g. "ViT" or "HOG+LBP SVM"
    kind: str  # "vit" or "classical"
    classes: tuple[str, ...]  # the order of the probability columns (octcore.labels.CLASSES)
    folder: Path  # where its files are (a Hub download lands in the Hub cache)
    calibration: "Calibration"  # its temperature and out-of-scope detector (models.scope)

    def embed(self, scans: Sequence[ScanInput]) -> tuple[np.ndarray, np.ndarray]:
        """(n, 4) logits before any temperature, and (n, d) the features the out-of-scope detector reads."""
        ...

    def classify(self, scans: Sequence[ScanInput]) -> Classification:
        """Logits, calibrated probabilities and out-of-scope scores of several scans."""
        ...

    def predict_proba(self, scans: Sequence[ScanInput]) -> np.ndarray:
        """(n, 4) class probabilities (calibrated)."""
        ...

    def analyse(self, scan: ScanInput, explain: bool = True) -> Prediction:
        """Everything about one scan (probabilities, out of scope, and if asked explanation maps) from one pass."""
        ...

    def explain(self, scan: ScanInput) -> dict[str, np.ndarray]:
        """Explanation images of one scan, each in [0, 1], by name."""
        ...


def local_folder(path_or_repo_id: str | Path, allow_patterns: list[str] | None = None) -> Path:
    """A local model folder as it is, or a Hub repo id downloaded (only files matching allow_patterns)."""
    folder = Path(path_or_repo_id)
    if folder.is_dir():
        return folder
    if not names_hub_repo(path_or_repo_id):
        raise ModelFormatError(f"{str(path_or_repo_id)!r} is neither a model folder nor a Hub repo id (USER/NAME)")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(str(path_or_repo_id), allow_patterns=allow_patterns))
    except Exception as e:  # offline, no such repo, private: one message for all
        raise ModelFormatError(
            f"there is no folder {str(path_or_repo_id)!r} here, and the Hub repo of that name could "
            f"not be fetched ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
        ) from None
