"""End-to-end: the whole job, driven only by clicks and typing in the browser (the test makes no API call).

1. annotator2 segments two lesions of Phantom B (prompt, brush, eraser, undo), saves them and submits;
2. the reviewer requests changes with a comment on one object;
3. annotator2 sees the comment, jumps to it, fixes the object, replies and resubmits;
4. the reviewer approves;
5. the manager exports nnU-Net + DICOM SEG from the export screen, downloads the zip; its manifest is checked.

Where to click is the app's own world → page transform (window.__studio.viewer.worldToClient), the same the
registration test checks; the lesions' world centres come from regenerating the deterministic phantom.
With E2E_SCREENSHOTS=<folder>, every screen is saved there (docs/screenshots/ in the repository).
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from functools import lru_cache
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

PHANTOM_B = "Phantom B, FDG feet-first (synthetic)"


@lru_cache(maxsize=1)
def phantom_b_lesions() -> list[dict]:
    """Phantom B's two largest lesions: world centre (LPS mm) and size (seed_demo's arguments)."""
    from worker.phantoms import make_phantom

    phantom = make_phantom(seed=2027, tracer="FDG", shape=(220, 128, 128), spacing=(4.0, 4.0, 4.0), n_lesions=4,
                           feet_first=True)
    lesions = sorted(phantom.lesions, key=lambda x: -x.voxel_count)[:2]
    return [{"world": list(lesion.centre_lps), "voxels": lesion.voxel_count} for lesion in lesions]


def shot(page, name: str) -> None:
    folder = os.environ.get("E2E_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"))


def point(page, viewport: str, world) -> tuple[float, float]:
    x, y = page.evaluate("([id, w]) => window.__studio.viewer.worldToClient(id, w)", [viewport, list(world)])
    return x, y


def masks_drawn(page) -> int:
    return page.evaluate("() => window.__studio.masksDrawn || 0")


def wait_mask(page, before: int) -> None:
    page.wait_for_function("(n) => (window.__studio.masksDrawn || 0) > n && window.__studio.pendingPrompts === 0",
                           arg=before, timeout=120_000)
    assert page.evaluate("() => window.__studio.lastError || null") is None


def segment_voxels(page, value: int = 5) -> int:
    return page.evaluate(f"() => (window.__studio.segments && window.__studio.segments[{value}] || {{}}).voxels || 0")


def wait_voxels_change(page, before: int) -> int:
    page.wait_for_function(
        "(n) => { const s = window.__studio.segments && window.__studio.segments[5]; return (s ? s.voxels : 0) !== n; }",
        arg=before, timeout=30_000)
    return segment_voxels(page)


def go_to(page, world) -> None:
    """Navigate mode: a click on the coronal view at the lesion moves the axial view to its slice."""
    page.keyboard.press("n")
    page.mouse.click(*point(page, "coronal", world))
    page.keyboard.press("p")


def prompt(page, world) -> None:
    go_to(page, world)
    before = masks_drawn(page)
    page.mouse.click(*point(page, "axial", world))
    wait_mask(page, before)


def accept(page, saved_before: int) -> None:
    page.keyboard.press("Enter")
    page.wait_for_function("(n) => document.querySelectorAll('#segments tr.saved').length > n", arg=saved_before,
                           timeout=60_000)


def open_phantom_b(reader) -> None:
    reader.open_worklist()
    reader.open_scan(PHANTOM_B)


def test_the_whole_job_on_screen(reader, tmp_path):
    lesion_one, lesion_two = phantom_b_lesions()

    # ---------------------------------------------------------------- 1. the annotator segments and submits
    annotator = reader("annotator2")
    shot(annotator.page, "projects")
    open_phantom_b(annotator)
    page = annotator.page
    page.locator("#labels button", has_text="lesion").click()
    page.wait_for_function("() => document.querySelectorAll('#engine option').length > 0")
    page.select_option("#engine", "threshold")
    assert page.locator("#submit-review").is_disabled(), "submit is possible before anything was saved"

    prompt(page, lesion_one["world"])
    after_prompt = segment_voxels(page)
    assert after_prompt > 20, after_prompt
    # brush a stroke beside the lesion, erase a dab of it, then undo the eraser: only the dab comes back
    page.keyboard.press("b")
    x, y = point(page, "axial", lesion_one["world"])
    page.mouse.move(x + 40, y)
    page.mouse.down()
    page.mouse.move(x + 55, y + 12, steps=6)
    page.mouse.up()
    after_brush = wait_voxels_change(page, after_prompt)
    assert after_brush > after_prompt
    page.keyboard.press("e")
    page.mouse.click(x + 55, y + 12)
    after_eraser = wait_voxels_change(page, after_brush)
    assert after_eraser < after_brush
    page.keyboard.press("Control+z")
    assert wait_voxels_change(page, after_eraser) == after_brush, "one undo must take back exactly the eraser"
    assert page.evaluate("() => window.__studio.lastStep") == {"action": "undo", "kind": "eraser"}
    assert page.evaluate("() => window.__studio.historyKinds").count("brush") == 1
    page.keyboard.press("p")
    shot(page, "viewer-annotator")
    accept(page, 0)

    prompt(page, lesion_two["world"])
    accept(page, 1)
    rows = page.locator("#segments tr.saved")
    assert rows.count() == 2
    assert all("lesion" in rows.nth(i).inner_text() for i in range(2))
    page.locator("#submit-review").click()
    page.wait_for_selector("#my-state[data-state=submitted]", timeout=30_000)

    # ---------------------------------------------------------------- 2. the reviewer requests changes
    reviewer = reader("reviewer")
    rpage = reviewer.page
    rpage.locator("a", has_text="Review queue").first.click()
    row = rpage.locator("#queue tr", has_text=PHANTOM_B)
    row.wait_for(timeout=30_000)
    shot(rpage, "review-queue")
    row.locator("[data-review]").click()
    reviewer.wait_ready()
    rpage.wait_for_function("() => document.querySelectorAll('#segments tr.saved').length === 2", timeout=60_000)
    assert not rpage.locator("#modes").is_visible(), "the review screen shows editing tools"
    assert not rpage.locator("[data-cmd=accept]").is_visible()
    first_object = rpage.locator("#segments tr.saved").first
    assert "TLG" in rpage.locator("#segments tr").first.inner_text()
    first_object.click()  # jump to it
    rpage.select_option("#rv-target", index=2)  # the first object
    rpage.fill("#rv-comment", "The lower edge is missing; please include it.")
    shot(rpage, "viewer-review")
    # the four-eyes rule and other refusals are shown as sentences; an empty send-back is refused on the spot
    rpage.fill("#rv-comment", "")
    rpage.locator("#rv-back").click()
    assert "Write what should change" in rpage.locator("#rv-error").inner_text()
    rpage.fill("#rv-comment", "The lower edge is missing; please include it.")
    rpage.locator("#rv-back").click()
    rpage.wait_for_function("() => location.hash.endsWith('/review')", timeout=30_000)

    # ---------------------------------------------------------------- 3. the annotator fixes, replies, resubmits
    page.locator("a.back").first.click()
    page.wait_for_selector("[data-open-scan]")
    assert page.locator("#worklist tr", has_text=PHANTOM_B).locator("td", has_text="changes requested").count() == 1
    page.locator("tr", has_text=PHANTOM_B).locator("[data-open-scan]").click()
    annotator.wait_ready()
    page.wait_for_selector("#my-state[data-state=changes_requested]", timeout=30_000)
    comment = page.locator("#my-comments li").first
    assert "lower edge is missing" in comment.inner_text()
    assert page.evaluate("() => (window.__studio.markers || []).length") >= 1
    before = page.evaluate("() => window.__studio.crosshair")
    comment.locator("button", has_text="jump").click()
    assert page.evaluate("() => window.__studio.crosshair") != before
    shot(page, "viewer-changes-requested")
    page.locator("#labels button", has_text="lesion").click()
    page.select_option("#engine", "threshold")
    saved = rows.count()
    prompt(page, lesion_one["world"])
    accept(page, saved)
    page.wait_for_function("() => (document.querySelector('#my-state') || {}).textContent?.includes('version 3')",
                           timeout=30_000)
    page.fill("#reply-text", "Done: the lower edge is included now.")
    page.locator("#reply-send").click()
    page.wait_for_function("() => document.querySelectorAll('#my-comments li').length === 2", timeout=30_000)
    assert "Resubmit" in page.locator("#submit-review").inner_text()
    page.locator("#submit-review").click()
    page.wait_for_selector("#my-state[data-state=submitted]", timeout=30_000)

    # ---------------------------------------------------------------- 4. the reviewer approves
    rpage.locator("a.back").first.click()  # the worklist
    rpage.locator("a", has_text="Review queue").first.click()
    rpage.locator("#queue tr", has_text=PHANTOM_B).locator("[data-review]").click()
    reviewer.wait_ready()
    rpage.wait_for_function("() => document.querySelectorAll('#rv-comments li').length === 2", timeout=30_000)
    assert "lower edge is included" in rpage.locator("#rv-comments").inner_text()
    rpage.locator("#rv-approve").click()
    rpage.wait_for_function("() => location.hash.endsWith('/review')", timeout=30_000)
    rpage.wait_for_selector("#queue tbody tr")
    assert rpage.locator("#queue tr", has_text=PHANTOM_B).count() == 0

    # ---------------------------------------------------------------- 5. the manager exports and downloads
    manager = reader("manager")
    mpage = manager.page
    mpage.click("[data-project]")
    mpage.locator("[data-tab=exports]").click()
    mpage.wait_for_selector("#ex-go")
    assert mpage.locator(".ex-format[value=nnunet]").is_checked()
    assert mpage.locator(".ex-format[value=dicom_seg]").is_checked()
    mpage.locator(".ex-format[value=nifti]").uncheck()
    mpage.locator("#ex-go").click()
    mpage.wait_for_function("() => window.__studio.lastExport", timeout=300_000)
    job = mpage.evaluate("() => window.__studio.lastExport")
    assert mpage.locator("#ex-error").inner_text() == ""
    shot(mpage, "exports")
    with mpage.expect_download() as download_info:
        mpage.locator(f"[data-download='{job}']").click()
    archive = tmp_path / "export.zip"
    download_info.value.save_as(archive)
    with zipfile.ZipFile(io.BytesIO(archive.read_bytes())) as z:
        manifest = json.loads(z.read("manifest.json"))
        names = z.namelist()
    assert set(manifest["settings"]["formats"]) == {"nnunet", "dicom_seg"}
    sources = [s for s in manifest["sources"] if s["scan_name"] == PHANTOM_B]
    assert len(sources) == 1 and sources[0]["state"] == "approved"
    assert sources[0]["nnunet_case"], sources[0]
    assert any(n.endswith(".dcm") for n in names), "no DICOM SEG in the archive"
    assert any("dataset.json" in n for n in names), "no nnU-Net dataset.json in the archive"
    for screen in ("settings", "upload"):
        mpage.locator(f"[data-tab={screen}]").click()
        mpage.wait_for_function("(s) => window.__studio.screen === s", arg=screen)
        shot(mpage, screen)
    for r in (annotator, reviewer, manager):
        assert not [e for e in r.errors if e.startswith("pageerror")], r.errors


def test_a_role_a_manager_changed_survives_seeding_again(reader, studio_process):
    manager = reader("manager")
    page = manager.page
    page.click("[data-project]")
    page.locator("[data-tab=settings]").click()
    box = page.locator("[data-member-role='annotator1:reviewer']")
    box.wait_for()
    assert not box.is_checked()
    box.check()
    page.wait_for_function("() => (window.__studio.toasts || []).some((t) => t.includes('annotator1: annotator, reviewer'))")

    studio_process.manage("seed_demo")

    page.reload()
    page.wait_for_selector("[data-member-role='annotator1:reviewer']")
    assert page.locator("[data-member-role='annotator1:reviewer']").is_checked()
    assert page.locator("[data-member-role='annotator1:annotator']").is_checked()
    # the last manager cannot stop being one: the refusal is the server's sentence, and the box stays checked
    page.locator("[data-member-role='manager:annotator']").check()
    page.wait_for_function("() => (window.__studio.toasts || []).some((t) => t.includes('manager: manager, annotator'))")
    page.locator("[data-member-role='manager:manager']").uncheck()
    page.wait_for_function("() => document.querySelector('#members-error').textContent.length > 0")
    assert "at least one manager" in page.locator("#members-error").inner_text()
    assert "/api/" not in page.locator("#members-error").inner_text()
    assert page.locator("[data-member-role='manager:manager']").is_checked()
    page.locator("[data-member-role='manager:annotator']").uncheck()  # as it was, for other tests
    page.wait_for_function("() => (window.__studio.toasts || []).some((t) => t.endsWith('manager: manager'))")
    page.locator("[data-member-role='annotator1:reviewer']").uncheck()
    page.wait_for_function("() => (window.__studio.toasts || []).some((t) => t.endsWith('annotator1: annotator'))")
