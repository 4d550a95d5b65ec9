"""SYNTHETIC medical multiple choice (4 options), generated offline from a seeded knowledge base.

Not real data: the questions are generated. The diseases are real and each carries a simplified
textbook picture of 5 symptoms (``DISEASE_TABLE``, written for this generator; a teaching
simplification, not a clinical reference), so, as in real MedQA, a pretrained model starts with
some of the knowledge and fine-tuning has the rest to teach: which symptoms, in which
institution's words, single out which disease among similar ones. Every example says so
(``columns["source"] = "synthetic"``) and carries its institution and specialty
(``columns["institution"]``, ``columns["specialty"]``) for ``natural`` partitioning.

Knowledge base (a function of the seed): 16 diseases, 4 drawn from each of the table's 4
specialties of 6; diseases of one specialty share symptoms. Each symptom has a common name and
three synonyms; each institution writes one synonym of its own (``institution_vocab`` is the
rate at which it does instead of the common name).

A question lists some of the disease's symptoms plus unrelated ones, with age, sex and vital
signs as filler; the options are the disease and three others. ``difficulty`` in [0, 1] shows
fewer true symptoms, adds more unrelated ones, draws the wrong options from the same specialty
more often, and above 0.5 moves the answer key to a wrong option (20% at 1).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import ClassVar

from securefed.config import TaskConfig
from securefed.tasks import synthetic
from securefed.tasks.base import (
    OPTION_LETTERS,
    Example,
    MultipleChoiceTask,
    reject_source_overrides,
)

NAME = "synthetic_medqa"
NUM_OPTIONS = 4
DISEASES_PER_SPECIALTY = 4  # drawn per seed from DISEASE_TABLE's six
SYMPTOMS_PER_DISEASE = 5

SYMPTOMS = (  # (common name, synonyms...)
    ("fever", "pyrexia", "high temperature", "febrile episodes"),
    ("cough", "persistent cough", "tussis", "hacking cough"),
    ("shortness of breath", "dyspnea", "breathlessness", "difficulty breathing"),
    ("chest pain", "thoracic pain", "chest tightness", "retrosternal discomfort"),
    ("headache", "cephalalgia", "head pain", "throbbing headache"),
    ("nausea", "queasiness", "upset stomach", "feeling sick"),
    ("vomiting", "emesis", "throwing up", "retching"),
    ("diarrhea", "loose stools", "watery stools", "frequent bowel movements"),
    ("abdominal pain", "stomach ache", "belly pain", "epigastric pain"),
    ("fatigue", "tiredness", "exhaustion", "lack of energy"),
    ("joint pain", "arthralgia", "aching joints", "painful joints"),
    ("rash", "skin eruption", "exanthem", "red spots"),
    ("itching", "pruritus", "itchy skin", "constant scratching"),
    ("dizziness", "vertigo", "lightheadedness", "feeling faint"),
    ("palpitations", "racing heart", "pounding heart", "irregular heartbeat"),
    ("weight loss", "unintentional weight loss", "losing weight", "cachexia"),
    ("night sweats", "nocturnal sweating", "drenching sweats", "sweating at night"),
    ("blurred vision", "visual blurring", "fuzzy vision", "reduced visual acuity"),
    ("numbness", "paresthesia", "tingling", "pins and needles"),
    ("muscle weakness", "muscular weakness", "loss of strength", "weak limbs"),
    ("leg swelling", "leg edema", "ankle swelling", "pedal edema"),
    ("jaundice", "icterus", "yellowing of the skin", "yellow eyes"),
    ("frequent urination", "polyuria", "urinating often", "increased urine output"),
    ("excessive thirst", "polydipsia", "constant thirst", "drinking a lot"),
    ("sore throat", "pharyngitis", "throat pain", "scratchy throat"),
    ("runny nose", "rhinorrhea", "nasal discharge", "dripping nose"),
    ("back pain", "lumbago", "lower back pain", "dorsalgia"),
    ("confusion", "disorientation", "altered mental status", "muddled thinking"),
    ("tremor", "shaking", "trembling hands", "shakiness"),
    ("hair loss", "alopecia", "thinning hair", "balding patches"),
    ("loss of appetite", "anorexia", "poor appetite", "no hunger"),
    ("insomnia", "sleeplessness", "trouble sleeping", "poor sleep"),
    ("constipation", "hard stools", "infrequent bowel movements", "straining at stool"),
    ("wheezing", "whistling breath", "noisy breathing", "sibilant rhonchi"),
    ("bruising", "ecchymosis", "easy bruising", "purple patches"),
    ("hoarseness", "dysphonia", "raspy voice", "voice changes"),
)
# Real diseases with a simplified textbook picture: 5 symptoms each, by their common names.
# Written for this generator from general medical knowledge; a teaching simplification, not a
# clinical reference. Diseases of one specialty share symptoms (abdominal pain runs through the
# gastrointestinal ones), so the cue that decides is the combination.
DISEASE_TABLE: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "cardiopulmonary": (
        ("pneumonia", ("fever", "cough", "shortness of breath", "chest pain", "fatigue")),
        ("asthma", ("cough", "shortness of breath", "chest pain", "insomnia", "wheezing")),
        (
            "heart failure",
            ("shortness of breath", "fatigue", "palpitations", "leg swelling", "loss of appetite"),
        ),
        ("tuberculosis", ("fever", "cough", "weight loss", "night sweats", "loss of appetite")),
        (
            "atrial fibrillation",
            ("shortness of breath", "chest pain", "fatigue", "dizziness", "palpitations"),
        ),
        ("common cold", ("fever", "cough", "headache", "sore throat", "runny nose")),
    ),
    "gastrointestinal": (
        (
            "viral hepatitis",
            ("nausea", "abdominal pain", "fatigue", "jaundice", "loss of appetite"),
        ),
        ("gastroenteritis", ("fever", "nausea", "vomiting", "diarrhea", "abdominal pain")),
        (
            "acute pancreatitis",
            ("fever", "vomiting", "abdominal pain", "back pain", "loss of appetite"),
        ),
        (
            "colorectal cancer",
            ("diarrhea", "abdominal pain", "fatigue", "weight loss", "constipation"),
        ),
        ("celiac disease", ("diarrhea", "abdominal pain", "fatigue", "rash", "weight loss")),
        (
            "gastroesophageal reflux disease",
            ("cough", "chest pain", "nausea", "sore throat", "hoarseness"),
        ),
    ),
    "neurological": (
        ("migraine", ("headache", "nausea", "vomiting", "dizziness", "blurred vision")),
        (
            "multiple sclerosis",
            ("fatigue", "dizziness", "blurred vision", "numbness", "muscle weakness"),
        ),
        (
            "Parkinson disease",
            ("muscle weakness", "tremor", "insomnia", "constipation", "hoarseness"),
        ),
        ("stroke", ("headache", "numbness", "muscle weakness", "confusion", "hoarseness")),
        ("meningitis", ("fever", "headache", "vomiting", "rash", "confusion")),
        (
            "Alzheimer disease",
            ("fatigue", "weight loss", "confusion", "loss of appetite", "insomnia"),
        ),
    ),
    "endocrine and immune": (
        (
            "type 2 diabetes",
            ("fatigue", "blurred vision", "numbness", "frequent urination", "excessive thirst"),
        ),
        ("hyperthyroidism", ("diarrhea", "palpitations", "weight loss", "tremor", "insomnia")),
        (
            "hypothyroidism",
            ("fatigue", "muscle weakness", "hair loss", "constipation", "hoarseness"),
        ),
        ("Addison disease", ("nausea", "fatigue", "dizziness", "weight loss", "loss of appetite")),
        (
            "Cushing syndrome",
            ("muscle weakness", "excessive thirst", "back pain", "insomnia", "bruising"),
        ),
        ("systemic lupus erythematosus", ("fever", "fatigue", "joint pain", "rash", "hair loss")),
    ),
}
SPECIALTIES = tuple(DISEASE_TABLE)
_SYMPTOM_INDEX = {names[0]: i for i, names in enumerate(SYMPTOMS)}
OCCUPATIONS = ("works as a teacher", "works on a farm", "works as a nurse", "is an accountant",
               "drives a truck", "is a student", "is retired")  # fmt: skip
DURATIONS = ("for 2 days", "for a week", "for three weeks", "since yesterday", "for a month")


@dataclass(frozen=True)
class Disease:
    name: str
    specialty: str
    symptoms: tuple[int, ...]  # indices into SYMPTOMS


@dataclass(frozen=True)
class Clinic:
    """One institution: its name and the synonym it writes for each symptom."""

    name: str
    synonym: tuple[str, ...]  # per symptom index


class SyntheticMedQA(MultipleChoiceTask):
    name: ClassVar[str] = NAME
    label_names: ClassVar[tuple[str, ...]] = OPTION_LETTERS[:NUM_OPTIONS]
    synthetic: ClassVar[bool] = True
    description: ClassVar[str] = (
        "SYNTHETIC medical 4-option multiple choice over real diseases with a simplified "
        "symptom table, generated offline; not real data and not a clinical reference"
    )
    instruction: ClassVar[str] = "Answer the following medical question (SYNTHETIC)."

    def read(self, task_cfg: TaskConfig, seed: int) -> list[Example]:
        reject_source_overrides(self, task_cfg)
        return generate(synthetic.Knobs.of(task_cfg.synthetic), seed)


def knowledge_base(seed: int) -> list[Disease]:
    """The seed's 16 diseases: 4 of each specialty's 6 in ``DISEASE_TABLE``."""
    rng = synthetic.rng_for(NAME, seed, "knowledge")
    return [
        Disease(name, specialty, tuple(sorted(_SYMPTOM_INDEX[s] for s in symptoms)))
        for specialty, table in DISEASE_TABLE.items()
        for name, symptoms in rng.sample(table, DISEASES_PER_SPECIALTY)
    ]


def generate(knobs: synthetic.Knobs, seed: int) -> list[Example]:
    """``knobs.num_examples`` seeded questions; the same arguments always give the same list."""
    diseases = knowledge_base(seed)
    world = synthetic.rng_for(NAME, seed, "world")
    clinics = [
        Clinic(name, tuple(world.choice(names[1:]) for names in SYMPTOMS))
        for name in synthetic.institution_names(
            knobs.num_institutions, world, synthetic.CLINIC_KINDS
        )
    ]
    rng = synthetic.rng_for(NAME, seed, "examples")
    noise = synthetic.label_noise_rate(knobs.difficulty)
    return [
        _question(rng, rng.choice(clinics), diseases, knobs, noise)
        for _ in range(knobs.num_examples)
    ]


def _question(
    rng: random.Random,
    clinic: Clinic,
    diseases: list[Disease],
    knobs: synthetic.Knobs,
    noise: float,
) -> Example:
    d = knobs.difficulty
    disease = rng.choice(diseases)
    most = SYMPTOMS_PER_DISEASE - 1 - round(2 * d)  # 4 at difficulty 0, 2 at 1
    shown = rng.sample(disease.symptoms, rng.randint(2, most))
    others = [s for s in range(len(SYMPTOMS)) if s not in disease.symptoms]
    unrelated = [rng.choice(others) for _ in range(2) if rng.random() < 0.3 + 0.5 * d]
    findings = [
        synthetic.house_or_common(rng, clinic.synonym[s], [SYMPTOMS[s][0]], knobs.institution_vocab)
        for s in rng.sample(shown + unrelated, len(shown) + len(unrelated))
    ]
    age, sex = rng.randint(18, 85), rng.choice(("man", "woman"))
    text = (
        f"A {age}-year-old {sex} who {rng.choice(OCCUPATIONS)} presents to "
        f"{clinic.name} with {', '.join(findings[:-1])} and {findings[-1]} "
        f"{rng.choice(DURATIONS)}. Temperature is {rng.uniform(36.4, 38.6):.1f} C, pulse "
        f"{rng.randint(58, 118)}/min, blood pressure {rng.randint(100, 160)}/"
        f"{rng.randint(60, 98)} mm Hg. Which of the following is the most likely diagnosis?"
    )
    same = [x for x in diseases if x.specialty == disease.specialty and x != disease]
    rest = [x for x in diseases if x.specialty != disease.specialty]
    wrong: list[Disease] = []
    while len(wrong) < NUM_OPTIONS - 1:
        pool = same if rng.random() < 0.4 + 0.5 * d else rest
        pick = rng.choice(
            [x for x in pool if x not in wrong] or [x for x in rest if x not in wrong]
        )
        wrong.append(pick)
    options = [disease, *wrong]
    rng.shuffle(options)
    label = options.index(disease)
    if rng.random() < noise:
        label = rng.choice([k for k in range(NUM_OPTIONS) if k != label])
    columns = {
        "institution": clinic.name,
        "specialty": disease.specialty,
        "source": synthetic.SOURCE,
    }
    return Example(text=text, choices=tuple(x.name for x in options), label=label, columns=columns)
