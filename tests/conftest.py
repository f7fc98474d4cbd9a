import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "examples" / "sample"
SHARED_DATA = ROOT.parent / "shared" / "data" / "kermany-oct-sample"
SHARED_DINOV2 = ROOT.parent / "shared" / "models" / "dinov2-small"


@pytest.fixture
def sample() -> Path:
    """The bundled sample of real (downsized) scans, flat layout."""
    return SAMPLE


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data/kermany-oct-sample is not present (a fresh clone outside CI)")
    return SHARED_DATA


@pytest.fixture
def a_scan() -> Path:
    return next((SAMPLE / "DME").glob("*.jpeg"))


def copy_scan(source: Path, folder: Path, name: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(source, folder / (name or source.name)))


@pytest.fixture(scope="session")
def leaky_dataset(tmp_path_factory) -> dict:
    """The bundled scans in the official train/val/test layout, with leaks planted on purpose.

    Patients are spread over the three splits, then: one patient's image is moved into test while
    the rest stay in train (a patient leak), one test scan is copied into train under another
    class and patient (an identical image across splits and labels), and one junk file is added.
    """
    from octcore.data import discover, fingerprint

    root = tmp_path_factory.mktemp("leaky")
    seen, scans = set(), []
    for scan in discover(SAMPLE):  # drop the sample's own identical pairs so the planted ones are the only ones
        digest, _ = fingerprint(scan.path)
        if digest not in seen:
            seen.add(digest)
            scans.append(scan)
    patients = sorted({s.patient_id for s in scans})
    split_of = {p: ("train", "train", "test", "val")[i % 4] for i, p in enumerate(patients)}
    by_patient = {}
    for scan in scans:
        by_patient.setdefault(scan.patient_id, []).append(scan)
    leaker = next(p for p in patients if split_of[p] == "train" and len(by_patient[p]) >= 2)
    moved = by_patient[leaker][0]
    for scan in scans:
        split = "test" if scan is moved else split_of[scan.patient_id]
        copy_scan(scan.path, root / split / scan.label)
    duplicated = next(s for s in scans if split_of[s.patient_id] == "test" and s.label == "CNV")
    copy_scan(duplicated.path, root / "train" / "NORMAL", "NORMAL-999999-1.jpeg")
    (root / "test" / "CNV" / "CNV-5-1.jpeg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return {"root": root, "leaker": leaker, "moved": moved, "duplicated": duplicated, "n_scans": len(scans) + 2}
