"""MaterialsProjectSource against a local server that replays recorded ``/materials/summary/`` responses.

The server speaks the API's paging (``_page``/``_per_page`` take precedence over ``_skip``/``_limit``),
projects ``_fields``, filters ``chemsys``/``material_ids``, checks the ``X-API-KEY`` header, and can
answer with error statuses first to exercise the retries.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from hybridmat.data.mp_source import FIELDS, MaterialsProjectError, MaterialsProjectSource
from hybridmat.data.records import RecordError, StructureRecord

FIXTURES = Path(__file__).parent / "fixtures" / "mp_api"
API_KEY = "0123456789abcdef0123456789abcdef"  # fake; mp-api requires 32 characters


@dataclass
class FakeMP:
    """Recorded responses, the requests received, and statuses to answer before succeeding."""

    url: str = ""
    requests: list[tuple[str, dict[str, str], str | None]] = field(default_factory=list)
    failures: list[int] = field(default_factory=list)

    def summary(self) -> list[dict[str, str]]:
        return [params for path, params, _ in self.requests if path == "/materials/summary/"]


def _summary_page(params: dict[str, str]) -> dict[str, Any]:
    recorded = json.loads((FIXTURES / "summary_Li-O.json").read_text())
    docs = recorded["data"]
    if "chemsys" in params:
        docs = [doc for doc in docs if doc["chemsys"] in params["chemsys"].split(",")]
    if "material_ids" in params:
        docs = [doc for doc in docs if doc["material_id"] in params["material_ids"].split(",")]
    if params.get("_sort_fields") == "material_id":
        docs = sorted(docs, key=lambda doc: doc["material_id"])
    if "_page" in params:
        per_page = int(params.get("_per_page", 100))
        skip, limit = (int(params["_page"]) - 1) * per_page, per_page
    else:
        skip, limit = int(params.get("_skip", 0)), int(params.get("_limit", 100))
    fields = params["_fields"].split(",")
    page = [{k: doc[k] for k in fields if k in doc} for doc in docs[skip : skip + limit]]
    return {"data": page, "errors": [], "meta": {**recorded["meta"], "total_doc": len(docs)}}


@pytest.fixture
def fake_mp(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeMP]:
    state = FakeMP()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlparse(self.path)
            params = {k: v[0] for k, v in parse_qs(url.query).items()}
            state.requests.append((url.path, params, self.headers.get("X-API-KEY")))
            if url.path == "/heartbeat":
                self._send(200, json.loads((FIXTURES / "heartbeat.json").read_text()))
            elif url.path != "/materials/summary/":
                self._send(404, {"detail": "Not Found"})
            elif self.headers.get("X-API-KEY") != API_KEY:
                self._send(401, {"detail": "Invalid or missing API key"})
            elif state.failures:
                status = state.failures.pop(0)
                self._send(status, {"detail": "try again"}, {"Retry-After": "0"} if status == 429 else {})
            else:
                self._send(200, _summary_page(params))

        def _send(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
            payload = json.dumps(body).encode()
            self.send_response(status)
            for key, value in {"Content-Type": "application/json", **(headers or {})}.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/"
    monkeypatch.setenv("MP_API_KEY", API_KEY)
    monkeypatch.delenv("MP_API_ENDPOINT", raising=False)
    yield state
    server.shutdown()
    server.server_close()


def test_streams_two_pages_with_the_right_query(fake_mp: FakeMP) -> None:
    items = list(MaterialsProjectSource(chemsys="Li-O", endpoint=fake_mp.url, chunk_size=3))
    assert [item.id for item in items] == ["mp-1097", "mp-1960", "mp-2345678", "mp-841"]
    assert isinstance(items[2], RecordError) and "no structure" in items[2].reason
    li2o = items[1]
    assert isinstance(li2o, StructureRecord) and li2o.formula == "Li2O"
    assert li2o.targets == {"e_form": -2.0701, "band_gap": 4.9811, "e_above_hull": 0.0}
    assert li2o.structure.site_properties["magmom"] == [0.0, 0.0, 0.0]
    assert "2025.09.25" in li2o.provenance
    pages = fake_mp.summary()
    assert [(p["_page"], p["_per_page"]) for p in pages] == [("1", "3"), ("2", "3")]
    assert all(p["chemsys"] == "Li-O" and p["_sort_fields"] == "material_id" for p in pages)
    assert set(pages[0]["_fields"].split(",")) == set(FIELDS)
    assert any(path == "/heartbeat" for path, _, _ in fake_mp.requests)
    assert {key for path, _, key in fake_mp.requests if path != "/heartbeat"} == {API_KEY}


def test_limit_stops_requests(fake_mp: FakeMP) -> None:
    items = list(MaterialsProjectSource(chemsys="Li-O", endpoint=fake_mp.url, limit=2))
    assert [item.id for item in items] == ["mp-1097", "mp-1960"]
    assert [(p["_page"], p["_per_page"]) for p in fake_mp.summary()] == [("1", "2")]


def test_material_ids_in_request_order_with_missing_ids(fake_mp: FakeMP) -> None:
    items = list(MaterialsProjectSource(material_ids=["mp-841", "mp-99999", "mp-1960"], endpoint=fake_mp.url))
    assert [item.id for item in items] == ["mp-841", "mp-99999", "mp-1960"]
    assert isinstance(items[1], RecordError) and "not returned" in items[1].reason
    assert isinstance(items[0], StructureRecord) and items[0].formula == "Li2O2"
    (params,) = fake_mp.summary()
    assert params["material_ids"] == "mp-841,mp-99999,mp-1960"


def test_503_is_retried_by_the_source(fake_mp: FakeMP) -> None:
    fake_mp.failures = [503]  # mp-api does not retry 503
    items = list(MaterialsProjectSource(chemsys="Li-O", endpoint=fake_mp.url, backoff_s=0.0))
    assert len(items) == 4
    assert [p["_page"] for p in fake_mp.summary()] == ["1", "1"]


def test_429_is_retried_by_mp_api_itself(fake_mp: FakeMP) -> None:
    fake_mp.failures = [429]
    items = list(MaterialsProjectSource(chemsys="Li-O", endpoint=fake_mp.url, max_retries=0))
    assert len(items) == 4
    assert [p["_page"] for p in fake_mp.summary()] == ["1", "1"]


def test_gives_up_after_max_retries_without_leaking_the_key(fake_mp: FakeMP) -> None:
    fake_mp.failures = [503] * 3
    source = MaterialsProjectSource(chemsys="Li-O", endpoint=fake_mp.url, max_retries=2, backoff_s=0.0)
    with pytest.raises(MaterialsProjectError, match="after 3 attempt") as raised:
        list(source)
    assert len(fake_mp.summary()) == 3
    assert API_KEY not in str(raised.value) and API_KEY not in source.describe()
    assert API_KEY not in source.fingerprint()


def test_wrong_key_fails_without_retry(fake_mp: FakeMP, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MP_API_KEY", "f" * 32)
    with pytest.raises(MaterialsProjectError, match="401") as raised:
        list(MaterialsProjectSource(chemsys="Li-O", endpoint=fake_mp.url, backoff_s=0.0))
    assert len(fake_mp.summary()) == 1 and "f" * 32 not in str(raised.value)


def test_unreachable_endpoint_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MP_API_KEY", API_KEY)
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}/"
    source = MaterialsProjectSource(chemsys="Li-O", endpoint=closed, max_retries=1, backoff_s=0.0)
    with pytest.raises(MaterialsProjectError, match="connection at .* failed after 2 attempt"):
        list(source)


def test_endpoint_from_environment(fake_mp: FakeMP, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MP_API_ENDPOINT", fake_mp.url)
    assert len(list(MaterialsProjectSource(chemsys="Li-O"))) == 4


def test_fingerprint_tracks_the_query(fake_mp: FakeMP) -> None:
    first = MaterialsProjectSource(chemsys="Li-O", endpoint=fake_mp.url).fingerprint()
    assert first == MaterialsProjectSource(chemsys="Li-O", endpoint=fake_mp.url).fingerprint()
    assert first != MaterialsProjectSource(chemsys="Li-O", endpoint=fake_mp.url, limit=1).fingerprint()


def test_requires_a_key_and_a_selection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MP_API_KEY", raising=False)
    with pytest.raises(ValueError, match="MP_API_KEY"):
        MaterialsProjectSource(chemsys="Li-O")
    monkeypatch.setenv("MP_API_KEY", API_KEY)
    with pytest.raises(ValueError, match="refusing"):
        MaterialsProjectSource()
    with pytest.raises(ValueError, match="chunk_size"):
        MaterialsProjectSource(chemsys="Li-O", chunk_size=5000)
    assert MaterialsProjectSource.targets == ("e_form", "band_gap", "e_above_hull")
