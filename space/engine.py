"""What the Space does with a file, without the UI: read it safely, run every model, explain, warn.

Everything a user can upload ends as a list of frames (a plain image is one frame, a DICOM may hold
many, a zip holds several files); each frame is decoded once (`octcore.imaging.read_scan`) and that
one `ScanImage` goes to the quality check and to every loaded model. Nothing here raises on bad
input: a file that cannot be read becomes a `Frame` with an error message.
"""

import io
import os
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models import OCTModel, Prediction, load_model
from octcore.imaging import MAX_BYTES, ScanError, ScanImage, read_scan
from octcore.labels import CLASSES, REFERRAL, REFERRAL_LEVEL
from octcore.quality import scan_warnings

HERE = Path(__file__).resolve().parent
VIT_ENV, BASELINE_ENV = "OCT_VIT_MODEL", "OCT_BASELINE_MODEL"
DEFAULT_VIT, DEFAULT_BASELINE = HERE / "models" / "vit", HERE / "models" / "hog-lbp-svm"
LOW_CONFIDENCE = 0.6  # top probability below this is shown as uncertain
MAX_FRAMES = 128  # frames classified per DICOM
MAX_ZIP_FILES = 200  # files read from one zip
MAX_ZIP_TOTAL = 512 * 1024**2  # uncompressed bytes read from one zip (zip bombs stop here)


@dataclass
class Answer:
    """One model's answer for one frame."""

    prediction: Prediction
    ms: float

    @property
    def label(self) -> str:
        return CLASSES[int(self.prediction.proba.argmax())]

    @property
    def confidence(self) -> float:
        return float(self.prediction.proba.max())


@dataclass
class Frame:
    name: str
    scan: ScanImage | None = None  # decoded once; None when unreadable
    error: str | None = None
    results: dict[str, Answer] = field(default_factory=dict)  # by model name
    quality: list[str] = field(default_factory=list)  # why the image may not be an OCT B-scan
    warnings: list[str] = field(default_factory=list)  # quality, then low confidence and disagreement


class Models:
    """The ViT and the classical models, loaded once by `models.load_model`; what is missing is said, not raised.

    vit: a folder or Hub id; classical: one or several (a list, or comma-separated), the first shown by
    default. Unset, they come from OCT_VIT_MODEL / OCT_BASELINE_MODEL, else from space/models/.
    """

    def __init__(self, vit: str | None = None, classical: str | list[str] | None = None):
        self.vit: OCTModel | None = None
        self.classical: list[OCTModel] = []
        self.problems: list[str] = []
        vit = vit or os.environ.get(VIT_ENV) or str(DEFAULT_VIT)
        classical = classical or os.environ.get(BASELINE_ENV) or default_classical()
        sources = classical.split(",") if isinstance(classical, str) else list(classical)
        try:
            self.vit = load_model(vit)
        except Exception as e:  # any failure to load is reported in the app, never fatal
            self.problems.append(
                f"ViT not loaded from `{vit}` ({e}). Train one with "
                f"`python -m train --data DIR --out DIR` and set {VIT_ENV} to its folder or Hub id."
            )
        for source in sources:
            try:
                self.classical.append(load_model(source.strip()))
            except Exception as e:
                self.problems.append(
                    f"Classical model not loaded from `{source}` ({e}). Train one "
                    f"with `python -m baselines.train --data DIR --out DIR` and set {BASELINE_ENV}."
                )

    @property
    def baseline(self) -> OCTModel | None:
        """The classical model shown by default: the first one given."""
        return self.classical[0] if self.classical else None

    @property
    def loaded(self) -> list[OCTModel]:
        return [model for model in (self.vit, self.baseline) if model is not None]

    @property
    def names(self) -> list[str]:
        return [model.name for model in self.loaded]


def default_classical() -> list[str]:
    """The classical model folders bundled in space/models/ (HOG+LBP first), else the one default path."""
    found = sorted(
        (p for p in DEFAULT_VIT.parent.glob("*") if p.is_dir() and p.name != "vit"),
        key=lambda p: (p.name != DEFAULT_BASELINE.name, p.name),
    )
    return [str(p) for p in found] or [str(DEFAULT_BASELINE)]


def _dicom_frames(data: bytes, name: str) -> list[Frame]:
    import pydicom

    try:
        dataset = pydicom.dcmread(io.BytesIO(data))
        pixels = dataset.pixel_array
    except Exception as e:
        return [Frame(name, error=f"cannot read DICOM {name}: {type(e).__name__}: {e}")]
    frames = int(getattr(dataset, "NumberOfFrames", 1) or 1)
    if frames == 1:
        pixels = pixels[None]
    if frames > MAX_FRAMES:
        pixels = pixels[:MAX_FRAMES]
    bits = int(getattr(dataset, "BitsStored", 8) or 8)
    out = []
    for i, frame in enumerate(pixels):
        label = f"{name} frame {i + 1}/{frames}"
        try:
            if frame.dtype.kind in "ui":  # scale by the stored bit depth, not the container's (12-bit data in 16 bits)
                frame = np.clip(frame.astype(np.float32) / (2**bits - 1), 0, 1)
            out.append(Frame(label, read_scan(frame, label)))
        except ScanError as e:
            out.append(Frame(label, error=str(e)))
    return out


def _image_frame(data: bytes, name: str) -> Frame:
    try:
        return Frame(name, read_scan(data, name))
    except ScanError as e:
        return Frame(name, error=str(e).replace("(bytes)", name))


def _zip_frames(data: bytes, name: str) -> list[Frame]:
    """Members read in memory (never extracted, so names like ../../x cannot write anywhere), within limits."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = [m for m in archive.infolist() if not m.is_dir()]
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        return [Frame(name, error=f"cannot read zip {name}: {e}")]
    frames, total = [], 0
    for member in members[:MAX_ZIP_FILES]:
        label = f"{name}/{member.filename}"
        total += member.file_size
        if member.file_size > MAX_BYTES or total > MAX_ZIP_TOTAL:
            frames.append(
                Frame(label, error=f"skipped {label}: the zip expands to more than the limit (possible zip bomb)")
            )
            break
        try:
            with archive.open(member) as handle:
                content = handle.read(
                    member.file_size + 1
                )  # never more than the header declares (a lying header fails its CRC)
        except Exception as e:  # encrypted, corrupt or unsupported compression
            frames.append(Frame(label, error=f"cannot read {label}: {type(e).__name__}: {e}"))
            continue
        frames.extend(read_bytes(content, Path(member.filename).name, allow_zip=False))
    if len(members) > MAX_ZIP_FILES:
        frames.append(Frame(name, error=f"only the first {MAX_ZIP_FILES} of {len(members)} files in {name} were read"))
    return frames


def read_bytes(data: bytes, name: str, allow_zip: bool = True) -> list[Frame]:
    """Frames of one upload: DICOM (by its DICM marker), zip (by its PK signature), or an image."""
    if len(data) > MAX_BYTES and not (allow_zip and data[:4] == b"PK\x03\x04"):
        return [Frame(name, error=f"{name} is larger than {MAX_BYTES // 1024**2} MB")]
    if data[128:132] == b"DICM":
        return _dicom_frames(data, name)
    if data[:4] == b"PK\x03\x04":
        return _zip_frames(data, name) if allow_zip else [Frame(name, error=f"{name}: a zip inside a zip is not read")]
    return [_image_frame(data, name)]


def read_upload(path: str | Path) -> list[Frame]:
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > 8 * MAX_BYTES:
            return [Frame(path.name, error=f"{path.name} is too large to read ({size / 1024**2:.0f} MB)")]
        return read_bytes(path.read_bytes(), path.name)
    except OSError as e:
        return [Frame(path.name, error=f"cannot open {path.name}: {e.strerror or e}")]


def classify(frame: Frame, models: Models, explain: bool = True) -> Frame:
    """Every loaded model on one readable frame (the one decode shared), with timings, maps and warnings."""
    if frame.scan is None:
        return frame
    frame.quality = scan_warnings(frame.scan)
    frame.warnings = list(frame.quality)
    for model in models.loaded:
        start = time.perf_counter()
        prediction = model.analyse(frame.scan, explain)
        frame.results[model.name] = Answer(prediction, (time.perf_counter() - start) * 1000)
    for name, answer in frame.results.items():
        if answer.confidence < LOW_CONFIDENCE:
            frame.warnings.append(f"{name} is unsure (top probability {answer.confidence:.0%}).")
    if len({answer.label for answer in frame.results.values()}) > 1:
        frame.warnings.append(
            "The models disagree: " + ", ".join(f"{n} says {a.label}" for n, a in frame.results.items()) + "."
        )
    return frame


def most_urgent(frames: list[Frame]) -> tuple[Frame, str] | None:
    """The frame whose finding (by the first model that has one) needs the most urgent referral."""
    scored = []
    for frame in frames:
        if frame.results:
            answer = next(iter(frame.results.values()))
            scored.append((REFERRAL_LEVEL[REFERRAL[answer.label]], answer.confidence, frame, answer.label))
    if not scored:
        return None
    _, _, frame, label = max(scored, key=lambda s: (s[0], s[1]))
    return frame, label
