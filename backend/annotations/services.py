"""The review workflow: saving versions, submitting, approving, sending back, claims, assignments.

Views stay thin and call these functions. Each change runs in one transaction with its audit
event; notifications go out after the commit.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import numpy as np
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from backend.imaging import storage
from backend.imaging.models import Scan, ScanStatus
from backend.interactive.events import broadcast_to_scan
from backend.projects.models import Label, Membership

from . import agreement, audit, signals
from .masks import MaskError, as_object_map, read_version_mask, segment_voxel_counts, write_version_mask
from .models import Annotation, AnnotationState, AnnotationVersion, Approval, Assignment, ReviewComment

CLAIM_MINUTES = 30


# A review comment is a note, not a document: longer ones are refused (a 9 MB comment was once stored).
MAX_COMMENT_CHARS = 10_000


def _check_comment_length(body: str) -> None:
    if len(body) > MAX_COMMENT_CHARS:
        raise WorkflowError(f"Comments are limited to {MAX_COMMENT_CHARS} characters; this one has {len(body)}.")


class WorkflowError(Exception):
    status_code = 400
    code = "invalid"

    def __init__(self, message: str, **extra) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra


class ConflictError(WorkflowError):
    """The annotation changed under the caller (stale base version, claimed by someone else)."""

    status_code = 409
    code = "conflict"


class TransitionError(WorkflowError):
    """The action is not possible in the annotation's current state."""

    status_code = 409
    code = "illegal_transition"


class StorageError(WorkflowError):
    """The media store cannot be written (disk full, read-only); nothing was saved."""

    status_code = 503
    code = "storage_unavailable"


class NotAllowedError(WorkflowError):
    """Roles allow the action in general, but not on this object (e.g. approving your own work)."""

    status_code = 403
    code = "not_allowed"


def _notify_after_commit(annotation: Annotation, event: str, actor) -> None:
    payload = {"type": "notification", "event": event, "annotation": annotation.pk, "scan": annotation.scan_id,
               "state": annotation.state, "by": actor.username, "annotator": annotation.annotator.username}
    transaction.on_commit(lambda: broadcast_to_scan(annotation.scan_id, payload))


def _locked(annotation: Annotation) -> Annotation:
    return Annotation.objects.select_for_update().select_related("project", "annotator").get(pk=annotation.pk)


# --- annotations and versions ----------------------------------------------------------------


def open_annotation(scan: Scan, annotator) -> tuple[Annotation, bool]:
    if scan.status != ScanStatus.READY or scan.pet is None:
        raise TransitionError(f"The scan is not ready for annotation ({scan.get_status_display()}).")
    try:
        with transaction.atomic():
            annotation, created = Annotation.objects.get_or_create(
                scan=scan, annotator=annotator, is_consensus=False, defaults={"project_id": scan.project_id}
            )
            if created:
                audit.record(scan.project_id, annotator, "annotation_created", annotation, scan=scan.pk)
    except IntegrityError:  # created by a concurrent request of the same reader
        annotation, created = Annotation.objects.get(scan=scan, annotator=annotator, is_consensus=False), False
    return annotation, created


def _checked_segments(project_id: int, object_map: np.ndarray, segments: list[dict],
                      kept_labels: frozenset[int] = frozenset()) -> list[dict]:
    """`kept_labels`: labels the base version already uses, which stay allowed after being archived."""
    labels = dict(Label.objects.filter(project_id=project_id).values_list("pk", "value"))
    archived = set(Label.objects.filter(project_id=project_id, archived=True).values_list("pk", flat=True))
    counts = segment_voxel_counts(object_map)
    seen: set[int] = set()
    checked = []
    for segment in segments:
        try:
            object_id, label_id = int(segment["id"]), int(segment["label"])
        except (KeyError, TypeError, ValueError):
            raise MaskError("Each segment needs an integer 'id' (object id in the mask) and 'label'.") from None
        if label_id not in labels:
            raise MaskError(f"Label {label_id} is not in this project's label set.")
        if label_id in archived and label_id not in kept_labels:
            raise MaskError(f"Label {label_id} is archived: existing objects keep it, new ones cannot use it.")
        if object_id in seen or object_id < 1:
            raise MaskError(f"Object id {object_id} is listed twice or is not positive.")
        seen.add(object_id)
        checked.append({"id": object_id, "label": label_id, "voxels": counts.get(object_id, 0)})
    unlisted = sorted(set(counts) - seen)
    if unlisted:
        raise MaskError(f"The mask holds object ids {unlisted[:10]} that no segment describes.")
    return sorted(checked, key=lambda s: s["id"])


def save_version(annotation: Annotation, author, *, base_version_id: int | None, object_map: np.ndarray,
                 segments: list[dict], source: str, message: str = "") -> AnnotationVersion:
    """Store a new immutable version; refused with a conflict when `base_version_id` is stale."""
    pet = annotation.scan.pet
    if pet is None:
        raise TransitionError("The scan has no PET series.")
    object_map = as_object_map(object_map, pet)
    base = AnnotationVersion.objects.filter(pk=base_version_id).values_list("segments", flat=True).first() or []
    segments = _checked_segments(annotation.project_id, object_map, segments,
                                 frozenset(int(s["label"]) for s in base if isinstance(s, dict) and "label" in s))
    relative = (f"{storage.scan_dir_relative(annotation.scan_id)}/annotations/{annotation.pk}/"
                f"{uuid.uuid4().hex}.nii.gz")
    with transaction.atomic():
        locked = _locked(annotation)
        if locked.current_version_id != base_version_id:
            current = locked.current_version
            raise ConflictError(
                "This annotation was saved by someone else since you opened it; reload it, reapply your "
                "changes and save again.",
                current_version=current.pk if current else None,
                current_number=current.number if current else None,
            )
        if locked.state == AnnotationState.SUBMITTED:
            raise TransitionError("The annotation is under review; it can be edited after it is sent back.")
        try:
            sha256 = write_version_mask(relative, object_map, pet)
        except OSError as error:
            raise StorageError(f"The mask could not be stored ({error.strerror or type(error).__name__}); "
                               "nothing was saved and the previous version is unchanged.") from None
        try:
            version = AnnotationVersion.objects.create(
                annotation=locked, number=(locked.current_version.number + 1) if locked.current_version else 1,
                parent=locked.current_version, author=author, source=source[:50], mask_file=relative,
                sha256=sha256, segments=segments, message=message[:500],
            )
            reopened = locked.state == AnnotationState.APPROVED
            locked.current_version = version
            if reopened:
                locked.state = AnnotationState.DRAFT
            locked.save(update_fields=["current_version", "state", "updated_at"])
            audit.record(locked.project_id, author, "version_saved", locked, version=version.number,
                         sha256=sha256, source=version.source, segments=len(segments), reopened=reopened)
            transaction.on_commit(lambda: signals.version_saved.send(AnnotationVersion, version_id=version.pk),
                                   robust=True)
        except BaseException:
            storage.media_path(relative).unlink(missing_ok=True)
            raise
    return version


def read_mask(version: AnnotationVersion) -> np.ndarray:
    return read_version_mask(version.mask_file, version.sha256)


def label_map(version: AnnotationVersion) -> np.ndarray:
    """The version as a label map (label values of the project's label set instead of object ids)."""
    objects = read_mask(version)
    values = dict(Label.objects.filter(project_id=version.annotation.project_id).values_list("pk", "value"))
    lookup = np.zeros(int(objects.max()) + 1 if objects.size else 1, dtype=np.uint8)
    for segment in version.segments:
        lookup[segment["id"]] = values.get(segment["label"], 0)
    return lookup[objects]


# --- state changes -----------------------------------------------------------------------------


def submit(annotation: Annotation, actor) -> Annotation:
    with transaction.atomic():
        locked = _locked(annotation)
        if locked.annotator_id != actor.pk:
            raise NotAllowedError("Only the annotation's own reader submits it.")
        if locked.state not in (AnnotationState.DRAFT, AnnotationState.CHANGES_REQUESTED):
            raise TransitionError(f"A {locked.get_state_display().lower()} annotation cannot be submitted.")
        if locked.current_version_id is None:
            raise TransitionError("Save at least one version before submitting.")
        locked.state, locked.submitted_at = AnnotationState.SUBMITTED, timezone.now()
        locked.claimed_by, locked.claimed_until = None, None
        locked.save()
        audit.record(locked.project_id, actor, "submitted", locked, version=locked.current_version.number)
        _notify_after_commit(locked, "submitted", actor)
    return locked


def _check_reviewable(locked: Annotation, reviewer) -> None:
    if locked.annotator_id == reviewer.pk:
        raise NotAllowedError("Nobody reviews their own work (four-eyes rule).")
    if locked.is_consensus and locked.merged_from.filter(annotator=reviewer).exists():
        raise NotAllowedError("You contributed to this consensus; another reviewer must review it.")
    # A manager may edit a reader's annotation; whoever wrote any version of it is not a second pair of eyes.
    if locked.versions.filter(author=reviewer).exists():
        raise NotAllowedError("You wrote a version of this annotation; another reviewer must review it.")
    if locked.state != AnnotationState.SUBMITTED:
        raise TransitionError(f"Only submitted annotations are reviewed; this one is {locked.get_state_display().lower()}.")
    if locked.claimed_by_id not in (None, reviewer.pk) and locked.claimed_until and locked.claimed_until > timezone.now():
        raise ConflictError(f"{locked.claimed_by.username} is reviewing this annotation.")


def approve(annotation: Annotation, reviewer, comment: str = "") -> Annotation:
    _check_comment_length(comment)
    with transaction.atomic():
        locked = _locked(annotation)
        _check_reviewable(locked, reviewer)
        version = locked.current_version
        if Approval.objects.filter(version=version, reviewer=reviewer).exists():
            raise TransitionError("You already approved this version.")
        Approval.objects.create(annotation=locked, version=version, reviewer=reviewer)
        if comment:
            ReviewComment.objects.create(project_id=locked.project_id, annotation=locked, version=version,
                                         author=reviewer, body=comment)
        approvals = Approval.objects.filter(version=version).values("reviewer").distinct().count()
        needed = locked.project.required_approvals
        if approvals >= needed:
            locked.state = AnnotationState.APPROVED
        locked.claimed_by, locked.claimed_until = None, None
        locked.save()
        audit.record(locked.project_id, reviewer, "approved", locked, version=version.number,
                     approvals=approvals, required=needed, final=locked.state == AnnotationState.APPROVED)
        _notify_after_commit(locked, "approved" if locked.state == AnnotationState.APPROVED else "approval_added",
                             reviewer)
    return locked


def request_changes(annotation: Annotation, reviewer, body: str, object_id: int | None = None,
                    voxel: list[int] | None = None) -> ReviewComment:
    if not body.strip():
        raise WorkflowError("Say what should change: a comment is required to send an annotation back.")
    with transaction.atomic():
        locked = _locked(annotation)
        _check_reviewable(locked, reviewer)
        comment = _new_comment(locked, reviewer, body, object_id=object_id, voxel=voxel)
        locked.state = AnnotationState.CHANGES_REQUESTED
        locked.claimed_by, locked.claimed_until = None, None
        locked.save()
        audit.record(locked.project_id, reviewer, "changes_requested", locked,
                     version=locked.current_version.number, comment=comment.pk)
        _notify_after_commit(locked, "changes_requested", reviewer)
    return comment


def claim(annotation: Annotation, reviewer, minutes: int = CLAIM_MINUTES) -> Annotation:
    with transaction.atomic():
        locked = _locked(annotation)
        _check_reviewable(locked, reviewer)
        locked.claimed_by, locked.claimed_until = reviewer, timezone.now() + timedelta(minutes=minutes)
        locked.save(update_fields=["claimed_by", "claimed_until", "updated_at"])
        audit.record(locked.project_id, reviewer, "claimed", locked, until=locked.claimed_until.isoformat())
    return locked


def release(annotation: Annotation, reviewer) -> Annotation:
    with transaction.atomic():
        locked = _locked(annotation)
        if locked.claimed_by_id != reviewer.pk:
            raise ConflictError("You do not hold the claim on this annotation.")
        locked.claimed_by, locked.claimed_until = None, None
        locked.save(update_fields=["claimed_by", "claimed_until", "updated_at"])
        audit.record(locked.project_id, reviewer, "released", locked)
    return locked


def reassign(annotation: Annotation, manager, new_annotator) -> Annotation:
    membership = Membership.objects.filter(project_id=annotation.project_id, user=new_annotator,
                                           is_annotator=True).first()
    if membership is None:
        raise WorkflowError(f"{new_annotator.username} is not an annotator of this project.")
    with transaction.atomic():
        locked = _locked(annotation)
        if Annotation.objects.filter(scan_id=locked.scan_id, annotator=new_annotator, is_consensus=False).exclude(
                pk=locked.pk).exists():
            raise ConflictError(f"{new_annotator.username} already has an annotation of this scan.")
        previous = locked.annotator.username
        locked.annotator = new_annotator
        locked.save(update_fields=["annotator", "updated_at"])
        audit.record(locked.project_id, manager, "reassigned", locked, previous=previous,
                     annotator=new_annotator.username)
    return locked


def _new_comment(annotation: Annotation, author, body: str, *, object_id: int | None = None,
                 voxel: list[int] | None = None, parent: ReviewComment | None = None) -> ReviewComment:
    _check_comment_length(body)
    version = annotation.current_version
    if object_id is not None and not any(s["id"] == object_id for s in (version.segments if version else [])):
        raise WorkflowError(f"Object {object_id} is not in the current version.")
    if voxel is not None:
        shape = annotation.scan.pet.shape if annotation.scan.pet else []
        if len(voxel) != 3 or not all(isinstance(v, int) and 0 <= v < s for v, s in zip(voxel, shape, strict=False)):
            raise WorkflowError(f"Voxel {voxel} is not on the PET grid {shape}.")
    if parent is not None and parent.annotation_id != annotation.pk:
        raise WorkflowError("A reply must be on the same annotation as its parent.")
    return ReviewComment.objects.create(project_id=annotation.project_id, annotation=annotation, version=version,
                                        author=author, body=body, object_id=object_id, voxel=voxel, parent=parent)


def add_comment(annotation: Annotation, author, body: str, **where) -> ReviewComment:
    if not body.strip():
        raise WorkflowError("A comment needs a text.")
    with transaction.atomic():
        comment = _new_comment(annotation, author, body, **where)
        audit.record(annotation.project_id, author, "commented", annotation, comment=comment.pk)
        _notify_after_commit(annotation, "commented", author)
    return comment


# --- assignments ---------------------------------------------------------------------------------


def assign(scan: Scan, annotator, manager) -> Assignment:
    if not Membership.objects.filter(project_id=scan.project_id, user=annotator, is_annotator=True).exists():
        raise WorkflowError(f"{annotator.username} is not an annotator of this project.")
    with transaction.atomic():
        assignment, created = Assignment.objects.get_or_create(
            scan=scan, annotator=annotator, defaults={"project_id": scan.project_id, "assigned_by": manager})
        if not created:
            raise ConflictError(f"{annotator.username} is already assigned to this scan.")
        audit.record(scan.project_id, manager, "assigned", assignment, scan=scan.pk, annotator=annotator.username)
    return assignment


def unassign(assignment: Assignment, manager) -> None:
    with transaction.atomic():
        audit.record(assignment.project_id, manager, "unassigned", assignment, scan=assignment.scan_id,
                     annotator=assignment.annotator.username)
        assignment.delete()


# --- visibility -------------------------------------------------------------------------------------


def visible_annotations(membership: Membership):
    """Annotations this member may see. With blinded double reads, blinding follows the reading, not the
    roles: on a scan where the member has a reading of their own, they see another reader's work only
    once their own is submitted and the other is too, even when they are also a manager or reviewer.
    Managers and reviewers see every annotation of scans they do not read themselves."""
    queryset = Annotation.objects.filter(project=membership.project)
    if not membership.project.blinded_double_read:
        return queryset
    reviewed = [AnnotationState.SUBMITTED, AnnotationState.APPROVED]
    own = Annotation.objects.filter(project=membership.project, annotator=membership.user, is_consensus=False)
    visible = Q(annotator=membership.user) | Q(scan_id__in=own.filter(state__in=reviewed).values("scan_id"),
                                               state__in=reviewed)
    if membership.is_manager or membership.is_reviewer:
        visible |= ~Q(scan_id__in=own.values("scan_id"))
    return queryset.filter(visible)


# --- consensus and engine output -----------------------------------------------------------------


def merge_consensus(scan: Scan, reviewer, annotations: list[Annotation], method: str,
                    picks: dict[int, int] | None = None) -> Annotation:
    """A new consensus annotation (owned by the merging reviewer) that goes through review like any other."""
    if len(annotations) < 2 or any(a.scan_id != scan.pk or a.is_consensus for a in annotations):
        raise WorkflowError("Pick at least two readers' annotations of this scan.")
    if any(a.state not in (AnnotationState.SUBMITTED, AnnotationState.APPROVED) for a in annotations):
        raise TransitionError("Only submitted or approved annotations can be merged.")
    labels = list(Label.objects.filter(project_id=scan.project_id))
    lesion_values = {label.value for label in labels if label.kind == "lesion"}
    try:
        merged = agreement.merge([label_map(a.current_version) for a in annotations], method,
                                 [label.value for label in labels], picks)
    except ValueError as error:
        raise WorkflowError(str(error)) from None
    objects, pairs = agreement.objects_from_label_map(merged, lesion_values)
    label_ids = {label.value: label.pk for label in labels}
    with transaction.atomic():
        consensus = Annotation.objects.create(project_id=scan.project_id, scan=scan, annotator=reviewer,
                                              is_consensus=True)
        consensus.merged_from.set(annotations)
        audit.record(scan.project_id, reviewer, "consensus_created", consensus, method=method,
                     merged=[a.pk for a in annotations])
        save_version(consensus, reviewer, base_version_id=None, object_map=objects,
                     segments=[{"id": i, "label": label_ids[v]} for i, v in pairs], source="consensus",
                     message=f"{method} of annotations {', '.join(str(a.pk) for a in annotations)}")
    consensus.refresh_from_db()
    return consensus


def add_object(annotation: Annotation, author, *, base_version_id: int | None, label: Label, mask: np.ndarray,
               source: str, message: str = "") -> AnnotationVersion:
    """Save a new version that adds `mask` as one more object (it takes over voxels it overlaps)."""
    version = annotation.current_version
    pet = annotation.scan.pet
    objects = (read_mask(version) if version else np.zeros(tuple(pet.shape), dtype=np.uint16)).astype(np.uint16)
    segments = [dict(s) for s in version.segments] if version else []
    new_id = max([s["id"] for s in segments], default=0) + 1
    objects[mask] = new_id
    kept = set(np.unique(objects).tolist())
    segments = [s for s in segments if s["id"] in kept] + [{"id": new_id, "label": label.pk}]
    return save_version(annotation, author, base_version_id=base_version_id, object_map=objects, segments=segments,
                        source=source, message=message)
