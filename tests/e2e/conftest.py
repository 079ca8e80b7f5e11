"""Fixtures of the browser tests: one seeded daphne server and one headless Chromium for the whole
e2e run (see harness.py for how they are set up)."""

from __future__ import annotations

import pytest

from .harness import Api, Reader, StudioServer, launch


@pytest.fixture(scope="session")
def studio_process(tmp_path_factory):
    """The running server itself (for `manage.py` commands against its database)."""
    server = StudioServer(tmp_path_factory.mktemp("e2e"))
    try:
        server.prepare()
        server.start()
    except RuntimeError as error:
        pytest.fail(str(error))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def studio_server(studio_process):
    return studio_process.url


@pytest.fixture(scope="session")
def playwright_instance():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(playwright_instance):
    browser = launch(playwright_instance)
    yield browser
    browser.close()


@pytest.fixture
def reader(browser, studio_server):
    """Factory of signed-in browser contexts: reader("annotator1")."""
    opened: list[Reader] = []

    def make(username: str) -> Reader:
        r = Reader(browser, studio_server, username)
        opened.append(r)
        r.login()
        return r

    yield make
    for r in opened:
        r.close()


@pytest.fixture(scope="session")
def api(studio_server):
    """Factory of token-authenticated REST clients: api("manager")."""
    clients: dict[str, Api] = {}

    def make(username: str) -> Api:
        if username not in clients:
            clients[username] = Api(studio_server, username)
        return clients[username]

    return make
