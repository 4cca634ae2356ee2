"""Sample values the MOCA sandbox draws its records from: German and Spanish names with umlauts,
ñ and emoji, cities with coordinates, beacon hardware, trigger repeats and edit notes.

Plain tuples, no logic; `moca_records` picks from them with the seeded generator, so their order
is part of the generated data.
"""

from __future__ import annotations

CITIES = (
    ("München", 48.1372, 11.5756),
    ("Köln", 50.9375, 6.9603),
    ("Düsseldorf", 51.2277, 6.7735),
    ("Nürnberg", 49.4521, 11.0767),
    ("Zürich", 47.3769, 8.5417),
    ("Wien", 48.2082, 16.3738),
    ("Würzburg", 49.7913, 9.9534),
    ("Göttingen", 51.5413, 9.9158),
    ("Lüneburg", 53.2464, 10.4115),
    ("Málaga", 36.7213, -4.4214),
    ("A Coruña", 43.3623, -8.4115),
    ("Barcelona", 41.3874, 2.1686),
)
APP_NAMES = (
    "Stadtwerke München",
    "Bäckerei Müller Treue-App 🥨",
    "Möbelhaus Groß",
    "FC Würzburg Fan-App ⚽",
    "Museo Picasso Málaga",
    "Flughafen Düsseldorf Guide ✈️",
    "Café Königsblau ☕",
    "Tienda Ñandú 🛒",
    "Hörsaal-Finder Göttingen",
    "Señor Jamón Tapas",
)
APP_CATEGORIES = ("Shopping", "Food & Drink", "Sports", "Travel", "Lifestyle", "Education")
BRANDS = (
    "Bäckerei Müller",
    "Möbelhaus Groß",
    "Café Königsblau",
    "Sporthaus Jäger",
    "Librería Peña",
    "Supermercado Ñandú",
    "Drogerie Weiß",
    "Modehaus Schäfer",
    "Bücherstube Löwe",
    "Óptica Muñoz",
)
DISTRICTS = (
    "Zentrum",
    "Hauptbahnhof",
    "Altstadt",
    "Flughafen ✈️",
    "Nord",
    "Süd",
    "Messegelände",
    "Einkaufszentrum",
    "Fußgängerzone",
)
ZONES = (
    ("Eingang", "entrance"),
    ("Kasse", "checkout"),
    ("Schaufenster", "display"),
    ("Café-Ecke ☕", "food"),
    ("Umkleidekabinen", "fitting"),
    ("Obergeschoss", "department"),
    ("Kühlregal ❄️", "department"),
    ("Getränkeabteilung", "department"),
    ("Parkplatz", "parking"),
    ("Información", "service"),
)
# provider, iBeacon UUID (None: the account's own), manufacturer, model
PROVIDERS: tuple[tuple[str, str | None, str, str], ...] = (
    ("KONTAKT", "F7826DA6-4FA2-4E98-8024-BC5B71E0893E", "Kontakt.io", "Smart Beacon SB16-2"),
    ("ESTIMOTE", "B9407F30-F5F8-466E-AFF9-25556B57FE6D", "Estimote", "Proximity Beacon"),
    ("NAOMICRO", None, "Pole Star", "NAO Micro"),
)
GEOFENCE_NAMES = (
    "Parkhaus",
    "Messe",
    "Stadion",
    "Bahnhofsvorplatz",
    "Wochenmarkt",
    "Biergarten 🍺",
    "Playa",
    "Mercado",
)
SEGMENT_NAMES = (
    "Stammkunden",
    "Neukunden München",
    "iOS-Nutzer:innen",
    "Android DE/AT/CH",
    "Clientes en España 🇪🇸",
    "Fußballfans ⚽",
    "Newsletter-Abonnenten",
    "Schnäppchenjäger 💸",
    "Premium-Mitglieder ⭐",
    "Pendler Hauptbahnhof",
)
CAMPAIGN_NAMES = (
    "Sommerschlussverkauf ☀️",
    "Willkommensrabatt",
    "Oktoberfest-Special 🍺",
    "Black Friday",
    "Adventskalender 🎄",
    "Rebajas de enero",
    "Frühstücksangebot 🥐",
    "Treuepunkte doppelt",
    "Neueröffnung Köln",
    "Ostern 🐣",
    "Día del Padre",
    "Herbstkollektion 🍂",
)
MESSAGES = (
    "Willkommen zurück! 👋",
    "Heute 20 % auf alles – nur in dieser Filiale!",
    "Ihr Kaffee wartet ☕",
    "¡Bienvenido! Descubre nuestras ofertas",
    "Schön, dass Sie da sind 😊",
    "Nur heute: 2 für 1 🥨",
    "Gratis WLAN im Café-Bereich",
)
TAGS = ("Stammkunde", "Fußballfan", "Café-Liebhaber", "Schnäppchenjäger", "VIP ⭐", "Familie")
REPEATS = (
    "Immediately",
    "Never",
    "After1Min",
    "After3Min",
    "After5Min",
    "After15Min",
    "After30Min",
    "After1Hour",
    "After2Hours",
    "After4Hours",
    "After8Hours",
    "After12Hours",
    "After24Hours",
    "NextDay",
    "After2Days",
    "After3Days",
    "After5Days",
    "NextWeek",
    "After2Weeks",
    "NextMonth",
    "After2Months",
)
EDITS = (
    "Korrigiert nach Rücksprache",
    "Angepasst",
    "Überarbeitet 📝",
    "Actualizado",
    "Geändert gemäß Mail",
)
