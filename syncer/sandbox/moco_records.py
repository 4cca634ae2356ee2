"""How one MOCO record of each of the eight synced streams is made, and the sample values drawn.

Records follow the current documented list shapes (docs/vendors/moco.md): nested summaries that
point at ids of records already stored, custom properties, German text with umlauts, ß and emoji,
null next to "", money as int, whole float or cents (as recorded responses show), archived records
and disregarded invoices. `MocoData` decides ids, timestamps and when records are made.

One concept: the hand-made records of the eight classic streams, one builder each, kept
together because they point at each other (an activity at its project's task, a deal at its
company) and draw from one random generator in one order (a seed makes the same account).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

Record = dict[str, Any]

_FIRST = (
    "Jürgen",
    "Jörg",
    "Björn",
    "Sören",
    "Günther",
    "Käthe",
    "Hannah",
    "Lena",
    "Maximilian",
    "Felix",
    "Lukas",
    "Sophie",
    "Marie",
    "Ömer",
    "Zoë",
    "Anja",
    "Tobias",
    "Michael",
    "Sabine",
    "Ute",
    "Mats",
    "Leonie",
    "Finn",
    "Emilia",
    "Paul",
    "Jonas",
    "Clara",
    "Aylin",
    "Renée",
    "Jan",
)
_LAST = (
    "Müller",
    "Schäfer",
    "Weiß",
    "Groß",
    "Köhler",
    "Böhm",
    "Krüger",
    "Fuß",
    "Strauß",
    "Hoffmann",
    "Schröder",
    "Wagner",
    "Becker",
    "Schulz",
    "Jäger",
    "Meißner",
    "Günther",
    "Nußbaum",
    "Öztürk",
    "Lehmann",
    "Hartmann",
    "Brückner",
    "Voß",
    "Dürr",
    "Bäumer",
    "Schmitt",
    "Löwe",
    "Kühn",
)
_TRADES = (
    "Bäckerei",
    "Brauerei",
    "Stadtwerke",
    "Autohaus",
    "Möbelhaus",
    "Zahnarztpraxis",
    "Weingut",
    "Kanzlei",
    "Architekturbüro",
    "Gärtnerei",
    "Reisebüro",
    "Druckerei",
    "Café",
    "Metzgerei",
    "Kältetechnik",
    "Fahrradladen",
    "Sanitätshaus",
    "Buchhandlung",
)
_CITIES = (
    "München",
    "Köln",
    "Düsseldorf",
    "Nürnberg",
    "Lüneburg",
    "Göttingen",
    "Würzburg",
    "Saarbrücken",
    "Zürich",
    "Münster",
    "Osnabrück",
    "Fürth",
    "Gießen",
    "Graz",
)
_LEGAL = ("GmbH", "AG", "KG", "GmbH & Co. KG", "e.K.", "UG (haftungsbeschränkt)", "OHG")
_STREETS = ("Hauptstraße", "Schloßallee", "Königsweg", "Bahnhofstraße", "Mühlenweg", "Große Gasse")
_EMOJI = ("🍺", "🚀", "☕", "🎨", "✅", "🛒", "🌱")
_SERVICES = (
    "Website-Relaunch",
    "Corporate-Design-Überarbeitung",
    "Messestand-Planung",
    "SEO-Optimierung",
    "Newsletter-Kampagne",
    "Social-Media-Betreuung",
    "App-Entwicklung",
    "Jahresbericht",
    "Schulungsunterlagen",
    "Intranet-Migration",
    "Wartungsvertrag",
    "Fotoshooting Frühjahr",
    "Logo-Entwicklung",
    "Datenschutz-Audit",
    "Shop-Erweiterung",
    "Barrierefreiheits-Prüfung",
)
_TASKS = (
    "Projektmanagement",
    "Konzeption",
    "Design",
    "Entwicklung",
    "Qualitätssicherung",
    "Beratung",
    "Schulung",
    "Texterstellung",
    "Übersetzung",
)
_DESCRIPTIONS = (
    "Abstimmung mit Kunde",
    "Entwürfe überarbeitet",
    "Fehlerbehebung im Checkout",
    "Kick-off-Meeting 🚀",
    "Recherche Wettbewerber",
    "Änderungswünsche eingepflegt",
    "Telefonat wg. Budgeterhöhung",
    "Code-Review",
    "Präsentation vorbereitet",
    "Größenanpassungen der Bilder",
    "Übergabe an Kunden ✅",
    "Maßnahmenplan erstellt",
    "",
)
# Sentences of the long activity reports.
_REPORT = (
    "Workshop mit der Geschäftsführung zur Priorisierung der offenen Punkte durchgeführt.",
    "Änderungswünsche aus der letzten Abstimmung eingepflegt und dokumentiert.",
    "Fehler im Bestellprozess nachgestellt, Ursache im Zahlungsmodul gefunden und behoben.",
    "Entwürfe für die Startseite überarbeitet (Farben, Typografie, Bildauswahl) 🎨.",
    "Rückfragen des Kunden per Telefon geklärt; nächste Schritte per E-Mail bestätigt.",
    "Testfälle für die Barrierefreiheit ergänzt und die Ergebnisse im Ticket festgehalten.",
    "Budgetübersicht aktualisiert, Mehraufwand für die Schnittstelle begründet.",
    "Größenanpassungen und Komprimierung aller Produktbilder für den Shop erledigt.",
    "Übergabe der Zugangsdaten an die IT des Kunden vorbereitet ✅.",
    "Recherche zu Wettbewerbern in München, Köln und Zürich zusammengefasst.",
)
_POSITIONS = (
    "Geschäftsführerin",
    "Geschäftsführer",
    "Marketingleitung",
    "Einkauf",
    "Assistenz der GF",
    "Leiter IT",
    "Buchhaltung",
    "Projektkoordination",
    "",
)
_UNITS = (
    (101_000_001, "Geschäftsleitung"),
    (101_000_007, "Kreation"),
    (101_000_012, "Entwicklung"),
    (101_000_020, "Beratung & Strategie"),
)
_ROLES = (
    (102_000_003, "Administrator"),
    (102_000_004, "Projektleitung"),
    (102_000_009, "Mitarbeitende"),
    (102_000_011, "Entwickler"),
)
_DEAL_CATEGORIES = (
    (103_000_001, "Erstkontakt", 10),
    (103_000_002, "Angebot versendet", 50),
    (103_000_003, "Verhandlung", 75),
    (103_000_004, "Auftrag erteilt", 100),
)
_TAGS = ("Print", "Digital", "Netzwerk", "Key Account", "Förderung", "Süd", "Nord", "Priorität ⭐")
_SECTORS = ("Automotive", "Banking", "Gastronomie", "Gesundheit", "Öffentlicher Sektor", "Handel")
_KINDS = ("Pitch", "Folgeauftrag", "Rahmenvertrag")
_MONTHS = ("Januar", "März", "Mai", "September")


def _slug(text: str) -> str:
    for umlaut, plain in (("ä", "ae"), ("ö", "oe"), ("ü", "ue"), ("ß", "ss"), ("ë", "e")):
        text = text.lower().replace(umlaut, plain)
    return "".join(c for c in text if c.isascii() and c.isalnum())


class RecordBuilder:
    """Builds one record of any stream, pointing at records already stored in `rows`."""

    def __init__(self, rng: random.Random, rows: dict[str, list[Record]], seed: int = 1) -> None:
        self.rng = rng
        self.rows = rows
        self.seed = seed
        self.fresh = False  # True while creating: new records are active and not disregarded
        self._nested_id = 600_000_000
        self._makers: dict[str, Callable[[int, str], Record]] = {
            "users": self._users,
            "companies": self._companies,
            "contacts": self._contacts,
            "deals": self._deals,
            "projects": self._projects,
            "offers": self._offers,
            "invoices": self._invoices,
            "activities": self._activities,
        }
        self._serial = dict.fromkeys(self._makers, 0)  # records built so far, per stream

    def build(self, stream: str, rid: int, created: str, updated: str) -> Record:
        """A new record of `stream` with id `rid` and the given timestamps."""
        self._serial[stream] += 1
        record = self._makers[stream](rid, updated)
        record["created_at"], record["updated_at"] = created, updated
        return record

    # -- small pieces ------------------------------------------------------------------------

    def _pick(self, stream: str, where: Callable[[Record], bool] | None = None) -> Record | None:
        rows = self.rows[stream]
        matching = [r for r in rows if where(r)] if where else rows
        return self.rng.choice(matching) if matching else None

    def _person(self, stream: str = "users") -> Record | None:
        row = self._pick(stream)
        return None if row is None else {k: row[k] for k in ("id", "firstname", "lastname")}

    def _money(self, low: int, high: int) -> int | float:
        # Real data mixes 150, 100.0 and 1234.56 in one field (docs/vendors/moco.md).
        value = self.rng.uniform(low, high)
        kind = self.rng.random()
        return int(value) if kind < 0.3 else float(int(value)) if kind < 0.5 else round(value, 2)

    def _date(self, year_from: int = 2023, year_to: int = 2026) -> str:
        r = self.rng
        return f"{r.randint(year_from, year_to)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}"

    def _phone(self) -> str:
        r = self.rng
        return f"+49 {r.choice(('30', '40', '89', '221', '171', '152'))} {r.randint(100, 99999)}"

    def _address(self, name: str) -> str:
        r = self.rng
        street = f"{r.choice(_STREETS)} {r.randint(1, 120)}"
        return f"{name}\n{street}\n{r.randint(10000, 99999)} {r.choice(_CITIES)}"

    def _tags(self) -> list[str]:
        return self.rng.sample(_TAGS, self.rng.choice((0, 0, 1, 1, 2, 3)))

    def _custom(self, make: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        return {} if self.rng.random() < 0.3 else make()

    def _next_nested_id(self) -> int:
        self._nested_id += self.rng.randint(1, 50)
        return self._nested_id

    def _archived(self, share: float) -> bool:
        return not self.fresh and self.rng.random() < share

    def _company_name(self) -> str:
        r = self.rng
        forms = (
            lambda: f"{r.choice(_TRADES)} {r.choice(_LAST)}",
            lambda: f"{r.choice(_LAST)} & Söhne {r.choice(_LEGAL)}",
            lambda: f"{r.choice(_TRADES)} {r.choice(_CITIES)} {r.choice(_LEGAL)}",
            lambda: f"{r.choice(_LAST)} {r.choice(_TRADES)} {r.choice(_EMOJI)}",
        )
        return r.choice(forms)()

    # -- one builder per stream --------------------------------------------------------------

    def _users(self, rid: int, updated: str) -> Record:
        r = self.rng
        first, last = r.choice(_FIRST), r.choice(_LAST)
        unit, role = r.choice(_UNITS), r.choice(_ROLES)
        return {
            "id": rid,
            "firstname": first,
            "lastname": last,
            "active": not self._archived(0.15),
            "extern": r.random() < 0.1,
            "email": f"{_slug(first)}.{_slug(last)}@agentur-sandbox.de",
            "mobile_phone": r.choice(("", self._phone())),
            "work_phone": self._phone(),
            "home_address": r.choice(("", self._address(f"{first} {last}"))),
            "info": r.choice(("", "", "Teilzeit (80 %)", "Ersthelferin 🩹")),
            "birthday": r.choice((None, self._date(1965, 2002))),
            "iban": f"DE{r.randint(10, 99)}{r.randint(10**17, 10**18 - 1)}",
            "avatar_url": r.choice((None, f"https://sandbox.mocoapp.com/avatars/{rid}.png")),
            "tags": self._tags(),
            "custom_properties": self._custom(
                lambda: {"Eintrittsmonat": f"{r.choice(_MONTHS)} 20{r.randint(10, 24)}"}
            ),
            "unit": {"id": unit[0], "name": unit[1]},
            "role": {"id": role[0], "name": role[1]},
        }

    def _companies(self, rid: int, updated: str) -> Record:
        r = self.rng
        kind = r.choices(("customer", "supplier", "organization"), (75, 15, 10))[0]
        name = self._company_name()
        domain = f"{_slug(name)[:24]}.de"
        currency, country = r.choice((("EUR", "DE"),) * 6 + (("CHF", "CH"), ("EUR", "AT")))
        archived = self._archived(0.12)
        record: Record = {
            "id": rid,
            "type": kind,
            "name": name,
            "website": r.choice(("", f"www.{domain}")),
            "email": r.choice((None, f"info@{domain}", f"info@{domain}")),
            "billing_email_cc": r.choice((None, "", f"buchhaltung@{domain}")),
            "phone": self._phone(),
            "fax": r.choice(("", self._phone())),
            "address": self._address(name),
            "tags": self._tags(),
            "user": self._person(),
            "info": r.choice(("", "Zahlt zuverlässig.", "Ansprechpartner wechselt häufig 🙈")),
            "custom_properties": self._custom(
                lambda: {
                    "UID": f"{country}-{r.randint(100, 999)}.{r.randint(100, 999)}",
                    "Branche": r.sample(_SECTORS, r.randint(1, 2)),
                }
            ),
            "identifier": r.choice(
                (f"K{self._serial['companies']:04d}", str(self._serial["companies"]))
            ),
            "intern": r.random() < 0.02,
            "billing_tax": r.choice((0, 0.0, 19.0)),
            "currency": currency,
            "custom_rates": r.random() < 0.2,
            "include_time_report": r.random() < 0.5,
            "billing_notes": r.choice(("", "Nur per Mail.")),
            "default_discount": r.choice((0, 0.0, 2.5, 5)),
            "default_cash_discount": r.choice((0.0, 2.0)),
            "default_cash_discount_days": r.choice((0, 10, 14)),
            "country_code": country,
            "vat_identifier": r.choice((None, f"{country}{r.randint(10**8, 10**9 - 1)}")),
            "alternative_correspondence_language": r.random() < 0.1,
            "default_invoice_due_days": r.choice((14, 30, 30)),
            "footer": r.choice((None, "<p>Vielen Dank für Ihr Vertrauen!</p>")),
            "projects": [],
            "active": not archived,
            "archived_on": updated[:10] if archived else None,
            "debit_number": r.choice((None, 10000 + self._serial["companies"])),
        }
        vat = {
            "tax": r.choice((19.0, 7.7, 0.0)),
            "reverse_charge": False,
            "intra_eu": False,
            "active": True,
        }
        if kind == "customer":
            record["customer_vat"] = {
                **vat,
                "print_gross_total": True,
                "notice_tax_exemption": "",
                "notice_tax_exemption_alt": "",
            }
        elif kind == "supplier":
            record["supplier_vat"] = vat
        return record

    def _contacts(self, rid: int, updated: str) -> Record:
        r = self.rng
        first, last = r.choice(_FIRST), r.choice(_LAST)
        company = self._pick("companies") if r.random() < 0.9 else None
        domain = f"{_slug(company['name'])[:24]}.de" if company else "gmx.de"
        return {
            "id": rid,
            "gender": r.choice("FMU"),
            "firstname": first,
            "lastname": last,
            "title": r.choice(("", "", "", "Dr.", "Prof. Dr.", "Dr. med.")),
            "job_position": r.choice(_POSITIONS),
            "mobile_phone": r.choice(("", self._phone())),
            "work_fax": "",
            "work_phone": self._phone(),
            "work_email": r.choice((f"{_slug(first)}.{_slug(last)}@{domain}", "")),
            "work_address": self._address(company["name"] if company else f"{first} {last}"),
            "home_email": "",
            "home_address": "",
            "birthday": r.choice((None, None, self._date(1950, 2000))),
            "avatar_url": None,
            "tags": self._tags(),
            "company": {k: company[k] for k in ("id", "type", "name")} if company else None,
            "custom_properties": self._custom(lambda: {"Newsletter": r.choice(("0", "1"))}),
            "user": self._person(),
        }

    def _deals(self, rid: int, updated: str) -> Record:
        r = self.rng
        status = r.choices(
            ("potential", "pending", "won", "lost", "dropped"), (30, 20, 25, 15, 10)
        )[0]
        company = self._pick("companies")
        person = self._pick("contacts")
        cat = r.choice(_DEAL_CATEGORIES)
        return {
            "id": rid,
            "name": f"{r.choice(_SERVICES)} {company['name'] if company else 'Neukunde'}",
            "status": status,
            "reminder_date": self._date(),
            # Open deals were observed with closed_on "" rather than null (docs/vendors/moco.md).
            "closed_on": (
                updated[:10] if status in ("won", "lost", "dropped") else r.choice(("", None))
            ),
            "money": self._money(1_000, 80_000),
            "currency": "EUR",
            "info": r.choice(("", "Kontakt über Messe 🤝", "Empfehlung von Bestandskunde")),
            "custom_properties": self._custom(
                lambda: {"Quelle": r.choice(("Messe", "Empfehlung", "Website"))}
            ),
            "user": self._person(),
            "company": {k: company[k] for k in ("id", "name", "type")} if company else None,
            "person": (
                {"id": person["id"], "name": f"{person['firstname']} {person['lastname']}"}
                if person
                else None
            ),
            "category": {"id": cat[0], "name": cat[1], "probability": cat[2]},
            "service_period_from": r.choice((None, "2025-01-01")),
            "service_period_to": r.choice((None, "2025-12-31")),
            "inbox_email_address": f"deal-{rid}@inbox.sandbox.mocoapp.com",
            "tags": self._tags(),
        }

    def _projects(self, rid: int, updated: str) -> Record:
        r = self.rng
        customer = self._pick("companies", lambda c: c["type"] == "customer") or self._pick(
            "companies"
        )
        deal = self._pick("deals") if r.random() < 0.4 else None
        contact = self._person("contacts") if r.random() < 0.6 else None
        tasks = [
            {
                "id": self._next_nested_id(),
                "name": name,
                "billable": r.random() < 0.85,
                "active": True,
                "budget": r.choice((None, self._money(500, 20_000))),
                "hourly_rate": r.choice((0, 95, 120.0, 135.5)),
                "description": "",
            }
            for name in r.sample(_TASKS, r.randint(1, 4))
        ]
        contracts = [
            {
                "id": self._next_nested_id(),
                "user_id": u["id"],
                "firstname": u["firstname"],
                "lastname": u["lastname"],
                "billable": True,
                "active": u["active"],
                "budget": None,
                "hourly_rate": r.choice((0, 110.0)),
            }
            for u in r.sample(self.rows["users"], min(len(self.rows["users"]), r.randint(1, 4)))
        ]
        budget = r.choice((None, self._money(2_000, 120_000)))
        return {
            "id": rid,
            "identifier": f"P{self._serial['projects']:04d}",
            "name": f"{r.choice(_SERVICES)}{r.choice(('', '', ' ' + r.choice(_EMOJI)))}",
            "active": not self._archived(0.15),
            "billable": r.random() < 0.9,
            "fixed_price": r.random() < 0.3,
            "retainer": r.random() < 0.1,
            "start_date": r.choice((None, self._date(2023, 2024))),
            "finish_date": r.choice((None, self._date(2025, 2026))),
            "color": r.choice(("#CCCC00", "#4A90E2", "#D0021B", "#7ED321")),
            "currency": customer["currency"] if customer else "EUR",
            "billing_variant": r.choice(("project", "task", "user")),
            "billing_address": customer["address"] if customer else "",
            "billing_email_to": r.choice((None, "rechnung@beispiel.de")),
            "billing_email_cc": r.choice((None, "")),
            "billing_notes": r.choice((None, "")),
            "setting_include_time_report": r.random() < 0.5,
            "budget": budget,
            "budget_monthly": r.choice((None, None, 2_500)),
            "budget_expenses": r.choice((None, self._money(100, 5_000))),
            "hourly_rate": r.choice((0, 95, 120.0, 150)),
            "info": r.choice(("", "Abrechnung quartalsweise.", "Wöchentlicher Report 📊")),
            "tags": self._tags(),
            "customer_report_url": f"https://sandbox.mocoapp.com/reports/{rid:x}",
            "custom_properties": self._custom(
                lambda: {
                    "Projektart": r.choice(("Retainer", "Festpreis", "Aufwand")),
                    "Jira-Link": f"https://jira.example.de/browse/PRJ-{r.randint(1, 999)}",
                }
            ),
            "leader": self._person(),
            "co_leader": self._person() if r.random() < 0.2 else None,
            "customer": {"id": customer["id"], "name": customer["name"]} if customer else None,
            "deal": {"id": deal["id"], "name": deal["name"]} if deal else None,
            "tasks": tasks,
            "contracts": contracts,
            "project_group": r.choice((None, {"id": 104_000_001, "name": "Webseiten"})),
            "billing_contact": contact,
            "contact": contact,
            "secondary_contact": None,
        }

    def _offers(self, rid: int, updated: str) -> Record:
        r = self.rng
        project = self._pick("projects") if r.random() < 0.7 else None
        company = self._pick("companies")
        deal = self._pick("deals") if r.random() < 0.5 else None
        net = self._money(800, 60_000)
        tax = r.choice((19.0, 19.0, 7.7))
        status = r.choice(("created", "sent", "accepted", "partially_billed", "billed", "archived"))
        return {
            "id": rid,
            "identifier": f"A{2400 + self._serial['offers']}",
            "invoice_id": None,
            "date": updated[:10],
            "due_date": self._date(),
            "title": f"Angebot {r.choice(_SERVICES)}",
            "recipient_address": self._address(company["name"] if company else "Neukunde"),
            "currency": "EUR",
            "net_total": net,
            "tax": tax,
            "vat": {
                "tax": tax,
                "reverse_charge": False,
                "intra_eu": False,
                "active": True,
                "print_gross_total": True,
                "notice_tax_exemption": "",
                "notice_tax_exemption_alt": "",
                "code": "UN" if tax == 19.0 else "CH77",
            },
            "gross_total": round(net * (1 + tax / 100), 2),
            "discount": r.choice((0, 0.0, 5.0)),
            "status": status,
            "tags": self._tags(),
            "custom_properties": self._custom(lambda: {"Angebotsart": r.choice(_KINDS)}),
            "company": {"id": company["id"], "name": company["name"]} if company else None,
            "project": {k: project[k] for k in ("id", "identifier", "name")} if project else None,
            "deal": {"id": deal["id"], "name": deal["name"]} if deal else None,
            "user": self._person(),
            "offer_confirmation": None,
            "customer_approval": r.choice(
                (
                    None,
                    {
                        "id": self._next_nested_id(),
                        "active": True,
                        "url": f"https://sandbox.mocoapp.com/a/{rid:x}",
                    },
                )
            ),
        }

    def _invoices(self, rid: int, updated: str) -> Record:
        r = self.rng
        project = self._pick("projects")
        customer_id = project["customer"]["id"] if project and project["customer"] else None
        net = self._money(300, 45_000)
        tax = r.choice((19.0, 19, 7.7))
        gross = round(net * (1 + tax / 100), 2)
        base: Record = {
            "id": rid,
            "customer_id": customer_id,
            "project_id": project["id"] if project else None,
            "identifier": f"R{updated[2:4]}{updated[5:7]}-{self._serial['invoices']:03d}",
            "date": updated[:10],
            "title": f"Rechnung {r.choice(_SERVICES)}",
            "currency": "EUR",
            "net_total": net,
            "gross_total": gross,
        }
        if self._archived(0.06):
            # Disregarded invoices come back with far fewer fields (docs/vendors/moco.md).
            return {**base, "status": "disregarded", "tags": []}
        offer = self._pick("offers") if r.random() < 0.3 else None
        statuses = ("draft", "created", "sent", "partially_paid", "paid", "overdue", "ignored")
        return {
            **base,
            "offer_id": offer["id"] if offer else None,
            "due_date": self._date(),
            "service_period": f"{updated[5:7]}/{updated[:4]}",
            "service_period_from": r.choice((None, f"{updated[:7]}-01")),
            "service_period_to": r.choice((None, f"{updated[:7]}-28")),
            "status": r.choices(statuses, (5, 10, 25, 5, 45, 8, 2))[0],
            "reversed": False,
            "reversal_invoice_id": None,
            "reversal": False,
            "reversed_invoice_id": None,
            "recipient_address": self._address("Beispiel AG").replace("\n", "\r\n"),
            "tax": tax,
            "vat": {
                "tax": tax,
                "reverse_charge": False,
                "intra_eu": False,
                "active": True,
                "print_gross_total": True,
                "notice_tax_exemption": "",
                "notice_tax_exemption_alt": "",
                "code": "UN",
            },
            "discount": r.choice((0, 0.0, 3.0)),
            "creditor_reference": "",
            "cash_discount": r.choice((0, 2.0)),
            "cash_discount_days": r.choice((0.0, 14)),
            "debit_number": None,
            "credit_number": None,
            "locked": r.random() < 0.4,
            "activity_hours_modified": False,
            "custom_properties": self._custom(lambda: {"ext-ref": str(r.randint(1000, 9999))}),
            "tags": self._tags(),
            "debt_collection_procedure": None,
            "user": self._person(),
        }

    def _description(self, rid: int) -> str:
        """Mostly a short note; about one activity in 25 a long report of 600-3,000 characters
        (longer than the 512 MoEngage keeps). The long ones come from their own generator, keyed
        by the seed and the id, so they leave every other generated value as it was."""
        short = self.rng.choice(_DESCRIPTIONS)
        long = random.Random(f"{self.seed}:activity-description:{rid}")
        if long.random() >= 0.04:
            return short
        size = long.randint(600, 3000)
        parts = [f"{short or 'Tagesbericht'}:"]
        while sum(len(p) + 1 for p in parts) < size:
            parts.append(long.choice(_REPORT))
        return " ".join(parts)[:size].rstrip()

    def _activities(self, rid: int, updated: str) -> Record:
        r = self.rng
        project = self._pick("projects")
        task = r.choice(project["tasks"]) if project and project["tasks"] else None
        seconds = r.choice((900, 1800, 2700, 3600, 5400, 7200, 14400, 28800))
        billable = r.random() < 0.8
        billed = billable and r.random() < 0.3
        invoice = self._pick("invoices") if billed else None
        remote = r.choice(("", "", "", "jira", "trello", "github"))
        remote_id = f"{remote.upper()}-{r.randint(1, 9999)}" if remote else None
        return {
            "id": rid,
            "date": updated[:10] if r.random() < 0.5 else self._date(2024, 2025),
            "hours": round(seconds / 3600, 2),
            "seconds": seconds if billable else 0,
            "worked_seconds": seconds,
            "description": self._description(rid),
            "billed": billed,
            "invoice_id": invoice["id"] if invoice else None,
            "billable": billable,
            "tag": r.choice(("", "", "", "Meeting", "Bug 🐛")),
            "remote_service": remote,
            "remote_id": remote_id,
            "remote_url": f"https://{remote}.example.com/{remote_id}" if remote else None,
            "project": {k: project[k] for k in ("id", "name", "billable")} if project else None,
            "task": {k: task[k] for k in ("id", "name", "billable")} if task else None,
            "customer": dict(project["customer"]) if project and project["customer"] else None,
            "user": self._person(),
            "hourly_rate": r.choice((0.0, 95, 120.5, 150)),
            "timer_started_at": None,
        }
