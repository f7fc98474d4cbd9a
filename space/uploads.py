"""Whatever a visitor uploads, turned into decoded frames one at a time, within limits the file cannot talk
its way past.

An upload is a DICOM (by its DICM marker), a zip (by its PK signature) or an image, whatever its name
says. Every size is checked from the headers before anything is decoded: an image's pixels (after the
reduced-scale JPEG decode), a DICOM's rows x columns x samples x frames for every transfer syntax (a
deflated one is inflated with a bound first), the members of a zip (never more than each declares);
the decoded pixels of one request share one budget, and a progressive JPEG with absurdly many scans
(a CPU bomb) is refused before decoding. Frames are yielded one by one, so a caller keeps only what it
needs. Nothing here raises on bad input: a part that cannot be read is a `DecodedFrame` with an error.
This runs in the decode workers (space/workers.py), which also bound its time.
"""

import io
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from octcore.imaging import DECODE_SIZE, FORMATS, JPEG_FORMATS, MAX_BYTES, TOO_LARGE, ScanError, read_scan

MAX_FRAMES = 128  # frames classified per DICOM
MAX_ZIP_FILES = 200  # files read from one zip
MAX_ZIP_TOTAL = 256 * 1024**2  # uncompressed bytes read from one zip
# Decoded pixels per frame: B-scans are at most a few megapixels, and a frame at this limit takes ~350 MB to decode
# and classify (float copies), so one request stays well under 1 GB. (octcore.imaging.MAX_PIXELS, the loader's
# own bomb guard, is looser: training data is trusted more than an anonymous upload.)
MAX_FRAME_PIXELS = 16_000_000
MAX_REQUEST_PIXELS = 200_000_000  # decoded pixels per request, over all its frames
MAX_JPEG_SCANS = 40  # a progressive JPEG has about ten; thousands make a CPU bomb
ASPECT = (1 / 8, 16)  # width / height outside this is no scan (and would make absurd pictures)
DEFLATED = "1.2.840.10008.1.2.1.99"  # the DICOM transfer syntax whose whole dataset is zlib-compressed


@dataclass
class DecodedFrame:
    """One frame of an upload: its pixels (float32, [0, 1]) and colourfulness, or why it could not be read."""

    name: str
    gray: np.ndarray | None = None
    colour: float = 0.0
    error: str | None = None


class Budget:
    """The decoded pixels one request may still use."""

    def __init__(self, pixels: int = MAX_REQUEST_PIXELS):
        self.left, self.exhausted = pixels, False

    def take(self, pixels: int, what: str) -> None:
        if pixels > self.left:
            self.exhausted = True
            raise ScanError(
                what,
                f"decoding it would take {pixels:,} more pixels than this request's limit "
                f"({MAX_REQUEST_PIXELS:,} in all); send fewer or smaller images",
            )
        self.left -= pixels


def jpeg_scans(data: bytes, stop: int = MAX_JPEG_SCANS + 1) -> int:
    """How many scans (SOS markers) a JPEG holds, read from its markers without decoding anything (counting
    stops at `stop`)."""
    count, at = 0, 2
    while at + 4 <= len(data) and count < stop:
        if data[at] != 0xFF:
            break
        marker = data[at + 1]
        if marker == 0xD9:  # end of image
            break
        if marker == 0xFF or 0xD0 <= marker <= 0xD7 or marker == 0x01:  # fill byte, restart marker, TEM
            at += 1 if marker == 0xFF else 2
            continue
        at += 2 + struct.unpack(">H", data[at + 2 : at + 4])[0]
        if marker == 0xDA:  # start of scan: skip its entropy-coded data to the next real marker
            count += 1
            at = data.find(b"\xff", at)
            while at != -1 and at + 1 < len(data) and (data[at + 1] == 0x00 or 0xD0 <= data[at + 1] <= 0xD7):
                at = data.find(b"\xff", at + 2)
            if at == -1:
                break
    return count


def _image(data: bytes, name: str, budget: Budget) -> DecodedFrame:
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as header:  # reads the header only
            width, height = in_file = header.size
            if header.format in JPEG_FORMATS:
                if jpeg_scans(data) > MAX_JPEG_SCANS:
                    raise ScanError(
                        name,
                        f"the JPEG holds more than {MAX_JPEG_SCANS} scans, which no scan needs "
                        "(a file made to keep the server busy)",
                    )
                # The size read_scan will decode it at: libjpeg's reduced scale, as octcore.imaging asks for it
                # (draft configures the decoder from the header; nothing is decoded here).
                header.draft(header.mode, DECODE_SIZE[::-1])
                width, height = header.size
        _check_shape(width, height, name, in_file)
        budget.take(width * height, name)
        scan = read_scan(data, name)
        return DecodedFrame(name, scan.gray, scan.colour)
    except ScanError as e:
        return DecodedFrame(name, error=f"cannot read {name}: {e.reason}")
    except Image.DecompressionBombError:  # a header past Pillow's own bound: refused before _check_shape
        return DecodedFrame(name, error=f"cannot read {name}: {TOO_LARGE}")
    except Image.UnidentifiedImageError:
        return DecodedFrame(
            name,
            error=f"cannot read {name}: not an image in a supported format (JPEG, PNG, TIFF, BMP, WebP) nor a DICOM",
        )
    except Exception as e:  # Pillow raises many types on a malformed header
        return DecodedFrame(name, error=f"cannot read {name}: the file is damaged ({type(e).__name__})")


def _check_shape(width: int, height: int, name: str, in_file: tuple[int, int] | None = None) -> None:
    """`width` x `height`: the pixels to be decoded (a JPEG's at its reduced scale); `in_file`: the size the visitor
    knows the image by, which the message names."""
    size = "x".join(map(str, in_file or (width, height)))
    if width * height > MAX_FRAME_PIXELS:
        raise ScanError(name, f"the image is {size} pixels, more than {MAX_FRAME_PIXELS:,}; no B-scan is that large")
    if not ASPECT[0] <= width / max(height, 1) <= ASPECT[1]:
        raise ScanError(name, f"the image is {size} pixels; no B-scan is that narrow or that wide")


def _meta(data: bytes) -> tuple[dict[int, bytes], int]:
    """The file meta group's elements (0002,xxxx) by element number, and where the dataset starts: read by
    hand, because pydicom inflates a deflated dataset whole before anything can be checked."""
    elements, at = {}, 132  # after the preamble and DICM; the meta group is explicit VR little endian
    while at + 8 <= len(data) and data[at : at + 2] == b"\x02\x00":
        number = struct.unpack("<H", data[at + 2 : at + 4])[0]
        if data[at + 4 : at + 6] in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN"):
            start, length = at + 12, struct.unpack("<I", data[at + 8 : at + 12])[0]
        else:
            start, length = at + 8, struct.unpack("<H", data[at + 6 : at + 8])[0]
        elements[number], at = data[start : start + length], start + length
    return elements, at


def _inflates_too_far(data: bytes) -> bool:
    """Whether a DICOM's dataset is deflated and inflates to more than MAX_BYTES (inflated with that bound)."""
    elements, start = _meta(data)
    if elements.get(0x0010, b"").rstrip(b"\0 ").decode("ascii", "replace") != DEFLATED:
        return False
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        inflater.decompress(data[start:], MAX_BYTES + 1)
    except zlib.error:
        return False  # not valid deflate data: pydicom refuses it with its own reason
    return bool(inflater.unconsumed_tail)


def _dicom(data: bytes, name: str, budget: Budget) -> Iterator[DecodedFrame]:
    import pydicom
    from pydicom.pixels import pixel_array

    try:
        if _inflates_too_far(data):
            raise ScanError(name, f"the deflated DICOM inflates to more than {MAX_BYTES // 1024**2} MB")
        dataset = pydicom.dcmread(io.BytesIO(data))
        rows, columns = int(dataset.Rows), int(dataset.Columns)
        samples = int(getattr(dataset, "SamplesPerPixel", 1) or 1)
        frames = max(1, int(getattr(dataset, "NumberOfFrames", 1) or 1))
        bits = int(getattr(dataset, "BitsStored", 8) or 8)
        _check_shape(columns, rows, name)
        if samples not in (1, 3) or not 1 <= bits <= 16:
            raise ScanError(name, f"the DICOM declares {samples} samples of {bits} bits per pixel; OCT is 1 x 8-16")
    except ScanError as e:
        yield DecodedFrame(name, error=f"cannot read DICOM {name}: {e.reason}")
        return
    except Exception as e:  # malformed files raise many types in pydicom
        yield DecodedFrame(name, error=f"cannot read DICOM {name}: {type(e).__name__}: {e}"[:300])
        return
    for i in range(min(frames, MAX_FRAMES)):
        label = f"{name} frame {i + 1}/{frames}"
        try:
            budget.take(rows * columns * samples, label)
            frame = pixel_array(dataset, index=i if frames > 1 else None)  # this frame alone is decoded
            if frame.dtype.kind in "ui":  # scale by the stored bit depth, not the container's (12-bit data in 16)
                frame = np.clip(frame.astype(np.float32) / (2**bits - 1), 0, 1)
            scan = read_scan(frame, label)
            yield DecodedFrame(label, scan.gray, scan.colour)
        except ScanError as e:
            yield DecodedFrame(label, error=f"cannot read {label}: {e.reason}")
            if "limit" in e.reason:
                return
        except Exception as e:
            yield DecodedFrame(label, error=f"cannot read {label}: {type(e).__name__}: {e}"[:300])
            return
    if frames > MAX_FRAMES:
        yield DecodedFrame(name, error=f"only the first {MAX_FRAMES} of the {frames} frames of {name} were read")


def _zip(data: bytes, name: str, budget: Budget) -> Iterator[DecodedFrame]:
    """Members read in memory (never extracted, so names like ../../x cannot write anywhere), within limits."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = [m for m in archive.infolist() if not m.is_dir()]
    except Exception as e:  # zipfile raises many types on a damaged directory (NotImplementedError for a bad version)
        yield DecodedFrame(name, error=f"cannot read zip {name}: {type(e).__name__}: {e}"[:300])
        return
    if not members:
        yield DecodedFrame(name, error=f"cannot read zip {name}: there is no file in it")
        return
    total = 0
    for member in members[:MAX_ZIP_FILES]:
        label = f"{name}/{member.filename}"
        total += member.file_size
        if member.file_size > MAX_BYTES or total > MAX_ZIP_TOTAL:
            yield DecodedFrame(label, error=f"skipped {label}: the zip expands to more than the limit (a zip bomb?)")
            return
        try:
            with archive.open(member) as handle:  # never more than the header declares (a lying one fails its CRC)
                content = handle.read(member.file_size + 1)
        except Exception as e:  # encrypted, corrupt or unsupported compression
            yield DecodedFrame(label, error=f"cannot read {label}: {type(e).__name__}: {e}"[:300])
            continue
        yield from iter_upload(content, Path(member.filename).name or "unnamed", budget, allow_zip=False)
        if budget.exhausted:  # every further member would be refused the same way
            return
    if len(members) > MAX_ZIP_FILES:
        yield DecodedFrame(name, error=f"only the first {MAX_ZIP_FILES} of {len(members)} files in {name} were read")


def is_zip(data: bytes) -> bool:
    return data[:4] == b"PK\x03\x04"


def iter_upload(
    data: bytes, name: str, budget: Budget | None = None, allow_zip: bool = True
) -> Iterator[DecodedFrame]:
    """The frames of one upload, decided by its content: a DICOM's frames, a zip's files, or one image."""
    budget = budget or Budget()
    if not data:
        yield DecodedFrame(name, error=f"cannot read {name}: the file is empty")
    elif len(data) > MAX_BYTES and not (allow_zip and is_zip(data)):
        yield DecodedFrame(name, error=f"cannot read {name}: it is larger than {MAX_BYTES // 1024**2} MB")
    elif data[128:132] == b"DICM":
        yield from _dicom(data, name, budget)
    elif is_zip(data):
        if allow_zip:
            yield from _zip(data, name, budget)
        else:
            yield DecodedFrame(name, error=f"cannot read {name}: a zip inside a zip is not read")
    else:
        yield _image(data, name, budget)
