"""Draw the walkthrough's pictures (docs/img/) from real scans and a trained ViT.

    python docs/make_figures.py --vit runs/compare/vit [--data examples/sample]

One scan per class: the scan, the flattened retina band the classical model sees, its HOG and its
LBP codes (classical_view.png); the ViT's attention rollout over the same scans (vit_attention.png).
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
from baselines.features import feature_band, feature_maps  # noqa: E402
from octcore.imaging import load_scan  # noqa: E402
from octcore.labels import CLASSES  # noqa: E402
from train.inference import load_vit  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--vit", required=True, help="a trained ViT folder")
parser.add_argument("--data", default="examples/sample")
parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "img"))
args = parser.parse_args()
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)
scans = [sorted((Path(args.data) / c).glob("*.jpeg"))[3] for c in CLASSES]
grays = [load_scan(p) for p in scans]

fig, axes = plt.subplots(len(CLASSES), 4, figsize=(16, 2.6 * len(CLASSES)))
for row, (label, gray) in enumerate(zip(CLASSES, grays)):
    maps = feature_maps(feature_band(gray))
    for ax, (title, image) in zip(axes[row], [(f"{label}: the scan", gray), ("flattened retina band", maps["band"]),
                                              ("HOG: edge directions per 8x8 cell", maps["hog"]),
                                              ("LBP: local texture code per pixel", maps["lbp"])]):
        ax.imshow(image, cmap="gray" if title != "LBP: local texture code per pixel" else "nipy_spectral", aspect="auto")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
fig.tight_layout()
fig.savefig(out / "classical_view.png", dpi=80)
plt.close(fig)

vit = load_vit(args.vit)
proba, heat = vit.explain(grays)
fig, axes = plt.subplots(1, len(CLASSES), figsize=(4.5 * len(CLASSES), 3))
for ax, label, gray, p, h in zip(axes, CLASSES, grays, proba, heat):
    ax.imshow(gray, cmap="gray", aspect="auto", extent=(0, 1, 1, 0))
    ax.imshow(np.asarray(Image.fromarray(h.astype(np.float32)).resize((256, 128), Image.Resampling.BILINEAR)),
              cmap="inferno", alpha=0.45, aspect="auto", extent=(0, 1, 1, 0))
    ax.set_title(f"true {label}; ViT: {CLASSES[int(p.argmax())]} {p.max():.0%}", fontsize=9)
    ax.axis("off")
fig.tight_layout()
fig.savefig(out / "vit_attention.png", dpi=80)
plt.close(fig)
print(f"wrote {out / 'classical_view.png'} and {out / 'vit_attention.png'}")
