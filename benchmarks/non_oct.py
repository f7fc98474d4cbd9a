"""Write a folder of images that are not OCT B-scans, for measuring the models' out-of-scope flag.

    python benchmarks/non_oct.py --out DIR [--per-source 8]

Sources, all offline: scikit-image's and matplotlib's bundled pictures (photographs of people,
animals, objects and scenes; a colour fundus photograph, `skimage.data.retina`; microscopy,
astronomy, textures; a CT phantom and an MRI slice, grayscale modalities), and generated ones
(rendered documents, chart screenshots, a UI-like screenshot, uniform and Gaussian noise, gradients,
blank frames). Each source gives --per-source crops at B-scan-like and other aspect ratios, some
turned grayscale, saved as JPEG or PNG. Put DIR (or its content) beside the class folders of a test
set and `python -m compare` scores it as out of scope.
"""

import argparse
import gzip
import io
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

BUNDLED = [
    "astronaut",
    "camera",
    "coffee",
    "chelsea",
    "rocket",
    "coins",
    "moon",
    "page",
    "horse",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "colorwheel",
    "text",
    "clock",
    "brick",
    "grass",
    "gravel",
    "shepp_logan_phantom",
    "binary_blobs",
    "microaneurysms",
]


def _bundled() -> dict[str, np.ndarray]:
    import skimage.data

    pictures = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in BUNDLED:
            pictures[name] = np.asarray(getattr(skimage.data, name)())
    sample = Path(matplotlib.get_data_path()) / "sample_data"
    pictures["grace_hopper"] = np.asarray(Image.open(sample / "grace_hopper.jpg"))
    mri = np.frombuffer(gzip.open(sample / "s1045.ima.gz").read(), np.uint16).reshape(256, 256)  # an MRI slice
    pictures["mri"] = (mri / mri.max() * 255).astype(np.uint8)
    return pictures


def _document(rng: np.random.Generator) -> np.ndarray:
    page = Image.new("L", (850, 1100), 255)
    draw = ImageDraw.Draw(page)
    for line in range(40):
        words = " ".join(
            "".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), rng.integers(2, 9)))
            for _ in range(rng.integers(6, 12))
        )
        draw.text((60, 50 + 25 * line), words, fill=0)
    return np.asarray(page)


def _chart(rng: np.random.Generator) -> np.ndarray:
    fig, ax = plt.subplots(figsize=(8, 4), dpi=80)
    ax.plot(np.cumsum(rng.normal(size=200)))
    ax.bar(range(10), rng.random(10), alpha=0.4)
    ax.set(title="Quarterly results", xlabel="week", ylabel="value")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return np.asarray(Image.open(buffer).convert("RGB"))


def _screenshot(rng: np.random.Generator) -> np.ndarray:
    image = Image.new("RGB", (1024, 640), (240, 240, 245))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, 1024, 40), fill=(50, 60, 90))
    for i in range(8):
        y = 70 + 65 * i
        draw.rectangle(
            (40, y, 980, y + 50), outline=(180, 180, 190), fill=tuple(int(v) for v in rng.integers(200, 256, 3))
        )
        draw.text((60, y + 18), f"Item {i + 1}: settings, messages and files", fill=(20, 20, 20))
    return np.asarray(image)


def generated(rng: np.random.Generator) -> dict[str, np.ndarray]:
    height, width = 496, 1024
    ramp = np.linspace(0, 255, width)[None, :].repeat(height, axis=0)
    return {
        "document": _document(rng),
        "chart": _chart(rng),
        "screenshot": _screenshot(rng),
        "uniform_noise": rng.integers(0, 256, (height, width), dtype=np.uint8),
        "gaussian_noise": np.clip(rng.normal(60, 40, (height, width)), 0, 255).astype(np.uint8),
        "gradient": ramp.astype(np.uint8),
        "blank": np.full((height, width), int(rng.integers(0, 256)), np.uint8),
    }


def variants(picture: np.ndarray, count: int, rng: np.random.Generator) -> list[Image.Image]:
    """Crops at a B-scan-like (2:1) and other aspect ratios, some grayscale, resized to scan-like sizes."""
    image = Image.fromarray(picture if picture.dtype == np.uint8 else (picture * 255).astype(np.uint8))
    image = image.convert("RGB") if image.mode not in ("L", "RGB") else image
    out = []
    for i in range(count):
        aspect = (2.06, 1.0, 0.75, 3.0)[i % 4]
        width, height = image.size
        crop_w = int(min(width, height * aspect) * rng.uniform(0.6, 1.0))
        crop_h = max(16, int(crop_w / aspect))
        left, top = rng.integers(0, width - crop_w + 1), rng.integers(0, max(1, height - crop_h + 1))
        crop = image.crop((left, top, left + crop_w, top + min(crop_h, height)))
        if rng.random() < 0.4:
            crop = crop.convert("L")
        out.append(crop.resize((int(496 * aspect), 496) if aspect >= 1 else (496, int(496 / aspect))))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--per-source", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out, rng = Path(args.out), np.random.default_rng(args.seed)
    out.mkdir(parents=True, exist_ok=True)
    sources = {**_bundled(), **generated(rng)}
    written = 0
    for name, picture in sources.items():
        for i, image in enumerate(variants(picture, args.per_source, rng)):
            image.save(out / f"{name}-{i}.{'png' if i % 3 == 2 else 'jpeg'}")
            written += 1
    print(f"wrote {written} images that are not OCT B-scans ({len(sources)} sources) to {out}")


if __name__ == "__main__":
    main()
