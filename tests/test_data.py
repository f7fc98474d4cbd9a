"""Dataset layouts, patient ids and patient-disjoint splits on real scans."""

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from octcore.data import (
    DataError,
    cross_validation_parts,
    detect_layout,
    discover,
    fingerprint_all,
    grouped_kfold,
    linked_groups,
    load_split,
    patient_id_from_name,
    patient_split,
    save_split,
    select,
    split_scans,
    to_hf_dataset,
)
from octcore.labels import CLASSES


def patients_of(scans, split, name):
    return {s.patient_id for s, t in zip(scans, split) if t == name}


def test_patient_id_comes_from_kermany_file_names():
    assert patient_id_from_name("CNV-1016042-1.jpeg") == "1016042"
    assert patient_id_from_name("DRUSEN-9837043-12.jpeg") == "9837043"
    assert patient_id_from_name("scan_0001.png") is None


def test_flat_sample_is_discovered_with_labels_and_patients(sample):
    scans = discover(sample)
    assert detect_layout(sample) == "flat" and len(scans) == 192
    assert {c: sum(s.label == c for s in scans) for c in CLASSES} == dict.fromkeys(CLASSES, 48)
    assert all(s.official_split is None and s.key.startswith(s.label + "/") for s in scans)
    assert len({s.patient_id for s in scans}) == 130


def test_split_layout_is_discovered_with_official_splits(leaky_dataset):
    scans = discover(leaky_dataset["root"])
    assert detect_layout(leaky_dataset["root"]) == "split"
    assert len(scans) == leaky_dataset["n_scans"]
    assert {s.official_split for s in scans} == {"train", "val", "test"}


def test_folders_without_scans_are_refused_clearly(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        detect_layout(tmp_path / "nowhere")
    (tmp_path / "photos").mkdir()
    with pytest.raises(DataError, match="expected class folders"):
        discover(tmp_path)
    (tmp_path / "CNV").mkdir()
    with pytest.raises(DataError, match="hold no image files"):
        discover(tmp_path)


def test_patient_split_is_disjoint_complete_and_seeded(sample):
    scans = discover(sample)
    split = patient_split(scans, test_size=0.2, val_size=0.1, seed=0)
    assert set(split) == {"train", "val", "test"}
    train, val, test = (patients_of(scans, split, n) for n in ("train", "val", "test"))
    assert not (train & val) and not (train & test) and not (val & test)
    assert 0.12 < split.count("test") / len(scans) < 0.28
    assert all(len({s.label for s in select(scans, split, "test")}) == 4 for _ in [0])
    assert patient_split(scans, seed=0) == split and patient_split(scans, seed=1) != split


def test_official_test_is_kept_and_leaking_train_images_are_excluded(leaky_dataset):
    scans = discover(leaky_dataset["root"])
    split = patient_split(scans)
    assert [t == "test" for t in split] == [s.official_split == "test" for s in scans]
    excluded = [s for s, t in zip(scans, split) if t == "excluded"]
    assert {s.patient_id for s in excluded} == {leaky_dataset["leaker"]}
    assert not patients_of(scans, split, "train") & patients_of(scans, split, "test")


def test_grouped_kfold_never_puts_a_patient_on_both_sides(sample):
    scans = discover(sample)
    folds = grouped_kfold(scans, n_splits=5, seed=0)
    patients = np.array([s.patient_id for s in scans])
    tested = np.concatenate([test for _, test in folds])
    assert sorted(tested) == list(range(len(scans)))
    for train, test in folds:
        assert not set(patients[train]) & set(patients[test])
        assert {scans[i].label for i in test} == set(CLASSES)
    with pytest.raises(DataError, match="at least 200 patients"):
        grouped_kfold(scans, n_splits=200)


def test_cross_validation_folds_rotate_the_validation_part_and_never_touch_test(sample):
    scans = discover(sample)
    split = split_scans(scans, seed=0, progress=False)
    folds = cross_validation_parts(split, scans, n_splits=4)
    assert len(folds) == 4
    pool = set(split.indices("train") + split.indices("val"))
    validated = [i for names in folds for i, t in enumerate(names) if t == "val"]
    assert sorted(validated) == sorted(pool)  # each train or validation scan validates in exactly one fold
    for names in folds:
        assert [i for i, t in enumerate(names) if t not in ("train", "val")] == [
            i for i in range(len(scans)) if i not in pool
        ]
        assert all(names[i] == split.names[i] for i in range(len(scans)) if i not in pool)
        groups_of = {t: {split.groups[i] for i, name in enumerate(names) if name == t} for t in ("train", "val")}
        assert groups_of["val"] and not groups_of["train"] & groups_of["val"]


def test_identical_images_under_two_patient_ids_are_kept_together(sample):
    scans = discover(sample)
    digests = [d for d, _ in fingerprint_all(scans, workers=2, progress=False)]
    groups = linked_groups(scans, digests)
    pairs = {}
    for scan, digest, group in zip(scans, digests, groups):
        pairs.setdefault(digest, []).append((scan.patient_id, group))
    shared = [p for p in pairs.values() if len({patient for patient, _ in p}) > 1]
    assert shared, "the bundled sample holds identical scans under two patient ids"
    assert all(len({group for _, group in p}) == 1 for p in shared)
    for train, test in grouped_kfold(scans, groups=groups):
        assert not {digests[i] for i in train} & {digests[i] for i in test}


def test_split_file_round_trip_and_refusals(sample, leaky_dataset, tmp_path):
    scans = discover(sample)
    split = patient_split(scans, seed=3)
    save_split(tmp_path / "split.json", scans, split, seed=3)
    assert load_split(tmp_path / "split.json", scans) == split
    with pytest.raises(DataError, match="does not list"):
        load_split(tmp_path / "split.json", discover(leaky_dataset["root"]))
    (tmp_path / "other.json").write_text('{"hello": 1}')
    with pytest.raises(DataError, match="not a split file"):
        load_split(tmp_path / "other.json", scans)
    # a folder holding part of the file's scans is used, and the trainers and compare say how much
    assert split_scans(scans, tmp_path / "split.json").source == f"split file {tmp_path / 'split.json'}"
    assert "96 of its 192 scans are in this data folder" in split_scans(scans[::2], tmp_path / "split.json").source


def test_views_for_the_vit(sample):
    scans = discover(sample)[:6]
    dataset = to_hf_dataset(scans)
    assert dataset.column_names == ["image", "label", "patient_id"]
    assert dataset.features["label"].names == list(CLASSES)
    row = dataset[0]
    assert row["image"].size[0] > 0 and row["label"] == scans[0].label_id and row["patient_id"] == scans[0].patient_id


def test_the_worker_pool_counts_only_the_cpus_this_process_may_use(monkeypatch):
    """A container or `taskset` narrows the CPUs a process may use while os.cpu_count() still counts the machine's:
    the feature and fingerprint pools size themselves by the affinity mask, not by the machine."""
    import octcore.data

    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("no CPU affinity on this system")
    sizes = []

    class Pool(ThreadPoolExecutor):  # records the size asked for; threads, so the test stays in this process
        def __init__(self, max_workers: int):
            sizes.append(max_workers)
            super().__init__(max_workers)

    monkeypatch.setattr(octcore.data, "ProcessPoolExecutor", Pool)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert octcore.data.parallel_map(abs, [-1, 2, -3], "test", progress=False) == [1, 2, 3]
    assert sizes == [1]
