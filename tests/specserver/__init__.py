"""A second, independent MOCO for tests: generated from MOCO's OpenAPI description alone.

``SpecServer`` (``server.py``) serves every list of ``tools/moco-openapi.json`` honouring
exactly the query parameters each documents; it imports nothing of syncer, so a misreading of
the spec in syncer's catalog cannot be repeated here.
"""

from tests.specserver.server import Logged, SpecServer

__all__ = ["Logged", "SpecServer"]
