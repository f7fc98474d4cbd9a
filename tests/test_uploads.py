"""The families of hostile uploads an independent review found expensive, at test size: each is refused from
its headers before it expands, or decoded one frame at a time within the request's budget; and a decode that
runs past its time budget is stopped (its worker ended), the visitor told, the next request served."""

import io
import os
import zipfile

import numpy as np
from PIL import Image

import hostile
from space.uploads import MAX_BYTES, MAX_FRAME_PIXELS, MAX_JPEG_SCANS, Budget, iter_upload, jpeg_scans
from space.workers import DecodePool


def frames(data: bytes, budget: Budget | None = None) -> list:
    return list(iter_upload(data, "upload", budget))


def test_a_deflated_dicom_that_would_inflate_past_the_limit_is_refused_before_it_inflates():
    (frame,) = frames(hostile.deflated_dicom(inflated_mb=MAX_BYTES // 1024**2 + 16))
    assert frame.gray is None and "inflates to more than" in frame.error
    (small,) = frames(hostile.deflated_dicom(inflated_mb=4))  # an honest deflated DICOM still reads
    assert small.gray is not None


def test_a_progressive_jpeg_with_absurdly_many_scans_is_refused_before_decoding():
    bomb = hostile.progressive_jpeg_bomb(side=800, repeats=200)
    assert jpeg_scans(bomb) > MAX_JPEG_SCANS
    (frame,) = frames(bomb)
    assert frame.gray is None and f"more than {MAX_JPEG_SCANS} scans" in frame.error
    (honest,) = frames(hostile.progressive_jpeg_bomb(side=800, repeats=1))
    assert honest.gray is not None


def test_compressed_dicom_frames_are_decoded_one_at_a_time_within_the_request_budget():
    for data in (hostile.rle_dicom(side=1000, frames=3), hostile.jpeg_dicom(side=1000, frames=3)):
        decoded = frames(data)
        assert [f.name for f in decoded] == [f"upload frame {i}/3" for i in (1, 2, 3)]
        assert all(f.gray is not None and f.gray.shape == (1000, 1000) for f in decoded)
    budget = Budget(pixels=2_500_000)  # room for two frames of 1000 x 1000, not three
    decoded = frames(hostile.rle_dicom(side=1000, frames=3), budget)
    assert [f.gray is not None for f in decoded] == [True, True, False] and "limit" in decoded[-1].error


def test_a_zip_of_big_images_stops_at_the_request_pixel_budget():
    decoded = frames(hostile.zip_of_big_pngs(count=6, side=1000), Budget(pixels=3_500_000))
    assert [f.gray is not None for f in decoded] == [True, True, True, False] and "limit" in decoded[-1].error


def test_an_image_past_pillows_own_size_bound_is_refused_as_too_large_not_damaged():
    (frame,) = frames(hostile.png_claiming(20_000, 20_000))  # Pillow refuses this header itself
    assert frame.gray is None and "the image is too large" in frame.error and "damaged" not in frame.error


def test_images_of_absurd_proportions_are_refused():
    (frame,) = frames(hostile.tall_strip(width=32, height=40_000))
    assert frame.gray is None and "no B-scan is that narrow or that wide" in frame.error
    wide = io.BytesIO()  # a JPEG, decoded at a reduced scale: the message names the size the visitor knows it by
    Image.new("L", (8192, 496), 40).save(wide, "JPEG")
    (frame,) = frames(wide.getvalue())
    assert frame.gray is None and "the image is 8192x496 pixels; no B-scan" in frame.error


def test_a_decode_past_its_time_budget_is_stopped_and_the_next_request_served(tmp_path, a_scan):
    """A named pipe nobody writes to: the worker blocks reading it for as long as it is left, whatever the
    machine's speed, so the budget always runs out; its process is ended, not abandoned."""
    pipe = tmp_path / "never-written"
    os.mkfifo(pipe)
    pool = DecodePool(size=1, seconds=0.5).start()
    try:
        worker = pool.idle.queue[0]
        (frame,) = list(pool.frames(pipe, "slow.jpeg"))
        assert frame.gray is None and "took longer than" in frame.error and "stopped" in frame.error
        worker.process.join(timeout=30)
        assert not worker.process.is_alive()  # ended, not left running
        (normal,) = list(pool.frames(a_scan))  # a fresh worker serves the next request
        assert normal.gray is not None and normal.gray.dtype == np.float32
    finally:
        pool.close()


def test_a_worker_whose_memory_grew_is_replaced_after_its_request(a_scan, monkeypatch):
    import space.workers

    pool = DecodePool(size=1).start()
    try:
        first = pool.idle.queue[0]
        monkeypatch.setattr(space.workers, "RECYCLE_MB", 0)  # every worker counts as grown
        list(pool.frames(a_scan))
        first.process.join(timeout=30)
        assert not first.process.is_alive() and pool.started == 0
        assert list(pool.frames(a_scan))[0].gray is not None  # a fresh worker took its place
    finally:
        pool.close()


def test_an_empty_zip_gets_a_message_not_an_empty_table():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("folder/", b"")  # a directory entry only
    (frame,) = list(iter_upload(buffer.getvalue(), "empty.zip"))
    assert frame.gray is None and "no file in it" in frame.error


def test_a_frame_over_the_spaces_pixel_limit_is_refused_from_its_header():
    (frame,) = frames(hostile.flat_png(4001, 4000))
    assert frame.gray is None and f"more than {MAX_FRAME_PIXELS:,}" in frame.error
    (at_limit,) = frames(hostile.flat_png(4000, 4000))
    assert at_limit.gray is not None and at_limit.gray.size == MAX_FRAME_PIXELS
