"""Import studies from a project's DICOMweb source, for scripts: the same checks and resume as the API."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from backend.pacs.dicomweb import PacsError
from backend.pacs.models import DicomWebSource, ImportStatus
from backend.pacs.services import AlreadyImported, run_import, start_import
from backend.projects.access import project_by_key
from backend.projects.models import Project


class Command(BaseCommand):
    help = "Retrieve studies (PET and CT series) from a project's DICOMweb source and ingest them as scans."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--source", required=True, help="the source's name in the project")
        parser.add_argument("--project", required=True, help="project id or exact name")
        parser.add_argument("--study", required=True, action="append", help="StudyInstanceUID (repeatable)")
        parser.add_argument("--series", action="append", default=[], help="SeriesInstanceUID to import "
                            "(repeatable; default: the PET and its CT)")
        parser.add_argument("--user", default="", help="user name recorded as the importer")

    def handle(self, *args, source: str, project: str, study: list[str], series: list[str], user: str,
               **options) -> None:
        target = _project(project)
        found = DicomWebSource.objects.filter(project=target, name=source).first()
        if found is None:
            names = ", ".join(target.dicomweb_sources.values_list("name", flat=True)) or "none"
            raise CommandError(f"The project has no source {source!r} (sources: {names}).")
        importer = get_user_model().objects.filter(username=user).first() if user else None
        if user and importer is None:
            raise CommandError(f"No user {user!r}.")
        failures = 0
        for uid in study:
            try:
                record = start_import(found, uid, importer, series or None)
            except AlreadyImported as error:
                self.stdout.write(f"{uid}: {error.message}")
                continue
            except PacsError as error:
                failures += 1
                self.stderr.write(self.style.ERROR(f"{uid}: {error.message}"))
                continue
            record = run_import(record, on_instance=None)
            if record.status == ImportStatus.DONE:
                self.stdout.write(self.style.SUCCESS(f"{uid}: scan {record.scan_id}, {record.message}"))
            else:
                failures += 1
                hint = " (run the command again to resume)" if record.resumable else ""
                self.stderr.write(self.style.ERROR(f"{uid}: {record.message}{hint}"))
        if failures:
            raise CommandError(f"{failures} of {len(study)} studies were not imported.")


def _project(key: str) -> Project:
    found = project_by_key(key)
    if found is None:
        raise CommandError(f"No project {key!r}.")
    return found
