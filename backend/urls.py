from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from backend.annotations.views import AnnotationViewSet, AssignmentViewSet, AuditEventViewSet
from backend.exports.views import ExportJobViewSet, LabelImportViewSet
from backend.health.views import health, metrics
from backend.imaging.views import ScanViewSet
from backend.pacs.views import DicomWebSourceViewSet, PacsImportViewSet, SegPushViewSet
from backend.projects.auth_views import ThrottledObtainAuthToken
from backend.projects.views import LabelViewSet, MembershipViewSet, ProjectViewSet
from backend.quantification.views import StatisticsViewSet
from backend.studio import home

router = DefaultRouter()
router.register("projects", ProjectViewSet, basename="project")
router.register(r"projects/(?P<project_pk>[0-9]{1,18})/members", MembershipViewSet, basename="membership")
router.register(r"projects/(?P<project_pk>[0-9]{1,18})/labels", LabelViewSet, basename="label")
router.register(r"projects/(?P<project_pk>[0-9]{1,18})/scans", ScanViewSet, basename="scan")
router.register(r"projects/(?P<project_pk>[0-9]{1,18})/annotations", AnnotationViewSet, basename="annotation")
router.register(r"projects/(?P<project_pk>[0-9]{1,18})/assignments", AssignmentViewSet, basename="assignment")
router.register(r"projects/(?P<project_pk>[0-9]{1,18})/audit", AuditEventViewSet, basename="audit")
router.register(r"projects/(?P<project_pk>[0-9]{1,18})/statistics", StatisticsViewSet, basename="statistics")
router.register(r"projects/(?P<project_pk>[0-9]{1,18})/exports", ExportJobViewSet, basename="export")
router.register(r"projects/(?P<project_pk>[0-9]{1,18})/label-imports", LabelImportViewSet, basename="label-import")
router.register(r"projects/(?P<project_pk>[0-9]{1,18})/pacs-sources", DicomWebSourceViewSet, basename="pacs-source")
router.register(r"projects/(?P<project_pk>[0-9]{1,18})/pacs-imports", PacsImportViewSet, basename="pacs-import")
router.register(r"projects/(?P<project_pk>[0-9]{1,18})/seg-pushes", SegPushViewSet, basename="seg-push")

urlpatterns = [
    path("", home, name="home"),
    path("health/", health, name="health"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/", include(router.urls)),
    path("api/auth/token/", ThrottledObtainAuthToken.as_view(), name="api-token"),
    path("metrics", metrics, name="metrics"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
]
