"""A label that saved annotations use is archived, never deleted; an unused one is deleted."""

from backend.projects.models import Label, LabelKind
from tests.base import BaseTestCase


class LabelArchiveTestCase(BaseTestCase):
    def url(self, label: Label) -> str:
        return f"/api/projects/{self.project.pk}/labels/{label.pk}/"

    def test_it_works(self):
        # self.label holds the object of the world's saved annotation
        self.client.force_login(self.manager)
        response = self.client.delete(self.url(self.label))
        self.assertEqual(response.status_code, 200, response.content)
        self.assertTrue(response.json()["archived"])
        self.label.refresh_from_db()
        self.assertTrue(self.label.archived)
        listed = self.client.get(f"/api/projects/{self.project.pk}/labels/").json()["results"]
        self.assertEqual([(x["name"], x["archived"]) for x in listed], [("liver", True)])
        # and it can be restored
        restored = self.client.patch(self.url(self.label), {"archived": False}, content_type="application/json")
        self.assertEqual(restored.status_code, 200)
        self.label.refresh_from_db()
        self.assertFalse(self.label.archived)

    def test_an_unused_label_is_deleted(self):
        unused = Label.objects.create(project=self.project, name="spleen", value=3, color="#3c8cc8", kind=LabelKind.ORGAN)
        self.client.force_login(self.manager)
        self.assertEqual(self.client.delete(self.url(unused)).status_code, 204)
        self.assertFalse(Label.objects.filter(pk=unused.pk).exists())

    def test_it_checks_membership(self):
        self.client.force_login(self.annotator)
        self.assertEqual(self.client.delete(self.url(self.label)).status_code, 403)
        self.client.force_login(self.other_manager)
        self.assertEqual(self.client.delete(self.url(self.label)).status_code, 404)
        self.label.refresh_from_db()
        self.assertFalse(self.label.archived)
