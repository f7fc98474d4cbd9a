"""A visitor's walk through the Space in a real browser (Chromium, driven by Playwright), step by step.

Each step acts as a visitor would, waits for what they would see, checks it, and can leave a screenshot.
tests/test_space.py walks it with the test models; docs/make_screenshots.py walks it with trained models
to make the pictures in the docs.
"""

from pathlib import Path

from octcore.labels import CLASSES

CHROMIUM = "/usr/bin/chromium"
SECONDS = 120_000  # ms a step may wait: a cold model on a loaded machine, never a bound on speed


def browser(playwright):
    return playwright.chromium.launch(
        executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    )


def _text(page, pattern: str, where: str = "body") -> None:
    page.wait_for_function(
        f"() => /{pattern}/i.test(document.querySelector('{where}')?.innerText || '')", timeout=SECONDS
    )


def _shot(page, folder: Path | None, name: str) -> None:
    if folder:
        page.screenshot(path=str(folder / f"space-{name}.png"), full_page=True)


def landing(page, url: str, shots: Path | None = None) -> None:
    """The landing view explains itself: what OCT is, the four conditions, each model's tested figures; and on a
    desktop's first screen (1280 x 900), below the open introduction, the scan input already begins."""
    page.goto(url)
    _text(page, "What is this")
    _text(page, "test accuracy")
    # the introduction is open on a desktop (the page opens it once it knows the screen's width)
    page.get_by_text("know only four things").first.wait_for(state="visible", timeout=SECONDS)
    page.wait_for_selector("#scan-input", timeout=SECONDS)
    page.wait_for_function(  # every picture shown (the conditions, the example thumbnails): the layout as seen
        "() => [...document.querySelectorAll('img')].every(i => i.complete)", timeout=SECONDS
    )
    # Bold text in one font: drawn in the page's bold font (and its bold monospace, as the Batch table's header) with a
    # monospace or a serif fallback, the same words are equally wide only when that font itself has every letter
    # (Gradio's own bold faces lacked most of them).
    widths = page.evaluate(
        """async () => { const style = getComputedStyle(document.body), fonts = {};
        for (const name of ['--font', '--font-mono']) {
          const font = style.getPropertyValue(name).split(',')[0].trim();
          await document.fonts.load(`600 40px ${font}`);
          fonts[font] = ['monospace', 'serif'].map(fallback => { const s = document.createElement('span');
            s.style.font = `600 40px ${font}, ${fallback}`;
            Object.assign(s.style, {position: 'absolute', whiteSpace: 'nowrap'});
            s.textContent = 'Retinal OCT B-scan HOG+LBP SVM NORMAL DRUSEN status notes'; document.body.append(s);
            const w = s.getBoundingClientRect().width; s.remove(); return w; });
        }
        return fonts; }"""
    )
    assert len(widths) == 2 and all(abs(a - b) < 0.5 for a, b in widths.values()), f"bold text mixes fonts: {widths}"
    # Each example thumbnail is a button a screen reader can name (Gradio draws them with an empty alt text).
    thumbnails = page.locator("#example-scans button.gallery-item")
    thumbnails.first.wait_for(timeout=SECONDS)  # at least one, so that the loop checks something
    for i in range(thumbnails.count()):
        page.get_by_role("button", name=f"Example scan {i + 1}", exact=True).wait_for(timeout=SECONDS)
    top = page.locator("#scan-input").bounding_box()["y"]
    assert top < page.viewport_size["height"] - 100, f"the scan input starts {top:.0f} px down, below the first screen"
    _shot(page, shots, "landing")
    # A condition's picture, clicked, opens large enough to see the scan (the one-row gallery made it a sliver).
    page.locator("#conditions .gallery-item").first.click()
    page.wait_for_function(
        "() => (document.querySelector('#conditions .preview img')?.getBoundingClientRect().height || 0) > 150",
        timeout=SECONDS,
    )
    page.locator("#conditions").get_by_label("Close").click()
    page.locator("#conditions .preview").wait_for(state="detached", timeout=SECONDS)


CONTRAST = """(selector) => {  // WCAG contrast of an element's text against the first opaque background behind it
    const rgb = (c) => c.match(/[\\d.]+/g).map(Number);
    const linear = (v) => (v /= 255) <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
    const lum = (c) => rgb(c).slice(0, 3).map(linear).reduce((sum, v, i) => sum + v * [0.2126, 0.7152, 0.0722][i], 0);
    const opaque = (e) => { const c = rgb(getComputedStyle(e).backgroundColor); return c.length < 4 || c[3] > 0; };
    const el = document.querySelector(selector);
    let back = el;
    while (back.parentElement && !opaque(back)) back = back.parentElement;
    const [a, b] = [lum(getComputedStyle(el).color), lum(getComputedStyle(back).backgroundColor)];
    return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
}"""


def dark(page, url: str, image: Path) -> None:
    """In dark mode the words that say there is no answer are readable: at least 4.5:1 against the page (WCAG AA)."""
    page.goto(url + "?__theme=dark")
    page.get_by_role("tab", name="One scan").click()
    page.locator("#scan-input input[type=file]").set_input_files(str(image))
    _text(page, "cannot judge", "#summary")
    for selector in ("#summary .withheld", "#classical-panel .verdict.withheld"):
        ratio = page.evaluate(CONTRAST, selector)
        assert ratio >= 4.5, f"{selector}: contrast {ratio:.1f}:1 in dark mode"


def phone(page, url: str, shots: Path | None = None) -> None:
    """On a phone's screen the notice and the scan input are on the first screen; the introduction, closed there,
    opens with a tap; an example's answer, below the inputs there, is scrolled into view."""
    page.goto(url)
    _text(page, "not a diagnosis")
    page.wait_for_function(  # the introduction closes once the page knows the screen's width
        "() => { const box = document.querySelector('#scan-input')?.getBoundingClientRect(); "
        "return box && box.top > 0 && box.bottom <= window.innerHeight; }",
        timeout=SECONDS,
    )
    if shots:
        page.screenshot(path=str(shots / "space-phone.png"))
    assert not page.get_by_text("know only four things").first.is_visible()
    page.get_by_text("What is this").first.click()
    page.get_by_text("know only four things").first.wait_for(state="visible", timeout=SECONDS)
    page.get_by_text("What is this").first.click()
    page.locator("button.gallery-item").first.click()  # an example: its answer, below the inputs, is scrolled to
    _text(page, "referral", "#vit-panel")
    page.wait_for_function(
        "() => { const top = document.querySelector('#summary').getBoundingClientRect().top; "
        "return top >= 0 && top < window.innerHeight / 2; }",
        timeout=SECONDS,
    )


def upload(page, scan: Path, shots: Path | None = None) -> None:
    """A scan dropped on the image input appears at once, then both models' answers side by side."""
    page.get_by_role("tab", name="One scan").click()
    page.locator("#scan-input input[type=file]").set_input_files(str(scan))
    _text(page, "referral", "#vit-panel")
    _text(page, "referral", "#classical-panel")
    assert page.locator("#vit-panel img").count() == 1 and page.locator("#classical-panel img").count() == 3
    page.wait_for_function(  # the scan as the models received it, drawn in the summary
        "() => { const img = document.querySelector('#summary figure.scan img'); "
        "return img && img.complete && img.naturalWidth > 0; }",
        timeout=SECONDS,
    )
    assert page.locator("img[src*='/gradio_api/file=']").count() >= 1  # the dropped scan's own preview
    _shot(page, shots, "result")


def unreadable(page, bad_file: Path) -> None:
    """A file that cannot be read, dropped after an answer: one error that stays until closed, and no answer left on
    the page (the last scan's answer must never read as this file's)."""
    page.locator("#scan-input input[type=file]").set_input_files(str(bad_file))
    _text(page, "Cannot read this file", ".toast-body")
    page.wait_for_function(
        "() => !document.querySelector('#summary')?.innerText.trim() && "
        "!document.querySelector('#vit-panel')?.innerText.trim()",
        timeout=SECONDS,
    )
    assert page.locator(".toast-body").count() == 1
    assert page.locator(".toast-body").inner_text().count("Cannot read this file") == 1  # answered once, not twice
    page.locator(".toast-close").first.click()


def switch_variant(page, name: str, shots: Path | None = None) -> None:
    """Choosing another classical model redraws its panel under that name, for the scan on the page."""
    scan = page.locator("#summary figure.scan img").get_attribute("src")  # the scan as the models received it
    page.get_by_label(name, exact=True).check()
    _text(page, "^" + name.replace("+", "\\\\+"), "#classical-panel h3")  # "LBP SVM", not "HOG+LBP SVM"
    assert page.locator("#summary figure.scan img").get_attribute("src") == scan
    _shot(page, shots, "variant")


def volume_then_scan(page, volume: Path, scan: Path) -> None:
    """A DICOM volume on the second input, then a scan on the first: the page answers for the scan, the last file
    dropped, and keeps its answer when the volume is cleared (and when another classical model is chosen)."""
    page.locator("#file-input input[type=file]").set_input_files(str(volume))
    _text(page, "frames", "#summary")
    page.locator("#scan-input input[type=file]").set_input_files(str(scan))
    page.wait_for_function(
        "() => !/frames/.test(document.querySelector('#summary')?.innerText || 'frames')", timeout=SECONDS
    )
    page.locator("#file-input button[aria-label='Clear']").click()  # clearing the other input keeps the answer
    page.locator("#file-input input[type=file]").wait_for(state="attached", timeout=SECONDS)
    _text(page, "referral", "#vit-panel")


def example(page) -> None:
    """An example clicked: it goes into the image input and is answered with the classical model chosen."""
    chosen = page.locator("#classical-panel h3").inner_text().split(" ")[0]
    before = page.locator("#vit-panel").inner_html()
    page.locator("button.gallery-item").first.click()  # the examples (the landing view's gallery holds divs)
    page.wait_for_function(
        f"() => (document.querySelector('#vit-panel')?.innerHTML || '') !== {before!r}", timeout=SECONDS
    )
    _text(page, "referral", "#vit-panel")
    assert page.locator("#classical-panel h3").inner_text().split(" ")[0] == chosen


def two_examples(page, answered: list[str]) -> None:
    """A second example clicked while the first is being answered is answered after it (the page's last file), not
    dropped, which left the first one's answer under the second one's picture. `answered`: the files the app was
    asked about, in order."""
    start = len(answered)
    items = page.locator("button.gallery-item")

    def until(count: int) -> None:
        for _ in range(SECONDS // 100):
            if len(answered) >= start + count:
                return
            page.wait_for_timeout(100)

    items.nth(0).click()
    until(1)  # the app is answering the first (the example's own loading, before it, drops a click meanwhile)
    items.nth(1).click()
    until(2)
    assert answered[start:] == ["example-1.jpeg", "example-2.jpeg"], answered[start:]
    _text(page, "referral", "#vit-panel")


def withheld(page, image: Path, shots: Path | None = None) -> None:
    """An image the models cannot judge gets no answer: the guesses are behind a click."""
    page.locator("#scan-input input[type=file]").set_input_files(str(image))
    _text(page, "cannot judge", "#summary")
    assert page.locator("#vit-panel details").count() == 1 and not page.locator(
        "#vit-panel details"
    ).first.get_attribute("open")
    _shot(page, shots, "withheld")


def wrong_place(page, archive: Path, shots: Path | None = None) -> None:
    """A zip dropped on the One-scan tab gets an error that points to the Batch tab."""
    page.locator("#file-input input[type=file]").set_input_files(str(archive))
    _text(page, "open the Batch tab")
    _shot(page, shots, "error")
    page.locator(".toast-close").first.click()  # read and dismissed, as a visitor would
    page.locator(".toast-close").first.wait_for(state="detached", timeout=SECONDS)


def row_without_notes(page) -> None:
    """On a phone each Batch row's notes are a line of their own under its answers; a row without notes (models that
    are sure and agree) has no such line, not an empty one. The test models always leave a note, so the first row's
    notes are emptied here, in the page, as such a row would have them."""
    display = page.evaluate(
        """() => { const cell = document.querySelector('#batch-table .virtual-row .body-cell:last-child');
        const before = getComputedStyle(cell).display;
        cell.querySelector('span').textContent = '';
        return [before, getComputedStyle(cell).display]; }"""
    )
    assert display[0] != "none" and display[1] == "none", f"the notes cell's display with notes, without: {display}"


def batch(page, archive: Path, shots: Path | None = None, more: tuple[Path, ...] = ()) -> None:
    """A zip (and `more` files) on the Batch tab: a row per scan, with its notes readable, and a CSV to download."""
    page.get_by_role("tab", name="Batch").click()
    # The tab's content is made when it is first opened: the files are chosen as a visitor does, through the file
    # dialog of the box on the page, never set on an input the page may not have finished making.
    drop = page.locator("#batch-files").get_by_text("Click to Upload")
    drop.wait_for(state="visible", timeout=SECONDS)
    with page.expect_file_chooser(timeout=SECONDS) as chooser:
        drop.click()
    chooser.value.set_files([str(archive), *map(str, more)])
    # Uploaded, then run. The uploaded file's row names it in two spans ("scans" ".zip") under an aria-label; the text
    # "scans.zip" exists only while the upload is in progress, so waiting for that text raced the upload and timed
    # out whenever the upload finished first.
    page.locator("#batch-files").get_by_label(archive.name, exact=True).wait_for(timeout=SECONDS)
    page.get_by_role("button", name="Classify all").click()
    _text(page, "oct-predictions", "#batch-csv")
    _text(page, "ok|withheld", "#batch-table")
    _text(page, "scans: \\d+ ok, \\d+ withheld, \\d+ unreadable", ".toast-body")  # the count, for a long table
    # Every cell, the notes included, ends inside the table as shown (no note cut off at its right edge on a desktop,
    # nothing past a phone's edge), and a status or an answer, one word, is on one line (not broken mid-word).
    cells = page.evaluate(
        """() => { const edge = document.querySelector('#batch-table .virtual-table-viewport')
          .getBoundingClientRect().right;
        return [...document.querySelectorAll('#batch-table th, #batch-table .body-cell')]
          .filter(c => c.offsetParent && !c.closest('.sizing-body')).map(c => {
            const text = c.querySelector('span'), lines = document.createRange();
            lines.selectNodeContents(text);
            return [text.innerText, c.getBoundingClientRect().right - edge, lines.getClientRects().length]; }); }"""
    )
    past = [(text, round(over)) for text, over, _ in cells if over > 1]
    assert not past, f"cells run past the table's visible edge (text, px): {past[:5]}"
    broken = [text for text, _, lines in cells if text in ("ok", "withheld", "unreadable", *CLASSES) and lines > 1]
    assert not broken, f"one-word cells broken over lines: {broken[:5]}"
    _shot(page, shots, "batch")
