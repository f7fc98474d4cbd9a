"""Write the patient-disjoint split as a Hugging Face `imagefolder` dataset with a card, and publish it.

    python -m octcore.dataset DATA --split-file SPLIT.json --out DIR [--push-to-hub USER/NAME] [--dry-run]

DIR gets train/, validation/ and test/ folders, each with its scans (hard links where the file system
allows, else copies) and a metadata.csv (file_name, label, patient_id, split), and a README.md made
with huggingface_hub's DatasetCard whose `configs` give the splits and the label names, so that
`datasets.load_dataset(DIR)` (or the Hub repo id, once pushed) returns a DatasetDict with a ClassLabel
`label`. Scans the split excludes are left out. Model cards then name the dataset by its Hub id
(`--dataset-id` of both trainers). --dry-run writes DIR and prints the files a push would upload.
"""

import argparse
import csv
import os
import shutil
import sys
from pathlib import Path

from huggingface_hub import DatasetCard, DatasetCardData

from octcore.data import DataError, discover, load_split
from octcore.hub import HubRulesError, files_to_upload, push_folder, writing_folder
from octcore.labels import CLASSES

HF_SPLITS = {"train": "train", "val": "validation", "test": "test"}  # our names -> the Hub's split names
CARD = """---
{{ card_data }}
---

# Kermany 2018 retinal OCT B-scans, split by patient

{{ n_scans }} retinal OCT B-scans labelled CNV, DME, DRUSEN or NORMAL, from Kermany et al. (2018),
split so that no patient, and no identical image filed under two patient ids, is in two splits:

| split | scans | patients |
|---|---|---|
{% for row in rows -%}
| {{ row.split }} | {{ row.scans }} | {{ row.patients }} |
{% endfor %}
Each split folder holds its scans and a `metadata.csv` with `file_name`, `label`, `patient_id` and
`split`. The dataset's official folders share patients between train and test; accuracies measured
on them overstate what a model does for new patients, which is why this split exists.

```python
from datasets import load_dataset

data = load_dataset("{{ repo_id }}")  # DatasetDict: train, validation, test; label is a ClassLabel
```

Source and licence: Kermany D, Zhang K, Goldbaum M (2018), Large Dataset of Labeled Optical Coherence
Tomography (OCT) and Chest X-Ray Images, Mendeley Data v3, doi:10.17632/rscbjbr9sj.3, CC BY 4.0; Kermany
et al., Cell 172(5), 2018. Research and education only.
"""


def features():
    """The columns of the written dataset, with `label` a ClassLabel in CLASSES order."""
    import datasets

    return datasets.Features(
        {
            "image": datasets.Image(),
            "label": datasets.ClassLabel(names=list(CLASSES)),
            "patient_id": datasets.Value("string"),
            "split": datasets.Value("string"),
        }
    )


def load_split_dataset(folder: str | Path):
    """The written dataset as a DatasetDict (train, validation, test) through `load_dataset("imagefolder")`."""
    import datasets

    return datasets.load_dataset("imagefolder", data_dir=str(folder), features=features())


def _link(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system, or links not allowed
        shutil.copy2(source, target)


def dataset_card(rows: list[dict], n_scans: int, repo_id: str | None = None) -> DatasetCard:
    label_names = {str(i): name for i, name in enumerate(CLASSES)}
    config = {
        "config_name": "default",
        "data_files": [{"split": row["split"], "path": f"{row['split']}/*"} for row in rows],
        "features": [
            {"name": "image", "dtype": "image"},
            {"name": "label", "dtype": {"class_label": {"names": label_names}}},
            {"name": "patient_id", "dtype": "string"},
            {"name": "split", "dtype": "string"},
        ],
    }
    size = "n<1K" if n_scans < 1000 else "1K<n<10K" if n_scans < 10_000 else "10K<n<100K"
    data = DatasetCardData(
        license="cc-by-4.0",
        task_categories=["image-classification"],
        size_categories=[size],
        pretty_name="Kermany 2018 OCT, patient-disjoint split",
        tags=["oct", "retina", "ophthalmology", "medical-imaging"],
        configs=[config],
    )
    return DatasetCard.from_template(
        data, template_str=CARD, rows=rows, n_scans=n_scans, repo_id=repo_id or "USER/DATASET"
    )


def write_dataset(data: str | Path, split_file: str | Path, out: str | Path, repo_id: str | None = None) -> Path:
    """The imagefolder dataset of the split's train, val and test scans, written whole (staging, rename)."""
    scans = discover(data)
    split = load_split(split_file, scans)
    rows = []
    with writing_folder(out) as staging:
        for ours, theirs in HF_SPLITS.items():
            chosen = [s for s, t in zip(scans, split) if t == ours]
            if not chosen:
                continue
            folder = staging / theirs
            folder.mkdir()
            with (folder / "metadata.csv").open("w", newline="") as handle:
                table = csv.writer(handle)
                table.writerow(["file_name", "label", "patient_id", "split"])
                for scan in chosen:
                    name = scan.path.name  # Kermany's names are unique per class; prefixed if two classes collide
                    name = name if not (folder / name).exists() else f"{scan.label}-{name}"
                    _link(scan.path, folder / name)
                    table.writerow([name, scan.label, scan.patient_id, theirs])
            rows.append({"split": theirs, "scans": len(chosen), "patients": len({s.patient_id for s in chosen})})
        dataset_card(rows, sum(r["scans"] for r in rows), repo_id).save(staging / "README.md")
    return Path(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m octcore.dataset", description=__doc__.split("\n\n")[0])
    parser.add_argument("data", help="dataset folder (either layout)")
    parser.add_argument("--split-file", required=True, help="the split to write (python -m octcore.split)")
    parser.add_argument("--out", required=True, help="the dataset folder to write (replaced)")
    parser.add_argument("--push-to-hub", metavar="REPO_ID", help="upload it as this Hub dataset repo")
    parser.add_argument("--private", action="store_true")
    parser.add_argument("--dry-run", action="store_true", help="write the folder and list what a push would upload")
    args = parser.parse_args(argv)
    try:
        out = write_dataset(args.data, args.split_file, args.out, args.push_to_hub)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    files = files_to_upload(out, [])
    print(f"wrote {out}: {sum(1 for f in files if not f.endswith(('.csv', '.md')))} scans")
    if args.dry_run:
        print("\n".join(files))
    elif args.push_to_hub:
        try:
            url = push_folder(
                out,
                args.push_to_hub,
                "Upload the patient-disjoint OCT split",
                files,
                repo_type="dataset",
                private=args.private,
            )
        except HubRulesError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        print(f"uploaded: {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
