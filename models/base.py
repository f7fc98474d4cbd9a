"""What every model offers its consumers (the `OCTModel` protocol), and the errors its loading can raise."""

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from octcore.imaging import ScanInput


class ModelFormatError(ValueError):
    """A folder or Hub repo that is not a model this project can load; the message says what it expected."""


class UnsafeModelError(ModelFormatError):
    """Weights stored only as pickles, which can run code when loaded: never loaded."""


class UntrustedModelError(ModelFormatError):
    """A skops file holding types this project does not trust: never loaded."""


@dataclass
class Prediction:
    """One scan through one model: what the Space shows and `compare` scores."""

    proba: np.ndarray  # (4,) probabilities in CLASSES order
    maps: dict[str, np.ndarray] = field(default_factory=dict)  # explanation images in [0, 1], by name


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

    def predict_proba(self, scans: Sequence[ScanInput]) -> np.ndarray:
        """(n, 4) class probabilities."""
        ...

    def explain(self, scan: ScanInput) -> dict[str, np.ndarray]:
        """Explanation images of one scan, each in [0, 1], by name."""
        ...

    def analyse(self, scan: ScanInput, explain: bool = True) -> Prediction:
        """Probabilities and (if asked) explanation maps of one scan from one pass of the model."""
        ...


def local_folder(path_or_repo_id: str | Path, allow_patterns: list[str] | None = None) -> Path:
    """A local model folder as it is, or a Hub repo id downloaded (only files matching allow_patterns)."""
    folder = Path(path_or_repo_id)
    if folder.is_dir():
        return folder
    if folder.exists() or str(path_or_repo_id).count("/") != 1:
        raise ModelFormatError(f"{str(path_or_repo_id)!r} is neither a model folder nor a Hub repo id (USER/NAME)")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(str(path_or_repo_id), allow_patterns=allow_patterns))
    except Exception as e:  # offline, no such repo, private: one message for all
        raise ModelFormatError(
            f"there is no folder {str(path_or_repo_id)!r} here, and the Hub repo of that name could "
            f"not be fetched ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
        ) from None
