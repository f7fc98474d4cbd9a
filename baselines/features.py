"""OCT preprocessing and HOG / LBP features: the one way a scan becomes a vector for the classical models.

The steps follow the classical OCT literature (e.g. Srinivasan et al. 2014): remove the flat white
padding Kermany's registered scans carry, find the bright RPE line in each column, fit a
second-order curve to it, flatten the retina along that curve and crop a band around it, so the
features describe tissue, not background or the eye's curvature. What each step adds is measured
by `python benchmarks/baseline_ablation.py` (docs/results.md).

Every setting that shapes the feature vector is a field of `FeatureSettings`, saved in the model's
config.json and read back with it, so a model always computes the features it was trained on.
"""

from dataclasses import asdict, dataclass, fields

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage.draw import line as draw_line
from skimage.feature import hog, local_binary_pattern

from octcore.imaging import ScanImage, ScanInput, read_scan, resize

KINDS = ("hog", "lbp", "hog+lbp")
# Bump when the code computes different features from the same settings: folders made before are refused.
FEATURES_VERSION = 2


class FeatureSettingsError(ValueError):
    """A model folder whose feature settings this version cannot reproduce; the message says to retrain."""


@dataclass(frozen=True)
class FeatureSettings:
    """How a scan becomes the classical model's feature vector (saved in the model's config.json)."""

    kind: str = "hog+lbp"  # which features: hog, lbp or hog+lbp
    flatten: bool = True  # flatten the retina along the fitted RPE curve
    sigma: float = 0.7  # Gaussian denoising of the band (0: none)
    work_size: tuple[int, int] = (128, 256)  # (height, width) at which the retina is found and flattened
    band_rows: tuple[int, int] = (70, 26)  # rows kept above and below the RPE line, at work_size
    band_size: tuple[int, int] = (48, 128)  # the band is resized to this before HOG and LBP
    hog_orientations: int = 12  # 12 rather than 9: nested CV 0.856 vs 0.846 (docs/results.md)
    hog_cell: int = 8  # pixels per HOG cell (square)
    hog_block: int = 2  # cells per HOG block (square)
    lbp_scales: tuple[tuple[int, int], ...] = ((8, 1), (16, 2), (24, 3))  # (points, radius) of uniform LBP
    lbp_grid: tuple[int, int] = (4, 8)  # LBP histograms per (rows, columns) of the band
    version: int = FEATURES_VERSION

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown features {self.kind!r}; choose one of {', '.join(KINDS)}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, saved: dict | None, where: str = "this model") -> "FeatureSettings":
        """The settings a model was saved with; FeatureSettingsError when this version cannot reproduce them."""
        if not isinstance(saved, dict) or saved.get("version") != FEATURES_VERSION:
            found = saved.get("version", "none") if isinstance(saved, dict) else "none"
            raise FeatureSettingsError(
                f"{where} was made with feature settings version {found}, and this version of the project computes "
                f"version {FEATURES_VERSION}: retrain it with python -m baselines.train"
            )
        names = {f.name for f in fields(cls)}
        unknown = set(saved) - names
        if unknown:
            raise FeatureSettingsError(f"{where} has feature settings this version does not know: {sorted(unknown)}")
        as_tuples = {k: _tuple(v) for k, v in saved.items()}
        return cls(**as_tuples)

    @property
    def hog_params(self) -> dict:
        return {
            "orientations": self.hog_orientations,
            "pixels_per_cell": (self.hog_cell,) * 2,
            "cells_per_block": (self.hog_block,) * 2,
        }


def _tuple(value):
    """JSON lists back to the tuples the settings hold."""
    return tuple(_tuple(v) for v in value) if isinstance(value, list) else value


def rpe_curve(work: np.ndarray) -> np.ndarray:
    """Row of the retinal pigment epithelium in each column: brightest row, smoothed, robust quadratic fit."""
    rows = ndimage.median_filter(ndimage.gaussian_filter(work, 2).argmax(axis=0).astype(float), 21, mode="nearest")
    x = np.arange(work.shape[1])
    keep = np.ones_like(rows, dtype=bool)
    for _ in range(3):  # refit without the columns far from the curve (shadows, detached layers)
        fit = np.polyval(np.polyfit(x[keep], rows[keep], 2), x)
        residual = np.abs(rows - fit)
        keep = residual < max(3.0, 2.5 * float(np.median(residual[keep])))
    return fit


def retina_band(scan: ScanImage, settings: FeatureSettings) -> np.ndarray:
    """The flattened, denoised retina band (band_rows above + below, work_size wide) of a decoded scan."""
    work = resize(scan.unpadded, settings.work_size)  # padding was removed once, at DECODE_SIZE
    height = settings.work_size[0]
    above, below = settings.band_rows
    line = rpe_curve(work) if settings.flatten else np.full(settings.work_size[1], float(above))
    rows = np.round(line)[None, :].astype(int) + np.arange(-above, below)[:, None]
    inside = (rows >= 0) & (rows < height)
    band = np.where(inside, np.take_along_axis(work, np.clip(rows, 0, height - 1), axis=0), 0.0)
    return ndimage.gaussian_filter(band, settings.sigma) if settings.sigma else band


def feature_band(scan: ScanImage, settings: FeatureSettings) -> np.ndarray:
    """The retina band at band_size: what HOG and LBP are computed on (and what the Space shows)."""
    return resize(retina_band(scan, settings), settings.band_size, Image.Resampling.BOX)


def hog_features(small: np.ndarray, settings: FeatureSettings) -> np.ndarray:
    return hog(small, **settings.hog_params, feature_vector=True)


def lbp_histograms(small: np.ndarray, settings: FeatureSettings) -> np.ndarray:
    """Uniform LBP histograms at each scale over a grid: shape (scales, grid rows, grid cols, bins)."""
    u8 = np.clip(small * 255, 0, 255).astype(np.uint8)
    rows, cols = settings.lbp_grid
    height, width = u8.shape
    bins = max(points for points, _ in settings.lbp_scales) + 2
    cell = (np.arange(height) * rows // height)[:, None] * cols + (np.arange(width) * cols // width)[None, :]
    cell_sizes = np.bincount(cell.ravel(), minlength=rows * cols)[:, None]
    out = np.empty((len(settings.lbp_scales), rows * cols, bins))
    for k, (points, radius) in enumerate(settings.lbp_scales):
        codes = local_binary_pattern(u8, points, radius, "uniform").astype(np.int64)
        counts = np.bincount((cell * bins + codes).ravel(), minlength=rows * cols * bins)
        out[k] = counts.reshape(rows * cols, bins) / cell_sizes
    return out.reshape(len(settings.lbp_scales), rows, cols, bins)


def band_features(small: np.ndarray, settings: FeatureSettings) -> np.ndarray:
    """Feature vectors of a `feature_band` and of its mirror image, as a (2, d) float32 array.

    LBP here is rotation-invariant ('uniform'), so the mirror's histograms are the same cells in
    reversed column order; only HOG is computed twice. LBP histograms are square-rooted (Hellinger).
    """
    views: list[list[np.ndarray]] = [[], []]
    if "hog" in settings.kind:
        views[0].append(hog_features(small, settings))
        views[1].append(hog_features(small[:, ::-1], settings))
    if "lbp" in settings.kind:
        histograms = np.sqrt(lbp_histograms(small, settings))
        views[0].append(histograms.ravel())
        views[1].append(histograms[:, :, ::-1].ravel())
    return np.stack([np.concatenate(v) for v in views]).astype(np.float32)


def n_features(settings: FeatureSettings) -> int:
    """Features per view that these settings make."""
    return band_features(np.zeros(settings.band_size, np.float32), settings).shape[-1]


def scan_features(source: ScanInput, settings: FeatureSettings) -> np.ndarray:
    """(2, d) features of any scan source (path, bytes, array or an already decoded ScanImage)."""
    return band_features(feature_band(read_scan(source), settings), settings)


def _hog_stamps(settings: FeatureSettings) -> np.ndarray:
    """One line per orientation through a cell, perpendicular to its gradient: skimage's HOG drawing."""
    size, bins = settings.hog_cell, settings.hog_orientations
    radius, centre = size // 2 - 1, size // 2
    stamps = np.zeros((bins, size, size))
    for o, angle in enumerate(np.pi * (np.arange(bins) + 0.5) / bins):
        dr, dc = radius * np.sin(angle), radius * np.cos(angle)
        rows, cols = draw_line(int(centre - dc), int(centre + dr), int(centre + dc), int(centre - dr))
        stamps[o, rows, cols] = 1
    return stamps


def hog_map(small: np.ndarray, settings: FeatureSettings) -> np.ndarray:
    """HOG as a picture: the block-normalised histograms the classifier sees (each cell's averaged
    over the blocks that hold it), weighted by the cell's gradient strength so strong edges stand out
    as in skimage's `visualize`, which is 5x slower."""
    blocks = hog(
        small, **settings.hog_params, feature_vector=False
    )  # (block rows, block cols, cell rows, cell cols, bins)
    block_rows, block_cols, cell_rows, cell_cols, bins = blocks.shape
    total = np.zeros((block_rows + cell_rows - 1, block_cols + cell_cols - 1, bins))
    count = np.zeros(total.shape[:2] + (1,))
    for y in range(cell_rows):
        for x in range(cell_cols):
            total[y : y + block_rows, x : x + block_cols] += blocks[:, :, y, x]
            count[y : y + block_rows, x : x + block_cols] += 1
    size = settings.hog_cell
    rows, cols = total.shape[:2]
    gy, gx = np.gradient(small)
    strength = np.hypot(gx, gy)[: rows * size, : cols * size].reshape(rows, size, cols, size).mean(axis=(1, 3))
    cells, stamps = total / count * (strength / (strength.max() + 1e-8))[..., None], _hog_stamps(settings)
    picture = np.einsum("rco,oyx->rycx", cells, stamps).reshape(rows * size, cols * size)
    return picture / (picture.max() + 1e-8)


def feature_maps(small: np.ndarray, settings: FeatureSettings) -> dict[str, np.ndarray]:
    """What the classical model looks at in a `feature_band`, as images in [0, 1]: the band, its HOG
    (dominant gradient directions per cell) and its LBP codes (local texture, at the finest scale)."""
    points, radius = settings.lbp_scales[0]
    codes = local_binary_pattern(np.clip(small * 255, 0, 255).astype(np.uint8), points, radius, "uniform")
    return {"band": small, "hog": hog_map(small, settings), "lbp": codes / (points + 1)}
