"""The Space under a real client: cold start, then p50/p95 latency of a whole request (both models).

    python benchmarks/space_latency.py --vit MODEL_DIR --baseline MODEL_DIR [--requests 50]

Cold start: from launching `python space/app.py` to its first answered request. Then --requests
requests, one after another, with real scans of the bundled sample, over Gradio's HTTP API (upload,
queued call, event stream, any files the answer links to fetched: `space_http.py`). Then, to show
where the time goes: the app's own work (`space.ui.predict` called in this process, decoding in a
worker process as the app does), the models alone (one decoded scan through both), the same
request through gradio_client, and both protocols' floor (a trivial endpoint that takes an uploaded
file and returns "ok").

    python benchmarks/space_latency.py --vit MODEL_DIR --baseline MODEL_DIR --against OTHER_CHECKOUT

With --against (another checkout of this repository, e.g. `git worktree add ../before HEAD~1`): the app of each
checkout, started side by side with the same models and sent the same requests in turns, one each (which goes
first alternating), so that a drift in the machine's speed touches both alike (two runs one after the other on a
shared 2-core machine differ by more than a change of a few ms); only the whole request's figures are printed
then.
"""

import argparse
import subprocess
import time
from pathlib import Path

import gradio as gr
import httpx
import numpy as np
from gradio_client import Client, handle_file

from octcore.imaging import read_scan
from space.engine import Models, classify
from space.ui import predict as predict_in_process
from space.ui import ready, threads_named, timed_threads
from space.uploads import DecodedFrame
from space.workers import DecodePool
from space_http import ROOT, SCANS, predict, start_space, wait_until_answering


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vit", required=True)
    parser.add_argument("--baseline", required=True, help="the classical model folder (the first, if several)")
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--against", type=Path, help="another checkout: both apps' requests in turns (above)")
    args = parser.parse_args()
    if args.against:
        apps_in_turns(args.vit, args.baseline, args.against, args.requests)
        return

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
            timed_ms(lambda i: client.predict(handle_file(str(SCANS[i % len(SCANS)])), None, api_name="/predict"), 20),
        )
    finally:
        server.terminate()
        server.wait(timeout=30)

    models, pool = Models(args.vit, args.baseline), DecodePool(size=1).start()
    timed = ready(models)  # what the app does to its models at start
    if timed:
        print(f"the ViT as the app runs it: {threads_named(models.vit.threads)}, {timed_threads(timed)}")
    show(
        "the app's own work (predict, in process)",
        timed_ms(lambda i: predict_in_process(str(SCANS[i % len(SCANS)]), None, models, pool), 20),
    )
    pool.close()
    scans = [read_scan(path) for path in SCANS]
    show(
        "the models alone (decoded scan, prediction and maps)",
        timed_ms(lambda i: classify(DecodedFrame("scan", scans[i % len(scans)].gray), models.chosen()), 20),
    )
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


def apps_in_turns(vit: str, baseline: str, against: Path, requests: int) -> None:
    """Whole requests over HTTP to this checkout's app and another's, the same scan to each in turn, which app goes
    first alternating from one turn to the next."""
    apps: dict[str, tuple[subprocess.Popen, str]] = {}
    clients: dict[str, httpx.Client] = {}
    try:
        # One after the other: a port is free until its app binds it, so two starting at once could be given one.
        for name, root in (("this checkout", ROOT), (str(against), against)):
            apps[name] = start_space(vit, baseline, root=root)
            wait_until_answering(*apps[name])
            clients[name] = httpx.Client(base_url=apps[name][1], timeout=60)
        times: dict[str, list[float]] = {name: [] for name in apps}
        for i in range(3 + requests):  # the first three warm both up
            for name, http in list(clients.items())[:: 1 if i % 2 else -1]:
                start = time.perf_counter()
                predict(http, SCANS[i % len(SCANS)])
                if i >= 3:
                    times[name].append(time.perf_counter() - start)
        for name, seconds in times.items():
            show(f"whole request over the HTTP API, {name} ({requests} requests, in turns)", np.array(seconds) * 1000)
    finally:
        for http in clients.values():
            http.close()
        for server, _ in apps.values():
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":  # the decode pool's workers start from a clean process that imports this module
    main()
