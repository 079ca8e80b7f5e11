from django.urls import path

from .consumers import ScanConsumer

websocket_urlpatterns = [
    path("ws/scans/<int:scan_id>/", ScanConsumer.as_asgi()),
]
