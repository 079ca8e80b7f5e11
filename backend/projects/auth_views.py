from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.throttling import ScopedRateThrottle


class ThrottledObtainAuthToken(ObtainAuthToken):
    """POST username/password, get an API token (for scripts); rate-limited per client."""

    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "auth"
