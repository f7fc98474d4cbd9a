"""The OCT look-alike check: real B-scans pass, photos, fundus images, documents and blank frames do not."""

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from octcore.data import discover
from octcore.imaging import read_scan
from octcore.quality import scan_warnings


def test_every_bundled_scan_passes(sample):
    flagged = [s.key for s in discover(sample) if scan_warnings(read_scan(s.path))]
    assert flagged == []


def test_every_shared_sample_scan_passes(shared_data):
    flagged = [s.key for s in discover(shared_data) if scan_warnings(read_scan(s.path))]
    assert flagged == []


def _document() -> Image.Image:
    page = Image.new("L", (600, 800), 255)
    draw = ImageDraw.Draw(page)
    for line in range(30):
        draw.text((40, 20 + 25 * line), "Patient letter: the results of your examination are " * 2, fill=0)
    return page


def _fundus() -> Image.Image:
    yy, xx = np.mgrid[:400, :400]
    image = np.zeros((400, 400, 3), np.uint8)
    image[(yy - 200) ** 2 + (xx - 200) ** 2 < 180**2] = (200, 90, 40)
    image[(yy - 200) ** 2 + (xx - 260) ** 2 < 30**2] = (250, 220, 150)
    return Image.fromarray(image)


@pytest.mark.parametrize(
    "name, image",
    [
        ("document", _document()),
        ("fundus", _fundus()),
        ("colour photo", Image.fromarray((np.random.default_rng(0).random((300, 400, 3)) * 255).astype(np.uint8))),
        ("grayscale noise", Image.fromarray((np.random.default_rng(1).random((300, 600)) * 255).astype(np.uint8))),
        ("blank", Image.new("L", (512, 256), 0)),
        ("tall strip", Image.new("L", (100, 600), 30)),
    ],
)
def test_images_that_are_not_b_scans_are_flagged(name, image):
    assert scan_warnings(read_scan(image)), name


def test_proportions_are_named_as_the_file_has_them_whatever_the_decoding_scale(sample):
    scan = Image.open(next((sample / "DME").glob("*.jpeg"))).convert("L")
    wide = scan.resize((4096, 496))  # a JPEG of it is decoded at a reduced scale, its proportions kept
    for image in (wide, _as_jpeg(wide)):
        assert "8.3 times as wide as it is tall" in " ".join(scan_warnings(read_scan(image)))
    assert "6.0 times as tall as it is wide" in " ".join(scan_warnings(read_scan(scan.resize((100, 600)))))
    assert "4.1 times as wide" in " ".join(scan_warnings(read_scan(scan.resize((1010, 250)))))  # 4.04: past 4


def _as_jpeg(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG")
    return out.getvalue()
