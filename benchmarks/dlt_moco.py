"""The competitor: MOCO activities into PostgreSQL with dlt's ``rest_api`` source.

Configured as a competent dlt user would for MOCO: token auth; ``per_page=100`` (MOCO's
maximum); the ``header_link`` paginator, which follows MOCO's ``Link: rel="next"`` (page
numbers, no extra request for an empty last page); incremental on ``updated_at`` through
``updated_after``; ``write_disposition="merge"`` on primary key ``id``; the postgres
destination. dlt's defaults otherwise (nested objects flattened into columns), with the
loader file format given: ``insert_values`` (dlt's default for postgres) or ``csv`` (loaded
with COPY, the faster). The run is ``pipeline.run`` (extract, normalize, load).

Usage: python -m benchmarks.dlt_moco BASE_URL DATABASE_URL DATASET PIPELINES_DIR FORMAT
(the API key comes from MOCO_API_KEY). Prints one JSON line: seconds in all and per step.
"""

from __future__ import annotations

import json
import os
import sys
import time
from urllib.parse import parse_qs, unquote, urlsplit

# dlt phones home unless told not to; this machine talks to loopback only.
os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")

import dlt
from dlt.sources.rest_api import rest_api_source


def moco_source(base_url: str, api_key: str) -> object:
    return rest_api_source(
        {
            "client": {
                "base_url": base_url,
                "auth": {
                    "type": "api_key",
                    "name": "Authorization",
                    "api_key": f"Token token={api_key}",
                },
                "paginator": {"type": "header_link"},
            },
            "resource_defaults": {
                "primary_key": "id",
                "write_disposition": "merge",
                "endpoint": {"params": {"per_page": 100}},
            },
            "resources": [
                {
                    "name": "activities",
                    "endpoint": {
                        "path": "activities",
                        "params": {
                            "updated_after": {
                                "type": "incremental",
                                "cursor_path": "updated_at",
                                "initial_value": "2000-01-01T00:00:00Z",
                            },
                        },
                    },
                },
            ],
        }
    )


def credentials(database_url: str) -> dict[str, object]:
    """dlt's postgres credentials for a libpq URL. The embedded server listens on a socket
    folder given as ``?host=``: dlt insists on a host, and libpq lets the query's win."""
    url = urlsplit(database_url)
    return {
        "database": url.path.lstrip("/"),
        "username": unquote(url.username or "postgres"),
        "password": unquote(url.password or ""),
        "host": url.hostname or "localhost",
        "port": url.port or 5432,
        "query": {k: v[0] for k, v in parse_qs(url.query).items()},
    }


def main(argv: list[str]) -> int:
    base_url, database_url, dataset, pipelines_dir, file_format = argv
    pipeline = dlt.pipeline(
        pipeline_name=f"moco_{dataset}",
        destination=dlt.destinations.postgres(credentials=credentials(database_url)),
        dataset_name=dataset,
        pipelines_dir=pipelines_dir,
    )
    started = time.monotonic()
    source = moco_source(base_url.rstrip("/") + "/", os.environ["MOCO_API_KEY"])
    pipeline.run(source, loader_file_format=file_format)
    elapsed = time.monotonic() - started
    steps = {
        step.step: (step.finished_at - step.started_at).total_seconds()
        for step in pipeline.last_trace.steps
        if step.step in ("extract", "normalize", "load") and step.finished_at is not None
    }
    print(json.dumps({"seconds": elapsed, "steps": steps}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
