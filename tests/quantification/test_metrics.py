"""Statistics against analytic values and independent computations (pure functions, no database)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from backend.quantification import metrics


def sphere_world(shape=(48, 48, 48), spacing=(2.0, 2.0, 2.0), centre=(23.3, 24.1, 23.7), radius_mm=15.0,
                 activity=8.0, background=1.0):
    """A uniform hot sphere (voxel-centre inclusion) in a uniform background; centre in voxel units."""
    index = np.indices(shape, dtype=np.float64)
    distance = np.sqrt(sum(((index[a] - centre[a]) * spacing[a]) ** 2 for a in range(3)))
    objects = (distance <= radius_mm).astype(np.uint8)
    image = np.where(objects > 0, activity, background).astype(np.float32)
    return image, objects, np.diag([*spacing, 1.0])


@pytest.mark.parametrize("radius_mm,spacing", [(15.0, (2.0, 2.0, 2.0)), (20.0, (4.0, 4.0, 4.0)),
                                               (12.0, (3.27, 3.5, 3.5))])
def test_volume_of_a_sphere_is_within_the_discretisation_error(radius_mm, spacing):
    image, objects, affine = sphere_world(spacing=spacing, radius_mm=radius_mm,
                                          centre=tuple(24 * 2.0 / s - 0.37 for s in spacing))
    stats = metrics.object_statistics(image, objects, affine)[0]
    analytic_ml = 4.0 / 3.0 * math.pi * radius_mm**3 / 1000.0
    # Voxel-centre inclusion misclassifies only voxels the surface passes through: a shell of half a voxel
    # diagonal either side of the surface bounds the error.
    half_diagonal = math.dist((0, 0, 0), spacing) / 2.0
    shell_ml = 4.0 / 3.0 * math.pi * ((radius_mm + half_diagonal) ** 3 - (radius_mm - half_diagonal) ** 3) / 1000.0
    assert abs(stats.volume_ml - analytic_ml) < shell_ml
    assert abs(stats.volume_ml - analytic_ml) / analytic_ml < 0.06
    assert stats.voxels == int(objects.sum())
    assert stats.volume_ml == pytest.approx(stats.voxels * np.prod(spacing) / 1000.0)
    assert stats.mtv_ml == stats.volume_ml


def test_uniform_sphere_suv_max_mean_peak_and_tlg_equal_its_activity():
    image, objects, affine = sphere_world(activity=8.0)
    stats = metrics.object_statistics(image, objects, affine)[0]
    assert stats.suv_max == pytest.approx(8.0)
    assert stats.suv_mean == pytest.approx(8.0)
    # A 1 cm³ sphere (radius 6.2 mm) fits inside a 15 mm sphere: its mean is the activity exactly.
    assert stats.suv_peak == pytest.approx(8.0, abs=1e-9)
    assert stats.tlg == pytest.approx(8.0 * stats.mtv_ml)


def test_the_peak_sphere_holds_one_millilitre_with_fractional_edge_voxels():
    for spacing in [(2.0, 2.0, 2.0), (4.0, 4.0, 4.0), (3.27, 3.5, 3.5), (1.0, 0.98, 0.98), (5.0, 2.0, 2.0)]:
        kernel = metrics.peak_kernel(spacing)
        assert kernel.sum() * np.prod(spacing) / 1000.0 == pytest.approx(1.0, rel=0.01)
        assert kernel.max() == 1.0 and 0.0 < kernel[kernel > 0].min() < 1.0  # partial voxels at the edge
        assert np.allclose(kernel, kernel[::-1, ::-1, ::-1])


def test_partial_voxel_weights_agree_with_an_independent_monte_carlo_estimate():
    spacing = (4.0, 3.0, 3.5)
    kernel = metrics.peak_kernel(spacing)
    rng = np.random.default_rng(7)
    half = np.array(kernel.shape) // 2
    for index in [(0, 0, 0), (1, 0, 0), (0, 2, 1), (1, 1, 1), (1, 2, 0)]:
        points = (np.array(index) + rng.random((200_000, 3)) - 0.5) * np.array(spacing)
        inside = (np.linalg.norm(points, axis=1) <= metrics.PEAK_RADIUS_MM).mean()
        assert kernel[tuple(half + np.array(index))] == pytest.approx(inside, abs=0.03)


def brute_force_peak(image, mask, spacing, samples=8):
    """Independent SUVpeak: for each candidate centre, average the image at sample points filling the sphere
    (each point takes the value of the voxel it falls in)."""
    radius = metrics.PEAK_RADIUS_MM
    step = 2 * radius / samples
    axis = -radius + step * (np.arange(samples) + 0.5)
    offsets = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    offsets = offsets[np.linalg.norm(offsets, axis=1) <= radius] / np.array(spacing)
    best, where = -np.inf, None
    for centre in np.argwhere(mask):
        voxels = np.rint(centre + offsets).astype(int)
        inside = np.all((voxels >= 0) & (voxels < image.shape), axis=1)
        value = image[tuple(voxels[inside].T)].mean()
        if value > best:
            best, where = value, tuple(int(c) for c in centre)
    return best, where


def test_suv_peak_is_not_centred_on_the_max_voxel_when_a_hotter_region_is_elsewhere():
    spacing = (2.0, 2.0, 2.0)
    image = np.ones((40, 40, 40), dtype=np.float32)
    image[8, 8, 8] = 30.0  # one very hot voxel: the SUVmax
    image[22:34, 22:34, 22:34] = 10.0  # a 24 mm cube of 10: fits a 1 cm³ sphere
    objects = np.zeros(image.shape, dtype=np.uint8)
    objects[5:12, 5:12, 5:12] = 1
    objects[20:36, 20:36, 20:36] = 1
    stats = metrics.object_statistics(image, objects, np.diag([*spacing, 1.0]))[0]
    assert stats.suv_max == 30.0 and stats.suv_max_index == (8, 8, 8)
    assert stats.suv_peak == pytest.approx(10.0)
    assert all(22 <= i < 34 for i in stats.suv_peak_index)
    # Centred on the hot voxel the sphere mean is far lower: the peak really moved away from the max.
    hot_only = np.zeros(image.shape, dtype=bool)
    hot_only[8, 8, 8] = True
    at_max, _ = metrics.suv_peak(image, hot_only, spacing)
    assert at_max < 5.0
    independent, _ = brute_force_peak(image, objects.astype(bool), spacing)
    assert stats.suv_peak == pytest.approx(independent, rel=0.02)


def test_suv_peak_matches_an_independent_search_on_a_noisy_blob():
    rng = np.random.default_rng(3)
    spacing = (3.0, 2.5, 2.5)
    from scipy import ndimage

    image = ndimage.gaussian_filter(rng.random((30, 30, 30)).astype(np.float32) * 10, 1.5) + 1
    objects = np.zeros(image.shape, dtype=np.uint8)
    objects[10:20, 8:22, 9:21] = 1
    stats = metrics.object_statistics(image, objects, np.diag([*spacing, 1.0]))[0]
    independent, _ = brute_force_peak(image, objects.astype(bool), spacing, samples=14)
    assert stats.suv_peak == pytest.approx(independent, rel=0.01)
    assert stats.suv_peak <= stats.suv_max


def test_an_object_at_the_edge_of_the_image_counts_only_voxels_inside_the_image():
    image = np.full((10, 10, 10), 5.0, dtype=np.float32)
    objects = np.zeros(image.shape, dtype=np.uint8)
    objects[0, 0, 0] = 1
    stats = metrics.object_statistics(image, objects, np.diag([4.0, 4.0, 4.0, 1.0]))[0]
    assert stats.suv_peak == pytest.approx(5.0)


def test_several_objects_mean_hu_and_lesion_totals():
    image = np.ones((20, 20, 20), dtype=np.float32)
    image[2:6, 2:6, 2:6] = 4.0
    image[10:16, 10:16, 10:16] = 6.0
    objects = np.zeros(image.shape, dtype=np.uint16)
    objects[2:6, 2:6, 2:6] = 1
    objects[10:16, 10:16, 10:16] = 2
    ct = np.where(objects == 1, 40.0, -100.0).astype(np.float32)
    stats = metrics.object_statistics(image, objects, np.diag([2.0, 2.0, 2.0, 1.0]), ct_on_pet=ct)
    assert [s.id for s in stats] == [1, 2]
    assert stats[0].hu_mean == pytest.approx(40.0) and stats[1].hu_mean == pytest.approx(-100.0)
    assert stats[0].volume_ml == pytest.approx(64 * 8 / 1000)
    totals = metrics.totals(stats, lesion_ids=[2])
    assert totals == {"lesion_count": 1, "total_mtv_ml": pytest.approx(216 * 8 / 1000),
                      "total_tlg": pytest.approx(6.0 * 216 * 8 / 1000)}


def test_phantom_lesions_match_the_phantoms_own_truth():
    from worker.phantoms import make_phantom

    phantom = make_phantom(seed=11, n_lesions=4)
    stats = {s.id: s for s in metrics.object_statistics(phantom.suv, phantom.lesion_labels, phantom.pet_affine)}
    truth = {s.id: s for s in metrics.object_statistics(phantom.true_suv, phantom.lesion_labels, phantom.pet_affine)}
    assert stats, "the phantom has lesions"
    checked = 0
    for lesion in phantom.lesions:
        item = stats[lesion.index]
        assert item.voxels == lesion.voxel_count
        assert item.suv_max == pytest.approx(lesion.suv_max, rel=1e-5)
        assert item.suv_mean == pytest.approx(lesion.suv_mean, rel=1e-5)
        assert item.suv_peak <= item.suv_max + 1e-6
        sphere_ml = 4.0 / 3.0 * math.pi * lesion.radius_mm**3 / 1000.0
        assert abs(item.volume_ml - sphere_ml) < max(0.5 * sphere_ml, 4 * 0.064)
        if not lesion.necrotic and lesion.diameter_mm >= 12.4 + 2 * math.dist((0, 0, 0), phantom.pet_spacing):
            # The unblurred uptake is uniform and the 1 cm³ sphere fits inside: the peak is the uptake.
            assert truth[lesion.index].suv_peak == pytest.approx(lesion.uptake_suv, rel=1e-5)
            checked += 1
    assert checked >= 1
