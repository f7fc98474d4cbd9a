"""The one model interface: load any trained model, ViT or classical, from a folder or a Hub id.

    from models import load_model
    model = load_model("runs/vit")                     # or "runs/hog-lbp-svm", or "USER/oct-vit" on the Hub
    proba = model.predict_proba(["scan.jpeg"])         # (n, 4), columns in model.classes order
    maps = model.explain("scan.jpeg")                  # {name: picture in [0, 1]}

The Space, `compare`, the ONNX export check and every benchmark load models only through here.
What a folder holds is told by its saved config.json: a transformers config (`model_type`) is a ViT,
`"format": "oct-classical"` a classical model.
"""

from pathlib import Path

from models.base import (
    ModelFormatError,
    OCTModel,
    Prediction,
    UnsafeModelError,
    UntrustedModelError,
    local_folder,
    read_json,
)

__all__ = [
    "load_model",
    "model_kind",
    "OCTModel",
    "Prediction",
    "ModelFormatError",
    "UnsafeModelError",
    "UntrustedModelError",
]


def model_kind(config: dict) -> str:
    """'vit' or 'classical', from a model folder's config.json."""
    from models import classical

    if config.get("format") == classical.FORMAT or "features" in config:  # older classical folders had no format
        return "classical"
    if "model_type" in config:
        return "vit"
    raise ModelFormatError(
        "its config.json is neither a transformers config (no model_type) nor a classical "
        f'model\'s (no "format": "{classical.FORMAT}")'
    )


def _config(path_or_repo_id: str | Path) -> dict:
    """config.json of a local folder, or of a Hub repo (that file alone is fetched first)."""
    path = local_folder(path_or_repo_id, ["config.json"]) / "config.json"
    if not path.is_file():
        raise ModelFormatError(f"{str(path_or_repo_id)!r} is not a model folder (no config.json)")
    return read_json(path)


def load_model(path_or_repo_id: str | Path, backend: str = "auto", threads: int | None = None) -> OCTModel:
    """A trained model from a local folder or a Hugging Face Hub repo id.

    backend, threads: for a ViT, "onnx" / "torch" / "auto" (the int8 ONNX export when present) and
    the CPU threads it may use; ignored for a classical model. Raises ModelFormatError (or its
    subclasses UnsafeModelError, UntrustedModelError) with the reason when nothing can be loaded.
    """
    config = _config(path_or_repo_id)
    try:
        kind = model_kind(config)
    except ModelFormatError as e:
        raise ModelFormatError(f"cannot load {str(path_or_repo_id)!r}: {e}") from None
    if kind == "classical":
        from models.classical import HUB_FILES, load_classical

        return load_classical(local_folder(path_or_repo_id, HUB_FILES))
    from models.vit import HUB_FILES, load_vit

    return load_vit(local_folder(path_or_repo_id, HUB_FILES), backend, threads)
