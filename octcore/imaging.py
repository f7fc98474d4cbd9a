"""One way in for every scan: a path, bytes, a PIL image or an array become a float32 grayscale array.

`load_scan(...)` gives a 2-D float32 array in [0, 1], upright (EXIF orientation applied), whatever
the file's bit depth or colour mode. Anything that cannot be such an array (empty or non-image
files, truncated data, decompression bombs, absurd sizes) raises `ScanError` with a message a
person can act on.

`read_scan(...)` is the decode every model and check starts from, in training, `compare` and the
Space alike: `load_scan` at `DECODE_SIZE` (JPEGs at a reduced DCT scale, which is 2-3x faster),
plus how colourful the file was, as a `ScanImage`. A request decodes a scan once and hands the
`ScanImage` to every model, so no model sees other pixels than it was trained on.
"""

import io
import os
import warnings
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

ScanSource = str | os.PathLike | bytes | bytearray | BinaryIO | Image.Image | np.ndarray

FORMATS = ("JPEG", "PNG", "TIFF", "BMP", "WEBP")  # what Pillow may decode; nothing else
JPEG_FORMATS = ("JPEG", "MPO")  # MPO: a JPEG with more pictures after it (many phones' photos)
Image.init()  # registers every plugin, so `formats=FORMATS` can name them
MAX_BYTES = 64 * 1024**2  # an OCT B-scan file is well under 1 MB
MAX_PIXELS = 40_000_000  # refuses decompression bombs before any pixel is decoded
MIN_SIDE = 32  # smaller than this is not a scan anyone can read
# (height, width): half of Kermany's 496 x 1024 scans. Every model works at or below it, so a JPEG
# is decoded at the largest DCT reduction that keeps at least this size.
DECODE_SIZE = (248, 512)
TOO_LARGE = "the image is too large (possible decompression bomb)"  # past Pillow's own bound
FILL_LEVEL, FILL_FLATNESS = 0.85, 1e-3  # remove_padding: registration fill is brighter, and flatter (3x3 variance)
TRUNCATED = "the file ends before the image does (an interrupted download or copy?): export or copy it again"


class ScanError(ValueError):
    """A file or upload that cannot be read as a scan. The message says which and why."""

    def __init__(self, name: str, reason: str):
        self.name, self.reason = name, reason
        super().__init__(f"cannot read scan {name}: {reason}")


def _describe(source: ScanSource) -> str:
    if isinstance(source, (str, os.PathLike)):
        return repr(Path(source).name)
    return f"({type(source).__name__})"


def _open(source: ScanSource, name: str) -> Image.Image:
    """Open lazily (header only) from a path, bytes or file object, with size checks first."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise ScanError(name, "no such file")
        size, fp = path.stat().st_size, path
    elif isinstance(source, (bytes, bytearray)):
        size, fp = len(source), io.BytesIO(source)
    elif hasattr(source, "read"):
        data = source.read(MAX_BYTES + 1)
        size, fp = len(data), io.BytesIO(data)
    else:
        raise ScanError(name, "expected a file path, bytes, a PIL image or a numpy array")
    if size == 0:
        raise ScanError(name, "the file is empty")
    if size > MAX_BYTES:
        raise ScanError(name, f"the file is larger than {MAX_BYTES // 1024**2} MB")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(fp, formats=FORMATS)
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        if isinstance(e, UnidentifiedImageError):
            raise ScanError(name, "not an image in a supported format (JPEG, PNG, TIFF, BMP, WebP)") from None
        raise ScanError(name, TOO_LARGE) from None
    except Exception as e:  # Pillow raises many types on malformed headers
        raise ScanError(name, f"the file is damaged ({type(e).__name__}: {e})") from None


def _check_size(image: Image.Image, name: str) -> None:
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise ScanError(
            name,
            f"the image is {width}x{height} pixels ({width * height / 1e6:.0f} megapixels), more than the "
            f"{MAX_PIXELS / 1e6:.0f} megapixels read: a B-scan is far smaller (send a smaller copy; a file this "
            "large may also be a decompression bomb)",
        )
    if min(width, height) < MIN_SIDE:
        raise ScanError(name, f"the image is {width}x{height} pixels; a scan needs at least {MIN_SIDE} on each side")


def _to_gray(image: Image.Image) -> np.ndarray:
    """Any Pillow mode to a float32 array in [0, 1]: colour to luma, alpha composited on black."""
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return np.asarray(image).astype(np.float32) / 65535.0
    if image.mode in ("I", "F"):
        return _array_to_gray(np.asarray(image))
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        image = Image.alpha_composite(black, rgba)
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGB")
    if image.mode == "RGB":
        image = image.convert("L")
    return np.asarray(image, dtype=np.float32) / 255.0


def _array_to_gray(array: np.ndarray) -> np.ndarray:
    """Integer arrays scale by their type's range; other numbers by their own range (min-max)."""
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        rgb = array[..., :3].astype(np.float32)
        gray = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        return _array_to_gray(gray.astype(array.dtype)) if array.dtype.kind in "ui" else _array_to_gray(gray)
    if array.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale or H x W x 3/4 colour array, got shape {array.shape}")
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if array.dtype == np.uint16:
        return array.astype(np.float32) / 65535.0
    values = array.astype(np.float32)
    if not np.isfinite(values).all():
        raise ValueError("the image holds NaN or infinite values")
    low, high = float(values.min()), float(values.max())
    if array.dtype.kind in "ui" and low >= 0 and high <= 65535:  # 16-bit data held in a wider integer
        return values / (255.0 if high <= 255 else 65535.0)
    if array.dtype.kind == "f" and low >= 0 and high <= 1:
        return values
    return (values - low) / (high - low) if high > low else np.zeros_like(values)


def colourfulness(image: Image.Image | np.ndarray) -> float:
    """Mean spread between the colour channels (0 for grayscale), on a thumbnail."""
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[-1] < 3:
            return 0.0
        image = Image.fromarray(_to_uint8(image[..., :3]))
    if image.mode in ("L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F", "1"):
        return 0.0
    rgb = np.asarray(image.convert("RGB").resize((128, 64)), dtype=np.float32) / 255
    return float((rgb.max(axis=2) - rgb.min(axis=2)).mean())


def _to_uint8(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype.kind in "ui":
        return (array.astype(np.float64) / np.iinfo(array.dtype).max * 255).astype(np.uint8)
    low, high = float(np.nanmin(array)), float(np.nanmax(array))
    return ((array - low) / (high - low or 1) * 255).astype(np.uint8)


def load_scan(source: ScanSource, min_size: tuple[int, int] | None = None) -> np.ndarray:
    """Read a scan into a float32 grayscale array of shape (height, width) with values in [0, 1].

    Accepts a file path, raw bytes, a binary file object, a PIL image or a numpy array
    (H x W, or H x W x 3/4 colour). Raises ScanError for anything that is not a readable scan.
    min_size (height, width): a JPEG file may then be decoded at 1/2, 1/4 or 1/8 scale (libjpeg's
    DCT scaling, 2-3x faster) as long as the result stays at least this large; other inputs are
    returned at full size.
    """
    return _decode(source, min_size)[0]


def _decode(source: ScanSource, min_size: tuple[int, int] | None, colour: bool = False) -> tuple[np.ndarray, float]:
    """load_scan's work, and (when asked) the colourfulness of the image before it became grayscale."""
    name = _describe(source)
    if isinstance(source, np.ndarray):
        if source.ndim < 2 or min(source.shape[:2]) < MIN_SIDE or source.size > MAX_PIXELS * 4:
            raise ScanError(name, f"an array of shape {source.shape} is not a scan")
        try:
            gray = np.ascontiguousarray(_array_to_gray(source), dtype=np.float32)
        except ValueError as e:
            raise ScanError(name, str(e)) from None
        return gray, colourfulness(source) if colour else 0.0
    opened = None if isinstance(source, Image.Image) else _open(source, name)
    image = source if opened is None else opened
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image.seek(0)  # first frame of a multi-page TIFF
            if min_size and opened is not None and image.format in JPEG_FORMATS:
                image.draft(image.mode, min_size[::-1])
            _check_size(image, name)  # the pixels to be decoded: a phone's 48-megapixel JPEG is drafted to 1/8
            image = ImageOps.exif_transpose(image)
            spread = colourfulness(image) if colour else 0.0
            gray = _to_gray(image)
    except ScanError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ScanError(name, TOO_LARGE) from None
    except Exception as e:  # truncated or corrupt pixel data surfaces only when decoding
        if isinstance(e, OSError) and "truncated" in str(e):  # Pillow's words for a file cut short
            raise ScanError(name, TRUNCATED) from None
        raise ScanError(name, f"the image data is damaged or unsupported ({type(e).__name__}: {e})") from None
    finally:
        if opened is not None:
            opened.close()
    return np.ascontiguousarray(gray, dtype=np.float32), spread


@dataclass(eq=False)
class ScanImage:
    """A scan decoded once (`read_scan`), as every model and check takes it.

    gray: float32 in [0, 1] at about DECODE_SIZE or the file's own size; colour: `colourfulness` of
    the file before it became grayscale; name: for messages. What several consumers derive from the
    scan is computed once, on first use.
    """

    gray: np.ndarray
    colour: float = 0.0
    name: str = "scan"

    @cached_property
    def unpadded(self) -> np.ndarray:
        """The scan at DECODE_SIZE with the registration padding zeroed (the quality check and the
        classical features both start here)."""
        return remove_padding(resize(self.gray, DECODE_SIZE, Image.Resampling.BOX))


ScanInput = ScanImage | ScanSource


def read_scan(source: ScanInput, name: str | None = None) -> ScanImage:
    """The one decode of a scan for the models: `load_scan` at DECODE_SIZE, with its colourfulness."""
    if isinstance(source, ScanImage):
        return source
    gray, colour = _decode(source, DECODE_SIZE, colour=True)
    return ScanImage(gray, colour, name or _describe(source).strip("'()"))


def resize(gray: np.ndarray, size: tuple[int, int], resample=Image.Resampling.BILINEAR) -> np.ndarray:
    """A float32 image resized to (height, width)."""
    return np.asarray(Image.fromarray(gray.astype(np.float32)).resize(size[::-1], resample), dtype=np.float32)


def eight_bit(image: np.ndarray) -> np.ndarray:
    """An image in [0, 1] (a load_scan array, a map, an RGB picture) as 8-bit pixels, rounded; an 8-bit one as it is.
    The one conversion the models' inputs and the Space's pictures share."""
    return image if image.dtype == np.uint8 else np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)


def to_image(gray: np.ndarray) -> Image.Image:
    """A load_scan array back to an 8-bit grayscale PIL image (what image processors take)."""
    return Image.fromarray(eight_bit(gray))


def _box3(a: np.ndarray) -> np.ndarray:
    """3x3 mean with mirrored edges (scipy's uniform_filter(a, 3), written with slices: 5x faster here)."""
    p = np.pad(a, 1, mode="symmetric")
    rows = p[:-2] + p[1:-1] + p[2:]
    return (rows[:, :-2] + rows[:, 1:-1] + rows[:, 2:]) / 9


def _grow3(mask: np.ndarray) -> np.ndarray:
    """Binary dilation by a 3x3 square."""
    p = np.pad(mask, 1)
    rows = p[:-2] | p[1:-1] | p[2:]
    return rows[:, :-2] | rows[:, 1:-1] | rows[:, 2:]


def remove_padding(gray: np.ndarray) -> np.ndarray:
    """Zero the flat, bright fill that registration left around many Kermany scans (tissue has speckle).

    The fill is white, so it is found as flat and brighter than FILL_LEVEL. In a scan where nothing is that bright
    (lower contrast: another device, or an export that dims the image), the fill is grey: there brightness and
    flatness are judged against the scan's own range, so the fill is still found, and the classical pipeline does
    not take the fill's edge for the retina (docs/results.md, *When the scans look as if another device made them*).
    """
    mean = _box3(gray)
    variance = _box3(gray * gray) - mean * mean
    level, flat = FILL_LEVEL, FILL_FLATNESS
    low, high = float(mean.min()), float(mean.max())
    if high < FILL_LEVEL and high - low > 0.05:  # a dim scan, not a near-uniform frame
        level, flat = low + FILL_LEVEL * (high - low), FILL_FLATNESS * (high - low) ** 2
    return np.where(_grow3((mean > level) & (variance < flat)), 0.0, gray).astype(np.float32)


def add_speckle(gray: np.ndarray, sd: float, rng: np.random.Generator) -> np.ndarray:
    """The scan times gamma noise of mean 1 and standard deviation `sd` (multiplicative speckle, as a device that
    averages fewer frames per B-scan makes), clipped to [0, 1]: the noise the classical trainer's speckled copies
    and the acquisition benchmark add. Gamma of shape 1/sd^2 and scale sd^2 has mean 1 and sd `sd`."""
    if sd <= 0:
        return gray.astype(np.float32)
    noise = rng.gamma(1 / sd**2, sd**2, gray.shape).astype(np.float32)
    return np.clip(gray * noise, 0, 1).astype(np.float32)
