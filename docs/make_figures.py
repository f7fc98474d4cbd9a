"""Draw the walkthrough's pictures (docs/img/) from real scans and a trained ViT.

    python docs/make_figures.py --vit runs/compare/vit --baseline runs/compare/hog-lbp-svm [--data examples/sample]

One scan per class: the scan, the flattened retina band the classical model sees, its HOG and its
LBP codes (classical_view.png); where the ViT's class token looked on the same scans (vit_attention.png).
"""

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from models import load_model  # noqa: E402
from octcore.imaging import read_scan  # noqa: E402
from octcore.labels import CLASSES  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--vit", required=True, help="a trained ViT folder")
parser.add_argument("--baseline", required=True, help="a trained classical model folder (HOG+LBP)")
parser.add_argument("--data", default="examples/sample")
parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "img"))
args = parser.parse_args()
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)
scans = [sorted((Path(args.data) / c).glob("*.jpeg"))[3] for c in CLASSES]
decoded = [read_scan(p) for p in scans]  # decoded once, as the models decode them

classical = load_model(args.baseline)
fig, axes = plt.subplots(len(CLASSES), 4, figsize=(16, 2.6 * len(CLASSES)))
for row, (label, scan) in enumerate(zip(CLASSES, decoded)):
    maps = classical.explain(scan)
    for ax, (title, image) in zip(
        axes[row],
        [
            (f"{label}: the scan", scan.gray),
            ("flattened retina band", maps["band"]),
            ("HOG: edge directions per 8x8 cell", maps["hog"]),
            ("LBP: local texture code per pixel", maps["lbp"]),
        ],
    ):
        ax.imshow(
            image, cmap="gray" if title != "LBP: local texture code per pixel" else "nipy_spectral", aspect="auto"
        )
        ax.set_title(title, fontsize=9)
        ax.axis("off")
fig.tight_layout()
fig.savefig(out / "classical_view.png", dpi=80)
plt.close(fig)

vit = load_model(args.vit)
fig, axes = plt.subplots(1, len(CLASSES), figsize=(4.5 * len(CLASSES), 3))
for ax, label, scan in zip(axes, CLASSES, decoded):
    answer = vit.analyse(scan)
    p, h = answer.proba, answer.maps["attention"]
    ax.imshow(scan.gray, cmap="gray", aspect="auto", extent=(0, 1, 1, 0))
    ax.imshow(
        np.asarray(Image.fromarray(h.astype(np.float32)).resize((256, 128), Image.Resampling.BILINEAR)),
        cmap="inferno",
        alpha=0.45,
        aspect="auto",
        extent=(0, 1, 1, 0),
    )
    ax.set_title(f"true {label}; ViT: {CLASSES[int(p.argmax())]} {p.max():.0%}", fontsize=9)
    ax.axis("off")
fig.tight_layout()
fig.savefig(out / "vit_attention.png", dpi=80)
plt.close(fig)
print(f"wrote {out / 'classical_view.png'} and {out / 'vit_attention.png'}")
