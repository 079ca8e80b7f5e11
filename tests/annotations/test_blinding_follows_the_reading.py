"""F5: in a blinded project, a reader who also holds the reviewer or manager role is blinded on the
scans they read, like any reader: another reader's annotation, its statistics and its mask stay hidden
until both readings are submitted. On scans they do not read, their roles show them everything."""

from __future__ import annotations

import numpy as np

from backend.annotations import services
from backend.annotations.models import Annotation
from backend.imaging.models import Scan
from backend.projects.models import Membership
from backend.quantification.services import compute_for_version
from tests.annotations.helpers import client_for
from tests.base import BaseTestCase, add_tiny_series


class BlindingFollowsTheReadingTestCase(BaseTestCase):
    def setUp(self):
        super().setUp()
        self.project.blinded_double_read = True
        self.project.save()
        self.other = self.scan.annotations.get(annotator=self.annotator)  # the other reader's draft
        services.submit(self.other, self.annotator)
        compute_for_version(self.other.current_version)
        self.api = f"/api/projects/{self.project.pk}"

    def reader_with(self, user, roles: list[str]) -> Annotation:
        """`user` also reads the scan: they get the roles and a draft of their own."""
        membership = Membership.objects.get(project=self.project, user=user)
        membership.set_roles(roles)
        membership.save()
        mine, _ = services.open_annotation(self.scan, user)
        services.save_version(mine, user, base_version_id=None, object_map=np.ones((4, 4, 4), dtype=np.uint8),
                              segments=[{"id": 1, "label": self.label.pk}], source="manual")
        return Annotation.objects.get(pk=mine.pk)

    def seen_by(self, user) -> dict[str, int]:
        client = client_for(user)
        return {
            "list": self.other.pk in {a["id"] for a in client.get(f"{self.api}/annotations/").json()["results"]},
            "detail": client.get(f"{self.api}/annotations/{self.other.pk}/").status_code,
            "mask": client.get(f"{self.api}/annotations/{self.other.pk}/mask/").status_code,
            "statistics": any(row["annotation"] == self.other.pk for row in
                              client.get(f"{self.api}/statistics/").json()["results"]),
        }

    def test_a_reviewer_who_reads_the_scan_is_blinded(self):
        mine = self.reader_with(self.reviewer, ["annotator", "reviewer"])
        assert self.seen_by(self.reviewer) == {"list": False, "detail": 404, "mask": 404, "statistics": False}
        services.submit(mine, self.reviewer)
        assert self.seen_by(self.reviewer) == {"list": True, "detail": 200, "mask": 200, "statistics": True}

    def test_a_manager_who_reads_the_scan_is_blinded(self):
        mine = self.reader_with(self.manager, ["manager", "annotator"])
        assert self.seen_by(self.manager) == {"list": False, "detail": 404, "mask": 404, "statistics": False}
        services.submit(mine, self.manager)
        assert self.seen_by(self.manager)["detail"] == 200

    def test_roles_still_show_scans_they_do_not_read(self):
        self.reader_with(self.manager, ["manager", "reviewer"])
        other_scan = Scan.objects.create(project=self.project, name="second", tracer="FDG", status="ready")
        add_tiny_series(other_scan)
        theirs, _ = services.open_annotation(other_scan, self.annotator)  # a draft on a scan the manager does not read
        assert theirs.pk in {a["id"] for a in client_for(self.manager).get(f"{self.api}/annotations/").json()["results"]}
        assert self.seen_by(self.manager)["detail"] == 404  # while the scan they read stays blinded
