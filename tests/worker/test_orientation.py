"""worker.engines.orientation against nibabel's own canonical reorientation (what torchio's ToCanonical
uses), and the reference switches a checkpoint's variant selects."""

from __future__ import annotations

import itertools

import nibabel as nib
import numpy as np
import pytest

from worker.engines.base import Box, Point, Prompts
from worker.engines.orientation import LPS_TO_RAS, Canonical
from worker.engines.seganypet_engine import LEGACY_AXES, RAS_AXES, engine_options_from_metadata


def stored_affines():
    """[slice, row, col] -> LPS affines for every permutation and flip of the axes (3 mm, 2 mm, 4 mm)."""
    for order in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            affine = np.eye(4)
            affine[:3, :3] = 0
            for stored_axis, (world_axis, sign) in enumerate(zip(order, signs, strict=True)):
                affine[world_axis, stored_axis] = sign * (3.0, 2.0, 4.0)[stored_axis]
            affine[:3, 3] = (10.0, -20.0, 30.0)
            yield affine


@pytest.mark.parametrize("affine", list(stored_affines()))
def test_it_agrees_with_nibabels_closest_canonical(affine):
    rng = np.random.default_rng(0)
    stored = rng.random((5, 6, 7)).astype(np.float32)
    canonical = Canonical.from_lps_affine(affine, stored.shape)
    # nibabel's view of the same voxels: data[i, j, k] with an RAS affine over those indices.
    image = nib.Nifti1Image(stored, LPS_TO_RAS @ affine)
    reference = nib.as_closest_canonical(image)
    np.testing.assert_array_equal(canonical.to_ras(stored), np.asarray(reference.dataobj))
    np.testing.assert_allclose(canonical.ras_affine, reference.affine, atol=1e-9)
    np.testing.assert_array_equal(canonical.from_ras(canonical.to_ras(stored)), stored)
    assert canonical.spacing((3.0, 2.0, 4.0)) == tuple(float(v) for v in reference.header.get_zooms())
    index = (1, 4, 5)
    assert canonical.to_ras(stored)[canonical.index_to_ras(index)] == stored[index]


def test_prompts_and_boxes_follow_the_voxels():
    affine = next(stored_affines())
    affine[:3, :3] = np.array([[0, 0, -2.0], [0, -3.0, 0], [4.0, 0, 0]])  # a non-trivial reorientation
    stored = np.zeros((8, 9, 10), bool)
    stored[2:4, 3:6, 1:7] = True
    canonical = Canonical.from_lps_affine(affine, stored.shape)
    ras = canonical.to_ras(stored)
    box = canonical.box_to_ras(Box((2, 3, 1), (4, 6, 7)))
    window = tuple(slice(lo, hi) for lo, hi in zip(box.lower, box.upper, strict=True))
    assert ras[window].all() and ras[window].sum() == stored.sum()
    moved = canonical.prompts_to_ras(Prompts(points=(Point((2, 3, 1), False),)))
    assert ras[moved.points[0].index] and not moved.points[0].positive


def test_official_weights_run_the_reference_pipeline_and_the_old_demo_its_own_axes():
    official = engine_options_from_metadata({}, "vit_b_ori")
    assert official["max_crops"] == 1 and official["paste"] == "nearest" and official["array_axes"] == RAS_AXES
    assert "kind_tokens" not in official and "first_click_prior" not in official and "auto_zoom" not in official
    assert engine_options_from_metadata({}, "demo")["array_axes"] == LEGACY_AXES
    assert engine_options_from_metadata({"array_axes": "ras"}, "demo")["array_axes"] == RAS_AXES
