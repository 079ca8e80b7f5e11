"""The review state machine through the API: legal and illegal transitions, four-eyes, locking, audit."""

from __future__ import annotations

from backend.annotations.models import AnnotationState, AuditEvent
from backend.projects.models import Membership
from tests.annotations.helpers import client_for, cube, save
from tests.base import BaseTestCase


class WorkflowTestCase(BaseTestCase):
    def setUp(self):
        super().setUp()
        self.annotation = self.scan.annotations.get(annotator=self.annotator)
        self.base = f"/api/projects/{self.project.pk}/annotations/{self.annotation.pk}"
        self.mine = client_for(self.annotator)
        self.reviewing = client_for(self.reviewer)

    def post(self, client, action, data=None):
        return client.post(f"{self.base}/{action}/", data or {}, content_type="application/json")

    def state(self):
        self.annotation.refresh_from_db()
        return self.annotation.state

    def test_submit_approve_locks_and_edit_reopens(self):
        self.assertEqual(self.post(self.mine, "submit").status_code, 200)
        self.assertEqual(self.state(), AnnotationState.SUBMITTED)
        response = self.post(self.reviewing, "approve", {"comment": "good"})
        self.assertEqual(response.status_code, 200, response.content)
        self.assertEqual(self.state(), AnnotationState.APPROVED)
        approved_version = self.annotation.current_version
        # An edit after approval starts a new draft version; the approved one stays as it was.
        response = save(self.mine, self.project.pk, self.annotation.pk, approved_version.pk, cube(0, 2), self.label.pk)
        self.assertEqual(response.status_code, 201, response.content)
        self.assertEqual(self.state(), AnnotationState.DRAFT)
        self.assertEqual(self.annotation.current_version.number, approved_version.number + 1)
        self.assertEqual(self.annotation.current_version.parent_id, approved_version.pk)
        self.assertTrue(approved_version.approvals.filter(reviewer=self.reviewer).exists())

    def test_illegal_transitions(self):
        self.assertEqual(self.post(self.reviewing, "approve").status_code, 409)  # still a draft
        self.assertEqual(self.post(self.reviewing, "request-changes", {"comment": "x"}).status_code, 409)
        self.post(self.mine, "submit")
        self.assertEqual(self.post(self.mine, "submit").status_code, 409)  # already submitted
        version = self.annotation.current_version
        response = save(self.mine, self.project.pk, self.annotation.pk, version.pk, cube(), self.label.pk)
        self.assertEqual(response.status_code, 409)
        self.assertIn("under review", response.json()["detail"])
        self.post(self.reviewing, "approve")
        self.assertEqual(self.post(self.reviewing, "approve").status_code, 409)
        self.assertEqual(self.post(self.reviewing, "request-changes", {"comment": "late"}).status_code, 409)
        self.assertEqual(self.state(), AnnotationState.APPROVED)

    def test_nobody_approves_their_own_work(self):
        Membership.objects.filter(user=self.annotator).update(is_reviewer=True)
        self.post(self.mine, "submit")
        response = self.post(self.mine, "approve")
        self.assertEqual(response.status_code, 403)
        self.assertIn("four-eyes", response.json()["detail"])
        self.assertEqual(self.post(self.mine, "request-changes", {"comment": "me"}).status_code, 403)
        self.assertEqual(self.state(), AnnotationState.SUBMITTED)

    def test_sending_back_needs_a_comment_and_can_point_at_a_voxel(self):
        self.post(self.mine, "submit")
        self.assertEqual(self.post(self.reviewing, "request-changes", {"comment": " "}).status_code, 400)
        bad = self.post(self.reviewing, "request-changes", {"comment": "here", "voxel": [9, 9, 9]})
        self.assertEqual(bad.status_code, 400)
        response = self.post(self.reviewing, "request-changes",
                             {"comment": "lesion missed here", "voxel": [1, 2, 3], "object_id": 1})
        self.assertEqual(response.status_code, 201, response.content)
        self.assertEqual(self.state(), AnnotationState.CHANGES_REQUESTED)
        comments = self.mine.get(f"{self.base}/comments/").json()
        self.assertEqual(comments[0]["body"], "lesion missed here")
        self.assertEqual(comments[0]["voxel"], [1, 2, 3])
        reply = self.mine.post(f"{self.base}/comments/", {"body": "fixed", "parent": comments[0]["id"]},
                               content_type="application/json")
        self.assertEqual(reply.status_code, 201)
        self.assertEqual(reply.json()["parent"], comments[0]["id"])

    def test_only_the_owner_submits_and_edits(self):
        other = client_for(self.manager)
        self.assertEqual(self.post(other, "submit").status_code, 403)
        outsider_annotator = self._second_annotator()
        response = save(client_for(outsider_annotator), self.project.pk, self.annotation.pk,
                        self.annotation.current_version.pk, cube(), self.label.pk)
        self.assertEqual(response.status_code, 403)

    def _second_annotator(self):
        from tests.base import make_user

        user = make_user("dora")
        Membership.objects.create(project=self.project, user=user, is_annotator=True)
        return user

    def test_two_approvals_when_the_project_asks_for_two(self):
        self.project.required_approvals = 2
        self.project.save()
        self.post(self.mine, "submit")
        self.post(self.reviewing, "approve")
        self.assertEqual(self.state(), AnnotationState.SUBMITTED)
        self.assertEqual(self.post(self.reviewing, "approve").status_code, 409)  # same reviewer twice
        second = self._second_reviewer()
        self.assertEqual(self.post(client_for(second), "approve").status_code, 200)
        self.assertEqual(self.state(), AnnotationState.APPROVED)

    def _second_reviewer(self):
        from tests.base import make_user

        user = make_user("erin")
        Membership.objects.create(project=self.project, user=user, is_reviewer=True)
        return user

    def test_every_action_is_audited(self):
        self.post(self.mine, "submit")
        self.post(self.reviewing, "claim")
        self.post(self.reviewing, "request-changes", {"comment": "redo"})
        save(self.mine, self.project.pk, self.annotation.pk, self.annotation.current_version.pk, cube(0, 3),
             self.label.pk)
        self.post(self.mine, "submit")
        self.post(self.reviewing, "approve")
        actions = list(AuditEvent.objects.filter(target_type="annotation", target_id=self.annotation.pk)
                       .order_by("id").values_list("action", flat=True))
        self.assertEqual(actions, ["annotation_created", "version_saved", "submitted", "claimed",
                                   "changes_requested", "version_saved", "submitted", "approved"])
        audit = client_for(self.manager).get(f"/api/projects/{self.project.pk}/audit/").json()
        self.assertGreaterEqual(audit["count"], 8)
        self.assertEqual(client_for(self.annotator).get(f"/api/projects/{self.project.pk}/audit/").status_code, 403)

    def test_audit_events_are_append_only(self):
        event = AuditEvent.objects.first()
        event.action = "forged"
        with self.assertRaises(ValueError):
            event.save()
        with self.assertRaises(ValueError):
            event.delete()

    def test_versions_are_immutable(self):
        version = self.annotation.current_version
        version.source = "forged"
        with self.assertRaises(ValueError):
            version.save()

    def test_manager_reassigns(self):
        dora = self._second_annotator()
        response = self.post(client_for(self.manager), "reassign", {"username": "dora"})
        self.assertEqual(response.status_code, 200, response.content)
        self.assertEqual(response.json()["annotator"], "dora")
        self.assertEqual(self.post(client_for(self.manager), "reassign", {"username": "alice_reviewer"}).status_code, 400)
        self.assertEqual(self.post(client_for(dora), "submit").status_code, 200)
