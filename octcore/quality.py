"""Does an image look like a retinal OCT B-scan? Plain checks whose failures a person can read.

The models answer with one of four classes whatever they are shown. These checks stop a photo, a
fundus image, a document or a blank frame from getting a confident-looking diagnosis: a B-scan is
grayscale, mostly dark background, wider than tall or square, and has a bright retinal layer (the
RPE) running across it, continuous from column to column. Each failed check gives one sentence for the user.
"""

import math

import numpy as np
from PIL import Image
from scipy import ndimage

from octcore.imaging import ScanImage, resize

CHECK_SIZE = (128, 256)  # (height, width) the checks run at
LAYER_JUMP = 0.04  # the brightest row may move this much (of the height) from one column to the next
LAYER_CONTRAST = 2.0  # and must be this many times brighter than the median of the image


def scan_warnings(scan: ScanImage) -> list[str]:
    """Reasons to doubt that a decoded scan (`read_scan`) is an OCT B-scan; empty when it looks like one."""
    height, width = scan.gray.shape
    if scan.gray.std() < 0.03:
        return ["The image is almost uniform (a blank or black frame), not a scan."]
    reasons = []
    if scan.colour > 0.06:
        reasons.append("The image is in colour; OCT B-scans are grayscale (is this a photo or a fundus image?).")
    ratio = width / height
    if not 0.7 <= ratio <= 4.0:  # its proportions, not its pixels: a JPEG is decoded at a reduced scale
        # rounded up (past float noise), so that a ratio just past 4 never reads as "4.0 times"
        times = math.ceil(round(max(width, height) / min(width, height) * 10, 6)) / 10
        shape = f"{times} times as wide as it is tall" if ratio > 1 else f"{times} times as tall as it is wide"
        reasons.append(f"The image is {shape}; B-scans are about as wide as tall, up to 4 times wider.")
    small = resize(
        scan.unpadded, CHECK_SIZE, Image.Resampling.BOX
    )  # padding found once, shared with the classical model
    if np.median(small) > 0.45:
        reasons.append(
            "The image is mostly bright; a B-scan is mostly dark background (is this a document or a photo?)."
        )
    tissue = ndimage.gaussian_filter(small, 2)
    jumps = np.median(np.abs(np.diff(tissue.argmax(axis=0))))  # how far the brightest row moves between columns
    contrast = np.median(tissue.max(axis=0)) / (np.median(tissue) + 0.02)
    if jumps > LAYER_JUMP * CHECK_SIZE[0] or contrast < LAYER_CONTRAST:
        reasons.append("No bright retinal layer runs across the image as it does in a B-scan.")
    return reasons
