from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from backend.annotations import services
from backend.annotations.models import Assignment
from backend.asgi import application
from tests.annotations.helpers import client_for
from tests.base import BaseTestCase, make_project_world
from tests.foundation.test_websocket_auth import receive_json, session_headers


class AssignmentTestCase(BaseTestCase):
    def url(self):
        return f"/api/projects/{self.project.pk}/assignments/"

    def test_it_works(self):
        self.scan.assignments.all().delete()
        response = client_for(self.manager).post(self.url(), {"scan": self.scan.pk, "annotator": "alice_annotator"},
                                                 content_type="application/json")
        self.assertEqual(response.status_code, 201, response.content)
        again = client_for(self.manager).post(self.url(), {"scan": self.scan.pk, "annotator": "alice_annotator"},
                                              content_type="application/json")
        self.assertEqual(again.status_code, 409)
        not_annotator = client_for(self.manager).post(self.url(), {"scan": self.scan.pk, "annotator": "alice_reviewer"},
                                                      content_type="application/json")
        self.assertEqual(not_annotator.status_code, 400)

    def test_it_checks_membership(self):
        response = client_for(self.other_manager).post(
            f"/api/projects/{self.other_project.pk}/assignments/", {"scan": self.scan.pk, "annotator": "alice_annotator"},
            content_type="application/json")
        self.assertEqual(response.status_code, 404)
        self.assertFalse(Assignment.objects.filter(project=self.other_project, scan=self.scan).exists())

    def test_worklist_follows_assignments_and_annotation_state(self):
        rows = client_for(self.annotator).get(f"{self.url()}worklist/").json()
        self.assertEqual([(r["scan"], r["annotation_state"]) for r in rows], [(self.scan.pk, "draft")])
        self.assertEqual(client_for(self.reviewer).get(f"{self.url()}worklist/").json(), [])




@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_submission_and_approval_are_notified_to_the_scan():
    world = await sync_to_async(make_project_world)("alice")
    headers = await sync_to_async(session_headers)(world["reviewer"])
    communicator = WebsocketCommunicator(application, f"/ws/scans/{world['scan'].pk}/", headers=headers)
    assert (await communicator.connect(timeout=5))[0]
    await receive_json(communicator)  # hello
    await sync_to_async(services.submit)(world["annotation"], world["annotator"])
    message = await receive_json(communicator)
    assert message == {**message, "type": "notification", "event": "submitted", "by": "alice_annotator",
                       "annotation": world["annotation"].pk}
    await sync_to_async(services.approve)(world["annotation"], world["reviewer"])
    message = await receive_json(communicator)
    assert message["event"] == "approved" and message["state"] == "approved"
    await communicator.disconnect()
