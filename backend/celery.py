"""Celery app: `gpu` queue runs segmentation engines, `cpu` queue ingest, statistics, export."""

import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backend.settings")

app = Celery("seganypet")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = (Queue("cpu"), Queue("gpu"))
app.conf.task_default_queue = "cpu"
# Tasks declare their queue by module: everything that runs a model goes to `gpu`.
app.conf.task_routes = {"backend.interactive.tasks.*": {"queue": "gpu"}}
app.conf.task_acks_late = True
app.conf.task_reject_on_worker_lost = True
app.conf.worker_prefetch_multiplier = 1
app.conf.broker_connection_retry_on_startup = True
# Each Django app's tasks.py (backend/<app>/tasks.py): the app that owns the work owns its tasks.
app.autodiscover_tasks()
