"""Materials Project structures and labels through mp-api's summary search.

Streaming: ``MPRester.materials.summary.search`` collects every page of a query into one list before it
returns, so this source asks for one page at a time (``_page``/``_per_page``, sorted by
``material_id``) and yields each page's records before fetching the next; ``limit`` stops the requests.
Material ids are fetched in batches of :data:`ID_BATCH`.

Retries: mp-api's session (urllib3 ``Retry``) already retries connection errors and HTTP 429/502/504
(and 503 when it carries ``Retry-After``) three times within about a second, honouring ``Retry-After``;
its ``/heartbeat`` requests at construction are not retried at all. It does not retry 500, a bare 503 or
outages longer than that, so each connection and page request here gets ``max_retries`` further
attempts with exponential backoff (``backoff_s * 2**attempt``) on connection errors, timeouts and HTTP
429/5xx; other errors (a bad key, a bad query) fail at once with :class:`MaterialsProjectError`.

Timeouts: mp-api's own requests carry a 20 s read timeout, but its ``/heartbeat`` request has none, so an
endpoint that accepts the connection and never answers would block forever. Every attempt therefore runs
with a bound of ``timeout_s`` (no answer by then counts as a transient timeout and is retried), and one
request with all its retries gives up after ``deadline_s``; both are named in the error.

The API key is read only from ``$MP_API_KEY`` and never appears in messages, ``describe()`` or
``fingerprint()``. The endpoint is ``endpoint``, else ``$MP_API_ENDPOINT``, else mp-api's default.
"""

from __future__ import annotations

import functools
import itertools
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from hybridmat.console import UserError
from hybridmat.data.cif_dir import parse_target, short_message
from hybridmat.data.records import RecordError, SourceItem, StructureRecord
from hybridmat.data.source import Source, hash_strings
from hybridmat.data.tables import structure_from_dict

API_KEY_ENV = "MP_API_KEY"
ENDPOINT_ENV = "MP_API_ENDPOINT"
#: Canonical target name -> summary field.
TARGET_FIELDS = {
    "e_form": "formation_energy_per_atom",
    "band_gap": "band_gap",
    "e_above_hull": "energy_above_hull",
}
FIELDS = ("material_id", "structure", *TARGET_FIELDS.values())
#: The API's largest page.
MAX_PAGE = 1000
#: Material ids per request (keeps the URL short).
ID_BATCH = 100
_STATUS = re.compile(r"status code (\d{3})")

T = TypeVar("T")


class MaterialsProjectError(UserError):
    """A Materials Project request failed for good (after retries, or for a non-transient reason)."""


class AttemptTimeout(TimeoutError):
    """One request attempt got no answer within its bound (transient: retried until the deadline)."""


def call_within(seconds: float, call: Callable[[], T]) -> T:
    """``call()``'s result, or :class:`AttemptTimeout` after ``seconds``. The call runs in a daemon thread,
    because a blocked socket read without a timeout cannot be interrupted; that thread ends with the process."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # handed to the caller's thread below
            outcome["error"] = exc

    worker = threading.Thread(target=run, name="mp-request", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise AttemptTimeout(f"no answer within {seconds:g} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from) is worth retrying: a connection error, a
    timeout, a non-JSON heartbeat (a gateway error page), or an HTTP 429/5xx answer."""
    import requests

    transient = (
        requests.ConnectionError,
        requests.Timeout,
        AttemptTimeout,
        requests.exceptions.RetryError,
        requests.exceptions.ChunkedEncodingError,
        requests.exceptions.JSONDecodeError,
    )
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, transient):
            return True
        status = _STATUS.search(str(seen))
        if status and (status.group(1) == "429" or status.group(1).startswith("5")):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class MaterialsProjectSource(Source):
    """Structures with ``e_form`` (eV/atom), ``band_gap`` (eV) and ``e_above_hull`` (eV/atom) from MP.

    Select with ``chemsys`` (``"Li-Fe-O"``: exactly that system), ``elements`` (materials containing all
    of them) and/or ``material_ids`` (one item per requested id, in the given order; an id MP does not
    return yields a ``RecordError``). Other queries come sorted by ``material_id``. ``chunk_size`` is the
    page size (at most 1000). Raises ``ValueError`` when ``$MP_API_KEY`` is unset, nothing selects rows
    (neither a filter nor a ``limit``), or an option is out of range; iterating raises
    :class:`MaterialsProjectError` when a request fails for good.
    """

    targets = tuple(TARGET_FIELDS)

    def __init__(
        self,
        chemsys: str | None = None,
        elements: Sequence[str] | None = None,
        material_ids: Sequence[str] | None = None,
        endpoint: str | None = None,
        limit: int | None = None,
        max_retries: int = 4,
        chunk_size: int = MAX_PAGE,
        backoff_s: float = 1.0,
        timeout_s: float = 60.0,
        deadline_s: float = 300.0,
    ) -> None:
        self._api_key = os.environ.get(API_KEY_ENV, "").strip()
        if not self._api_key:
            raise ValueError(
                f"${API_KEY_ENV} is not set: export {API_KEY_ENV}=<your key from "
                "https://next-gen.materialsproject.org/api> to query the Materials Project"
            )
        if chemsys is None and not elements and not material_ids and limit is None:
            raise ValueError(
                "give chemsys, elements, material_ids or a limit; refusing to download "
                "all of the Materials Project"
            )
        if not 1 <= chunk_size <= MAX_PAGE:
            raise ValueError(f"chunk_size must be in 1..{MAX_PAGE}, got {chunk_size}")
        if (limit is not None and limit < 0) or max_retries < 0 or backoff_s < 0:
            raise ValueError("limit, max_retries and backoff_s must be >= 0")
        if not 0 < timeout_s <= deadline_s:
            raise ValueError(f"need 0 < timeout_s <= deadline_s, got {timeout_s}, {deadline_s}")
        self.chemsys = chemsys
        self.elements = list(elements) if elements else None
        self.material_ids = list(dict.fromkeys(material_ids)) if material_ids else None
        self.endpoint = endpoint or os.environ.get(ENDPOINT_ENV) or None
        self.limit = limit
        self.max_retries = max_retries
        self.chunk_size = chunk_size
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self.deadline_s = deadline_s

    def _retry(self, what: str, call: Callable[[], T]) -> T:
        """``call()``, each attempt bounded by ``timeout_s``, retried with exponential backoff while it fails
        transiently, until ``max_retries`` more attempts or ``deadline_s`` since the first have passed."""
        attempt = 0
        started = time.monotonic()
        where = self.endpoint or "the mp-api default endpoint"
        while True:
            left = self.deadline_s - (time.monotonic() - started)
            try:
                return call_within(min(self.timeout_s, max(left, 0.0)), call)
            except Exception as exc:  # classified below; mp-api raises MPRestError and requests' errors
                if not is_transient(exc):
                    raise MaterialsProjectError(
                        f"Materials Project {what} failed: {short_message(exc)}"
                    ) from exc
                pause = self.backoff_s * 2**attempt
                elapsed = time.monotonic() - started
                if attempt == self.max_retries or elapsed + pause >= self.deadline_s:
                    raise MaterialsProjectError(
                        f"Materials Project {what} at {where} failed after {attempt + 1} attempt(s) in "
                        f"{elapsed:.0f} s (timeout {self.timeout_s:g} s per attempt, deadline "
                        f"{self.deadline_s:g} s): {short_message(exc)}"
                    ) from exc
            time.sleep(pause)
            attempt += 1

    def _connect(self) -> Any:
        """An ``MPRester`` returning plain dicts (its constructor asks ``/heartbeat`` for the version)."""
        from mp_api.client import MPRester

        return self._retry(
            "connection",
            lambda: MPRester(
                api_key=self._api_key,
                endpoint=self.endpoint,
                use_document_model=False,
                mute_progress_bars=True,
            ),
        )

    def _filters(self) -> dict[str, Any]:
        filters: dict[str, Any] = {"fields": list(FIELDS)}
        if self.chemsys is not None:
            filters["chemsys"] = self.chemsys
        if self.elements:
            filters["elements"] = self.elements
        return filters

    def __iter__(self) -> Iterator[SourceItem]:
        return itertools.islice(self._items(), self.limit)

    def _items(self) -> Iterator[SourceItem]:
        with self._connect() as rester:
            provenance = f"Materials Project {rester.db_version or '(unknown version)'}"
            search = functools.partial(rester.materials.summary.search, **self._filters())
            if self.material_ids:
                yield from self._by_ids(search, provenance)
            else:
                yield from self._by_pages(search, provenance)

    def _by_ids(self, search: Callable[..., list[dict]], provenance: str) -> Iterator[SourceItem]:
        """One item per requested id, in order, fetched :data:`ID_BATCH` ids per request."""
        ids = self.material_ids or []
        for start in range(0, len(ids), ID_BATCH):
            batch = ids[start : start + ID_BATCH]
            query = functools.partial(search, material_ids=batch, chunk_size=len(batch), num_chunks=1)
            found = {
                str(doc.get("material_id")): doc for doc in self._retry(f"query for {batch[0]}...", query)
            }
            for material_id in batch:
                doc = found.get(material_id)
                if doc is None:
                    yield RecordError(
                        material_id,
                        "read",
                        "not returned by the Materials Project summary "
                        "(unknown or deprecated id, or excluded by chemsys/elements)",
                    )
                else:
                    yield self._record(doc, provenance)

    def _by_pages(self, search: Callable[..., list[dict]], provenance: str) -> Iterator[SourceItem]:
        """Every match, sorted by ``material_id``, one page per request until a short page."""
        per_page = max(1, min(self.chunk_size, self.limit or self.chunk_size))
        for page in itertools.count(1):
            query = functools.partial(search, chunk_size=per_page, _page=page, _sort_fields="material_id")
            docs = self._retry(f"query page {page}", query)
            for doc in docs:
                yield self._record(doc, provenance)
            if len(docs) < per_page:
                return

    @staticmethod
    def _record(doc: Mapping[str, Any], provenance: str) -> SourceItem:
        """One summary document as a record, or a ``read`` error saying what is wrong with it."""
        material_id = str(doc.get("material_id") or "")
        if doc.get("structure") is None:
            return RecordError(material_id, "read", "the Materials Project returned no structure")
        try:
            targets = {name: parse_target(name, doc.get(field)) for name, field in TARGET_FIELDS.items()}
            structure = structure_from_dict(doc["structure"])
        except Exception as exc:  # any parser failure becomes this row's error, never the stream's
            return RecordError(material_id, "read", short_message(exc))
        return StructureRecord(material_id, structure, targets, provenance=provenance)

    def fingerprint(self) -> str:
        """SHA-256 of the query options and the database version (one ``/heartbeat`` request)."""
        with self._connect() as rester:
            version = rester.db_version
        return hash_strings(
            "materials_project",
            self.endpoint or "default",
            version,
            repr(self.chemsys),
            repr(self.elements),
            repr(self.material_ids),
            repr(self.limit),
        )

    def describe(self) -> str:
        query = {
            k: v
            for k, v in (
                ("chemsys", self.chemsys),
                ("elements", self.elements),
                ("material_ids", self.material_ids),
                ("limit", self.limit),
            )
            if v
        }
        ids = query.get("material_ids")
        if ids and len(ids) > 5:
            query["material_ids"] = f"{len(ids)} ids"
        return f"MaterialsProjectSource({query}, endpoint={self.endpoint or 'mp-api default'})"
