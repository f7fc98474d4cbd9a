"""A model folder's card (README.md), made with huggingface_hub's ModelCard from what the folder holds.

Both trainers write `training.json` (how the model was made: data described by name and split, never
by a local path) beside `metrics.json` (its test figures); `render_card` turns them into the card,
with a YAML header built by `ModelCardData` (so every value is quoted as YAML needs) and a
model-index of `EvalResult`s. The push command renders it again with the repo id it pushes to.
"""

import json
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from models import model_kind
from models.scope import CALIBRATION_FILE
from models.vit import ONNX_CHECK, ONNX_DIR, ONNX_INT8
from octcore.hub import is_repo_id
from octcore.labels import CLASSES

TEMPLATE = Path(__file__).resolve().parents[1] / "model_card.md"
TRAINING_FILE = "training.json"
CHOSEN_UNRECORDED = "chosen by patient-grouped cross-validation"  # a classical record without "chosen"
REPO_PLACEHOLDER = "USER/MODEL"  # what the usage snippet names until the model is pushed
TAGS = ["oct", "retina", "ophthalmology", "medical-imaging", "image-classification"]


def _fmt(value, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _with_ci(value: float | None, interval: list | None) -> str:
    """'0.968 (0.930-0.995)', or the value alone where no interval was computed."""
    low, high = interval or (None, None)
    return f"{_fmt(value)} ({_fmt(low)}-{_fmt(high)})" if low is not None else _fmt(value)


def eval_results(metrics: dict, dataset: dict) -> list[EvalResult]:
    """The model-index: accuracy and macro-F1 with their 95% CIs, urgent-referral sensitivity and specificity."""
    common = {
        "task_type": "image-classification",
        "task_name": "OCT B-scan classification (CNV, DME, DRUSEN, NORMAL)",
        "dataset_type": dataset.get("hub_id") or "imagefolder",
        "dataset_name": dataset["name"],
        "dataset_split": "test",
    }
    ci = metrics["ci95"]
    urgent = metrics["urgent_referral"]
    ci_args = {"ci_method": "bootstrap over patients", "n_boot": int(metrics["bootstrap"]["replicates"])}

    def interval(key: str) -> list[float]:
        return [round(float(v), 4) for v in ci[key]]

    results = [
        EvalResult(
            **common,
            metric_type="accuracy",
            metric_name="accuracy",
            metric_value=round(float(metrics["accuracy"]), 4),
            metric_args={"ci95": interval("accuracy"), **ci_args},
        ),
        EvalResult(
            **common,
            metric_type="f1",
            metric_name="macro-F1",
            metric_value=round(float(metrics["macro_f1"]), 4),
            metric_args={"average": "macro", "ci95": interval("macro_f1"), **ci_args},
        ),
    ]
    for name, key, ci_key in (
        ("sensitivity", "sensitivity", "urgent_sensitivity"),
        ("specificity", "specificity", "urgent_specificity"),
    ):
        if urgent[key] is not None:
            results.append(
                EvalResult(
                    **common,
                    metric_type=name,
                    metric_name=f"urgent-referral {name} (CNV or DME vs the rest)",
                    metric_value=round(float(urgent[key]), 4),
                    metric_config="urgent-referral",
                    metric_args={"ci95": interval(ci_key), **ci_args},
                )
            )
    return results


def _trust(calibration: dict, metrics: dict, n_val: int) -> dict:
    """The card's calibration and out-of-scope sections, from calibration.json and the test figures."""
    values = {"calibration": None, "out_of_scope": None}
    if calibration and metrics.get("calibration"):
        test = metrics["calibration"]
        values["calibration"] = {
            "temperature": f"{calibration['temperature']:.2f}",
            "scaled": calibration["temperature"] != 1,  # 1 where the fitted one was not kept: the softmax as it is
            "rule": calibration.get("temperature_rule"),
            "fitted": f"{calibration['fitted_temperature']:.2f}" if "fitted_temperature" in calibration else None,
            "n_val": n_val,
            "ece_before": _fmt(test["ece_before"]),
            "ece_after": _fmt(test["ece_after"]),
        }
    if calibration.get("out_of_scope") and metrics.get("out_of_scope"):
        scope = calibration["out_of_scope"]
        values["out_of_scope"] = {
            "features": scope["features"],
            "method": scope["method"],
            "accept": f"{scope['accept']:.0%}",
            "in_scope_flagged": f"{metrics['out_of_scope']['in_scope_flagged']:.1%}",
        }
    return values


def _int8(folder: Path) -> dict | None:
    """How closely the int8 export follows these weights on the test scans, where it passed its check and is there."""
    check = _read(folder / ONNX_DIR, ONNX_CHECK)
    agreement = check.get("agreement")
    if not (check.get("passed") and agreement and (folder / ONNX_DIR / ONNX_INT8).is_file()):
        return None
    return {
        "n": agreement["n_scans"],
        "top1": f"{agreement['top1_agreement']:.1%}",
        "mean_diff": f"{agreement['mean_abs_prob_diff']:.3f}",
    }


def _read(folder: Path, name: str) -> dict:
    path = folder / name
    return json.loads(path.read_text()) if path.is_file() else {}


def _how(training: dict) -> str:
    """How a ViT was made from its base, from its training record (records made before it said: fine-tuned)."""
    return training.get("details", {}).get("how", "fine-tuned from")


def _vit_origin(training: dict) -> str:
    """E.g. "fine-tuned from `facebook/dinov2-small`": the card's summary and the report's line both say it."""
    return f"{_how(training)} {training.get('base_model', {}).get('description', 'a pretrained checkpoint')}"


def training_summary(folder: str | Path) -> str | None:
    """How a model folder was trained, in one line, from its training record (the card's source): what a side-by-side
    report shows beside each row, so that two models of one kind trained differently do not look alike but for their
    figures. None for a folder without a record; a record that cannot be read is said so (a folder from elsewhere,
    e.g. the Hub, is loaded without reading it, so a side-by-side report must not fail on it)."""
    try:
        training = _read(Path(folder), TRAINING_FILE)
    except (OSError, ValueError) as e:
        return f"not known: its {TRAINING_FILE} cannot be read ({type(e).__name__})"
    if not isinstance(training, dict):
        return f"not known: its {TRAINING_FILE} is not a JSON object"
    if not training:
        return None
    details, n_train = training.get("details", {}), training.get("dataset", {}).get("counts", {}).get("train")
    scans = f"{n_train} training scans" if n_train is not None else "its training scans"
    if training.get("kind") == "vit":
        return (
            f"{_vit_origin(training)} at {details.get('height')}x{details.get('width')}, {details.get('epochs')} "
            f"epochs, seed {details.get('seed')}, on {scans}"
        )
    copies = details.get("speckle_copies", 0)
    seen = f" and {copies} speckled cop{'y' if copies == 1 else 'ies'} of each" if copies else ", no speckled copies"
    # A record from before the trainer said what the search scored: searched, but on what is not known.
    chosen = details.get("chosen", CHOSEN_UNRECORDED)
    return (
        f"{details.get('features_description', 'HOG/LBP features')}; an SVM ({details.get('solver')}, "
        f"C={details.get('C')}, gamma={details.get('gamma_scale')}/d, {chosen}), seed {details.get('seed')}, on "
        f"{scans}{seen}"
    )


def render_card(folder: str | Path, repo_id: str | None = None) -> ModelCard:
    """The card of a trained model folder (either kind); `repo_id` is what its usage snippet names."""
    folder = Path(folder)
    config, metrics, training = (
        _read(folder, "config.json"),
        _read(folder, "metrics.json"),
        _read(folder, TRAINING_FILE),
    )
    kind = model_kind(config)
    dataset, base = training["dataset"], training.get("base_model", {})
    # The Hub shows model-index results under this name: the repo's once it has one, else the run folder's.
    model_name = repo_id.split("/")[-1] if repo_id else training.get("model_name", folder.name)
    data = ModelCardData(
        model_name=model_name,
        license="apache-2.0",
        library_name="transformers" if kind == "vit" else "sklearn",
        pipeline_tag="image-classification",
        tags=TAGS + (["vision-transformer", "dinov2"] if kind == "vit" else ["hog", "lbp", "svm", "skops"]),
        base_model=base.get("id") if is_repo_id(base.get("id")) else None,
        datasets=[dataset["hub_id"]] if is_repo_id(dataset.get("hub_id")) else None,
        metrics=["accuracy", "f1"],
        eval_results=eval_results(metrics, dataset),
    )
    counts, urgent, ci = dataset["counts"], metrics["urgent_referral"], metrics["ci95"]
    if kind == "vit":
        title = f"{model_name}: a Vision Transformer for retinal OCT B-scans"
        summary = f"A Vision Transformer {_vit_origin(training)}."
    else:
        title = f"{model_name}: a classical classifier for retinal OCT B-scans"
        summary = "A classical pipeline: hand-made HOG and LBP features of the flattened retina, and an SVM."
    values = {
        "kind": kind,
        "how": _how(training),
        "title": title,
        "summary": summary,
        "repo_id": repo_id or REPO_PLACEHOLDER,
        "dataset_description": dataset["name"],
        "n_train": counts.get("train", 0),
        "n_val": counts.get("val", 0),
        "val_use": "used to pick the best epoch" if kind == "vit" else "not used to fit the classifier",
        "n_test": metrics["n_images"],
        "n_test_patients": metrics["n_patients"],
        "n_boot": metrics["bootstrap"]["replicates"],
        "accuracy": _with_ci(metrics["accuracy"], ci.get("accuracy")),
        "macro_f1": _with_ci(metrics["macro_f1"], ci.get("macro_f1")),
        "urgent_sensitivity": _with_ci(urgent["sensitivity"], ci.get("urgent_sensitivity")),
        "urgent_specificity": _with_ci(urgent["specificity"], ci.get("urgent_specificity")),
        "urgent_auc": _fmt(urgent["auc"]),
        "ece": _fmt(metrics["ece"]),
        "per_class": [
            {
                "name": c,
                **{k: _fmt(metrics["per_class"][c][k]) for k in ("sensitivity", "specificity", "f1")},
                "support": metrics["per_class"][c]["support"],
            }
            for c in CLASSES
        ],
        "curves": (folder / "training_curves.png").is_file(),
        "chosen_unrecorded": CHOSEN_UNRECORDED,
        "int8": _int8(folder),
        **_trust(_read(folder, CALIBRATION_FILE), metrics, counts.get("val", 0)),
        **training.get("details", {}),  # what the trainer of this kind says about itself
    }
    return ModelCard.from_template(data, template_str=TEMPLATE.read_text(), **values)
