from __future__ import annotations

from django.db.models import Prefetch
from drf_spectacular.utils import extend_schema
from rest_framework import permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from .access import membership_for, projects_visible_to
from .api_base import ANY_MEMBER, READ_ANY_MEMBER_WRITE_MANAGER, ProjectScopedViewSet, check_role
from .models import Label, Membership, Project, Role
from .serializers import LabelSerializer, MembershipSerializer, ProjectSerializer


def label_in_use(label: Label) -> bool:
    """Whether any version of any annotation in the label's project has an object of this label."""
    from backend.annotations.models import AnnotationVersion

    versions = AnnotationVersion.objects.filter(annotation__project_id=label.project_id)
    # Segments are a JSON list; SQLite has no JSON containment lookup, so this is checked in Python.
    return any(any(isinstance(s, dict) and s.get("label") == label.pk for s in segments or [])
               for segments in versions.values_list("segments", flat=True).iterator())


class CanCreateProjects(permissions.BasePermission):
    """Creating projects is for site staff; everything inside a project is role-checked."""

    def has_permission(self, request, view) -> bool:
        if view.action == "create":
            return bool(request.user.is_staff)
        return True


class ProjectViewSet(viewsets.ModelViewSet):
    serializer_class = ProjectSerializer
    queryset = Project.objects.none()  # replaced per request; tells the schema the model
    lookup_value_regex = "[0-9]{1,18}"
    permission_classes = [permissions.IsAuthenticated, CanCreateProjects]
    filterset_fields = ["default_engine"]
    search_fields = ["name", "description"]
    ordering_fields = ["name", "created_at"]
    # Listing shows only the caller's projects and creating is for staff, so only the
    # actions on one project are role-checked.
    role_policy = {
        **{name: roles for name, roles in READ_ANY_MEMBER_WRITE_MANAGER.items() if name not in ("list", "create")},
        "engines": ANY_MEMBER,
    }

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Project.objects.none()
        return projects_visible_to(self.request.user).prefetch_related(
            Prefetch("memberships", queryset=Membership.objects.filter(user=self.request.user))
        )

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if "pk" in kwargs:
            check_role(membership_for(request.user, kwargs["pk"]), self.role_policy.get(self.action or ""))

    @extend_schema(responses={200: dict})
    @action(detail=True, methods=["get"])
    def engines(self, request, *args, **kwargs):
        """Every engine this server knows, whether it can run here, and whether this project allows it."""
        from worker.engines.registry import available_engines  # torch-free listing

        project = self.get_object()
        rows = [{**e, "allowed": e["name"] in project.allowed_engines, "default": e["name"] == project.default_engine}
                for e in available_engines()]
        return Response(rows)

    def perform_create(self, serializer) -> None:
        project = serializer.save()
        Membership.objects.create(project=project, user=self.request.user, is_manager=True)


class MembershipViewSet(ProjectScopedViewSet, viewsets.ModelViewSet):
    serializer_class = MembershipSerializer
    role_policy = READ_ANY_MEMBER_WRITE_MANAGER
    filterset_fields = ["is_manager", "is_annotator", "is_reviewer"]
    search_fields = ["user__username"]

    queryset = Membership.objects.select_related("user")

    def perform_update(self, serializer) -> None:
        roles = serializer.validated_data.get("roles")
        if roles is not None and Role.MANAGER not in roles:
            self._refuse_removing_last_manager(serializer.instance)
        serializer.save()

    def perform_destroy(self, instance: Membership) -> None:
        self._refuse_removing_last_manager(instance)
        instance.delete()

    def _refuse_removing_last_manager(self, membership: Membership) -> None:
        if membership.is_manager and not self.get_queryset().filter(is_manager=True).exclude(pk=membership.pk).exists():
            raise ValidationError("A project needs at least one manager.")


class LabelViewSet(ProjectScopedViewSet, viewsets.ModelViewSet):
    serializer_class = LabelSerializer
    role_policy = READ_ANY_MEMBER_WRITE_MANAGER
    filterset_fields = ["kind", "archived"]
    search_fields = ["name"]

    queryset = Label.objects.all()

    def perform_create(self, serializer) -> None:
        serializer.save(project=self.project)

    def destroy(self, request, *args, **kwargs):
        """Delete a label; one that any annotation version uses is archived instead (200 with the label),
        so that those objects, their statistics and every later export keep their label."""
        label = self.get_object()
        if not label_in_use(label):
            label.delete()
            return Response(status=status.HTTP_204_NO_CONTENT)
        if not label.archived:
            label.archived = True
            label.save(update_fields=["archived"])
        return Response(LabelSerializer(label, context=self.get_serializer_context()).data
                        | {"detail": "Annotations use this label, so it was archived rather than deleted."})

