"""A spent privacy budget ends a baseline's training where it ends, not with a crash."""

from __future__ import annotations

from securefed.config import load_config
from securefed.privacy.budget import ClientPrivacy

TARGET = 3.7


def test_affordable_steps_is_the_most_the_budget_allows():
    cfg = load_config(
        overrides=[
            "privacy.dp.enabled=true",
            "privacy.dp.noise_multiplier=1.0",
            f"privacy.dp.target_epsilon={TARGET}",
        ]
    )
    privacy = ClientPrivacy(cfg, train_sizes=[32], steps_per_round=[40], rounds=1)
    taken = privacy.affordable_steps(0, 40)
    assert 0 < taken < 40
    ledger = privacy.ledgers[0]
    q = privacy.sample_rate(0)
    epsilon = lambda steps: ledger.epsilon_after(noise_multiplier=1.0, sample_rate=q, steps=steps)  # noqa: E731
    assert epsilon(taken) <= TARGET < epsilon(taken + 1)
    assert privacy.affordable_steps(0, taken) == taken  # within budget: all of them
