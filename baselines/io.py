"""Save a classical model folder: skops (never pickle), a JSON config, its split, metrics and card.

The folder's format (file names, trusted types) is defined by its reader, `models.classical`.
"""

import json
from pathlib import Path

import skops.io as sio

from models.card import render_card
from models.classical import CONFIG_FILE, MODEL_FILE
from models.scope import Calibration
from octcore.hub import writing_folder


def save_model_folder(
    out: str | Path,
    model,
    config: dict,
    metrics: dict,
    files: dict[str, str] | None = None,
    calibration: Calibration | None = None,
    card_repo_id: str | None = None,
) -> Path:
    """Write the folder next to its final place, then rename: a crash never leaves a half-written model.

    files: more text files to write into it (name: content), such as split.json and training.json;
    calibration: its temperature and out-of-scope detector. When training.json is among the files, the
    card (README.md) is rendered from the folder, naming card_repo_id.
    """
    with writing_folder(out) as staging:
        sio.dump(model, staging / MODEL_FILE)
        (staging / CONFIG_FILE).write_text(json.dumps(config, indent=1) + "\n")
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
        for name, content in (files or {}).items():
            (staging / name).write_text(content)
        if calibration is not None:
            calibration.save(staging)
        if (staging / "training.json").is_file():
            render_card(staging, card_repo_id).save(staging / "README.md")
    return Path(out)
