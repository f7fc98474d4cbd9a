"""Hostile files for the fuzz test and benchmark: malformed JPEG/PNG/TIFF/DICOM, decompression and
zip bombs, zips with path-traversal member names. Every generator takes a `random.Random`, so a run
is reproducible from its seed (hypothesis drives the seed in tests, a counter in the benchmark).
"""

import io
import random
import struct
import warnings
import zipfile
import zlib
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

SAMPLE = Path(__file__).resolve().parent.parent / "examples" / "sample"
HOSTILE_NAMES = [
    "../../etc/passwd",
    "/etc/shadow",
    "..\\..\\windows\\win.ini",
    "C:/boot.ini",
    "a/../../b.jpeg",
    "scan.jpeg",
    "x" * 300 + ".png",
    "ünïcödé.tif",
    "",
    ".",
    "nul\x00.jpeg",
    "dir/",
    "../scan.dcm",
]


def dicom(frames: list[np.ndarray], bits_stored: int = 8) -> bytes:
    """A minimal OCT DICOM (MONOCHROME2, uint8 or uint16) holding the given frames."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.77.1.5.4"  # Ophthalmic Tomography Image Storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    data = FileDataset("scan.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    allocated = 8 if bits_stored <= 8 else 16
    stack = np.stack(frames).astype(np.uint8 if allocated == 8 else np.uint16)
    data.Rows, data.Columns = stack.shape[1:]
    data.NumberOfFrames = len(frames)
    data.SamplesPerPixel, data.PhotometricInterpretation = 1, "MONOCHROME2"
    data.BitsAllocated, data.BitsStored, data.HighBit, data.PixelRepresentation = (
        allocated,
        bits_stored,
        bits_stored - 1,
        0,
    )
    data.PixelData = stack.tobytes()
    buffer = io.BytesIO()
    data.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


@cache
def valid_files() -> dict[str, bytes]:
    """Well-formed files of real bundled scans, the starting points for mutation."""
    paths = sorted(SAMPLE.glob("*/*.jpeg"))
    image = Image.open(paths[0]).convert("L").resize((256, 124))
    frames = [np.asarray(Image.open(p).convert("L").resize((128, 62))) for p in paths[::60][:3]]
    scans = io.BytesIO()
    with zipfile.ZipFile(scans, "w", zipfile.ZIP_DEFLATED) as archive:
        for p in paths[:3]:
            archive.writestr(p.name, p.read_bytes())
    return {
        "jpeg": paths[0].read_bytes(),
        "png": _encode(image, "PNG"),
        "tiff": _encode(image, "TIFF", compression="tiff_lzw"),
        "tiff16": _encode(Image.fromarray(np.asarray(image).astype(np.uint16) * 257), "TIFF"),
        "dicom": dicom(frames),
        "dicom12": dicom([f.astype(np.uint16) * 16 for f in frames], bits_stored=12),
        "zip": scans.getvalue(),
    }


def mutate(data: bytes, rng: random.Random) -> bytes:
    """A few random edits: flipped bytes, boundary values, truncation, inserted, repeated or zeroed runs."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        at = rng.randrange(max(1, len(out)))
        edit = rng.randrange(6)
        if edit == 0:
            out[at : at + 1] = bytes([rng.randrange(256)])
        elif edit == 1:
            out[at : at + 4] = rng.choice(
                [b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x7f\xff\xff\xff", b"\x80\x00\x00\x00"]
            )
        elif edit == 2:
            del out[at:]
        elif edit == 3:
            out[at:at] = rng.randbytes(rng.randint(1, 64))
        elif edit == 4:
            out[at:at] = out[at : at + rng.randint(1, 256)] * rng.randint(2, 16)
        else:
            out[at : at + rng.randint(1, 512)] = bytes(min(512, len(out) - at))
    return bytes(out)


def png_claiming(width: int, height: int) -> bytes:
    """A small valid PNG whose header (CRC fixed) claims another size: a decompression-bomb header."""
    data = bytearray(valid_files()["png"])
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(data[ihdr : ihdr + 17])))
    return bytes(data)


def jpeg_claiming(width: int, height: int) -> bytes:
    """The bundled JPEG with its frame header (SOF0) claiming another size."""
    data = bytearray(valid_files()["jpeg"])
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def dicom_claiming(rng: random.Random) -> bytes:
    """A DICOM whose Rows / Columns / NumberOfFrames disagree with its pixel data."""
    import pydicom

    dataset = pydicom.dcmread(io.BytesIO(valid_files()["dicom"]))
    field = rng.choice(["Rows", "Columns", "NumberOfFrames", "BitsStored"])
    setattr(dataset, field, rng.choice([0, 1, 3, 65535] + ([-1, 2**31 - 1] if field == "NumberOfFrames" else [])))
    buffer = io.BytesIO()
    dataset.save_as(buffer)
    return buffer.getvalue()


@cache
def zip_bomb(lying: bool) -> bytes:
    """100 MB of zeros in 100 kB. `lying`: the headers claim 1 kB, so only the CRC check can notice."""
    buffer = io.BytesIO()
    with (
        zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive,
        archive.open("zeros.png", "w", force_zip64=False) as member,
    ):
        for _ in range(100):
            member.write(bytes(1024**2))
    data = bytearray(buffer.getvalue())
    if lying:
        for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):  # local header, central directory
            at = data.index(signature)
            data[at + offset : at + offset + 4] = struct.pack("<I", 1024)
    return bytes(data)


def hostile_zip(rng: random.Random) -> bytes:
    """A zip of 1-8 members with hostile names holding valid, mutated or bomb files, or another zip."""
    buffer = io.BytesIO()
    with (
        warnings.catch_warnings(),
        zipfile.ZipFile(buffer, "w", rng.choice([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])) as archive,
    ):
        warnings.simplefilter("ignore", UserWarning)  # duplicate member names are meant
        for _ in range(rng.randint(1, 8)):
            name = rng.choice(HOSTILE_NAMES) or "unnamed"
            content = rng.choice(
                [
                    lambda: rng.choice(list(valid_files().values())),
                    lambda: mutate(rng.choice(list(valid_files().values())), rng),
                    lambda: valid_files()["zip"],
                    lambda: rng.randbytes(rng.randint(0, 2048)),
                ]
            )()
            archive.writestr(zipfile.ZipInfo(name.rstrip("\x00")), content)
    return buffer.getvalue()


BOUNDARY = (0, 1, 2, 3, 7, 8, 15, 16, 255, 256, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF)


def _put(data: bytearray, at: int, width: int, rng: random.Random, order: str = "<") -> None:
    """Write a boundary or random value of `width` bytes (1, 2 or 4) at `at`."""
    value = rng.choice(BOUNDARY) if rng.random() < 0.7 else rng.randrange(256**width)
    data[at : at + width] = (value % 256**width).to_bytes(width, "little" if order == "<" else "big")


def image_header_edit(rng: random.Random) -> bytes:
    """A valid PNG, JPEG or TIFF with one field of its header structure set to a boundary value: PNG IHDR (sizes,
    bit depth, colour type, interlace; CRC kept valid), JPEG frame/table headers, a TIFF directory entry."""
    files = valid_files()
    kind = rng.choice(["png", "jpeg", "tiff"])
    data = bytearray(files[kind])
    if kind == "png":
        at = data.index(b"IHDR") + 4
        field, width = rng.choice([(0, 4), (4, 4), (8, 1), (9, 1), (10, 1), (11, 1), (12, 1)])
        _put(data, at + field, width, rng, ">")
        data[at + 13 : at + 17] = struct.pack(">I", zlib.crc32(bytes(data[at - 4 : at + 13])))
    elif kind == "jpeg":
        markers = [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] in (0xC0, 0xC4, 0xDB, 0xDA)]
        at = rng.choice(markers) + 2  # the segment: length (2), then its fields
        field, width = rng.choice([(0, 2), (2, 1), (3, 2), (5, 2), (7, 1), (9, 1), (10, 1)])
        _put(data, at + field, width, rng, ">")
    else:
        ifd = struct.unpack("<I", data[4:8])[0]
        entries = struct.unpack("<H", data[ifd : ifd + 2])[0]
        entry = ifd + 2 + 12 * rng.randrange(max(1, entries))
        field, width = rng.choice([(0, 2), (2, 2), (4, 4), (8, 4), (8, 2)])  # tag, type, count, value or offset
        _put(data, entry + field, width, rng)
    return bytes(data)


def zip_directory_edit(rng: random.Random) -> bytes:
    """A valid zip of scans with one field of its directory structures set to a boundary value: a local header's or
    central directory entry's method, sizes, name or extra length, offset, or the end record's counts and offset."""
    data = bytearray(valid_files()["zip"])
    structures = {  # signature: fields as (offset, width)
        b"PK\x03\x04": [(8, 2), (18, 4), (22, 4), (26, 2), (28, 2)],
        b"PK\x01\x02": [(10, 2), (20, 4), (24, 4), (28, 2), (30, 2), (32, 2), (42, 4)],
        b"PK\x05\x06": [(8, 2), (10, 2), (12, 4), (16, 4), (20, 2)],
    }
    signature = rng.choice(list(structures))
    places = [i for i in range(len(data)) if data.startswith(signature, i)]
    field, width = rng.choice(structures[signature])
    _put(data, rng.choice(places) + field, width, rng)
    return bytes(data)


def dicom_element_edit(rng: random.Random) -> bytes:
    """A valid DICOM with one element of its pixel module or file meta set to an odd value: the transfer syntax (to
    every compressed or deprecated one), photometric interpretation, samples, bits, sign, planar configuration."""
    import pydicom

    dataset = pydicom.dcmread(io.BytesIO(valid_files()[rng.choice(["dicom", "dicom12"])]))
    field = rng.choice(
        [
            "TransferSyntaxUID",
            "PhotometricInterpretation",
            "SamplesPerPixel",
            "BitsAllocated",
            "PixelRepresentation",
            "HighBit",
            "PlanarConfiguration",
            "NumberOfFrames",
        ]
    )
    if field == "TransferSyntaxUID":  # the same native dataset under a file meta claiming another syntax
        data = valid_files()[rng.choice(["dicom", "dicom12"])]
        meta_end = 132 + 12 + struct.unpack("<I", data[140:144])[0]
        syntax = rng.choice(
            [
                "1.2.840.10008.1.2",
                "1.2.840.10008.1.2.2",
                "1.2.840.10008.1.2.1.99",
                "1.2.840.10008.1.2.5",
                "1.2.840.10008.1.2.4.50",
                "1.2.840.10008.1.2.4.70",
                "1.2.840.10008.1.2.4.90",
                "1.2.840.10008.1.2.4.201",
                "1.2.3.4",
            ]
        )
        return _dicom_file(syntax, data[meta_end:])
    if field == "PhotometricInterpretation":
        dataset.PhotometricInterpretation = rng.choice(["RGB", "PALETTE COLOR", "YBR_FULL", "MONOCHROME1", "XYZ"])
    else:
        setattr(dataset, field, rng.choice([0, 1, 2, 3, 7, 12, 16, 32, 64, 65535]))
    buffer = io.BytesIO()
    dataset.save_as(buffer)
    return buffer.getvalue()


KINDS = (
    "mutated image",
    "mutated DICOM",
    "mutated zip",
    "image header field",
    "zip directory field",
    "DICOM element",
    "bomb header",
    "lying DICOM",
    "hostile zip",
    "zip bomb",
    "random bytes",
)


def hostile_file(kind: str, rng: random.Random) -> bytes:
    """One input of the given kind."""
    files = valid_files()
    if kind == "mutated image":
        return mutate(files[rng.choice(["jpeg", "png", "tiff", "tiff16"])], rng)
    if kind == "mutated DICOM":
        return mutate(files[rng.choice(["dicom", "dicom12"])], rng)
    if kind == "mutated zip":
        return mutate(files["zip"], rng)
    if kind == "bomb header":
        size = (rng.choice([1, 31, 70_000, 2**31 - 1]), rng.choice([1, 31, 65_000, 2**31 - 1]))
        return png_claiming(*size) if rng.random() < 0.5 else jpeg_claiming(min(size[0], 65535), min(size[1], 65535))
    if kind == "image header field":
        return image_header_edit(rng)
    if kind == "zip directory field":
        return zip_directory_edit(rng)
    if kind == "DICOM element":
        return dicom_element_edit(rng)
    if kind == "lying DICOM":
        return dicom_claiming(rng)
    if kind == "hostile zip":
        return hostile_zip(rng)
    if kind == "zip bomb":
        return zip_bomb(rng.random() < 0.5)
    return rng.randbytes(rng.randint(0, 4096))


# The families an independent review of the Space found expensive, made at any scale: `scale=1` is the
# review's size (for benchmarks/hostile_memory.py), smaller values keep the tests fast.


def flat_png(width: int, height: int) -> bytes:
    """A PNG of zeros: tens of kB however many pixels it has."""
    return _encode(Image.new("L", (width, height)), "PNG", optimize=True)


def zip_of_big_pngs(count: int = 16, side: int = 4000) -> bytes:
    """A zip of PNGs of `side` x `side` pixels (at the Space's pixel limit per frame by default) of zeros: a few
    hundred kB."""
    png = flat_png(side, side)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for i in range(count):
            archive.writestr(f"big-{i}.png", png)
    return buffer.getvalue()


def _dicom_file(meta_syntax: str, dataset: bytes) -> bytes:
    """A DICOM file: preamble, file meta (explicit VR little endian) naming a transfer syntax, then the dataset."""

    def element(group: int, number: int, vr: bytes, value: bytes) -> bytes:
        value += b"\0" * (len(value) % 2)
        if vr in (b"OB", b"OW", b"UN", b"SQ", b"UT"):
            return struct.pack("<HH", group, number) + vr + b"\0\0" + struct.pack("<I", len(value)) + value
        return struct.pack("<HH", group, number) + vr + struct.pack("<H", len(value)) + value

    body = (
        element(2, 0x0001, b"OB", b"\0\1")
        + element(2, 0x0002, b"UI", b"1.2.840.10008.5.1.4.1.1.77.1.5.4")
        + element(2, 0x0003, b"UI", b"1.2.3.4")
        + element(2, 0x0010, b"UI", meta_syntax.encode())
    )
    meta = element(2, 0x0000, b"UL", struct.pack("<I", len(body))) + body
    return b"\0" * 128 + b"DICM" + meta + dataset


def _image_elements(rows: int, columns: int, frames: int) -> bytes:
    """Explicit-VR little-endian image pixel module elements, without the pixel data."""

    def us(group: int, number: int, value: int) -> bytes:
        return struct.pack("<HH", group, number) + b"US" + struct.pack("<HH", 2, value)

    def string(group: int, number: int, vr: bytes, value: str) -> bytes:
        data = value.encode() + b" " * (len(value) % 2)
        return struct.pack("<HH", group, number) + vr + struct.pack("<H", len(data)) + data

    return (
        us(0x28, 0x0002, 1)
        + string(0x28, 0x0004, b"CS", "MONOCHROME2")
        + string(0x28, 0x0008, b"IS", str(frames))
        + us(0x28, 0x0010, rows)
        + us(0x28, 0x0011, columns)
        + us(0x28, 0x0100, 8)
        + us(0x28, 0x0101, 8)
        + us(0x28, 0x0102, 7)
        + us(0x28, 0x0103, 0)
    )


def deflated_dicom(inflated_mb: int = 512) -> bytes:
    """A DICOM in the deflated transfer syntax whose native pixel data of zeros inflates to `inflated_mb` MB."""
    side = int((inflated_mb * 1024**2) ** 0.5)
    pixels = side * side
    dataset_head = (
        _image_elements(side, side, 1) + struct.pack("<HH", 0x7FE0, 0x0010) + b"OB\0\0" + struct.pack("<I", pixels)
    )
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    parts = [deflater.compress(dataset_head)]
    chunk = bytes(min(pixels, 16 * 1024**2))
    for start in range(0, pixels, len(chunk)):
        parts.append(deflater.compress(chunk[: min(len(chunk), pixels - start)]))
    parts.append(deflater.flush())
    return _dicom_file("1.2.840.10008.1.2.1.99", b"".join(parts))


def _encapsulated(items: list[bytes]) -> bytes:
    """Pixel data as an encapsulated sequence: an empty offset table, then one item per fragment."""
    item = lambda data: struct.pack("<HHI", 0xFFFE, 0xE000, len(data)) + data  # noqa: E731
    body = item(b"") + b"".join(item(x + b"\0" * (len(x) % 2)) for x in items)
    return (
        struct.pack("<HH", 0x7FE0, 0x0010)
        + b"OB\0\0"
        + struct.pack("<I", 0xFFFFFFFF)
        + body
        + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    )


def rle_dicom(side: int = 8000, frames: int = 1) -> bytes:
    """An RLE Lossless DICOM of `frames` frames of side x side zeros: runs of 128 make it tiny on disk."""
    row_runs = bytes([0x81, 0]) * (side * side // 128) + (
        bytes([256 - (side * side % 128) + 1, 0]) if side * side % 128 else b""
    )
    segment = struct.pack("<16I", 1, 64, *([0] * 14)) + row_runs
    return _dicom_file("1.2.840.10008.1.2.5", _image_elements(side, side, frames) + _encapsulated([segment] * frames))


def jpeg_dicom(side: int = 8000, frames: int = 5) -> bytes:
    """A JPEG-baseline DICOM of `frames` frames of side x side (gray, flat, so a few hundred kB each)."""
    jpeg = _encode(Image.new("L", (side, side), 40), "JPEG", quality=50)
    return _dicom_file("1.2.840.10008.1.2.4.50", _image_elements(side, side, frames) + _encapsulated([jpeg] * frames))


def progressive_jpeg_bomb(side: int = 6000, repeats: int = 10_000) -> bytes:
    """A progressive JPEG whose last scan is repeated `repeats` times: valid, small, and slow to decode (every scan
    is a pass over all the image's blocks). A smooth image keeps each scan a few dozen bytes: ~0.8 MB at 6000x6000
    and 10,000 scans, the size an independent review sent."""
    data = _encode(Image.linear_gradient("L").resize((side, side)), "JPEG", progressive=True, quality=60)
    last = data.rindex(b"\xff\xda")
    return data[:last] + data[last:-2] * repeats + b"\xff\xd9"


def tall_strip(width: int = 32, height: int = 40_000) -> bytes:
    """A tiny PNG of an extreme aspect ratio, inside every size limit."""
    return _encode(Image.new("L", (width, height), 30), "PNG")
