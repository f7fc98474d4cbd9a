"""The one image loader: every format and mode a user may bring, and a clear error for everything else."""

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from octcore.imaging import MAX_PIXELS, ScanError, load_scan, read_scan


def encode(image: Image.Image, fmt: str, **kw) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kw)
    return buffer.getvalue()


@pytest.fixture
def gray(a_scan) -> np.ndarray:
    return load_scan(a_scan)


def test_real_scan_is_a_2d_float_array_in_unit_range(a_scan, gray):
    with Image.open(a_scan) as image:
        width, height = image.size
    assert gray.shape == (height, width) and gray.dtype == np.float32
    assert 0.0 <= gray.min() < gray.max() <= 1.0


def test_path_bytes_file_object_and_pil_give_the_same_array(a_scan, gray):
    data = a_scan.read_bytes()
    assert np.array_equal(load_scan(str(a_scan)), gray)
    assert np.array_equal(load_scan(data), gray)
    assert np.array_equal(load_scan(io.BytesIO(data)), gray)
    with Image.open(a_scan) as image:
        assert np.array_equal(load_scan(image), gray)


@pytest.mark.parametrize("fmt", ["PNG", "TIFF", "BMP", "WEBP"])
def test_lossless_formats_give_the_same_pixels(gray, fmt):
    as_8bit = Image.fromarray(np.round(gray * 255).astype(np.uint8))
    kw = {"lossless": True} if fmt == "WEBP" else {}
    assert np.allclose(load_scan(encode(as_8bit, fmt, **kw)), gray, atol=1e-6)


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16_bit_scans_are_scaled_by_their_range(gray, fmt):
    as_16bit = Image.fromarray(np.round(gray * 65535).astype(np.uint16))
    assert np.allclose(load_scan(encode(as_16bit, fmt)), gray, atol=1e-4)


def test_colour_modes_become_the_same_grayscale(gray):
    rgb = Image.fromarray(np.round(gray * 255).astype(np.uint8)).convert("RGB")
    rgba = rgb.convert("RGBA")
    palette = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=256)
    for image in (rgb, rgba, palette):
        assert np.abs(load_scan(encode(image, "PNG")) - gray).max() <= 1 / 255 + 1e-6


def test_transparent_pixels_are_composited_on_black():
    rgba = np.zeros((64, 64, 4), dtype=np.uint8)
    rgba[..., :3] = 255
    rgba[:, :32, 3] = 255  # left half opaque white, right half transparent white
    loaded = load_scan(encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert loaded[:, :32].min() == 1.0 and loaded[:, 32:].max() == 0.0


def test_exif_orientation_is_applied(gray):
    image = Image.fromarray(np.round(gray * 255).astype(np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: viewers turn it 90 degrees clockwise
    rotated_storage = image.transpose(Image.Transpose.ROTATE_90)
    loaded = load_scan(encode(rotated_storage, "PNG", exif=exif))
    assert loaded.shape == gray.shape
    assert np.allclose(loaded, gray, atol=1 / 255)


def test_arrays_of_every_dtype_are_normalised(gray):
    as_uint8 = np.round(gray * 255).astype(np.uint8)
    assert np.allclose(load_scan(as_uint8), gray, atol=1 / 255)
    assert np.allclose(load_scan(as_uint8.astype(np.uint16) * 257), gray, atol=1 / 255)
    assert np.allclose(load_scan(np.stack([as_uint8] * 3, axis=-1)), gray, atol=1 / 255)
    floats = load_scan(gray.astype(np.float64) * 1000 - 5)
    assert floats.min() == 0.0 and floats.max() == 1.0


def bad_inputs(a_scan: Path, tmp_path: Path) -> dict[str, tuple[object, str]]:
    text = tmp_path / "notes.jpeg"
    text.write_text("this is not an image")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    truncated = a_scan.read_bytes()[:2000]
    bomb = encode(Image.new("L", (8000, 8000)), "PNG")  # 64 megapixels in a few kB
    tiny = encode(Image.new("L", (8, 8)), "PNG")
    return {
        "text file": (text, "not an image"),
        "empty file": (empty, "empty"),
        "truncated JPEG": (truncated, "ends before the image does"),
        "decompression bomb": (bomb, "decompression bomb"),
        "tiny image": (tiny, "at least"),
        "missing file": (tmp_path / "missing.jpeg", "no such file"),
        "folder": (tmp_path, "no such file"),
        "GIF": (encode(Image.new("L", (64, 64)), "GIF"), "supported format"),
        "NaN array": (np.full((64, 64), np.nan), "NaN"),
        "1-D array": (np.zeros(4096), "not a scan"),
        "wrong type": (12345, "expected a file path"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "text file",
        "empty file",
        "truncated JPEG",
        "decompression bomb",
        "tiny image",
        "missing file",
        "folder",
        "GIF",
        "NaN array",
        "1-D array",
        "wrong type",
    ],
)
def test_bad_input_raises_one_clear_error(case, a_scan, tmp_path):
    source, reason = bad_inputs(a_scan, tmp_path)[case]
    with pytest.raises(ScanError, match=reason) as raised:
        load_scan(source)
    assert str(raised.value).startswith("cannot read scan")


def test_bomb_is_refused_before_decoding():
    assert 8000 * 8000 > MAX_PIXELS  # the case above really is over the limit


def test_min_size_decodes_a_large_jpeg_at_reduced_scale_only(gray):
    big = Image.fromarray((gray * 255).astype(np.uint8)).resize((1024, 496))
    jpeg, png = encode(big, "JPEG", quality=90), encode(big, "PNG")
    assert load_scan(jpeg).shape == (496, 1024)
    half = load_scan(jpeg, min_size=(248, 512))
    assert half.shape == (248, 512)
    assert load_scan(jpeg, min_size=(300, 512)).shape == (496, 1024)  # 1/2 scale would be too small
    assert load_scan(png, min_size=(248, 512)).shape == (496, 1024)  # only JPEG has DCT scaling
    full = np.asarray(Image.fromarray(load_scan(jpeg)).resize((512, 248), Image.Resampling.BOX))
    assert np.abs(half - full).mean() < 0.02  # the same picture, not a crop


def test_a_phone_sized_jpeg_is_read_at_reduced_scale_but_the_same_size_png_is_refused(gray):
    """A 48-megapixel photo of a scan (a phone's camera) decodes at 1/8 scale for the models, so it is read; a PNG
    of that size would decode in full, so it is refused with its size in words."""
    photo = Image.fromarray((gray * 255).astype(np.uint8)).resize((8000, 6000))
    scan = read_scan(encode(photo, "JPEG", quality=80))
    assert scan.gray.shape == (750, 1000)  # 1/8 scale: still at least DECODE_SIZE
    # many phones save a JPEG with a second picture after it (MPO): the same reduced-scale decode
    two = encode(photo, "MPO", quality=80, save_all=True, append_images=[photo.resize((400, 300))])
    assert Image.open(io.BytesIO(two)).format == "MPO" and read_scan(two).gray.shape == (750, 1000)
    with pytest.raises(ScanError, match="48 megapixels"):
        load_scan(encode(photo, "PNG", compress_level=1))
