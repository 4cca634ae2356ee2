"""How one MOCA record of each of the nine streams is made.

Records follow the documented v2 shapes and the inferred ones where nothing is documented
(docs/vendors/moca.md).

Ids are 22-character url-safe strings, timestamps int64 milliseconds, user-editable attributes
sit under `config`, triggers and actions are discriminated by `@type` (or by `type`, as the
Android SDK spells it), segment queries are stored as JSON text and optional campaign fields
are left out when unset. Every record points only at records already
stored; `MocaData` decides when records are made and keeps them.

One concept: one builder per MOCA stream, kept together because records point at each other
and draw from one random generator in one order (a seed makes the same account).
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Callable
from typing import Any

from syncer.sandbox.moca_samples import (
    APP_CATEGORIES,
    APP_NAMES,
    BRANDS,
    CAMPAIGN_NAMES,
    CITIES,
    DISTRICTS,
    GEOFENCE_NAMES,
    MESSAGES,
    PROVIDERS,
    REPEATS,
    SEGMENT_NAMES,
    TAGS,
    ZONES,
)

Record = dict[str, Any]

_HOUR_MS = 3_600_000
_DAY_MS = 24 * _HOUR_MS


def new_id(rng: random.Random) -> str:
    """A MOCA id as in MOCA's docs: 128 random bits as 22 characters of url-safe base64 without
    padding."""
    return base64.urlsafe_b64encode(rng.randbytes(16)).rstrip(b"=").decode()


def _retag(value: Any) -> Any:
    """`value` with every "@type" key renamed "type", as the Android SDK payloads spell it."""
    if isinstance(value, list):
        return [_retag(item) for item in value]
    if isinstance(value, dict):
        return {("type" if k == "@type" else k): _retag(v) for k, v in value.items()}
    return value


class RecordBuilder:
    """Builds one record of any stream, pointing at records already stored in `rows`."""

    def __init__(
        self,
        rng: random.Random,
        rows: dict[str, dict[str, Record]],
        account_id: str,
        triples: set[tuple[str, int, int]],
    ) -> None:
        self.rng = rng
        self.rows = rows
        self.account_id = account_id
        self.triples = triples  # (uuid, major, minor) of every stored beacon
        self.fleet_uuid = "-".join(
            rng.randbytes(n).hex().upper() for n in (4, 2, 2, 2, 6)
        )  # the account's own iBeacon UUID
        # placeId -> (iBeacon major its beacons share, latitude, longitude)
        self._spots: dict[str, tuple[int, float, float]] = {}
        self._makers: dict[str, Callable[[int, int], Record]] = {
            "apps": self._apps,
            "places": self._places,
            "zones": self._zones,
            "beacons": self._beacons,
            "geofences": self._geofences,
            "segments": self._segments,
            "campaigns": self._campaigns,
            "experiences": self._experiences,
            "notifications": self._notifications,
        }
        self._serial = dict.fromkeys(self._makers, 0)  # records built so far, per stream

    def build(self, stream: str, lo: int, hi: int) -> Record:
        """A new record of `stream` created within [lo, hi] (and after its parent was)."""
        self._serial[stream] += 1
        return self._makers[stream](lo, hi)

    def settle(self, stream: str, record: Record) -> None:
        """Reconciles status times with `updatedAt`: a status change is a change."""
        if stream == "campaigns":
            record["updatedAt"] = max(record["updatedAt"], record["statusAt"])
        elif stream == "notifications":
            record["status"]["stateAt"] = record["updatedAt"]

    # -- small pieces ------------------------------------------------------------------------

    def _created(self, lo: int, hi: int, after: int = 0) -> int:
        return self.rng.randint(min(max(lo, after), hi), hi)

    def _pick(self, stream: str) -> Record | None:
        rows = self.rows[stream]
        return self.rng.choice(list(rows.values())) if rows else None

    def _parent(self, stream: str, parent: str) -> Record:
        found = self._pick(parent)
        if found is None:
            raise ValueError(f"cannot create {stream}: there are no {parent} to attach them to")
        return found

    def _text(self, *choices: str) -> str:
        return self.rng.choice(choices)

    def _near(self, lat: float, lon: float, spread: float) -> tuple[float, float]:
        lat += self.rng.uniform(-spread, spread)
        lon += self.rng.uniform(-spread, spread)
        return round(lat, 6), round(lon, 6)

    def _content(self, text: str) -> dict[str, str]:
        # Keyed by "default", other keys by locale (MOCA's actions reference).
        content = {"default": text}
        if self.rng.random() < 0.4:
            content["es"] = self.rng.choice(MESSAGES)
        return content

    # -- one builder per stream --------------------------------------------------------------

    def _apps(self, lo: int, hi: int) -> Record:
        r, n = self.rng, self._serial["apps"]
        name = APP_NAMES[(n - 1) % len(APP_NAMES)]
        name += f" {(n - 1) // len(APP_NAMES) + 1}" if n > len(APP_NAMES) else ""
        app_id = new_id(r)
        store_id = r.randint(10**8, 10**10)
        config: Record = {
            "name": name,
            "description": self._text(
                "",
                "Offizielle App 📱",
                "Treueprogramm & Angebote",
                "La app oficial de nuestras tiendas",
            ),
            "appUrl": f"https://apps.apple.com/de/app/id{store_id}",
            "version": f"{r.randint(1, 5)}.{r.randint(0, 12)}.{r.randint(0, 9)}",
            "category": r.choice(APP_CATEGORIES),
            "iconUrl": f"https://console.mocaplatform.com/img/app-icons/{app_id}.png",
            "approxAppSize": r.choice(("<2500", "<10000", "<50000")),
            "production": r.random() < 0.7,
        }
        record: Record = {
            "appId": app_id,
            "appSecret": new_id(r) + new_id(r),
            "accountId": self.account_id,
            "config": config,
        }
        if r.random() < 0.8:  # push certificates; the shape is not documented
            bundle = f"com.sandbox.app{store_id}"
            record["targets"] = [
                {
                    "platform": "APNS",
                    "bundleId": bundle,
                    "production": config["production"],
                    "expiresAt": hi + r.randint(30, 400) * _DAY_MS,
                },
                {"platform": "FCM", "packageName": bundle, "senderId": str(store_id)},
            ][: r.randint(1, 2)]
        record["createdAt"] = self._created(lo, hi)
        return record

    def _places(self, lo: int, hi: int) -> Record:
        r = self.rng
        city, lat, lon = r.choice(CITIES)
        lat, lon = self._near(lat, lon, 0.05)
        place_id = new_id(r)
        major = 100 + self._serial["places"] * 7 + r.randint(0, 6)
        self._spots[place_id] = (major, lat, lon)
        fence = None
        if r.random() < 0.8:
            fence = {
                "type": "circle",
                "latitude": lat,
                "longitude": lon,
                "radius": r.choice((50, 75, 100, 150, 250, 500)),
            }
        return {
            "placeId": place_id,
            "accountId": self.account_id,
            "config": {
                "name": f"{r.choice(BRANDS)} {city} {r.choice(DISTRICTS)}",
                "description": self._text(
                    "",
                    "Filiale mit Café",
                    "Öffnungszeiten Mo–Sa",
                    "Tienda insignia 🌟",
                    "Umbau geplant 🚧",
                ),
            },
            "geoFence": fence,
            "zones": [],
            "createdAt": self._created(lo, hi),
        }

    def _zones(self, lo: int, hi: int) -> Record:
        r = self.rng
        place = self._parent("zones", "places")
        name, category = r.choice(ZONES)
        floor = r.choice((0, 0, 0, 0, 1, 1, 2, -1))
        return {
            "zoneId": new_id(r),
            "placeId": place["placeId"],
            "config": {
                "name": name,
                "category": category,
                "floorNumber": floor,
                "shortId": f"{floor}-{len(place['zones']) + 1}",
                "enabled": r.random() < 0.9,
            },
            "beacons": [],
            "createdAt": self._created(lo, hi, place["createdAt"]),
        }

    def _beacons(self, lo: int, hi: int) -> Record:
        r = self.rng
        zone = self._pick("zones") if r.random() < 0.95 else None
        place = self.rows["places"].get(zone["placeId"]) if zone else None
        provider, uuid, maker, model = r.choice(PROVIDERS)
        uuid = uuid or self.fleet_uuid
        major, lat, lon = self._spots.get(place["placeId"], (1, 0.0, 0.0)) if place else (1, 0, 0)
        minor = r.randint(1, 65535)
        while (uuid, major, minor) in self.triples:
            minor = r.randint(1, 65535)
        location = None
        if place:
            lat, lon = self._near(lat, lon, 0.0005)
            location = {
                "latitude": lat,
                "longitude": lon,
                "altitude": round(r.uniform(0, 12), 1),
                "accuracy": r.choice((1.0, 2.5, 5.0)),
            }
        zone_name = zone["config"]["name"] if zone else "Lager"
        return {
            "beaconId": new_id(r),
            "accountId": self.account_id,
            "zoneId": zone["zoneId"] if zone else None,
            "placeId": place["placeId"] if place else None,
            "config": {
                "name": None if r.random() < 0.05 else f"{zone_name} #{r.randint(1, 9)}",
                "description": self._text(
                    "", "", "Decke, über der Tür", "Batterie getauscht ✅", "Junto a la caja"
                ),
            },
            "uuid": uuid,
            "major": major,
            "minor": minor,
            "code": "".join(r.choices("ABCDEFGHJKLMNPQRSTUVWXYZ23456789", k=6)),
            "floor": zone["config"]["floorNumber"] if zone else None,
            "provider": provider,
            "location": location,
            "settings": {
                "advertisingIntervalMs": r.choice((100, 350, 500, 1000)),
                "txPower": r.choice((-12, -8, -4, 0, 4)),
                "immediateRSSI": r.randint(-55, -45),
                "immediateIntervalMs": 1000,
                "arrivalRSSI": r.randint(-80, -70),
                "arrivalIntervalMs": 3000,
                "departureRSSI": r.randint(-95, -85),
                "departureIntervalMs": 15000,
                "manufacturer": maker,
                "model": model,
                "firmwareRevision": f"{r.randint(1, 4)}.{r.randint(0, 9)}",
                "hardwareRevision": r.choice(("A", "B", "C2")),
                "batteryLevel": r.randint(3, 100),
            },
            "createdAt": self._created(lo, hi, zone["createdAt"] if zone else 0),
        }

    def _geofences(self, lo: int, hi: int) -> Record:
        r = self.rng
        fenced = [p for p in self.rows["places"].values() if p["geoFence"]]
        place = r.choice(fenced) if fenced and r.random() < 0.6 else None
        if place:
            fence = place["geoFence"]
            lat, lon, radius = fence["latitude"], fence["longitude"], fence["radius"]
            name = f"Umkreis {place['config']['name']}"
        else:
            city, lat, lon = r.choice(CITIES)
            (lat, lon), radius = self._near(lat, lon, 0.08), r.choice((200, 500, 1000, 2500))
            name = f"{r.choice(GEOFENCE_NAMES)} {city}"
        return {
            "geofenceId": new_id(r),
            "accountId": self.account_id,
            "config": {"name": name},
            "latitude": lat,
            "longitude": lon,
            "radius": radius,
            "placeId": place["placeId"] if place else None,
            "createdAt": self._created(lo, hi, place["createdAt"] if place else 0),
        }

    def _segments(self, lo: int, hi: int) -> Record:
        r = self.rng
        app = self._parent("segments", "apps")
        conditions: list[Record] = [
            {"lang": {"$eq": r.choice(("de", "es", "en"))}},
            {"os": {"$eq": r.choice(("iOS", "Android"))}},
            {"country": {"$in": r.sample(["DE", "AT", "CH", "ES"], r.randint(1, 3))}},
            {"tags": {"$all": r.sample(TAGS, r.randint(1, 2))}},
            {"appVersion": {"$gte": f"3.{r.randint(0, 9)}.0"}},
            {"timeZone": {"$eq": r.choice(("Europe/Berlin", "Europe/Madrid"))}},
        ]
        chosen = r.sample(conditions, r.randint(1, 3))
        if len(chosen) > 2 and r.random() < 0.5:
            chosen = [chosen[0], {"$any": chosen[1:]}]  # a nested Any group, as the Console allows
        # Stored as the JSON text the Console wrote, sometimes pretty-printed.
        query = json.dumps(
            {"$all": chosen}, ensure_ascii=False, indent=2 if r.random() < 0.2 else None
        )
        return {
            "segmentId": new_id(r),
            "appId": app["appId"],
            "config": {
                "name": r.choice(SEGMENT_NAMES),
                "description": self._text("", "Automatisch gepflegt", "Für Kampagnen im Süden ☀️"),
                "query": query,
            },
            "createdAt": self._created(lo, hi, app["createdAt"]),
        }

    def _campaigns(self, lo: int, hi: int) -> Record:
        r = self.rng
        app = self._parent("campaigns", "apps")
        created = self._created(lo, hi, app["createdAt"])
        kind = "Proximity" if r.random() < 0.7 else "Push"
        start = created + r.randint(0, 14) * _DAY_MS + r.randint(0, 23) * _HOUR_MS
        config: Record = {
            "name": r.choice(CAMPAIGN_NAMES),
            "description": self._text(
                "", "Nur in ausgewählten Filialen", "Válido hasta fin de existencias"
            ),
            "type": kind,
            "startAt": start,
        }
        if kind == "Proximity" or r.random() < 0.5:
            config["endAt"] = start + r.randint(7, 120) * _DAY_MS
        segments = [s for s in self.rows["segments"].values() if s["appId"] == app["appId"]]
        config["segmentId"] = r.choice(segments)["segmentId"] if segments else None
        # Optional fields the API leaves out when they are unset (campaigns reference).
        if r.random() < 0.3:
            config["groupId"] = new_id(r)
        if r.random() < 0.5:
            config["displayCap"] = r.choice((1, 3, 5, 10))
        if r.random() < 0.4:
            config["displayWaitMs"] = r.choice((60_000, 900_000, 3_600_000))
        if r.random() < 0.3:
            config["recurrence"] = {
                "hoursOfDay": sorted(r.sample(range(24), r.randint(2, 8))),
                "daysOfWeek": sorted(r.sample(range(1, 8), r.randint(1, 5))),
            }
        end = config.get("endAt")
        if r.random() < 0.1:
            status, status_at = "Draft", created
        elif start > hi:
            status, status_at = "Scheduled", created
        elif end is not None and end <= hi:
            status, status_at = r.choice(("Finished", "Finished", "Archived")), end
        else:
            status, status_at = "Running", start
        return {
            "campaignId": new_id(r),
            "appId": app["appId"],
            "config": config,
            "status": status,
            "statusAt": status_at,
            "createdAt": created,
        }

    def _trigger(self) -> Record:
        r = self.rng
        place, zone, beacon = self._pick("places"), self._pick("zones"), self._pick("beacons")
        kinds = [k for k, ok in (("Place", place), ("Zone", zone), ("Beacon", beacon)) if ok]
        roll = r.random()
        if not kinds or roll < 0.08:
            return {"@type": "CustomTrigger", "customArgument": r.choice(("vip_kunde", "cart>50"))}
        if roll < 0.16 and zone and place:
            return {
                "@type": "CompositeTrigger",
                "list": [
                    {"@type": "EnterPlaceTrigger", "placeId": place["placeId"]},
                    {
                        "@type": "ZoneProximityTrigger",
                        "zoneId": zone["zoneId"],
                        "proximity": r.choice(("Immediate", "Near")),
                    },
                ],
            }
        if roll < 0.24 and beacon:
            return {
                "@type": "BeaconProximityTrigger",
                "beaconId": beacon["beaconId"],
                "proximity": r.choice(("Immediate", "Near", "Far")),
                "accuracy": r.choice((0.5, 1.5, 3.0)),
            }
        kind = r.choice(kinds)
        target = {"Place": place, "Zone": zone, "Beacon": beacon}[kind]
        assert target is not None
        trigger: Record = {
            "@type": f"{r.choice(('Enter', 'Enter', 'Exit'))}{kind}Trigger",
            f"{kind.lower()}Id": target[f"{kind.lower()}Id"],
        }
        if trigger["@type"].startswith("Enter") and r.random() < 0.25:
            trigger["delayMs"] = r.choice((30_000, 120_000, 300_000))  # a dwell trigger
        return trigger

    def _action(self, depth: int = 0) -> Record:
        r = self.rng
        message = r.choice(MESSAGES)
        kind = r.choice(
            (
                "SendLocalMessageAction",
                "SendLocalMessageAction",
                "ShowHtmlAction",
                "OpenUrlAction",
                "ShowImageAction",
                "ShowVideoAction",
                "PlaySoundAction",
                "TagAction",
                "CustomAction",
                "ShowCardAction",
                "CompositeAction" if depth == 0 else "TagAction",
            )
        )
        media = {
            "SendLocalMessageAction": ("text/plain", message),
            "ShowHtmlAction": ("text/html", f"<h1>{message}</h1><p>Gültig bis Sonntag.</p>"),
            "OpenUrlAction": ("text/x-url", "https://www.example.de/angebote?utm_source=moca"),
            "ShowImageAction": ("image/jpeg", "https://cdn.example.de/aktion/herbst.jpg"),
            "ShowVideoAction": ("video/mp4", "https://cdn.example.de/video/spot-30s.mp4"),
            "PlaySoundAction": ("audio/mpeg", "https://cdn.example.de/sound/ding.mp3"),
        }
        if kind in media:
            content_type, content = media[kind]
            return {
                "@type": kind,
                "contentType": content_type,
                "content": self._content(content),
                "bgAlert": self._content(message),
            }
        if kind == "TagAction":
            return {
                "@type": kind,
                "tagName": r.choice(TAGS),
                "actionValue": r.choice(("+1", "1", "Köln")),
            }
        if kind == "CustomAction":
            return {"@type": kind, "customArgument": r.choice(("open_coupon:4711", "scan_qr"))}
        if kind == "ShowCardAction":
            return {
                "@type": kind,
                "cardProvider": r.choice(("wallet", "stampcard")),
                "bgAlert": self._content(message),
            }
        return {"@type": kind, "list": [self._action(depth + 1) for _ in range(2)]}

    def _experiences(self, lo: int, hi: int) -> Record:
        r = self.rng
        proximity = [
            c for c in self.rows["campaigns"].values() if c["config"]["type"] == "Proximity"
        ]
        campaign = r.choice(proximity) if proximity else self._parent("experiences", "campaigns")
        config: Record = {
            "name": f"{r.choice(ZONES)[0]}: {r.choice(MESSAGES)[:24]}",
            "description": self._text("", "A/B-Variante 2", "Nur für Stammkunden"),
            "repeat": r.choice(REPEATS),
        }
        if r.random() < 0.9:
            config["enabled"] = r.random() < 0.85
        trigger, action = self._trigger(), self._action()
        if r.random() < 0.12:  # the Android SDK's spelling of the discriminator
            trigger, action = _retag(trigger), _retag(action)
        return {
            "experienceId": new_id(r),
            "campaignId": campaign["campaignId"],
            "config": config,
            "trigger": trigger,
            "action": action,
            "createdAt": self._created(lo, hi, campaign["createdAt"]),
        }

    def _notifications(self, lo: int, hi: int) -> Record:
        r = self.rng
        push = [c for c in self.rows["campaigns"].values() if c["config"]["type"] == "Push"]
        campaign = r.choice(push) if push else self._parent("notifications", "campaigns")
        created = self._created(lo, hi, campaign["createdAt"])
        send_at = created + r.randint(0, 72) * _HOUR_MS
        draft = r.random() < 0.15
        trigger: Record = (
            {"@type": "ImmediateTrigger"}
            if r.random() < 0.4
            else {
                "@type": "ScheduledTrigger",
                "sendAt": send_at,
                "timeZone": r.choice(("Europe/Berlin", "Europe/Madrid")),
            }
        )
        state = (
            "Draft"
            if draft
            else "Pending"
            if send_at > hi
            else r.choice(("Completed", "Completed", "Completed", "Cancelled"))
        )
        status: Record = {"state": state, "stateAt": created}
        if state == "Completed":
            status["recipients"] = r.randint(50, 40_000)
        segments = [s for s in self.rows["segments"].values() if s["appId"] == campaign["appId"]]
        audience = {
            "segmentId": r.choice(segments)["segmentId"] if segments else None,
            "platforms": r.choice((["ios", "android"], ["ios"], ["android"])),
        }
        return {
            "notificationId": new_id(r),
            "campaignId": campaign["campaignId"],
            "config": {"name": f"Push: {r.choice(CAMPAIGN_NAMES)}"},
            "trigger": trigger,
            "audience": audience,
            "action": self._action(1),
            "options": {"draft": draft, "dryRun": r.random() < 0.05},
            "status": status,
            "createdAt": created,
        }
