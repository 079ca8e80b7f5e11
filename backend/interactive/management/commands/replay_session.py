from django.core.management.base import BaseCommand, CommandError

from backend.interactive.models import InteractiveSession
from backend.interactive.sessions import replay


class Command(BaseCommand):
    help = "Replay an interactive session from its prompt log and check every mask against its logged checksum."

    def add_arguments(self, parser) -> None:
        parser.add_argument("session", help="session id (UUID)")

    def handle(self, *args, session: str, **options) -> None:
        try:
            rows = replay(session)
        except (InteractiveSession.DoesNotExist, ValueError):
            raise CommandError(f"No session {session!r}.") from None
        mismatches = 0
        for row in rows:
            if row["action"] == "mask":
                mismatches += not row["match"]
                verdict = "same" if row["match"] else "DIFFERENT"
                self.stdout.write(f"seq {row['seq']:>6}  mask    {verdict}  {row['replayed'][:16]}")
            else:
                self.stdout.write(f"seq {row['seq']:>6}  accept  {'edited by the reader' if row['edited'] else ''}")
        if mismatches:
            raise CommandError(f"{mismatches} of {sum(r['action'] == 'mask' for r in rows)} masks differ.")
        self.stdout.write(self.style.SUCCESS(f"Replayed {len(rows)} steps; every mask matches its log."))
