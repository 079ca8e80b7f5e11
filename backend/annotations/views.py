from __future__ import annotations

import numpy as np
from django.contrib.auth import get_user_model
from django.db.models import Prefetch
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response

from backend.imaging.models import Scan
from backend.imaging.nifti_io import nifti_bytes
from backend.interactive import oneshot, sessions
from backend.projects.api_base import ANY_MEMBER, MANAGERS, ProjectScopedViewSet
from backend.projects.models import Label, Role
from worker.engines.base import Box, Point, Prompts

from . import agreement, services
from .masks import read_uploaded_mask
from .models import Annotation, Approval, Assignment, AuditEvent, ReviewComment
from .serializers import (
    AnnotationSerializer,
    AssignmentSerializer,
    AuditEventSerializer,
    CommentSerializer,
    ConsensusSerializer,
    OpenAnnotationSerializer,
    ReassignSerializer,
    ReviewDecisionSerializer,
    SaveVersionSerializer,
    SegmentRequestSerializer,
    VersionSerializer,
)

ANNOTATORS = frozenset({Role.ANNOTATOR.value})
REVIEWERS = frozenset({Role.REVIEWER.value})
REVIEWERS_AND_MANAGERS = frozenset({Role.REVIEWER.value, Role.MANAGER.value})
ANNOTATORS_AND_MANAGERS = frozenset({Role.ANNOTATOR.value, Role.MANAGER.value})


class AnnotationViewSet(ProjectScopedViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin):
    serializer_class = AnnotationSerializer
    queryset = Annotation.objects.select_related("annotator", "claimed_by", "current_version__author")
    parser_classes = [JSONParser, MultiPartParser, FormParser]
    filterset_fields = ["scan", "state", "is_consensus", "annotator__username"]
    ordering_fields = ["updated_at", "submitted_at", "created_at"]
    role_policy = {
        "list": ANY_MEMBER,
        "retrieve": ANY_MEMBER,
        "create": ANNOTATORS,
        "versions": ANY_MEMBER,
        # Editing is also limited to the annotation's own reader (or a manager) by `_owned`.
        "save_version": ANNOTATORS_AND_MANAGERS,
        "mask": ANY_MEMBER,
        "segment": ANNOTATORS_AND_MANAGERS,
        "submit": ANNOTATORS,
        "approve": REVIEWERS,
        "request_changes": REVIEWERS,
        "claim": REVIEWERS,
        "release": REVIEWERS,
        "reassign": MANAGERS,
        "comments": ANY_MEMBER,
        "add_comment": ANY_MEMBER,
        "review_queue": REVIEWERS_AND_MANAGERS,
        "consensus": REVIEWERS,
        "agreement": REVIEWERS_AND_MANAGERS,
    }

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Annotation.objects.none()
        return services.visible_annotations(self.membership).select_related(
            "annotator", "claimed_by", "current_version__author", "scan").prefetch_related(
            Prefetch("approvals", queryset=Approval.objects.select_related("reviewer")))

    def _owned(self) -> Annotation:
        annotation = self.get_object()
        if annotation.annotator_id != self.request.user.pk and not self.membership.is_manager:
            raise services.NotAllowedError("Only the annotation's reader (or a manager) edits it.")
        return annotation

    @extend_schema(request=OpenAnnotationSerializer, responses={200: AnnotationSerializer, 201: AnnotationSerializer})
    def create(self, request, *args, **kwargs):
        """Open (or get) your own annotation of a scan."""
        data = OpenAnnotationSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        scan = get_object_or_404(Scan, pk=data.validated_data["scan"], project=self.project)
        annotation, created = services.open_annotation(scan, request.user)
        return Response(AnnotationSerializer(annotation).data, status=201 if created else 200)

    @extend_schema(responses=VersionSerializer(many=True))
    @action(detail=True, methods=["get"])
    def versions(self, request, *args, **kwargs):
        return Response(VersionSerializer(self.get_object().versions.select_related("author"), many=True).data)

    @extend_schema(request={"multipart/form-data": SaveVersionSerializer}, responses={201: VersionSerializer})
    @versions.mapping.post
    def save_version(self, request, *args, **kwargs):
        """Save a new version. `base_version` must be the current version, else 409 with the current one."""
        annotation = self._owned()
        data = SaveVersionSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        pet = annotation.scan.pet
        object_map, affine = read_uploaded_mask(data.validated_data["mask"].read(),
                                                tuple(pet.shape) if pet else None)
        if pet and not np.allclose(affine, np.asarray(pet.affine), atol=1e-3):
            raise ValidationError({"mask": "The mask is not on this scan's PET grid (affine differs)."})
        version = services.save_version(
            annotation, request.user, base_version_id=data.validated_data["base_version"], object_map=object_map,
            segments=data.validated_data["segments"], source="manual",
            message=data.validated_data.get("message", ""))
        return Response(VersionSerializer(version).data, status=status.HTTP_201_CREATED)

    @extend_schema(parameters=[OpenApiParameter("version", int, description="version number (default: current)")],
                   responses={(200, "application/gzip"): OpenApiResponse(description="NIfTI object-id map")})
    @action(detail=True, methods=["get"])
    def mask(self, request, *args, **kwargs):
        """A version's mask as NIfTI (object ids; see the version's segments), checksum-verified."""
        annotation = self.get_object()
        number = request.query_params.get("version")
        version = annotation.current_version if number is None else annotation.versions.filter(
            number=int(number) if number.isdigit() else -1).first()
        if version is None:
            raise Http404("No such version.")
        objects = services.read_mask(version)
        payload = nifti_bytes(objects, np.asarray(annotation.scan.pet.affine), kind="label")
        response = HttpResponse(payload, content_type="application/gzip")
        response["Content-Disposition"] = f'attachment; filename="annotation{annotation.pk}_v{version.number}.nii.gz"'
        response["X-Version-Sha256"] = version.sha256
        return response

    @extend_schema(request=SegmentRequestSerializer, responses={201: VersionSerializer})
    @action(detail=True, methods=["post"])
    def segment(self, request, *args, **kwargs):
        """Run a segmentation engine on prompts and save its mask as a new object (a new version).

        The prompts go through the same task and queue as the viewer's WebSocket prompts."""
        annotation = self._owned()
        data = SegmentRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        label = get_object_or_404(Label, pk=data.validated_data["label"], project=self.project)
        points = tuple(Point(tuple(p["index"]), p["positive"]) for p in data.validated_data.get("points", []))
        box = data.validated_data.get("box")
        prompts = Prompts(points=points, box=Box(tuple(box[0]), tuple(box[1])) if box else None)
        try:
            version = oneshot.segment_and_save(
                annotation, request.user, label=label, prompts=prompts,
                engine=data.validated_data.get("engine") or self.project.default_engine,
                base_version_id=data.validated_data["base_version"])
        except sessions.SessionError as error:
            code = status.HTTP_502_BAD_GATEWAY if error.code == "engine_failed" else status.HTTP_400_BAD_REQUEST
            return Response({"detail": error.detail, "code": error.code}, status=code)
        except oneshot.SegmentationUnavailable as error:
            return Response({"detail": str(error), "code": "worker_timeout"},
                            status=status.HTTP_503_SERVICE_UNAVAILABLE)
        return Response(VersionSerializer(version).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses=AnnotationSerializer)
    @action(detail=True, methods=["post"])
    def submit(self, request, *args, **kwargs):
        return Response(AnnotationSerializer(services.submit(self.get_object(), request.user)).data)

    @extend_schema(request=ReviewDecisionSerializer, responses=AnnotationSerializer)
    @action(detail=True, methods=["post"])
    def approve(self, request, *args, **kwargs):
        data = ReviewDecisionSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        annotation = services.approve(self.get_object(), request.user, data.validated_data["comment"])
        return Response(AnnotationSerializer(annotation).data)

    @extend_schema(request=ReviewDecisionSerializer, responses={201: CommentSerializer})
    @action(detail=True, methods=["post"], url_path="request-changes")
    def request_changes(self, request, *args, **kwargs):
        """Send back with a comment, optionally on an object id or a voxel [slice, row, col]."""
        data = ReviewDecisionSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        comment = services.request_changes(self.get_object(), request.user, data.validated_data["comment"],
                                           data.validated_data.get("object_id"), data.validated_data.get("voxel"))
        return Response(CommentSerializer(comment).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses=AnnotationSerializer)
    @action(detail=True, methods=["post"])
    def claim(self, request, *args, **kwargs):
        """Reserve a submitted annotation for your review (expires after 30 minutes)."""
        return Response(AnnotationSerializer(services.claim(self.get_object(), request.user)).data)

    @extend_schema(request=None, responses=AnnotationSerializer)
    @action(detail=True, methods=["post"])
    def release(self, request, *args, **kwargs):
        return Response(AnnotationSerializer(services.release(self.get_object(), request.user)).data)

    @extend_schema(request=ReassignSerializer, responses=AnnotationSerializer)
    @action(detail=True, methods=["post"])
    def reassign(self, request, *args, **kwargs):
        annotation = self.get_object()
        data = ReassignSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = get_user_model().objects.filter(username=data.validated_data["username"]).first()
        if user is None:
            raise ValidationError({"username": "No such user."})
        return Response(AnnotationSerializer(services.reassign(annotation, request.user, user)).data)

    @extend_schema(responses=CommentSerializer(many=True))
    @action(detail=True, methods=["get"])
    def comments(self, request, *args, **kwargs):
        queryset = ReviewComment.objects.filter(annotation=self.get_object()).select_related("author")
        return Response(CommentSerializer(queryset, many=True).data)

    @extend_schema(request=CommentSerializer, responses={201: CommentSerializer})
    @comments.mapping.post
    def add_comment(self, request, *args, **kwargs):
        annotation = self.get_object()
        data = CommentSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        parent = data.validated_data.get("parent")
        comment = services.add_comment(annotation, request.user, data.validated_data["body"],
                                       object_id=data.validated_data.get("object_id"),
                                       voxel=data.validated_data.get("voxel"), parent=parent)
        return Response(CommentSerializer(comment).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses=AnnotationSerializer(many=True))
    @action(detail=False, methods=["get"], url_path="review-queue")
    def review_queue(self, request, *args, **kwargs):
        """Submitted annotations, oldest first; filter with ?scan=, ?annotator__username=, ?label=."""
        queryset = self.filter_queryset(self.get_queryset()).filter(state="submitted").exclude(
            annotator=request.user).order_by("submitted_at", "id")
        label = request.query_params.get("label")
        if label and label.isdigit():
            queryset = [a for a in queryset if any(s["label"] == int(label) for s in a.current_version.segments)]
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(AnnotationSerializer(page, many=True).data)

    @extend_schema(request=ConsensusSerializer, responses={201: AnnotationSerializer})
    @action(detail=False, methods=["post"])
    def consensus(self, request, *args, **kwargs):
        """Merge two or more readers' annotations of one scan into a consensus that is then reviewed."""
        data = ConsensusSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        annotations = list(self.get_queryset().filter(pk__in=data.validated_data["annotations"]))
        if len(annotations) != len(set(data.validated_data["annotations"])):
            raise Http404("No such annotation.")
        order = {pk: i for i, pk in enumerate(data.validated_data["annotations"])}
        annotations.sort(key=lambda a: order[a.pk])
        picks = {int(k): v for k, v in data.validated_data.get("picks", {}).items() if str(k).isdigit()}
        consensus = services.merge_consensus(annotations[0].scan, request.user, annotations,
                                             data.validated_data["method"], picks)
        return Response(AnnotationSerializer(consensus).data, status=status.HTTP_201_CREATED)

    @extend_schema(parameters=[OpenApiParameter("a", int, required=True), OpenApiParameter("b", int, required=True)],
                   responses={200: OpenApiResponse(description="per-label Dice, HD95, lesion detection")})
    @action(detail=False, methods=["get"])
    def agreement(self, request, *args, **kwargs):
        """Agreement between two annotations of the same scan (current versions)."""
        ids = [request.query_params.get(key, "") for key in ("a", "b")]
        if not all(i.isdigit() for i in ids):
            raise ValidationError("Give two annotation ids: ?a=<id>&b=<id>.")
        found = {a.pk: a for a in self.get_queryset().filter(pk__in=[int(i) for i in ids])}
        if len(found) != 2 or len({a.scan_id for a in found.values()}) != 1:
            raise Http404("Two annotations of the same scan are needed.")
        first, second = (found[int(i)] for i in ids)
        if first.current_version is None or second.current_version is None:
            raise ValidationError("Both annotations need a saved version.")
        labels = {label.value: {"name": label.name, "kind": label.kind} for label in self.project.labels.all()}
        result = agreement.compare(services.label_map(first.current_version), services.label_map(second.current_version),
                                   labels, first.scan.pet.spacing)
        return Response({"scan": first.scan_id, "a": first.pk, "b": second.pk, **result})


class AssignmentViewSet(ProjectScopedViewSet, mixins.ListModelMixin, mixins.CreateModelMixin,
                        mixins.RetrieveModelMixin, mixins.DestroyModelMixin):
    serializer_class = AssignmentSerializer
    queryset = Assignment.objects.select_related("annotator", "assigned_by")
    role_policy = {"list": ANY_MEMBER, "retrieve": ANY_MEMBER, "create": MANAGERS, "destroy": MANAGERS,
                   "worklist": ANY_MEMBER}
    filterset_fields = ["scan", "annotator__username"]

    def create(self, request, *args, **kwargs):
        data = AssignmentSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        scan = get_object_or_404(Scan, pk=data.validated_data["scan"].pk, project=self.project)
        user = get_user_model().objects.filter(username=data.validated_data["annotator"]["username"]).first()
        if user is None:
            raise ValidationError({"annotator": "No such user."})
        assignment = services.assign(scan, user, request.user)
        return Response(AssignmentSerializer(assignment).data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance: Assignment) -> None:
        services.unassign(instance, self.request.user)

    @action(detail=False, methods=["get"])
    def worklist(self, request, *args, **kwargs):
        """Your assigned scans with the state of your annotation of each."""
        assignments = self.get_queryset().filter(annotator=request.user).select_related("scan")
        mine = {a.scan_id: a for a in Annotation.objects.filter(annotator=request.user, is_consensus=False,
                                                                 scan__in=[x.scan_id for x in assignments])}
        rows = [{"assignment": a.pk, "scan": a.scan_id, "scan_name": a.scan.name, "scan_status": a.scan.status,
                 "annotation": mine[a.scan_id].pk if a.scan_id in mine else None,
                 "annotation_state": mine[a.scan_id].state if a.scan_id in mine else "not_started"}
                for a in assignments]
        return Response(rows)


class AuditEventViewSet(ProjectScopedViewSet, mixins.ListModelMixin):
    serializer_class = AuditEventSerializer
    queryset = AuditEvent.objects.select_related("actor")
    role_policy = {"list": REVIEWERS_AND_MANAGERS}
    filterset_fields = ["action", "target_type", "target_id"]
