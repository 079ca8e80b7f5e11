from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from backend.annotations.models import Annotation
from backend.imaging.models import Scan
from backend.projects.models import Label


class InteractiveSession(models.Model):
    """One reader segmenting one object with prompts; survives closed tabs and server restarts."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    scan = models.ForeignKey(Scan, on_delete=models.CASCADE, related_name="interactive_sessions")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    label = models.ForeignKey(Label, on_delete=models.CASCADE, related_name="+")
    engine = models.CharField(max_length=50)
    annotation = models.ForeignKey(Annotation, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # Every prompt received, in order: [{"seq": n, "point": {...}} | {"seq": n, "box": [...]}].
    prompts = models.JSONField(default=list)
    # How many of `prompts` are in effect (undo lowers it, redo raises it, a new prompt cuts the rest).
    active_count = models.PositiveIntegerField(default=0)
    latest_seq = models.BigIntegerField(default=-1)
    # Prompts up to this seq were cancelled (client went away): workers skip them.
    cancelled_through_seq = models.BigIntegerField(default=-1)
    # Working mask per active_count, so undo/redo need no engine run: {"3": {"file": ..., "sha256": ..., "seq": n}}.
    masks = models.JSONField(default=dict)
    worker = models.CharField(max_length=200, blank=True, help_text="Celery worker holding the embedding cache")
    is_open = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]
        indexes = [models.Index(fields=["scan", "user", "label", "is_open"])]

    def __str__(self) -> str:
        return f"session {self.pk} ({self.user} on {self.scan}, {self.label})"


class PromptLog(models.Model):
    """Server-side log of every prompt and mask change; enough to replay a session."""

    session = models.ForeignKey(InteractiveSession, on_delete=models.CASCADE, related_name="log")
    seq = models.BigIntegerField()
    action = models.CharField(max_length=20)  # prompt, undo, redo, reset, accept, superseded, error
    payload = models.JSONField(default=dict)
    engine = models.CharField(max_length=50, blank=True)
    model_version = models.CharField(max_length=100, blank=True)
    result_sha256 = models.CharField(max_length=64, blank=True)
    voxels = models.BigIntegerField(null=True)
    timings = models.JSONField(default=dict)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]


class ScanPresence(models.Model):
    """Who has a scan open (one row per connection), and what they are doing."""

    scan = models.ForeignKey(Scan, on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    channel_name = models.CharField(max_length=200, unique=True)
    activity = models.CharField(max_length=100, blank=True)
    since = models.DateTimeField(auto_now_add=True)
    seen_at = models.DateTimeField(auto_now=True)
