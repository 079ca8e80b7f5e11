import json

from django.core.management.base import BaseCommand

from backend.health.recovery import recover_stale


class Command(BaseCommand):
    help = ("Fail ingests and exports whose process died (no heartbeat for INGEST_STALE_S / EXPORT_STALE_S) "
            "and remove their staging folders. Run at start-up; Celery beat runs it periodically.")

    def add_arguments(self, parser):
        parser.add_argument("--stale-after", type=float, default=None,
                            help="seconds without a heartbeat (default: the settings)")

    def handle(self, *args, stale_after=None, **options):
        self.stdout.write(json.dumps(recover_stale(stale_after)))
