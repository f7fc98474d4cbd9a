"""The Space's screenshots in the docs, made by walking it in Chromium with trained models (tests/browser.py).

    python docs/make_screenshots.py --vit runs/compare/vit \
        --classical runs/compare/hog-lbp-svm runs/compare/hog-svm runs/compare/lbp-svm \
        [--left-out-classical DIR --left-out-scan SCAN [--left-out-vit DIR]] [--out docs/img]

Writes space-answer (the README's picture: an answer, cropped), space-landing, -result, -variant, -withheld
(a photograph), -error (a zip on One scan), -batch, -phone (the first screen at a phone's width) and
-batch-phone (the Batch table there); with the
--left-out-* models (trained without one class, e.g. by benchmarks/out_of_scope.py) and a scan of that class,
space-left-out: a condition the models were not taught.
"""

import argparse
import io
import sys
import tempfile
import zipfile
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
import browser as walk  # noqa: E402

from space.engine import Models  # noqa: E402
from space.ui import build, look, ready  # noqa: E402
from space.workers import DecodePool  # noqa: E402

SAMPLE = ROOT / "examples" / "sample"


def serve(models: Models, pool: DecodePool):
    ready(models)  # as the app readies its models before serving: the pictures show warm answers' times
    demo = build(models, pool).queue(default_concurrency_limit=4)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True, **look())
    return demo, url


def answer_picture(page, path: Path, width: int = 800) -> None:
    """The README's picture of an answer: the One-scan tab from its input to the foot of both models' panels,
    `width` pixels wide, as a JPEG."""
    top = page.locator("#scan-input").bounding_box()
    panels = [page.locator(f"#{name}").bounding_box() for name in ("vit-panel", "classical-panel")]
    bottom = max(box["y"] + box["height"] for box in panels)
    margin = 8
    scroll = page.evaluate("() => [window.scrollX, window.scrollY]")  # boxes are in the window, clips in the page
    clip = {
        "x": top["x"] + scroll[0] - margin,
        "y": top["y"] + scroll[1] - margin,
        "width": max(box["x"] + box["width"] for box in panels) - top["x"] + 2 * margin,
        "height": bottom - top["y"] + 2 * margin,
    }
    shot = Image.open(io.BytesIO(page.screenshot(clip=clip, full_page=True))).convert("RGB")
    shot.resize((width, round(shot.height * width / shot.width)), Image.Resampling.LANCZOS).save(path, quality=85)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vit", required=True, help="ViT model folder")
    parser.add_argument("--classical", nargs="+", required=True, help="classical model folders, the first shown")
    parser.add_argument("--scan", type=Path, default=SAMPLE / "DME" / "DME-1081406-1.jpeg", help="the scan dropped")
    parser.add_argument("--left-out-vit", help="a ViT trained without one class (default: --vit, taught all four)")
    parser.add_argument("--left-out-classical", help="a classical model trained without that class")
    parser.add_argument("--left-out-scan", type=Path, help="a scan of that class")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright
    from skimage import data as pictures

    args.out.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="shots-"))
    photo = scratch / "holiday.png"
    Image.fromarray(pictures.chelsea()).save(photo)
    archive = scratch / "scans.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for scan in sorted(SAMPLE.glob("*/*.jpeg"))[::10][:4]:
            z.write(scan, scan.name)

    pool = DecodePool(size=2).start()
    models = Models(args.vit, args.classical)
    if models.problems:
        raise SystemExit("\n".join(models.problems))
    demo, url = serve(models, pool)
    with sync_playwright() as p:
        browser = walk.browser(p)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        walk.landing(page, url, args.out)
        walk.upload(page, args.scan, args.out)
        answer_picture(page, args.out / "space-answer.jpg")
        walk.switch_variant(page, models.classical[-1].name, args.out)
        walk.withheld(page, photo, args.out)
        walk.wrong_place(page, archive, args.out)
        walk.batch(page, archive, args.out)
        phone = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2)
        walk.phone(phone, url, args.out)
        walk.batch(phone, archive)  # the Batch table on a phone: a card per scan, its notes under its answers
        phone.locator("#batch-table").screenshot(path=str(args.out / "space-batch-phone.png"))
        demo.close()
        if args.left_out_classical and args.left_out_scan:
            left_out = Models(args.left_out_vit or args.vit, [args.left_out_classical])
            demo, url = serve(left_out, pool)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(url)
            page.get_by_role("tab", name="One scan").click()
            walk.withheld(page, args.left_out_scan)
            page.screenshot(path=str(args.out / "space-left-out.png"), full_page=True)
            demo.close()
        browser.close()
    pool.close()
    print(f"screenshots in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
