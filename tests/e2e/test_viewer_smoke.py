"""Browser smoke test of the reading-room viewer against the production build (fixtures: conftest.py)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _pixel_spread(png: bytes) -> tuple[float, int]:
    from PIL import Image, ImageStat

    image = Image.open(io.BytesIO(png)).convert("RGB")
    grey = image.convert("L")
    colours = image.getcolors(maxcolors=1 << 20) or []
    return ImageStat.Stat(grey).stddev[0], len(colours)


def test_viewer_renders_pet(reader):
    annotator = reader("annotator1")
    annotator.open_worklist()
    annotator.open_scan()
    page, errors = annotator.page, annotator.errors
    display = annotator.studio("s.display")
    assert display["voiRange"] == {"lower": 0, "upper": 10}
    # The slice views are on screen at `ready`; the whole-body MIP follows in the next frames.
    page.wait_for_function("() => window.__studio.mipReady === true", timeout=60_000)
    for viewport in ("axial", "coronal", "sagittal", "mip"):
        png, _ = annotator.viewport_png(viewport)
        spread, colours = _pixel_spread(png)
        assert spread > 5 and colours > 20, (
            f"{viewport} view looks blank (stddev {spread:.1f}, {colours} colours); browser errors: {errors}")
    if os.environ.get("E2E_ARTIFACTS"):
        Path(os.environ["E2E_ARTIFACTS"]).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(os.environ["E2E_ARTIFACTS"]) / "viewer.png"))
        (Path(os.environ["E2E_ARTIFACTS"]) / "console.txt").write_text("\n".join(errors))
    # the SUV under the cursor is read from the decoded volume
    box = page.locator("#vp-coronal").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    cursor = page.locator("#cursor").inner_text()
    assert "SUV" in cursor or "outside" in cursor, cursor
    page_errors = [e for e in errors if e.startswith("pageerror")]
    assert not page_errors, page_errors
    # The page ran under the server's Content-Security-Policy: nothing it needed was refused.
    refused = [e for e in errors if "Content Security Policy" in e or "Refused to" in e]
    assert not refused, refused
