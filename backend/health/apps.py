from django.apps import AppConfig


class HealthConfig(AppConfig):
    name = "backend.health"
    label = "health"
