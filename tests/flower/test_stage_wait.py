"""``wait_for_stage`` reads the server's progress file while the server appends to it: a line
caught half-written is read at the next look, never parsed (a JSON error would end a healthy
deployment test)."""

from __future__ import annotations

import json
import threading

from deployment_checks import wait_for_stage


class _Running:
    def status(self, run_id: int) -> str:
        return "running"


def test_a_half_written_line_is_read_once_whole(tmp_path):
    progress = tmp_path / "flower" / "progress.jsonl"
    progress.parent.mkdir()
    event = {"round": 0, "stage": "share_keys", "participants": [0, 1, 2]}
    line = json.dumps(event) + "\n"
    progress.write_text(json.dumps({"round": 0, "stage": "advertise_keys"}) + "\n" + line[:20])

    def write_the_rest() -> None:
        with progress.open("a") as handle:
            handle.write(line[20:])

    finish = threading.Timer(0.5, write_the_rest)
    finish.start()
    try:
        found = wait_for_stage(_Running(), 1, tmp_path, 0, "share_keys", timeout_s=30)
    finally:
        finish.join()
    assert found == event
