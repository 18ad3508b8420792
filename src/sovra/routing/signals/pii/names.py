"""Person names, read in context: a gazetteer (`routing/models/names.json`: given names and surnames
of many locales, from Faker's lists, minus words the router's corpora use as ordinary words), runs
of capitalised words holding a known name, or of two or more written like names (a classifier over
their letters, `models/name-words.npz`; in a text with no capitals, known names two or more),
titles and cues ("Mrs.", "my name is"), lists and pairs of names, the speakers of a dialogue, and
every other mention of a name found — and what is not a person though it looks like one (a firm, a
street, a place named after people)."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from pathlib import Path

from sovra.routing.classifier import LinearClassifier
from sovra.routing.signals.pii.letters import UPPER

__all__ = ["NAMES", "NAME_WORDS", "persons", "written_like_a_name"]

NAMES = Path(__file__).parents[2] / "models" / "names.json"
NAME_WORDS = NAMES.with_name("name-words.npz")  # whether a word's letters are a name's
_VOCABULARY = NAMES.with_name("tokenizer.json")  # the sentence encoder's WordPiece vocabulary

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


@functools.cache
def _name_words() -> LinearClassifier:
    return LinearClassifier.load(NAME_WORDS)


@functools.cache
def _vocabulary() -> frozenset[str]:
    """The whole words of the encoder's WordPiece vocabulary: English's common words ("war",
    "girl", "silver") and a few hundred names."""
    vocabulary = json.loads(_VOCABULARY.read_text(encoding="utf-8"))["model"]["vocab"]
    return frozenset(word for word in vocabulary if word.isalpha())


def written_like_a_name(word: str, classifier: LinearClassifier | None = None) -> bool:
    """Whether a lower-cased word is written like a name: not a common English word, and its
    letters a name's by `classifier` (by default the shipped one, `train.fit_name_words`):
    "szczepańska", "musliyevich"; not "war", "weekly"."""
    if word in _vocabulary():
        return False
    return (classifier or _name_words()).probabilities(word)["name"] >= 0.5


_name_like = functools.lru_cache(maxsize=4096)(written_like_a_name)  # words recur across requests


def _shaped(words: list[str], names: list[str], gazetteer: tuple[frozenset[str], frozenset[str]]) -> bool:
    """Two names or more, each known or written like one: "Irenke Sörös", "Bekbolat Musliyevich"."""
    first, last = gazetteer
    if len(names) < 2 or _FUNCTION_WORDS.intersection(words):
        return False
    return all(w in first or w in last or _name_like(w) for w in names)


_SPEAKER = re.compile(rf"(?m)^[ \t>]*([{UPPER}][^\W\d_]+):")  # "Ella: What a wife." at a line's start


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


def persons(text: str) -> Iterator[tuple[int, int]]:
    found = list(_found(text))
    yield from found
    yield from _named_again(text, found)


def _found(text: str) -> Iterator[tuple[int, int]]:
    yield from _speakers(text)
    firms: list[tuple[int, int]] = []  # "The Jones, Smith and Davis Orchestra": none of its words
    yield from _listed(text, firms)
    yield from _paired(text)
    for span in _people(text):
        if not _overlaps(span, firms):
            yield span


def _overlaps(span: tuple[int, int], spans: list[tuple[int, int]]) -> bool:
    start, end = span
    return any(start < other_end and other_start < end for other_start, other_end in spans)


def _named_again(text: str, found: list[tuple[int, int]]) -> Iterator[tuple[int, int]]:
    """Every other mention of a word of a name found, as written: a text that names "Maciej
    Borkowski" and then says "starring Borkowski" names him twice, and redacting the one mention
    the context gave away would leave the other."""
    words = {
        word
        for start, end in found
        for word in (_POSSESSIVE.sub("", w) for w in _ITEM.findall(text, start, end))
        if len(word) > 2 and _title_case(word) and word.lower() not in _NOT_AGAIN
    }
    if not words:
        return
    again = re.compile(r"\b(?:" + "|".join(map(re.escape, sorted(words, key=len, reverse=True))) + r")\b")
    for match in again.finditer(text):
        if not _overlaps(match.span(), found):
            yield match.span()


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
    uncapitalised = text.islower()  # a writer who capitalises nothing: "have you met david lange?"
    index = 0
    while index < len(tokens):
        word = tokens[index].group()
        if tokens[index].start() in named and (span := _named(text, tokens, index, gazetteer)):
            yield span
            index += 1
            continue
        if not _title_case(word) and word.lower() not in first and word.lower() not in last:
            index += 1  # no run starts here, cue or not, and no known name acts: most words
            continue
        if _acting(text, tokens[index], gazetteer):
            yield tokens[index].start(), tokens[index].end()
            index += 1
            continue
        before = text[max(0, tokens[index].start() - 24) : tokens[index].start()]
        previous = before.rstrip(" .").rsplit(maxsplit=1)
        titled = bool(previous) and previous[-1].lower() in _TITLES
        if not (titled or _known(word, gazetteer) or _joined(text, tokens, index, gazetteer)):
            index += 1  # one unknown capitalised word, no title before it ("Which", "The"): no one
            continue
        cued = bool(_CUES.search(before))
        run = _run(text, tokens, index, cued or uncapitalised, gazetteer)
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
        if uncapitalised and not (cued or titled):
            # Known names in lower case, said by nothing: a given name and more names, never one
            # alone (one in ten such words is a name: "hazel eyes", "a sandy face").
            if len(names) >= 2 and names[0] in first and known == len(names):
                yield tokens[run[0]].start(), end
        elif (
            (len(names) >= 2 and known)
            or given
            or said
            or _initialled(words)
            or _shaped(words, names, gazetteer)  # names the gazetteer does not know, written like names
        ):
            yield tokens[run[0]].start(), end
        index = run[-1] + 1


def _joined(
    text: str, tokens: list[re.Match[str]], index: int, gazetteer: tuple[frozenset[str], frozenset[str]]
) -> bool:
    """Whether the next word could extend a run from this one (`_run`'s test, taken loosely: any
    known name, cue or not): else a run here is this word alone."""
    if index + 1 >= len(tokens) or text[tokens[index].end() : tokens[index + 1].start()] != " ":
        return False
    following = tokens[index + 1].group()
    return _title_case(following) or following.lower() in _PARTICLES or _known(following, gazetteer)


def _known(word: str, gazetteer: tuple[frozenset[str], frozenset[str]]) -> bool:
    """A given name or surname, as written or without a possessive ("Bobbie's")."""
    first, last = gazetteer
    return any(w in first or w in last for w in (word.lower(), _POSSESSIVE.sub("", word.rstrip(".")).lower()))


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
_WORD = rf"[{UPPER}][\w'\u2019-]+"
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
    sentence starts ("selma is from stillwater"; "Russia said" is no one); or one capitalised word
    written like a name ("Yerlan said")."""
    word, (first, last) = token.group(), gazetteer
    lowered = word.lower()
    if lowered in _PRONOUNS or not _ACTS.match(text, token.end()):
        return False
    if not (lowered in first or lowered in last or (_title_case(word) and _name_like(lowered))):
        return False
    start = text[: token.start()].rstrip(" \t\"'")
    return _title_case(word) or not start or start[-1] in ".!?\n"


# Words of a name that say nothing of who it is when they stand alone ("Mrs", "Van", "The").
_NOT_AGAIN = _FUNCTION_WORDS | _PARTICLES | _TITLES


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
