"""Uploads decoded in worker processes, each request within a time budget.

A decode that runs past its budget is stopped by ending its worker process (a thread could only be
abandoned while it kept burning a core), the visitor is told so, and a fresh worker takes its place.
Workers also keep a huge decode's memory out of the app's own process, and one whose memory has
grown is replaced after its request. Frames come back one at a time, so the app classifies each and
keeps only what it shows.
"""

import multiprocessing
import os
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from space.uploads import DecodedFrame, iter_upload

SECONDS = 10.0  # decode time one request may use
RECYCLE_MB = 600  # a worker resident above this after a request is replaced
MAX_UPLOAD = 64 * 1024**2  # bytes read from one uploaded file (the app's max_file_size is the same)


def _serve(connection) -> None:
    """A worker: says it is ready (its imports done), then for each (path, name) received, the upload's frames,
    then None."""
    connection.send("ready")
    while True:
        try:
            path, name = connection.recv()
        except EOFError:
            return
        try:
            size = os.path.getsize(path)
            if size > MAX_UPLOAD:
                connection.send(
                    DecodedFrame(name, error=f"cannot read {name}: it is larger than {MAX_UPLOAD // 1024**2} MB")
                )
            else:
                for frame in iter_upload(Path(path).read_bytes(), name):
                    connection.send(frame)
        except OSError as e:
            connection.send(DecodedFrame(name, error=f"cannot open {name}: {e.strerror or e}"))
        connection.send(None)


class _Worker:
    def __init__(self, context):
        self.connection, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child,), daemon=True)
        self.process.start()
        child.close()
        if self.connection.recv() != "ready":  # starting one is not part of any request's decode budget
            raise RuntimeError("a decode worker failed to start")

    def resident_mb(self) -> float:
        try:
            with open(f"/proc/{self.process.pid}/statm") as handle:  # Linux; elsewhere workers are not recycled
                return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1024**2
        except (OSError, ValueError):
            return 0.0

    def stop(self) -> None:
        self.process.kill()
        self.process.join(timeout=5)
        self.connection.close()


class DecodePool:
    """Up to `size` worker processes (started when first needed); one request holds one worker."""

    def __init__(self, size: int = 4, seconds: float = SECONDS):
        self.size, self.seconds = size, seconds
        # forkserver: workers start from a small clean process, not a fork of the app with its models and threads
        self.context = multiprocessing.get_context("forkserver" if os.name == "posix" else "spawn")
        self.idle: queue.Queue[_Worker] = queue.Queue()
        self.started, self.lock = 0, threading.Lock()

    def _take(self) -> _Worker:
        with self.lock:
            if self.idle.empty() and self.started < self.size:
                self.started += 1
                return _Worker(self.context)
        return self.idle.get()

    def _give(self, worker: _Worker, healthy: bool) -> None:
        if healthy and worker.resident_mb() < RECYCLE_MB:
            self.idle.put(worker)
            return
        worker.stop()
        with self.lock:
            self.started -= 1

    def frames(self, path: str | Path, name: str | None = None) -> Iterator[DecodedFrame]:
        """The upload's frames, decoded in a worker; past the time budget, a frame saying so ends them."""
        name = name or Path(path).name
        worker, finished, spent = self._take(), False, 0.0
        try:
            worker.connection.send((str(path), name))
            while True:
                start = time.perf_counter()
                ready = worker.connection.poll(self.seconds - spent)
                spent += time.perf_counter() - start
                if not ready:
                    yield DecodedFrame(
                        name,
                        error=f"reading {name} took longer than {self.seconds:.0f} s and was "
                        "stopped; a scan file takes well under a second",
                    )
                    return
                frame = worker.connection.recv()
                if frame is None:
                    finished = True
                    return
                yield frame
        finally:  # a worker stopped mid-request (timeout, or the caller gave up) is replaced, never reused
            self._give(worker, finished)

    def start(self) -> "DecodePool":
        """Start every worker now (the app does at launch), so the first visitors do not wait for them."""
        workers = [self._take() for _ in range(self.size)]
        for worker in workers:
            self.idle.put(worker)
        return self

    def close(self) -> None:
        while not self.idle.empty():
            self.idle.get().stop()
