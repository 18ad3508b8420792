"""Person names and street addresses in sentences of this bench's own, filled by Faker (MIT).

Presidio's two files (bench/router.py) share their templates with each other and were in view while
the recognisers were written; these templates were not: chat requests, e-mails, forms, CSV rows,
letters and notes, in 16 Latin-script locales, seeded so every run sees the same sentences. Faker
is also where the gazetteer's names come from, so the names here are known ones. The street and
place words of `signals/pii/` were extended (2026-12-02) with these sentences in view: they are a
validation set now, and the figures in distribution; Presidio's older file stays the unseen one.

A second set (`UNSEEN_TEMPLATES` in `UNSEEN_LOCALES`) was written on 2026-12-08 after the
recognisers of that day, and read once to report: 20 chat-style templates of other wording, 20
Latin-script locales none of the first set's (their own name and address formats: Australian,
Canadian, Indian, South African, Swiss, Austrian, Latin American, Balkan …), a fifth of its sentences
lower-cased as people type them. It is out of distribution for both the templates and the locales.

    python bench/pii_synth.py [--per-locale 60]

Faker's it_IT cities come from a set, so their order, and some Italian sentences, follow Python's
hash seed: run with PYTHONHASHSEED=0 for exactly the same sentences every time (the figures move by
about 0.1 point without it).
"""

from __future__ import annotations

import argparse
import random
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass

from faker import Faker

from sovra.routing.signals.pii import find_entities
from sovra.routing.signals.pii.addresses import addresses

LOCALES = (
    "en_US", "en_GB", "en_IE", "de_DE", "fr_FR", "es_ES", "it_IT", "pt_PT", "pt_BR", "nl_NL",
    "pl_PL", "sv_SE", "da_DK", "fi_FI", "cs_CZ", "hu_HU",
)  # fmt: skip
# {name} {name2} {first}: people; {street} {address} {address_line}: street addresses; the rest filler.
TEMPLATES = (
    "Hi, this is {name}. Could you update my delivery address to {street}, {city}?",
    "Please send the signed contract to {name} at {address_line}.",
    "From: {name} <{email}>\nSubject: Change of address\n\nMy new address is:\n{address}\n\nThanks,\n{first}",
    "Customer: {name}\nAddress: {address_line}\nOrder: #{number}",
    "{name} called about the invoice and asked us to write to {street} instead.",
    "Can you draft a polite letter to {name}, {address_line}, declining the offer?",
    "name,street,city\n{name},{street},{city}",
    "Meeting notes: {name} and {name2} agreed to visit the site at {street} next week.",
    "Summarise this for the file: {name} moved from {city} to {street} in {year}.",
    "Dear {name},\n\nthank you for your letter of {year}. We have noted your new address.",
    "I am {name} and I live at {street}. What documents do I need to register there?",
    "Ship to: {name}, {street}, {city}",
    "{first} asked whether {name2} still lives at {street}.",
    "Reminder for {name}: the plumber comes to {street} on Monday at 9.",
    "Translate into English: {name} wohnt jetzt in {street}.",
    "Who should I contact? The form says {name}, {address_line}.",
)
UNSEEN_LOCALES = (
    "en_AU", "en_CA", "en_NZ", "en_IN", "zu_ZA", "de_AT", "de_CH", "fr_CH", "fr_CA", "es_MX",
    "es_AR", "es_CL", "es_CO", "nl_BE", "no_NO", "sk_SK", "sl_SI", "hr_HR", "ro_RO", "id_ID",
)  # fmt: skip
UNSEEN_TEMPLATES = (
    "hey, can you help me write a birthday card for {first}? she lives at {street} now",
    "My landlord {name} wants me out of {address_line} by Friday. Is that legal?",
    "Forward this to {name} ({email}) and cc {name2}.",
    "Write a short bio for {name}, a {job} based in {city}.",
    "Is {street} in a safe neighbourhood? I'm thinking of renting there.",
    "{name} and I are getting married! Help me write the invitation; the reception is at {address_line}.",
    "Billing address:\n{address}\nCardholder: {name}",
    "What's a good gift for my boss, {name}?",
    "Can you check the spelling of this: {name}, {street}",
    "I need to return a parcel to {address_line}. Which carrier is cheapest?",
    "Please introduce me to {name}; {first} said you two worked together.",
    "Translate to French: Please deliver the package to {name} at {street}.",
    "Emergency contact: {name}, phone {phone}",
    "{name} wrote that she will be at {street} around noon. What should I bring?",
    "Make a table of these guests: {name}, {name2}, {first}.",
    "Our new office is at {address_line}. Write a tweet announcing it.",
    "Draft a reference letter for {name}, who worked for me for {digit} years.",
    "How do I tell {first} that I can't come to the party?",
    "Tenant: {name}\nProperty: {street}\nRent due: {month}",
    "Remind me to call {name} about the house at {street}.",
)
PEOPLE, PLACES = ("name", "name2", "first"), ("street", "address", "address_line")
KINDS = ("PERSON", "STREET_ADDRESS")  # what these sentences label


@dataclass(frozen=True)
class Sentence:
    text: str
    spans: tuple[tuple[str, int, int], ...]  # (PERSON | STREET_ADDRESS, start, end)
    locale: str


def sentences(
    per_locale: int,
    seed: int = 13,
    templates: tuple[str, ...] = TEMPLATES,
    locales: tuple[str, ...] = LOCALES,
    lower: float = 0.0,
) -> Iterator[Sentence]:
    """`per_locale` sentences of `templates` in each of `locales`; a share `lower` of them lower-cased."""
    picker = random.Random(seed)
    for locale in locales:
        fake = Faker(locale)
        fake.seed_instance(seed)
        for _ in range(per_locale):
            sentence = _fill(picker.choice(templates), fake, locale)
            if lower and picker.random() < lower:  # the spans stay where they were, if the letters do
                lowered = sentence.text.lower()
                if len(lowered) == len(sentence.text):
                    sentence = Sentence(lowered, sentence.spans, locale)
            yield sentence


def _fill(template: str, fake: Faker, locale: str) -> Sentence:
    address = fake.address()
    values = {
        "name": fake.name(), "name2": fake.name(), "first": fake.first_name(), "street": fake.street_address(),
        "address": address, "address_line": address.replace("\n", ", "), "city": fake.city(),
        "email": fake.email(), "number": str(fake.random_int(1000, 99999)), "year": str(fake.year()),
    }  # fmt: skip
    # The second set's fields, drawn only where asked for: the first set's sentences stay the same.
    extra = {"job": fake.job, "phone": fake.phone_number, "digit": lambda: str(fake.random_int(2, 12)),
             "month": fake.month_name}  # fmt: skip
    values.update({field: draw() for field, draw in extra.items() if "{" + field + "}" in template})
    text, spans = "", []
    for literal, field in _pieces(template):
        text += literal
        if field:
            kind = "PERSON" if field in PEOPLE else "STREET_ADDRESS" if field in PLACES else ""
            if kind:
                spans.append((kind, len(text), len(text) + len(values[field])))
            text += values[field]
    return Sentence(text, tuple(spans), locale)


def _pieces(template: str) -> Iterator[tuple[str, str]]:
    """(literal text, the field after it or "") in order."""
    while "{" in template:
        literal, _, rest = template.partition("{")
        field, _, template = rest.partition("}")
        yield literal, field
    yield template, ""


def tally(
    text: str, spans: Iterable[tuple[str, int, int]], kinds: Collection[str]
) -> dict[str, Counter[str]]:
    """One text's figures per entity type of `kinds`: found (tp), missed (fn), false (fp) and, of
    the false, those inside another kind's span (inside). A found entity hits a labelled span of its
    type when the two overlap. `bench/router.py` scores the Presidio files with it too."""
    figures: dict[str, Counter[str]] = defaultdict(Counter)
    found = [e for e in find_entities(text) if e.type in kinds]
    for kind, start, end in spans:
        if kind in kinds:
            hit = any(e.type == kind and e.start < end and start < e.end for e in found)
            figures[kind]["tp" if hit else "fn"] += 1
    for entity in found:
        if not any(k == entity.type and entity.start < e and s < entity.end for k, s, e in spans):
            figures[entity.type]["fp"] += 1
            if any(entity.start < e and s < entity.end for _, s, e in spans):
                figures[entity.type]["inside"] += 1  # other PII (an address, a licence): still worth hiding
    return figures


def report(per_locale: int, unseen: bool = False) -> dict[str, tuple[float, float]]:
    """Print recall/precision per type (and recall per locale); return {type: (recall, precision)}.
    `unseen`: the second set (other templates and locales, a fifth lower-cased)."""
    locales = UNSEEN_LOCALES if unseen else LOCALES
    examples = list(
        sentences(per_locale, templates=UNSEEN_TEMPLATES, locales=locales, lower=0.2)
        if unseen
        else sentences(per_locale)
    )
    which = "templates and locales written for reading once" if unseen else "this bench's own sentences"
    print(f"\nPII in {which}, filled by Faker ({len(examples)} sentences, {len(locales)} locales)")
    overall: dict[str, Counter[str]] = defaultdict(Counter)
    by_locale: dict[str, dict[str, Counter[str]]] = {loc: defaultdict(Counter) for loc in locales}
    for example in examples:
        for kind, counted in tally(example.text, example.spans, KINDS).items():
            overall[kind].update(counted)
            by_locale[example.locale][kind].update(counted)
    figures = {}
    for kind in KINDS:
        counted = overall[kind]
        recall, precision = _recall(counted), counted["tp"] / max(1, counted["tp"] + counted["fp"])
        figures[kind] = (recall, precision)
        print(
            f"  {kind:<14} recall {recall:6.1%} of {counted['tp'] + counted['fn']:<4} precision {precision:6.1%}"
        )
    print("  recall per locale (names / addresses): " + ", ".join(
        f"{loc} {_recall(t['PERSON']):.0%}/{_recall(t['STREET_ADDRESS']):.0%}" for loc, t in by_locale.items()
    ))  # fmt: skip
    if unseen:  # the street words taken from Faker, read as if its own locale had none of them
        left_out = _addresses_left_out(examples)
        figures[LEFT_OUT] = (left_out, float("nan"))
        print(f"  STREET_ADDRESS recall {left_out:6.1%} with each locale's own Faker street words left out")
    return figures


LEFT_OUT = "STREET_ADDRESS, own street words left out"


def _addresses_left_out(examples: list[Sentence]) -> float:
    """Address recall with each sentence read without the street words only its locale lists."""
    found = missed = 0
    for example in examples:
        spans = list(addresses(example.text, without=example.locale))
        for kind, start, end in example.spans:
            if kind == "STREET_ADDRESS":
                hit = any(s < end and start < e for s, e in spans)
                found, missed = found + hit, missed + (not hit)
    return found / max(1, found + missed)


def _recall(tally: Counter[str]) -> float:
    return tally["tp"] / max(1, tally["tp"] + tally["fn"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--per-locale", type=int, default=60)
    per_locale = parser.parse_args().per_locale
    report(per_locale)
    report(per_locale // 2, unseen=True)


if __name__ == "__main__":
    main()
