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
        pytest.skip("the 950-scan development sample (../shared/data/kermany-oct-sample) is absent: a fresh clone")
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


@pytest.fixture(scope="session")
def tiny_vit(tmp_path_factory) -> Path:
    """A randomly initialised tiny DINOv2 classifier folder, saved as `python -m train` saves one."""
    import torch
    from transformers import Dinov2Config, Dinov2ForImageClassification

    from octcore.labels import CLASSES
    from train.data import DINOV2_SIZE, make_processor

    folder = tmp_path_factory.mktemp("tiny-vit")
    config = Dinov2Config(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=56,
        patch_size=14,
        num_labels=4,
        id2label=dict(enumerate(CLASSES)),
        label2id={c: i for i, c in enumerate(CLASSES)},
    )
    with torch.random.fork_rng():  # its own seed: the same weights whatever the tests before it drew
        torch.manual_seed(0)
        Dinov2ForImageClassification(config).save_pretrained(folder)
    make_processor(str(folder), DINOV2_SIZE).save_pretrained(folder)
    return calibrate(folder, "vit")


@pytest.fixture(scope="session")
def small_baseline(tmp_path_factory) -> Path:
    """A HOG+LBP SVM fitted on 64 bundled scans with fixed settings, saved as `baselines.train` saves one."""
    return small_classical(tmp_path_factory, "hog+lbp")


@pytest.fixture(scope="session")
def small_lbp(tmp_path_factory) -> Path:
    """The same with LBP features alone: a second classical variant."""
    return small_classical(tmp_path_factory, "lbp")


def small_classical(tmp_path_factory, kind: str) -> Path:
    import numpy as np

    from baselines.features import FeatureSettings, scan_features
    from baselines.io import save_model_folder
    from baselines.model import OCTSVMClassifier
    from models.classical import FORMAT
    from octcore.data import discover, targets
    from octcore.labels import CLASSES

    scans = discover(SAMPLE)[::3][:64]
    settings = FeatureSettings(kind=kind)
    X = np.stack([scan_features(s.path, settings) for s in scans])
    y, _ = targets(scans)
    model = OCTSVMClassifier(C=10, gamma_scale=0.5).fit(X, y)
    folder = tmp_path_factory.mktemp("baseline") / f"{kind.replace('+', '-')}-svm"
    config = {"format": FORMAT, "classes": list(CLASSES), "features": settings.to_dict()}
    return calibrate(save_model_folder(folder, model, config, {}), "classical")


@pytest.fixture(scope="session")
def model_without_dme(tmp_path_factory) -> tuple[Path, Path]:
    """A small HOG+LBP SVM trained without any DME scan, calibrated as the trainer calibrates (detector on its
    training scans, threshold on others), and the DME scan its out-of-scope detector finds furthest away."""
    import numpy as np

    from baselines.features import FeatureSettings, scan_features
    from baselines.io import save_model_folder
    from baselines.model import OCTSVMClassifier
    from models import load_model
    from models.classical import FORMAT, embed
    from models.scope import fit_calibration
    from octcore.data import discover, targets
    from octcore.labels import CLASSES

    scans = [s for s in discover(SAMPLE) if s.label != "DME"]
    fit, check = scans[::2], scans[1::2]
    settings = FeatureSettings()
    X_fit, X_check = (np.stack([scan_features(s.path, settings) for s in part]) for part in (fit, check))
    (y_fit, _), (y_check, _) = targets(fit), targets(check)
    model = OCTSVMClassifier(C=10, gamma_scale=0.5).fit(X_fit, y_fit)
    (_, fit_features), (check_logits, check_features) = embed(model, X_fit), embed(model, X_check)
    calibration = fit_calibration(fit_features, y_fit, check_logits, check_features, y_check, "classical", "test")
    folder = tmp_path_factory.mktemp("without-dme") / "hog-lbp-svm"
    config = {"format": FORMAT, "classes": list(CLASSES), "features": settings.to_dict()}
    save_model_folder(folder, model, config, {}, calibration=calibration)
    dme = [s.path for s in discover(SAMPLE) if s.label == "DME"]
    scores = load_model(folder).classify(dme).out_of_scope
    return folder, dme[int(np.argmax(scores))]


def calibrate(folder: Path, kind: str) -> Path:
    """A temperature and an out-of-scope detector for a test model, fitted as the trainers fit them: on
    some bundled scans' features, the threshold and temperature on others."""
    from models import load_model
    from models.scope import fit_calibration
    from octcore.data import discover, targets

    scans = discover(SAMPLE)
    fit, check = scans[::3][:64], scans[1::6][:32]
    model = load_model(folder, backend="torch")
    (_, fit_features), (check_logits, check_features) = (model.embed([s.path for s in part]) for part in (fit, check))
    (fit_labels, _), (check_labels, _) = targets(fit), targets(check)
    fit_calibration(fit_features, fit_labels, check_logits, check_features, check_labels, kind, "test").save(folder)
    return folder


@pytest.fixture(scope="session")
def models(tiny_vit, small_baseline):
    """Both models loaded as the Space loads them (the tiny ViT, the small SVM)."""
    from space.engine import Models

    loaded = Models(vit=str(tiny_vit), classical=str(small_baseline))
    assert loaded.names == ["ViT", "HOG+LBP SVM"] and not loaded.problems
    return loaded


class FakeHub:
    """A test double of `huggingface_hub.HfApi`: each call is bound against the real method's signature (so
    a wrong argument fails as it would against the Hub), recorded, and answered as the Hub answers;
    nothing is sent anywhere."""

    def __init__(self):
        self.calls: list[tuple[str, dict]] = []
        self.uploaded: dict[str, list[str]] = {}  # repo id -> files of its last commit

    def _record(self, name: str, *args, **kwargs) -> dict:
        import inspect

        from huggingface_hub import HfApi

        bound = inspect.signature(getattr(HfApi, name)).bind(None, *args, **kwargs)
        self.calls.append((name, dict(bound.arguments)))
        return bound.arguments

    def create_repo(self, *args, **kwargs):
        from huggingface_hub import RepoUrl

        call = self._record("create_repo", *args, **kwargs)
        kind = {"dataset": "datasets/", "space": "spaces/"}.get(call.get("repo_type"), "")
        return RepoUrl(f"https://huggingface.co/{kind}{call['repo_id']}")

    def upload_folder(self, *args, **kwargs):
        from fnmatch import fnmatch

        from huggingface_hub import CommitInfo

        call = self._record("upload_folder", *args, **kwargs)
        folder = Path(call["folder_path"])
        files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
        patterns = call.get("allow_patterns")
        self.uploaded[call["repo_id"]] = [f for f in files if not patterns or any(fnmatch(f, x) for x in patterns)]
        kind = {"dataset": "datasets/", "space": "spaces/"}.get(call.get("repo_type"), "")
        return CommitInfo(
            commit_url=f"https://huggingface.co/{kind}{call['repo_id']}/commit/0123abc",
            commit_message=call.get("commit_message") or "",
            commit_description="",
            oid="0123abc",
        )

    def add_space_variable(self, *args, **kwargs):
        self._record("add_space_variable", *args, **kwargs)
        return {}


@pytest.fixture
def fake_hub(monkeypatch) -> FakeHub:
    """The Hub test double, with the real Hub out of reach (HF_HUB_OFFLINE) as a safety net."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return FakeHub()


def assert_no_local_paths(folder: Path, files: list[str]) -> None:
    """No uploaded text file names a path of this machine (the repo, the temporary folders, the home)."""
    import tempfile

    local = [str(ROOT), tempfile.gettempdir() + "/", str(Path.home()) + "/", "../shared"]
    for name in files:
        if name.endswith((".json", ".jsonl", ".md", ".txt", ".csv")):
            text = (folder / name).read_text()
            found = [p for p in local if p in text]
            assert not found, f"{name} names local paths {found}"
