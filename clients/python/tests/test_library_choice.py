"""Which httpx the SDK integration builds its client with: the one the installed SDKs depend on."""
from importlib import metadata

import httpx
import pytest

from quotamesh import Client
from quotamesh import _transport


def requirements(table):
    def requires(name):
        if name not in table:
            raise metadata.PackageNotFoundError(name)
        return table[name]
    return requires


def test_older_sdks_that_depend_on_httpx_get_an_httpx_client(monkeypatch):
    monkeypatch.setattr(metadata, "requires", requirements({"openai": ["httpx<1,>=0.23.0", "anyio"]}))
    client = Client(base_url="http://127.0.0.1:9").httpx_client("openai")
    assert type(client) is httpx.Client


def test_sdks_that_depend_on_httpx2_get_an_httpx2_client(monkeypatch):
    httpx2 = pytest.importorskip("httpx2")
    monkeypatch.setattr(metadata, "requires", requirements({"anthropic": ["httpx2>=2.0; python_version >= '3.9'"]}))
    client = Client(base_url="http://127.0.0.1:9").async_httpx_client("anthropic")
    assert type(client) is httpx2.AsyncClient


def test_an_explicit_library_wins_and_a_wrong_one_is_refused(monkeypatch):
    monkeypatch.setattr(metadata, "requires", requirements({}))
    assert type(Client(base_url="http://127.0.0.1:9").httpx_client("x", library="httpx")) is httpx.Client
    with pytest.raises(ValueError, match="library"):
        _transport.http_library("requests")
