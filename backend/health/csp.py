"""Content-Security-Policy on every response.

The viewer (frontend/dist) is one module script and one stylesheet from /static/, a module worker
from /static/ (Cornerstone3D's compute worker), WebGL, and fetch/WebSocket calls to this origin, so
'self' covers it. 'wasm-unsafe-eval' lets Cornerstone's WebAssembly codecs compile (it allows no
JavaScript eval); blob: workers are how some of its loaders start theirs. Styles allow 'unsafe-inline'
for the style attributes of the server pages and of the viewer's libraries; scripts never do.
The Swagger page (drf-spectacular) loads its bundle from its CDN with an inline start-up script, so
it gets a policy of its own.
"""

from __future__ import annotations

from django.conf import settings

SWAGGER_CDN = "https://cdn.jsdelivr.net"
API_DOCS_POLICY = (f"default-src 'self'; script-src 'self' 'unsafe-inline' {SWAGGER_CDN}; "
                   f"style-src 'self' 'unsafe-inline' {SWAGGER_CDN}; img-src 'self' data: {SWAGGER_CDN}; "
                   "connect-src 'self'; object-src 'none'; base-uri 'self'; frame-ancestors 'none'")


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if "Content-Security-Policy" not in response:
            docs = request.path.startswith("/api/docs/")
            response["Content-Security-Policy"] = API_DOCS_POLICY if docs else settings.CONTENT_SECURITY_POLICY
        return response
