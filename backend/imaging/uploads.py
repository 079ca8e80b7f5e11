"""Receive uploaded files (many files, or zips) into a private staging folder, safely."""

from __future__ import annotations

import shutil
import uuid
import zipfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile

MAX_ZIP_MEMBERS = 20_000
MAX_ZIP_RATIO = 200  # uncompressed / compressed, above this a zip is treated as a bomb


class UploadError(ValueError):
    """An upload that cannot be accepted; the message is shown to the user."""


def staging_root() -> Path:
    return Path(settings.MEDIA_ROOT) / "staging"


def new_staging_dir() -> Path:
    path = staging_root() / uuid.uuid4().hex
    path.mkdir(parents=True)
    return path


def discard(path: Path | str) -> None:
    path = Path(path)
    if path.resolve().is_relative_to(staging_root().resolve()):
        shutil.rmtree(path, ignore_errors=True)


def _safe_member_path(name: str) -> PurePosixPath:
    member = PurePosixPath(name.replace("\\", "/"))
    if member.is_absolute() or ".." in member.parts or (member.parts and ":" in member.parts[0]):
        raise UploadError(f"The zip contains an unsafe path: {name!r}. Nothing was imported.")
    return member


def _extract_zip(archive: UploadedFile, into: Path, budget: int) -> int:
    try:
        with zipfile.ZipFile(archive) as bundle:
            members = [m for m in bundle.infolist() if not m.is_dir()]
            if len(members) > MAX_ZIP_MEMBERS:
                raise UploadError(f"The zip holds {len(members)} files; at most {MAX_ZIP_MEMBERS} are accepted.")
            total = sum(m.file_size for m in members)
            compressed = max(1, sum(m.compress_size for m in members))
            if total > budget or total / compressed > MAX_ZIP_RATIO:
                raise UploadError("The zip unpacks to more than the upload limit allows.")
            for index, member in enumerate(members):
                relative = _safe_member_path(member.filename)
                target = into / f"zip{index:05d}_{relative.name}"
                with bundle.open(member) as source, target.open("wb") as sink:
                    shutil.copyfileobj(source, sink, length=1 << 20)
            return total
    except zipfile.BadZipFile as error:
        raise UploadError(f"{archive.name} is not a readable zip file ({error}).") from None


def stage_uploaded_files(files: Iterable[UploadedFile]) -> Path:
    """Copy uploads (zips unpacked) into a new staging folder; nothing is left behind on error."""
    staging = new_staging_dir()
    budget = settings.MAX_UPLOAD_BYTES
    count = 0
    try:
        for index, upload in enumerate(files):
            if budget <= 0 or (upload.size or 0) > budget:
                raise UploadError(f"The upload exceeds the limit of {settings.MAX_UPLOAD_BYTES} bytes.")
            if zipfile.is_zipfile(upload):
                upload.seek(0)
                budget -= _extract_zip(upload, staging, budget)
            else:
                upload.seek(0)
                target = staging / f"file{index:05d}_{PurePosixPath(upload.name or 'upload').name}"
                with target.open("wb") as sink:
                    for chunk in upload.chunks():
                        sink.write(chunk)
                budget -= upload.size or 0
            count += 1
        if count == 0:
            raise UploadError("No files were uploaded.")
    except BaseException:
        discard(staging)
        raise
    return staging
