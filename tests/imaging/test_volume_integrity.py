"""Stored volumes are verified against the sha256 taken at ingest: a changed byte makes the scan "damaged",
and nothing is served, segmented, measured or exported from it. The volume cache is bounded by bytes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from django.test import Client

from backend.annotations.services import save_version
from backend.exports import services as exports
from backend.imaging import storage
from backend.imaging.models import Scan, ScanStatus
from backend.quantification.services import compute_for_version
from tests.base import make_project_world

pytestmark = pytest.mark.django_db


def flip_a_byte(path: Path) -> str:
    payload = bytearray(path.read_bytes())
    payload[len(payload) // 2] ^= 0xFF
    path.write_bytes(bytes(payload))
    return hashlib.sha256(bytes(payload)).hexdigest()


def damaged_message(relative: str, recorded: str, actual: str) -> str:
    return (f"The stored volume {relative} is damaged: its sha256 is {actual} but {recorded} was recorded when it "
            "was written. Nothing is segmented or exported from this scan; restore the file or ingest the scan again.")


@pytest.fixture
def world():
    world = make_project_world("integrity")
    storage.clear_volume_cache()  # each test then plays a process that has not loaded the volumes yet
    yield world
    storage.clear_volume_cache()


def test_it_serves_an_intact_volume_with_its_checksum_as_etag(world):
    client = Client()
    client.force_login(world["annotator"])
    pet = world["scan"].pet
    response = client.get(f"/api/projects/{world['project'].pk}/scans/{world['scan'].pk}/volumes/pet/")
    payload = b"".join(response.streaming_content)
    assert response.status_code == 200 and response["ETag"] == f'"{pet.sha256}"'
    assert hashlib.sha256(payload).hexdigest() == pet.sha256


def test_a_flipped_byte_marks_the_scan_damaged_on_first_load(world):
    pet = world["scan"].pet
    actual = flip_a_byte(storage.media_path(pet.volume_file))
    with pytest.raises(storage.VolumeDamaged) as raised:
        storage.read_volume(pet.volume_file, pet.sha256)
    message = damaged_message(pet.volume_file, pet.sha256, actual)
    assert str(raised.value) == message
    scan = Scan.objects.get(pk=world["scan"].pk)
    assert scan.status == ScanStatus.DAMAGED and scan.status_message == message


def test_a_damaged_volume_is_not_served(world):
    ct = world["scan"].ct
    actual = flip_a_byte(storage.media_path(ct.volume_file))
    client = Client()
    client.force_login(world["annotator"])
    response = client.get(f"/api/projects/{world['project'].pk}/scans/{world['scan'].pk}/volumes/ct/")
    assert response.status_code == 409
    assert response.json() == {"code": "damaged", "detail": f"Scan {world['scan'].pk} is damaged: "
                               + damaged_message(ct.volume_file, ct.sha256, actual)}
    assert Scan.objects.get(pk=world["scan"].pk).status == ScanStatus.DAMAGED


def test_a_swapped_file_is_not_measured(world):
    pet = world["scan"].pet
    path = storage.media_path(pet.volume_file)
    swapped = storage.write_volume(pet.volume_file, np.full((4, 4, 4), 7.0, dtype=np.float32), np.eye(4))
    assert swapped != pet.sha256 and path.exists()
    annotation = world["annotation"]
    objects = np.zeros((4, 4, 4), dtype=np.uint8)
    objects[0, 0, 0] = 1
    version = save_version(annotation, world["annotator"], base_version_id=annotation.current_version_id,
                           object_map=objects, segments=[{"id": 1, "label": world["label"].pk}], source="manual")
    row = compute_for_version(version)
    assert row.status == "failed"
    assert row.message == ("ScanDamaged: Scan {} is damaged: ".format(world["scan"].pk)
                           + damaged_message(pet.volume_file, pet.sha256, swapped))


def test_a_damaged_scan_is_not_exported(world, tmp_path):
    pet = world["scan"].pet
    actual = flip_a_byte(storage.media_path(pet.volume_file))
    settings = exports.normalise_settings(world["project"], {"formats": ["nifti"], "states": ["draft"]})
    sources = exports.select_sources(world["project"], settings)
    assert sources
    with pytest.raises(exports.ExportError) as raised:
        exports.build_export(world["project"], settings, sources, tmp_path / "out")
    assert str(raised.value) == (f"Scan {world['scan'].pk} is damaged: "
                                 + damaged_message(pet.volume_file, pet.sha256, actual))
    assert not (tmp_path / "out" / "nifti").exists()


def test_the_volume_cache_is_bounded_by_bytes(world, settings):
    settings.VOLUME_CACHE_BYTES = 1500  # one 4×4×4 float32 volume is 256 bytes
    storage.clear_volume_cache()
    affine = np.eye(4)
    names = []
    for index in range(10):
        name = f"scans/{world['scan'].pk}/cache{index}.nii.gz"
        sha = storage.write_volume(name, np.full((4, 4, 4), index, dtype=np.float32), affine)
        storage.read_volume(name, sha)
        names.append((name, sha))
    cache = storage._cache()
    assert cache.maxsize == 1500 and cache.currsize <= 1500
    assert len(cache) == 1500 // 256  # the least recently used were evicted
    assert (names[-1][0], names[-1][1]) in cache and (names[0][0], names[0][1]) not in cache
    big = f"scans/{world['scan'].pk}/big.nii.gz"
    sha = storage.write_volume(big, np.zeros((8, 8, 8), dtype=np.float32), affine)  # 2048 bytes: never cached
    assert storage.read_volume(big, sha).array.shape == (8, 8, 8) and (big, sha) not in cache
