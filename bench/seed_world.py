"""Seeds a benchmark database (run in a subprocess with the benchmark's environment): one project
with a lesion label, one ingested phantom PET scan, N logged-in readers and a reviewer.

    python bench/seed_world.py NAME PHANTOM_SEED READERS

Prints JSON: project, scan, label, readers [{cookie, token}], reviewer_token, points (lesion centres).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import django


def seed(name: str, phantom_seed: int, n_readers: int) -> dict:
    from django.contrib.auth.models import User
    from django.contrib.sessions.backends.db import SessionStore
    from django.core.management import call_command
    from rest_framework.authtoken.models import Token

    from backend.imaging.ingest import ingest_dicom
    from backend.imaging.models import Scan
    from backend.projects.models import Label, Membership, Project
    from worker.phantoms import make_phantom, write_dicom_series

    call_command("migrate", verbosity=0)
    project = Project.objects.create(name=name)
    label = Label.objects.create(project=project, name="lesion", value=1, color="#ffff00", kind="lesion")
    phantom = make_phantom(seed=phantom_seed, shape=(200, 128, 128), spacing=(4.0, 4.0, 4.0), n_lesions=8)
    with tempfile.TemporaryDirectory() as folder:
        write_dicom_series(phantom, folder, write_ct=False)
        scan = ingest_dicom(Scan.objects.create(project=project, name=name), sorted(Path(folder).rglob("*.dcm")))
    assert scan.status == "ready", scan.status_message
    readers = []
    for i in range(n_readers):
        user = User.objects.create_user(f"{name}_reader{i}")
        Membership.objects.create(project=project, user=user, is_annotator=True)
        session = SessionStore()
        session["_auth_user_id"] = str(user.pk)
        session["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
        session["_auth_user_hash"] = user.get_session_auth_hash()
        session.create()
        readers.append({"cookie": session.session_key, "token": Token.objects.create(user=user).key})
    reviewer = User.objects.create_user(f"{name}_reviewer")
    Membership.objects.create(project=project, user=reviewer, is_reviewer=True)
    return {"project": project.pk, "scan": scan.pk, "label": label.pk, "readers": readers,
            "reviewer_token": Token.objects.create(user=reviewer).key,
            "points": [[int(round(c)) for c in lesion.centre_index] for lesion in phantom.lesions]}


if __name__ == "__main__":
    django.setup()
    print(json.dumps(seed(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))))
