"""F2: a manager who is also a reviewer edits a reader's annotation, the reader resubmits it, and the
manager may not approve it (nor claim it or send it back): it holds a version they wrote."""

from __future__ import annotations

from backend.annotations.models import AnnotationState
from backend.projects.models import Membership
from tests.annotations.helpers import client_for, cube, save
from tests.base import BaseTestCase


class FourEyesForEditorsTestCase(BaseTestCase):
    def setUp(self):
        super().setUp()
        membership = Membership.objects.get(project=self.project, user=self.manager)
        membership.set_roles(["manager", "reviewer"])
        membership.save()
        self.annotation = self.scan.annotations.get(annotator=self.annotator)
        self.base = f"/api/projects/{self.project.pk}/annotations/{self.annotation.pk}"
        self.boss, self.reader = client_for(self.manager), client_for(self.annotator)

    def post(self, client, action, data=None):
        return client.post(f"{self.base}/{action}/", data or {}, content_type="application/json")

    def test_an_editor_does_not_review_it(self):
        response = save(self.boss, self.project.pk, self.annotation.pk, self.annotation.current_version_id,
                        cube(0, 3), self.label.pk)
        self.assertEqual(response.status_code, 201, response.content)
        self.assertEqual(self.post(self.reader, "submit").status_code, 200)
        for action, data in (("claim", None), ("approve", None), ("request-changes", {"comment": "redo"})):
            response = self.post(self.boss, action, data)
            self.assertEqual(response.status_code, 403, (action, response.content))
            self.assertIn("wrote a version", response.json()["detail"])
        self.annotation.refresh_from_db()
        self.assertEqual(self.annotation.state, AnnotationState.SUBMITTED)
        # Another reviewer, who wrote nothing, still may.
        self.assertEqual(self.post(client_for(self.reviewer), "approve").status_code, 200)

    def test_a_manager_reviewer_who_wrote_nothing_still_reviews(self):
        self.assertEqual(self.post(self.reader, "submit").status_code, 200)
        self.assertEqual(self.post(self.boss, "approve").status_code, 200)
