"""SYNTHETIC financial-news sentiment (negative / neutral / positive), generated offline.

Not real data: seeded sentences in the style of Financial PhraseBank, for the embedded default
and for tests. Every example says so (``columns["source"] = "synthetic"``) and carries the
institution that "wrote" it (``columns["institution"]``), for ``natural`` partitioning.

What a model has to learn (none of it is a single keyword):

- direction x metric polarity: "costs rose" is negative, "net debt fell" positive;
- neutral news that still moves numbers (share counts, headcount after a divestment);
- guidance, sometimes negated ("does not expect its operating profit to improve");
- contrast clauses ("Despite weak demand in Poland, ...") and a peer's opposite news;
- figures only ("EUR 41.2 mn, compared with EUR 37.9 mn a year earlier");
- each institution's own jargon for metrics and its own desk slang ("came in light"), used at
  rate ``institution_vocab`` instead of the common words.

``difficulty`` in [0, 1] raises the share of polarity-inverted metrics, weak verbs, negation,
contrast clauses and figures-only sentences; above 0.5 it also flips labels (20% at 1).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import ClassVar

from securefed.config import TaskConfig
from securefed.tasks.base import ClassificationTask, Example, reject_source_overrides
from securefed.tasks.fpb import SENTIMENT_INSTRUCTION, SENTIMENTS
from securefed.tasks.synthetic import (
    FINANCE_KINDS,
    SOURCE,
    Knobs,
    house_or_common,
    institution_names,
    label_noise_rate,
    rng_for,
    weighted_choice,
)

NAME = "synthetic_finance"
NEGATIVE, NEUTRAL, POSITIVE = 0, 1, 2

# concept: (polarity, unit, canonical word, institution synonyms)
METRICS: dict[str, tuple[int, str, str, tuple[str, ...]]] = {
    "sales": (1, "mn", "net sales", ("turnover", "top line", "revenues")),
    "ebit": (1, "mn", "operating profit", ("EBIT", "operating result", "operating income")),
    "profit": (1, "mn", "net profit", ("bottom line", "net income", "profit after tax")),
    "orders": (1, "mn", "order intake", ("new orders", "bookings", "order inflow")),
    "eps": (1, "eur", "earnings per share", ("EPS", "per-share earnings", "diluted EPS")),
    "margin": (1, "pct", "gross margin", ("gross profit margin", "product margin", "GM")),
    "share": (1, "pct", "market share", ("market position", "segment share", "share of wallet")),
    "dividend": (1, "eur", "dividend", ("payout", "distribution per share", "dividend per share")),
    "costs": (-1, "mn", "operating costs", ("opex", "operating expenses", "running costs")),
    "debt": (-1, "mn", "net debt", ("net borrowings", "leverage", "interest-bearing debt")),
    "losses": (-1, "mn", "credit losses", ("loan loss provisions", "bad debts", "write-offs")),
    "deficit": (-1, "mn", "operating loss", ("EBIT loss", "operating deficit", "red ink")),
    "inputs": (-1, "mn", "raw material costs", ("input costs", "material bill", "feedstock costs")),
}
GOOD = [k for k, (p, *_) in METRICS.items() if p > 0]
BAD = [k for k, (p, *_) in METRICS.items() if p < 0]
UNITS = {"mn": ("EUR {:.1f} mn", 5, 400), "eur": ("EUR {:.2f}", 0.05, 3), "pct": ("{:.1f}%", 2, 40)}

VERBS = {  # direction: (strong, weak)
    1: (("rose", "increased", "grew", "climbed", "jumped", "surged", "went up"),
        ("edged up", "was slightly higher", "inched up", "ticked up")),
    -1: (("fell", "decreased", "declined", "dropped", "slumped", "plunged", "went down"),
         ("edged down", "was slightly lower", "slipped", "dipped")),
}  # fmt: skip
FLAT = ("remained unchanged", "was stable", "stayed flat", "held steady",
        "was at the previous year's level")  # fmt: skip
GUIDE = {1: ("increase", "rise", "grow"), -1: ("decrease", "fall", "decline")}
SLANG = (  # (positive, negative, neutral) desk slang; one set per institution
    ("printed a clean beat", "printed a miss", "printed in line"),
    ("came in hot", "came in light", "came in as guided"),
    ("went green on the tape", "went red on the tape", "stayed flat on the tape"),
    ("topped the whisper number", "missed the whisper number", "matched the whisper number"),
    ("blew past consensus", "whiffed on consensus", "landed on consensus"),
    ("screened strong", "screened weak", "screened neutral"),
    ("ran ahead of plan", "ran behind plan", "ran to plan"),
    ("surprised to the upside", "disappointed to the downside", "was a non-event"),
)
CONTEXT = {  # what a contrast clause says, by its sign
    1: ("strong demand in {r}", "favourable currency rates", "a successful product launch",
        "lower energy prices", "the recovery in {r}"),
    -1: ("weak demand in {r}", "the strike at its {t} plant", "higher energy prices",
         "unfavourable currency rates", "the downturn in {r}"),
}  # fmt: skip
REGIONS = ("Russia", "the Nordic countries", "China", "the Baltic states", "North America",
           "Germany", "Poland", "Sweden")  # fmt: skip
PERIODS = ("in the third quarter", "in January-June", "year-on-year", "in 2009",
           "in the first half of the year", "in the review period", "in the fourth quarter",
           "")  # fmt: skip
FACTUAL = (
    "{c} will publish its interim report on {d} {m}.",
    "{c} operates {n} production plants in {r}.",
    "{c} appointed a new chief financial officer in {m}.",
    "The shares of {c} are listed on the Helsinki stock exchange.",
    "{c} is a {s} company headquartered in {t}.",
    "The agreement between {c} and {c2} was signed in {m}.",
    "{c} will hold its annual general meeting on {d} {m}.",
    "{c} moved its headquarters to {t} in {m}.",
)
MOVING_NEUTRAL = (
    "The number of {c} shares {v} to {n} after the conversion of option rights.",
    "The headcount at {c} {v} to {n} after the transfer of the {s} unit.",
    "The share capital of {c} {v} to EUR {x} mn after the registration of new shares.",
)
COMPANY_HEADS = ("Val", "Mor", "Kes", "Tal", "Ost", "Bri", "Nor", "Sil", "Aur", "Hel", "Vik",
                 "Lum", "Kar", "Fen", "Ard", "Pol")  # fmt: skip
COMPANY_TAILS = ("tek Oyj", "row plc", "ko AB", "mar Group", "ica Holdings", "dal Industries",
                 "for ASA", "sys Corp")  # fmt: skip
CITIES = ("Helsinki", "Espoo", "Stockholm", "Oslo", "Tampere", "Gothenburg", "Tallinn")
SECTORS = ("packaging", "forestry", "software", "engineering", "retail", "logistics")
MONTHS = ("January", "March", "April", "May", "August", "October", "November")


@dataclass(frozen=True)
class House:
    """One institution's own vocabulary: its companies, metric jargon, desk slang, label mix."""

    name: str
    companies: tuple[str, ...]
    jargon: dict[str, str]
    slang: tuple[str, str, str]
    label_prior: tuple[float, float, float]


class SyntheticFinance(ClassificationTask):
    name: ClassVar[str] = NAME
    label_names: ClassVar[tuple[str, ...]] = SENTIMENTS
    synthetic: ClassVar[bool] = True
    description: ClassVar[str] = (
        "SYNTHETIC financial news sentiment (3 classes), generated offline; not real data"
    )
    instruction: ClassVar[str] = SENTIMENT_INSTRUCTION

    def read(self, task_cfg: TaskConfig, seed: int) -> list[Example]:
        reject_source_overrides(self, task_cfg)
        return generate(Knobs.of(task_cfg.synthetic), seed)


def generate(knobs: Knobs, seed: int) -> list[Example]:
    """``knobs.num_examples`` seeded examples; the same arguments always give the same list."""
    houses = _houses(knobs.num_institutions, rng_for(NAME, seed, "world"))
    common = [c for h in houses for c in h.companies[:2]]  # names every institution writes about
    rng = rng_for(NAME, seed, "examples")
    noise = label_noise_rate(knobs.difficulty)
    examples = []
    for _ in range(knobs.num_examples):
        house = rng.choice(houses)
        label = weighted_choice(rng, house.label_prior)
        text = _Writer(rng, house, common, knobs).sentence(label)
        if rng.random() < noise:
            label = rng.choice([k for k in range(3) if k != label])
        columns = {"institution": house.name, "source": SOURCE}
        examples.append(Example(text=text, choices=SENTIMENTS, label=label, columns=columns))
    return examples


def _houses(count: int, rng: random.Random) -> list[House]:
    names = institution_names(count, rng, FINANCE_KINDS)
    pool = rng.sample([h + t for h in COMPANY_HEADS for t in COMPANY_TAILS], 6 * count)
    houses = []
    for i, name in enumerate(names):
        prior = [rng.gammavariate(6.0, 1.0) for _ in range(3)]  # mild label-mix differences
        houses.append(
            House(
                name=name,
                companies=tuple(pool[6 * i : 6 * i + 6]),
                jargon={k: rng.choice(syn) for k, (*_, syn) in METRICS.items()},
                slang=SLANG[i % len(SLANG)],
                label_prior=tuple(p / sum(prior) for p in prior),  # type: ignore[arg-type]
            )
        )
    return houses


class _Writer:
    """Writes one sentence for one institution; all choices come from ``rng``."""

    def __init__(self, rng: random.Random, house: House, common: list[str], knobs: Knobs) -> None:
        self.rng, self.house, self.common = rng, house, common
        self.d, self.iv = knobs.difficulty, knobs.institution_vocab

    def sentence(self, label: int) -> str:
        r = self.rng.random
        if r() < 0.35 * self.iv:
            text = self._slang(label)
        elif label == NEUTRAL:
            text = self._neutral()
        else:
            sign = 1 if label == POSITIVE else -1
            kind = r()
            if kind < 0.08 + 0.4 * self.d:
                text = self._figures(sign)
            elif kind < 0.3 + 0.4 * self.d:
                text = self._guidance(sign)
            else:
                text = self._change(sign)
            if r() < 0.1 + 0.6 * self.d:
                text = self._contrast(sign, text)
        if r() < 0.5 * self.iv:
            text = (
                self.rng.choice(("{h} desk note: ", "Per {h} research, ")).format(h=self.house.name)
                + text
            )
        return text[0].upper() + text[1:] + ("" if text.endswith(".") else ".")

    # --- pieces ---------------------------------------------------------------------------
    def _company(self) -> str:
        return house_or_common(
            self.rng, self.rng.choice(self.house.companies), self.common, self.iv
        )

    def _metric(self, sign_of_news: int) -> tuple[str, int, str]:
        """A metric word, the direction it must move in to make news of this sign, its unit."""
        bad = self.rng.random() < 0.25 + 0.3 * self.d
        concept = self.rng.choice(BAD if bad else GOOD)
        polarity, unit, canonical, _ = METRICS[concept]
        word = house_or_common(self.rng, self.house.jargon[concept], [canonical], self.iv)
        return word, sign_of_news * polarity, unit

    def _subject(self, metric: str) -> str:
        company = self._company()
        return self.rng.choice((f"{company}'s {metric}", f"{metric} at {company}"))

    def _amounts(self, unit: str, direction: int, low: float, high: float) -> tuple[str, str]:
        """(new, old) figures in ``unit`` that moved in ``direction`` by ``low``-``high``."""
        fmt, lo, hi = UNITS[unit]
        old = self.rng.uniform(lo, hi)
        new = old * (1 + direction * self.rng.uniform(low, high))
        return fmt.format(new), fmt.format(old)

    def _change(self, sign: int) -> str:
        metric, direction, unit = self._metric(sign)
        weak = self.rng.random() < 0.2 + 0.5 * self.d
        verb = self.rng.choice(VERBS[direction][1 if weak else 0])
        how = self.rng.random()
        if how < 0.4:
            pct = self.rng.uniform(0.2, 2.5) if weak else self.rng.uniform(3, 60)
            amount = f" by {pct:.1f}{' percentage points' if unit == 'pct' else '%'}"
        elif how < 0.65 and not weak:
            new, old = self._amounts(unit, direction, 0.05, 0.5)
            amount = f" to {new} from {old}"
        else:
            amount = ""
        period = self.rng.choice(PERIODS)
        return f"{self._subject(metric)} {verb}{amount}{' ' + period if period else ''}"

    def _figures(self, sign: int) -> str:
        metric, direction, unit = self._metric(sign)
        new, old = self._amounts(unit, direction, 0.03, 0.4)
        period = self.rng.choice(PERIODS[:-1])
        return f"{self._subject(metric)} was {new} {period}, compared with {old} a year earlier"

    def _guidance(self, sign: int) -> str:
        negated = self.rng.random() < 0.15 + 0.5 * self.d
        metric, direction, _ = self._metric(-sign if negated else sign)
        verb = self.rng.choice(GUIDE[direction])
        year = self.rng.choice(("2009", "2010", "the current year", "the full year"))
        expects = "does not expect" if negated else self.rng.choice(("expects", "forecasts"))
        return f"{self._company()} {expects} its {metric} to {verb} in {year}"

    def _contrast(self, sign: int, text: str) -> str:
        region = self.rng.choice(REGIONS)
        if self.rng.random() < 0.5:
            context = self.rng.choice(CONTEXT[-sign]).format(r=region, t=self.rng.choice(CITIES))
            return f"despite {context}, {text}"
        metric, direction, _ = self._metric(self.rng.choice((1, -1)))
        peer = self.rng.choice(self.common)
        return f"{text}, while peer {peer}'s {metric} {self.rng.choice(VERBS[direction][0])}"

    def _neutral(self) -> str:
        kind = self.rng.random()
        fill = {
            "c": self._company(), "c2": self.rng.choice(self.common),
            "d": self.rng.randint(1, 28), "m": self.rng.choice(MONTHS),
            "n": self.rng.randint(3, 9000), "r": self.rng.choice(REGIONS),
            "s": self.rng.choice(SECTORS), "x": round(self.rng.uniform(5, 400), 1),
            "t": self.rng.choice(CITIES),
        }  # fmt: skip
        if kind < 0.3:
            metric, *_ = self._metric(1)
            period = self.rng.choice(PERIODS)
            flat = self.rng.choice(FLAT)
            return f"{self._subject(metric)} {flat}{' ' + period if period else ''}"
        if kind < 0.4:
            metric, *_ = self._metric(1)
            return f"{fill['c']} expects its {metric} to remain at the previous year's level"
        if kind < 0.65:
            verb = self.rng.choice(VERBS[self.rng.choice((1, -1))][0])
            return self.rng.choice(MOVING_NEUTRAL).format(v=verb, **fill)
        return self.rng.choice(FACTUAL).format(**fill)

    def _slang(self, label: int) -> str:
        phrase = self.house.slang[(POSITIVE, NEGATIVE, NEUTRAL).index(label)]
        period = self.rng.choice(("quarterly", "third-quarter", "half-year", "full-year"))
        return f"{self._company()}'s {period} numbers {phrase}"
