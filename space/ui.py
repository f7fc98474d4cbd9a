"""The Space's page: its layout (`build`) and what each event returns (`analyse`, `batch`).

Research and education only: not a medical device, not a diagnosis. `space/app.py` starts it.
"""

import csv
import tempfile
import uuid
from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd
from matplotlib import colormaps
from PIL import Image

from octcore.labels import CLASS_NOTES, CLASSES, REFERRAL
from space.engine import Answer, Frame, Models, classify, most_urgent, read_upload

NOTICE = (
    "**Research and education demo, not a diagnosis.** These models were trained on one public dataset "
    "(Kermany 2018) and have not been validated for clinical use. Never base a medical decision on them."
)
HERE = Path(__file__).resolve().parent
EXAMPLES = sorted(
    (HERE / "examples").glob("*.jpeg")
) or [  # the Space bundle's, else one per class of the repo's sample
    sorted((HERE.parent / "examples" / "sample" / c).glob("*.jpeg"))[0]
    for c in CLASSES
    if (HERE.parent / "examples" / "sample" / c).is_dir()
]
DISPLAY_WIDTH = 512
OUTPUT_IMAGES = Path(gr.utils.get_upload_folder()) / "oct-explanations"


def _display(gray: np.ndarray) -> np.ndarray:
    height = max(1, round(gray.shape[0] * DISPLAY_WIDTH / gray.shape[1]))
    return np.asarray(
        Image.fromarray(gray).resize((DISPLAY_WIDTH, height), Image.Resampling.BILINEAR), dtype=np.float32
    )


def overlay(gray: np.ndarray, heat: np.ndarray) -> np.ndarray:
    """The attention map (stretched over the whole scan, as the model saw it) blended over the scan."""
    base = _display(gray)
    heat = np.asarray(Image.fromarray(heat.astype(np.float32)).resize(base.shape[::-1], Image.Resampling.BILINEAR))
    coloured = colormaps["inferno"](np.clip(heat, 0, 1))[..., :3]
    return (np.clip(0.55 * base[..., None] + 0.45 * coloured, 0, 1) * 255).astype(np.uint8)


def _enlarge(image: np.ndarray, factor: int = 4) -> np.ndarray:
    return (np.kron(np.clip(image, 0, 1), np.ones((factor, factor))) * 255).astype(np.uint8)


def image_file(pixels: np.ndarray) -> str:
    """An output image as a JPEG of its own inside Gradio's cache, served as it is.

    Gradio would otherwise save returned arrays under a hash of their content, rewriting the
    file in place: two people shown the same picture at once (an example scan) could download
    it mid-write. A uniquely named file is written once; `delete_cache` ages it out.
    """
    OUTPUT_IMAGES.mkdir(parents=True, exist_ok=True)
    path = OUTPUT_IMAGES / f"{uuid.uuid4().hex}.jpeg"
    Image.fromarray(pixels).save(path, quality=90)
    return str(path)


def _model_text(name: str, answer: Answer) -> str:
    return (
        f"**{name}: {answer.label}** ({answer.confidence:.0%}), referral: {REFERRAL[answer.label]}; {answer.ms:.0f} ms"
    )


def _probabilities(answer: Answer) -> dict[str, float]:
    return {c: float(p) for c, p in zip(CLASSES, answer.prediction.proba)}


def analyse(path: str | None, models: Models) -> tuple:
    """UI outputs for one upload: summary, per-model probabilities, texts, explanation images, per-frame table."""
    empty = (None, "", None, "", None, None, None, [])
    if not path:
        return ("Upload a B-scan (JPEG, PNG, TIFF, BMP, WebP or DICOM) or pick an example.", *empty)
    frames = [classify(f, models) for f in read_upload(path)]
    readable = [f for f in frames if f.scan is not None]
    if not readable:
        return ("**Cannot read this file.** " + " ".join(f.error for f in frames if f.error), *empty)
    if not models.names:
        return ("**No model is loaded.** " + " ".join(models.problems), *empty)
    shown, label = most_urgent(readable)
    lines = []
    if len(frames) > 1:
        lines.append(f"{len(frames)} frames; showing **{shown.name}**, the most urgent finding ({label}).")
    lines += [f"⚠️ {w}" for w in shown.warnings]
    if shown.quality:
        lines.append("The predictions below are shown for transparency only: this does not look like an OCT B-scan.")
    lines.append(f"*{label}*: {CLASS_NOTES[label]}")
    lines += [f"ℹ️ {p}" for p in models.problems]
    vit = shown.results.get(models.vit.name) if models.vit else None
    svm = shown.results.get(models.baseline.name) if models.baseline else None
    table = [
        [
            f.name,
            *(f.results[m.name].label if m.name in f.results else "" for m in models.loaded),
            "; ".join(f.warnings) or (f.error or ""),
        ]
        for f in frames
    ]
    return (
        "\n\n".join(lines),
        _probabilities(vit) if vit else None,
        _model_text(models.vit.name, vit) if vit else "ViT not loaded.",
        image_file(overlay(shown.scan.gray, vit.prediction.maps["attention"])) if vit else None,
        _probabilities(svm) if svm else None,
        _model_text(models.baseline.name, svm) if svm else "Classical model not loaded.",
        image_file(_enlarge(svm.prediction.maps["hog"])) if svm else None,
        image_file(_enlarge(svm.prediction.maps["lbp"])) if svm else None,
        table,
    )


def batch(paths: list[str] | None, models: Models) -> tuple[pd.DataFrame, str | None]:
    """A table of both models' predictions for several files or zips, and the same as a CSV file."""
    frames: list[Frame] = []
    for path in paths or []:
        frames += [classify(f, models, explain=False) for f in read_upload(path)]
    header = ["file", *(f"{n} {c}" for n in models.names for c in ("label", *CLASSES)), "warnings"]
    rows = []
    for f in frames:
        row = [f.name]
        for name in models.names:
            answer = f.results.get(name)
            row += [answer.label, *(round(float(p), 4) for p in answer.prediction.proba)] if answer else [""] * 5
        rows.append(row + ["; ".join(f.warnings) or (f.error or "")])
    out = Path(tempfile.mkdtemp()) / "oct-predictions.csv"
    with out.open("w", newline="") as handle:
        csv.writer(handle).writerows([header, *rows])
    return pd.DataFrame(rows, columns=header), str(out)


def build(models: Models) -> gr.Blocks:
    vit_name = models.vit.name if models.vit else "ViT"
    svm_name = models.baseline.name if models.baseline else "HOG+LBP SVM"
    with gr.Blocks(
        title="OCT B-scan classifier: ViT vs HOG+LBP SVM", delete_cache=(600, 3600)
    ) as demo:  # outputs kept an hour
        gr.Markdown("# Retinal OCT B-scan: a Vision Transformer beside a classical HOG+LBP SVM")
        gr.Markdown(NOTICE)
        if models.problems:
            gr.Markdown("\n\n".join(f"ℹ️ {p}" for p in models.problems))
        with gr.Tab("One scan"):
            upload = gr.File(label="B-scan (image or DICOM)", file_types=["image", ".dcm", ".dicom", ".tif", ".tiff"])
            if EXAMPLES:
                gr.Examples([[str(p)] for p in EXAMPLES], inputs=[upload], label="Examples (Kermany 2018, CC BY 4.0)")
            summary = gr.Markdown(elem_id="summary")
            with gr.Row():
                with gr.Column():
                    vit_label = gr.Label(num_top_classes=4, label=vit_name, elem_id="vit-label")
                    vit_text = gr.Markdown()
                    vit_map = gr.Image(label="ViT attention rollout (where the model looked)", type="filepath")
                with gr.Column():
                    svm_label = gr.Label(num_top_classes=4, label=svm_name, elem_id="svm-label")
                    svm_text = gr.Markdown()
                    hog_map = gr.Image(label="HOG of the flattened retina band (edge directions)", type="filepath")
                    lbp_map = gr.Image(label="LBP codes of the band (local texture)", type="filepath")
            frames = gr.Dataframe(headers=["frame", *models.names, "warnings"], label="Per frame")
            upload.change(
                lambda p: analyse(p, models),
                inputs=upload,
                api_name="predict",
                outputs=[summary, vit_label, vit_text, vit_map, svm_label, svm_text, hog_map, lbp_map, frames],
            )
        with gr.Tab("Batch"):
            files = gr.File(label="Several scans, or zips of scans", file_count="multiple")
            run = gr.Button("Classify all")
            table = gr.Dataframe(label="Predictions")
            download = gr.File(label="CSV")
            run.click(lambda p: batch(p, models), inputs=files, outputs=[table, download], api_name="batch")
        with gr.Tab("About the classes"):
            gr.Markdown("\n\n".join(f"**{c}** (referral: {REFERRAL[c]}). {CLASS_NOTES[c]}" for c in CLASSES))
    return demo
