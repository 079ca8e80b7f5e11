"""Talking to a DICOMweb source with dicomweb-client: sessions, errors as clear messages, search.

Every failure of the remote side becomes a PacsError with a message for the user and a flag that
says whether trying again later can help (the PACS was down or stopped answering) or not (the
credentials were refused, the PACS rejected what we sent).
"""

from __future__ import annotations

import logging
import queue
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset

from . import secrets
from .models import AuthKind, DicomWebSource

log = logging.getLogger(__name__)

TIMEOUT_S = (5.0, 60.0)  # connect, read: a PACS that stops answering fails the call instead of hanging it


class PacsError(Exception):
    """The PACS could not do what was asked; the message is for the user and holds no secret."""

    status_code = 502
    code = "pacs_error"
    retryable = False

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra


class PacsUnavailable(PacsError):
    """Unreachable, timed out, or a 5xx answer: trying again later can help."""

    code = "pacs_unavailable"
    retryable = True


class PacsAuthError(PacsError):
    code = "pacs_auth_failed"


class PacsRejected(PacsError):
    """The PACS answered, and said no (4xx, or a STOW-RS response listing failed instances)."""

    code = "pacs_rejected"


class _Session(requests.Session):
    """A requests session with a default timeout, and wildcards sent as '*'.

    dicomweb-client percent-encodes query values; Orthanc (1.10) matches '%2A' literally instead of as
    the '*' wildcard, so a name search never matched. '*' is a legal character in a query string.
    """

    def request(self, method, url, *args, **kwargs):  # type: ignore[override]
        kwargs.setdefault("timeout", TIMEOUT_S)
        if "?" in url:
            path, query = url.split("?", 1)
            url = f"{path}?{query.replace('%2A', '*')}"
        return super().request(method, url, *args, **kwargs)


def _session(source: DicomWebSource) -> requests.Session:
    session = _Session()
    try:
        secret = secrets.resolve(source.secret_ref, source.secret_encrypted)
    except secrets.SecretError as error:
        raise PacsAuthError(str(error)) from None
    if source.auth == AuthKind.BASIC:
        session.auth = (source.username, secret)
    elif source.auth == AuthKind.BEARER:
        session.headers["Authorization"] = f"Bearer {secret}"
    return session


def _describe(source: DicomWebSource, error: Exception, doing: str) -> PacsError:
    where = f"the PACS '{source.name}'"
    if isinstance(error, PacsError):
        return error
    if isinstance(error, requests.HTTPError) and error.response is not None:
        status = error.response.status_code
        if status in (401, 403):
            return PacsAuthError(f"{where} refused the credentials while {doing} (HTTP {status}); check the "
                                 "source's user name and secret.", http_status=status)
        if status >= 500 or status in (408, 429):
            return PacsUnavailable(f"{where} failed while {doing} (HTTP {status}); try again later.",
                                   http_status=status)
        return PacsRejected(f"{where} refused {doing} (HTTP {status}: {_short(error.response.text)}).",
                            http_status=status)
    if isinstance(error, requests.Timeout):
        return PacsUnavailable(f"{where} stopped answering while {doing} (timed out); try again later.")
    if isinstance(error, requests.RequestException | ConnectionError):
        return PacsUnavailable(f"{where} cannot be reached while {doing} ({type(error).__name__}); it may be down. "
                               "Try again later.")
    return PacsError(f"{where} sent an answer that cannot be read while {doing} ({type(error).__name__}).")


def _short(text: str) -> str:
    return re.sub(r"\s+", " ", text or "")[:200]


EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
RECEIVE_AHEAD = 16  # instances received but not yet written, at most (a CT slice is ~0.5 MB)
_END = object()


def _boundary(content_type: str) -> bytes:
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if not content_type.startswith("multipart/related") or match is None:
        raise PacsError(f"The PACS answered a retrieve with {content_type[:80]!r} instead of multipart DICOM.")
    return match.group(1).encode()


def split_multipart(chunks: Iterator[bytes], boundary: bytes) -> Iterator[bytes]:
    """Bodies of a multipart message read in chunks (RFC 2046), each as soon as it is complete.

    An answer that ends before its closing delimiter was cut off: PacsUnavailable, so the import resumes."""
    delimiter = b"\r\n--" + boundary
    buffer = bytearray(b"\r\n")  # the first delimiter opens the body, without a line break before it
    search_from, opened, after_delimiter = 0, False, False
    for chunk in chunks:
        buffer += chunk
        while True:
            if after_delimiter:  # "--" right after a delimiter closes the message
                if len(buffer) < 2:
                    break
                if buffer.startswith(b"--"):
                    return
                after_delimiter = False
            found = buffer.find(delimiter, search_from)
            if found < 0:
                search_from = max(0, len(buffer) - len(delimiter))
                break
            part = bytes(buffer[:found])
            del buffer[:found + len(delimiter)]
            search_from, after_delimiter = 0, True
            if opened:
                headers_end = part.find(b"\r\n\r\n")
                if headers_end < 0:
                    raise PacsError("The PACS sent a multipart part without headers.")
                yield part[headers_end + 4:]
            opened = True
    raise PacsUnavailable("The PACS's answer ended before its last instance (the connection was cut).")


def tag(item: dict, keyword_tag: str, default: Any = "") -> Any:
    """First value of a DICOM JSON attribute (a person name as its alphabetic text)."""
    values = (item.get(keyword_tag) or {}).get("Value") or []
    if not values:
        return default
    value = values[0]
    if isinstance(value, dict):
        return value.get("Alphabetic", default)
    return value


def tag_values(item: dict, keyword_tag: str) -> list:
    return list((item.get(keyword_tag) or {}).get("Value") or [])


STUDY_UID, SERIES_UID, SOP_UID, SOP_CLASS = "0020000D", "0020000E", "00080018", "00080016"
MODALITY, MODALITIES_IN_STUDY = "00080060", "00080061"
PATIENT_ID, PATIENT_NAME, STUDY_DATE = "00100020", "00100010", "00080020"
STUDY_DESCRIPTION, SERIES_DESCRIPTION, ACCESSION = "00081030", "0008103E", "00080050"
SERIES_INSTANCES, STUDY_SERIES, STUDY_INSTANCES = "00201209", "00201206", "00201208"


@dataclass
class SeriesInfo:
    uid: str
    modality: str
    description: str
    instances: int

    def to_dict(self) -> dict:
        return {"uid": self.uid, "modality": self.modality, "description": self.description,
                "instances": self.instances}


class PacsClient:
    """QIDO-RS, WADO-RS and STOW-RS of one source (each may have its own base URL)."""

    def __init__(self, source: DicomWebSource) -> None:
        self.source = source
        session = _session(source)
        self._session = session
        self._clients: dict[str, DICOMwebClient] = {}
        for service, url in (("qido", source.qido_url), ("wado", source.wado_url), ("stow", source.stow_url)):
            if url:
                client = DICOMwebClient(url=url.rstrip("/"), session=session, timeout=TIMEOUT_S)
                client.set_http_retry_params(retry=False)  # our callers decide when to try again
                self._clients[service] = client

    def _client(self, service: str) -> DICOMwebClient:
        if service not in self._clients:
            raise PacsRejected(f"The source '{self.source.name}' has no {service.upper()}-RS URL.")
        return self._clients[service]

    def _call(self, doing: str, function, *args, **kwargs):
        try:
            return function(*args, **kwargs)
        except Exception as error:  # noqa: BLE001 - requests and the multipart parser raise many types
            raise _describe(self.source, error, doing) from None

    # --- QIDO-RS ---------------------------------------------------------------------------------

    def search_studies(self, filters: dict[str, str], limit: int = 100) -> list[dict]:
        return self._call("searching studies", self._client("qido").search_for_studies, search_filters=filters,
                          limit=limit)

    def find_study(self, study_uid: str) -> dict | None:
        found = self._call("looking up the study", self._client("qido").search_for_studies,
                           search_filters={"StudyInstanceUID": study_uid})
        return next((s for s in found if tag(s, STUDY_UID) == study_uid), None)

    def list_series(self, study_uid: str) -> list[SeriesInfo]:
        found = self._call("listing the study's series", self._client("qido").search_for_series, study_uid)
        return [SeriesInfo(str(tag(s, SERIES_UID)), str(tag(s, MODALITY)), str(tag(s, SERIES_DESCRIPTION)),
                           int(tag(s, SERIES_INSTANCES, 0) or 0)) for s in found]

    def list_instances(self, study_uid: str, series_uid: str) -> list[str]:
        """SOP Instance UIDs of a series, each once (a PACS may list an instance twice)."""
        found = self._call("listing the series' instances", self._client("qido").search_for_instances,
                           study_uid, series_uid, get_remaining=True)
        return list(dict.fromkeys(str(tag(i, SOP_UID)) for i in found if tag(i, SOP_UID)))

    # --- WADO-RS ---------------------------------------------------------------------------------

    def iter_series(self, study_uid: str, series_uid: str) -> Iterator[bytes]:
        """The series' instances as the PACS sends them (one streamed multipart WADO-RS answer), as bytes.

        The parts are written to staging as received: decoding each into a pydicom Dataset and encoding it
        again (what dicomweb-client's iter_series does) cost twice the time of the transfer itself, and the
        staged file is then byte for byte the PACS's copy. A thread receives and splits the answer while
        the caller checks and writes the previous instances (about twice as fast as taking turns); at most
        RECEIVE_AHEAD instances wait in memory. Close the iterator (contextlib.closing) when stopping early."""
        parts: queue.Queue = queue.Queue(maxsize=RECEIVE_AHEAD)
        stop = threading.Event()

        def hand(item: object) -> bool:
            while not stop.is_set():
                try:
                    parts.put(item, timeout=0.2)
                    return True
                except queue.Full:
                    continue
            return False

        def receive() -> None:
            bodies = self._receive_series(study_uid, series_uid)
            try:
                for body in bodies:
                    if not hand(body):
                        return
                hand(_END)
            except BaseException as error:  # noqa: BLE001 - handed over to the caller's thread
                hand(error)
            finally:
                bodies.close()

        thread = threading.Thread(target=receive, name=f"wado-rs-{series_uid[-8:]}", daemon=True)
        thread.start()
        try:
            while True:
                item = parts.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            thread.join(timeout=TIMEOUT_S[1])

    def _receive_series(self, study_uid: str, series_uid: str) -> Iterator[bytes]:
        url = f"{self.source.wado_url.rstrip('/')}/studies/{study_uid}/series/{series_uid}"
        accept = f'multipart/related; type="application/dicom"; transfer-syntax={EXPLICIT_VR_LITTLE_ENDIAN}'
        response = None
        try:
            response = self._session.get(url, headers={"Accept": accept}, stream=True)
            response.raise_for_status()
            content_type = response.headers.get("Content-Type", "")
            if content_type.startswith("application/dicom"):  # one instance, not wrapped (seen in the wild)
                yield response.content
                return
            boundary = _boundary(content_type)
            yield from split_multipart(response.iter_content(chunk_size=1 << 20), boundary)
        except Exception as error:  # noqa: BLE001
            raise _describe(self.source, error, "retrieving the series") from None
        finally:
            if response is not None:
                response.close()

    def retrieve_instance(self, study_uid: str, series_uid: str, sop_uid: str) -> Dataset:
        return self._call("retrieving an instance", self._client("wado").retrieve_instance, study_uid, series_uid,
                          sop_uid)

    # --- STOW-RS ---------------------------------------------------------------------------------

    def store(self, dataset: Dataset) -> None:
        """Store one instance; a response that lists it as failed is a rejection."""
        response = self._call("storing the segmentation", self._client("stow").store_instances, [dataset])
        failed = list(getattr(response, "FailedSOPSequence", []) or []) if response is not None else []
        if failed:
            reasons = ", ".join(str(getattr(item, "FailureReason", "?")) for item in failed)
            raise PacsRejected(f"the PACS '{self.source.name}' rejected the segmentation (failure reason "
                               f"{reasons}).")
