"""The engine boundary's array convention, proved through the app's own path against the reference's.

An asymmetric PET NIfTI (axes permuted and flipped against RAS, anisotropic voxels, a marker near the
patient's right-anterior-superior corner) is ingested by the app, a prompt on the marker runs through
a session to the SegAnyPET engine, and the tensor the image encoder receives is compared with the
reference pipeline's crop built by torchio itself (ToCanonical, Resample to 1.5 mm, zero padding,
z-score over voxels > 0) from the same file. A crop that is permuted or flipped on any axis does not
match, which the test checks too, so the comparison can fail.
"""

from __future__ import annotations

import itertools

import nibabel as nib
import numpy as np
import pytest
import torch
import torchio as tio

from backend.imaging.ingest import ingest_nifti
from backend.imaging.models import Scan
from backend.interactive import sessions
from backend.projects.models import Label, LabelKind
from tests.base import make_project_world
from worker.engines import registry
from worker.seganypet.checkpoint import save_checkpoint
from worker.seganypet.model import Sam3D, Sam3DConfig

pytestmark = pytest.mark.django_db

SIZE = 128
TINY = Sam3DConfig(encoder_embed_dim=48, encoder_depth=2, encoder_num_heads=3, encoder_global_attn_indexes=(1,),
                   prompt_embed_dim=48, decoder_depth=1, decoder_mlp_dim=96, iou_head_hidden_dim=32)
# data[i, j, k]: i runs to superior (4 mm), j to the patient's left (3 mm), k to anterior (2 mm).
AFFINE_RAS = np.array([[0.0, -3.0, 0.0, 60.0], [0.0, 0.0, 2.0, -40.0], [4.0, 0.0, 0.0, -90.0], [0, 0, 0, 1]])
SHAPE = (45, 40, 50)


def asymmetric_pet(rng: np.random.Generator) -> tuple[np.ndarray, tuple[int, int, int]]:
    i, j, k = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in SHAPE), indexing="ij")
    data = 1.0 + 0.02 * i + 0.03 * j + 0.05 * k + 0.1 * rng.random(SHAPE).astype(np.float32)  # a gradient per axis
    marker = (38, 6, 41)  # superior (high i), right (low j: j runs to the left), anterior (high k)
    data[marker[0] - 2:marker[0] + 2, marker[1] - 3:marker[1] + 2, marker[2] - 4:marker[2] + 1] = 12.0
    return data.astype(np.float32), marker


def reference_crop(path, origin: tuple[int, int, int]) -> np.ndarray:
    """The reference pipeline's network input for the crop at `origin` of the resampled canonical image."""
    subject = tio.Subject(image=tio.ScalarImage(path))
    subject = tio.Resample(1.5)(tio.ToCanonical()(subject))
    image = subject["image"].data[0].numpy().astype(np.float32)
    crop = np.zeros((SIZE,) * 3, np.float32)
    source = tuple(slice(max(o, 0), min(o + SIZE, n)) for o, n in zip(origin, image.shape, strict=True))
    target = tuple(slice(s.start - o, s.stop - o) for s, o in zip(source, origin, strict=True))
    crop[target] = image[source]
    normalised = tio.ZNormalization(masking_method=lambda x: x > 0)(tio.ScalarImage(tensor=torch.from_numpy(crop)[None]))
    return normalised.data[0].numpy()


def test_the_encoder_sees_the_reference_pipelines_crop(tmp_path, engine_settings, eager_tasks):
    data, marker = asymmetric_pet(np.random.default_rng(7))
    path = tmp_path / "pet.nii.gz"
    nib.save(nib.Nifti1Image(data, AFFINE_RAS), path)
    weights = tmp_path / "tiny.pt"
    torch.manual_seed(0)
    save_checkpoint(Sam3D(TINY), weights)
    engine_settings(checkpoint=str(weights), device="cpu")

    world = make_project_world("orient")
    scan = ingest_nifti(Scan.objects.create(project=world["project"], name="asymmetric"), path, "SUV")
    assert scan.status == "ready", scan.status_message
    label = Label.objects.create(project=world["project"], name="lesion", value=2, color="#ff0", kind=LabelKind.LESION)
    # The click: the marker's world position, as the browser sends it, in the stored grid's indices.
    world_mm = AFFINE_RAS @ np.array([*marker, 1.0])
    stored_index = np.linalg.inv(np.asarray(scan.pet.affine)) @ (np.diag([-1.0, -1, 1, 1]) @ world_mm)
    click = [int(round(v)) for v in stored_index[:3]]

    engine = registry.get_engine("seganypet")
    seen: list[np.ndarray] = []
    hook = engine.model.image_encoder.register_forward_pre_hook(lambda _m, args: seen.append(args[0][0, 0].numpy().copy()))
    try:
        session, _ = sessions.open_session(scan, world["annotator"], label.pk, "seganypet", None)
        sessions.add_prompt(str(session.pk), world["annotator"], 1, {"point": {"index": click, "positive": True}})
        outcome = sessions.compute(str(session.pk), 1)
    finally:
        hook.remove()
    assert outcome.frame is not None and len(seen) == 1
    encoder_input = seen[0]
    origin = engine.last_crop_origins[0]
    expected = reference_crop(path, origin)
    np.testing.assert_allclose(encoder_input, expected, atol=2e-3)
    # The marker is where RAS puts it in the crop: near the crop's centre, where the click was.
    hot = np.argwhere(encoder_input > encoder_input.max() * 0.9).mean(axis=0)
    assert np.all(np.abs(hot - SIZE / 2) < 12), hot

    # The comparison can fail: any axis flipped or any permutation of the axes is far off.
    for axis in range(3):
        assert np.abs(np.flip(encoder_input, axis) - expected).max() > 1.0
    for order in itertools.permutations(range(3)):
        if order != (0, 1, 2):
            assert np.abs(np.transpose(encoder_input, order) - expected).max() > 1.0
