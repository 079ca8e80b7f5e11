"""What the annotations app announces, so apps that build on it (statistics, PACS push) subscribe
instead of being called from here: annotations depends on none of them."""

from django.dispatch import Signal

# Sent after a version's transaction commits. Arguments: version_id (int).
version_saved = Signal()
