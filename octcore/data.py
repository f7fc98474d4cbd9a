"""Dataset layouts, patient ids, patient-disjoint splits and the views each model needs.

Two layouts are understood:
- split: `DATA/{train,val,test}/{CLASS}/*` (Kaggle `OCT2017`, Mendeley v3), whose official
  splits leak patients between train and test;
- flat: `DATA/{CLASS}/*` (like the shared sample), with no split at all.

File names follow Kermany's `<CLASS>-<patient id>-<image no>.jpeg`. A patient id can occur under
several classes, so every split here groups by patient id alone.
"""

import hashlib
import json
import os
import re
import sys
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from octcore.imaging import ScanError, load_scan
from octcore.labels import CLASSES

IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png", ".tif", ".tiff", ".bmp", ".webp"}
OFFICIAL_SPLITS = ("train", "val", "test")
SPLITS = ("train", "val", "test")
EXCLUDED = "excluded"  # images of test patients found outside the official test folder
SPLIT_FORMAT = "octcore-split/1"
PART_ROWS = 4096  # rows of a dataset's feature arrays taken at a time by row_parts
_NAME = re.compile(r"^(?P<label>[A-Za-z]+)-(?P<patient>[A-Za-z0-9_]+)-(?P<number>\d+)$")


class DataError(ValueError):
    """A dataset folder or split file that cannot be used; the message says what was expected."""


@dataclass(frozen=True)
class Scan:
    path: Path  # absolute path of the image file
    key: str  # path relative to the data root, POSIX style: identifies the scan in split files
    label: str  # class name from CLASSES, taken from the folder
    patient_id: str  # from the file name; the file's stem when the name does not follow Kermany's form
    official_split: str | None  # 'train' / 'val' / 'test' in the split layout, None in a flat folder

    @property
    def label_id(self) -> int:
        return CLASSES.index(self.label)


def patient_id_from_name(filename: str) -> str | None:
    """'CNV-1016042-1.jpeg' -> '1016042'; None when the name is not of Kermany's form."""
    match = _NAME.match(Path(filename).stem)
    return match["patient"] if match else None


def _class_folders(folder: Path) -> dict[str, Path]:
    found = {p.name.upper(): p for p in folder.iterdir() if p.is_dir() and p.name.upper() in CLASSES}
    return dict(sorted(found.items(), key=lambda item: CLASSES.index(item[0])))


def detect_layout(root: str | Path) -> str:
    """'split' or 'flat'; DataError when the folder holds neither."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data folder {str(root)!r} does not exist or is not a folder")
    if any((root / s).is_dir() and _class_folders(root / s) for s in OFFICIAL_SPLITS):
        return "split"
    if _class_folders(root):
        return "flat"
    raise DataError(
        f"no scans found in {str(root)!r}: expected class folders ({', '.join(CLASSES)}) either directly "
        f"inside it or inside train/, val/ and test/"
    )


def class_folders(root: str | Path) -> list[tuple[str | None, str, Path]]:
    """(official split or None, class name, folder) for every class folder of the dataset."""
    root = Path(root)
    if detect_layout(root) == "flat":
        return [(None, label, folder) for label, folder in _class_folders(root).items()]
    return [
        (split, label, folder)
        for split in OFFICIAL_SPLITS
        if (root / split).is_dir()
        for label, folder in _class_folders(root / split).items()
    ]


def discover(root: str | Path) -> list[Scan]:
    """Every image file of the dataset (either layout), sorted by key. Hidden files are skipped."""
    root = Path(root).resolve()
    scans = [
        Scan(path, path.relative_to(root).as_posix(), label, patient_id_from_name(path.name) or path.stem, split)
        for split, label, folder in class_folders(root)
        for path in sorted(folder.iterdir())
        if path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not scans:
        raise DataError(f"the class folders in {str(root)!r} hold no image files")
    return scans


def discover_out_of_scope(root: str | Path) -> list[Path]:
    """Image files in the data folder's subfolders that are not class folders (and, in the split layout, in
    those of test/): scans of anything the models were not taught, for measuring what they flag."""
    root = Path(root).resolve()
    parents = [root / "test"] if detect_layout(root) == "split" else [root]
    folders = [
        f
        for parent in parents
        for f in sorted(parent.iterdir())
        if f.is_dir()
        and f.name.upper() not in CLASSES
        and f.name not in OFFICIAL_SPLITS
        and not f.name.startswith(".")
    ]
    return [
        p
        for folder in folders
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    ]


def targets(scans: list[Scan]) -> tuple[np.ndarray, np.ndarray]:
    """Class ids and patient ids, the two arrays every grouped split and metric needs."""
    return np.array([s.label_id for s in scans]), np.array([s.patient_id for s in scans])


def fingerprint(path: Path) -> tuple[str | None, str | None]:
    """(digest of the decoded pixels, None), or (None, why the file cannot be read)."""
    try:
        pixels = load_scan(path)
    except ScanError as e:
        return None, e.reason
    return hashlib.blake2b(pixels.tobytes() + str(pixels.shape).encode(), digest_size=16).hexdigest(), None


def row_parts(n: int, rows: int = PART_ROWS) -> list[slice]:
    """Slices of `rows` rows covering n: how a whole dataset's arrays are scaled, mapped or projected a part at a
    time, so that no full-size temporary (a float64 copy, a scaled copy) is ever made."""
    return [slice(start, start + rows) for start in range(0, n, rows)]


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity mask where the system has one (Linux), which a container or
    `taskset` narrows while os.cpu_count() still counts the whole machine."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def parallel_imap(function, items: list, desc: str, workers: int | None = None, progress: bool = True) -> Iterator:
    """`function` over `items` on all usable cores, results yielded in order as they come, with a progress bar on
    stderr."""
    workers = workers or usable_cpus()
    with ProcessPoolExecutor(max_workers=workers) as pool:
        jobs = pool.map(function, items, chunksize=max(1, min(32, len(items) // (8 * workers))))
        yield from tqdm(jobs, total=len(items), desc=desc, unit="scan", disable=not progress, file=sys.stderr)


def parallel_map(function, items: list, desc: str, workers: int | None = None, progress: bool = True) -> list:
    """`function` over `items` on all usable cores (in order), with a progress bar on stderr."""
    return list(parallel_imap(function, items, desc, workers, progress))


def fingerprint_all(
    scans: list[Scan], workers: int | None = None, progress: bool = True
) -> list[tuple[str | None, str | None]]:
    """`fingerprint` of every scan, decoded on all cores with a progress bar."""
    return parallel_map(fingerprint, [s.path for s in scans], "reading scans", workers, progress)


def linked_groups(scans: list[Scan], digests: list[str | None]) -> np.ndarray:
    """A group id per scan: its patient, merged with every patient that shares an identical image.

    Kermany's data holds the same B-scan (identical pixels) under two patient ids; splitting by
    patient id alone would put one copy in train and the other in test.
    """
    parent = {s.patient_id: s.patient_id for s in scans}

    def root(p: str) -> str:
        while parent[p] != p:
            parent[p] = parent[parent[p]]
            p = parent[p]
        return p

    first_owner: dict[str, str] = {}
    for scan, digest in zip(scans, digests):
        if digest is not None:
            parent[root(scan.patient_id)] = root(first_owner.setdefault(digest, scan.patient_id))
    return np.array([root(s.patient_id) for s in scans])


def grouped_kfold(
    scans: list[Scan], n_splits: int = 5, seed: int = 0, groups: np.ndarray | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train indices, test indices) per fold; no patient (or group from `linked_groups`) is on both sides,
    classes as balanced as the groups allow."""
    y, patients = targets(scans)
    groups = patients if groups is None else groups
    n_patients = len(set(groups))
    if n_patients < n_splits:
        raise DataError(f"{n_splits}-fold cross-validation needs at least {n_splits} patients, found {n_patients}")
    from sklearn.model_selection import StratifiedGroupKFold  # here, not above: scikit-learn takes seconds to load

    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return list(folds.split(np.zeros(len(y)), y, groups))


def _carve(indices: np.ndarray, y: np.ndarray, groups: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A patient-grouped, stratified subset of `indices` holding about `fraction` of them."""
    n_splits = max(2, round(1 / fraction))
    if len(set(groups[indices])) < n_splits:
        raise DataError(f"too few patients ({len(set(groups[indices]))}) to hold out {fraction:.0%} of them")
    from sklearn.model_selection import StratifiedGroupKFold  # here, not above: scikit-learn takes seconds to load

    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    _, held_out = next(folds.split(np.zeros(len(indices)), y[indices], groups[indices]))
    return indices[held_out]


def patient_split(
    scans: list[Scan],
    test_size: float = 0.2,
    val_size: float = 0.1,
    seed: int = 0,
    keep_official_test: bool = True,
    groups: np.ndarray | None = None,
) -> list[str]:
    """A split name ('train', 'val', 'test' or 'excluded') for each scan, patient-disjoint.

    In the split layout with `keep_official_test`, the official test folder stays the test set and
    every image elsewhere of a test patient is 'excluded' (the official train split leaks them).
    Otherwise about `test_size` of the patients go to test. Validation takes about `val_size` of all
    scans from what is left. Sizes are approximate: whole patients move, never single images.
    `groups` (from `linked_groups`) keeps patients that share an identical image together.
    """
    y, patients = targets(scans)
    groups = patients if groups is None else groups
    split = np.full(len(scans), "train", dtype=object)
    official_test = np.array([s.official_split == "test" for s in scans])
    if keep_official_test and official_test.any():
        test_patients = set(groups[official_test])
        split[[g in test_patients for g in groups]] = EXCLUDED
        split[official_test] = "test"
    else:
        split[_carve(np.arange(len(scans)), y, groups, test_size, seed)] = "test"
    rest = np.flatnonzero(split == "train")
    if val_size > 0:
        split[_carve(rest, y, groups, val_size * len(scans) / len(rest), seed + 1)] = "val"
    return split.tolist()


def split_json(scans: list[Scan], split: list[str], groups: np.ndarray | None = None, **settings) -> str:
    """A split file's text: what `load_split` / `split_scans` read back.

    groups (from `linked_groups`) are saved too, so a reader need not decode every scan again to
    keep patients that share an identical image together in its own cross-validation.
    """
    counts = {name: dict(Counter(s.label for s, t in zip(scans, split) if t == name)) for name in sorted(set(split))}
    record = {
        "format": SPLIT_FORMAT,
        "settings": settings,
        "counts": counts,
        "files": {s.key: t for s, t in zip(scans, split)},
    }
    if groups is not None:
        record["groups"] = {s.key: str(g) for s, g in zip(scans, groups)}
    return json.dumps(record, indent=1) + "\n"


def save_split(
    path: str | Path, scans: list[Scan], split: list[str], groups: np.ndarray | None = None, **settings
) -> None:
    """Write a split file that any later run reuses (`python -m octcore.split`, `--split-file`)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(split_json(scans, split, groups, **settings))


def _read_split_file(path: str | Path, scans: list[Scan]) -> dict:
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read split file {str(path)!r}: {e}") from None
    if not isinstance(record, dict) or record.get("format") != SPLIT_FORMAT:
        raise DataError(f"{str(path)!r} is not a split file (expected format {SPLIT_FORMAT})")
    missing = [s.key for s in scans if s.key not in record["files"]]
    if missing:
        raise DataError(
            f"split file {str(path)!r} does not list {len(missing)} scans of this dataset, e.g. {missing[0]!r}"
        )
    return record


def coverage(record: dict, scans: list[Scan]) -> str:
    """What part of a split file's scans the data folder holds, when not all: figures on part of a split's scans do
    not compare with figures on all of them, so the trainers and `compare` say so."""
    listed = len(record["files"])
    return f" ({len(scans):,} of its {listed:,} scans are in this data folder)" if listed > len(scans) else ""


def split_file_coverage(path: str | Path, scans: list[Scan]) -> str:
    return coverage(_read_split_file(path, scans), scans)


def load_split(path: str | Path, scans: list[Scan]) -> list[str]:
    """The split name of each scan from a split file; DataError if the file does not cover them all."""
    files = _read_split_file(path, scans)["files"]
    return [files[s.key] for s in scans]


def derive_split(
    scans: list[Scan],
    test_size: float = 0.2,
    val_size: float = 0.1,
    seed: int = 0,
    keep_official_test: bool = True,
    progress: bool = True,
) -> tuple[list[str], np.ndarray]:
    """(split name per scan, linked group per scan): every scan decoded once (an unreadable one is a
    DataError naming it), patients sharing an identical image linked, then `patient_split`."""
    fingerprints = fingerprint_all(scans, progress=progress)
    unreadable = [(s, why) for s, (_, why) in zip(scans, fingerprints) if why]
    if unreadable:
        scan, why = unreadable[0]
        raise DataError(
            f"cannot read scan {scan.key}: {why} ({len(unreadable)} unreadable; "
            "python -m octcore.audit lists every such file; fix or remove them first)"
        )
    groups = linked_groups(scans, [digest for digest, _ in fingerprints])
    return patient_split(scans, test_size, val_size, seed, keep_official_test, groups), groups


@dataclass
class TrainingSplit:
    """The one split a trainer uses: a split name and a linked group per scan, and where it came from."""

    names: list[str]  # 'train', 'val', 'test' or 'excluded', per scan
    groups: np.ndarray
    source: str  # said to the user and written into the model's config
    text: str  # the split file to save in the model folder, so the next run can reuse it

    def indices(self, name: str) -> list[int]:
        return [i for i, t in enumerate(self.names) if t == name]

    def validation_problem(self) -> str | None:
        """Why the split cannot calibrate a model (no validation scans), else None."""
        if "val" in self.names:
            return None
        return (
            "the split has no validation scans, on which the trainers fit the temperature and the out-of-scope "
            "threshold (and the ViT's picks its best epoch): make it with python -m octcore.split and a --val-size "
            "above 0"
        )

    def training_problem(self, scans: list[Scan]) -> str | None:
        """Why the training part cannot teach a classifier (its scans all of one class, or none), else None."""
        taught = sorted({scans[i].label for i in self.indices("train")}, key=CLASSES.index)
        if len(taught) >= 2:
            return None
        return (
            f"the training scans are all of one class ({', '.join(taught) or 'none'}); a classifier needs at least "
            f"two of {', '.join(CLASSES[:-1])} and {CLASSES[-1]}"
        )


def split_scans(
    scans: list[Scan], split_file: str | Path | None = None, seed: int = 0, progress: bool = True
) -> TrainingSplit:
    """The split every trainer uses. With a split file, exactly its patients (and its saved groups;
    patient ids for a file without them); without one, `derive_split` with the defaults of
    `python -m octcore.split`."""
    if split_file:
        record = _read_split_file(split_file, scans)
        saved = record.get("groups", {})
        groups = np.array([saved.get(s.key, s.patient_id) for s in scans])
        return TrainingSplit(
            [record["files"][s.key] for s in scans],
            groups,
            f"split file {split_file}{coverage(record, scans)}",
            Path(split_file).read_text(),
        )
    split, groups = derive_split(scans, seed=seed, progress=progress)
    return TrainingSplit(
        split,
        groups,
        f"split by patient here (seed {seed}; no --split-file given)",
        split_json(scans, split, groups, seed=seed, test_size=0.2, val_size=0.1),
    )


def cross_validation_parts(split: TrainingSplit, scans: list[Scan], n_splits: int, seed: int = 0) -> list[list[str]]:
    """Split names per fold, for choosing between recipes on more data than one validation part: the split's train
    and validation scans in `grouped_kfold` folds (its groups kept together), fold k's the validation part and the
    others' the training part; test and excluded scans keep their part, so no fold trains or chooses on them."""
    pool = np.array(split.indices("train") + split.indices("val"))
    folds = grouped_kfold([scans[i] for i in pool], n_splits, seed=seed, groups=split.groups[pool])
    parts = []
    for _, held_out in folds:
        names = ["train" if t in ("train", "val") else t for t in split.names]
        for i in pool[held_out]:
            names[i] = "val"
        parts.append(names)
    return parts


def select(scans: list[Scan], split: list[str], name: str) -> list[Scan]:
    return [s for s, t in zip(scans, split) if t == name]


def to_hf_dataset(scans: list[Scan]):
    """A `datasets.Dataset` with columns image (decoded lazily by `datasets`), label and patient_id."""
    import datasets  # heavy import, needed by the ViT stage only

    features = datasets.Features(
        {
            "image": datasets.Image(),
            "label": datasets.ClassLabel(names=list(CLASSES)),
            "patient_id": datasets.Value("string"),
        }
    )
    columns = {
        "image": [str(s.path) for s in scans],
        "label": [s.label_id for s in scans],
        "patient_id": [s.patient_id for s in scans],
    }
    return datasets.Dataset.from_dict(columns, features=features)


def describe_data(scans: list[Scan], split: list[str], name: str | None = None, hub_id: str | None = None) -> dict:
    """What a model card says about the data a model met: a name and the split's sizes, never a local path."""
    layout = "official train/val/test folders" if any(s.official_split for s in scans) else "one folder per class"
    counts = Counter(split)
    return {
        "name": name or f"Kermany et al. 2018 retinal OCT B-scans ({len(scans):,} scans, {layout})",
        "hub_id": hub_id,
        "n_scans": len(scans),
        "counts": {part: counts.get(part, 0) for part in ("train", "val", "test", EXCLUDED)},
    }
