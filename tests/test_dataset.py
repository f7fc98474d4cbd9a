"""The split as a Hugging Face dataset: written as an imagefolder with a card, loaded back with `datasets`,
preprocessed by the trainer's own transform, and pushed (to a test double of the Hub)."""

import json

import numpy as np
import pytest

from octcore.dataset import load_split_dataset, main, write_dataset
from octcore.hub import card_problems
from octcore.split import main as split_main


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dataset")
    assert split_main(["examples/sample", "--out", str(folder / "split.json")]) == 0
    return write_dataset("examples/sample", folder / "split.json", folder / "oct"), folder / "split.json"


def test_the_split_loads_back_with_its_labels_and_patients(exported):
    folder, split_file = exported
    data = load_split_dataset(folder)
    counts = json.loads(split_file.read_text())["counts"]
    assert {name: len(part) for name, part in data.items()} == {
        "train": sum(counts["train"].values()),
        "validation": sum(counts["val"].values()),
        "test": sum(counts["test"].values()),
    }
    assert data["train"].features["label"].names == ["CNV", "DME", "DRUSEN", "NORMAL"]
    patients = {name: set(part["patient_id"]) for name, part in data.items()}
    assert not patients["train"] & patients["test"] and not patients["train"] & patients["validation"]
    assert card_problems((folder / "README.md").read_text(), "dataset") == []


def test_the_trainers_transform_reads_it_as_training_does(exported, tiny_vit):
    import datasets
    from transformers import AutoImageProcessor

    from octcore.data import discover, load_split, select
    from train.data import ScanTransform, scan_dataset

    folder, split_file = exported
    processor = AutoImageProcessor.from_pretrained(tiny_vit)
    test = load_split_dataset(folder)["test"].cast_column("image", datasets.Image(decode=False))
    test = test.add_column("index", list(range(len(test)))).with_transform(ScanTransform(processor))
    scans = discover("examples/sample")
    trainer, _ = scan_dataset(select(scans, load_split(split_file, scans), "test"), processor)
    for i in (0, len(test) - 1):
        assert test[i]["labels"] == trainer[i]["labels"]
        np.testing.assert_array_equal(test[i]["pixels"].numpy(), trainer[i]["pixels"].numpy())


def test_push_dry_run_lists_the_files_and_a_push_uploads_them(exported, tmp_path, capsys, fake_hub, monkeypatch):
    from octcore.hub import files_to_upload, push_folder

    _, split_file = exported
    out = tmp_path / "oct"
    assert main(["examples/sample", "--split-file", str(split_file), "--out", str(out), "--dry-run"]) == 0
    listed = capsys.readouterr().out.splitlines()[1:]
    assert "README.md" in listed and "train/metadata.csv" in listed and len(listed) == 192 + 4
    push_folder(out, "someone/oct-split", "Upload", files_to_upload(out, []), repo_type="dataset", api=fake_hub)
    assert fake_hub.calls[0][1]["repo_type"] == "dataset" and fake_hub.uploaded["someone/oct-split"] == listed
