"""The Space under load: N concurrent clients for S seconds on loopback; throughput, latency, losses, memory.

    python benchmarks/space_load.py --vit MODEL_DIR --baseline MODEL_DIR [--clients 50] [--seconds 60]

Each client sends whole requests back to back over Gradio's HTTP API (`space_http.py`: upload,
queued call, event stream, output images), with real scans of the bundled sample. Every request
must end answered: one that errors, times out or ends without a result is counted as lost. The
app's resident memory (its process and children) is sampled every second from the first request on.
"""

import argparse
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import psutil

from space_http import SCANS, predict, start_space, wait_until_answering

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--vit", required=True)
parser.add_argument("--baseline", required=True)
parser.add_argument("--clients", type=int, default=50)
parser.add_argument("--seconds", type=float, default=60)
args = parser.parse_args()


def resident_mb(process: psutil.Process) -> float:
    return sum(p.memory_info().rss for p in [process, *process.children(recursive=True)]) / 1024**2


server, url = start_space(args.vit, args.baseline)
try:
    print(f"app answering after {wait_until_answering(server, url)[0]:.1f} s")
    app = psutil.Process(server.pid)
    stop = time.perf_counter() + args.seconds
    latencies, lost, memory = [], [], []
    lock = threading.Lock()

    def client(index: int) -> int:
        sent = 0
        with httpx.Client(base_url=url, timeout=120) as http:
            while time.perf_counter() < stop:
                sent += 1
                began = time.perf_counter()
                try:
                    predict(http, SCANS[(index * 7 + sent) % len(SCANS)])
                    with lock:
                        latencies.append(time.perf_counter() - began)
                except Exception as e:  # errors, timeouts, streams without a result: lost requests
                    with lock:
                        lost.append(f"{type(e).__name__}: {e}")
        return sent

    def sample_memory() -> None:
        while time.perf_counter() < stop + 5:
            memory.append(resident_mb(app))
            time.sleep(1)

    sampler = threading.Thread(target=sample_memory)
    began = time.perf_counter()
    sampler.start()
    with ThreadPoolExecutor(args.clients) as pool:
        sent = sum(pool.map(client, range(args.clients)))
    wall = time.perf_counter() - began
    sampler.join()
finally:
    server.terminate()
    server.wait(timeout=30)

ms = np.array(latencies) * 1000
tenth = max(1, len(memory) // 10)
print(
    f"{args.clients} clients for {args.seconds:g} s: {sent} requests sent, {len(latencies)} answered, {len(lost)} lost"
)
print(
    f"throughput {len(latencies) / wall:.1f} requests/s; "
    f"latency p50 {np.median(ms):.0f} ms, p95 {np.percentile(ms, 95):.0f} ms, "
    f"max {ms.max():.0f} ms"
)
print(
    f"app memory: {np.mean(memory[:tenth]):.0f} MB in the first tenth of the run, "
    f"{np.mean(memory[-tenth:]):.0f} MB in the last, "
    f"max {max(memory):.0f} MB"
)
print("app memory every 10 s (MB):", " ".join(f"{m:.0f}" for m in memory[::10]))
for reason in sorted(set(lost))[:5]:
    print(f"lost: {reason}")
