"""PII patterns: each entity type found with its span; checksums keep look-alike numbers out."""

import pytest

from sovra.routing.signals.pii import find_entities, redact
from sovra.routing.signals.pii.addresses import addresses
from sovra.routing.train import street_words


def found(text: str) -> list[tuple[str, str]]:
    return [(e.type, text[e.start : e.end]) for e in find_entities(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("write to ana.lopez+work@mail.example.org today", [("EMAIL_ADDRESS", "ana.lopez+work@mail.example.org")]),
        ("card 4111 1111 1111 1111 exp 12/29", [("CREDIT_CARD", "4111 1111 1111 1111")]),
        ("amex 3782-822463-10005", [("CREDIT_CARD", "3782-822463-10005")]),
        ("IBAN FR14 2004 1010 0505 0001 3M02 606 please", [("IBAN_CODE", "FR14 2004 1010 0505 0001 3M02 606")]),
        ("iban GB82WEST12345698765432", [("IBAN_CODE", "GB82WEST12345698765432")]),
        ("SSN 123-45-6789.", [("US_SSN", "123-45-6789")]),
        ("from 192.168.10.254 to 2001:db8::8a2e:370:7334", [("IP_ADDRESS", "192.168.10.254"), ("IP_ADDRESS", "2001:db8::8a2e:370:7334")]),
        ("call +33 6 12 34 56 78 or (415) 555-2671 x204", [("PHONE_NUMBER", "+33 6 12 34 56 78"), ("PHONE_NUMBER", "(415) 555-2671 x204")]),
        # A local number too short alone, with a phone word before it or a line label after it.
        ("You can call 33 93 31 after six.", [("PHONE_NUMBER", "33 93 31")]),
        ("61 51 81 office", [("PHONE_NUMBER", "61 51 81")]),
        ("555-201-7784-Office, 020 7946 0958-Fax", [("PHONE_NUMBER", "555-201-7784"), ("PHONE_NUMBER", "020 7946 0958")]),
        ("key sk-proj-abcdefghijklmnopqrstuvwxyz012345 and AKIAIOSFODNN7EXAMPLE", [("SECRET", "sk-proj-abcdefghijklmnopqrstuvwxyz012345"), ("SECRET", "AKIAIOSFODNN7EXAMPLE")]),
    ],
)  # fmt: skip
def test_each_entity_type_is_found_with_its_span(text: str, expected: list[tuple[str, str]]) -> None:
    assert found(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "order 4111 1111 1111 1112 shipped",  # fails the Luhn check
        "account GB82WEST12345698765433",  # fails the IBAN mod-97 check
        "version 300.1.2.999",  # not an IP: octets above 255
        "released 2024-05-17 at 10:30",  # a date is not a phone number
        "the answer is 42, times 1000 is 42000",
    ],
)
def test_look_alike_numbers_are_not_entities(text: str) -> None:
    assert found(text) == []


def test_ssn_areas_never_issued_are_not_ssns() -> None:
    assert "US_SSN" not in [kind for kind, _ in found("000-12-3456 and 666-12-3456 and 912-12-3456")]


def test_redaction_replaces_each_entity_with_its_type() -> None:
    text = "Mail bob@example.com, card 4111111111111111."
    assert redact(text, find_entities(text)) == "Mail <EMAIL_ADDRESS>, card <CREDIT_CARD>."


def test_only_the_asked_types_are_found() -> None:
    text = "bob@example.com 4111111111111111"
    assert [e.type for e in find_entities(text, ["CREDIT_CARD"])] == ["CREDIT_CARD"]


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("Please ask Maria Schneider to call back.", "Maria Schneider"),
        ("Mrs. Kowalczyk flew to Lyon on Tuesday.", "Kowalczyk"),
        ("my name is lena andersson and my card is lost", "lena andersson"),
        ("Ken N. Fukuda will be talking in the morning.", "Ken N. Fukuda"),
        ("Send it to Andrew before noon.", "Andrew"),
        # A naming cue: any name, known or not, capitalised or not.
        ("Name: Toshimi Arata\nPhone: 0490 75 40 80", "Toshimi Arata"),
        ("sometimes people call me višeslav", "višeslav"),
        ("Her maiden name is Josefsen, I think.", "Josefsen"),
        # One known name where the words before it say a person comes next.
        ("a 1973 comedy starring Maclean, a hit that year", "Maclean"),
        # A known name that lives, is from or speaks, in lower case where a sentence starts.
        ("selma is from stillwater", "selma"),
        # The answer to "what's your name?"; a title and a name before the suite of an address.
        ("What's your name? Shintarou Hamaguchi", "Shintarou Hamaguchi"),
        ("Mrs. Jennifer Alcaraz Suite 541, 6343 Skogstien 106", "Jennifer Alcaraz"),
        # A count after a name is no house number.
        ("It takes Kevin 15 minutes to find each worm.", "Kevin"),
        # Two capitalised words the gazetteer does not know, said to live somewhere.
        ("Tomomi Nishiyama lives at the end of the road.", "Tomomi Nishiyama"),
        # A given name, an initial and a surname, neither known to the gazetteer.
        ("Have you been to a Ravil G Yefimov concert before?", "Ravil G Yefimov"),
        # Given names that are also part of a place's name ("Santa Maria") stay names.
        ("Could you ask Maria whether the room is free?", "Maria"),
        # A surname that is also a place word stays a name.
        ("Send it to Andrew Hill before noon.", "Andrew Hill"),
        # Two capitalised words the gazetteer does not know, each written like a name (the name-word
        # classifier), neither a common English word.
        ("The award went to Aigerim Dzhaksybekov last night.", "Aigerim Dzhaksybekov"),
        ("Please forward the file to Oluwaseun Adebayo today.", "Oluwaseun Adebayo"),
        # One word written like a name that lives somewhere or speaks.
        ("Yerlan said the shipment was late.", "Yerlan"),
        # A writer who capitalises nothing: a given name and a surname, both known.
        ("have you been to a david lange concert before?", "david lange"),
        # A given name of many locales that a town in one of them also bears.
        ("Could you send the minutes to Laura before noon?", "Laura"),
        # Polish surnames, men's and women's forms (Faker keeps them under other names).
        ("Przemek Kucharski will join us later.", "Przemek Kucharski"),
        ("Wisława Szczepańska signed the lease.", "Wisława Szczepańska"),
    ],
)
def test_person_names_in_context(text: str, found: str) -> None:
    (entity,) = [e for e in find_entities(text) if e.type == "PERSON"]
    assert text[entity.start : entity.end] == found


def test_one_known_name_in_lower_case_is_not_taken_for_a_person() -> None:
    # In a text with no capitals, one word the gazetteer knows is as often an ordinary word.
    text = "this sandy face, with hazel eyes and a sunny aspect, was all he saw"
    assert not [e for e in find_entities(text) if e.type == "PERSON"]


@pytest.mark.parametrize("text", ["I moved to Georgia last year.", "We flew to Lima on Monday."])
def test_a_place_that_is_also_a_given_name_is_no_one(text: str) -> None:
    assert not [e for e in find_entities(text) if e.type == "PERSON"]


def test_a_name_found_is_found_again_wherever_it_is_mentioned() -> None:
    text = "Borkowski's first film, directed by Maciej Borkowski and starring Borkowski, won; borkowski.pl"
    spans = [text[e.start : e.end] for e in find_entities(text) if e.type == "PERSON"]
    # Each mention as written, before or after the one the context gave away; not a lower-case domain.
    assert spans == ["Borkowski", "Maciej Borkowski", "Borkowski"]
    # A name found with a possessive is found again without one.
    text = "Ask Mrs. Filemonsen's son; Filemonsen is away."
    assert [text[e.start : e.end] for e in find_entities(text) if e.type == "PERSON"][-1] == "Filemonsen"


def test_a_word_of_a_name_that_says_nothing_alone_is_not_found_again() -> None:
    text = "Dr. Van Helsing is here. Van drivers wait outside; the van is white."
    spans = [text[e.start : e.end] for e in find_entities(text) if e.type == "PERSON"]
    assert spans == ["Van Helsing"]


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("She lives at 221 Baker Street, London.", "221 Baker Street, London"),
        ("Deliver to Pohlstrasse 9 in Börßum.", "Pohlstrasse 9"),
        ("The office is on Via dei Fiorentini 17.", "Via dei Fiorentini 17"),
        ("Tosh Olsen lives at 172 Maneeži 75, Saareküla", "172 Maneeži 75, Saareküla"),
        ("Ring at Apt. 595 when you arrive.", "Apt. 595"),
        # The place after a street on its line; the house's number before it; a postcode said to be one.
        (
            "Ship it to 216 Menzies Street, Honolulu HI 96817 by Friday.",
            "216 Menzies Street, Honolulu HI 96817",
        ),
        ("his address: 4833 36 rue de pologne, please", "4833 36 rue de pologne"),
        ("My zip code is 05520", "05520"),
        # Street words of many countries: USPS suffixes, UK flats, nl/sv/fi/cs compounds, Hungarian
        # and Danish street words apart, Iberian and Italian street words first, Czech prepositions.
        ("Please write to 8224 Sutton Vista next week.", "8224 Sutton Vista"),
        ("Flat 37W\nDavies Meadows", "Flat 37W\nDavies Meadows"),
        ("The plumber comes to Pienhof 521 on Monday.", "Pienhof 521"),
        ("Ship to Trädgårdstorget 696 please.", "Trädgårdstorget 696"),
        ("I live at Dózsa György utca 100. now", "Dózsa György utca 100."),
        ("He moved to Høgholt Allé 776 last year.", "Høgholt Allé 776"),
        ("Write to Praça de São João de Deus, 5 today.", "Praça de São João de Deus, 5"),
        ("Deliver it to Na Šafránce 5 tomorrow.", "Na Šafránce 5"),
        ("We met on rue David Lebon yesterday.", "rue David Lebon"),
        # A street word and a house number said to be one (id, es); a street line, a postcode, a town.
        ("Please deliver to Jl. Merdeka Raya No. 12, Bandung.", "Jl. Merdeka Raya No. 12, Bandung"),
        ("Our office: Calle 45 # 12-30, Bogotá", "Calle 45 # 12-30, Bogotá"),
        ("Send it to Kovačićeva 4b/2, 10000 Zagreb please.", "Kovačićeva 4b/2, 10000 Zagreb"),
        ("Write to Anna Berg at Lipova ulica 7a, 2311 Hoče.", "Lipova ulica 7a, 2311 Hoče"),
        # A number, a street's name, its town and a postcode, whatever the street word.
        ("Send it to 39 King Indlela, Polokwane, 2688 today.", "39 King Indlela, Polokwane, 2688"),
        ("Ship to 923, Deol Ganj, Chandrapur-881973.", "923, Deol Ganj, Chandrapur-881973"),
        # Street words from Faker's address providers: after the name, before it, joined to it.
        ("Meet me at 14 Rose Laneway tonight.", "14 Rose Laneway"),
        ("Write to Calzada Juárez 706, please.", "Calzada Juárez 706"),
        ("Send it to Bakkegrenda 4 tomorrow.", "Bakkegrenda 4"),
        # A writer who capitalises nothing: a street word, or a long compound street suffix.
        ("i live at 12 baker street, london", "12 baker street"),
        ("send it to 4 machelsesteenweg 197 please", "4 machelsesteenweg 197"),
        # US military mail: a ship and its sailor, a post office and box, in any case.
        ("Ship it to USCGC Hamilton\nFPO AP 96678 please.", "USCGC Hamilton\nFPO AP 96678"),
        ("My son is at PSC 1234, Box 5678\nAPO AE 09001 until May.", "PSC 1234, Box 5678\nAPO AE 09001"),
        ("write to unit 2211 box 0042 dpo aa 34005 today", "unit 2211 box 0042 dpo aa 34005"),
        # House numbers that look like a phone number belong to the address they start.
        ("The restaurant is at 17151 2450 Crown St", "17151 2450 Crown St"),
        # A postcode taken for a phone number cuts the address there, not away.
        ("Send it to Largo Machado, 21, 9904-377 Peniche.", "Largo Machado, 21"),
        # A letter's address block: the lines below the street (suite, town, country and postcode).
        (
            "Maureen Thibault\n\n41086 Kiannonkatu 98\n Suite 464\n OULU\n\n Finland 80896\n\nDear Maureen, thank you for"
            " your letter of last week.",
            "41086 Kiannonkatu 98\n Suite 464\n OULU\n\n Finland 80896",
        ),
    ],
)
def test_street_addresses(text: str, found: str) -> None:
    (entity,) = [e for e in find_entities(text) if e.type == "STREET_ADDRESS"]
    assert text[entity.start : entity.end] == found


def test_a_locales_own_street_words_can_be_left_out() -> None:
    # The bench reads each Faker locale's sentences without the street words only it lists.
    assert list(addresses("Meet me at 14 Rose Laneway tonight.", without="en_AU")) == []
    assert list(addresses("Meet me at 14 Rose Laneway tonight.", without="es_MX")) == [(11, 26)]


def test_a_list_of_given_names_or_of_names_after_a_cue_is_people_and_a_firm_is_not() -> None:
    def people(text: str) -> list[str]:
        return [text[e.start : e.end] for e in find_entities(text) if e.type == "PERSON"]

    assert people("They had 4: Gaetane, Hannah, Derek and Anna.") == ["Gaetane", "Hannah", "Derek", "Anna"]
    assert people("the brainchild of our founders: Kónya, Becker and Vasquez.") == [
        "Kónya",
        "Becker",
        "Vasquez",
    ]
    assert people("She spent a year at Hawkins, Richardson and Santana as a clerk.") == []
    assert people("Lamovec and Morales were precision engineers.") == ["Lamovec", "Morales"]
    assert people("Sales and Marketing were merged last year.") == []
    assert people("It was State A. The other was State B.") == []


@pytest.mark.parametrize(
    "text",
    ["She spent a year at Conway Inc. before joining us.", "He lives on the north side of Joaquin Suarez 2906.", "The Davis and Williamson Orchestra was founded in 1977.",
     "These early shows on Kent Street were important to them."],
)  # fmt: skip
def test_firms_and_streets_named_after_people_are_not_people(text: str) -> None:
    assert not [e for e in find_entities(text) if e.type == "PERSON"]


def test_a_short_number_without_a_phone_word_is_no_phone_number() -> None:
    assert find_entities("The scores were 12 34 56 and 123 456 in the end.") == []


def test_an_address_block_ends_before_the_letters_closing() -> None:
    text = "My new address is:\nLexweg 3\n6960 CA\nEllemeet\n\nThanks,\nLeah"
    kinds = {text[e.start : e.end]: e.type for e in find_entities(text)}
    assert kinds == {"Lexweg 3\n6960 CA\nEllemeet": "STREET_ADDRESS", "Leah": "PERSON"}


def test_a_name_after_an_address_cue_is_no_street_with_the_next_lines_number() -> None:
    text = "Billing address: Sophie Lang\n    3482 Via Franscini 71 Suite 838\n   Tujetsch"
    kinds = {text[e.start : e.end]: e.type for e in find_entities(text)}
    assert kinds == {
        "Sophie Lang": "PERSON",
        "3482 Via Franscini 71 Suite 838\n   Tujetsch": "STREET_ADDRESS",
    }


def test_the_speakers_of_a_dialogue_are_people_and_a_forms_labels_are_not() -> None:
    dialogue = "Ubul: What a wife.\nNicole: Remember me?\nUbul: I do."  # "Ubul": a name only as a speaker
    people = [dialogue[e.start : e.end] for e in find_entities(dialogue) if e.type == "PERSON"]
    assert people == ["Ubul", "Nicole", "Ubul"]
    form = "Date: 3 May\nPhone: unknown\nTopic: refunds"
    assert not [e for e in find_entities(form) if e.type == "PERSON"]


@pytest.mark.parametrize(
    "text",
    [
        "On January 3 the planet Mars was close to Venus.",
        "Which of these is a Roman emperor?\nA. 1\nB. 2\nC. 3",
        "Send the report via email in 2 parts, in place of the old one.",
        "NASA and the ACE team met in South Carolina.",
        "I have 3 kids and a dog park nearby.",
        # Naming words before an answer option, a term of art, a word that is no name.
        "The development of an egg without fertilization is known as\nA. meiosis\nB. parthenogenesis",
        "Give the full name:\nA. the first one\nB. the second one",
        "my name is not important here",
        "Russia said the talks would resume.",
        "Invoice of 03 Feb 2022, due 17 March 2022.",
        # Ordinary words that are also street words, and an address block's closing line.
        "A 60 W light bulb draws 0.5 A. Connect via QR code.",
        "The answer is A. 0 B. 4 C. 2 D. 6",
        # Places made of a given name, told by their first or last word.
        "She flew from San Jose to Santa Ana, then on to South Carolina and Alice Springs.",
        # Capitalised runs of words the gazetteer does not know: common English words, not names.
        "They read Entertainment Weekly and the Google Public Data Explorer.",
        "I played Tube Snake Boogie twice.",
        "Python was born in the nineties.",
        # A numbered work, a product and its year, a rank.
        "Beethoven's Symphony No. 9 is in D minor.",
        "Windows 10, 2019 Edition is out.",
        "He ranked it at #1 in 2019.",
        # Counts of things in places, a figure after them.
        "We sold 500 Units, North Region, 12000 more than planned.",
        # Numbers and road words in a text without capitals.
        "it is 5 miles down the road, a 3 hour drive",
    ],
)
def test_ordinary_capitalised_words_are_not_people_or_places(text: str) -> None:
    assert not [e for e in find_entities(text) if e.type in ("PERSON", "STREET_ADDRESS")]


def test_the_default_policy_keeps_names_a_question_needs() -> None:
    from sovra.routing.router import Router, default_policy
    from sovra.spec import Routing

    router = Router(default_policy({"m": Routing()}), {"m": Routing()})
    asked = {"messages": [{"role": "user", "content": "Who was Ada Lovelace? Mail me at ada@example.com"}]}
    decision = router.decide(asked)
    assert decision.redact == frozenset({"EMAIL_ADDRESS"})
    assert "Ada Lovelace" in decision.apply(asked)["messages"][0]["content"]


def test_a_policy_that_asks_for_names_gets_them_redacted() -> None:
    from sovra.routing.policy import Policy
    from sovra.routing.router import Router
    from sovra.spec import Routing

    policy = Policy.model_validate(
        {"rules": [{"name": "hide-people", "when": {"pii": ["PERSON", "STREET_ADDRESS"]}, "action": "redact",
                    "entities": ["PERSON", "STREET_ADDRESS"]},
                   {"name": "general", "action": "route", "target": {"model": "m"}}]}
    )  # fmt: skip
    router = Router(policy, {"m": Routing()})
    asked = {"messages": [{"role": "user", "content": "Maria Schneider lives at 221 Baker Street."}]}
    decision = router.decide(asked)
    assert decision.redact == frozenset({"PERSON", "STREET_ADDRESS"})
    assert decision.apply(asked)["messages"][0]["content"] == "<PERSON> lives at <STREET_ADDRESS>."


def test_faker_street_words_are_taken_by_where_they_stand() -> None:
    words = street_words({"approach", "beach"})  # the vocabulary: common English words
    assert "zu_ZA" in words["after"]["Indlela"] and "en_IN" in words["after"]["Ganj"]
    assert "es_MX" in words["before"]["Calzada"] and "no_NO" in words["compound"]["grenda"]
    # Not a common English word, nor the Malaysian provider's "suffixes" (the streets' own names).
    assert "Approach" not in words["after"] and "Faraday" not in words["after"]
