from django.apps import AppConfig


class InteractiveConfig(AppConfig):
    name = "backend.interactive"
    label = "interactive"

    def ready(self) -> None:
        from django.db.models.signals import post_delete

        from backend.projects.models import Membership

        from .engines import configure_engines
        from .events import membership_removed

        configure_engines()
        post_delete.connect(membership_removed, sender=Membership, dispatch_uid="close_sockets_of_removed_member")
