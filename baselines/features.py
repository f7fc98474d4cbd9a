"""OCT preprocessing and HOG / LBP features: the one way a scan becomes a vector for the classical models.

The steps follow the classical OCT literature (e.g. Srinivasan et al. 2014): remove the flat white
padding Kermany's registered scans carry, find the bright RPE line in each column, fit a
second-order curve to it, flatten the retina along that curve and crop a band around it, so the
features describe tissue, not background or the eye's curvature. What each step adds on the
950-scan sample is measured by `python benchmarks/baseline_ablation.py` (README, "Classical baselines").
"""
import numpy as np
from PIL import Image
from scipy import ndimage
from skimage.draw import line as draw_line
from skimage.feature import hog, local_binary_pattern

from octcore.imaging import ScanSource, load_scan, remove_padding

PAD_SIZE = (248, 512)     # (height, width) at which the white padding is found: half of Kermany's 496 rows, so JPEGs decode at 1/2 scale
WORK_SIZE = (128, 256)    # (height, width) at which the retina is found and flattened
BAND_ABOVE, BAND_BELOW = 70, 26   # rows kept above and below the fitted RPE line, at WORK_SIZE
FEATURE_SIZE = (48, 128)  # the band is resized to this before HOG and LBP
LBP_SCALES = ((8, 1), (16, 2), (24, 3))
LBP_GRID = (4, 8)
HOG_PARAMS = {"orientations": 12, "pixels_per_cell": (8, 8), "cells_per_block": (2, 2)}  # 12 > 9: nested CV 0.856 vs 0.846 (README)
KINDS = ("hog", "lbp", "hog+lbp")


def resize(gray: np.ndarray, size: tuple[int, int], resample=Image.Resampling.BILINEAR) -> np.ndarray:
    return np.asarray(Image.fromarray(gray.astype(np.float32)).resize(size[::-1], resample), dtype=np.float32)


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


def retina_band(gray: np.ndarray, flatten: bool = True, sigma: float = 0.7) -> np.ndarray:
    """The flattened, denoised retina band (BAND_ABOVE + BAND_BELOW rows x WORK_SIZE width) of a scan."""
    work = resize(remove_padding(resize(gray, PAD_SIZE, Image.Resampling.BOX)), WORK_SIZE)
    height = WORK_SIZE[0]
    line = rpe_curve(work) if flatten else np.full(WORK_SIZE[1], float(BAND_ABOVE))
    rows = np.round(line)[None, :].astype(int) + np.arange(-BAND_ABOVE, BAND_BELOW)[:, None]
    inside = (rows >= 0) & (rows < height)
    band = np.where(inside, np.take_along_axis(work, np.clip(rows, 0, height - 1), axis=0), 0.0)
    return ndimage.gaussian_filter(band, sigma) if sigma else band


def feature_band(gray: np.ndarray, flatten: bool = True, sigma: float = 0.7) -> np.ndarray:
    """The retina band at FEATURE_SIZE: what HOG and LBP are computed on."""
    return resize(retina_band(gray, flatten, sigma), FEATURE_SIZE, Image.Resampling.BOX)


def hog_features(small: np.ndarray) -> np.ndarray:
    return hog(small, **HOG_PARAMS, feature_vector=True)


def lbp_histograms(small: np.ndarray) -> np.ndarray:
    """Uniform LBP histograms at three radii over a grid: shape (scales, grid rows, grid cols, bins)."""
    u8 = np.clip(small * 255, 0, 255).astype(np.uint8)
    rows, cols = LBP_GRID
    height, width = u8.shape
    bins = max(points for points, _ in LBP_SCALES) + 2
    cell = (np.arange(height) * rows // height)[:, None] * cols + (np.arange(width) * cols // width)[None, :]
    cell_sizes = np.bincount(cell.ravel(), minlength=rows * cols)[:, None]
    out = np.empty((len(LBP_SCALES), rows * cols, bins))
    for k, (points, radius) in enumerate(LBP_SCALES):
        codes = local_binary_pattern(u8, points, radius, "uniform").astype(np.int64)
        out[k] = np.bincount((cell * bins + codes).ravel(), minlength=rows * cols * bins).reshape(rows * cols, bins) / cell_sizes
    return out.reshape(len(LBP_SCALES), rows, cols, bins)


def extract(gray: np.ndarray, kind: str = "hog+lbp", flatten: bool = True, sigma: float = 0.7) -> np.ndarray:
    """Feature vectors of one scan (a load_scan array) and of its mirror image, as a (2, d) array."""
    return band_features(feature_band(gray, flatten, sigma), kind)


def band_features(small: np.ndarray, kind: str = "hog+lbp") -> np.ndarray:
    """`extract` from a band already at FEATURE_SIZE (so the Space's maps can share it).

    LBP here is rotation-invariant ('uniform'), so the mirror's histograms are the same cells in
    reversed column order; only HOG is computed twice. LBP histograms are square-rooted (Hellinger).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown features {kind!r}; choose one of {', '.join(KINDS)}")
    views = [[], []]
    if "hog" in kind:
        views[0].append(hog_features(small))
        views[1].append(hog_features(small[:, ::-1]))
    if "lbp" in kind:
        histograms = np.sqrt(lbp_histograms(small))
        views[0].append(histograms.ravel())
        views[1].append(histograms[:, :, ::-1].ravel())
    return np.stack([np.concatenate(v) for v in views]).astype(np.float32)


def _hog_stamps() -> np.ndarray:
    """One line per orientation through an 8x8 cell, perpendicular to its gradient: skimage's HOG drawing."""
    size, bins = HOG_PARAMS["pixels_per_cell"][0], HOG_PARAMS["orientations"]
    radius, centre = size // 2 - 1, size // 2
    stamps = np.zeros((bins, size, size))
    for o, angle in enumerate(np.pi * (np.arange(bins) + 0.5) / bins):
        dr, dc = radius * np.sin(angle), radius * np.cos(angle)
        rows, cols = draw_line(int(centre - dc), int(centre + dr), int(centre + dc), int(centre - dr))
        stamps[o, rows, cols] = 1
    return stamps


def hog_map(small: np.ndarray) -> np.ndarray:
    """HOG as a picture: the block-normalised histograms the classifier sees (each cell's averaged
    over the blocks that hold it), weighted by the cell's gradient strength so strong edges stand out
    as in skimage's `visualize`, which is 5x slower."""
    blocks = hog(small, **HOG_PARAMS, feature_vector=False)  # (block rows, block cols, cell rows, cell cols, bins)
    block_rows, block_cols, cell_rows, cell_cols, bins = blocks.shape
    total = np.zeros((block_rows + cell_rows - 1, block_cols + cell_cols - 1, bins))
    count = np.zeros(total.shape[:2] + (1,))
    for y in range(cell_rows):
        for x in range(cell_cols):
            total[y:y + block_rows, x:x + block_cols] += blocks[:, :, y, x]
            count[y:y + block_rows, x:x + block_cols] += 1
    size = HOG_PARAMS["pixels_per_cell"]
    rows, cols = total.shape[:2]
    gy, gx = np.gradient(small)
    strength = np.hypot(gx, gy)[:rows * size[0], :cols * size[1]].reshape(rows, size[0], cols, size[1]).mean(axis=(1, 3))
    cells, stamps = total / count * (strength / (strength.max() + 1e-8))[..., None], _hog_stamps()
    picture = np.einsum("rco,oyx->rycx", cells, stamps).reshape(cells.shape[0] * stamps.shape[1], cells.shape[1] * stamps.shape[2])
    return picture / (picture.max() + 1e-8)


def feature_maps(small: np.ndarray) -> dict[str, np.ndarray]:
    """What the classical model looks at in a `feature_band`, as images in [0, 1]: the band, its HOG
    (dominant gradient directions per 8x8 cell) and its LBP codes (local texture, radius 1)."""
    points, radius = LBP_SCALES[0]
    codes = local_binary_pattern(np.clip(small * 255, 0, 255).astype(np.uint8), points, radius, "uniform")
    return {"band": small, "hog": hog_map(small), "lbp": codes / (points + 1)}


def scan_band(source: ScanSource, settings: dict) -> np.ndarray:
    """The `feature_band` of any scan source, with a model's saved feature settings (kind, flatten, sigma)."""
    return feature_band(load_scan(source, min_size=PAD_SIZE), settings["flatten"], settings["sigma"])


def scan_features(source: ScanSource, settings: dict) -> np.ndarray:
    """`extract` of any scan source with a model's saved feature settings."""
    return band_features(scan_band(source, settings), settings["kind"])
