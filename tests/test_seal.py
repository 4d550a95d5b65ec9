"""``run.seal.reseal``: the Flower records collector seals the server's run folder again, but
only over the folder its seal describes, never over an edit."""

from __future__ import annotations

import pytest

from securefed.errors import RunFolderError
from securefed.run.folder import RunFolder, write_json
from securefed.run.seal import reseal, seal_mismatches, seal_run


def _sealed(tmp_path) -> RunFolder:
    folder = RunFolder(tmp_path / "run")
    write_json(folder.file("results.json"), {"federated": {"rounds": 1}})
    seal_run(folder)
    return folder


def test_an_unchanged_folder_is_sealed_again(tmp_path):
    folder = _sealed(tmp_path)
    assert reseal(folder)["files"] == {
        "results.json": folder.artefact_hashes(["results.json"])["results.json"]
    }
    assert seal_mismatches(folder.path) == []


def test_an_edited_folder_is_not_sealed_over(tmp_path):
    folder = _sealed(tmp_path)
    write_json(folder.file("results.json"), {"federated": {"rounds": 2}})
    with pytest.raises(RunFolderError, match=r"changed since it was sealed \(results.json\)"):
        reseal(folder)
    assert [where for _, where, _, _ in seal_mismatches(folder.path)] == ["results.json"]
