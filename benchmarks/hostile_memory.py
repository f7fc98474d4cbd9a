"""Per-request peak memory and time of the Space for each hostile upload family, with both models loaded.

    python benchmarks/hostile_memory.py --vit MODEL_DIR --baseline MODEL_DIR

The families are those an independent review of the Space found expensive (`tests/hostile.py`, at the review's
size), and variants of them. Each is sent alone over Gradio's HTTP API (`space_http.py`) to a freshly started
`python space/app.py`: the table gives the growth of the app's resident memory (its process and its decode
workers, sampled every 20 ms) over what it held just before, the time to the answer, and the answer (the
visitor's message, or the label shown). Then four hostile requests at once, with a normal scan sent while they
run: the whole Space's peak memory and the normal scan's wait.
"""

import argparse
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import hostile  # noqa: E402
from space_http import SCANS, SpaceError, call, predict, start_space, wait_until_answering  # noqa: E402

FAMILIES = {  # name: (file name as uploaded, how to make it, endpoint)
    "zip of 16 PNGs at the pixel limit (Batch)": ("pngs.zip", lambda: hostile.zip_of_big_pngs(16), "batch"),
    "zip of 200 such PNGs (Batch)": ("many-pngs.zip", lambda: hostile.zip_of_big_pngs(200), "batch"),
    "the same zip renamed .jpeg (One scan)": ("scan.jpeg", lambda: hostile.zip_of_big_pngs(16), "predict"),
    "deflated DICOM inflating to 512 MB": ("deflated.dcm", lambda: hostile.deflated_dicom(512), "predict"),
    "RLE DICOM, one 8000x8000 frame": ("rle.dcm", lambda: hostile.rle_dicom(8000, 1), "predict"),
    "RLE DICOM, four 8000x8000 frames": ("rle4.dcm", lambda: hostile.rle_dicom(8000, 4), "predict"),
    "JPEG DICOM, five 8000x8000 frames": ("jpeg.dcm", lambda: hostile.jpeg_dicom(8000, 5), "predict"),
    "progressive JPEG 6000x6000, 10,000 scans": ("bomb.jpeg", lambda: hostile.progressive_jpeg_bomb(), "predict"),
    "progressive JPEG 6000x6000, about 30 scans": (
        "slow.jpeg",
        lambda: hostile.progressive_jpeg_bomb(repeats=20),
        "predict",
    ),
    "PNG strip 32x40,000": ("strip.png", lambda: hostile.tall_strip(32, 40_000), "predict"),
    "PNG strip 40,000x32": ("wide.png", lambda: hostile.tall_strip(40_000, 32), "predict"),
    "PNG 4000x4000 (at the pixel limit)": ("big.png", lambda: hostile.flat_png(4000, 4000), "predict"),
    "PNG 6300x6300 (over it)": ("bigger.png", lambda: hostile.flat_png(6300, 6300), "predict"),
}


def resident_mb(process: psutil.Process) -> float:
    total = 0
    for p in [process, *process.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:  # a decode worker ended (recycled or stopped) between listing and reading
            pass
    return total / 1024**2


class Peak:
    """The app's peak resident memory while a block runs, sampled from another thread."""

    def __init__(self, process: psutil.Process):
        self.process, self.peak, self.running = process, 0.0, False

    def __enter__(self) -> "Peak":
        self.before = resident_mb(self.process)
        self.peak, self.running = self.before, True
        self.thread = threading.Thread(target=self._sample)
        self.thread.start()
        return self

    def _sample(self) -> None:
        while self.running:
            self.peak = max(self.peak, resident_mb(self.process))
            time.sleep(0.02)

    def __exit__(self, *_) -> None:
        self.running = False
        self.thread.join()


def send(url: str, path: Path, endpoint: str) -> tuple[float, str]:
    """(seconds, what the visitor gets) for one whole request."""
    inputs = (None,) if endpoint == "predict" else ()
    began = time.perf_counter()
    with httpx.Client(base_url=url, timeout=600) as client:
        try:
            if endpoint == "batch":  # a list of files, then the classical variant
                with path.open("rb") as handle:
                    uploaded = client.post("gradio_api/upload", files={"files": handle}).json()[0]
                outputs = call(client, "batch", [[{"path": uploaded, "meta": {"_type": "gradio.FileData"}}], None])
                rows = outputs[0]["data"]
                answer = f"{len(rows)} rows; first: {' '.join(str(x) for x in rows[0][-2:])[:90]}"
            else:
                outputs = predict(client, path, endpoint, inputs=inputs)
                answer = "answered: " + strip_tags(outputs[0])[:90]
        except SpaceError as e:
            answer = "refused: " + e.args[0][:110]
    return time.perf_counter() - began, answer


def strip_tags(html: str) -> str:
    import re

    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vit", required=True)
    parser.add_argument("--baseline", required=True)
    args = parser.parse_args()

    files = Path(tempfile.mkdtemp(prefix="hostile-"))
    made = {}
    for name, (file_name, make, endpoint) in FAMILIES.items():
        path = files / file_name
        path.write_bytes(make())
        made[name] = (path, endpoint)

    server, url = start_space(args.vit, args.baseline)
    try:
        print(f"app answering after {wait_until_answering(server, url)[0]:.1f} s")
        app = psutil.Process(server.pid)
        print(f"app resident memory at rest, both models loaded: {resident_mb(app):.0f} MB (app and decode workers)\n")
        print("| upload | size | peak growth | time | what the visitor gets |\n|---|---|---|---|---|")
        for name, (path, endpoint) in made.items():
            with Peak(app) as peak:
                seconds, answer = send(url, path, endpoint)
            size = path.stat().st_size / 1024
            print(
                f"| {name} | {size:,.0f} kB | {peak.peak - peak.before:+,.0f} MB | {seconds:.1f} s | {answer} |",
                flush=True,
            )

        for mix in (
            ["progressive JPEG 6000x6000, 10,000 scans"] * 4,
            [
                "zip of 200 such PNGs (Batch)",
                "deflated DICOM inflating to 512 MB",
                "RLE DICOM, four 8000x8000 frames",
                "JPEG DICOM, five 8000x8000 frames",
            ],
        ):
            with Peak(app) as peak, ThreadPoolExecutor(4) as pool:
                hostile_requests = [pool.submit(send, url, *made[name]) for name in mix]
                time.sleep(1)  # the four are in the queue's four slots before the visitor arrives
                normal_seconds, normal = send(url, SCANS[1], "predict")
                slowest = max(f.result()[0] for f in hostile_requests)
            print(
                f"\nfour at once ({', '.join(sorted(set(mix)))}) and a normal scan sent 1 s later: "
                f"the normal scan answered in {normal_seconds:.1f} s ({normal[:40]}...); the four ended after "
                f"{slowest:.1f} s; whole Space peak {peak.peak:,.0f} MB ({peak.peak - peak.before:+,.0f} MB)"
            )
    finally:
        server.terminate()
        server.wait(timeout=60)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
