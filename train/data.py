"""Scans to model inputs for the ViT: the saved image processor, B-scan augmentation, `datasets` views.

Scans are decoded by `octcore.imaging.read_scan`, as `models.vit` and the Space decode them. The
one preprocessing is the image processor saved with the model (`make_processor`): the whole
scan resized to a fixed height x width, never centre-cropped, so a B-scan 2-3 times wider than tall
keeps all of its retina; the Space and `pipeline("image-classification")` use the same saved file.
Augmentation happens before it, on the grayscale array, and is seeded by (seed, epoch, index) so a
resumed run sees exactly the images an uninterrupted one would.
"""

import datasets
import numpy as np
import torch
from PIL import Image
from transformers import AutoConfig, AutoImageProcessor, BitImageProcessorPil

from octcore.data import Scan, to_hf_dataset
from octcore.imaging import read_scan, to_image

IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
DINOV2_SIZE = (126, 252)  # (height, width): 9 x 18 patches of 14 px; as accurate as 168 x 336 here and 1.7x faster


def input_size(base_model: str) -> tuple[int, int]:
    """DINOv2 interpolates its position embeddings, so it gets the scans' wide aspect; ViT/DeiT keep their
    square size."""
    config = AutoConfig.from_pretrained(base_model)
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


def augment(gray: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """B-scan augmentation: small scale and shift, horizontal flip, brightness/contrast, speckle-like noise."""
    height, width = gray.shape
    scale = rng.uniform(0.9, 1.1)
    dx, dy = rng.uniform(-0.05, 0.05) * width, rng.uniform(-0.05, 0.05) * height
    # PIL's affine maps output to input pixels: zoom about the centre, then shift.
    cx, cy = width / 2, height / 2
    matrix = (1 / scale, 0, cx - (cx + dx) / scale, 0, 1 / scale, cy - (cy + dy) / scale)
    image = Image.fromarray(gray).transform((width, height), Image.Transform.AFFINE, matrix, Image.Resampling.BILINEAR)
    out = np.asarray(image, dtype=np.float32)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    out = (out - out.mean()) * rng.uniform(0.8, 1.2) + out.mean() + rng.uniform(-0.08, 0.08)
    if rng.random() < 0.5:
        out = out * rng.gamma(16.0, 1 / 16.0, size=out.shape).astype(np.float32)  # multiplicative, mean 1, sd 0.25
    return np.clip(out, 0, 1)


class ScanDataset(torch.utils.data.Dataset):
    """Scans from a `datasets.Dataset` (octcore.data.to_hf_dataset) as processor tensors, augmented if asked."""

    def __init__(self, scans: list[Scan], processor, augment_seed: int | None = None):
        self.table = to_hf_dataset(scans).cast_column("image", datasets.Image(decode=False))
        self.processor, self.augment_seed, self.epoch = processor, augment_seed, 0

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, index: int) -> dict:
        row = self.table[index]
        gray = read_scan(row["image"]["path"] or row["image"]["bytes"]).gray  # the decode the Space makes of an upload
        if self.augment_seed is not None:
            gray = augment(gray, np.random.default_rng([self.augment_seed, self.epoch, index]))
        pixels = self.processor(images=to_image(gray), return_tensors="pt")["pixel_values"][0]
        return {"pixel_values": pixels, "labels": row["label"]}
