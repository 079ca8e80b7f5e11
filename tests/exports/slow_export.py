"""Imported only by test workers (celery --include): every export scan step takes 3 s, so that a
test can kill the worker in the middle of an export."""

import time

from backend.exports import services

_original = services.build_export


def _slow(project, settings, sources, out_dir, step):
    def slow_step(scan_id, message):
        time.sleep(3)
        step(scan_id, message)

    return _original(project, settings, sources, out_dir, slow_step)


services.build_export = _slow
