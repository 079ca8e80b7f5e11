"""F9: the token endpoint's throttle identifies a client by its address, which a client cannot choose:
REMOTE_ADDR by default, and with NUM_PROXIES trusted proxies the address the nearest proxy appended."""

from __future__ import annotations

from unittest import mock

from django.core.cache import cache
from django.test import Client, override_settings
from rest_framework.throttling import ScopedRateThrottle

from tests.base import BaseTestCase


class ThrottleClientAddressTestCase(BaseTestCase):
    def codes(self, forwarded_for: list[str], remote: str = "10.9.8.7") -> list[int]:
        cache.clear()
        client = Client(REMOTE_ADDR=remote)
        with mock.patch.object(ScopedRateThrottle, "THROTTLE_RATES", {"auth": "3/min"}):
            return [client.post("/api/auth/token/", {"username": "alice_annotator", "password": "x"},
                                HTTP_X_FORWARDED_FOR=value).status_code for value in forwarded_for]

    def test_a_rotated_forwarded_for_header_is_ignored_by_default(self):
        self.assertEqual(self.codes([f"203.0.113.{i}" for i in range(4)]), [400, 400, 400, 429])

    def test_with_one_trusted_proxy_the_address_it_appended_counts(self):
        from django.conf import settings

        with override_settings(REST_FRAMEWORK={**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}):
            # The client forges the left part; the proxy appends the real address on the right.
            forged = [f"198.51.100.{i}, 203.0.113.5" for i in range(4)]
            self.assertEqual(self.codes(forged), [400, 400, 400, 429])
            distinct = [f"203.0.113.{i}" for i in range(4)]  # four real clients behind the proxy
            self.assertEqual(self.codes(distinct), [400, 400, 400, 400])
        cache.clear()

    def test_the_setting_defaults_to_no_proxy(self):
        from django.conf import settings

        self.assertEqual(settings.REST_FRAMEWORK["NUM_PROXIES"], 0)
        self.assertEqual(settings.AXES_IPWARE_META_PRECEDENCE_ORDER, ("REMOTE_ADDR",))
