"""The multiple-choice path learns, fast enough for CI: the encoder's rows (the question, then
each option), their similarity scores, the training loop and the prediction, on records whose
answer is the partner of the word the question names (fixed, arbitrary pairs: a mapping the
untrained encoder does not know and a few dozen steps must teach it).

A claim, not digits: well above chance (0.25) on held-out records after training, where the
untrained encoder is near chance (the named word itself is never an option). It fails when
the path stops learning: rows paired with the wrong question, scores read back in the wrong
order, labels that do not follow their options (each checked by hand as a mutation of
``option_rows``). The real task's learning at scale is ``test_multiple_choice_learns`` (slow).
"""

from __future__ import annotations

import random

from central_training import train_and_score

from securefed.config import ModelConfig
from securefed.tasks import get_task
from securefed.tasks.base import Example

PAIRS = (("apple", "violin"), ("river", "saddle"), ("engine", "pepper"), ("castle", "tiger"),
         ("desert", "mirror"), ("lantern", "harbor"), ("rocket", "marble"),
         ("garden", "canyon"))  # fmt: skip
PARTNER = {a: b for a, b in PAIRS} | {b: a for a, b in PAIRS}
TRAIN, TEST = 160, 64


def _records(count: int, rng: random.Random) -> list[Example]:
    out = []
    for _ in range(count):
        named = rng.choice(sorted(PARTNER))
        others = rng.sample([w for w in PARTNER if w not in (named, PARTNER[named])], 3)
        options = [PARTNER[named], *others]
        rng.shuffle(options)
        text = f"The visitor mentioned {named} and then left."
        out.append(Example(text=text, choices=tuple(options), label=options.index(PARTNER[named])))
    return out


def test_the_multiple_choice_path_learns_the_partner_option():
    task = get_task("synthetic_medqa")  # its encoder_rows and layout; the records are ours
    examples = _records(TRAIN + TEST, random.Random(0))
    model = ModelConfig(adapter_layers="top-1", target_modules=["query", "value"], lora_alpha=32.0)
    learned = train_and_score(examples, task, model, train=TRAIN, max_length=32, steps=40, lr=1e-2)
    assert learned.before < 0.45 and learned.after >= 0.75, (learned.before, learned.after)
