"""The Space under a real client: cold start, then p50/p95 latency of a whole request (both models).

    python benchmarks/space_latency.py --vit MODEL_DIR --baseline MODEL_DIR [--requests 50]

Cold start: from launching `python space/app.py` to its first answered request. Then --requests
requests, one after another, with real scans of the bundled sample, over Gradio's HTTP API (upload,
queued call, event stream, output images fetched: `space_http.py`). Then, to show
where the time goes: the app's own work (`space.ui.analyse` called in this process), the same
request through gradio_client, and both protocols' floor (a trivial endpoint that takes an uploaded
file and returns "ok").
"""

import argparse
import time

import gradio as gr
import httpx
import numpy as np
from gradio_client import Client, handle_file

from space.engine import Models
from space.ui import analyse
from space_http import SCANS, predict, start_space, wait_until_answering

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--vit", required=True)
parser.add_argument("--baseline", required=True)
parser.add_argument("--requests", type=int, default=50)
args = parser.parse_args()


def timed_ms(function, repeats: int) -> np.ndarray:
    for i in range(3):
        function(i)  # warm
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        function(i)
        times.append(time.perf_counter() - start)
    return np.array(times) * 1000


def show(what: str, ms: np.ndarray) -> None:
    print(f"{what}: p50 {np.median(ms):.0f} ms, p95 {np.percentile(ms, 95):.0f} ms")


server, url = start_space(args.vit, args.baseline)
try:
    print(f"cold start to first answer: {wait_until_answering(server, url)[0]:.1f} s")
    with httpx.Client(base_url=url, timeout=60) as http:
        show(
            f"whole request over the HTTP API ({args.requests} requests)",
            timed_ms(lambda i: predict(http, SCANS[i % len(SCANS)]), args.requests),
        )
    client = Client(url, verbose=False)
    show(
        "whole request through gradio_client",
        timed_ms(lambda i: client.predict(handle_file(str(SCANS[i % len(SCANS)])), api_name="/predict"), 20),
    )
finally:
    server.terminate()
    server.wait(timeout=30)

models = Models(args.vit, args.baseline)
show("the app's own work (analyse, in process)", timed_ms(lambda i: analyse(str(SCANS[i % len(SCANS)]), models), 20))
with gr.Blocks() as echo:
    upload, reply = gr.File(), gr.Textbox()
    upload.change(lambda path: "ok", upload, reply, api_name="echo")
_, url, _ = echo.queue().launch(prevent_thread_lock=True, quiet=True)
with httpx.Client(base_url=url, timeout=60) as http:
    show("floor, trivial endpoint over HTTP", timed_ms(lambda i: predict(http, SCANS[0], "echo"), 20))
floor = Client(url, verbose=False)
show(
    "floor, trivial endpoint through gradio_client",
    timed_ms(lambda i: floor.predict(handle_file(str(SCANS[0])), api_name="/echo"), 20),
)
echo.close()
