from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

import pytest

from syncer.config import DatabaseSettings, JobSettings, RateLimit, Secret, Settings
from syncer.configfile import load_settings
from syncer.errors import ConfigError
from syncer.sources.moco.settings import DEFAULT_STREAMS, MocoSourceSettings

API_KEY = "sk-live-7f3a9c-DO-NOT-PRINT"
DB_URL = "postgresql://syncer:hunter2-DO-NOT-PRINT@db.internal:5432/warehouse"
ENV = {"MOCO_API_KEY": API_KEY, "HOME": "/home/ada"}

MOCO = """
[sources.moco]
type = "moco"
base_url = "https://acme.mocoapp.com/api/v1/"
api_key_env = "MOCO_API_KEY"
"""


def load(tmp_path: Path, text: str, environ: Mapping[str, str] = ENV) -> Settings:
    path = tmp_path / "schedules.toml"
    path.write_text(text, encoding="utf-8")
    return load_settings(path, environ)


def problems(tmp_path: Path, text: str, environ: Mapping[str, str] = ENV) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, environ)
    assert info.value.exit_code == 2
    for secret in (API_KEY, DB_URL, "hunter2"):
        assert secret not in str(info.value)
    return info.value.problems


def only_problem(tmp_path: Path, text: str, environ: Mapping[str, str] = ENV) -> str:
    found = problems(tmp_path, text, environ)
    assert len(found) == 1, found
    return found[0]


# --- locating the file -------------------------------------------------------------------------


def test_missing_default_file_gives_settings_without_sources_or_jobs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(None, {"HOME": "/home/ada"})
    assert settings.path is None
    assert dict(settings.sources) == {}
    assert settings.jobs == ()
    assert settings.database == DatabaseSettings(url=None, url_env="SYNCER_DATABASE_URL")
    assert settings.home == Path("/home/ada/.local/share/syncer")


def test_default_file_in_working_directory_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "schedules.toml").write_text(MOCO, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    settings = load_settings(None, ENV)
    assert settings.path == Path("schedules.toml")
    assert list(settings.sources) == ["moco"]


def test_syncer_config_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "elsewhere.toml"
    path.write_text(MOCO, encoding="utf-8")
    settings = load_settings(None, {**ENV, "SYNCER_CONFIG": str(path)})
    assert settings.path == path
    assert "moco" in settings.sources


def test_missing_file_from_syncer_config_is_an_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=r"nope\.toml: configuration file not found"):
        load_settings(None, {"SYNCER_CONFIG": str(missing)})


def test_missing_explicit_path_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"gone\.toml: configuration file not found"):
        load_settings(tmp_path / "gone.toml", {})


def test_toml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, '[sources.moco]\ntype = "moco"\nbase_url https://x\n')
    assert "invalid TOML" in problem
    assert "line 3" in problem
    assert "column" in problem


def test_file_that_is_not_utf8_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "schedules.toml"
    path.write_bytes(b"# caf\xe9\n[database]\n")
    with pytest.raises(ConfigError, match="UTF-8"):
        load_settings(path, {})


def test_syncer_home_is_expanded(tmp_path: Path) -> None:
    settings = load(tmp_path, "", {"SYNCER_HOME": "~/syncer-data", "HOME": "/home/ada"})
    assert settings.home == Path("/home/ada/syncer-data")


# --- a moco source -----------------------------------------------------------------------------


def test_moco_source_gets_documented_defaults(tmp_path: Path) -> None:
    source = load(tmp_path, MOCO).source("moco")
    assert source == MocoSourceSettings(
        name="moco",
        base_url="https://acme.mocoapp.com/api/v1",
        api_key=Secret(env="MOCO_API_KEY", value=API_KEY),
        streams=DEFAULT_STREAMS,  # every record list; reports and details opt-in
        rate_limit=RateLimit(requests=120, per_seconds=120.0),
        overlap_s=300.0,
        per_page=100,
        timeout_s=30.0,
        max_attempts=8,
        concurrency=4,
        type="moco",
    )


def test_moco_source_reads_every_key(tmp_path: Path) -> None:
    source = load(
        tmp_path,
        MOCO
        + """
streams = ["projects", "activities"]
rate_limit = { requests = 60, per_seconds = 30.5 }
overlap = "10m"
per_page = 1000
timeout = 12
max_attempts = 1
concurrency = 16
""",
    ).source("moco")
    assert source.streams == ("projects", "activities")
    assert source.rate_limit == RateLimit(60, 30.5)
    assert source.overlap_s == 600.0
    assert source.per_page == 1000
    assert source.timeout_s == 12.0
    assert source.max_attempts == 1
    assert source.concurrency == 16


def test_overlap_may_be_zero(tmp_path: Path) -> None:
    assert load(tmp_path, MOCO + "overlap = 0\n").source("moco").overlap_s == 0.0


def test_settings_are_frozen_and_sources_immutable(tmp_path: Path) -> None:
    settings = load(tmp_path, MOCO)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.jobs = ()  # type: ignore[misc]
    with pytest.raises(TypeError):
        settings.sources["other"] = settings.source("moco")  # type: ignore[index]


def required_problems(settings: Settings, **what: list[str]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        settings.require_secrets(**what)
    return info.value.problems


def test_missing_api_key_variable_names_the_variable_and_the_fix_when_required(
    tmp_path: Path,
) -> None:
    # Loading succeeds (another command may not need the key); requiring it is the error.
    settings = load(tmp_path, MOCO, {})
    assert settings.source("moco").api_key.missing
    assert settings.source("moco").api_key.value == ""
    assert required_problems(settings, sources=["moco"]) == [
        "sources.moco.api_key_env: environment variable MOCO_API_KEY is not set; "
        "export it with your MOCO API key"
    ]


def test_empty_api_key_variable_is_a_problem_when_required(tmp_path: Path) -> None:
    settings = load(tmp_path, MOCO, {"MOCO_API_KEY": ""})
    (problem,) = required_problems(settings, sources=["moco"])
    assert "MOCO_API_KEY is empty" in problem


def test_each_command_requires_only_the_secrets_of_what_it_touches(tmp_path: Path) -> None:
    text = (
        MOCO
        + """
[sources.moca]
type = "moca"
base_url = "https://api.mocaplatform.com/v2"
token_env = "MOCA_API_TOKEN"

[destinations.moengage]
type = "moengage"
base_url = "https://api-01.moengage.com/v1"
workspace_id_env = "MOENGAGE_WORKSPACE_ID"
api_key_env = "MOENGAGE_API_KEY"
"""
    )
    settings = load(tmp_path, text, {"MOCO_API_KEY": API_KEY})
    settings.require_secrets(sources=["moco"])  # MOCA's and MoEngage's are not needed
    settings.require_secrets()
    assert required_problems(settings, sources=["moca"]) == [
        "sources.moca.token_env: environment variable MOCA_API_TOKEN is not set; "
        "export it with your MOCA API token"
    ]
    moengage = required_problems(settings, sources=["moco"], destinations=["moengage"])
    assert [p.split(":")[0] for p in moengage] == [
        "destinations.moengage.workspace_id_env",
        "destinations.moengage.api_key_env",
    ]
    assert all("is not set" in p for p in moengage)


def test_literal_api_key_is_refused_without_echoing_it(tmp_path: Path) -> None:
    text = MOCO + f'api_key = "{API_KEY}"\n'
    assert only_problem(tmp_path, text) == (
        "sources.moco.api_key: secrets never go in the file; "
        'set api_key_env = "MOCO_API_KEY" and export the key in that variable'
    )


def test_literal_api_key_instead_of_env_key_is_one_problem(tmp_path: Path) -> None:
    text = MOCO.replace('api_key_env = "MOCO_API_KEY"', f'api_key = "{API_KEY}"')
    assert only_problem(tmp_path, text).startswith("sources.moco.api_key: secrets never go")


@pytest.mark.parametrize("key", ["token", "password", "secret"])
def test_other_secret_words_are_refused_as_literal_secrets(tmp_path: Path, key: str) -> None:
    problem = only_problem(tmp_path, MOCO + f'{key} = "{API_KEY}"\n')
    assert problem.startswith(f"sources.moco.{key}: secrets never go in the file")


def test_secret_pasted_into_env_key_is_not_echoed(tmp_path: Path) -> None:
    text = MOCO.replace('"MOCO_API_KEY"', f'"{API_KEY}"')
    assert "NAME of an environment variable" in only_problem(tmp_path, text)


def test_unknown_stream_lists_known_streams(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, MOCO + 'streams = ["projekts"]\n')
    assert problem.startswith('sources.moco.streams: unknown stream "projekts"; ')
    assert 'did you mean "projects"?' in problem
    assert "known streams: activities, projects, companies" in problem


def test_duplicate_stream_is_a_problem(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, MOCO + 'streams = ["users", "users"]\n')
    assert 'stream "users" is listed twice' in problem


def test_empty_stream_list_is_a_problem(tmp_path: Path) -> None:
    assert "at least one stream" in only_problem(tmp_path, MOCO + "streams = []\n")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("per_page = 0", "sources.moco.per_page: must be from 1 to 1000, got 0"),
        ("per_page = 1001", "sources.moco.per_page: must be from 1 to 1000, got 1001"),
        ('per_page = "100"', "sources.moco.per_page: expected an integer, got a string"),
        ("per_page = true", "sources.moco.per_page: expected an integer, got a boolean"),
        ("max_attempts = 0", "sources.moco.max_attempts: must be at least 1, got 0"),
        ("concurrency = 17", "sources.moco.concurrency: must be from 1 to 16, got 17"),
        ("concurrency = 2.0", "sources.moco.concurrency: expected an integer, got a float"),
        ("timeout = 0", "sources.moco.timeout: must be longer than zero"),
        ('timeout = "soon"', 'sources.moco.timeout: invalid duration "soon"'),
        ("overlap = -1", "sources.moco.overlap: must not be negative"),
        ("overlap = [1]", "sources.moco.overlap: expected a duration"),
        ('streams = "users"', "sources.moco.streams: expected an array of stream names"),
        ("base_url = 5", "sources.moco.base_url: expected a string, got an integer"),
        ('base_url = "ftp://x.org"', 'sources.moco.base_url: "ftp://x.org" is not an http(s)'),
        ('base_url = "https://"', 'sources.moco.base_url: "https://" has no host'),
        ("rate_limit = 5", "sources.moco.rate_limit: expected a table, got an integer"),
        (
            "rate_limit = { requests = 0, per_seconds = 1 }",
            "sources.moco.rate_limit.requests: must be at least 1, got 0",
        ),
        (
            "rate_limit = { requests = 10, per_seconds = 0 }",
            "sources.moco.rate_limit.per_seconds: must be a number greater than 0",
        ),
        (
            "rate_limit = { requests = 10 }",
            "sources.moco.rate_limit.per_seconds: required key is missing; add per_seconds = 120",
        ),
        (
            "rate_limit = { requests = 10, per_second = 60 }",
            'sources.moco.rate_limit.per_second: unknown key; did you mean "per_seconds"?',
        ),
        ("pagesize = 5", "sources.moco.pagesize: unknown key; known keys: base_url"),
        ("per_pgae = 5", 'sources.moco.per_pgae: unknown key; did you mean "per_page"?'),
    ],
)
def test_bad_source_value_names_the_key(tmp_path: Path, line: str, expected: str) -> None:
    if line.startswith("base_url"):
        text = MOCO.replace('base_url = "https://acme.mocoapp.com/api/v1/"', line)
    else:
        text = MOCO + line + "\n"
    problem = only_problem(tmp_path, text)
    assert problem.startswith(expected), problem


def test_base_url_with_credentials_is_refused_without_echoing_them(tmp_path: Path) -> None:
    text = MOCO.replace("https://acme", "https://ada:hunter2@acme")
    assert "must not contain credentials" in only_problem(tmp_path, text)


def test_missing_required_source_keys_are_each_reported(tmp_path: Path) -> None:
    found = problems(tmp_path, '[sources.moco]\ntype = "moco"\n')
    assert found == [
        "sources.moco.base_url: required key is missing; "
        'add base_url = "https://acme.mocoapp.com/api/v1"',
        'sources.moco.api_key_env: required key is missing; add api_key_env = "MOCO_API_KEY"',
    ]


def test_source_type_is_required(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, MOCO.replace('type = "moco"\n', ""))
    assert problem.startswith("sources.moco.type: required key is missing")


def test_unknown_source_type_lists_supported_types(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, MOCO.replace('"moco"\nbase', '"jira"\nbase'))
    assert problem == 'sources.moco.type: unknown source type "jira"; supported: moco, moca'


@pytest.mark.parametrize("name", ["Moco", "moco-eu", "9moco", "x" * 64])
def test_source_name_must_be_a_schema_identifier(tmp_path: Path, name: str) -> None:
    problem = only_problem(tmp_path, MOCO.replace("sources.moco", f'sources."{name}"'))
    assert "source names become Postgres schema names" in problem


@pytest.mark.parametrize("name", ["syncer", "public", "pg_moco"])
def test_reserved_schema_names_are_refused(tmp_path: Path, name: str) -> None:
    problem = only_problem(tmp_path, MOCO.replace("sources.moco", f"sources.{name}"))
    assert f'"{name}" is reserved' in problem


def test_source_lookup_of_unconfigured_name_says_how_to_add_it(tmp_path: Path) -> None:
    settings = load(tmp_path, MOCO)
    with pytest.raises(ConfigError) as info:
        settings.source("moca")
    assert str(info.value) == (
        f'configuration error: source "moca" is not configured in {settings.path}; '
        "add a [sources.moca] table (see docs/configuration.md); configured sources: moco"
    )


def test_source_lookup_without_file_says_none_are_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="no sources are configured"):
        load_settings(None, {}).source("moco")


# --- database ----------------------------------------------------------------------------------


def test_database_defaults_to_embedded_when_default_variable_unset(tmp_path: Path) -> None:
    assert load(tmp_path, "").database == DatabaseSettings(url=None)


def test_database_url_comes_from_default_variable(tmp_path: Path) -> None:
    database = load(tmp_path, "", {"SYNCER_DATABASE_URL": DB_URL}).database
    assert database.url == Secret(env="SYNCER_DATABASE_URL", value=DB_URL)


def test_explicit_url_env_must_be_set(tmp_path: Path) -> None:
    text = '[database]\nurl_env = "WAREHOUSE_URL"\n'
    assert only_problem(tmp_path, text, {}).startswith(
        "database.url_env: environment variable WAREHOUSE_URL is not set"
    )


def test_explicit_url_env_is_read(tmp_path: Path) -> None:
    text = '[database]\nurl_env = "WAREHOUSE_URL"\n'
    database = load(tmp_path, text, {"WAREHOUSE_URL": DB_URL}).database
    assert database == DatabaseSettings(
        url=Secret("WAREHOUSE_URL", DB_URL), url_env="WAREHOUSE_URL"
    )


def test_database_url_that_is_not_postgres_is_refused_without_echoing_it(tmp_path: Path) -> None:
    environ = {"SYNCER_DATABASE_URL": "mysql://root:hunter2@db/x"}
    assert "does not hold a Postgres URL" in only_problem(tmp_path, "", environ)


def test_literal_database_url_is_refused(tmp_path: Path) -> None:
    assert only_problem(tmp_path, f'[database]\nurl = "{DB_URL}"\n') == (
        "database.url: secrets never go in the file; "
        'set url_env = "SYNCER_DATABASE_URL" and export the URL in that variable'
    )


# --- destinations ------------------------------------------------------------------------------


def test_empty_destinations_table_is_accepted(tmp_path: Path) -> None:
    assert load(tmp_path, MOCO + "[destinations]\n").sources["moco"].name == "moco"


MOENGAGE = """
[destinations.moengage]
type = "moengage"
base_url = "https://api-01.moengage.com/v1"
workspace_id_env = "MOENGAGE_WORKSPACE_ID"
api_key_env = "MOENGAGE_API_KEY"
"""
MOE_ENV = {**ENV, "MOENGAGE_WORKSPACE_ID": "WS1", "MOENGAGE_API_KEY": "moe-DO-NOT-PRINT"}


def test_a_moengage_destination_is_read_with_defaults(tmp_path: Path) -> None:
    moe = load(tmp_path, MOENGAGE, MOE_ENV).destination("moengage")
    assert moe.workspace_id == Secret("MOENGAGE_WORKSPACE_ID", "WS1")
    assert (moe.max_request_bytes, moe.rate_limit.users, moe.rate_limit.events) == (
        100_000,
        1000,
        10000,
    )
    assert moe.users is None
    assert "moe-DO-NOT-PRINT" not in repr(moe)


def test_moengage_models_and_limits_are_read(tmp_path: Path) -> None:
    text = MOENGAGE + (
        "max_request_bytes = 50000\nrate_limit = { users = 60000, events = 60000 }\n"
        '[destinations.moengage.events]\nsql = "select 1"\n'
    )
    moe = load(tmp_path, text, MOE_ENV).destination("moengage")
    assert moe.max_request_bytes == 50_000
    assert (moe.rate_limit.users, moe.rate_limit.per_seconds) == (60000, 60.0)
    assert moe.events is not None
    assert moe.events.sql == "select 1"


def test_moengage_problems_are_reported_together(tmp_path: Path) -> None:
    text = MOENGAGE.replace('api_key_env = "MOENGAGE_API_KEY"', 'api_key = "literal"') + (
        "max_request_bytes = 200000\n[destinations.moengage.users]\nsequel = 1\n"
    )
    found = problems(tmp_path, text, MOE_ENV)
    assert any("destinations.moengage.api_key: secrets never go in the file" in p for p in found)
    assert any("destinations.moengage.max_request_bytes" in p for p in found)
    assert any("destinations.moengage.users.sequel" in p for p in found)


def test_an_unknown_destination_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match='destination "braze" is not configured'):
        load(tmp_path, MOCO).destination("braze")


# --- jobs --------------------------------------------------------------------------------------


def test_jobs_are_read_with_defaults(tmp_path: Path) -> None:
    text = (
        MOCO
        + """
[[jobs]]
id = "moco-every-15-min"
run = "sync moco"
every = "15m"

[[jobs]]
id = "nightly.backfill"
run = "backfill moco --stream activities --since 2024-01-01"
cron = "0 3 * * *"
timezone = "Europe/Berlin"

[[jobs]]
id = "load"
run = "load moengage --only users"
every = 3600
"""
    )
    assert load(tmp_path, text).jobs == (
        JobSettings(id="moco-every-15-min", run="sync moco", every_s=900.0, cron=None),
        JobSettings(
            id="nightly.backfill",
            run="backfill moco --stream activities --since 2024-01-01",
            every_s=None,
            cron="0 3 * * *",
            timezone="Europe/Berlin",
        ),
        JobSettings(id="load", run="load moengage --only users", every_s=3600.0, cron=None),
    )


def job(body: str) -> str:
    return MOCO + "\n[[jobs]]\n" + body + "\n"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('run = "sync moco"\nevery = "1m"', 'jobs[0].id: required key is missing; add id = "'),
        ('id = "a b"\nrun = "sync moco"\nevery = "1m"', 'jobs[0].id: "a b" may only contain'),
        ('id = "a"\nevery = "1m"', 'jobs[0].run: required key is missing; add run = "sync moco"'),
        ('id = "a"\nrun = ""\nevery = "1m"', "jobs[0].run: must not be empty"),
        ('id = "a"\nrun = "status"\nevery = "1m"', 'jobs[0].run: "status" must start with one'),
        ('id = "a"\nrun = "syncer sync moco"\nevery = "1m"', "jobs[0].run: leave out the program"),
        ('id = "a"\nrun = "sync \'moco"\nevery = "1m"', "jobs[0].run: cannot split"),
        ('id = "a"\nrun = "sync"\nevery = "1m"', 'jobs[0].run: "sync" names no source'),
        ('id = "a"\nrun = "sync moca"\nevery = "1m"', 'jobs[0].run: source "moca" is not config'),
        ('id = "a"\nrun = "sync moco"', "jobs[0]: no schedule; set every"),
        ('id = "a"\nrun = "sync moco"\nevery = "1m"\ncron = "* * * * *"', "jobs[0]: set either"),
        ('id = "a"\nrun = "sync moco"\nevery = "0s"', "jobs[0].every: must be longer than zero"),
        ('id = "a"\nrun = "sync moco"\ncron = "*/15 * * *"', 'jobs[0].cron: "*/15 * * *" has 4'),
        (
            'id = "a"\nrun = "sync moco"\ncron = "0 3 * * *"\ntimezone = "Europe/Berln"',
            'jobs[0].timezone: unknown time zone "Europe/Berln"; did you mean "Europe/Berlin"?',
        ),
        ('id = "a"\nrun = "sync moco"\nevery = "1m"\nevry = 5', "jobs[0].evry: unknown key; did"),
    ],
)
def test_bad_job_names_the_key(tmp_path: Path, body: str, expected: str) -> None:
    problem = only_problem(tmp_path, job(body))
    assert problem.startswith(expected), problem


def test_a_job_timeout_is_a_duration_and_defaults_to_an_hour(tmp_path: Path) -> None:
    timed = job('id = "a"\nrun = "sync moco"\nevery = "1m"\ntimeout = "90s"')
    assert load(tmp_path, timed).jobs[0].timeout_s == 90.0
    plain = job('id = "a"\nrun = "sync moco"\nevery = "1m"')
    assert load(tmp_path, plain).jobs[0].timeout_s == 3600.0
    zero = job('id = "a"\nrun = "sync moco"\nevery = "1m"\ntimeout = "0s"')
    assert only_problem(tmp_path, zero).startswith("jobs[0].timeout: must be longer than zero")


def test_duplicate_job_ids_are_a_problem(tmp_path: Path) -> None:
    text = (
        job('id = "a"\nrun = "sync moco"\nevery = "1m"')
        + '[[jobs]]\nid = "a"\nrun = "sync moco"\nevery = "2m"\n'
    )
    assert only_problem(tmp_path, text) == (
        'jobs[1].id: job id "a" is also used by jobs[0]; job ids must be unique'
    )


def test_jobs_written_as_a_table_are_a_problem(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, '[jobs]\nid = "a"\n')
    assert problem.startswith("jobs: expected an array of tables (write each job as [[jobs]])")


def test_job_referring_to_an_invalid_source_does_not_also_say_unconfigured(tmp_path: Path) -> None:
    # (An unset key no longer makes the source invalid at load time: a bad value does.)
    text = job('id = "a"\nrun = "sync moco"\nevery = "1m"').replace(
        'api_key_env = "MOCO_API_KEY"', 'api_key_env = "MOCO_API_KEY"\nper_page = 0'
    )
    assert only_problem(tmp_path, text).startswith("sources.moco.per_page:")


# --- the whole file ----------------------------------------------------------------------------


def test_all_problems_are_reported_together(tmp_path: Path) -> None:
    text = f"""
colour = "blue"

[database]
url = "{DB_URL}"

[sources.moco]
type = "moco"
base_url = "https://acme.mocoapp.com/api/v1"
api_key_env = "MOCO_API_KEY"
api_key = "{API_KEY}"
streams = ["projekts", "users"]
rate_limit = {{ requests = -1, per_seconds = 60 }}

[sources.moca]
type = "moca"

[[jobs]]
id = "a"
run = "sync moco"
cron = "* * *"
"""
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, {})
    found = info.value.problems
    assert [p.split(":")[0] for p in found] == [
        "colour",
        "database.url",
        "sources.moco.api_key",
        "sources.moco.streams",
        "sources.moco.rate_limit.requests",
        "sources.moca.base_url",
        "sources.moca.token_env",
        "jobs[0].cron",
    ]
    message = str(info.value)
    # The unset MOCO_API_KEY is not among them: only a command that uses it requires it.
    assert message.startswith("configuration has 8 problems:\n  - colour: unknown key")
    assert API_KEY not in message
    assert "hunter2" not in message


def test_secrets_never_appear_in_repr_or_str(tmp_path: Path) -> None:
    settings = load(tmp_path, MOCO, {**ENV, "SYNCER_DATABASE_URL": DB_URL})
    for text in (repr(settings), str(settings), repr(settings.source("moco"))):
        assert API_KEY not in text
        assert "hunter2" not in text
    assert "MOCO_API_KEY" in repr(settings)
    assert str(settings.source("moco").api_key) == "$MOCO_API_KEY"
    assert repr(settings.source("moco").api_key) == "Secret(env='MOCO_API_KEY')"
    assert settings.source("moco").api_key.value == API_KEY


def test_top_level_unknown_key_suggests_the_closest(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, '[source.moco]\ntype = "moco"\n')
    assert problem == 'source: unknown key; did you mean "sources"?'


# --- moca --------------------------------------------------------------------------------------

MOCA_ENV = {**ENV, "MOCA_API_TOKEN": "moca-DO-NOT-PRINT"}


def moca(base_url: str, extra: str = "") -> str:
    return (
        f'[sources.moca]\ntype = "moca"\nbase_url = "{base_url}"\n'
        f'token_env = "MOCA_API_TOKEN"\n{extra}'
    )


def test_a_moca_source_is_read_with_defaults(tmp_path: Path) -> None:
    src = load(tmp_path, moca("https://api.mocaplatform.com/v2/"), MOCA_ENV).source("moca")
    assert src.type == "moca"
    assert src.base_url == "https://api.mocaplatform.com/v2"
    assert src.token == Secret("MOCA_API_TOKEN", "moca-DO-NOT-PRINT")
    assert "analytics" in src.streams
    assert "moca-DO-NOT-PRINT" not in repr(src)


def test_moca_is_ssl_only_except_for_a_sandbox_on_this_machine(tmp_path: Path) -> None:
    found = problems(tmp_path, moca("http://api.mocaplatform.com/v2"), MOCA_ENV)
    assert len(found) == 1
    assert found[0].startswith("sources.moca.base_url:")
    assert "SSL only" in found[0]
    assert load(tmp_path, moca("http://127.0.0.1:8765/moca/v2"), MOCA_ENV).source("moca")


def test_moca_options_are_checked(tmp_path: Path) -> None:
    extra = (
        'deletion_guard = 1.5\nanalytics_interval = "week"\nanalytics_metrics = ["views"]\n'
        'paths = { beacons = "/fleet/beacons" }\n'
    )
    found = problems(tmp_path, moca("https://api.mocaplatform.com/v2", extra), MOCA_ENV)
    assert [p.split(":")[0] for p in found] == [
        "sources.moca.deletion_guard",
        "sources.moca.analytics_metrics",
        "sources.moca.analytics_interval",
    ]


def test_two_sources_of_one_type_each_get_a_schema_named_after_them(tmp_path: Path) -> None:
    text = MOCO + MOCO.replace("[sources.moco]", "[sources.moco_two]")
    settings = load(tmp_path, text)
    assert [(s.name, s.type, s.schema) for s in settings.sources.values()] == [
        ("moco", "moco", "moco"),
        ("moco_two", "moco", "moco_two"),
    ]


def test_two_sources_sharing_one_schema_are_refused(tmp_path: Path) -> None:
    text = MOCO + MOCO.replace("[sources.moco]", '[sources.moco_two]\nschema = "moco"')
    found = problems(tmp_path, text)
    assert found == [
        'sources.moco_two: [sources.moco] writes schema "moco" (or its views\' schema) already; '
        "give each source its own schema"
    ]


def test_a_source_cannot_be_named_after_another_sources_views(tmp_path: Path) -> None:
    text = MOCO.replace("[sources.moco]", "[sources.acme]") + MOCO.replace(
        "[sources.moco]", "[sources.acme_views]"
    )
    found = problems(tmp_path, text)
    assert len(found) == 1
    assert found[0].startswith('sources.acme_views: [sources.acme] writes schema "acme_views"')
    found = problems(tmp_path, MOCO.replace("[sources.moco]", "[sources.moco_views]"))
    assert found[0].startswith('sources.moco_views: schema "moco_views" cannot hold a source')


def test_a_source_cannot_take_the_schema_of_another_built_in_type(tmp_path: Path) -> None:
    text = MOCO.replace("[sources.moco]", "[sources.moca]")
    found = problems(tmp_path, text)
    assert len(found) == 1
    assert found[0].startswith('sources.moca: schema "moca" holds the tables of the built-in')
