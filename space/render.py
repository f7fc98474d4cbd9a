"""The Space's results as HTML: the headline, one panel per model, and the pictures in them.

Pictures are inline (data URLs) and colour bars are CSS gradients, so a whole answer arrives in one
response: no image file written, cached and fetched per request. Every picture is drawn at a bounded
size whatever the upload's shape. Text is escaped; nothing from a file reaches the page as markup.
"""

import base64
import functools
import html
import io

import numpy as np
from PIL import Image

from octcore.imaging import eight_bit
from octcore.labels import CLASS_NOTES, CLASSES, REFERRAL, REFERRAL_SHOWN
from space.engine import Answer, Frame, Upload

DISPLAY = (512, 256)  # the largest (width, height) a picture of a scan is drawn at
FEATURE_DISPLAY = (384, 240)  # and a picture of the classical model's band
KNOWN = (
    "These models know only four things: choroidal neovascularisation (CNV), diabetic macular oedema (DME), "
    "drusen and a normal retina. Anything else is flagged when they notice, and may be misclassified when they "
    "do not."
)
PERCENTAGES = (
    "The percentages say how sure each model is, choosing among the four classes it knows: not the chance that "
    "the eye has a condition."
)
NOT_A_SCAN = "this does not look like an OCT B-scan"  # the image checks' objection, for every model
GUESSES = "Shown for curiosity only: for an image the models cannot judge, these numbers mean nothing."
READ_ATTENTION = (
    "How to read this: the brighter the colour, the more the ViT paid attention to that part of "
    "the scan when deciding. It should lie on the retina, not on the black background or the borders."
)
READ_BAND = (
    "How to read this: the classical model does not look at the whole image. It fits a smooth curve to the "
    "bright RPE line, straightens the retina along that curve and cuts this band (the retina above, the RPE "
    "strip at twice the detail below). The curve is smooth on purpose, so bumps such as drusen stay visible; "
    "where the RPE bends more than it can follow, the band still slopes."
)
READ_HOG = (
    "How to read this: each little line is an edge direction in an 8x8-pixel cell of the band, brighter where "
    "the edge is stronger (HOG). Fluid pockets and bumps change these patterns."
)
READ_LBP = (
    "How to read this: each colour is the kind of local texture (LBP) around each pixel: bright spots, edges, dark "
    "or flat areas, or irregular speckle. The model counts these textures region by region."
)
TEXTURES = {  # LBP code families (of P neighbours: 0 brighter centre ... P darker centre, P + 1 irregular)
    "bright spot": (0.99, 0.85, 0.2),
    "edge": (0.2, 0.65, 0.95),
    "dark or flat": (0.15, 0.15, 0.35),
    "irregular": (0.85, 0.35, 0.3),
}
TEXTURE_COLOURS = np.rint(np.array(list(TEXTURES.values())) * 255).astype(np.uint8)


def textures(codes: np.ndarray, points: int = 8) -> np.ndarray:
    """LBP codes (scaled to [0, 1] as feature_maps gives them) as 8-bit RGB by texture family, each pixel taking the
    most common family around it (a 3x3 vote), so the picture shows regions rather than speckle."""
    from scipy import ndimage

    raw = np.rint(codes * (points + 1)).astype(int)
    family = np.select([raw <= 1, raw <= points - 2, raw <= points], [0, 1, 2], 3)
    votes = np.stack([ndimage.uniform_filter((family == f).astype(np.float32), 3) for f in range(4)])
    return TEXTURE_COLOURS[votes.argmax(axis=0)]


def legend() -> str:
    return (
        "<div class='legend'>"
        + "".join(
            f"<span><i style='background:rgb({r},{g},{b})'></i>{name}</span>"
            for name, (r, g, b) in zip(TEXTURES, TEXTURE_COLOURS)
        )
        + "</div>"
    )


GRADIENTS = {  # CSS colour bars matching the pictures' colour maps
    "inferno": "linear-gradient(to right, #000004, #420a68, #932667, #dd513a, #fca50a, #fcffa4)",
    "gray": "linear-gradient(to right, #000, #fff)",
}


def fitted(image: np.ndarray, box: tuple[int, int] = DISPLAY, resample=Image.Resampling.BILINEAR) -> np.ndarray:
    """An image (2-D, or RGB) in [0, 1] or 8-bit, resized to fit in `box` keeping its proportions, as 8-bit."""
    height, width = image.shape[:2]
    scale = min(box[0] / width, box[1] / height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(eight_bit(image)).resize(size, resample))


@functools.cache
def colour_table(colormap: str) -> np.ndarray:
    """A matplotlib colour map's 256 RGB colours in [0, 1] (float32)."""
    from matplotlib import colormaps

    return colormaps[colormap](np.arange(256))[:, :3].astype(np.float32)


@functools.cache
def blend_table(colormap: str, weight: float = 0.45) -> np.ndarray:
    """(gray level x 256 + colour index) -> 8-bit RGB: a gray level blended with a colour of a matplotlib colour
    map. An overlay is then one lookup per pixel, not several passes of float arithmetic over the picture."""
    gray = np.arange(256, dtype=np.float32)[:, None, None]
    blended = (1 - weight) * gray + weight * 255 * colour_table(colormap)[None]
    return np.rint(blended).astype(np.uint8).reshape(256 * 256, 3)


def colour_index(heat: np.ndarray) -> np.ndarray:
    """The index of a map's values in a 256-colour table, as matplotlib picks it (value x 256, truncated). The values
    must lie in [0, 1] (the caller clips: a negative value would wrap around to the brightest colour)."""
    return np.minimum((heat * 256).astype(np.uint16), 255)


def overlay(gray: np.ndarray, heat: np.ndarray) -> np.ndarray:
    """The attention map stretched over the whole scan (as the model saw it) and blended over it in the inferno
    colour map, as 8-bit RGB."""
    base = fitted(gray)
    heat = Image.fromarray(np.clip(heat, 0, 1).astype(np.float32)).resize(base.shape[::-1], Image.Resampling.BILINEAR)
    index = (base.astype(np.uint16) << 8) | colour_index(np.asarray(heat))  # bilinear keeps it within [0, 1]
    return np.take(blend_table("inferno"), index, axis=0)


def data_url(image: np.ndarray, quality: int = 85) -> str:
    """An image (8-bit, or in [0, 1]) as an inline JPEG."""
    buffer = io.BytesIO()
    Image.fromarray(eight_bit(image)).save(buffer, "JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def picture(
    image: np.ndarray, caption: str, how: str, colormap: str | None = None, ends: tuple = ("", ""), key: str = ""
) -> str:
    """A figure: the image, its caption, its colour bar (or another key) and how to read it."""
    if colormap:
        key = (
            f"<div class='bar'><span>{ends[0]}</span><i style='background:{GRADIENTS[colormap]}'></i>"
            f"<span>{ends[1]}</span></div>"
        )
    return (
        f"<figure><img src='{data_url(image)}' alt='{html.escape(caption)}'><figcaption>{html.escape(caption)}"
        f"</figcaption>{key}<p class='how'>{html.escape(how)}</p></figure>"
    )


def percent(p: float) -> str:
    """A probability as a visitor reads it (HTML): never 100% or 0%, which no model's estimate is, though it
    rounds to them."""
    return "&lt;1%" if p < 0.005 else "&gt;99%" if p >= 0.995 else f"{p:.0%}"


def bars(answer: Answer) -> str:
    rows = "".join(
        f"<div class='p'><span>{c}</span><b style='width:{p * 100:.0f}%'></b><em>{percent(p)}</em></div>"
        for c, p in zip(CLASSES, answer.prediction.proba)
    )
    binary = (
        f"<p class='binary'>Normal or not: <b>{'abnormal' if answer.abnormal >= 0.5 else 'normal'}</b> "
        f"({percent(answer.abnormal)} abnormal). Urgent referral (CNV or DME): <b>"
        f"{'yes' if answer.urgent >= 0.5 else 'no'}</b> ({percent(answer.urgent)}).</p>"
    )
    return f"<div class='probabilities'>{rows}</div>{binary}"


def verdict(answer: Answer) -> str:
    return (
        f"<p class='verdict'><b>{answer.label}</b> ({percent(answer.confidence)}) · referral: "
        f"{REFERRAL_SHOWN[REFERRAL[answer.label]]}</p>"
    )


def pictures(answer: Answer, gray: np.ndarray) -> str:
    """The figures explaining one answer, drawn from its maps over the scan's gray levels; "" without maps. Made
    as each model answers (`space.engine.classify`'s `draw`), so the quicker model's are ready before the slower
    model's answer."""
    maps = answer.prediction.maps
    if "attention" in maps:
        return picture(
            overlay(gray, maps["attention"]), "Where the ViT looked", READ_ATTENTION, "inferno", ("less", "more")
        )
    if "band" not in maps:
        return ""
    box, nearest = FEATURE_DISPLAY, Image.Resampling.NEAREST
    figures = picture(fitted(maps["band"], box), "What the classical model sees: the flattened retina band", READ_BAND)
    if "hog" in maps:
        hog = fitted(np.sqrt(maps["hog"]), box)  # the square root shows faint edges beside strong ones
        figures += picture(hog, "Its HOG: edge directions per cell", READ_HOG, "gray", ("weak", "strong"))
    if "lbp" in maps:
        lbp = fitted(textures(maps["lbp"]), box, nearest)
        figures += picture(lbp, "Its LBP: kinds of local texture", READ_LBP, key=legend())
    return figures


def model_panel(name: str, kind: str, answer: Answer | None, frame: Frame | None) -> str:
    """One model's panel: its answer (collapsed when the frame is withheld), and its pictures (drawn now unless
    they were as it answered)."""
    if answer is None or frame is None:
        return ""
    figures = answer.pictures or (pictures(answer, frame.scan.gray) if frame.scan is not None else "")
    answer_html = verdict(answer) + bars(answer)
    if frame.withheld:
        if answer.prediction.flagged:
            why = f"this image is outside what {html.escape(name)} can judge"
        elif frame.quality:
            why = f"{NOT_A_SCAN} (see above)"
        else:  # another model objected: one doubt withholds every answer (headline)
            why = f"{html.escape(why_withheld(frame))}, so no answer is shown"
        answer_html = (
            f"<p class='verdict withheld'>No answer: {why}.</p>"
            f"<details><summary>Show the model's guesses anyway</summary><p class='how'>{GUESSES}</p>"
            f"{answer_html}</details>"
        )
    return (
        f"<section class='panel'><h3>{html.escape(name)} <small>{kind} · {answer.ms:.0f} ms</small></h3>"
        f"{answer_html}{figures}</section>"
    )


def why_withheld(frame: Frame) -> str:
    """The headline's reason for giving no answer: the image checks first (they speak for every model), else the
    models that find the image unfamiliar, by name."""
    if frame.quality:
        return f"{NOT_A_SCAN}, so the models cannot judge it"
    names = frame.out_of_scope
    if len(names) == len(frame.results):
        return "the models cannot judge this image" if len(names) > 1 else f"{names[0]} cannot judge this image"
    return f"{' and '.join(names)} cannot judge this image"


def headline(upload: Upload) -> str:
    """What the page says first: the answer, or why there is none, and what to keep in mind."""
    frame = upload.shown
    lines = []
    if len(upload.frames) > 1:
        lines.append(
            f"<p>{len(upload.frames)} frames; showing <b>{html.escape(frame.name)}</b>, the most urgent "
            "finding among those the models can judge.</p>"
        )
    if frame.withheld:
        lines.append(f"<h2 class='withheld'>⚠️ No answer: {html.escape(why_withheld(frame))}.</h2>")
        if not frame.quality and frame.out_of_scope and len(frame.results) > len(frame.out_of_scope):
            lines.append(
                "<p>When one model finds an image unfamiliar, neither answer is shown: a model can be confidently "
                "wrong about what it was not taught.</p>"
            )
        lines.append(f"<p>{html.escape(KNOWN)}</p>")
    else:
        labels = {a.label for a in frame.results.values()}
        said = " and ".join(f"{html.escape(n)} says <b>{a.label}</b>" for n, a in frame.results.items())
        agree = len(labels) == 1 and len(frame.results) > 1  # one model alone (no ViT trained) says, not agrees
        lines.append(f"<h2>{'Both models agree: ' + next(iter(labels)) if agree else said}</h2>")
        for label in sorted(labels, key=CLASSES.index):
            lines.append(f"<p><b>{label}</b>: {html.escape(CLASS_NOTES[label])}</p>")
        lines.append(f"<p class='how'>{html.escape(PERCENTAGES)}</p>")
    if frame.warnings:
        lines.append("<ul class='warnings'>" + "".join(f"<li>{html.escape(w)}</li>" for w in frame.warnings) + "</ul>")
    lines.append("<p class='notice'>Research and education demo, not a diagnosis.</p>")
    return "<div class='headline'>" + "".join(lines) + "</div>"


def preview(frame: Frame) -> str:
    """The scan as the models received it, at a bounded size."""
    return (
        f"<figure class='scan'><img src='{data_url(fitted(frame.scan.gray))}' alt='your scan'>"
        "<figcaption>Your scan, as the models received it</figcaption></figure>"
    )


def status(frame: Frame) -> str:
    """A frame's row status: judged, withheld, or unreadable."""
    return "withheld" if frame.withheld else ("unreadable" if frame.error else "ok")


def answer_cell(frame: Frame, name: str) -> str:
    """A table's cell for one model's answer: its class, or a dash where there is none to present (the frame is
    withheld or unreadable). A withheld frame's guesses stay in the CSV's probabilities, as they stay behind a click
    on the one-scan view."""
    answer = frame.results.get(name)
    return answer.label if answer and not frame.withheld else "—"


def notes(frame: Frame) -> str:
    """Everything a frame's row should say about it: its warnings, then why it could not be read."""
    return " ".join([*frame.warnings, frame.error or ""]).strip()


def frames_table(upload: Upload, names: list[str]) -> str:
    """For an upload of several frames (a DICOM volume), a row per frame: each model's answer, whether it was
    judged, and why not; nothing for a single scan."""
    if len(upload.frames) < 2:
        return ""
    header = "".join(f"<th>{html.escape(h)}</th>" for h in ("frame", "status", *names, "notes"))
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(cell)}</td>"
            for cell in (
                f.name,
                status(f),
                *(answer_cell(f, n) for n in names),
                notes(f),
            )
        )
        + "</tr>"
        for f in upload.frames
    )
    return (
        f"<details class='frames' open><summary>Every frame ({len(upload.frames)})</summary>"
        f"<div><table><thead><tr>{header}</tr></thead><tbody>{rows}</tbody></table></div></details>"
    )


def summary(upload: Upload, names: list[str]) -> str:
    """The headline, the scan as the models received it and, for several frames, their table: one piece of HTML,
    so that an answer is a few strings, with no file to write, cache and fetch."""
    return headline(upload) + preview(upload.shown) + frames_table(upload, names)


CSS = """
.headline h2 { margin: .2em 0; } .headline .withheld { color: #b45309; }
.warnings li { margin: .15em 0; } .notice { font-size: .85em; opacity: .8; }
.panel { border: 1px solid var(--border-color-primary); border-radius: 8px; padding: .6em .8em; }
.panel h3 small { font-weight: normal; opacity: .7; } .verdict { font-size: 1.15em; margin: .2em 0; }
.verdict.withheld { color: #b45309; font-size: 1em; }
.probabilities .p { display: grid; grid-template-columns: 5.5em 1fr 3em; align-items: center; gap: .4em; }
.probabilities .p b { display: block; height: .8em; background: #6366f1; border-radius: 3px; }
.probabilities .p em { font-style: normal; text-align: right; } .binary { font-size: .9em; }
figure { margin: .6em 0; } figure img { width: 100%; max-width: 512px; image-rendering: auto; border-radius: 4px; }
figcaption { font-weight: 600; font-size: .9em; } .how { font-size: .9em; opacity: .85; margin: .2em 0; }
.bar { display: flex; align-items: center; gap: .4em; font-size: .85em; max-width: 512px; }
.bar i { flex: 1; height: .7em; border-radius: 3px; }
.legend { display: flex; flex-wrap: wrap; gap: .8em; font-size: .85em; }
.legend i { display: inline-block; width: .9em; height: .9em; margin-right: .3em; vertical-align: middle;
  outline: 1px solid var(--border-color-primary); }  /* the dark swatches stay visible on a dark page */
/* #b45309 is too faint on a dark page (3.8:1). One selector a rule: Gradio scopes custom CSS, and of a list of
   selectors only the first beginning .dark was found in dark mode */
.dark .headline .withheld { color: #fbbf24; }
.dark .verdict.withheld { color: #fbbf24; }
figure.scan img { max-height: 200px; width: auto; max-width: 100%; }
.frames > div { max-height: 20em; overflow: auto; } .frames table { font-size: .85em; border-collapse: collapse; }
.frames th, .frames td { text-align: left; padding: .15em .5em; border-bottom: 1px solid var(--border-color-primary); }
.frames td:last-child { min-width: 14em; }
#conditions .grid-wrap { min-height: 0; max-height: none; }  /* the gallery as tall as its row, not Gradio's 450px */
#conditions .gallery-container:has(.preview) { height: 380px !important; max-height: none !important; }
#conditions .preview { height: 100% !important; }  /* a scan opened from it is shown whole, not a sliver */
@media (max-width: 700px) {  /* on a phone: each model's tested figures in view (kind, data, card: wider screens) */
  #conditions .grid-container { grid-template-columns: repeat(2, minmax(100px, 1fr)); }
  #model-table table { display: block; overflow-x: auto; } #model-table th:first-child { min-width: 6.5em; }
  #model-table th:nth-child(2), #model-table td:nth-child(2) { display: none; }
  #model-table th:nth-child(n+4), #model-table td:nth-child(n+4) { display: none; }
  /* The Batch table as cards: file, status and answers on one line, the notes under them across the screen (the
     desktop's pixel widths ran the notes 600 px past a phone's edge). Gradio sets its widths inline, hence !important;
     its rows are flex boxes whose heights it measures, so a wrapped row keeps its place. */
  #batch-table .header-table, #batch-table .virtual-body { width: 100% !important; table-layout: fixed; }
  #batch-table .sizing-body, #batch-table th:last-child { display: none; }
  #batch-table th, #batch-table .body-cell { width: auto !important; min-width: 0 !important;
    max-width: none !important; flex: 1 1 0 !important; font-size: 12px; }
  #batch-table .cell-wrap { padding-left: 5px !important; padding-right: 5px !important; }  /* "HOG+LBP" whole */
  #batch-table th:first-child, #batch-table .body-cell:first-child { width: 32% !important; flex: 0 0 32% !important; }
  #batch-table th:nth-child(2), #batch-table .body-cell:nth-child(2) { width: 28% !important;
    flex: 0 0 28% !important; }  /* "unreadable" on one line */
  #batch-table .virtual-row { flex-wrap: wrap; border-bottom: 1px solid var(--border-color-primary); }
  #batch-table .body-cell:last-child { flex: 0 0 100% !important; }
  #batch-table .body-cell:last-child:has(span:empty) { display: none !important; }  /* no notes: no empty line */
}
"""
