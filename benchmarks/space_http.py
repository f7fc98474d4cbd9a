"""Talk to a running Space over Gradio's documented HTTP API (what `curl` users do), for the Space
benchmarks: start the app, upload a file, call an endpoint through the queue, read its event stream,
fetch the files an answer links to.

gradio_client speaks the same protocol but adds ~100 ms of its own per call on this machine
(measured by space_latency.py), so the benchmarks time the plain HTTP exchange instead.
"""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
SCANS = sorted((ROOT / "examples" / "sample").glob("*/*.jpeg"))


class SpaceError(RuntimeError):
    """The app answered a request with an error event, or the stream ended without a result."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def resolved(models: str) -> str:
    """Model folders (comma-separated, as the app takes classical ones) as absolute paths, from the caller's working
    directory; a Hub id (no such folder here) as it is."""
    return ",".join(str(Path(m).resolve()) if Path(m).exists() else m for m in models.split(","))


def start_space(vit: str, baseline: str, root: Path = ROOT, **popen) -> tuple[subprocess.Popen, str]:
    """`python space/app.py` of `root` (this checkout, or another's code) on a free loopback port with the given
    models; returns (process, base URL)."""
    port = free_port()
    env = {
        **os.environ,
        "OCT_VIT_MODEL": resolved(vit),  # the app runs in `root`: a folder given relative to here is found from there
        "OCT_BASELINE_MODEL": resolved(baseline),
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_SERVER_NAME": "127.0.0.1",
    }
    server = subprocess.Popen(
        [sys.executable, "space/app.py"],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        **popen,
    )
    return server, f"http://127.0.0.1:{port}/"


def wait_until_answering(server: subprocess.Popen, url: str, timeout: float = 300) -> tuple[float, list]:
    """Seconds until the app answers its first prediction, and that answer's outputs."""
    start = time.perf_counter()
    with httpx.Client(base_url=url, timeout=60) as client:
        while True:
            try:
                outputs = predict(client, SCANS[0])
                return time.perf_counter() - start, outputs
            except (httpx.HTTPError, SpaceError):
                if server.poll() is not None or time.perf_counter() - start > timeout:
                    raise RuntimeError("the app exited or did not answer during start-up") from None
                time.sleep(0.2)


def predict(
    client: httpx.Client, path: Path, endpoint: str = "predict", fetch: bool = True, inputs: tuple = (None,)
) -> list:
    """One whole request: upload, queued call, event stream to completion, the files it links to fetched.

    `inputs`: the endpoint's other inputs after the file (for `predict`: the classical variant, None for the
    default)."""
    with path.open("rb") as handle:
        uploaded = client.post("gradio_api/upload", files={"files": handle})
    uploaded.raise_for_status()
    outputs = call(client, endpoint, [{"path": uploaded.json()[0], "meta": {"_type": "gradio.FileData"}}, *inputs])
    if fetch:
        for url in output_urls(outputs):
            client.get(url).raise_for_status()
    return outputs


def output_urls(outputs: list) -> list[str]:
    """The files an answer links to (the Batch tab's CSV; the page's answer is HTML with its pictures inline)."""
    return [output["url"] for output in outputs if isinstance(output, dict) and output.get("url")]


def call(client: httpx.Client, endpoint: str, data: list) -> list:
    """A queued call with inputs already uploaded, its event stream read to the result (or SpaceError)."""
    started = client.post(f"gradio_api/call/{endpoint}", json={"data": data})
    started.raise_for_status()
    event = None
    with client.stream("GET", f"gradio_api/call/{endpoint}/{started.json()['event_id']}") as stream:
        for line in stream.iter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event == "complete":
                return json.loads(line[5:])
            elif line.startswith("data:") and event == "error":
                raise SpaceError(line[5:].strip())
    raise SpaceError("the event stream ended without a result")
