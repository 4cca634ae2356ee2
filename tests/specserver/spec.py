"""MOCO's OpenAPI description, read with plain ``json``: which GET endpoints are served, and how.

Everything the server does is decided here, from the spec alone (nothing of syncer's is
imported): an endpoint's documented query parameters, the page size its ``per_page`` allows,
which paging headers its 200 answer documents, and the schema of what it answers.

Served: every GET path whose 200 answer is a JSON array and that is either a list of its own
(no path parameter) or a project's list (``/projects/{project_id}/...``); and four objects,
``/account/hourly_rates``, ``/invoices/{id}``, ``/offers/{id}``, ``/projects/{id}/report``.
Other lists under a record (an invoice's attachments, taggings) are left out: :func:`load`
names them in ``Spec.unserved``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

__all__ = ["PAGING_HEADERS", "SPEC_PATH", "Endpoint", "Spec", "load", "resolve"]

SPEC_PATH = Path(__file__).resolve().parents[2] / "tools" / "moco-openapi.json"
PAGING_HEADERS = ("X-Page", "X-Per-Page", "X-Total", "Link")
DEFAULT_PER_PAGE = 100  # the page size where a list documents `page` but no `per_page`
PARENT = "/projects"  # the parent of the per-project lists
CHILD_PATTERN = re.compile(r"^/projects/\{project_id\}/[a-z_]+$")
OBJECTS = {"/account/hourly_rates": None}
DETAILS = {
    "/invoices/{id}": "/invoices",
    "/offers/{id}": "/offers",
    "/projects/{id}/report": PARENT,
}

Schema = dict[str, Any]


@dataclass(frozen=True)
class Endpoint:
    """One served GET path, as its spec describes it."""

    path: str  # the spec's path template
    kind: str  # "list", "child" (a project's list), "object", "detail"
    schema: Schema  # a list's item schema; an object's schema
    params: frozenset[str]  # the documented query parameters
    headers: frozenset[str]  # the paging headers its 200 answer documents
    max_per_page: int | None  # per_page's maximum, where per_page is documented
    of: str | None = None  # a child's or detail's parent list (``/projects``, ``/invoices``)
    union_of: str | None = None  # a list of all projects' records: that child list
    regex: re.Pattern[str] = field(default=re.compile(""), compare=False, repr=False)

    def takes(self, name: str) -> bool:
        return name in self.params

    @property
    def paged(self) -> bool:
        return "page" in self.params

    @property
    def report(self) -> bool:
        return self.path.startswith("/report/")

    @property
    def default_per_page(self) -> int:
        if self.max_per_page is not None:
            return min(DEFAULT_PER_PAGE, self.max_per_page)
        return DEFAULT_PER_PAGE


@dataclass(frozen=True)
class Spec:
    raw: dict[str, Any]
    base_path: str  # the servers' path, "/api/v1"
    endpoints: dict[str, Endpoint]
    unserved: tuple[str, ...]  # GET lists under a record other than a project

    @property
    def lists(self) -> list[Endpoint]:
        return [e for e in self.endpoints.values() if e.kind in ("list", "child")]

    def match(self, path: str) -> tuple[Endpoint, dict[str, str]] | None:
        """The endpoint serving a request path (without the base path), and its path
        parameters; a path without parameters wins over a template (``/invoices/locked``
        over ``/invoices/{id}``)."""
        exact = self.endpoints.get(path)
        if exact is not None and "{" not in exact.path:
            return exact, {}
        for endpoint in self.endpoints.values():
            if "{" in endpoint.path:
                found = endpoint.regex.fullmatch(path)
                if found:
                    return endpoint, found.groupdict()
        return None


def resolve(raw: dict[str, Any], schema: Any) -> Any:
    """``schema`` with ``$ref`` followed and ``allOf`` merged (properties and required
    combined, the first word on everything else); ``oneOf``/``anyOf`` are kept."""
    seen = 0
    while isinstance(schema, dict) and "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        schema = {**raw["components"]["schemas"][name], **rest}
        seen += 1
        if seen > 50:
            raise ValueError("a $ref cycle")
    if isinstance(schema, dict) and "allOf" in schema:
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        properties: dict[str, Any] = dict(merged.get("properties", {}))
        required: list[str] = list(merged.get("required", []))
        for part in schema["allOf"]:
            part = resolve(raw, part)
            for key, value in part.items():
                if key == "properties":
                    properties = {**properties, **value}
                elif key == "required":
                    required += [r for r in value if r not in required]
                else:
                    merged.setdefault(key, value)
        if properties:
            merged["properties"] = properties
        if required:
            merged["required"] = required
        merged.setdefault("type", "object" if properties else merged.get("type"))
        return merged
    return schema


def _parameters(
    raw: dict[str, Any], operation: dict[str, Any], item: dict[str, Any]
) -> list[dict[str, Any]]:
    """The operation's parameters and its path's, ``$ref`` followed."""
    out: list[dict[str, Any]] = []
    for param in [*item.get("parameters", []), *operation.get("parameters", [])]:
        if "$ref" in param:
            param = raw["components"]["parameters"][param["$ref"].rsplit("/", 1)[-1]]
        out.append(param)
    return out


def _answer(raw: dict[str, Any], operation: dict[str, Any]) -> tuple[Any, frozenset[str]]:
    ok = operation.get("responses", {}).get("200", {})
    if "$ref" in ok:
        ok = raw["components"]["responses"][ok["$ref"].rsplit("/", 1)[-1]]
    schema = resolve(raw, ok.get("content", {}).get("application/json", {}).get("schema", {}))
    headers = frozenset(h for h in ok.get("headers", {}) if h in PAGING_HEADERS)
    return schema, headers


def _regex(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[a-z_]+\})", template)
    pattern = "".join(f"(?P<{p[1:-1]}>[^/]+)" if p.startswith("{") else re.escape(p) for p in parts)
    return re.compile(pattern)


def load(path: Path = SPEC_PATH) -> Spec:
    raw = json.loads(path.read_text())
    base = urlsplit(raw["servers"][0]["url"].replace("{account}", "account")).path.rstrip("/")
    endpoints: dict[str, Endpoint] = {}
    unserved: list[str] = []
    for template, item in raw["paths"].items():
        operation = item.get("get")
        if operation is None:
            continue
        schema, headers = _answer(raw, operation)
        params = [p for p in _parameters(raw, operation, item) if p.get("in") == "query"]
        names = frozenset(p["name"] for p in params)
        per_page = next((p for p in params if p["name"] == "per_page"), None)
        maximum = per_page.get("schema", {}).get("maximum") if per_page else None
        if per_page is not None and maximum is None:
            maximum = DEFAULT_PER_PAGE
        is_array = isinstance(schema, dict) and schema.get("type") == "array"
        if is_array and "{" not in template:
            kind, of = "list", None
        elif is_array and CHILD_PATTERN.match(template):
            kind, of = "child", PARENT
        elif template in OBJECTS:
            kind, of = "object", None
        elif template in DETAILS:
            kind, of = "detail", DETAILS[template]
        else:
            if is_array:
                unserved.append(template)
            continue
        body = resolve(raw, schema["items"]) if is_array else schema
        endpoints[template] = Endpoint(
            path=template,
            kind=kind,
            schema=body,
            params=names,
            headers=headers,
            max_per_page=maximum,
            of=of,
            regex=_regex(template),
        )
    _link_unions(raw, endpoints)
    return Spec(raw, base, endpoints, tuple(unserved))


def _link_unions(raw: dict[str, Any], endpoints: dict[str, Endpoint]) -> None:
    """A list of every project's records (``/projects/expenses``, "expenses across all
    visible projects") serves the same records as ``/projects/{project_id}/expenses`` for all
    projects: a top-level list named like a child list (``/projects/NAME`` or ``/NAME``) with
    the very same item schema."""
    for child in [e for e in endpoints.values() if e.kind == "child"]:
        name = child.path.rsplit("/", 1)[-1]
        for candidate in (f"/projects/{name}", f"/{name}"):
            top = endpoints.get(candidate)
            if top is not None and top.kind == "list" and top.schema == child.schema:
                endpoints[candidate] = replace(top, union_of=child.path)
