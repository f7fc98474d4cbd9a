"""Save and publish a classical model folder: skops (never pickle), a JSON config, metrics, a card.

The folder's format (file names, trusted types) is defined by its reader, `models.classical`.
"""

import json
from pathlib import Path

import skops.io as sio

from models.classical import CONFIG_FILE, MODEL_FILE
from octcore.hub import push_folder, writing_folder
from octcore.labels import CLASSES


def save_model_folder(
    out: str | Path, model, config: dict, metrics: dict, card: str, files: dict[str, str] | None = None
) -> Path:
    """Write the folder next to its final place, then rename: a crash never leaves a half-written model.
    files: more text files to write into it (name: content)."""
    with writing_folder(out) as staging:
        sio.dump(model, staging / MODEL_FILE)
        (staging / CONFIG_FILE).write_text(json.dumps(config, indent=1) + "\n")
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
        (staging / "README.md").write_text(card)
        for name, content in (files or {}).items():
            (staging / name).write_text(content)
    return Path(out)


def model_card(config: dict, metrics: dict) -> str:
    m = metrics
    ci = m["ci95"]
    kind = config["features"]["kind"].upper()
    return f"""---
library_name: sklearn
license: apache-2.0
tags: [oct, retina, ophthalmology, hog, lbp, svm, skops, image-classification]
datasets: [kermany2018]
---
# Classical OCT B-scan classifier: {kind} features + SVM ({config["solver"]})

Sorts retinal OCT B-scans into {", ".join(CLASSES)}. Research and education only: **not a diagnosis**.

Pipeline: remove the scans' white padding, find and flatten the retina along a quadratic fit of the
RPE line, crop a band around it, light Gaussian denoising, {kind} features of the band and of its
mirror image, scaling, an SVM, sigmoid-calibrated probabilities averaged over the two views. Load
with `models.load_model(folder_or_repo_id)` (skops, trusted types named).

## Evaluation ({config["evaluated_on"]})

Trained on {config["n_train"]} scans of `{config["data"]}`; evaluated on {m["n_images"]} scans of
{m["n_patients"]} patients none of whom were in training.

| accuracy | macro-F1 | urgent-referral sensitivity | urgent-referral specificity | ECE |
|---|---|---|---|---|
| {m["accuracy"]:.3f} ({ci["accuracy"][0]:.3f}-{ci["accuracy"][1]:.3f}) \
| {m["macro_f1"]:.3f} ({ci["macro_f1"][0]:.3f}-{ci["macro_f1"][1]:.3f}) \
| {m["urgent_referral"]["sensitivity"]} | {m["urgent_referral"]["specificity"]} | {m["ece"]:.3f} |

95% intervals: bootstrap over patients. Caveat: the Kermany dataset's official splits share
patients between train and test; figures on such splits overstate accuracy on new patients.
Data: Kermany et al. 2018 (CC BY 4.0).
"""


def push_to_hub(folder: str | Path, repo_id: str, private: bool = False) -> str:
    return push_folder(folder, repo_id, "Upload classical OCT baseline", private=private)
