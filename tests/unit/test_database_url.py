"""Database URLs: which variable wins, which forms are accepted, and that no form leaks a secret."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from syncer.config import DatabaseSettings, Secret, Settings
from syncer.configfile import load_settings
from syncer.errors import ConfigError
from syncer.logs import configure_logging
from syncer.store import database
from syncer.store.database import asyncpg_url, redact, resolve_url, scrub, url_secrets

URL = "postgresql://syncer:s3cr3t-pw@db.example.com:5432/warehouse"
OTHER_URL = "postgresql://app:app-pw-77@other.example.com/app"


def load(tmp_path: Path, environ: Mapping[str, str], text: str = "") -> Settings:
    path = tmp_path / "schedules.toml"
    path.write_text(text, encoding="utf-8")
    return load_settings(path, environ)


def problem(tmp_path: Path, environ: Mapping[str, str], text: str = "") -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, environ, text)
    assert len(info.value.problems) == 1, info.value.problems
    return info.value.problems[0]


# --- which variable ----------------------------------------------------------------------------


def test_database_url_is_used_when_syncer_database_url_is_unset(tmp_path: Path) -> None:
    settings = load(tmp_path, {"DATABASE_URL": URL})
    assert settings.database == DatabaseSettings(
        url=Secret("DATABASE_URL", URL), url_env="DATABASE_URL"
    )


def test_syncer_database_url_wins_over_database_url(tmp_path: Path) -> None:
    settings = load(tmp_path, {"SYNCER_DATABASE_URL": URL, "DATABASE_URL": OTHER_URL})
    assert settings.database.url == Secret("SYNCER_DATABASE_URL", URL)


def test_an_empty_syncer_database_url_counts_as_unset(tmp_path: Path) -> None:
    settings = load(tmp_path, {"SYNCER_DATABASE_URL": "", "DATABASE_URL": URL})
    assert settings.database.url == Secret("DATABASE_URL", URL)


def test_neither_variable_means_the_embedded_database(tmp_path: Path) -> None:
    assert load(tmp_path, {"DATABASE_URL": ""}).database == DatabaseSettings(url=None)


def test_a_configured_url_env_ignores_database_url(tmp_path: Path) -> None:
    text = '[database]\nurl_env = "WAREHOUSE_URL"\n'
    message = problem(tmp_path, {"DATABASE_URL": URL}, text)
    assert message.startswith("database.url_env: environment variable WAREHOUSE_URL is not set")
    settings = load(tmp_path, {"WAREHOUSE_URL": OTHER_URL, "DATABASE_URL": URL}, text)
    assert settings.database.url == Secret("WAREHOUSE_URL", OTHER_URL)


def test_a_database_url_that_is_not_postgres_is_refused_without_echoing_it(
    tmp_path: Path,
) -> None:
    message = problem(tmp_path, {"DATABASE_URL": "mysql://root:hunter2@db/x"})
    assert message.startswith("DATABASE_URL: environment variable DATABASE_URL does not hold")
    assert "SYNCER_DATABASE_URL" in message  # the way out when DATABASE_URL is another app's
    assert "hunter2" not in message


# --- which forms -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:p@h/db",
        "postgres://u:p@h/db",
        "postgresql+asyncpg://u:p@h/db",
        "postgresql+psycopg://u:p@h/db",
        "POSTGRESQL://u:p@h/db",
    ],
)
def test_postgres_url_forms_are_accepted_and_given_to_asyncpg_as_postgresql(
    tmp_path: Path, url: str
) -> None:
    settings = load(tmp_path, {"SYNCER_DATABASE_URL": url})
    assert settings.database.url == Secret("SYNCER_DATABASE_URL", url)
    resolved = asyncio.run(resolve_url(settings))
    assert resolved == "postgresql://u:p@h/db"


@pytest.mark.parametrize("url", ["mysql://u:p@h/db", "postgresql+asyncpg:/h/db", "h/db"])
def test_other_urls_are_refused(tmp_path: Path, url: str) -> None:
    assert "does not hold a Postgres URL" in problem(tmp_path, {"SYNCER_DATABASE_URL": url})


def test_asyncpg_url_leaves_the_rest_alone() -> None:
    url = "postgresql+asyncpg://u:p%40w@h1:5432,h2:5433/db?sslmode=require&password=x"
    assert asyncpg_url(url) == url.replace("postgresql+asyncpg://", "postgresql://")


# --- redaction ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (URL, "postgresql://syncer:***@db.example.com:5432/warehouse"),
        (
            "postgresql://syncer@db/w?sslmode=require&password=qp-9&application_name=x",
            "postgresql://syncer@db/w?sslmode=require&password=***&application_name=x",
        ),
        (
            "postgresql://syncer@db/w?sslpassword=key-pw-1&sslcert=/c.pem",
            "postgresql://syncer@db/w?sslpassword=***&sslcert=/c.pem",
        ),
        (
            "postgresql://u:%40t%2F@db/w?PASSWORD=a%26b&auth_token=t0k&api_key=k3y&x=1",
            "postgresql://u:***@db/w?PASSWORD=***&auth_token=***&api_key=***&x=1",
        ),
        ("postgresql://u:p@ss@h1:1,h2:2/w", "postgresql://u:***@h1:1,h2:2/w"),
        ("postgres://:only-pw@db/w", "postgres://:***@db/w"),
        ("postgresql+asyncpg://u:pw-5@db/w", "postgresql+asyncpg://u:***@db/w"),
        # Unparseable (a broken IPv6 host): masked by pattern all the same.
        ("postgresql://u:pw-6@[::1/w?password=pw-7", "postgresql://u:***@[::1/w?password=***"),
    ],
)
def test_redact_masks_every_place_a_url_carries_a_secret(url: str, shown: str) -> None:
    assert redact(url) == shown


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://syncer@db.example.com/warehouse?sslmode=require",
        "postgresql://postgres:@/postgres?host=/tmp/sockets",  # the embedded server's: trust
        "postgresql:///warehouse",
    ],
)
def test_redact_leaves_urls_without_secrets_as_they_are(url: str) -> None:
    assert redact(url) == url


def test_scrub_masks_secrets_a_message_quotes_in_any_form() -> None:
    url = "postgresql://u:p%40ss-1@db/w?sslpassword=a+b-2"
    message = f"bad DSN {url}: password p@ss-1 or p%40ss-1, sslpassword 'a b-2' / a+b-2"
    scrubbed = scrub(message, url)
    for secret in ("p@ss-1", "p%40ss-1", "a b-2", "a+b-2"):
        assert secret not in scrubbed
    assert redact(url) in scrubbed
    assert set(url_secrets(url)) == {"p@ss-1", "p%40ss-1", "a b-2", "a+b-2"}


# --- the note about the embedded database ------------------------------------------------------


@pytest.fixture
def stderr_logging(capsys: pytest.CaptureFixture[str]) -> Iterator[None]:
    """syncer's logging as the CLI configures it, writing to (captured) stderr; reset after."""
    database._announced = False
    handler = configure_logging("text", False, secrets=())
    try:
        yield
    finally:
        logging.getLogger().removeHandler(handler)
        database._announced = False


def test_the_embedded_fallback_is_announced_once_on_stderr(
    stderr_logging: None, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    database.announce_embedded(tmp_path / "home")
    database.announce_embedded(tmp_path / "home")
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("embedded PostgreSQL") == 1, err
    assert str(tmp_path / "home" / "postgres") in err
    assert "SYNCER_DATABASE_URL=postgresql://" in err


def test_a_configured_database_is_not_announced_and_its_password_never_printed(
    stderr_logging: None, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    settings = load(tmp_path, {"DATABASE_URL": URL + "?sslpassword=ssl-pw-3"})
    asyncio.run(resolve_url(settings))
    out, err = capsys.readouterr()
    assert out + err == ""
