from __future__ import annotations

import numpy as np

from backend.imaging.resample import resample_to_grid
from worker.phantoms import make_phantom


def test_identity_grid_returns_the_same_values():
    volume = np.random.default_rng(0).random((6, 7, 8)).astype(np.float32)
    affine = np.diag([2.0, 3.0, 4.0, 1.0])
    affine[:3, 3] = (10, -5, 3)
    np.testing.assert_allclose(resample_to_grid(volume, affine, volume.shape, affine), volume, atol=1e-6)


def test_linear_ramp_is_reproduced_exactly_on_a_shifted_finer_grid():
    # A function linear in world coordinates survives trilinear resampling exactly.
    source_affine = np.diag([4.0, 4.0, 4.0, 1.0])
    index = np.indices((10, 10, 10)).astype(np.float32)
    world = np.tensordot(source_affine[:3, :3], index, axes=1)
    ramp = 0.5 * world[0] - 0.25 * world[1] + world[2]
    target_affine = np.diag([2.0, 2.0, 2.0, 1.0])
    target_affine[:3, 3] = (4.0, 4.0, 4.0)
    out = resample_to_grid(ramp, source_affine, (12, 12, 12), target_affine)
    target_world = np.tensordot(target_affine[:3, :3], np.indices((12, 12, 12)), axes=1) + 4.0
    expected = 0.5 * target_world[0] - 0.25 * target_world[1] + target_world[2]
    np.testing.assert_allclose(out, expected, atol=1e-4)


def test_outside_the_field_of_view_gets_the_fill_value():
    source = np.ones((4, 4, 4), dtype=np.float32)
    target_affine = np.eye(4)
    target_affine[:3, 3] = (100, 100, 100)
    out = resample_to_grid(source, np.eye(4), (2, 2, 2), target_affine, fill_value=-1024)
    assert (out == -1024).all()


def test_phantom_ct_on_the_pet_grid_matches_the_bones_and_air():
    phantom = make_phantom(seed=1, n_lesions=0)
    ct_on_pet = resample_to_grid(phantom.ct_hu.astype(np.float32), phantom.ct_affine, phantom.shape,
                                 phantom.pet_affine, fill_value=-1024)
    assert ct_on_pet.shape == phantom.shape
    body = phantom.body_mask
    # Air outside the body, soft tissue inside (the CT is on a 2× finer in-plane grid).
    assert np.median(ct_on_pet[~body]) < -900
    liver = phantom.labels == 3
    assert 0 < np.median(ct_on_pet[liver]) < 120


def test_labels_with_nearest_neighbour_keep_their_values():
    labels = np.zeros((8, 8, 8), dtype=np.uint8)
    labels[2:6, 2:6, 2:6] = 7
    out = resample_to_grid(labels, np.eye(4), (16, 16, 16), np.diag([0.5, 0.5, 0.5, 1.0]), order=0)
    assert out.dtype == np.uint8 and set(np.unique(out)) == {0, 7}
