"""Personal data in a prompt: entities with their type and character span.

Structured kinds (`structured.py`) are patterns validated by checksums, found more reliably than by a
model, in microseconds. Street addresses (`addresses.py`) and person names (`names.py`) are read in
context, and found for policies that ask for them; the default policy redacts the structured kinds
only (a question about Ada Lovelace needs her name). Where two kinds overlap, the earlier wins, but
an address keeps the house numbers taken for a phone number.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from sovra.routing.signals.pii.addresses import addresses
from sovra.routing.signals.pii.names import persons
from sovra.routing.signals.pii.structured import RECOGNIZERS, STRUCTURED, short_phones

__all__ = ["ENTITY_TYPES", "STRUCTURED", "Entity", "find_entities", "redact"]


@dataclass(frozen=True)
class Entity:
    type: str
    start: int
    end: int

    def overlaps(self, other: Entity) -> bool:
        return self.start < other.end and other.start < self.end


_CONTEXTUAL: tuple[tuple[str, Callable[[str], Iterator[tuple[int, int]]]], ...] = (
    ("PHONE_NUMBER", short_phones),
    ("STREET_ADDRESS", addresses),
    ("PERSON", persons),
)
ENTITY_TYPES = tuple(dict.fromkeys((*STRUCTURED, *(kind for kind, _ in _CONTEXTUAL))))


def find_entities(text: str, types: Iterable[str] = ENTITY_TYPES) -> list[Entity]:
    """The entities in `text`, in order of position, none overlapping."""
    wanted = set(types)
    found: list[Entity] = []
    for recognizer in RECOGNIZERS:
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
    return Entity(entity.type, entity.start, entity.start + len(kept.rstrip(" \t\n,;")))


def redact(text: str, entities: Iterable[Entity]) -> str:
    """`text` with each entity replaced by a placeholder naming its type, e.g. `<EMAIL_ADDRESS>`."""
    pieces, position = [], 0
    for entity in sorted(entities, key=lambda e: e.start):
        pieces += [text[position : entity.start], f"<{entity.type}>"]
        position = entity.end
    return "".join([*pieces, text[position:]])
