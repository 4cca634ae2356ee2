"""Parsing of RFC 8288 ``Link`` headers, as MOCO sends them for pagination."""

from __future__ import annotations

import re

# One link-value: <uri> followed by ;-separated params. Commas may appear inside <...>.
_LINK = re.compile(r"<([^>]*)>((?:\s*;\s*[^,;]+)*)")
_PARAM = re.compile(r"""\s*;\s*([A-Za-z][\w*-]*)\s*=\s*(?:"([^"]*)"|([^\s;,]+))""")


def parse_link_header(value: str | None) -> dict[str, str]:
    """Return ``{rel: url}`` for every link in the header (several rels may share a link)."""
    links: dict[str, str] = {}
    if not value:
        return links
    for match in _LINK.finditer(value):
        url, params = match.group(1), match.group(2)
        for param in _PARAM.finditer(params):
            if param.group(1).lower() != "rel":
                continue
            rels = param.group(2) if param.group(2) is not None else param.group(3)
            for rel in rels.split():
                links.setdefault(rel.lower(), url)
    return links
