"""The audit finds the leaks a test plants in a real-layout dataset, and reports through its CLI."""

import json
import subprocess
import sys

from octcore.audit import audit, main
from octcore.data import discover, patient_split, save_split


def test_audit_finds_every_planted_leak(leaky_dataset):
    report = audit(leaky_dataset["root"], workers=2, progress=False)
    assert report["layout"] == "split" and report["n_images"] == leaky_dataset["n_scans"]
    assert report["patients_in_multiple_splits"] == 1
    assert report["patients_in_multiple_splits_examples"] == [leaky_dataset["leaker"]]
    assert report["duplicate_images_across_splits"] == 1
    assert report["duplicate_images_across_labels"] == 1
    assert report["duplicate_images_across_patients"] == 1
    assert [u["file"] for u in report["unreadable_files"]] == ["test/CNV/CNV-5-1.jpeg"]
    assert sum(report["counts"]["test"].values()) == len(list((leaky_dataset["root"] / "test").rglob("*.jpeg")))


def test_a_patient_disjoint_split_file_audits_clean(leaky_dataset, tmp_path):
    scans = discover(leaky_dataset["root"])
    save_split(tmp_path / "split.json", scans, patient_split(scans, keep_official_test=False))
    report = audit(leaky_dataset["root"], split_file=tmp_path / "split.json", workers=2, progress=False)
    assert report["patients_in_multiple_splits"] == 0


def test_cli_json_and_exit_codes(leaky_dataset, tmp_path, capsys):
    assert main([str(leaky_dataset["root"]), "--json", "--workers", "2"]) == 0  # leakage is a finding
    report = json.loads(capsys.readouterr().out)
    assert isinstance(report["patients_in_multiple_splits"], int) and report["patients_in_multiple_splits"] == 1
    assert isinstance(report["duplicate_images_across_splits"], int)
    assert main([str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    text = subprocess.run(
        [sys.executable, "-m", "octcore.audit", str(leaky_dataset["root"])], capture_output=True, text=True, check=True
    ).stdout
    assert "patients in more than one split:        1" in text and "LEAK" in text


def test_audit_of_the_shared_sample(shared_data):
    report = audit(shared_data, workers=2, progress=False)
    assert report["n_images"] == 950 and report["n_patients"] == 594
    assert report["unreadable_files"] == []
