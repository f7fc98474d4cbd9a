"""The Space's page: what it shows (`build`) and what each event returns (`predict`, `classify`, `batch`).

Research and education only: not a medical device, not a diagnosis. `space/app.py` starts it.
"""

import csv
import html
import json
import os
import shutil
import tempfile
from collections import Counter
from functools import cache
from pathlib import Path

import gradio as gr
import pandas as pd

from octcore.hub import names_hub_repo
from octcore.labels import CLASS_NOTES, CLASSES, REFERRAL, REFERRAL_SHOWN
from octcore.metrics import with_ci
from space import render
from space.engine import TIMING_TURNS, Models, Upload, analyse_upload, as_record, batch_frames, one_blas_thread
from space.uploads import is_zip
from space.workers import MAX_UPLOAD, DecodePool

HERE = Path(__file__).resolve().parent
SAMPLE = HERE.parent / "examples" / "sample"  # the repository's bundled scans (a Space bundle has space/examples/)
INTRO = """An **OCT B-scan** is a cross-section of the retina, taken with light by an optical coherence tomograph:
the layers of the retina run across the image, the bright line near the bottom is the retinal pigment
epithelium (RPE). Drop a scan here and two kinds of model say which of four conditions it shows: a
**Vision Transformer** (a deep network, fine-tuned from a model pretrained on millions of photographs) and a
**classical** pipeline (hand-made HOG and LBP texture features of the straightened retina, and an SVM).
They know only these four conditions, were trained on one public dataset (Kermany et al. 2018) and were
tested on patients they never saw."""
FEATURES = {
    "hog": "HOG",
    "lbp": "LBP",
    "hog+lbp": "HOG and LBP",
}  # a classical model's features, as the page names them
PHONE_WIDTH = 700  # px: narrower screens get the introduction closed, and are scrolled to an answer
SCROLL_TO_ANSWER = f"""() => {{
    const answer = document.querySelector('#summary');
    if (window.innerWidth < {PHONE_WIDTH} && answer && answer.innerText.trim()) {{
        answer.scrollIntoView({{behavior: 'smooth', block: 'start'}});
    }}
}}"""
NOTICE = (
    "**Research and education demo, not a diagnosis.** Never base a medical decision on it; see an eye "
    "doctor for anything that worries you."
)


def readable_by_the_app(image: gr.Image) -> gr.Image:
    """gr.Image whose uploads all reach the app's own reader, which says clearly what is wrong with a file, instead
    of failing in Gradio's preprocessing with a generic error (e.g. a zip named .jpeg). The instance's preprocess is
    replaced rather than subclassing gr.Image: a subclass makes Gradio write a .pyi stub beside this module."""
    preprocess = image.preprocess

    def lenient(payload):
        try:
            return preprocess(payload)
        except Exception:
            return None if payload is None else payload.path

    image.preprocess = lenient
    return image


def look() -> dict:
    """What every launch of the page passes to `launch` (the Space, the tests, the docs' screenshots): its CSS, and
    Gradio's default theme with whole bold faces. Gradio 6 ships the 600 weights of the theme's fonts as subsets of
    a few dozen glyphs, so bold text mixed their few letters with another font's ('OCT ʙ-scan', 'LʙP'); asked for
    400 and 700, the browser draws bold text with the complete 700 files."""
    font = gr.themes.LocalFont("Source Sans Pro", weights=(400, 700))
    mono = gr.themes.LocalFont("IBM Plex Mono", weights=(400, 700))
    theme = gr.themes.Default(
        font=[font, "ui-sans-serif", "system-ui", "sans-serif"],
        font_mono=[mono, "ui-monospace", "Consolas", "monospace"],
    )
    return {"css": render.CSS, "theme": theme}


def new_upload_subfolder(prefix: str = "tmp") -> Path:
    """A new folder inside Gradio's upload folder, where Gradio serves files from and its cache clean-up looks. Gradio
    makes that folder only when it first saves a file, so on a fresh machine it is not there yet at start-up."""
    root = Path(gr.utils.get_upload_folder())
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=root))


# The example thumbnails' alt text, set by the page whenever Gradio draws them (build says why).
NAME_EXAMPLES = """() => { const name = () => document.querySelectorAll('#example-scans button.gallery-item img')
    .forEach((img, i) => { if (!img.alt) img.alt = `Example scan ${i + 1}`; });
  name(); new MutationObserver(name).observe(document.body, {childList: true, subtree: true}); }"""


@cache
def examples() -> tuple[list[str], list[tuple[str, str]]]:
    """Scans to try (neutral names, so the name does not give the answer away) and one labelled scan per class."""
    # The scans to try are served from Gradio's upload folder, which it always allows, wherever the app is started.
    folder = new_upload_subfolder("oct-examples-")
    if (HERE / "examples").is_dir():  # a Space bundle
        tries = [shutil.copy(p, folder / p.name) for p in sorted((HERE / "examples").glob("example-*"))]
        classes = [(str(p), p.stem.split("-")[1]) for p in sorted((HERE / "examples").glob("class-*"))]
    else:
        tries, classes = [], []
        for i, label in enumerate(CLASSES):
            scans = sorted((SAMPLE / label).glob("*.jpeg"))
            if len(scans) > 1:
                tries.append(shutil.copy(scans[1], folder / f"example-{i + 1}.jpeg"))
                classes.append((str(scans[0]), label))
    return [str(p) for p in tries], classes


def model_row(model, source: str) -> str:
    """A model's row on the landing view: its test figures with their intervals, training data and card, all read
    from its folder, never typed in."""
    folder = model.folder
    metrics = json.loads((folder / "metrics.json").read_text()) if (folder / "metrics.json").is_file() else {}
    training = json.loads((folder / "training.json").read_text()) if (folder / "training.json").is_file() else {}
    kind = (
        "Vision Transformer (deep)"
        if model.kind == "vit"
        else f"{FEATURES[model.settings.kind]} features + SVM (classical)"
    )
    figures = data = "n/a"
    if metrics.get("ci95"):
        figures = (
            f"{with_ci(metrics, 'accuracy', percent=True)} · {with_ci(metrics, 'macro_f1')} · "
            f"{metrics['n_images']} scans, {metrics['n_patients']} new patients"
        )
    if training.get("dataset"):
        data = f"{training['dataset']['counts'].get('train', 0):,} scans of {html.escape(training['dataset']['name'])}"
    hub = source if names_hub_repo(source) else None
    card = f"[card](https://huggingface.co/{hub})" if hub else "README.md in its folder"
    return f"| **{model.name}** | {kind} | {figures} | {data} | {card} |"


def model_table(models: Models) -> str:
    rows = [model_row(m, s) for m, s in models.sources()]
    if not rows:
        return "No model is loaded."
    header = (
        "| model | kind | test accuracy (95% CI) · macro-F1 (95% CI) · test set, split by patient | trained on "
        "| model card |\n|---|---|---|---|---|"
    )
    how = (  # for visitors: what the figures in the table are, in words
        "How each model did on scans of patients it never saw: the share it got right, with the range the true "
        "figure probably lies in (95% CI), and macro-F1, the same kind of score averaged over the four conditions."
    )
    return "\n".join([how, "", header, *rows])


def predict(path: str | None, classical: str | None, models: Models, pool: DecodePool | None):
    """Classify one OCT B-scan (an image or a DICOM; a multi-frame DICOM shows its most urgent frame) with the ViT and
    the chosen classical model. Returns three pieces of HTML: the summary (the headline, the scan as the models
    received it and, for several frames, a row per frame), and each model's panel (its answer, probabilities,
    normal-or-not and urgent-referral view, and pictures explaining it)."""
    if not path:  # the input was cleared: the page goes back to how it was before any upload
        return "", "", ""
    with open(path, "rb") as handle:  # its first bytes only: the decode worker reads the whole file
        head = handle.read(4)
    if is_zip(head):
        raise gr.Error(
            "This file is a zip archive: open the Batch tab to classify all the scans in it.", print_exception=False
        )
    chosen = models.chosen(classical)
    if not chosen:
        raise gr.Error("No model is loaded. " + " ".join(models.problems))
    result: Upload = analyse_upload(path, chosen, pool, render.pictures)
    if result.shown is None:
        errors = "; ".join(f.error for f in result.frames if f.error) or "no image in it"
        # kept until closed: the page shows no answer for this file, and a visitor looking away should still see why
        raise gr.Error(
            f"Cannot read this file: {errors}", title="Unreadable file", duration=None, print_exception=False
        )
    frame = result.shown
    vit, classic = (next((m for m in chosen if m.kind == kind), None) for kind in ("vit", "classical"))
    panels = [
        render.model_panel(m.name, k, frame.results.get(m.name), frame) if m else ""
        for m, k in ((vit, "deep"), (classic, "classical"))
    ]
    return render.summary(result, [m.name for m in chosen]), *panels


def classify(path: str, classical: str | None, models: Models, pool: DecodePool | None) -> dict:
    """Classify every frame of one file (image, DICOM or zip) and return plain data: per frame, each model's label,
    probabilities, normal-or-not and urgent-referral probabilities, whether it is out of its scope, and the
    warnings (a frame with `withheld` true has no answer the models can stand behind)."""
    frames = list(batch_frames([path], models.chosen(classical), pool))
    return {"frames": [as_record(f) for f in frames], "models": [m.name for m in models.chosen(classical)]}


def batch(
    paths: list[str] | None, classical: str | None, models: Models, pool: DecodePool | None, progress=gr.Progress()
) -> tuple[pd.DataFrame, str]:
    """Classify several files or zips of scans: a table with a row per scan, and the same as a CSV file."""
    if not paths:
        raise gr.Error("Add some scans or zips of scans first.")
    chosen = models.chosen(classical)
    header = [  # the status second, so that it stays in view on a phone's narrow table
        "file",
        "status",
        *(f"{m.name}" for m in chosen),
        "notes",
        *(f"{m.name} p({c})" for m in chosen for c in CLASSES),
    ]
    rows = []
    for path in progress.tqdm(paths, desc="Classifying files"):
        for f in batch_frames([path], chosen, pool):
            answers = [f.results.get(m.name) for m in chosen]
            rows.append(
                [
                    f.name,
                    render.status(f),
                    *(render.answer_cell(f, m.name) for m in chosen),
                    render.notes(f),
                    *(
                        round(float(p), 4) if a else ""
                        for a in answers
                        for p in (a.prediction.proba if a else [None] * len(CLASSES))
                    ),
                ]
            )
    out = new_upload_subfolder() / "oct-predictions.csv"  # delete_cache cleans it
    with out.open("w", newline="") as handle:
        csv.writer(handle).writerows([header, *rows])
    counts = Counter(row[1] for row in rows)
    gr.Info(f"{len(rows)} scans: " + ", ".join(f"{counts[s]} {s}" for s in ("ok", "withheld", "unreadable")))
    return pd.DataFrame(rows, columns=header).iloc[:, : len(chosen) + 3], str(out)


def build(models: Models, pool: DecodePool | None = None) -> gr.Blocks:
    tries, classes = examples()
    variants = [m.name for m in models.classical]
    with gr.Blocks(title="OCT B-scan classifier: a ViT and a classical model", delete_cache=(600, 3600)) as demo:
        gr.Markdown("# Retinal OCT B-scan classifier: a Vision Transformer beside a classical model")
        gr.Markdown(NOTICE)
        about = gr.Accordion("What is this? (read me first)", open=True, elem_id="about")
        with about:
            with gr.Row():
                with gr.Column(scale=3):
                    gr.Markdown(INTRO)
                    gr.Markdown(render.KNOWN)
                if classes:
                    with gr.Column(scale=2):
                        gr.Gallery(
                            [(path, label) for path, label in classes],
                            columns=4,  # one row on a desktop, so the scan input starts on its first screen (CSS:
                            height="auto",  # two on a phone); every condition visible, none cut by a fixed height
                            elem_id="conditions",
                            label="One scan of each condition (tab 'About the conditions')",  # one line on a phone
                            allow_preview=True,
                            object_fit="contain",
                        )
            gr.Markdown(model_table(models), elem_id="model-table")
        for problem in models.problems:
            gr.Markdown(f"ℹ️ {problem}")

        with gr.Tab("One scan"):
            with gr.Row():
                with gr.Column(scale=2):
                    image = readable_by_the_app(
                        gr.Image(
                            type="filepath",
                            image_mode=None,
                            sources=["upload", "clipboard"],
                            height=260,
                            label="Drop an OCT B-scan (JPEG, PNG, BMP, WebP)",
                            elem_id="scan-input",
                        )
                    )
                    examples_column = gr.Column()  # the examples right under the input they fill
                    upload = gr.File(
                        label="…or a DICOM or TIFF file",
                        file_types=[".dcm", ".dicom", ".tif", ".tiff", ".zip"],
                        height=140,  # a rarer way in: a smaller box than the scan's
                        elem_id="file-input",
                    )
                    classical = gr.Radio(
                        variants,
                        value=variants[0] if variants else None,
                        visible=len(variants) > 1,
                        label="Classical model to compare with the ViT",
                    )
                with gr.Column(scale=3):
                    summary = gr.HTML(elem_id="summary")
            with gr.Row():  # side by side on a wide screen; one above the other on a phone (columns wrap)
                with gr.Column(min_width=320):
                    vit_panel = gr.HTML(elem_id="vit-panel")
                with gr.Column(min_width=320):
                    classical_panel = gr.HTML(elem_id="classical-panel")
            # Plain HTML only: no output is a file to write, cache and fetch, nor an update of a component's config.
            outputs = [summary, vit_panel, classical_panel]
            shown = gr.State(None)  # (input, file) the page answers for: the last file dropped on either input

            def answer_from(source: str):
                def run(path: str | None, variant: str | None, last: tuple | None):
                    if path is None and last is not None and last[0] != source:  # the other input was cleared
                        return gr.skip(), gr.skip(), gr.skip(), last
                    return *predict(path, variant, models, pool), (source, path) if path else None

                return run

            def cleared_on_failure(event):
                """If the event failed (an unreadable file, a zip), the last answer is cleared, so another file's
                answer never stays under this one's error."""
                event.failure(
                    lambda: ("", "", "", None),
                    None,
                    [*outputs, shown],
                    queue=False,
                    show_progress="hidden",
                    api_visibility="private",
                )
                return event

            def answered(event) -> None:
                """After an event that answers for a new file: cleared on failure; if it answered, on a phone, where
                the answer is below the inputs, the page scrolls to it."""
                cleared_on_failure(event).success(None, None, None, js=SCROLL_TO_ANSWER)

            # .input, not .change: Gradio's Image fires .change twice when a new file replaces the last one (each scan
            # ran twice, and a bad file's error showed twice); .input fires once per upload, paste or clear. Its
            # default trigger mode ("once") drops a file given while the last one is being answered, which left the
            # last file's answer under the new one: "always_last" answers it next, as .change did.
            for_image = {
                "inputs": [image, classical, shown],
                "outputs": [*outputs, shown],
                "trigger_mode": "always_last",
            }
            answered(
                image.input(answer_from("image"), api_name="predict", api_description=predict.__doc__, **for_image)
            )
            answered(
                upload.change(
                    answer_from("upload"), [upload, classical, shown], [*outputs, shown], api_visibility="private"
                )
            )

            def again(variant: str | None, last: tuple | None):  # another classical model: the same file again
                source, path = last or ("image", None)
                return answer_from(source)(path, variant, last)

            cleared_on_failure(
                classical.change(again, [classical, shown], [*outputs, shown], api_visibility="private")
            )
            if tries:
                with examples_column:  # thumbnails under the inputs: a click puts the scan in the image input
                    scans = gr.Dataset(
                        components=[image],
                        samples=[[p] for p in tries],
                        type="index",  # the click's handler takes the scan from `tries`
                        label="Example scans: click one",
                        elem_id="example-scans",
                    )
                # gr.Dataset, not gr.Examples: Examples sets the input by a component update, for which Gradio builds
                # the session its own plain gr.Image, without readable_by_the_app, so a bad file dropped after an
                # example got no message at all. Here the click returns the scan itself, and then the page answers
                # for it (.input does not fire for a value set by the page) with the classical model chosen.
                picked = scans.click(
                    lambda i: tries[i], scans, image, queue=False, show_progress="hidden", api_visibility="private"
                )
                answered(picked.then(answer_from("image"), api_visibility="private", **for_image))

        with gr.Tab("Batch"):
            which = " (the one chosen on the *One scan* tab)" if len(variants) > 1 else ""
            gr.Markdown(
                f"Several scans, DICOMs or zips of them: one row per scan, and a CSV to download. The ViT and the "
                f"classical model{which} answer each. Scans the models cannot judge are marked *withheld* and get "
                "no answer (the CSV keeps the models' probabilities)."
            )
            files = gr.File(label="Scans or zips", file_count="multiple", elem_id="batch-files")
            go = gr.Button("Classify all", variant="primary")
            # Widths in pixels: left to itself the notes column grew as wide as its longest note and was cut off on
            # a desktop. On a phone render.CSS overrides them: each row a card, its notes on a line of their own.
            table = gr.Dataframe(
                label="Predictions",
                wrap=True,
                column_widths=[170, 108, *[80] * len(models.names), 480],
                elem_id="batch-table",
            )
            download = gr.File(label="CSV", elem_id="batch-csv")
            go.click(
                lambda p, c, progress=gr.Progress(): batch(p, c, models, pool, progress),
                [files, classical],
                [table, download],
                api_name="batch",
                api_description=batch.__doc__,
            )

        with gr.Tab("About the conditions"):
            gr.Markdown(
                "\n\n".join(f"**{c}**, referral: {REFERRAL_SHOWN[REFERRAL[c]]}. {CLASS_NOTES[c]}" for c in CLASSES)
            )
        with gr.Row(visible=False):  # the JSON endpoint for programs, and the browser's width: no place on the page
            api_file, api_out, width = gr.File(), gr.JSON(), gr.Number()
            gr.Button().click(
                lambda p, c: classify(p, c, models, pool),
                [api_file, classical],
                api_out,
                api_name="classify",
                api_description=classify.__doc__,
            )
        if tries:
            # Gradio draws the thumbnails with an empty alt text, so a screen reader announced unnamed buttons: the
            # page names them, neutrally (like the files, the name must not give the answer away), whenever they are
            # drawn (Gradio may draw them after the page's load event, or again).
            demo.load(None, js=NAME_EXAMPLES)  # no function: Gradio makes it private, with nothing to queue
        # On a phone the open introduction would push the upload several screens down: there it starts closed, one tap
        # away. Gradio has no per-screen default, so the browser reports its width when the page loads.
        demo.load(
            lambda w: gr.Accordion(open=not w or w >= PHONE_WIDTH),
            width,
            about,
            js="() => [window.innerWidth]",
            queue=False,
            show_progress="hidden",
            api_visibility="private",
        )
    return demo


def threads_named(threads: int) -> str:
    return f"{threads} ONNX Runtime thread{'s' if threads > 1 else ''}"


def timed_threads(timed: dict[int, float]) -> str:
    """What `Models.choose_vit_threads` measured, in words for the app's log."""
    each = ", ".join(f"{ms:.0f} ms on {threads_named(n)}" for n, ms in sorted(timed.items()))
    return f"the faster here (both models on an example scan, median of {TIMING_TURNS} turns: {each})"


def ready(models: Models) -> dict[int, float]:
    """What the app does to its models before it serves: BLAS on one thread per model, the ViT's ONNX Runtime
    threads chosen by timing both models on an example scan, and every model warmed on it, pictures included, so
    that no visitor (nor a screenshot) gets a cold first answer. Returns the timings (empty where none were made)."""
    one_blas_thread()
    tries = examples()[0]
    if not tries:
        return {}
    timed = models.choose_vit_threads(tries[0], draw=render.pictures)
    models.warm(tries[0], draw=render.pictures)
    return timed


def launch(models: Models, **options) -> gr.Blocks:
    """The app as the Space runs it: queued (4 requests at once per event listener), uploads capped, decoding in
    worker processes, the models of a request side by side."""
    timed = ready(models)
    if timed:
        print(f"The ViT runs on {threads_named(models.vit.threads)}, {timed_threads(timed)}.", flush=True)
    # Gradio recomputes its monitoring summary (pandas, over up to 10,000 past events) after every event by default;
    # every 100 events keeps the numbers it shows current enough at a hundredth of the cost.
    os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", "100")
    pool = DecodePool(size=4).start()
    demo = build(models, pool).queue(default_concurrency_limit=4, max_size=256)
    print("The Space is starting; stop it with Ctrl-C.", flush=True)
    # The app keeps no per-visitor state, so Gradio need not remember 10,000 sessions (its default; ~56 kB each,
    # and every API call is a new session).
    try:
        demo.launch(state_session_capacity=200, max_file_size=f"{MAX_UPLOAD // 1024**2}mb", **look(), **options)
    finally:
        pool.close()
    return demo
