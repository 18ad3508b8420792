"""Street addresses: a number beside a street word (Street, Rd, -straße, -gade, Via, Rue, ul., utca,
…), a flat or suite number, a P.O. box, US military mail, a street with a house number marked as
one ("Nr.", "No.") or with its postcode and town whatever its street word, with what belongs to
them (the number before, the place after on the line, a letter's address block below); in a text
written without capitals, a number beside an unmistakable street word."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from pathlib import Path

from sovra.routing.signals.pii.letters import UPPER

__all__ = ["STREETS", "addresses"]

STREETS = Path(__file__).parents[2] / "models" / "streets.json"  # Faker's street words (train.street_words)

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
# Street words that a house number marked as one follows ("Nr.", "No.", "#"): ro, id, es.
_STREET_MARKED = (
    "strada|str\\.|șoseaua|soseaua|aleea|bulevardul|calea|splaiul|intrarea|jl\\.|jalan|gg\\.|gang|"
    "calle|carrera|cr\\.|cra\\.|kr\\.|av\\.|avenida|diagonal|transversal|tv\\.|dg\\.|blv\\.|pasaje"
)
# Words no street's name holds: "Anna Berg at …", "Jennifer Alcaraz Suite 541, 6343 …", "5 miles
# down the road".
_NOT_IN_A_STREET = (
    r"(?!(?i:the|a|an|of|on|in|at|to|from|and|or|is|was|for|by|with|near|lives|moved|down|up|along|"
    r"across|off|per|each|every|suite|apt|apartment|unit|flat|box|room|floor)\b)"
)
_CAP = rf"[{UPPER}][\w'\u2019.-]*"  # a capitalised word
_WORDS = rf"[{UPPER}][\w'\u2019-]+(?: [{UPPER}][\w'\u2019-]+){{0,2}}"  # on one line
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
    # US military mail: "PSC 5420, Box 2708\nAPO AA 33879", "Unit 8505 Box 3866\nDPO AP 93558",
    # "USNS Márquez\nFPO AP 08653" (a ship and its sailor's surname); before a unit alone
    r"|(?i:\b(?:PSC|Unit)[ \t]+\d{1,5},?[ \t]+Box[ \t]+\d{1,5}(?:\s+[AD]PO[ \t]+A[AEP][ \t]+\d{5})?\b)"
    r"|(?i:\b(?:USNS|USNV|USS|USCGC)[ \t]+[^\W\d_][\w'-]*\s+FPO[ \t]+A[AEP][ \t]+\d{5}\b)"
    r"|(?i:\b(?:apt|apartment|suite|ste|unit|flat|studio)\.?\s+#?\d{1,5}[A-Za-z]?\b)"
    r"|(?i:\bP\.?\s?O\.?\s+Box\s+\d{1,6}\b)"
    rf"|\b\d{{1,6}} (?!{_MONTH}){_WORDS} \d{{1,5}}[A-Za-z]?\b"  # "172 Maneeži 75", not "03 Feb 2022"
    rf"|\b\d{{1,6}} \d{{1,5}} {_WORDS}"  # "846 31 Rue Al Imam"
    rf"|{_CUED}{_CAP}(?:[ \t]+{_CAP}){{0,2}},?[ \t]+\d{{1,5}}[A-Za-z]?\b"  # "lives at Jahu 80", on one line
    # A street word, then a house number said to be one: "Jl. Rawamangun No. 2", "Soseaua Dochioiu
    # Nr. 33", "Calle 18 # 95-2" (not "Symphony No. 9")
    rf"|(?i:\b(?:{_STREET_MARKED}))[ \t]+[\w'\u2019.-]+(?:[ \t]+[\w'\u2019.-]+){{0,4}}?[ \t]+"
    r"(?:Nr\.|No\.|N°|Nº|#)[ \t]*\d{1,5}[A-Za-z]?(?:-\d{1,4})?\b"
    # A street line, then a postcode and a town: "Kriva pot 2b, 3214 Višnja Gora", "Palmotićeva 0a/4,
    # 63581 Omiš" (not "Windows 10, 2019 Edition": no postcode looks like a year; not "Anna Berg at …")
    rf"|\b{_CAP}(?:[ \t]+{_NOT_IN_A_STREET}[\w'\u2019.-]+){{0,3}}?[ \t]+\d{{1,5}}[A-Za-z]?(?:/\d{{1,4}})?,"
    rf"[ \t]*(?!(?:1[89]|20)\d\d\b)\d{{4,6}}[ \t]+[{UPPER}][\w'\u2019-]*"
    # A number, a street's name of two words or more, then its town and a postcode: "39 King Indlela,
    # Polokwane, 2688", "923, Deol Ganj, Chandrapur-881973", whatever the street word (not "sold 500
    # Units, North Region, 12000")
    rf"|\b\d{{1,6}}[A-Za-z]?,?[ \t]+{_CAP}(?:[ \t]+{_NOT_IN_A_STREET}{_CAP}){{1,3}},[ \t]*"
    rf"{_CAP}(?:[ \t]+{_CAP}){{0,2}}(?:,[ \t]*[A-Z]{{2,3}})?(?:,[ \t]*|[ \t]+|-)"
    r"(?!(?:1[89]|20)\d\d\b)\d{4,6}\b"
)
# In a text written without capitals, the same told by the street word alone: a number, one or two
# words of a street's name, and an unmistakable street word ("12 baker street"); or a compound with
# one of the long street suffixes ("machelsesteenweg 197").
_LOWER_ADDRESS = re.compile(
    rf"\b\d{{1,6}}[a-z]?,?[ \t]+(?:{_NOT_IN_A_STREET}[^\W\d_][\w'\u2019-]*[ \t]+){{1,2}}"
    r"(?:street|avenue|road|boulevard|lane|terrace|crescent|parkway|st|ave|rd|blvd)\b\.?"
    rf"|\b[^\W\d_]+(?:{_STREET_SUFFIX_LOWER}|steenweg|straat|laan|vej|veien|vegen|gasse|allee)"
    r"[ \t]*\d{1,5}\b"
)
_ZIP_CUED = re.compile(r"(?i:\b(?:zip|postal|post) ?code(?: is|:)?\s+)(\d{4,6}(?:-\d{4})?)\b")
_NUMBER_BEFORE = re.compile(r"\b\d{1,6}[ \t]+$")  # "48334 36 rue de Pologne": the house's number too
# What follows a street on the same line in prose: ", Honolulu HI 96817", ", 75002 Paris, France".
_PLACE_WORD = rf"(?:[{UPPER}][\w'\u2019-]*|\d{{3,6}}\b)"
_PLACE_AFTER = re.compile(rf"(?:,[ \t]*{_PLACE_WORD}(?:[ \t]+{_PLACE_WORD}){{0,3}}){{1,3}}")
_BLOCK_LINE = re.compile(r"[ \t>?]*([\w'\u2019.,#/ -]{1,48})[ \t]*$")  # a line of an address block
_LINE_START = re.compile(r"(?:^|\n)[ \t>?]*$")


# A street without a number, told by the street word first ("rue David Lebon").
_NAMED_STREET = re.compile(rf"(?i:\b(?:{_STREET_NAMED}))[ \t]+{_LINK}{_CAP}(?:[ \t]+{_LINK}{_CAP}){{0,2}}")
_DIGITS = re.compile(r"\d+|S/N")  # S/N: "sem número", no number
_BEFORE_NUMBER, _AFTER_NUMBER = 100, 60  # how far from its number an address reaches


@functools.cache
def _harvested(without: str = "") -> re.Pattern[str]:
    """The street patterns of Faker's street words (`STREETS`), those of locale `without` left out
    unless another locale uses them too: the bench reads each locale's sentences without its own."""
    words = json.loads(STREETS.read_text(encoding="utf-8"))
    kept = {
        where: "|".join(re.escape(w) for w, locales in sorted(listed.items()) if set(locales) - {without})
        or "(?!)"  # none left: an empty alternation would match anywhere
        for where, listed in words.items()
    }
    return re.compile(
        rf"\b\d{{1,6}}[A-Za-z]?,?[ \t]+(?:{_CAP}[ \t]+){{1,3}}(?:{kept['after']})(?![\w'\u2019-])"
        rf"|\b(?:{kept['before']})[ \t]+{_LINK}{_CAP}(?:[ \t]+{_LINK}{_CAP}){{0,3}},?[ \t]+"
        r"\d{1,5}[A-Za-z]?\b"
        rf"|\b{_CAP}(?:{kept['compound']})[ \t]*\d{{1,5}}[A-Za-z]?\b"
    )


def _street_matches(text: str, without: str = "") -> list[re.Match[str]]:
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
    harvested = _harvested(without)
    found = [
        m
        for low, high in windows
        for pattern in (_ADDRESS, harvested)
        for m in pattern.finditer(text, low, min(high, len(text)))
    ]
    found += _NAMED_STREET.finditer(text)
    if text.islower():
        found += _LOWER_ADDRESS.finditer(text)
    return sorted(found, key=lambda m: (m.start(), -m.end()))


def addresses(text: str, without: str = "") -> Iterator[tuple[int, int]]:
    """Street addresses, each with what belongs to it: a number before it, the place after it on
    its line, and, for an address that starts a line (a letter's block), the short lines below it
    (suite, town, country, postcode) — as Presidio labels them. `without`: a Faker locale whose own
    street words are left out (the bench's out-of-distribution reading)."""
    end = 0
    for match in _street_matches(text, without):
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
