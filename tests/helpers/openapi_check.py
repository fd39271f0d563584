"""Every response a test gets from a Runner service is checked against the service's own OpenAPI.

The servers of the suite register here: an in-process app is wrapped by `checked_app` (so every
client is covered, the C example and subprocesses included), a `procvision-runner serve`
subprocess registers its base URL and its httpx responses are checked by `install_httpx_hook`.
A response must have a documented status and content type for its path and method, and a JSON
body must match the status's schema in the 3.1 document (JSON Schema 2020-12) and in the 3.0
document (OAS 3.0 rules, what generated clients follow). Streams (SSE) and binary bodies are
checked for their content type only. Mismatches are collected; the hooks in tests/conftest.py
fail the test phase that received them, naming method, path, status and the schema error.
Not a test module.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from jsonschema import Draft202012Validator
from openapi_schema_validator import OAS30Validator

from procvision_runner.service.openapi30 import to_openapi_30

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[
    [Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
    Awaitable[None],
]

# The document and the pages that show it are not API operations (FastAPI leaves them out of
# the schema on purpose); everything else a test touches must be documented.
UNDOCUMENTED = re.compile(r"^/(|docs|docs/oauth2-redirect|redoc|openapi\.json|openapi-3\.0\.json)$")
UNDOCUMENTED_PREFIXES = ("/static/",)
# A path or method the service does not have: the framework's 404/405, in the error shape.
NO_ROUTE_STATUSES = {404, 405}


@dataclass
class _Operation:
    method: str
    template: str
    responses: dict[str, Any]


@dataclass
class _Document:
    """One served document (3.1) and its 3.0 form, with validators compiled on first use."""

    doc31: dict[str, Any]
    doc30: dict[str, Any]
    routes: list[tuple[re.Pattern[str], str]] = field(default_factory=list)
    validators: dict[tuple[str, ...], list[tuple[str, Any]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Literal paths before templated ones: /algorithms/active is not /algorithms/{name}.
        templates = sorted(self.doc31["paths"], key=lambda t: ("{" in t, t))
        for template in templates:
            pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
            self.routes.append((re.compile(f"^{pattern}$"), template))

    def template_for(self, path: str) -> str | None:
        """The documented path template that `path` falls under, if any."""
        for pattern, template in self.routes:
            if pattern.match(path):
                return template
        return None

    def body_validators(self, method: str, template: str, status: str) -> list[tuple[str, Any]]:
        """The (label, validator) pairs of a JSON response in both documents."""
        key = (method, template, status)
        found = self.validators.get(key)
        if found is None:
            found = []
            for doc, make in ((self.doc31, Draft202012Validator), (self.doc30, OAS30Validator)):
                response = doc["paths"][template][method]["responses"][status]
                schema = response["content"]["application/json"].get("schema", {})
                root = {**schema, "components": doc.get("components", {})}
                found.append((f"OpenAPI {doc['openapi']}", make(root)))
            self.validators[key] = found
        return found


class ResponseChecker:
    """Holds the documents of the registered servers and the mismatches seen so far."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._documents: dict[str, _Document] = {}
        self._origins: dict[str, _Document] = {}
        self._problems: list[str] = []

    def document(self, doc31: dict[str, Any], doc30: dict[str, Any] | None = None) -> _Document:
        """The compiled form of a 3.1 document (one per distinct document per session)."""
        key = hashlib.sha256(json.dumps(doc31, sort_keys=True).encode()).hexdigest()
        with self._lock:
            found = self._documents.get(key)
            if found is None:
                found = _Document(doc31, doc30 if doc30 is not None else to_openapi_30(doc31))
                self._documents[key] = found
            return found

    def register_origin(self, base_url: str, doc31: dict[str, Any], doc30: dict[str, Any]) -> None:
        """Check the httpx responses from `base_url` (a server in another process)."""
        document = self.document(doc31, doc30)
        with self._lock:
            self._origins[_origin(httpx.URL(base_url))] = document

    def unregister_origin(self, base_url: str) -> None:
        """Stop checking `base_url` (its server stopped; the port may be reused)."""
        with self._lock:
            self._origins.pop(_origin(httpx.URL(base_url)), None)

    def document_for_url(self, url: httpx.URL) -> _Document | None:
        """The document of the registered server `url` points at, if any."""
        with self._lock:
            return self._origins.get(_origin(url))

    def check(
        self,
        document: _Document,
        method: str,
        path: str,
        status: int,
        content_type: str,
        body: bytes | None,
    ) -> None:
        """Record every way this response breaks the document (body None: not read)."""
        problem = _problem(document, method.lower(), path, status, content_type, body)
        if problem is not None:
            with self._lock:
                self._problems.append(f"{method.upper()} {path} -> {status}: {problem}")

    def take(self) -> list[str]:
        """The mismatches recorded since the last call (and forget them)."""
        with self._lock:
            problems, self._problems = self._problems, []
        return problems


def _origin(url: httpx.URL) -> str:
    return f"{url.scheme}://{url.host}:{url.port}"


def _problem(
    document: _Document,
    method: str,
    path: str,
    status: int,
    content_type: str,
    body: bytes | None,
) -> str | None:
    if UNDOCUMENTED.match(path) or path.startswith(UNDOCUMENTED_PREFIXES):
        return None
    template = document.template_for(path)
    operation = None if template is None else document.doc31["paths"][template].get(method)
    if template is None or operation is None:
        if method == "head" and template is not None and "get" in document.doc31["paths"][template]:
            return None  # HEAD of a GET operation: no body, the GET's statuses
        if status not in NO_ROUTE_STATUSES:
            return f"undocumented path or method (and status {status} is not 404/405)"
        return _error_body_problem(document, body)
    responses = operation["responses"]
    key = str(status) if str(status) in responses else "default"
    if key not in responses:
        return (
            f"undocumented status for {method.upper()} {template} (documented: {sorted(responses)})"
        )
    content = responses[key].get("content", {})
    media = content_type.split(";", 1)[0].strip().lower()
    if not content:
        return None if not body else f"a body of {media or 'no type'} where none is documented"
    if media not in content:
        return f"content type {media!r} is not documented (documented: {sorted(content)})"
    if media != "application/json" or body is None or method == "head":
        return None
    try:
        value = json.loads(body)
    except ValueError as exc:
        return f"body is not JSON: {exc}"
    for label, validator in document.body_validators(method, template, key):
        error = next(iter(validator.iter_errors(value)), None)
        if error is not None:
            at = "/".join(str(p) for p in error.absolute_path) or "(root)"
            return f"{label} schema of {template} {key}: at {at}: {error.message}"
    return None


def _error_body_problem(document: _Document, body: bytes | None) -> str | None:
    if body is None:
        return None
    schema = document.doc31.get("components", {}).get("schemas", {}).get("ErrorBody")
    try:
        value = json.loads(body)
    except ValueError:
        return "a 404/405 for an unknown path or method is not the JSON error body"
    if schema is not None and not Draft202012Validator(schema).is_valid(value):
        return f"a 404/405 body is not ErrorBody: {value!r}"
    return None


CHECKER = ResponseChecker()


class _Seen:
    """What an app sent of one response: JSON bodies are kept, others only counted."""

    def __init__(self) -> None:
        self.status = 0
        self.type = ""
        self.stream = False
        self.chunks: list[bytes] = []
        self.size = 0

    def start(self, message: Message) -> None:
        self.status = int(message["status"])
        for name, value in message.get("headers", []):
            if name.lower() == b"content-type":
                self.type = value.decode("latin-1")
        self.stream = self.type.startswith("text/event-stream")

    def add(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if "json" in self.type:
            self.chunks.append(chunk)

    def body(self) -> bytes | None:
        """The JSON body; b"" when no body came; None for a body that was not kept."""
        if "json" in self.type or not self.size:
            return b"".join(self.chunks)
        return None


def checked_app(app: Any, checker: ResponseChecker = CHECKER) -> ASGIApp:
    """Wrap an in-process service app: each HTTP response it sends is checked on the way out."""
    document: list[_Document] = []

    async def wrapped(
        scope: Scope,
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        if not document:
            document.append(checker.document(app.openapi()))
        seen = _Seen()

        async def checking_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen.start(message)
            elif message["type"] == "http.response.body" and seen.status:
                seen.add(bytes(message.get("body", b"")))
                if seen.stream or not message.get("more_body", False):
                    # a stream is checked at its first chunk (its type is all that is checked)
                    checker.check(
                        document[0],
                        scope["method"],
                        scope["path"],
                        seen.status,
                        seen.type,
                        seen.body(),
                    )
                    seen.status = 0
            await send(message)

        await app(scope, receive, checking_send)

    return wrapped


_hook_lock = threading.Lock()
_hook_installed = False


def install_httpx_hook(checker: ResponseChecker = CHECKER) -> None:
    """Check every httpx response from a registered origin (once per process)."""
    global _hook_installed
    with _hook_lock:
        if _hook_installed:
            return
        _hook_installed = True
    sync_send = httpx.Client.send
    async_send = httpx.AsyncClient.send

    def observe(response: httpx.Response, stream: bool) -> None:
        document = checker.document_for_url(response.request.url)
        if document is None:
            return
        body = None if stream else response.content
        checker.check(
            document,
            response.request.method,
            response.request.url.path,
            response.status_code,
            response.headers.get("content-type", ""),
            body,
        )

    def send(self: httpx.Client, request: httpx.Request, **kw: Any) -> httpx.Response:
        response = sync_send(self, request, **kw)
        observe(response, bool(kw.get("stream", False)))
        return response

    async def asend(self: httpx.AsyncClient, request: httpx.Request, **kw: Any) -> httpx.Response:
        response = await async_send(self, request, **kw)
        observe(response, bool(kw.get("stream", False)))
        return response

    httpx.Client.send = send  # type: ignore[method-assign]
    httpx.AsyncClient.send = asend  # type: ignore[method-assign]
