"""``syncer sandbox``: its arguments, and serving the sandboxes until a signal stops it.

The arguments are read here so that ``syncer --help`` costs no import of the sandboxes; they are
imported once the command runs.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from syncer import shutdown
from syncer.errors import EXIT_OK, ConfigError


def add_parser(
    commands: Any,  # the subparsers of the ``syncer`` parser
    common: argparse.ArgumentParser,
) -> None:
    sandbox = commands.add_parser(
        "sandbox", parents=[common], help="serve the MOCO sandbox on loopback"
    )
    sandbox.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    sandbox.add_argument("--seed", type=int, default=1, help="seed of the generated data")
    sandbox.add_argument(
        "--moca-geolocations",
        choices=("buckets", "aggregate"),
        default=os.environ.get("SYNCER_SANDBOX_MOCA_GEOLOCATIONS", "buckets"),
        help="MOCA geolocations per bucket (default) or aggregated over the requested range "
        "(env SYNCER_SANDBOX_MOCA_GEOLOCATIONS)",
    )
    sandbox.add_argument(
        "--ignore-sort-by",
        action="append",
        metavar="STREAM",
        help="MOCO lists this stream (or 'all') by id, ignoring sort_by, over data whose ids "
        "grow with updated_at (repeatable)",
    )
    sandbox.add_argument(
        "--backdate",
        type=_count,
        default=0,
        metavar="N",
        help="once a first sync is done (every list served to its last page, then MOCO idle "
        "2s), N records appear with an updated_at 6-12 weeks old, as after an import: "
        "incremental syncs miss them, `syncer verify` finds them; said on stderr (any time: "
        "POST /moco/_sandbox/backdate)",
    )
    sandbox.add_argument(
        "--delete",
        type=_count,
        default=0,
        metavar="N",
        help="... and N records are deleted then, one a list (deals, offers, invoices, ...)",
    )
    sandbox.set_defaults(handler=serve, needs_config=False)


def _count(text: str) -> int:
    if not text.isascii() or not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a count of records, got {text!r}")
    return int(text)


async def serve(args: argparse.Namespace, settings: Any) -> int:
    from syncer.sandbox.moco_data import MocoData
    from syncer.sandbox.server import serve_forever

    if args.moca_geolocations not in ("buckets", "aggregate"):
        raise ConfigError(
            f"SYNCER_SANDBOX_MOCA_GEOLOCATIONS is {args.moca_geolocations!r}; "
            "set it to buckets or aggregate"
        )
    known = MocoData.stream_names()
    ignored = set(args.ignore_sort_by or ())
    unknown = sorted(ignored - {"all", *known})
    if unknown:
        raise ConfigError(
            f"--ignore-sort-by {unknown[0]}: not a MOCO stream; use one of {', '.join(known)}, "
            "or all"
        )
    streams = frozenset(known) if "all" in ignored else frozenset(ignored)
    await shutdown.until_signalled(
        serve_forever(
            port=args.port,
            seed=args.seed,
            moca_geolocations=args.moca_geolocations,
            ignore_sort_by=streams,
            backdate=args.backdate,
            delete=args.delete,
        )
    )
    return EXIT_OK
