"""Where a request's and a training scan's time goes, part by part, on this machine (no server).

    python benchmarks/where_time_goes.py --vit MODEL_DIR --baseline MODEL_DIR [--scans DATA]
        [--compare-onnx OLD.onnx] [--repeats 30]

With the first --repeats scans of DATA (a dataset folder; the bundled, downsized sample by default), the
median ms of: the Space's parts of one request (the scan check, each model's steps, the panels' pictures), the
two models one after the other against side by side (the ViT on one core, then on every CPU; the Space keeps the
faster), the panels drawn after both models against each model's pictures drawn as it answers (in turns), the
int8 ViT with 1 and 2 ONNX Runtime threads, and the ViT trainer's loader steps for one scan (decode,
augmentation, resize; the processor against its table, which replaced it; with --augment-at input, the decode
once and the augmentation in the resize). --compare-onnx runs another int8 export of the same model alternately
with the folder's, one scan each in turn in one process, so that a drift in the machine's speed
touches both alike (how an export change was measured).
"""

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from baselines.features import band_features, feature_band, feature_maps
from models.classical import embed, load_classical
from models.vit import ONNX_DIR, ONNX_INT8, load_vit, processor_images, table_pixels
from octcore.imaging import ScanImage, eight_bit, read_scan
from octcore.quality import scan_warnings
from space.engine import Answer, Draw, Frame, classify, one_blas_thread, vit_threads
from space.render import model_panel, pictures
from space.uploads import DecodedFrame
from train.data import augment, augment_resized, speckle_bank

BUNDLED = Path(__file__).resolve().parent.parent / "examples" / "sample"


def median_ms(function, repeats: int) -> float:
    """Median ms of function(i) for i in 0..repeats-1, after three untimed calls."""
    return in_turns([function], repeats)[0]


def in_turns(functions: list[Callable[[int], object]], repeats: int) -> list[float]:
    """Median ms of each function(i), called one after another for each i, so that a drift in the machine's
    speed touches them alike (after three untimed turns)."""
    for i in range(3):
        for function in functions:
            function(i)
    times: list[list[float]] = [[] for _ in functions]
    for i in range(repeats):
        for function, spent in zip(functions, times):
            start = time.perf_counter()
            function(i)
            spent.append(time.perf_counter() - start)
    return [float(np.median(spent)) * 1000 for spent in times]


def show(what: str, ms: float) -> None:
    print(f"  {what:58s} {ms:6.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vit", required=True)
    parser.add_argument("--baseline", required=True, help="a classical model folder")
    parser.add_argument("--compare-onnx", help="another int8 export of the same ViT, run in turns with the folder's")
    parser.add_argument("--scans", default=str(BUNDLED), help="a dataset folder (class folders of JPEGs)")
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    n = args.repeats
    files = [path.read_bytes() for path in sorted(Path(args.scans).glob("*/*.jpeg"))[:n]]
    grays, n = [read_scan(data).gray for data in files], len(files)  # each timed call takes another scan
    where = f"median over {n} scans of {args.scans}"

    def fresh(i: int) -> ScanImage:  # a new ScanImage per call, so nothing cached from an earlier call is reused
        return ScanImage(grays[i], 0.0, "scan")

    vit, classical = load_vit(Path(args.vit)), load_classical(Path(args.baseline))
    settings = classical.settings
    print(f"one request's parts ({where}):")
    show("the scan check (octcore.quality)", median_ms(lambda i: scan_warnings(fresh(i)), n))
    show("ViT: pixels (resize, the processor's table)", median_ms(lambda i: vit.pixels([fresh(i)]), n))
    pixels = vit.pixels([fresh(0)])
    show(f"ViT: forward ({vit.backend})", median_ms(lambda i: vit.forward(pixels), n))
    show("ViT: all (analyse, with its map)", median_ms(lambda i: vit.analyse(fresh(i)), n))
    bands = [feature_band(fresh(i), settings) for i in range(len(grays))]
    show("classical: flattened retina band", median_ms(lambda i: feature_band(fresh(i), settings), n))
    show(
        "classical: HOG and LBP of the band and its mirror",
        median_ms(lambda i: band_features(bands[i], settings), n),
    )
    features = [band_features(band, settings)[None] for band in bands]
    show(
        "classical: SVM, calibration, scaled features",
        median_ms(lambda i: embed(classical.estimator, features[i]), n),
    )
    show("classical: its pictures (feature_maps)", median_ms(lambda i: feature_maps(bands[i], settings), n))
    show("classical: all (analyse, with its pictures)", median_ms(lambda i: classical.analyse(fresh(i)), n))
    answers = [(vit, "deep"), (classical, "classical")]

    def panels(i: int) -> None:
        frame = Frame("scan", fresh(i))
        for model, kind in answers:
            model_panel(model.name, kind, Answer(model.analyse(frame.scan), 0.0), frame)

    analysed = median_ms(lambda i: [model.analyse(fresh(i)) for model, _ in answers], n)
    show("both models, then both panels", median_ms(panels, n))
    show("both models alone", analysed)

    # Side by side, with the scan check beside the ViT: BLAS on one thread (process-wide, so measured last among
    # the request's parts), the ViT's ONNX Runtime on one thread, then on every CPU: the Space keeps the faster
    # of the two (Models.choose_vit_threads).
    one_blas_thread()
    cpus = vit_threads()
    one_thread = load_vit(Path(args.vit), threads=1)
    for vit_now, what in (
        (one_thread, "one core each"),
        (load_vit(Path(args.vit), threads=cpus), f"the ViT on {cpus} CPUs"),
    ):
        show(
            f"both models side by side, {what}",
            median_ms(lambda i, beside=[vit_now, classical]: classify(DecodedFrame("scan", grays[i]), beside), n),
        )
    # Each model's pictures drawn as it answers (the Space since 2026-11-28) against both panels drawn after both
    # models, one scan each in turn.

    def with_panels(i: int, draw: Draw | None = None) -> None:
        frame = classify(DecodedFrame("scan", grays[i]), [one_thread, classical], draw=draw)
        for model, kind in answers:
            model_panel(model.name, kind, frame.results[model.name], frame)

    after, drawn = in_turns([with_panels, lambda i: with_panels(i, pictures)], n)
    show("side by side, one core each, then both panels", after)
    show("the same, each model's pictures drawn as it answers", drawn)

    if vit.backend == "onnx":
        print("the int8 ViT's forward pass by ONNX Runtime threads:")
        for threads in (1, 2):
            model = load_vit(Path(args.vit), threads=threads)
            show(
                f"{threads} thread{'s' if threads > 1 else ''}",
                median_ms(lambda i, model=model: model.forward(pixels), n),
            )

    if args.compare_onnx:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        sessions = {
            name: ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
            for name, path in (("other", args.compare_onnx), ("folder's", str(Path(args.vit) / ONNX_DIR / ONNX_INT8)))
        }
        other, own = in_turns(
            [lambda i, session=session: session.run(None, {"pixel_values": pixels}) for session in sessions.values()],
            200,
        )
        print(
            f"int8 exports in turns, 200 scans each: {args.compare_onnx} {other:.1f} ms, the folder's {own:.1f} ms "
            f"(ratio {own / other:.2f})"
        )

    print(f"the ViT trainer's loader, one scan ({where}):")
    speckle_bank()  # made once per worker process, before its first scan
    show("decode (read_scan)", median_ms(lambda i: read_scan(files[i]), n))
    augmented = [augment(gray, np.random.default_rng(i)) for i, gray in enumerate(grays)]
    show("augmentation", median_ms(lambda i: augment(grays[i], np.random.default_rng(i)), n))
    images = [processor_images(vit.processor, [gray])[0] for gray in augmented]
    show(
        "to 8 bits at the processor's size",
        median_ms(lambda i: processor_images(vit.processor, [augmented[i]]), n),
    )
    processor = vit.processor
    show(
        "the processor (which the workers no longer run)",
        median_ms(lambda i: processor(images=[images[i]], return_tensors="pt"), n),
    )
    if vit.table is not None:  # what replaces it: the workers send 8-bit scans, looked up in its table on the device
        show("the processor's table, on the CPU", median_ms(lambda i: table_pixels(vit.table, [images[i]]), n))
    print(f"with --augment-at input, one scan ({where}):")
    scans8 = [eight_bit(gray) for gray in grays]  # what decoded_table holds, read instead of the decode
    show(
        "to 8 bits (once per training run: decoded_table)", median_ms(lambda i: eight_bit(read_scan(files[i]).gray), n)
    )
    show(
        "augmentation in the resize to the processor's size",
        median_ms(lambda i: augment_resized(scans8[i], np.random.default_rng(i), processor), n),
    )


if __name__ == "__main__":
    main()
