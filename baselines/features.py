"""OCT preprocessing and HOG / LBP features: the one way a scan becomes a vector for the classical models.

The steps follow the classical OCT literature (e.g. Srinivasan et al. 2014): remove the flat white
padding Kermany's registered scans carry, find the bright RPE line in each column, fit a
second-order curve to it, flatten the retina along that curve and crop a band around it, so the
features describe tissue, not background or the eye's curvature. A second, narrow strip around the
RPE is cut at twice the resolution, so small drusen and RPE bumps survive the downsizing. HOG and LBP
histograms are averaged over cell grids moved by half a cell, so a lesion a few pixels away from
where it was in training still lands in the same cells. What each step adds is measured by
`python benchmarks/baseline_ablation.py` (docs/results.md).

Every setting that shapes the feature vector is a field of `FeatureSettings`, saved in the model's
config.json and read back with it, so a model always computes the features it was trained on.
"""

import zlib
from dataclasses import asdict, dataclass, fields, replace

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage.draw import line as draw_line
from skimage.feature import hog, local_binary_pattern

from baselines.options import KINDS
from octcore.imaging import ScanImage, ScanInput, add_speckle, read_scan, resize

# Bump when the code computes different features from the same settings: folders made before are refused.
FEATURES_VERSION = 3
TILE = (4, 4)  # pixels are counted once per tile, and the shifted grids move by whole tiles
# The speckle of the trainer's speckled copies (--speckle-copies): standard deviation drawn uniformly in this range,
# from none to a device that averages few frames (docs/results.md, *The classical models under speckle*). The cache
# keys a copy by its number alone: a change here changes the copies' features, so bump FEATURES_VERSION with it.
COPY_SPECKLE = (0.0, 0.5)


class FeatureSettingsError(ValueError):
    """A model folder whose feature settings this version cannot reproduce; the message says to retrain."""


@dataclass(frozen=True)
class FeatureSettings:
    """How a scan becomes the classical model's feature vector (saved in the model's config.json)."""

    kind: str = "hog+lbp"  # which features: hog, lbp or hog+lbp
    flatten: bool = True  # flatten the retina along the fitted RPE curve
    sigma: float = 0.7  # Gaussian denoising of the band (0: none)
    median: int = 0  # median filter of the fill-free scan before the band is cut, pixels at DECODE_SIZE (0: none)
    work_size: tuple[int, int] = (128, 256)  # (height, width) at which the retina is found and flattened
    band_rows: tuple[int, int] = (70, 26)  # rows kept above and below the RPE line, at work_size
    band_size: tuple[int, int] = (48, 128)  # the retina band is resized to this before HOG and LBP
    rpe_strip: bool = True  # also a strip around the RPE line at twice the resolution
    rpe_rows: tuple[int, int] = (32, 16)  # rows kept around the same line at DECODE_SIZE (2x finer): the RPE strip
    rpe_size: tuple[int, int] = (32, 128)  # the RPE strip is resized to this (drusen stay visible)
    hog_orientations: int = 12  # 12 rather than 9: nested CV 0.856 vs 0.846 (docs/results.md)
    hog_cell: int = 8  # pixels per HOG cell (square)
    hog_block: int = 2  # cells per HOG block (square)
    lbp_scales: tuple[tuple[int, int], ...] = ((8, 1), (16, 2), (24, 3))  # (points, radius) of uniform LBP
    lbp_grid: tuple[int, int] = (4, 8)  # LBP histograms per (rows, columns) of the retina band
    rpe_lbp_grid: tuple[int, int] = (2, 8)  # and of the RPE strip
    # Histograms are averaged over cell grids moved by these (row, column) pixels, half a cell each way;
    # symmetric in columns, so the mirror image's LBP histograms are still the original's, reversed.
    grid_shifts: tuple[tuple[int, int], ...] = ((0, 0), (0, 4), (0, -4), (4, 0), (-4, 0))
    version: int = FEATURES_VERSION

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown features {self.kind!r}; choose one of {', '.join(KINDS)}")
        if any(v % t for shift in self.grid_shifts for v, t in zip(shift, TILE)) or self.hog_cell % TILE[0]:
            raise ValueError(f"grid shifts and the HOG cell must be multiples of the {TILE} tile")

    @property
    def feature_size(self) -> tuple[int, int]:
        """The stacked image HOG and LBP see: the retina band over the RPE strip."""
        return (self.band_size[0] + (self.rpe_size[0] if self.rpe_strip else 0), self.band_size[1])

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


def cut_along(image: np.ndarray, line: np.ndarray, above: int, below: int) -> np.ndarray:
    """The rows from `above` over to `below` under `line` in each column (zero outside the image): the image
    flattened along the line."""
    height = image.shape[0]
    rows = np.round(line)[None, :].astype(int) + np.arange(-above, below)[:, None]
    inside = (rows >= 0) & (rows < height)
    return np.where(inside, np.take_along_axis(image, np.clip(rows, 0, height - 1), axis=0), 0.0)


def flattened_bands(scan: ScanImage, settings: FeatureSettings) -> tuple[np.ndarray, np.ndarray]:
    """The retina band (at work_size) and the RPE strip (at DECODE_SIZE, twice as fine), both cut along one
    fitted RPE curve and denoised. Padding was removed once, when the scan was decoded."""
    fine = ndimage.median_filter(scan.unpadded, settings.median) if settings.median else scan.unpadded
    work = resize(fine, settings.work_size)
    above, below = settings.band_rows
    line = rpe_curve(work) if settings.flatten else np.full(settings.work_size[1], float(above))
    columns = np.arange(fine.shape[1]) * settings.work_size[1] / fine.shape[1]  # the curve, scaled up to DECODE_SIZE
    fine_line = np.interp(columns, np.arange(settings.work_size[1]), line) * fine.shape[0] / settings.work_size[0]
    bands = cut_along(work, line, above, below), cut_along(fine, fine_line, *settings.rpe_rows)
    return tuple(ndimage.gaussian_filter(b, settings.sigma) if settings.sigma else b for b in bands)


def retina_band(scan: ScanImage, settings: FeatureSettings) -> np.ndarray:
    """The flattened, denoised retina band (band_rows above + below, work_size wide) of a decoded scan."""
    return flattened_bands(scan, settings)[0]


def feature_band(scan: ScanImage, settings: FeatureSettings) -> np.ndarray:
    """What HOG and LBP are computed on (and what the Space shows): the retina band at band_size over the
    RPE strip at rpe_size, as one feature_size image."""
    band, strip = flattened_bands(scan, settings)
    return np.vstack(
        [
            resize(band, settings.band_size, Image.Resampling.BOX),
            resize(strip, settings.rpe_size, Image.Resampling.BOX),
        ]
    )


def strips(small: np.ndarray, settings: FeatureSettings) -> list[tuple[np.ndarray, tuple[int, int]]]:
    """A feature_band split back into its retina band and its RPE strip, each with its LBP grid."""
    parts = [(small[: settings.band_size[0]], settings.lbp_grid)]
    return parts + [(small[settings.band_size[0] :], settings.rpe_lbp_grid)] if settings.rpe_strip else parts


def hog_features(small: np.ndarray, settings: FeatureSettings) -> np.ndarray:
    """skimage's HOG of an image, as a vector (one grid, no shifts)."""
    return hog(small, **settings.hog_params, feature_vector=True)


def _tile_index(shape: tuple[int, int], tile: tuple[int, int]) -> tuple[np.ndarray, int, int]:
    rows, cols = shape[0] // tile[0], shape[1] // tile[1]
    where = (np.arange(rows * tile[0]) // tile[0])[:, None] * cols + (np.arange(cols * tile[1]) // tile[1])[None, :]
    return where, rows, cols


def orientation_tiles(small: np.ndarray, settings: FeatureSettings) -> np.ndarray:
    """Gradient magnitude summed per orientation bin over TILE tiles: (bins, tile rows, tile cols). Gradients
    and bins as skimage's HOG (central differences, unsigned angle, equal bins over 180 degrees)."""
    small = small.astype(np.float64)  # as skimage: in float32, angles on a bin edge (45, 90 degrees) fall either side
    g_row, g_col = np.zeros_like(small), np.zeros_like(small)
    g_row[1:-1], g_col[:, 1:-1] = small[2:] - small[:-2], small[:, 2:] - small[:, :-2]
    bins = settings.hog_orientations
    index = np.minimum((np.rad2deg(np.arctan2(g_row, g_col)) % 180 * bins / 180).astype(int), bins - 1)
    where, rows, cols = _tile_index(small.shape, TILE)
    index = index[: rows * TILE[0], : cols * TILE[1]] * rows * cols + where
    magnitude = np.hypot(g_row, g_col)[: rows * TILE[0], : cols * TILE[1]]
    return np.bincount(index.ravel(), magnitude.ravel(), bins * rows * cols).reshape(bins, rows, cols)


def moved_cells(tiles: np.ndarray, per_cell: tuple[int, int], settings: FeatureSettings) -> np.ndarray:
    """Cell sums under each shifted grid, from (..., rows, cols) tile sums; a cell is per_cell tiles. Tiles
    beyond the edge repeat the edge tile. Returns (shifts, ..., cells down, cells across)."""
    shifts = [(dy // TILE[0], dx // TILE[1]) for dy, dx in settings.grid_shifts]
    pad = max(abs(v) for shift in shifts for v in shift)
    padded = np.pad(tiles, [(0, 0)] * (tiles.ndim - 2) + [(pad, pad), (pad, pad)], mode="edge")
    (cell_h, cell_w), (rows, cols) = per_cell, tiles.shape[-2:]
    # box[..., r, c]: the sum of the cell whose top-left tile is padded[..., r, c], for every r, c
    height, width = padded.shape[-2] - cell_h + 1, padded.shape[-1] - cell_w + 1
    box = sum(padded[..., y : y + height, x : x + width] for y in range(cell_h) for x in range(cell_w))
    down, across = rows // cell_h, cols // cell_w
    return np.stack([box[..., pad - dy :: cell_h, pad - dx :: cell_w][..., :down, :across] for dy, dx in shifts])


def hog_blocks(cells: np.ndarray, settings: FeatureSettings) -> np.ndarray:
    """(..., bins, cell rows, cell cols) histograms in L2-Hys normalised blocks, laid out as skimage's HOG."""
    size = settings.hog_block
    cells = np.moveaxis(cells, -3, -1)  # (..., rows, cols, bins)
    rows, cols = cells.shape[-3:-1]
    blocks = np.stack(
        [
            np.stack([cells[..., y : rows - size + 1 + y, x : cols - size + 1 + x, :] for x in range(size)], -2)
            for y in range(size)
        ],
        -3,
    )
    blocks = blocks / np.sqrt((blocks**2).sum(axis=(-3, -2, -1), keepdims=True) + 1e-10)
    blocks = np.minimum(blocks, 0.2)  # L2-Hys: clip, then normalise again
    return blocks / np.sqrt((blocks**2).sum(axis=(-3, -2, -1), keepdims=True) + 1e-10)


def shifted_hog_blocks(small: np.ndarray, settings: FeatureSettings) -> np.ndarray:
    """HOG blocks under each of grid_shifts' cell grids: (shifts, block rows, block cols, cell rows, cell cols,
    bins), each grid's as skimage's `hog(..., feature_vector=False)` lays them out. Gradients are binned once
    into TILE tiles; each grid's cells are sums of tiles."""
    per_cell = (settings.hog_cell // TILE[0], settings.hog_cell // TILE[1])
    cells = moved_cells(orientation_tiles(small, settings), per_cell, settings)
    return hog_blocks(cells / settings.hog_cell**2, settings)  # cell means, as skimage


def grid_hog(small: np.ndarray, settings: FeatureSettings) -> np.ndarray:
    """HOG averaged over the grid_shifts cell grids, as a vector. With the (0, 0) grid alone this is skimage's HOG
    (hog_features; tests/test_baselines.py checks)."""
    return shifted_hog_blocks(small, settings).mean(axis=0).ravel()


def lbp_codes(small: np.ndarray, settings: FeatureSettings) -> np.ndarray:
    """Uniform LBP code of every pixel at each of lbp_scales: (scales, h, w)."""
    u8 = np.clip(small * 255, 0, 255).astype(np.uint8)
    codes = [local_binary_pattern(u8, points, radius, "uniform") for points, radius in settings.lbp_scales]
    return np.stack(codes).astype(np.int64)


def grid_lbp(small: np.ndarray, grid: tuple[int, int], settings: FeatureSettings) -> np.ndarray:
    """Uniform LBP histograms at each scale over a grid of cells, averaged over the grid_shifts grids:
    (scales, grid rows, grid cols, bins). Codes are counted once per TILE tile."""
    codes = lbp_codes(small, settings)
    scales, height, width = codes.shape
    bins = max(points for points, _ in settings.lbp_scales) + 2
    where, rows, cols = _tile_index((height, width), TILE)
    index = (np.arange(scales)[:, None, None] * bins + codes[:, : rows * TILE[0], : cols * TILE[1]]) * rows * cols
    tiles = np.bincount((index + where).ravel(), minlength=scales * bins * rows * cols).reshape(
        scales, bins, rows, cols
    )
    cell = (height // grid[0], width // grid[1])
    cells = moved_cells(tiles, (cell[0] // TILE[0], cell[1] // TILE[1]), settings)
    return np.moveaxis(cells.mean(axis=0), 1, -1) / (cell[0] * cell[1])


def band_features(small: np.ndarray, settings: FeatureSettings) -> np.ndarray:
    """Feature vectors of a `feature_band` and of its mirror image, as a (2, d) float32 array.

    HOG and LBP of the retina band and of the RPE strip, each averaged over the shifted grids. LBP here
    is rotation-invariant ('uniform') and the shifts are symmetric, so the mirror's histograms are the
    same cells in reversed column order; only HOG is computed twice. LBP histograms are square-rooted
    (Hellinger).
    """
    views: list[list[np.ndarray]] = [[], []]
    for strip, grid in strips(small, settings):
        if "hog" in settings.kind:
            views[0].append(grid_hog(strip, settings))
            views[1].append(grid_hog(strip[:, ::-1], settings))
        if "lbp" in settings.kind:
            histograms = np.sqrt(grid_lbp(strip, grid, settings))
            views[0].append(histograms.ravel())
            views[1].append(histograms[:, :, ::-1].ravel())
    return np.stack([np.concatenate(v) for v in views]).astype(np.float32)


def n_features(settings: FeatureSettings) -> int:
    """Features per view that these settings make."""
    return band_features(np.zeros(settings.feature_size, np.float32), settings).shape[-1]


def speckled_copy(scan: ScanImage, copy: int) -> ScanImage:
    """The scan's `copy`-th speckled copy for training (copy 0 is the scan itself): multiplicative speckle over the
    whole decoded scan, as the ViT's augmentation adds it, of a standard deviation drawn from COPY_SPECKLE. The draws
    depend on the copy and the file's name only, so a copy is the same in every run and every process."""
    if copy == 0:
        return scan
    rng = np.random.default_rng([copy, zlib.crc32(scan.name.encode())])
    return ScanImage(add_speckle(scan.gray, rng.uniform(*COPY_SPECKLE), rng), scan.colour, scan.name)


def scan_features(source: ScanInput, settings: FeatureSettings, copy: int = 0) -> np.ndarray:
    """(2, d) features of any scan source (path, bytes, array or an already decoded ScanImage), or of its
    `copy`-th speckled copy (`speckled_copy`)."""
    return band_features(feature_band(speckled_copy(read_scan(source), copy), settings), settings)


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
    # skimage's hog(small, feature_vector=False) from this module's own HOG (skimage normalises blocks in a loop)
    blocks = shifted_hog_blocks(small, replace(settings, grid_shifts=((0, 0),)))[0]
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
    """What the classical model looks at in a `feature_band`, as images in [0, 1]: the band (retina over
    the RPE strip) and, of the features it reads, its HOG (dominant gradient directions per cell) and its LBP
    codes (local texture, at the finest scale)."""
    maps = {"band": small}
    if "hog" in settings.kind:  # only the features this model reads: an LBP model is not explained by HOG
        maps["hog"] = hog_map(small, settings)
    if "lbp" in settings.kind:
        points, radius = settings.lbp_scales[0]
        codes = local_binary_pattern(np.clip(small * 255, 0, 255).astype(np.uint8), points, radius, "uniform")
        maps["lbp"] = codes / (points + 1)
    return maps
