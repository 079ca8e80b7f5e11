from rest_framework import mixins

from backend.projects.api_base import ANY_MEMBER, MANAGERS, ProjectScopedViewSet

from .models import Scan
from .serializers import ScanSerializer


class ScanViewSet(ProjectScopedViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin):
    serializer_class = ScanSerializer
    role_policy = {"list": ANY_MEMBER, "retrieve": ANY_MEMBER, "destroy": MANAGERS}
    filterset_fields = ["status", "tracer", "patient_sex"]
    search_fields = ["name", "patient_id", "study_description"]
    ordering_fields = ["created_at", "name", "study_date"]

    queryset = Scan.objects.prefetch_related("series")
