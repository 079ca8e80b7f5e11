"""Import every PET study found under a folder (DICOM, any nesting) into a project."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from backend.imaging.dicom_series import group_by_series, read_dicom_files, sorted_paths
from backend.imaging.ingest import IngestError, all_or_nothing, plan_studies, store_dicom_study
from backend.imaging.models import Scan, ScanStatus
from backend.projects.access import project_by_key
from backend.projects.models import Project


class Command(BaseCommand):
    help = "Import DICOM PET (and CT) studies from a folder: one scan per study with a PET series."

    def add_arguments(self, parser) -> None:
        parser.add_argument("path", type=Path)
        parser.add_argument("--project", required=True, help="project id or exact name")
        parser.add_argument("--tracer", default="", help="tracer, when the headers do not name it")

    def handle(self, *args, path: Path, project: str, tracer: str, **options) -> None:
        target = _project(project)
        if not path.is_dir():
            raise CommandError(f"{path} is not a folder")
        files = sorted_paths(path)
        self.stdout.write(f"Reading {len(files)} files under {path} ...")
        read = read_dicom_files(tqdm(files, unit="file", disable=None, file=self.stderr))
        try:
            plans = plan_studies(group_by_series(read.files))
        except IngestError as error:
            raise CommandError(str(error)) from None
        if not plans:
            raise CommandError(f"No PET series found under {path} ({len(read.skipped)} files skipped).")
        failures = 0
        for plan in tqdm(plans, unit="study", disable=None, file=self.stderr):
            scan = Scan.objects.create(project=target, tracer=tracer, status=ScanStatus.PENDING)
            scan = all_or_nothing(scan, lambda scan=scan, plan=plan: store_dicom_study(scan, plan))
            if scan.status == ScanStatus.FAILED:
                failures += 1
                self.stderr.write(self.style.ERROR(f"{plan.study_instance_uid}: {scan.status_message}"))
            else:
                self.stdout.write(self.style.SUCCESS(f"scan {scan.pk} '{scan.name}': {scan.get_status_display()}"))
        if failures:
            raise CommandError(f"{failures} of {len(plans)} studies failed; the others were imported.")


def _project(key: str) -> Project:
    found = project_by_key(key)
    if found is None:
        raise CommandError(f"No project {key!r}.")
    return found
