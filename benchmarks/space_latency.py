"""The Space under a real client: cold start, then p50/p95 latency of a whole request (both models).

    python benchmarks/space_latency.py --vit MODEL_DIR --baseline MODEL_DIR [--requests 50] [--clients 1]

Cold start: from launching `python space/app.py` to its first answered request. Then --requests
requests with real scans of the bundled sample through gradio_client (upload, both models,
explanations, response), from --clients threads at once. Then, to show where the time goes: the
app's own work per request (`space.app.analyse` called in this process) and Gradio's floor (a
trivial endpoint that takes an uploaded file and returns "ok", through the same client).
"""
import argparse
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import gradio as gr
import numpy as np
from gradio_client import Client, handle_file

from space.app import analyse
from space.engine import Models

ROOT = Path(__file__).resolve().parent.parent
parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--vit", required=True)
parser.add_argument("--baseline", required=True)
parser.add_argument("--requests", type=int, default=50)
parser.add_argument("--clients", type=int, default=1)
args = parser.parse_args()

with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
env = {**os.environ, "OCT_VIT_MODEL": args.vit, "OCT_BASELINE_MODEL": args.baseline,
       "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1"}
scans = sorted((ROOT / "examples" / "sample").glob("*/*.jpeg"))
start = time.perf_counter()
server = subprocess.Popen([sys.executable, "space/app.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    while True:
        try:
            client = Client(f"http://127.0.0.1:{port}/", verbose=False)
            client.predict(handle_file(str(scans[0])), api_name="/predict")
            break
        except Exception:
            if server.poll() is not None:
                sys.exit("the app exited during start-up")
            time.sleep(0.2)
    cold = time.perf_counter() - start
    print(f"cold start to first answer: {cold:.1f} s")

    def one(i: int) -> float:
        t = time.perf_counter()
        Client(f"http://127.0.0.1:{port}/", verbose=False).predict(handle_file(str(scans[i % len(scans)])), api_name="/predict") \
            if args.clients > 1 else client.predict(handle_file(str(scans[i % len(scans)])), api_name="/predict")
        return time.perf_counter() - t

    for i in range(3):
        one(i)  # warm
    began = time.perf_counter()
    with ThreadPoolExecutor(args.clients) as pool:
        times = list(pool.map(one, range(args.requests)))
    wall = time.perf_counter() - began
    print(f"{args.requests} requests from {args.clients} client(s): p50 {np.median(times) * 1000:.0f} ms, "
          f"p95 {np.percentile(times, 95) * 1000:.0f} ms, {args.requests / wall:.1f} requests/s")
finally:
    server.terminate()
    server.wait(timeout=30)


def p50_ms(function, repeats: int = 20) -> float:
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1000


models = Models(args.vit, args.baseline)
print(f"the app's own work (analyse, in process): p50 {p50_ms(lambda: analyse(str(scans[0]), models)):.0f} ms")
with gr.Blocks() as echo:
    upload, reply = gr.File(), gr.Textbox()
    upload.change(lambda path: "ok", upload, reply, api_name="echo")
_, url, _ = echo.queue().launch(prevent_thread_lock=True, quiet=True)
floor = Client(url, verbose=False)
print(f"Gradio's floor (upload + trivial endpoint, same client): p50 "
      f"{p50_ms(lambda: floor.predict(handle_file(str(scans[0])), api_name='/echo')):.0f} ms")
echo.close()
