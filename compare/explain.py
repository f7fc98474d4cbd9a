"""Do the models' explanation maps point at what their answers depend on? Deletion (Petsiuk et al. 2018):
black out the scan's cells in the order the map ranks them, most salient first, and follow the
probability of the class the model first predicted; the faster it falls, the lower the area under
that curve and the better the map. The same with a random order is the baseline a map must beat.
And how much of a map's mass lies on the image's border, where a map that points at the retina
should put little.

Each model is explained by its own map where it has one over the scan (the ViT's attention), else
by occlusion: the drop in its predicted class's probability when each cell is blacked out (the
classical model, whose HOG and LBP pictures show what it reads, not where its answer comes from).
"""

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from models import OCTModel
from octcore.imaging import ScanImage, read_scan

STEPS = 10  # deletion steps: 10% more of the cells blacked out at each
OCCLUSION_GRID = (6, 12)  # cells (rows, columns) of the occlusion map
BORDER = 0.05  # share of the height and width that counts as the border


def _blackened(scan: ScanImage, grid: tuple[int, int], cells: np.ndarray) -> ScanImage:
    gray = scan.gray.copy()
    height, width = gray.shape
    for cell in cells:
        row, col = divmod(int(cell), grid[1])
        gray[
            row * height // grid[0] : (row + 1) * height // grid[0],
            col * width // grid[1] : (col + 1) * width // grid[1],
        ] = 0
    return ScanImage(gray, scan.colour, scan.name)


def occlusion(model: OCTModel, scan: ScanImage, grid: tuple[int, int] = OCCLUSION_GRID) -> np.ndarray:
    """(rows, cols) drop of the predicted class's probability when each cell alone is blacked out (0 at least)."""
    scan = read_scan(scan)
    first = model.classify([scan]).proba[0]
    label = int(first.argmax())
    blacked = [_blackened(scan, grid, np.array([cell])) for cell in range(grid[0] * grid[1])]
    drops = first[label] - model.classify(blacked).proba[:, label]
    return np.clip(drops, 0, None).reshape(grid)


def saliency(model: OCTModel, scan: ScanImage) -> tuple[np.ndarray, str]:
    """The map that explains this model's answer for a scan, over the whole scan, and what it is."""
    maps = model.explain(scan)
    if "attention" in maps:
        return maps["attention"], "class-token attention"
    return occlusion(model, scan), f"occlusion of {OCCLUSION_GRID[0]}x{OCCLUSION_GRID[1]} cells"


def deletion_auc(model: OCTModel, scan: ScanImage, order: np.ndarray, grid: tuple[int, int]) -> float:
    """Area under the predicted class's probability as the cells are blacked out in `order`, in STEPS steps."""
    scan = read_scan(scan)
    label = int(model.classify([scan]).proba[0].argmax())
    versions = [_blackened(scan, grid, order[: round(len(order) * k / STEPS)]) for k in range(STEPS + 1)]
    curve = model.classify(versions).proba[:, label]
    return float(np.trapezoid(curve, dx=1 / STEPS))


def border_fraction(heat: np.ndarray, shape: tuple[int, int]) -> float:
    """Share of a map's mass (stretched over the scan, as the Space draws it) in the outer BORDER of the image."""
    height, width = shape
    stretched = np.asarray(Image.fromarray(heat.astype(np.float32)).resize((width, height), Image.Resampling.BILINEAR))
    stretched = np.clip(stretched, 0, None)
    rows, cols = max(1, round(BORDER * height)), max(1, round(BORDER * width))
    inner = stretched[rows:-rows, cols:-cols].sum()
    return float(1 - inner / (stretched.sum() + 1e-12))


def explanation_figures(model: OCTModel, scans: list, seed: int = 0, desc: str = "explaining") -> dict:
    """metrics.json's `explanation` of one model over some scans: mean deletion AUC of its map, of a random
    order, and the border share of its map (a progress bar named `desc`: a classical model's occlusion maps take
    a minute or more)."""
    rng = np.random.default_rng(seed)
    deletion, random, border, kind = [], [], [], ""
    for source in tqdm(scans, desc=desc, disable=not scans):
        scan = read_scan(source)
        heat, kind = saliency(model, scan)
        cells = heat.size
        deletion.append(deletion_auc(model, scan, np.argsort(-heat.ravel(), kind="stable"), heat.shape))
        random.append(deletion_auc(model, scan, rng.permutation(cells), heat.shape))
        border.append(border_fraction(heat, scan.gray.shape))
    return {
        "map": kind,
        "n_scans": len(scans),
        "deletion_auc": float(np.mean(deletion)),
        "random_deletion_auc": float(np.mean(random)),
        "border_fraction": float(np.mean(border)),
    }
