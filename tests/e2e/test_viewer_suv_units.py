"""End-to-end SUV unit switch: the reader picks SUL in the toolbar and every number follows.

Phantom A is a DICOM series whose header has the patient's sex, height and weight, so the ingest stores
it as SUVbw with an SUL multiplier (Janmahasatian lean body mass / body weight). With the mouse on a
lesion's centre voxel the cursor readout must show the served volume's value there, then that value ×
the series API's SUL multiplier once SUL is chosen; the PET window keeps the image (the same range on the
voxels) and reads it in SUL, and a preset is then defined in SUL. The segment table's SUV values, live
and saved (the statistics API's by_type), are in SUL too.
"""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from .harness import PHANTOM_A, phantom_a_lesions

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _pet_volume(api, project_id: int, scan_id: int) -> np.ndarray:
    import nibabel as nib

    raw = api.request("GET", f"/api/projects/{project_id}/scans/{scan_id}/volumes/pet/").content
    image = nib.Nifti1Image.from_bytes(gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw)
    return np.asarray(image.dataobj).transpose(2, 1, 0)


def test_unit_switch_scales_the_cursor_readout_and_the_window(reader, api):
    manager = api("manager")
    project = manager.project()
    scan = manager.scan(project["id"], PHANTOM_A)
    pet = next(s for s in scan["series"] if s["modality"] == "PT")
    types = {t["type"]: t for t in pet["suv_types"]}
    assert pet["suv_type"] == "SUVbw" and types["SUVbw"]["stored"], pet["suv_types"]
    assert types["SUL"]["available"], f"Phantom A should allow SUL: {types['SUL']}"
    sul = types["SUL"]["multiplier"]
    assert 0.5 < sul < 1.0, sul  # lean body mass is below body weight
    lesion = max(phantom_a_lesions(), key=lambda x: x["voxels"])
    centre = lesion["centre"]
    stored = float(_pet_volume(manager, project["id"], scan["id"])[tuple(centre)])
    assert stored > 1.0, stored  # a lesion: the readout's change is well above its two decimals

    annotator = reader("annotator1")
    annotator.open_worklist()
    annotator.open_scan()
    page = annotator.page
    select = page.locator("#suv-unit")
    assert select.input_value() == "SUVbw"
    options = {o.get_attribute("value"): o for o in select.locator("option").all()}
    assert set(options) == set(types)
    for name, info in types.items():  # unavailable types are shown, not choosable, with their reason
        assert (options[name].get_attribute("disabled") is not None) == (not info["available"]), name
        if not info["available"]:
            assert info["reason"] in options[name].get_attribute("title")

    annotator.go_to_voxel(centre)
    x, y = annotator.voxel_point("axial", centre)
    page.mouse.move(x, y)
    cursor = annotator.studio("s.cursor")
    assert cursor["voxel"] == centre and cursor["unit"] == "SUVbw"
    assert cursor["value"] == pytest.approx(stored, rel=1e-5)
    assert f"SUVbw {stored:.2f}" in page.locator("#cursor").inner_text()
    before = annotator.studio("s.display")
    assert before["voiRange"] == {"lower": 0, "upper": 10} and before["suvPreset"] == 1

    select.select_option("SUL")
    # The readout under the still mouse follows at once, and so does a fresh move.
    cursor = annotator.studio("s.cursor")
    assert cursor["unit"] == "SUL" and cursor["stored"] == pytest.approx(stored, rel=1e-5)
    assert cursor["value"] == pytest.approx(stored * sul, rel=1e-5)
    assert f"SUL {stored * sul:.2f}" in page.locator("#cursor").inner_text()
    page.mouse.move(x + 1, y)
    page.mouse.move(x, y)
    assert annotator.studio("s.cursor.value") == pytest.approx(stored * sul, rel=1e-5)

    # The image stays as it was (same window on the voxels), read in SUL: no preset matches it.
    after = annotator.studio("s.display")
    assert after["unit"] == "SUL" and after["multiplier"] == pytest.approx(sul)
    assert after["voiStored"] == before["voiStored"]
    assert after["voiRange"]["upper"] == pytest.approx(10 * sul)
    assert after["suvPreset"] == -1
    assert f"{10 * sul:.2f} SUL" in page.locator("#pet-window").inner_text()
    # A preset is in the chosen unit: 0–5 SUL is 0–5/m on the SUVbw voxels.
    page.locator("[data-suv='0']").click()
    preset = annotator.studio("s.display")
    assert preset["voiRange"]["upper"] == pytest.approx(5)
    assert preset["voiStored"]["upper"] == pytest.approx(5 / sul)
    assert "SUL max" in page.locator("#segments").inner_text()

    # Back to the stored type: the stored numbers again.
    select.select_option("SUVbw")
    assert annotator.studio("s.cursor.value") == pytest.approx(stored, rel=1e-5)

    # The segment table: a mask's SUVmax, SUVmean and TLG follow the unit; its volume does not.
    page.locator("#labels button", has_text="lesion").click()
    page.mouse.click(x, y)
    page.wait_for_function("() => (window.__studio.masksDrawn || 0) > 0 && window.__studio.pendingPrompts === 0",
                           timeout=120_000)
    page.wait_for_function("() => (window.__studio.segmentRows || []).some((r) => r.live)", timeout=10_000)
    row_bw = annotator.studio("s.segmentRows.find((r) => r.live)")
    assert row_bw["unit"] == "SUVbw" and row_bw["suvMax"] >= stored - 1e-4
    select.select_option("SUL")
    row_sul = annotator.studio("s.segmentRows.find((r) => r.live)")
    assert row_sul["unit"] == "SUL" and row_sul["ml"] == row_bw["ml"]
    for key in ("suvMax", "suvMean", "tlg"):
        assert row_sul[key] == pytest.approx(row_bw[key] * sul, rel=1e-6), key
    assert f"{row_sul['suvMax']:.2f}" in page.locator("#segments").inner_text()

    # Saved: the table shows the statistics API's values of the chosen type (by_type), SUVpeak included.
    page.locator("[data-cmd=accept]").click()
    page.wait_for_function("() => window.__studio.lastAccepted", timeout=60_000)
    annotation = annotator.studio("s.lastAccepted.annotation")
    version = annotator.studio("s.lastAccepted.version")
    # Wait for the table to show the version just saved (it holds the new object), not rows loaded before.
    page.wait_for_function("() => (window.__studio.segmentRows || []).some((r) => !r.live && "
                           "r.object === window.__studio.lastAccepted.object)", timeout=60_000)
    rows = manager.list(f"/api/projects/{project['id']}/statistics/?annotation={annotation}")
    # Other browser tests may have saved objects on this scan before: compare with the version just saved.
    current = next(row for row in rows if row["version"] == version)
    objects = {o["id"]: o for o in current["objects"]}
    saved = annotator.studio("s.segmentRows.filter((r) => !r.live)")
    assert saved and all(r["unit"] == "SUL" for r in saved)
    for row in saved:
        api_row = objects[row["object"]]
        assert api_row["units"] == "SUVbw"
        for key, api_key in (("suvMax", "suv_max"), ("suvMean", "suv_mean"), ("suvPeak", "suv_peak"), ("tlg", "tlg")):
            assert row[key] == pytest.approx(api_row["by_type"]["SUL"][api_key]), key
            assert row[key] == pytest.approx(api_row[api_key] * sul, rel=1e-4), key
    select.select_option("SUVbw")
    for row in annotator.studio("s.segmentRows.filter((r) => !r.live)"):
        assert row["unit"] == "SUVbw" and row["suvPeak"] == pytest.approx(objects[row["object"]]["suv_peak"])
    page_errors = [e for e in annotator.errors if e.startswith("pageerror")]
    assert not page_errors, page_errors
