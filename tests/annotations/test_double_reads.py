"""Blinded double reads, agreement between two readers, and consensus merging."""

from __future__ import annotations

import numpy as np

from backend.annotations import agreement, services
from backend.annotations.models import Annotation, AnnotationState
from backend.projects.models import Label, LabelKind, Membership
from tests.annotations.helpers import client_for
from tests.base import BaseTestCase, make_user


class DoubleReadTestCase(BaseTestCase):
    def setUp(self):
        super().setUp()
        self.second = make_user("dora")
        Membership.objects.create(project=self.project, user=self.second, is_annotator=True)
        self.lesion = Label.objects.create(project=self.project, name="lesion", value=2, color="#ffff00",
                                           kind=LabelKind.LESION)
        self.first_annotation = self.scan.annotations.get(annotator=self.annotator)
        self.second_annotation, _ = services.open_annotation(self.scan, self.second)
        objects = np.zeros((4, 4, 4), dtype=np.uint8)
        objects[1:3, 1:3, 1:4] = 1  # the liver of reader two is one slab larger
        objects[0, 0, 0] = 2  # and reader two marks a lesion that reader one does not
        services.save_version(self.second_annotation, self.second, base_version_id=None, object_map=objects,
                              segments=[{"id": 1, "label": self.label.pk}, {"id": 2, "label": self.lesion.pk}],
                              source="manual")
        self.api = f"/api/projects/{self.project.pk}/annotations/"

    def visible_to(self, user) -> set[int]:
        return {a["id"] for a in client_for(user).get(self.api).json()["results"]}

    def test_blinded_reads_hide_the_other_reader_until_both_submitted(self):
        self.project.blinded_double_read = True
        self.project.save()
        self.assertEqual(self.visible_to(self.annotator), {self.first_annotation.pk})
        url = f"{self.api}{self.second_annotation.pk}/"
        self.assertEqual(client_for(self.annotator).get(url).status_code, 404)
        services.submit(self.first_annotation, self.annotator)
        self.assertEqual(self.visible_to(self.annotator), {self.first_annotation.pk})  # the other is a draft
        services.submit(Annotation.objects.get(pk=self.second_annotation.pk), self.second)
        self.assertEqual(self.visible_to(self.annotator), {self.first_annotation.pk, self.second_annotation.pk})
        self.assertEqual(self.visible_to(self.reviewer), {self.first_annotation.pk, self.second_annotation.pk})

    def test_without_blinding_readers_see_each_other(self):
        self.assertEqual(self.visible_to(self.annotator), {self.first_annotation.pk, self.second_annotation.pk})

    def test_agreement_reports_dice_hd95_and_lesion_detection(self):
        response = client_for(self.reviewer).get(
            f"{self.api}agreement/", {"a": self.first_annotation.pk, "b": self.second_annotation.pk})
        self.assertEqual(response.status_code, 200, response.content)
        rows = {row["name"]: row for row in response.json()["labels"]}
        self.assertAlmostEqual(rows["liver"]["dice"], 2 * 8 / (8 + 12))
        self.assertEqual(rows["lesion"]["lesions_a"], 0)
        self.assertEqual(rows["lesion"]["lesions_b"], 1)
        self.assertEqual(rows["lesion"]["detection_f1"], 0.0)
        self.assertEqual(client_for(self.annotator).get(f"{self.api}agreement/",
                                                        {"a": 1, "b": 2}).status_code, 403)

    def test_consensus_goes_through_review(self):
        services.submit(self.first_annotation, self.annotator)
        services.submit(Annotation.objects.get(pk=self.second_annotation.pk), self.second)
        response = client_for(self.reviewer).post(f"{self.api}consensus/", {
            "annotations": [self.first_annotation.pk, self.second_annotation.pk], "method": "intersection"},
            content_type="application/json")
        self.assertEqual(response.status_code, 201, response.content)
        consensus = Annotation.objects.get(pk=response.json()["id"])
        self.assertTrue(consensus.is_consensus)
        self.assertEqual(consensus.current_version.source, "consensus")
        merged = services.label_map(consensus.current_version)
        self.assertEqual(int((merged == 1).sum()), 8)
        self.assertEqual(int((merged == 2).sum()), 0)
        # The merging reviewer owns it; another reviewer must approve it.
        services.submit(consensus, self.reviewer)
        with self.assertRaises(services.NotAllowedError):
            services.approve(Annotation.objects.get(pk=consensus.pk), self.reviewer)
        other_reviewer = make_user("erin")
        Membership.objects.create(project=self.project, user=other_reviewer, is_reviewer=True)
        self.assertEqual(services.approve(Annotation.objects.get(pk=consensus.pk), other_reviewer).state,
                         AnnotationState.APPROVED)

    def test_consensus_needs_submitted_work(self):
        response = client_for(self.reviewer).post(f"{self.api}consensus/", {
            "annotations": [self.first_annotation.pk, self.second_annotation.pk], "method": "union"},
            content_type="application/json")
        self.assertEqual(response.status_code, 409)


def test_merge_rules_on_small_maps():
    a = np.array([[[1, 1, 0, 0]]], dtype=np.uint8)
    b = np.array([[[1, 0, 1, 0]]], dtype=np.uint8)
    c = np.array([[[1, 1, 1, 0]]], dtype=np.uint8)
    assert agreement.merge([a, b], "union", [1]).tolist() == [[[1, 1, 1, 0]]]
    assert agreement.merge([a, b], "intersection", [1]).tolist() == [[[1, 0, 0, 0]]]
    assert agreement.merge([a, b, c], "majority", [1]).tolist() == [[[1, 1, 1, 0]]]
    assert agreement.merge([a, b], "pick", [1], {1: 1}).tolist() == b.tolist()


def test_hd95_of_two_offset_cubes_equals_the_offset():
    a = np.zeros((20, 20, 20), dtype=bool)
    b = np.zeros_like(a)
    a[5:10, 5:10, 5:10] = True
    b[5:10, 5:10, 7:12] = True
    assert agreement.hausdorff95_mm(a, b, (1.0, 1.0, 2.0)) == 4.0
    assert agreement.dice(a, a) == 1.0
