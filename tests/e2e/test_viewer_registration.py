"""End-to-end registration: at several window sizes and device pixel ratios, a click lands on the voxel
the reader sees.

For a lesion of Phantom A with a known world centre, the test asks the app's own world → page transform
where that point is on the axial view, moves the mouse there (the cursor readout must show the centre
voxel and the volume's value there), clicks (the returned mask must contain the centre voxel and match
the phantom's truth), and checks that every canvas's drawing buffer is its CSS box × devicePixelRatio.
"""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from .harness import PASSWORDS, PHANTOM_A, phantom_a_lesions

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

SIZES = [(1280, 800), (1400, 900), (1920, 1080)]
RATIOS = [1, 2]


def _pet_volume(api, project_id: int, scan_id: int) -> np.ndarray:
    """The PET the viewer shows, as served ([slice,row,col]: the NIfTI's bytes in C order)."""
    import nibabel as nib

    raw = api.request("GET", f"/api/projects/{project_id}/scans/{scan_id}/volumes/pet/").content
    image = nib.Nifti1Image.from_bytes(gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw)
    return np.asarray(image.dataobj).transpose(2, 1, 0)


def _phantom_truth() -> np.ndarray:
    from worker.phantoms import make_phantom

    from .harness import PHANTOM_A_ARGS

    return make_phantom(**PHANTOM_A_ARGS).lesion_labels


@pytest.fixture(scope="module")
def world_info(api):
    manager = api("manager")
    project = manager.project()
    scan = manager.scan(project["id"], PHANTOM_A)
    pet = next(s for s in scan["series"] if s["modality"] == "PT")
    lesion = max(phantom_a_lesions(), key=lambda x: x["voxels"])
    affine = np.asarray(pet["affine"], float)
    centre = lesion["centre"]
    world = (affine @ np.asarray([*centre, 1.0]))[:3].tolist()
    volume = _pet_volume(manager, project["id"], scan["id"])
    assert list(volume.shape) == pet["shape"]
    truth = _phantom_truth() == lesion["index"]
    assert truth[tuple(centre)], "the lesion's centre voxel is not in its own truth mask"
    lesion_label = manager.label(project["id"], "lesion")
    return {"lesion": lesion, "centre": centre, "world": world, "volume": volume, "truth": truth,
            "label_value": lesion_label["value"], "affine": affine.tolist()}


def _dice(voxels: list[list[int]], truth: np.ndarray) -> float:
    mask = np.zeros(truth.shape, bool)
    if voxels:
        idx = np.asarray(voxels)
        mask[idx[:, 0], idx[:, 1], idx[:, 2]] = True
    return 2 * float((mask & truth).sum()) / float(mask.sum() + truth.sum())


@pytest.mark.parametrize("ratio", RATIOS)
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_click_lands_on_the_lesion(browser, studio_server, world_info, size, ratio):
    width, height = size
    context = browser.new_context(viewport={"width": width, "height": height}, device_scale_factor=ratio)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(f"{studio_server}/", wait_until="domcontentloaded")
        page.fill("#id_username", "annotator2")
        page.fill("#id_password", PASSWORDS["annotator2"])
        page.click("button[type=submit]")
        page.click("[data-project]")
        page.locator("tr", has_text=PHANTOM_A).locator("[data-open-scan]").click()
        page.wait_for_function("() => window.__studio && (window.__studio.ready === true || window.__studio.error)",
                               timeout=120_000)
        assert page.evaluate("() => window.__studio.ready"), page.evaluate("() => window.__studio.error")
        page.wait_for_function("() => window.__studio.connection === 'open'", timeout=30_000)
        assert page.evaluate("() => window.devicePixelRatio") == ratio

        # Every canvas (Cornerstone's and the overlay) is its CSS box × devicePixelRatio, from first load.
        page.wait_for_function("() => window.__studio.viewer.canvasReport().every((c) => c.matches)", timeout=10_000)
        report = page.evaluate("() => window.__studio.viewer.canvasReport()")
        assert len(report) == 8
        for canvas in report:
            assert abs(canvas["cssWidth"] - canvas["elementWidth"]) <= 1, canvas
            assert abs(canvas["cssHeight"] - canvas["elementHeight"]) <= 1, canvas
            assert abs(canvas["width"] - canvas["cssWidth"] * ratio) <= 1, canvas
            assert abs(canvas["height"] - canvas["cssHeight"] * ratio) <= 1, canvas

        page.locator("#labels button", has_text="lesion").click()
        page.evaluate("(v) => window.__studio.viewer.goToVoxel(v)", world_info["centre"])
        page.evaluate("() => new Promise((ok) => requestAnimationFrame(() => requestAnimationFrame(ok)))")
        x, y = page.evaluate("(w) => window.__studio.viewer.worldToClient('axial', w)", world_info["world"])
        box = page.locator("#vp-axial").bounding_box()
        assert box["x"] <= x < box["x"] + box["width"] and box["y"] <= y < box["y"] + box["height"], (x, y, box)

        # The cursor readout under the mouse: the centre voxel and the volume's value there.
        page.mouse.move(x, y)
        cursor = page.evaluate("() => window.__studio.cursor")
        centre = world_info["centre"]
        assert cursor["voxel"] == centre, (cursor, centre)
        expected = float(world_info["volume"][tuple(centre)])
        assert cursor["value"] == pytest.approx(expected, rel=1e-5, abs=1e-5)
        assert f"{expected:.2f}" in page.locator("#cursor").inner_text()

        # The click: the mask contains the centre voxel and matches the phantom's lesion.
        page.mouse.click(x, y)
        page.wait_for_function("() => (window.__studio.masksDrawn || 0) > 0 && window.__studio.pendingPrompts === 0",
                               timeout=120_000)
        assert page.evaluate("() => window.__studio.lastError || null") is None
        assert page.evaluate("() => window.__studio.lastClick.voxel") == centre
        voxels = page.evaluate("(v) => window.__studio.viewer.labelVoxels(v)", world_info["label_value"])
        assert centre in voxels, f"the mask ({len(voxels)} voxels) misses the clicked centre voxel"
        dice = _dice(voxels, world_info["truth"])
        assert dice >= 0.8, f"Dice {dice:.3f} against the phantom's lesion ({len(voxels)} voxels, "\
            f"truth {int(world_info['truth'].sum())}; engine {page.evaluate('() => window.__studio.lastMask.engine')})"
        # still registered after the work (no drift)
        assert page.evaluate("() => window.__studio.viewer.canvasReport().every((c) => c.matches)")
        assert not errors, errors
    finally:
        context.close()


def test_canvases_follow_a_window_resize_and_the_mip_jumps_to_the_peak(browser, studio_server, world_info):
    context = browser.new_context(viewport={"width": 1280, "height": 800}, device_scale_factor=1)
    page = context.new_page()
    try:
        page.goto(f"{studio_server}/", wait_until="domcontentloaded")
        page.fill("#id_username", "annotator2")
        page.fill("#id_password", PASSWORDS["annotator2"])
        page.click("button[type=submit]")
        page.click("[data-project]")
        page.locator("tr", has_text=PHANTOM_A).locator("[data-open-scan]").click()
        page.wait_for_function("() => window.__studio.ready === true", timeout=120_000)
        page.set_viewport_size({"width": 1600, "height": 900})
        page.wait_for_function("() => window.__studio.viewer.canvasReport().every((c) => c.matches)", timeout=10_000)
        page.evaluate("(v) => window.__studio.viewer.goToVoxel(v)", world_info["centre"])
        x, y = page.evaluate("(w) => window.__studio.viewer.worldToClient('coronal', w)", world_info["world"])
        page.mouse.move(x, y)
        assert page.evaluate("() => window.__studio.cursor.voxel") == world_info["centre"]

        # MIP double-click: the views jump to the hottest voxel along the (anterior-posterior) ray there
        centre = world_info["centre"]
        affine = np.asarray(world_info["affine"])
        ap_axis = int(np.argmax(np.abs(affine[1, :3])))  # the index axis that runs along LPS y
        profile = np.moveaxis(world_info["volume"], ap_axis, -1)[tuple(c for i, c in enumerate(centre) if i != ap_axis)]
        expected = list(centre)
        expected[ap_axis] = int(np.argmax(profile))
        mx, my = page.evaluate("(w) => window.__studio.viewer.worldToClient('mip', w)", world_info["world"])
        page.mouse.dblclick(mx, my)
        page.wait_for_function("() => window.__studio.mipPeak", timeout=10_000)
        assert page.evaluate("() => window.__studio.mipPeak.voxel") == expected
        assert page.evaluate("() => window.__studio.crosshair") == pytest.approx(
            (affine @ np.asarray([*expected, 1.0]))[:3].tolist(), abs=1e-3)
    finally:
        context.close()


