"""Scans to model inputs for the ViT: the saved image processor, B-scan augmentation, a `datasets` transform.

Scans are decoded by `octcore.imaging.read_scan`, as `models.vit` and the Space decode them. The
one preprocessing is the image processor saved with the model (`make_processor`): the whole
scan resized to a fixed height x width, never centre-cropped, so a B-scan 2-3 times wider than tall
keeps all of its retina; the Space and `pipeline("image-classification")` use the same saved file.
Augmentation happens before it, on the grayscale array, and is seeded by (seed, epoch, index) so a
resumed run sees exactly the images an uninterrupted one would.
"""

import functools
import hashlib
from pathlib import Path

import datasets
import numpy as np
import PIL
import torch
from PIL import Image
from transformers import AutoImageProcessor, BitImageProcessorPil

import octcore.imaging
from models.vit import presized, processor_images, processor_table
from octcore.data import Scan, to_hf_dataset
from octcore.imaging import DECODE_SIZE, eight_bit, read_scan, to_image
from train.options import AUGMENT_AT

IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
DINOV2_SIZE = (168, 336)  # (height, width): 12 x 24 patches of 14 px, chosen on validation (benchmarks/vit_recipe.py)


def input_size(config) -> tuple[int, int]:
    """The input size for a base model's config: DINOv2 interpolates its position embeddings, so it gets the scans'
    wide aspect; ViT/DeiT keep their square size."""
    if config.model_type == "dinov2":
        return DINOV2_SIZE
    side = config.image_size if isinstance(config.image_size, int) else config.image_size[0]
    return side, side


def make_processor(base_model: str, size: tuple[int, int]):
    """The base model's image processor, set to resize the whole scan to `size` without cropping."""
    overrides = {"size": {"height": size[0], "width": size[1]}, "do_center_crop": False, "do_convert_rgb": True}
    try:
        return AutoImageProcessor.from_pretrained(base_model, **overrides)
    except OSError:  # a bare checkpoint with no preprocessor_config.json
        return BitImageProcessorPil(
            image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD, resample=Image.Resampling.BICUBIC, **overrides
        )


SPECKLE_DRAWS = 1 << 22  # gamma draws kept per process: 16 MB, 16 to 33 scans' worth at decode size
SCAN_SPECKLE = 16  # gamma shape of the speckle on the decoded scan: sd 1/4
ZOOM, SHIFT = (0.9, 1.1), 0.05  # zoom range; shift, as a fraction of the width and the height, either way


@functools.cache
def speckle_bank(shape: int = SCAN_SPECKLE) -> np.ndarray:
    """gamma(shape, 1/shape) draws (mean 1, sd 1/sqrt(shape)), made once per process from a fixed seed:
    multiplicative speckle. Drawing a scan's worth afresh was the loader's dearest step; a window of these at a
    random offset has the same distribution, pixel by pixel independent, and stays reproducible from (seed,
    epoch, index)."""
    return np.random.default_rng(0).standard_gamma(float(shape), size=SPECKLE_DRAWS, dtype=np.float32) / shape


def affine_matrix(width: int, height: int, scale: float, dx: float, dy: float, flip: bool) -> tuple:
    """PIL's affine coefficients (output to input pixels): zoom by `scale` about the centre, shift by (dx, dy)
    and, if asked, mirror left to right (output x -> width - x), so the flip costs no second pass."""
    cx, cy = width / 2, height / 2
    a, c = 1 / scale, cx - (cx + dx) / scale
    if flip:
        a, c = -a, c + width / scale
    return (a, 0, c, 0, 1 / scale, cy - (cy + dy) / scale)


def tone_and_speckle(out: np.ndarray, rng: np.random.Generator, speckle: int) -> np.ndarray:
    """The augmentation's brightness/contrast and, on half the scans, multiplicative speckle of gamma shape
    `speckle`, of a float32 image in [0, 1]."""
    mean = out.mean()
    out = (out - mean) * rng.uniform(0.8, 1.2) + mean + rng.uniform(-0.08, 0.08)
    if rng.random() < 0.5:
        if out.size <= SPECKLE_DRAWS:
            offset = rng.integers(0, SPECKLE_DRAWS - out.size + 1)
            out *= speckle_bank(speckle)[offset : offset + out.size].reshape(out.shape)
        else:  # far larger than Kermany's scans (a big PNG): drawn for it alone
            out *= rng.standard_gamma(float(speckle), size=out.shape, dtype=np.float32) / speckle
    return np.clip(out, 0, 1, out=out)


def augment(gray: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """B-scan augmentation: small scale and shift, horizontal flip, brightness/contrast, speckle-like noise."""
    height, width = gray.shape
    scale = rng.uniform(*ZOOM)
    dx, dy = rng.uniform(-SHIFT, SHIFT) * width, rng.uniform(-SHIFT, SHIFT) * height
    matrix = affine_matrix(width, height, scale, dx, dy, flip=rng.random() < 0.5)
    image = Image.fromarray(gray).transform((width, height), Image.Transform.AFFINE, matrix, Image.Resampling.BILINEAR)
    return tone_and_speckle(np.asarray(image, dtype=np.float32), rng, SCAN_SPECKLE)


@functools.cache
def _kept_speckle(size: tuple[int, int], resample: int) -> int:
    flat = 0.4 * speckle_bank()[: DECODE_SIZE[0] * DECODE_SIZE[1]].reshape(DECODE_SIZE)  # the scan's speckle
    kept = np.asarray(to_image(flat).resize(size, Image.Resampling(resample)), dtype=np.float32)[4:-4, 4:-4]
    return round(float((kept.mean() / kept.std()) ** 2))  # gamma(k)/k has sd 1/sqrt(k)


def input_speckle(processor) -> int:
    """The gamma shape of the speckle augment_resized adds at the processor's size: the one whose sd is what the
    decoded scan's speckle keeps through processor_images' resize (on a flat scan; 97, sd 0.10, at
    126 x 252, where a pixel averages about 2 x 2 of the scan's; less, so stronger, at larger inputs)."""
    return _kept_speckle(presized(processor), int(processor.resample))


def augment_resized(scan8: np.ndarray, rng: np.random.Generator, processor) -> Image.Image:
    """The same draws as `augment`, made as part of processor_images' resize of the 8-bit scan (`eight_bit`): the
    zoomed and shifted part of it is the resize's source box (so the processor's own filter is the only
    resampling), the flip a mirror of the result, and the tone and a speckle as strong as the decoded scan's after
    the resize, on the resized pixels. An unaugmented scan gives processor_images' image but at its edges."""
    height, width = scan8.shape
    scale = rng.uniform(*ZOOM)
    dx, dy = rng.uniform(-SHIFT, SHIFT) * width, rng.uniform(-SHIFT, SHIFT) * height
    flip = rng.random() < 0.5
    # Black around the scan, as `augment` shows it past the edges: as far as the widest box reaches past an edge
    # (zoomed out and shifted away from it), and the filter's reach beyond.
    reach = (0.5 + SHIFT) / ZOOM[0] - 0.5
    my, mx = int(np.ceil(height * reach)) + 4, int(np.ceil(width * reach)) + 4
    padded = Image.fromarray(np.pad(scan8, ((my, my), (mx, mx))))
    _, _, left, _, _, top = affine_matrix(width, height, scale, dx, dy, flip=False)
    box = (mx + left, my + top, mx + left + width / scale, my + top + height / scale)
    image = padded.resize(presized(processor), Image.Resampling(processor.resample), box=box)
    if flip:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return to_image(tone_and_speckle(np.asarray(image, dtype=np.float32) / 255, rng, input_speckle(processor)))


def _decode_rows(batch: dict) -> dict:
    scans = [eight_bit(read_scan(image["path"] or image["bytes"]).gray) for image in batch["image"]]
    return {
        "scan8": [s.tobytes() for s in scans],
        "height": [s.shape[0] for s in scans],
        "width": [s.shape[1] for s in scans],
    }


def decoded_table(scans: list[Scan], folder: Path, workers: int = 0) -> datasets.Dataset:
    """The scans decoded once (`eight_bit`), in Arrow files in `folder` that `datasets` memory-maps: the loader
    workers then read a scan's pixels (128 kB) rather than decode its JPEG every epoch, and no process holds the
    dataset's pixels. Made by `workers` processes; a later call with the same scans, folder and decoder reads the
    files back (a resumed run), so the folder is the caller's to delete. Used by augment_at input, which starts
    from 8 bits."""
    # datasets reads back whatever files bear the given name, without checking what made them: the name carries a
    # digest of the scans and of the decoder, and files of any other (a run before, with other data or code; the
    # temporary files of a killed one) are removed first.
    digest = hashlib.sha256()
    for scan in scans:
        digest.update(f"{scan.path}\t{scan.label_id}\n".encode())
    digest.update(Path(octcore.imaging.__file__).read_bytes() + PIL.__version__.encode())
    name = f"scans-{digest.hexdigest()[:16]}"
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.iterdir():
        if not stale.name.startswith(name):
            stale.unlink()
    table = scan_table(scans)
    decoded = table.map(
        _decode_rows,
        batched=True,
        batch_size=32,
        num_proc=workers if workers > 1 else None,
        remove_columns=["image"],
        cache_file_name=str(folder / f"{name}.arrow"),
        desc="decoding the training scans once",
    )
    if decoded["index"] != table["index"] or decoded["label"] != table["label"]:  # cheap columns, a last check
        raise RuntimeError(f"{folder} holds other scans than this run's: delete it and run again")
    return decoded


class ScanTransform:
    """The `datasets` transform from table rows to model inputs: decode (read_scan, the decode the Space makes
    of an upload), augment if asked (seeded by seed, epoch and row index) before or with (`augment_at`) the resize
    to the processor's size (processor_images), then, where the processor's remaining work is one value per gray
    level, 8-bit scans (`pixels`) that `ModelInputs` turns into the processor's output on the training device; else
    the processor's output (`pixel_values`)."""

    def __init__(self, processor, augment_seed: int | None = None, augment_at: str = "scan"):
        if augment_at not in AUGMENT_AT:
            raise ValueError(f"augment_at must be one of {AUGMENT_AT}, not {augment_at!r}")
        if augment_at == "input" and presized(processor) is None:
            raise ValueError("augmenting at the input size needs a processor that resizes to a fixed height x width")
        self.processor, self.augment_seed, self.augment_at, self.epoch = processor, augment_seed, augment_at, 0
        # augmented in the resize, from 8 bits (augment_resized), rather than before it (augment, processor_images)
        self.in_resize = augment_seed is not None and augment_at == "input"
        self.sends_pixels = processor_table(processor) is not None  # 8-bit scans, normalised on the device

    def scan(self, batch: dict, i: int) -> np.ndarray:
        """Row i's scan: decoded (read_scan), or its 8 bits as a decoded_table holds them (augment_at input)."""
        if "scan8" in batch:
            return np.frombuffer(batch["scan8"][i], np.uint8).reshape(batch["height"][i], batch["width"][i])
        image = batch["image"][i]
        gray = read_scan(image["path"] or image["bytes"]).gray
        return eight_bit(gray) if self.in_resize else gray

    def __call__(self, batch: dict) -> dict:
        images = []  # grayscale arrays, or (in_resize) the processor's images
        for i, index in enumerate(batch["index"]):
            scan = self.scan(batch, i)
            if self.augment_seed is not None:
                rng = np.random.default_rng([self.augment_seed, self.epoch, index])
                scan = augment_resized(scan, rng, self.processor) if self.in_resize else augment(scan, rng)
            images.append(scan)
        if not self.in_resize:
            images = processor_images(self.processor, images)
        if self.sends_pixels:
            return {"pixels": torch.from_numpy(np.stack([np.asarray(i) for i in images])), "labels": batch["label"]}
        pixel_values = self.processor(images=images, return_tensors="pt")["pixel_values"]
        return {"pixel_values": pixel_values, "labels": batch["label"]}


class ModelInputs:
    """A batch of `scan_dataset` as the model's keyword arguments, on the batch's device: its 8-bit scans become
    the processor's output there, bit for bit, by the processor's own table (`models.vit.processor_table`)."""

    def __init__(self, processor):
        self.table = processor_table(processor)
        self.tables: dict = {}  # the table on each device it was needed

    def __call__(self, batch: dict) -> dict:
        if "pixels" not in batch:
            return batch
        pixels = batch["pixels"]
        if pixels.device not in self.tables:
            self.tables[pixels.device] = torch.from_numpy(self.table).to(pixels.device)
        values = self.tables[pixels.device][:, pixels.long()]  # (channels, batch, height, width)
        return {"pixel_values": values.transpose(0, 1).contiguous(), "labels": batch["labels"]}


def scan_table(scans: list[Scan]) -> datasets.Dataset:
    """The scans as a `datasets.Dataset` (image left encoded, label, patient_id, row index) for a transform."""
    table = to_hf_dataset(scans).cast_column("image", datasets.Image(decode=False))
    return table.add_column("index", list(range(len(table))))


def scan_dataset(
    scans: list[Scan],
    processor,
    augment_seed: int | None = None,
    augment_at: str = "scan",
    decoded: Path | None = None,
    workers: int = 0,
) -> tuple[datasets.Dataset, ScanTransform]:
    """A dataset a DataLoader reads directly, and its transform (set `.epoch` on it before each epoch). With
    augment_at input and a `decoded` folder, the scans are decoded once into it first (decoded_table)."""
    transform = ScanTransform(processor, augment_seed, augment_at)
    table = decoded_table(scans, decoded, workers) if decoded and transform.in_resize else scan_table(scans)
    return table.with_transform(transform), transform
