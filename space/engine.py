"""What the Space does with an upload, without the UI: decode it safely, run the models, decide what can be said.

An upload is decoded in a worker process (space/workers.py: time budget, memory kept out of the app)
into frames, one at a time: a plain image is one frame, a DICOM may hold many, a zip several files.
Each frame is decoded once, and that one `ScanImage` goes to the quality check and to every model
asked. Only what is shown is kept: the frame with the most urgent finding, and one table row per frame.
A frame the models cannot judge (it does not look like an OCT B-scan, or a model finds it far from
everything it was taught) is withheld: its classes are not presented as an answer. Nothing here
raises on bad input: a file that cannot be read becomes a frame with an error message.
"""

import os
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from models import OCTModel, Prediction, load_model
from octcore.data import usable_cpus
from octcore.imaging import ScanImage, ScanInput, read_scan
from octcore.labels import CLASSES, REFERRAL, REFERRAL_LEVEL, URGENT_CLASSES
from octcore.quality import scan_warnings
from space.uploads import DecodedFrame, iter_upload
from space.workers import DecodePool

HERE = Path(__file__).resolve().parent
VIT_ENV, BASELINE_ENV = "OCT_VIT_MODEL", "OCT_BASELINE_MODEL"
DEFAULT_VIT, DEFAULT_BASELINE = HERE / "models" / "vit", HERE / "models" / "hog-lbp-svm"
LOW_CONFIDENCE = 0.6  # top probability below this is shown as uncertain
# The models of a request run side by side (`classify`): on the Space's 2 CPUs a request then takes about as
# long as its slower model, not as both together. Each request in flight borrows one of these threads beside its
# own; beyond 8 at once (Gradio runs 4 per event listener), a request waits for one.
BESIDE = ThreadPoolExecutor(max_workers=8, thread_name_prefix="oct-model")
TIMING_TURNS = 7  # how many times `Models.choose_vit_threads` times each thread count (after one to warm up)


def vit_threads() -> int:
    """The ViT's ONNX Runtime threads when it is loaded: every CPU this process may use. It shares one of them with
    the classical model while that runs; its idle threads yield the core rather than spin (`models.vit`), so the
    two do not fight over it. `Models.choose_vit_threads` then keeps one thread instead where that answers sooner."""
    return usable_cpus()


@dataclass
class Answer:
    """One model's answer for one frame."""

    prediction: Prediction
    ms: float
    pictures: str = ""  # its maps drawn for the page (`classify`'s `draw`); "" when not drawn

    @property
    def label(self) -> str:
        return CLASSES[int(self.prediction.proba.argmax())]

    @property
    def confidence(self) -> float:
        return float(self.prediction.proba.max())

    @property
    def abnormal(self) -> float:
        """Probability of anything but a normal retina: the binary view of OCT screening."""
        return float(1 - self.prediction.proba[CLASSES.index("NORMAL")])

    @property
    def urgent(self) -> float:
        """Probability of a finding that needs urgent referral (CNV or DME)."""
        return float(sum(self.prediction.proba[CLASSES.index(c)] for c in URGENT_CLASSES))


Draw = Callable[[Answer, np.ndarray], str]  # an answer's maps drawn over the scan's gray levels (space.render)


@dataclass
class Frame:
    name: str
    scan: ScanImage | None = None  # decoded once; None when unreadable
    error: str | None = None
    results: dict[str, Answer] = field(default_factory=dict)  # by model name
    quality: list[str] = field(default_factory=list)  # why the image may not be an OCT B-scan

    @property
    def out_of_scope(self) -> list[str]:
        """The models that find this frame far from everything they were taught."""
        return [name for name, answer in self.results.items() if answer.prediction.flagged]

    @property
    def withheld(self) -> bool:
        """Whether the models' classes must not be presented as an answer."""
        return bool(self.quality or self.out_of_scope)

    @property
    def warnings(self) -> list[str]:
        """Everything a reader should know before trusting the answers, most serious first."""
        notes = list(self.quality)
        for name in self.out_of_scope:
            notes.append(
                f"{name}: this image is far from every scan it was trained on; it may show a condition "
                "it does not know, or come from another kind of device."
            )
        if self.withheld:  # no answer is presented, so whether the models are unsure or disagree is moot
            return notes
        notes += [
            f"{name} is unsure (top probability {a.confidence:.0%})."
            for name, a in self.results.items()
            if a.confidence < LOW_CONFIDENCE
        ]
        if len({a.label for a in self.results.values()}) > 1:
            # which model says what is in the headline and in each model's panel (and the batch table's columns)
            notes.append("The models disagree: treat neither answer as reliable.")
        return notes


class Models:
    """The ViT and the classical models, loaded once by `models.load_model`; what is missing is said, not raised.

    vit: a folder or Hub id; classical: one or several (a list, or comma-separated), the first shown by
    default. Unset, they come from OCT_VIT_MODEL / OCT_BASELINE_MODEL, else from space/models/. The ViT is loaded
    with every CPU (`vit_threads`; the app then keeps that or one thread, `choose_vit_threads`), the classical model
    gets one BLAS thread beside it (`one_blas_thread`).
    """

    def __init__(self, vit: str | None = None, classical: str | list[str] | None = None):
        self.vit: OCTModel | None = None
        self.classical: list[OCTModel] = []
        self.problems: list[str] = []
        self.origins: dict[int, str] = {}  # id(model) -> the folder or Hub id it was loaded from
        vit = vit or os.environ.get(VIT_ENV) or str(DEFAULT_VIT)
        classical = classical or os.environ.get(BASELINE_ENV) or default_classical()
        sources = classical.split(",") if isinstance(classical, str) else list(classical)
        try:
            self.vit = load_model(vit, threads=vit_threads())
            self.origins[id(self.vit)] = vit
        except Exception as e:  # any failure to load is reported in the app, never fatal
            self.problems.append(
                f"The ViT is not loaded from `{vit}` ({e}). Train one with "
                f"`python -m train --data DIR --out DIR` and set {VIT_ENV} to its folder or Hub id."
            )
        for source in sources:
            try:
                self.classical.append(load_model(source.strip()))
                self.origins[id(self.classical[-1])] = source.strip()
            except Exception as e:
                self.problems.append(
                    f"A classical model is not loaded from `{source}` ({e}). Train one with "
                    f"`python -m baselines.train --data DIR --out DIR` and set {BASELINE_ENV}."
                )

    def choose_vit_threads(
        self, scan: ScanInput, repeats: int = TIMING_TURNS, draw: Draw | None = None
    ) -> dict[int, float]:
        """Keep the ViT's ONNX Runtime threads that answer a request sooner on this machine: every CPU, or one (the
        classical model then has another core to itself). Which wins depends on the CPU (docs/results.md *The
        Space*): on a 2-core AVX2 CPU, where the int8 ViT took several times the classical model's time, every CPU
        (measured with the export before the float patch embedding); on a 2-core Xeon with AMX, one, since waking
        a second thread for each of the ViT's operators cost more than the core it brought. So both are timed
        here, in turns, on `scan` (an example) with the default classical model beside, each model's pictures drawn
        by `draw` as a request's are (`classify`), and the faster is kept; the answers are the same either way.
        Returns the median ms of each; {} where there is nothing to choose (no ONNX ViT, no classical model, one
        thread) or the timing failed, which is warned about: this only makes requests faster, so the app starts
        with the ViT as loaded rather than not at all."""
        if self.vit is None or getattr(self.vit, "backend", None) != "onnx" or not self.classical:
            return {}
        loaded = self.vit.threads or usable_cpus()
        if loaded == 1:
            return {}
        try:
            # From the folder the ViT was loaded from: a Hub id is not downloaded again, nor a newer revision taken.
            candidates = {loaded: self.vit, 1: load_model(self.vit.folder, threads=1)}
            frame = DecodedFrame("timing", read_scan(scan).gray)
            times: dict[int, list[float]] = {threads: [] for threads in candidates}
            for turn in range(repeats + 1):  # in turns, so that a drift in the machine's speed touches both alike
                for threads, vit in candidates.items():
                    start = time.perf_counter()
                    classify(frame, [vit, self.classical[0]], draw=draw)
                    if turn:  # the first turn warms both up
                        times[threads].append((time.perf_counter() - start) * 1000)
        except Exception as e:
            warnings.warn(f"the ViT keeps {loaded} threads: timing one failed ({e})", RuntimeWarning, stacklevel=2)
            return {}
        medians = {threads: float(np.median(ms)) for threads, ms in times.items()}
        faster = candidates[min(medians, key=medians.get)]
        if faster is not self.vit:
            self.origins[id(faster)] = self.origins.pop(id(self.vit))
            self.vit = faster
        return medians

    def warm(self, scan: ScanInput, draw: Draw | None = None) -> None:
        """Answer `scan` once with every model, pictures drawn by `draw`, so that the first visitor of each (the
        classical variants after the first included) does not wait for its cold start (lazy imports, weights read
        in from their files), which can take several times a warm answer. A failure is warned about and the app
        starts anyway: this only makes first answers faster."""
        try:
            every = [m for m in (self.vit, *self.classical) if m is not None]
            classify(DecodedFrame("warm-up", read_scan(scan).gray), every, draw=draw)
        except Exception as e:
            warnings.warn(f"the models were not warmed up ({e})", RuntimeWarning, stacklevel=2)

    def chosen(self, classical: str | None = None) -> list[OCTModel]:
        """The models a request runs: the ViT, and the named classical variant (by default the first)."""
        named = [m for m in self.classical if m.name == classical] or self.classical[:1]
        return [m for m in (self.vit, *named) if m is not None]

    @property
    def names(self) -> list[str]:
        return [model.name for model in self.chosen()]

    def sources(self) -> list[tuple[OCTModel, str]]:
        """Every loaded model with the folder or Hub id it came from."""
        return [(m, self.origins[id(m)]) for m in (self.vit, *self.classical) if m is not None]


def default_classical() -> list[str]:
    """The classical model folders bundled in space/models/ (HOG+LBP first), else the one default path."""
    found = sorted(
        (p for p in DEFAULT_VIT.parent.glob("*") if p.is_dir() and p.name != "vit"),
        key=lambda p: (p.name != DEFAULT_BASELINE.name, p.name),
    )
    return [str(p) for p in found] or [str(DEFAULT_BASELINE)]


def one_blas_thread() -> None:
    """Let the models of a request share the CPUs without fighting over them: BLAS (the classical model's
    kernel) gets one thread in this process. Otherwise its pool keeps threads busy-waiting on the cores the ViT
    is using, and side by side is no faster than one after the other (benchmarks/where_time_goes.py).
    Process-wide for the pinned wheels' OpenBLAS (pthreads), so the app calls it once at start; another BLAS
    build may keep its own threads, which is said, not fatal."""
    threadpool_limits(1, user_api="blas")
    unlimited = [pool for pool in threadpool_info() if pool["user_api"] == "blas" and pool["num_threads"] != 1]
    if unlimited:
        warnings.warn(
            f"BLAS still uses {unlimited[0]['num_threads']} threads ({unlimited[0]['internal_api']}): the two models "
            "will compete for the CPUs and a request will take longer",
            RuntimeWarning,
            stacklevel=2,
        )


def classify(decoded: DecodedFrame, models: list[OCTModel], explain: bool = True, draw: Draw | None = None) -> Frame:
    """Every given model on one frame (its one decode shared), side by side, with timings and (if asked)
    explanation maps, each drawn by `draw` into its answer's `pictures` in the thread that computed it: the
    quicker model's pictures are then made while the slower model still runs, not after it. The answers are kept
    in the models' order."""
    if decoded.gray is None:
        return Frame(decoded.name, error=decoded.error)
    frame = Frame(decoded.name, ScanImage(decoded.gray, decoded.colour, decoded.name))

    def answer(model: OCTModel) -> Answer:
        start = time.perf_counter()
        prediction = model.analyse(frame.scan, explain)
        answered = Answer(prediction, (time.perf_counter() - start) * 1000)
        if explain and draw is not None:
            answered.pictures = draw(answered, frame.scan.gray)
        return answered

    beside = [BESIDE.submit(answer, model) for model in models[:-1]]
    try:
        frame.quality = scan_warnings(frame.scan)
        last = answer(models[-1]) if models else None
    finally:  # never leave a model running for a request that has failed
        wait(beside)
    for model, pending in zip(models[:-1], beside):
        frame.results[model.name] = pending.result()
    if last is not None:
        frame.results[models[-1].name] = last
    return frame


def urgency(frame: Frame) -> tuple:
    """How a frame ranks for being shown: judgeable first, then by the most urgent finding of its first model."""
    if not frame.results:
        return (-1,)
    answer = next(iter(frame.results.values()))
    return (not frame.withheld, REFERRAL_LEVEL[REFERRAL[answer.label]], answer.confidence)


@dataclass
class Upload:
    """What one upload gives: the frame to show (its maps computed), a row per frame, and how many frames."""

    shown: Frame | None
    frames: list[Frame]  # every frame, without pixels or maps (the table's rows)


def decoded_frames(path: str | Path, pool: DecodePool | None) -> Iterator[DecodedFrame]:
    """The frames of an upload, from the worker pool (or in this process, for tests and tools without one)."""
    if pool is not None:
        yield from pool.frames(path)
        return
    try:
        yield from iter_upload(Path(path).read_bytes(), Path(path).name)
    except OSError as e:
        yield DecodedFrame(Path(path).name, error=f"cannot open {Path(path).name}: {e.strerror or e}")


def analyse_upload(
    path: str | Path, models: list[OCTModel], pool: DecodePool | None = None, draw: Draw | None = None
) -> Upload:
    """Every frame of one upload classified as it is decoded; only the frame to show keeps its pixels. Maps are
    computed, and drawn by `draw` (`classify`), for the first readable frame, and again for a later frame that
    becomes the one to show (the rows keep the earlier answers, maps and pictures included)."""
    shown, rows = None, []
    for decoded in decoded_frames(path, pool):
        frame = classify(decoded, models, shown is None, draw)  # maps for the first readable frame only
        if frame.scan is not None and (shown is None or urgency(frame) > urgency(shown)):
            if shown is not None and frame.results and not any(a.prediction.maps for a in frame.results.values()):
                frame = classify(decoded, models, True, draw)  # a later frame wins: its maps now
            shown = frame
        rows.append(Frame(frame.name, error=frame.error, results=frame.results, quality=frame.quality))
    return Upload(shown, rows)


def batch_frames(
    paths: Iterable[str | Path], models: list[OCTModel], pool: DecodePool | None = None
) -> Iterator[Frame]:
    """Every frame of several uploads, classified without maps and released one at a time."""
    for path in paths:
        for decoded in decoded_frames(path, pool):
            frame = classify(decoded, models, explain=False)
            frame.scan = None  # the pixels are not needed any more
            yield frame


def probabilities(answer: Answer) -> dict[str, float]:
    return {c: float(p) for c, p in zip(CLASSES, answer.prediction.proba)}


def as_record(frame: Frame) -> dict:
    """A frame as plain data (the JSON API and the batch CSV)."""
    return {
        "name": frame.name,
        "error": frame.error,
        "withheld": frame.withheld if frame.results else None,
        "warnings": frame.warnings,
        "models": {
            name: {
                "label": a.label,
                "probabilities": probabilities(a),
                "abnormal": round(a.abnormal, 4),
                "urgent_referral": round(a.urgent, 4),
                "out_of_scope": a.prediction.flagged,
                "out_of_scope_score": None
                if a.prediction.out_of_scope is None
                else round(float(a.prediction.out_of_scope), 4),
            }
            for name, a in frame.results.items()
        },
    }
