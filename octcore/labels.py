"""The four Kermany classes, in one fixed order, and the clinical views built on them.

Kermany et al. (Cell 2018) group the classes by referral urgency: CNV and DME need an urgent
referral, DRUSEN a routine one, NORMAL only observation. The binary view is normal vs abnormal.
"""

import numpy as np

CLASSES: tuple[str, ...] = ("CNV", "DME", "DRUSEN", "NORMAL")

REFERRAL: dict[str, str] = {"CNV": "urgent", "DME": "urgent", "DRUSEN": "routine", "NORMAL": "observation"}
URGENT_CLASSES: tuple[str, ...] = tuple(c for c in CLASSES if REFERRAL[c] == "urgent")
ABNORMAL_CLASSES: tuple[str, ...] = tuple(c for c in CLASSES if c != "NORMAL")

# Referral levels, most urgent first; used to order findings and to weight errors.
REFERRAL_LEVEL: dict[str, int] = {"urgent": 2, "routine": 1, "observation": 0}

CLASS_NOTES: dict[str, str] = {
    "CNV": "Choroidal neovascularisation: new, leaky vessels under the retina (wet AMD). When an eye doctor "
    "confirms it, it is treated urgently.",
    "DME": "Diabetic macular oedema: fluid in the retina from diabetes. When an eye doctor confirms it, it is "
    "treated urgently.",
    "DRUSEN": "Drusen: deposits under the retina, seen on a scan as bumps under the bright RPE line; an early sign "
    "of AMD. When an eye doctor confirms them, they are followed up routinely.",
    "NORMAL": "A normal retina: regular layers, no fluid, no deposits.",
}
# The referral as the page words it for a visitor ("observation" alone reads as if a normal retina needed watching).
REFERRAL_SHOWN: dict[str, str] = {"urgent": "urgent", "routine": "routine", "observation": "none (routine eye care)"}


def label_to_id(label: str) -> int:
    """Index of a class name in CLASSES (case-insensitive); ValueError for an unknown name."""
    name = label.strip().upper()
    if name not in CLASSES:
        raise ValueError(f"unknown class {label!r}; expected one of {', '.join(CLASSES)}")
    return CLASSES.index(name)


def penalty_matrix() -> np.ndarray:
    """Cost of predicting column j for a scan of class i, following the referral logic of Kermany 2018.

    A correct call costs 0; a confusion inside one referral level or an over-referral costs 1;
    an under-referral costs 2 per level missed (urgent called observation: 4). The published
    figure's exact weights are not reproduced here; this matrix is ours and is stated wherever
    the weighted error is reported.
    """
    levels = np.array([REFERRAL_LEVEL[REFERRAL[c]] for c in CLASSES])
    missed = np.clip(levels[:, None] - levels[None, :], 0, None)
    cost = np.where(missed > 0, 2 * missed, 1).astype(float)
    np.fill_diagonal(cost, 0.0)
    return cost
