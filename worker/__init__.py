"""Pure compute: segmentation engines, the SegAnyPET network and its training, click-simulation
evaluation and the synthetic phantom generator.

Nothing here imports Django, Celery or ``backend`` (import-linter contracts in ``make lint``, and
tests/worker/test_worker_is_pure.py), so it can be tested, trained and benchmarked on its own. The
Celery tasks that call it live in the Django app that owns the work (``backend/<app>/tasks.py``).
"""
