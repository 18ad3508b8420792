"""Personal data in a prompt: entities with their type and character span.

Structured kinds are patterns validated by checksums (Luhn for cards, ISO 13616 mod-97 for IBANs,
the SSA's rules for SSNs, `ipaddress` for IPs), found more reliably than by a model, in
microseconds. Person names come from a gazetteer (`routing/models/names.json`: given names and
surnames of many locales, from Faker's lists, minus words the router's corpora use as ordinary
words) read in context: a capitalised run holding a known name, a title or a cue ("my name is")
before a single word. Street addresses are a number beside a street word (Street, Rd, -straße,
-gade, Via, Rue, ul., …) or an apartment or suite number. Names and addresses are found for
policies that ask for them; the default policy redacts the structured kinds only (a question about
Ada Lovelace needs her name).
"""

from __future__ import annotations

import functools
import ipaddress
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ENTITY_TYPES", "STRUCTURED", "Entity", "find_entities", "redact"]

NAMES = Path(__file__).parents[1] / "models" / "names.json"


@dataclass(frozen=True)
class Entity:
    type: str
    start: int
    end: int

    def overlaps(self, other: Entity) -> bool:
        return self.start < other.end and other.start < self.end


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def _luhn(text: str) -> bool:
    digits = [int(c) for c in _digits(text)]
    if not 12 <= len(digits) <= 19 or len(set(digits)) == 1:
        return False
    total = 0
    for position, digit in enumerate(reversed(digits)):
        if position % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def _iban(text: str) -> bool:
    compact = re.sub(r"\s", "", text).upper()
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def _ssn(text: str) -> bool:
    area, group, serial = re.split(r"[- .]", text)
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def _ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _phone(text: str) -> bool:
    number = re.split(r" ?(?:x|ext)", text)[0]
    return 7 <= len(_digits(number)) <= 15 and not _DATE.match(number)


_DATE = re.compile(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}\b|\d{1,2}[-./]\d{1,2}[-./]\d{4}\b")


def _always(text: str) -> bool:
    return True


@dataclass(frozen=True)
class _Recognizer:
    type: str
    pattern: re.Pattern[str]
    valid: Callable[[str], bool]
    hints: tuple[str, ...] = ()  # substrings one of which any match contains: skip the scan without

    def scan(self, text: str) -> Iterator[re.Match[str]]:
        if self.hints and not any(hint in text for hint in self.hints):
            return iter(())
        return self.pattern.finditer(text)


# In precedence order: where two matches overlap, the earlier recognizer's wins (a card number is
# not also a phone number).
_RECOGNIZERS = (
    _Recognizer(
        "SECRET",
        re.compile(
            r"\b(?:sk-(?:ant-|proj-)?[A-Za-z0-9_-]{20,}|AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{36,}"
            r"|github_pat_[A-Za-z0-9_]{40,}|xox[abprs]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_-]{35}"
            r"|glpat-[A-Za-z0-9_-]{20,}|eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})"
            r"|-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----"
        ),
        _always,
        ("sk-", "AKIA", "gh", "github_pat_", "xox", "AIza", "glpat-", "eyJ", "PRIVATE KEY"),
    ),
    _Recognizer(
        "EMAIL_ADDRESS",
        re.compile(r"\b[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,24}\b"),
        _always,
        ("@",),
    ),
    _Recognizer(
        "IBAN_CODE",
        re.compile(r"\b[A-Z]{2}\d{2}(?:[A-Z0-9]{11,30}|(?: [A-Z0-9]{4}){2,7}(?: [A-Z0-9]{1,3})?)\b", re.I),
        _iban,
    ),
    _Recognizer(
        "CREDIT_CARD",
        re.compile(r"\b(?:\d{12,19}|\d{4}([ -])\d{4}\1\d{4}\1\d{1,7}|\d{4}([ -])\d{6}\2\d{4,5})\b"),
        _luhn,
    ),
    _Recognizer("US_SSN", re.compile(r"\b\d{3}([- .])\d{2}\1\d{4}\b"), _ssn),
    _Recognizer(
        "IP_ADDRESS",
        re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b"),
        _ip,
        ("0.", "1.", "2.", "3.", "4.", "5.", "6.", "7.", "8.", "9."),
    ),
    _Recognizer(
        "IP_ADDRESS",
        re.compile(
            r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])"  # validated by ipaddress
        ),
        _ip,
        ("::", *(f"{c}:" for c in "0123456789abcdefABCDEF")),
    ),
    _Recognizer(
        "PHONE_NUMBER",
        re.compile(
            r"(?:(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{1,5}(?:[ .-]\d{2,8}){1,5}"
            r"|(?<![\w+])\+\d{7,14}|\b[2-9]\d{2}[2-9]\d{6})"  # +E.164; a US number without separators
            r"(?: ?(?:x|ext\.?) ?\d{1,5})?(?!\w|-\d)"  # an extension; no digit next ("-Fax" may follow)
        ),
        _phone,
    ),
)
STRUCTURED = tuple(dict.fromkeys(r.type for r in _RECOGNIZERS))

_STREET_AFTER = (  # the street word after the name: "221 Baker Street", "12 Elm St."
    "street|avenue|road|boulevard|lane|drive|court|way|place|terrace|circle|parkway|square|trail|"
    "highway|crescent|close|grove|gardens|row|alley|plaza|loop|pike|turnpike|run|path|walk|mews|"
    "expressway|freeway|crossing|ranch|heights|ridge|view|estates|meadows|springs|village|harbor|"
    "harbour|point|landing|junction|park|port|spur|cove|brook|creek|glen|green|hollow|knoll|mill|"
    "oval|pass|shoals|station|valley|wells|forge|falls"
)
# The rest of the USPS street suffixes (Publication 28, C1) and their plurals, as US and UK addresses
# write them: capitalised, since most are ordinary words too ("60 W light", "1700 The passage").
_STREET_AFTER_TITLED = re.sub(
    r"(?:^|(?<=\|))[a-z]",
    lambda first: first.group().upper(),
    (
        "alley|annex|arcade|bayou|bend|bluffs?|bottom|branch|bridge|brooks|burgs?|bypass|camp|canyon|"
        "causeway|centers?|circles|cliffs?|club|commons?|corners?|course|courts|coves|crest|crossroads?|"
        "curve|dale|dam|divide|drives|estate|extensions?|ferry|fields?|flats?|fords?|forest|forges|forks?|"
        "fort|gateway|glens|greens|groves|harbors|haven|hills?|inlet|islands?|isle|junctions|keys?|knolls|"
        "lakes?|landing|lights?|loaf|locks?|lodge|manors?|meadow|mills|mission|motorway|mountains?|neck|"
        "orchard|overpass|parks|parkways|passage|pines?|plains?|points|ports|prairie|radial|ramp|rapids?|"
        "ridges|river|roads|route|shoal|shores?|skyway|spring|spurs|squares|stravenue|stream|streets|"
        "throughway|trace|track|trafficway|tunnel|underpass|unions?|valleys|viaduct|views|villages|"
        "ville|vista|walks|wall|ways"
    ),
)
_STREET_ABBREVIATION = "st|ave|rd|blvd|ln|dr|ct|pl|cir|pkwy|sq|hwy|ter"  # their full stop is theirs
_STREET_SUFFIX = (  # compound street words: "Pohlstrasse 9", "Søndergade 52", "Kiannonkatu 98"
    "stra(?:ß|ss)e|str\\.|gasse|weg|allee|platz|ring|damm|gade|vej|veien|vegen|gata|gatan|vägen|väg|"
    "katu|tie|kuja|polku|laan|straat|plein|gracht|kade|utca|iela|gatve|tee|vei|stræde|torv|"
    "hof|baan|dreef|singel|pad|steeg|stigen|stig|torget|torg|gränd|backen|gången|allén|platsen|"
    "bulevardi|raitti|rinne|aukio|tori|ranta|väylä|kaari|puisto|ská|ova|ského|ckého"  # nl, sv, fi, cs
)
# The long ones, which also end a street's name written in lower case after a capitalised word.
_STREET_SUFFIX_LOWER = (
    "polku|katu|kuja|bulevardi|raitti|rinne|aukio|väylä|gatan|vägen|gade|stræde|straße|strasse"
)
# The street word apart, after the name and before the number: Hungarian ("Dózsa György utca 100.",
# "Bácsmindszenti út 66.") and Danish ("Høgholt Allé 776").
_STREET_APART = "út|utca|tér|körút|sor|köz|rakpart|sétány|fasor|liget|dűlő|lejtő|Allé|Alle|Vænge|Plads|Torv"
# Abbreviations a street starts with, only where a name and a number follow ("R. de Miranda, 88").
_STREET_BEFORE_SHORT = "r\\.|av|pátio|estação|favela|distrito|área|bairro"
# Street words that make a street of the name after them without a number ("rue de Dos Santos").
_STREET_NAMED = (
    "rue|avenue|boulevard|chemin|impasse|allée|quai|viale|piazza|calle|rua|travessa|ulica"  # not "via QR"
)
_STREET_BEFORE = (  # the street word first: "Via dei Fiorentini 17", "36 rue de Pologne"
    "rue|avenue|av\\.|boulevard|bd|chemin|place|allée|impasse|quai|via|viale|piazza|corso|vicolo|"
    "largo|calle|avenida|paseo|plaza|carrera|camino|rua|travessa|alameda|ul\\.|ulica|al\\.|aleja|"
    "strada|bulevardul|calea|cesta|trg|ulice|náměstí|plac|pl\\.|"
    "praça|praia|morro|núcleo|estrada|rodovia|vila|quadra|setor|conjunto|ladeira|viela|beco|sítio|"
    "chácara|condomínio|jardim|parque|residencial|passarela|trecho|vereda|esplanada|loteamento|"
    "recanto|incrocio|canale|borgo|rotonda|contrada|piazzale|lungomare|salita|vico|traversa|acceso|"
    "pasadizo|cañada|callejón|carretera|glorieta|pasaje|ronda|rambla|travesía|vía|urbanización|"
    "bajada|cuesta|avinguda|carrer|passeig"
)
# Capital letters: ASCII, Latin-1 and Latin Extended-A ("Šafránce", "Łódź", "Żory").
_UPPER = "A-ZÀ-ÖØ-ÞĀĂĄĆĈĊČĎĐĒĔĖĘĚĜĞĠĢĤĦĨĪĬĮİĲĴĶĹĻĽĿŁŃŅŇŊŌŎŐŒŔŖŘŚŜŞŠŢŤŦŨŪŬŮŰŲŴŶŸŹŻŽ"
_CAP = rf"[{_UPPER}][\w'\u2019.-]*"  # a capitalised word
_WORDS = rf"[{_UPPER}][\w'\u2019-]+(?: [{_UPPER}][\w'\u2019-]+){{0,2}}"  # on one line
_CUED = r"(?:(?<=lives at )|(?<=located at )|(?<=address: )|(?<=is on ))"
_MONTH = r"(?i:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?\s"
_LINK = r"(?:(?:de|del|della|dei|di|du|des|la|le|van|von|der)\s+){0,2}"
_STREET_WORD = rf"(?:(?i:{_STREET_AFTER})\b|(?:{_STREET_AFTER_TITLED})\b|(?i:{_STREET_ABBREVIATION})\b\.?)"
_ADDRESS = re.compile(
    # a flat and its street on the next line: "Flat 37W\nDavies Meadows" (UK forms)
    rf"(?i:\b(?:flat|studio|apartment|apt|unit|suite)\.?)[ \t]+#?\d{{1,5}}[A-Za-z]?,?[ \t]*\n[ \t]*"
    rf"(?:{_CAP}[ \t]+){{1,4}}{_STREET_WORD}"
    rf"|\b\d{{1,6}}[A-Za-z]?,?[ \t]+(?:{_CAP}[ \t]+){{1,4}}{_STREET_WORD}"
    rf"|\b(?:{_CAP}[ \t]+)?{_CAP}(?i:{_STREET_SUFFIX})\s*\d{{1,5}}[A-Za-z]?\b"
    rf"|\b{_CAP}[ \t]+[a-zà-ÿ]+(?:{_STREET_SUFFIX_LOWER})[ \t]*\d{{1,5}}[A-Za-z]?\b"  # "Kolmi puistopolku 2"
    rf"|\b{_CAP}(?:[ \t]+[\w'-]+)?[ \t]+(?:{_STREET_APART})[ \t]+\d{{1,5}}\.?(?!\d)"
    rf"|\b(?:Na|U|Pod|Nad|Za|Před|K|V)[ \t]+{_CAP}(?:[ \t]+{_CAP})?[ \t]+\d{{1,5}}\b"  # "Na Šafránce 5" (cs)
    rf"|\b\d{{1,5}}[A-Za-z]?,?\s+(?i:{_STREET_BEFORE})\s+{_LINK}[\w'\u2019.-]+"
    rf"|(?i:\b(?:{_STREET_BEFORE}|{_STREET_BEFORE_SHORT}))\s+{_LINK}{_CAP}(?:\s+{_LINK}{_CAP}){{0,3}},?\s+"
    r"(?:\d{1,5}[A-Za-z]?\b|S/N\b)"  # "Praça de São João de Deus, 5"; S/N: no number
    r"|(?i:\b(?:apt|apartment|suite|ste|unit|flat|studio)\.?\s+#?\d{1,5}[A-Za-z]?\b)"
    r"|(?i:\bP\.?\s?O\.?\s+Box\s+\d{1,6}\b)|\bPSC \d{1,5}, Box \d{1,5}\b"
    rf"|\b\d{{1,6}} (?!{_MONTH}){_WORDS} \d{{1,5}}[A-Za-z]?\b"  # "172 Maneeži 75", not "03 Feb 2022"
    rf"|\b\d{{1,6}} \d{{1,5}} {_WORDS}"  # "846 31 Rue Al Imam"
    rf"|{_CUED}{_CAP}(?:\s+{_CAP}){{0,2}},?\s+\d{{1,5}}[A-Za-z]?\b"  # "lives at Jahu 80"
)
_ZIP_CUED = re.compile(r"(?i:\b(?:zip|postal|post) ?code(?: is|:)?\s+)(\d{4,6}(?:-\d{4})?)\b")
_NUMBER_BEFORE = re.compile(r"\b\d{1,6}[ \t]+$")  # "48334 36 rue de Pologne": the house's number too
# What follows a street on the same line in prose: ", Honolulu HI 96817", ", 75002 Paris, France".
_PLACE_WORD = rf"(?:[{_UPPER}][\w'\u2019-]*|\d{{3,6}}\b)"
_PLACE_AFTER = re.compile(rf"(?:,[ \t]*{_PLACE_WORD}(?:[ \t]+{_PLACE_WORD}){{0,3}}){{1,3}}")
_BLOCK_LINE = re.compile(r"[ \t>?]*([\w'\u2019.,#/ -]{1,48})[ \t]*$")  # a line of an address block
_LINE_START = re.compile(r"(?:^|\n)[ \t>?]*$")


# A street without a number, told by the street word first ("rue David Lebon").
_NAMED_STREET = re.compile(rf"(?i:\b(?:{_STREET_NAMED}))[ \t]+{_LINK}{_CAP}(?:[ \t]+{_LINK}{_CAP}){{0,2}}")
_DIGITS = re.compile(r"\d+|S/N")  # S/N: "sem número", no number
_BEFORE_NUMBER, _AFTER_NUMBER = 100, 60  # how far from its number an address reaches


def _street_matches(text: str) -> list[re.Match[str]]:
    """Matches of the street patterns, longest first where two start together. Those with a number
    are looked for only near numbers: one scan of the whole pattern costs ~1 ms per 1,000
    characters, most of a long prompt has no number, and every such address has one."""
    windows: list[list[int]] = []
    for number in _DIGITS.finditer(text):
        low, high = max(0, number.start() - _BEFORE_NUMBER), number.end() + _AFTER_NUMBER
        if windows and low <= windows[-1][1]:
            windows[-1][1] = high
        else:
            windows.append([low, high])
    found = [m for low, high in windows for m in _ADDRESS.finditer(text, low, min(high, len(text)))]
    found += _NAMED_STREET.finditer(text)
    return sorted(found, key=lambda m: (m.start(), -m.end()))


def _addresses(text: str) -> Iterator[tuple[int, int]]:
    """Street addresses, each with what belongs to it: a number before it, the place after it on
    its line, and, for an address that starts a line (a letter's block), the short lines below it
    (suite, town, country, postcode) — as Presidio labels them."""
    end = 0
    for match in _street_matches(text):
        if match.start() < end:
            continue
        start, end = match.start(), match.end()
        before = _NUMBER_BEFORE.search(text, max(0, start - 12), start)
        start = before.start() if before else start
        if _LINE_START.search(text, max(0, start - 8), start):
            end = _block_end(text, end)
        elif place := _PLACE_AFTER.match(text, end):
            end = place.end()
        yield start, end
    for match in _ZIP_CUED.finditer(text):
        yield match.start(1), match.end(1)


def _block_end(text: str, end: int, lines: int = 5) -> int:
    """The end of an address block that goes on at `end`: the rest of its line, then up to `lines`
    short lines below it (a single blank line between two of them is part of it)."""
    line_end = _line_end(text, end)
    if text[end:line_end].strip() and not _block_line(text[end:line_end]):
        return end
    end = cursor = line_end
    blank = 0
    while lines and cursor < len(text) and blank < 2:
        following = _line_end(text, cursor + 1)
        line = text[cursor + 1 : following]
        if not line.strip():
            blank += 1
        elif _block_line(line):
            end, blank, lines = following, 0, lines - 1
        else:
            break
        cursor = following
    return end


def _line_end(text: str, position: int) -> int:
    found = text.find("\n", position)
    return len(text) if found < 0 else found


def _block_line(line: str) -> bool:
    part = _BLOCK_LINE.fullmatch(line)
    return part is not None and len(part.group(1).split()) <= 5 and not _CLOSING.match(line)


# A letter's closing or greeting, which ends an address block above it ("Thanks,", "Best regards,").
_CLOSING = re.compile(
    r"[ \t]*(?:thanks|thank you|regards|best|best regards|kind regards|cheers|sincerely|yours|dear|hi|hello)"
    r"\b[^\n]*$",
    re.IGNORECASE,
)


_TITLES = frozenset(
    ["mr", "mrs", "ms", "miss", "mx", "dr", "prof", "sir", "dame", "madam", "mme", "mlle", "herr", "frau"]
)
_CUES = re.compile(
    r"\b(?:my name is|my name's|i am called|i'm called|call me|named|called|this is|dear|signed|"
    r"regards|sincerely|contact|ask for|attn|attention|patient|client|customer|mother|father|"
    r"wife|husband|son|daughter|friend|colleague|manager|directed by|starring|written by|sung by|"
    r"says|assistant to|follow up with|talk to|speak to|meet|met with|founders|including)[\s:,]+$",
    re.IGNORECASE,
)
# Words that say the next one is a name, whatever it is (a name the gazetteer does not know, or one
# written in lower case): "my name is višeslav", "Name: Toshimi Arata", "call me Snežana".
_NAMING = re.compile(
    r"\b(?:my name is|my name's|(?:first|last|full|maiden|real|nick|your) ?name(?: is)?|name:|names? are|"
    r"call me|calls me|call him|call her|i am called|i'm called)\??[\s:,]+",  # "last name? Boyle"
    re.IGNORECASE,
)
# What "my name is …" may be followed by that is not a name.
_NOT_NAMES = frozenset(
    [
        "a",
        "an",
        "the",
        "not",
        "no",
        "just",
        "so",
        "very",
        "also",
        "too",
        "here",
        "there",
        "it",
        "this",
        "that",
        "what",
        "which",
        "who",
        "unknown",
        "please",
        "again",
        "secret",
        "irrelevant",
        "important",
        "on",
        "in",
        "at",
        "of",
        "for",
        "and",
        "or",
        "but",
        "is",
        "was",
    ]
)
# What a person does, right after their name: "Trivo lives on …", "selma is from stillwater".
_ACTS = re.compile(
    r" (?:is from|lives (?:in|on|at)|was born|had given|has given|said|says|told|asked|wrote) ", re.IGNORECASE
)
# Capitalised at a sentence's start without being names.
_PRONOUNS = frozenset(
    [
        "i",
        "you",
        "he",
        "she",
        "it",
        "we",
        "they",
        "this",
        "that",
        "these",
        "those",
        "there",
        "here",
        "what",
        "who",
        "which",
        "the",
        "a",
        "an",
        "my",
        "our",
        "your",
        "his",
        "her",
        "their",
        "its",
        "everyone",
        "someone",
        "nobody",
        "somebody",
        "anyone",
    ]
)
_PARTICLES = frozenset(["van", "von", "de", "der", "den", "da", "di", "del", "della", "du", "le", "la"])
# Words that end street and place names, never a person's (unlike Park, Hill or Lane, also surnames).
_PLACE_WORDS = frozenset(
    ["street", "road", "avenue", "boulevard", "drive", "terrace", "parkway", "highway", "bypass", "islands",
     "mall", "loop", "expressway", "freeway", "turnpike", "st", "rd", "ave", "blvd", "coast", "county",
     "city", "republic", "kingdom", "province", "springs", "falls", "beach", "island", "isles", "union",
     "coves", "flat", "flats"]
)  # fmt: skip
# Words that start place names made of a given name ("San Jose", "Santa Ana", "Port Elizabeth"):
# the gazetteer keeps such given names (routing/train.py), so the place is told by its first word.
_PLACE_FIRST = frozenset(
    ["san", "santa", "santo", "são", "sao", "saint", "sainte", "st", "ste", "port", "fort", "ft", "lake",
     "mount", "mt", "cape", "new", "el", "los", "las", "villa", "isla", "ile", "île", "bad", "bay", "glen",
     "north", "south", "east", "west", "upper", "lower", "great", "little"]
)  # fmt: skip
# Words inside a place's name wherever they stand ("Dusino San Michele", "Porto Alegre").
_PLACE_INSIDE = frozenset(
    ["san", "santa", "santo", "são", "sao", "saint", "sainte", "porto", "quinta", "vila", "cite"]
)
# A street named after a person, told by its house number or street word after it ("Joaquin Suarez
# 2906.", "Kálmán Imre u. 12."); not a year ("Adam McDowell 1975"), not a count ("takes Kevin 15
# minutes").
_NUMBERED = re.compile(r" (?:u\.|utca\b|út\b|tér\b|(?!1[89]\d\d\b|20\d\d\b)\d{1,4}(?=[ \t]*(?:[.,;|)\n]|$)))")
# A name that ends or is followed by one of these names a firm or a body ("Conway Inc.", "The Clark,
# Romero and Hall Orchestra"), not a person.
_ORGANISATION = re.compile(
    r"(?:[ \t]*,?[ \t]*(?:and|&)?[ \t]*[A-Z][\w'-]*)?[ \t]*,?[ \t]*(?:Inc|Ltd|LLC|LLP|PLC|GmbH|AG|SA|Corp|"
    r"Corporation|Company|Co|Group|Partners|Associates|Investments|Holdings|Orchestra|Foundation|Bank|"
    r"University|Institute|Agency|Industries|Enterprises|Solutions|Systems|Technologies|Insurance)\b"
)
_TOKEN = re.compile(r"[A-Z]\.(?=\s)|[^\W\d_][\w'\u2019-]*")  # an initial, or a word


_POSSESSIVE = re.compile(r"['\u2019]s$")


@functools.cache
def _gazetteer() -> tuple[frozenset[str], frozenset[str]]:
    """Given names and surnames, lower-cased (written by `sovra router train`)."""
    names = json.loads(NAMES.read_text(encoding="utf-8"))
    return frozenset(names["first"]), frozenset(names["last"])


_SPEAKER = re.compile(rf"(?m)^[ \t>]*([{_UPPER}][^\W\d_]+):")  # "Ella: What a wife." at a line's start


def _speakers(text: str) -> Iterator[tuple[int, int]]:
    """The speakers of a dialogue: words that label lines ("Ella: …", "Destiny: …"), at least two
    of them, half or more known names — so a form's "Name:", "Phone:", "Date:" is no dialogue."""
    labels = list(_SPEAKER.finditer(text))
    distinct = {m.group(1) for m in labels}
    first, last = _gazetteer()
    known = {w for w in distinct if w.lower() in first or w.lower() in last}
    if len(distinct) < 2 or 2 * len(known) < len(distinct):
        return
    for match in labels:
        yield match.start(1), match.end(1)


def _persons(text: str) -> Iterator[tuple[int, int]]:
    yield from _speakers(text)
    firms: list[tuple[int, int]] = []  # "The Jones, Smith and Davis Orchestra": none of its words
    yield from _listed(text, firms)
    yield from _paired(text)
    for start, end in _people(text):
        if not any(start < firm_end and firm_start < end for firm_start, firm_end in firms):
            yield start, end


def _people(text: str) -> Iterator[tuple[int, int]]:
    """Spans of person names: a run of capitalised words (particles and initials inside) with a
    known given name and another known name or a second word; or, after a title ("Mrs.") or a cue
    ("my name is"), any known name (lower case too, after a cue)."""
    first, last = gazetteer = _gazetteer()
    tokens = list(_TOKEN.finditer(text))
    lowered = text.lower()
    cue_words = "name" in lowered or "call" in lowered  # a scan for naming cues costs ~1 ms per 8,000 chars
    named = (
        {m.end() for m in _NAMING.finditer(text)} if cue_words else set()
    )  # where a word is said to be a name
    index = 0
    while index < len(tokens):
        word = tokens[index].group()
        if tokens[index].start() in named and (span := _named(text, tokens, index, gazetteer)):
            yield span
            index += 1
            continue
        if _acting(text, tokens[index], gazetteer):
            yield tokens[index].start(), tokens[index].end()
            index += 1
            continue
        if not _title_case(word) and word.lower() not in first and word.lower() not in last:
            index += 1  # no run starts here, cue or not: skip the look behind (most words)
            continue
        before = text[max(0, tokens[index].start() - 24) : tokens[index].start()]
        cued = bool(_CUES.search(before))
        previous = before.rstrip(" .").rsplit(maxsplit=1)
        titled = bool(previous) and previous[-1].lower() in _TITLES
        run = _run(text, tokens, index, cued, gazetteer)
        if not run:
            index += 1
            continue
        words = [_POSSESSIVE.sub("", tokens[i].group().rstrip(".")).lower() for i in run]
        names = [w for w in words if len(w) > 1 and w not in _PARTICLES]
        given = sum(w in first for w in names)
        known = sum(w in first or w in last for w in names)
        end = tokens[run[-1]].end()
        firm = _ORGANISATION.match(text, end) or _ORGANISATION.match(" " + tokens[run[-1]].group())
        place = bool(_PLACE_WORDS.intersection(words[1:]) or _PLACE_INSIDE.intersection(words))
        place = place or _NUMBERED.match(text, end) is not None
        if firm or place or (len(words) > 1 and words[0] in _PLACE_FIRST):
            index = run[-1] + 1  # a firm or a street named after people ("Conway Inc.", "Kent Street")
            continue
        said = bool((titled and names) or (cued and known))  # the words before say a person comes
        # or the words after say a person was: "Tomomi Nishiyama lives at …", names known or not
        acts = _ACTS.match(text, end) is not None
        said = said or (len(names) >= 2 and not _FUNCTION_WORDS.intersection(words) and acts)
        if (len(names) >= 2 and known) or given or said or _initialled(words):
            yield tokens[run[0]].start(), end
        index = run[-1] + 1


def _initialled(words: list[str]) -> bool:
    """A given name, an initial and a surname ("Faina D. Yefremova"), known to the gazetteer or not;
    not a label and the next sentence ("State A. The …"), a pronoun or a numeral ("How I Became")."""
    if len(words) != 3 or len(words[1]) != 1 or words[1] in "ivx":
        return False
    return len(words[0]) > 1 and len(words[2]) > 1 and not _FUNCTION_WORDS.intersection((words[0], words[2]))


_FUNCTION_WORDS = frozenset(
    ["the", "a", "an", "how", "what", "why", "when", "where", "which", "who", "if", "is", "are", "was",
     "one", "should", "this", "that", "it", "in", "on", "for", "from", "to", "we", "you", "they",
     "there", "and", "or", "but", "as", "at", "by", "of", "with", "after", "before", "then"]
)  # fmt: skip


# A list of capitalised words ("our founders: Kónya, Becker and Vasquez"): people when most are names.
_WORD = rf"[{_UPPER}][\w'\u2019-]+"
_LIST = re.compile(rf"\b(?:{_WORD}, ){{1,8}}{_WORD},? and {_WORD}\b")
_ITEM = re.compile(r"[^\W\d_][\w'\u2019-]*")


# Two people who did something together: "Marrero and Murphy were precision engineers".
_PAIR = re.compile(rf"\b({_WORD}) and ({_WORD}) (?:were|are|have|had|met|founded|wrote|said|married)\b")


def _paired(text: str) -> Iterator[tuple[int, int]]:
    """Both words of a pair that acted together, when one is a known name and neither a common
    word ("Sales and Marketing were" is no one)."""
    first, last = _gazetteer()
    for match in _PAIR.finditer(text):
        words = [match.group(1).lower(), match.group(2).lower()]
        if _FUNCTION_WORDS.intersection(words) or not any(w in first or w in last for w in words):
            continue
        yield match.span(1)
        yield match.span(2)


def _listed(text: str, firms: list[tuple[int, int]]) -> Iterator[tuple[int, int]]:
    """The items of a list of single capitalised words: half or more given names ("They had 6:
    Gaetane, Hannah, Anthony and Derek"), or half or more names after a cue ("our founders: Kónya,
    Becker and Vasquez") — not surnames alone, which is how firms are named ("Hawkins, Richardson
    and Santana")."""
    first, last = _gazetteer()
    for match in _LIST.finditer(text):
        before = text[max(0, match.start() - 24) : match.start()]
        if before.endswith(("The ", "the ")) or _ORGANISATION.match(text, match.end()):
            firms.append(match.span())  # "The Jones, Smith and Davis Orchestra"
            continue
        items = [m for m in _ITEM.finditer(text, match.start(), match.end()) if m.group() != "and"]
        words = [_POSSESSIVE.sub("", m.group()).lower() for m in items]
        given = sum(w in first for w in words)
        known = sum(w in first or w in last for w in words)
        if 2 * given >= len(words) or (_CUES.search(before) and 2 * known >= len(words)):
            yield from ((m.start(), m.end()) for m in items)


def _named(
    text: str, tokens: list[re.Match[str]], index: int, gazetteer: tuple[frozenset[str], frozenset[str]]
) -> tuple[int, int] | None:
    """The name a naming cue announces: a capitalised run, or one word in lower case that ends the
    phrase ("my name is selma."), unless it is a word that is no name ("my name is not …")."""
    run = _run(text, tokens, index, True, gazetteer)  # capitalised words, or known names in any case
    word = tokens[index].group()
    if run and any(len(tokens[i].group().rstrip(".")) > 1 for i in run):  # not an answer option's "A."
        return tokens[run[0]].start(), tokens[run[-1]].end()
    after = text[tokens[index].end() : tokens[index].end() + 1]
    if word.lower() not in _NOT_NAMES and word.isalpha() and (not after or after in ".,;:!?\n\"'"):
        return tokens[index].start(), tokens[index].end()
    return None


def _acting(text: str, token: re.Match[str], gazetteer: tuple[frozenset[str], frozenset[str]]) -> bool:
    """One known name that lives, is from, was born or speaks: capitalised, or in lower case where a
    sentence starts ("selma is from stillwater"; "Russia said" is no one)."""
    word, (first, last) = token.group(), gazetteer
    lowered = word.lower()
    known = lowered in first or lowered in last
    if lowered in _PRONOUNS or not known or not _ACTS.match(text, token.end()):
        return False
    start = text[: token.start()].rstrip(" \t\"'")
    return _title_case(word) or not start or start[-1] in ".!?\n"


def _title_case(word: str) -> bool:
    return word[0].isupper() and not (word.isalpha() and len(word) > 1 and word.isupper())  # not ACE


_UNIT_WORDS = frozenset(["suite", "apt", "apartment", "unit", "flat", "studio"])


def _run(
    text: str,
    tokens: list[re.Match[str]],
    start: int,
    lower: bool,
    gazetteer: tuple[frozenset[str], frozenset[str]],
) -> list[int]:
    """The indices of the run of name-like words from `start`: capitalised (not ACE, NASA), or,
    after a cue (`lower`), known names in any case."""
    first, last = gazetteer
    run: list[int] = []
    for i in range(start, min(len(tokens), start + 4)):
        word = tokens[i].group()
        if run and text[tokens[run[-1]].end() : tokens[i].start()] != " ":
            break
        lowered = word.lower()
        known = lower and (lowered in first or lowered in last)
        if not (_title_case(word) or known or (run and lowered in _PARTICLES)) or lowered in _UNIT_WORDS:
            break  # "Mrs. Jennifer Alcaraz Suite 541": the address starts at "Suite"
        run.append(i)
    while run and tokens[run[-1]].group().lower() in _PARTICLES:
        run.pop()
    return run


# A local number too short to be a phone number alone ("33 93 31"), with the words that say it is
# one: a phone word before it ("call", "tel.") or a line label after it ("-Office", "fax").
_SHORT_NUMBER = r"\d{2}[ .-]\d{2}[ .-]\d{2}|\d{3}[ .-]\d{3}"
_SHORT_PHONE = re.compile(
    rf"(?i:\b(?:call|phone|tel|telephone|mobile|cell|fax|reach (?:me|us))\b\.?:?[ \t]*(?:(?:me|us)[ \t]+)?"
    rf"(?:(?:at|on)[ \t]+)?)({_SHORT_NUMBER})(?![\d-]\d)"
    rf"|(?<![\w+.-])({_SHORT_NUMBER})(?=[ \t-]?(?i:office|home|mobile|cell|fax|work)\b)"
)


def _short_phones(text: str) -> Iterator[tuple[int, int]]:
    for match in _SHORT_PHONE.finditer(text):
        group = 1 if match.group(1) else 2
        yield match.start(group), match.end(group)


_CONTEXTUAL: tuple[tuple[str, Callable[[str], Iterator[tuple[int, int]]]], ...] = (
    ("PHONE_NUMBER", _short_phones),
    ("STREET_ADDRESS", _addresses),
    ("PERSON", _persons),
)
ENTITY_TYPES = tuple(dict.fromkeys((*STRUCTURED, *(kind for kind, _ in _CONTEXTUAL))))


def find_entities(text: str, types: Iterable[str] = ENTITY_TYPES) -> list[Entity]:
    """The entities in `text`, in order of position, none overlapping."""
    wanted = set(types)
    found: list[Entity] = []
    for recognizer in _RECOGNIZERS:
        if recognizer.type not in wanted:
            continue
        for match in recognizer.scan(text):
            entity = Entity(recognizer.type, match.start(), match.end())
            if recognizer.valid(match.group()) and not any(entity.overlaps(e) for e in found):
                found.append(entity)
    for kind, spans in _CONTEXTUAL:
        if kind in wanted:
            for start, end in spans(text):
                kept = _clear_of(text, Entity(kind, start, end), found)
                if kept is not None:
                    found.append(kept)
    return sorted(found, key=lambda e: e.start)


def _clear_of(text: str, entity: Entity, found: list[Entity]) -> Entity | None:
    """`entity` if it overlaps nothing found; an address that starts with what was taken for a phone
    number (its house numbers), instead of it; an address cut short before what it runs into (a
    postcode taken for a phone number: "Largo Machado, 21, 9904-377 Peniche"); else None."""
    overlapping = [e for e in found if entity.overlaps(e)]
    if not overlapping:
        return entity
    leading = [e for e in overlapping if e.type == "PHONE_NUMBER" and e.start == entity.start]
    if entity.type == "STREET_ADDRESS" and leading == overlapping:
        for phone in leading:  # "17151 2450 Crown St": house numbers, not a phone number
            found.remove(phone)
        return entity
    first = min(e.start for e in overlapping)
    kept = text[entity.start : first]
    if entity.type != "STREET_ADDRESS" or not (any(c.isdigit() for c in kept) or "S/N" in kept):
        return None  # what is left before it has no number: no address
    return Entity(entity.type, entity.start, entity.start + len(text[entity.start : first].rstrip(" \t\n,;")))


def redact(text: str, entities: Iterable[Entity]) -> str:
    """`text` with each entity replaced by a placeholder naming its type, e.g. `<EMAIL_ADDRESS>`."""
    pieces, position = [], 0
    for entity in sorted(entities, key=lambda e: e.start):
        pieces += [text[position : entity.start], f"<{entity.type}>"]
        position = entity.end
    return "".join([*pieces, text[position:]])
