"""Celery tasks. Modules under `worker.tasks.segmentation` run on the `gpu` queue, the rest on `cpu`."""

from . import exports, ingest, quantification, segmentation  # noqa: F401  (registers the tasks)
