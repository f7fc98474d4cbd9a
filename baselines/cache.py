"""Classical features of a whole dataset, extracted on all cores and cached on disk in resumable parts."""

import hashlib
import json
import os
import tempfile
import time
import weakref
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np
import psutil

from baselines.features import FeatureSettings, scan_features
from octcore.data import Scan, parallel_imap
from octcore.imaging import ScanError

# Bytes of features held in memory at most; a larger array is mapped from a file in the cache folder (`_on_disk`).
IN_MEMORY_LIMIT = 4_000_000_000


def _features_of(item: tuple[Path, int], settings: FeatureSettings) -> tuple[np.ndarray | None, str | None]:
    """One scan's features (or its speckled copy's), or why it cannot be read (module level, so worker processes
    can run it)."""
    path, copy = item
    try:
        return scan_features(path, settings, copy), None
    except ScanError as e:
        return None, e.reason


def _on_disk(folder: Path, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A zeroed array mapped from a file in `folder`. Its pages are the kernel's to write back and drop, so a whole
    dataset's features need not stay in memory beside the SVM fit's own arrays: at full size, 84,484 scans and the
    speckled copies of the 75,156 training ones are 12.1 GB, and the Nystroem fit holds about 15 GB more (the
    mapped rows, a calibration fold's copy of them, liblinear's own copy), past a 24 GB machine together.

    The file keeps its name while the array (or any view of it) lives: the hyperparameter search's worker processes
    are sent a mapped array as its file's name, and open it themselves. It is removed when the array is freed; a
    file left by a process that was killed (its id is in the name) is removed by the next call here."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob(".assembled-*"):
        pid = stale.name.split("-")[1]
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            stale.unlink(missing_ok=True)
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    handle, path = tempfile.mkstemp(dir=folder, prefix=f".assembled-{os.getpid()}-")
    try:
        if hasattr(os, "posix_fallocate"):  # a full disk is an OSError here, not a SIGBUS while the array is filled
            os.posix_fallocate(handle, 0, nbytes)
        else:
            os.ftruncate(handle, nbytes)
        array = np.memmap(path, dtype=dtype, mode="r+", shape=shape)
    except BaseException:
        os.unlink(path)
        raise
    finally:
        os.close(handle)
    weakref.finalize(array._mmap, os.unlink, path)  # views share the one mmap: freed with the last of them
    return array


def cached_features(
    scans: list[Scan],
    settings: FeatureSettings,
    cache_dir: Path | None,
    progress: bool = True,
    every: int = 256,
    copy: Sequence[int] | None = None,
) -> np.ndarray:
    """(n, 2, d) features of the scans, or of scan i's `copy[i]`-th speckled copy (`speckled_copy`; 0: the scan);
    scans already in the cache (same file, size, time, copy and settings) are not recomputed.

    The cache is a folder of part files of `every` scans, each written whole (temporary name, then
    rename) as extraction goes, so a run killed mid-way restarts where it stopped. An unreadable
    scan raises ScanError naming it, after what was computed is saved. Features larger than
    IN_MEMORY_LIMIT come back mapped from a file in the cache folder (an np.memmap), not held in memory.
    """
    tag = hashlib.sha1(json.dumps(settings.to_dict(), sort_keys=True).encode()).hexdigest()[:12]
    folder = cache_dir / f"features-{tag}" if cache_dir else None
    keys = [f"{s.path}|{s.path.stat().st_size}|{s.path.stat().st_mtime_ns}" for s in scans]
    copy = copy or [0] * len(scans)
    keys = [f"{key}|speckled copy {c}" if c else key for key, c in zip(keys, copy)]
    known = {}
    for part in sorted(folder.glob("part-*.npz")) if folder else []:
        with np.load(part, allow_pickle=False) as saved:
            known.update(zip(saved["keys"].tolist(), saved["rows"]))
    todo = [i for i, k in enumerate(keys) if k not in known]
    fresh: list[int] = []

    def save_part() -> None:
        folder.mkdir(parents=True, exist_ok=True)
        part = folder / f"part-{time.time_ns()}-{os.getpid()}.npz"
        staging = folder / f".{part.name}"  # not matched by part-*.npz until renamed
        np.savez(staging, keys=np.array([keys[i] for i in fresh]), rows=np.stack([known[keys[i]] for i in fresh]))
        os.replace(staging, part)
        fresh.clear()

    rows = parallel_imap(
        partial(_features_of, settings=settings),
        [(scans[i].path, copy[i]) for i in todo],
        "features",
        progress=progress,
    )
    try:
        for i, (row, reason) in zip(todo, rows):
            if row is None:
                raise ScanError(
                    scans[i].key, f"{reason}; remove or fix it (python -m octcore.audit lists every such file)"
                )
            known[keys[i]] = row
            fresh.append(i)
            if folder and len(fresh) == every:
                save_part()
    finally:  # what was computed is kept, also when a scan turns out unreadable
        if folder and fresh:
            save_part()
    # Filled row by row, each cached row released as it is copied: np.stack would hold every row twice (the dataset's
    # features, e.g. 6.4 GB for 84,484 scans, would need 12.8 GB for a moment).
    if not keys:
        return np.empty((0,))
    shape, dtype = (len(keys), *known[keys[0]].shape), known[keys[0]].dtype
    large = folder is not None and np.prod(shape) * dtype.itemsize > IN_MEMORY_LIMIT
    features = _on_disk(folder, shape, dtype) if large else np.empty(shape, dtype)
    last = {key: i for i, key in enumerate(keys)}  # a scan listed twice keeps its row until its last use
    for i, key in enumerate(keys):
        features[i] = known.pop(key) if last[key] == i else known[key]
    return features
