"""The typed views of a MOCA source: one per stream, and the analytics, in ``<schema>_views``.

The built-in source's views (``moca_views``) were made by migrations 0006 and 0010; another
MOCA source's are made with its tables (``SourceType.views``), from the same specs.
"""

from __future__ import annotations

from syncer.sources.views import COLUMN, view_sql

__all__ = ["VIEWS", "views"]

# MOCA: text ids, camelCase keys, user-editable fields under `config`. The trigger/action types
# and the parsed segment query are the raw table's columns (computed on the way in, where
# `@type` or `type` and invalid JSON text are handled). Apps' appSecret is never stored.
VIEWS: dict[str, dict[str, str]] = {
    "apps": {
        "account_id": "text accountId",
        "name": "text config.name",
        "description": "text config.description",
        "app_url": "text config.appUrl",
        "version": "text config.version",
        "category": "text config.category",
        "icon_url": "text config.iconUrl",
        "approx_app_size": "text config.approxAppSize",
        "production": "boolean config.production",
        "targets": "jsonb",
        "created_at": "epoch_ms createdAt",
    },
    "beacons": {
        "account_id": "text accountId",
        "place_id": "text placeId",
        "zone_id": "text zoneId",
        "name": "text config.name",
        "description": "text config.description",
        "uuid": "text",
        "major": "bigint",
        "minor": "bigint",
        "code": "text",
        "floor": "bigint",
        "provider": "text",
        "latitude": "numeric location.latitude",
        "longitude": "numeric location.longitude",
        "altitude": "numeric location.altitude",
        "accuracy": "numeric location.accuracy",
        "settings": "jsonb",
        "created_at": "epoch_ms createdAt",
    },
    "places": {
        "account_id": "text accountId",
        "name": "text config.name",
        "description": "text config.description",
        "geofence_type": "text geoFence.type",
        "geofence_latitude": "numeric geoFence.latitude",
        "geofence_longitude": "numeric geoFence.longitude",
        "geofence_radius": "numeric geoFence.radius",
        "zone_ids": "text[] zones",
        "created_at": "epoch_ms createdAt",
    },
    "zones": {
        "place_id": "text placeId",
        "name": "text config.name",
        "category": "text config.category",
        "floor_number": "bigint config.floorNumber",
        "short_id": "text config.shortId",
        "enabled": "boolean config.enabled",
        "beacon_ids": "text[] beacons",
        "created_at": "epoch_ms createdAt",
    },
    "geofences": {
        "account_id": "text accountId",
        "place_id": "text placeId",
        "name": "text config.name",
        "latitude": "numeric",
        "longitude": "numeric",
        "radius": "numeric",
        "created_at": "epoch_ms createdAt",
    },
    "segments": {
        "app_id": "text appId",
        "name": "text config.name",
        "description": "text config.description",
        "query_text": "text config.query",
        "query": COLUMN,
        "created_at": "epoch_ms createdAt",
    },
    "campaigns": {
        "app_id": "text appId",
        "name": "text config.name",
        "description": "text config.description",
        "type": "text config.type",
        "segment_id": "text config.segmentId",
        "group_id": "text config.groupId",
        "start_at": "epoch_ms config.startAt",
        "end_at": "epoch_ms config.endAt",
        "display_cap": "bigint config.displayCap",
        "display_wait_ms": "bigint config.displayWaitMs",
        "recurrence": "jsonb config.recurrence",
        "status": "text",
        "status_at": "epoch_ms statusAt",
        "created_at": "epoch_ms createdAt",
    },
    "experiences": {
        "campaign_id": "text campaignId",
        "name": "text config.name",
        "description": "text config.description",
        "repeat": "text config.repeat",
        "enabled": "boolean config.enabled",
        "trigger_type": COLUMN,
        "action_type": COLUMN,
        "trigger": "jsonb",
        "action": "jsonb",
        "created_at": "epoch_ms createdAt",
    },
    "notifications": {
        "campaign_id": "text campaignId",
        "name": "text config.name",
        "trigger_type": COLUMN,
        "action_type": COLUMN,
        "segment_id": "text audience.segmentId",
        "platforms": "text[] audience.platforms",
        "draft": "boolean options.draft",
        "dry_run": "boolean options.dryRun",
        "state": "text status.state",
        "state_at": "epoch_ms status.stateAt",
        "recipients": "bigint status.recipients",
        "trigger": "jsonb",
        "audience": "jsonb",
        "action": "jsonb",
        "created_at": "epoch_ms createdAt",
    },
}


def _analytics(raw_schema: str, view_schema: str) -> list[str]:
    """Analytics have no id and are never deleted: the raw tables' columns, renamed."""
    return [
        f'create or replace view "{view_schema}".analytics as\n'
        "select app_id, metric, \"interval\", bucket_start, nullif(key, '') as geohash, value,"
        " _synced_at\n"
        f'from "{raw_schema}".analytics',
        f'create or replace view "{view_schema}".analytics_ranges as\n'
        "select app_id, metric, \"interval\", range_start, range_end, nullif(key, '') as place,"
        " latitude, longitude, value, _synced_at\n"
        f'from "{raw_schema}".analytics_ranges',
    ]


def views(raw_schema: str, view_schema: str) -> list[str]:
    """``create or replace view`` statements of every MOCA view over ``raw_schema``."""
    return [
        *(view_sql(view_schema, raw_schema, name, columns) for name, columns in VIEWS.items()),
        *_analytics(raw_schema, view_schema),
    ]
