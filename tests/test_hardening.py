"""Issue 11: job files that cannot blow up, physical target ranges, validated graph settings and shard
sizes, one writer per store, bounded Materials Project requests, one-line errors instead of tracebacks."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from hybridmat.cli import app, is_user_error, main
from hybridmat.config import MAX_JOB_FILE_BYTES, JobFileError, load_job
from hybridmat.console import UserError
from hybridmat.data.mp_source import MaterialsProjectError, MaterialsProjectSource
from hybridmat.data.source_strings import open_source
from hybridmat.data.validate import TARGET_RANGES, clip_to_target_ranges, target_range_problem
from hybridmat.features.featurizer import MAX_CUTOFF, FeaturizerSettings
from hybridmat.features.pipeline import featurize_to_store
from hybridmat.features.store import FeatureStore
from hybridmat.locking import LOCK_NAME, DirectoryLockedError, directory_lock, read_owner
from tests.conftest import rocksalt

REPO = Path(__file__).resolve().parents[1]
SETTINGS = FeaturizerSettings(composition="magpie")


def _table(path: Path, rows: list[tuple[str, float, float]]) -> Path:
    """A JSON-lines table of rock-salt structures with the given ``(id, e_form, band_gap)``."""
    structure = json.dumps(rocksalt().as_dict())
    path.write_text("".join(json.dumps({"id": i, "structure": structure, "e_form": e, "band_gap": g}) + "\n"
                            for i, e, g in rows))
    return path


# -- 3. job files --------------------------------------------------------------------------------------

def test_nested_yaml_aliases_are_refused_before_they_expand(tmp_path: Path) -> None:
    lines = ['a0: &a0 ["xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"]']
    lines += [f"a{k}: &a{k} [{', '.join([f'*a{k - 1}'] * 10)}]" for k in range(1, 9)]
    lines += ["name: bomb", "ensemble: *a8"]
    job = tmp_path / "bomb.yaml"
    job.write_text("\n".join(lines) + "\n")
    assert job.stat().st_size < 2000  # the 1.3 KB file: 10**8 strings once expanded
    with pytest.raises(JobFileError, match=r"alias \*a0 is not allowed in a job file.*line 2") as refused:
        load_job(job)
    assert len(str(refused.value)) < 300


def test_big_job_files_and_python_tags_are_refused_in_one_line(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("name: big\n" + "#" * MAX_JOB_FILE_BYTES + "\n")
    with pytest.raises(JobFileError, match="a job file is at most"):
        load_job(big)
    tagged = tmp_path / "tagged.yaml"
    tagged.write_text('name: !!python/object/apply:os.system ["touch pwned"]\n')
    with pytest.raises(JobFileError, match=r"python/object/apply:os.system.*\(line 1, column 7\)") as refused:
        load_job(tagged)
    assert "\n" not in str(refused.value) and not (tmp_path / "pwned").exists()
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"name: \xff\xfe\n")
    with pytest.raises(JobFileError, match="not UTF-8"):
        load_job(binary)


def test_a_validation_error_names_the_value_without_echoing_the_input(tmp_path: Path) -> None:
    job = tmp_path / "long.yaml"
    job.write_text("name: long\ndata:\n  source: [" + ", ".join(["x" * 100] * 1000) + "]\n")
    with pytest.raises(JobFileError, match="data.source") as refused:
        load_job(job)
    assert len(str(refused.value)) < 600


# -- 4. silently wrong results ---------------------------------------------------------------------------

def test_targets_outside_their_physical_range_become_target_errors(tmp_path: Path) -> None:
    table = _table(tmp_path / "t.jsonl", [("ok", -1.0, 2.0), ("huge", 1e308, 1.0), ("low", -1e6, 1.0),
                                          ("negative-gap", -1.0, -0.5), ("wide-gap", -1.0, 25.0)])
    manifest = featurize_to_store(open_source(str(table)), tmp_path / "store", spec=str(table), settings=SETTINGS,
                                  progress=False)
    store = FeatureStore(tmp_path / "store")
    assert store.read_table(["id"]).column("id").to_pylist() == ["ok"]
    errors = {row["id"]: row for row in store.errors().to_pylist()}
    assert {row["stage"] for row in errors.values()} == {"targets"}
    assert "target 'e_form' = 1e+308 eV/atom is outside its physical range [-10, 10]" in errors["huge"]["reason"]
    assert "-1e+06" in errors["low"]["reason"] and "-0.5 eV" in errors["negative-gap"]["reason"]
    assert manifest["counts"] == {"inputs": 5, "rows": 1, "errors": 4, "shards": 1}


def test_ranges_are_overridable_per_source(tmp_path: Path) -> None:
    table = _table(tmp_path / "t.jsonl", [("wide-gap", -1.0, 25.0)])
    default, widened = open_source(str(table)), open_source(f"{table}?ranges=band_gap:0:30")
    assert next(iter(default)).stage == "targets"
    assert next(iter(widened)).targets["band_gap"] == 25.0
    assert default.fingerprint() != widened.fingerprint()  # a store keeps the rows its ranges allowed
    with pytest.raises(ValueError, match="NAME:LOW:HIGH"):
        open_source(f"{table}?ranges=band_gap:0")
    with pytest.raises(ValueError, match="does not provide"):
        open_source(f"{table}?ranges=volume:0:1")
    assert target_range_problem({"e_form": float("nan"), "other": 1e9}) is None  # not this check's business
    assert TARGET_RANGES["band_gap"] == (0.0, 20.0)


def test_predicted_means_are_kept_within_the_physical_ranges() -> None:
    predictions = np.array([[-0.3, -0.3, 1.0], [2.0, 25.0, -12.0]])  # band_gap, unknown target, e_form
    clipped = clip_to_target_ranges(predictions, ["band_gap", "volume", "e_form"])
    np.testing.assert_array_equal(clipped, [[0.0, -0.3, 1.0], [2.0, 25.0, -10.0]])
    assert predictions[0, 0] == -0.3  # the input is not changed


@pytest.mark.parametrize("cutoff", [float("nan"), float("inf"), -1.0, 0.0, MAX_CUTOFF * 2])
def test_cutoffs_must_be_finite_positive_and_sane(cutoff: float, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cutoff must be a finite number"):
        FeaturizerSettings(cutoff=cutoff)
    result = CliRunner().invoke(app, ["featurize", "x.jsonl", "--out", str(tmp_path / "s"), "--cutoff", str(cutoff)])
    assert result.exit_code == 2 and not (tmp_path / "s").exists()
    job = tmp_path / "job.yaml"
    job.write_text(f"name: j\ndata: {{source: x.jsonl}}\nfeatures: {{cutoff: {cutoff}}}\n")
    with pytest.raises(JobFileError, match="features.cutoff"):
        load_job(job)


def test_neighbour_counts_are_bounded() -> None:
    for bad in (0, -3, 10_000, 2.5, True):
        with pytest.raises(ValueError, match="max_neighbors must be an integer"):
            FeaturizerSettings(max_neighbors=bad)


@pytest.mark.parametrize("shard_size", ["0", "-5"])
def test_shard_size_below_one_is_refused(shard_size: str, tmp_path: Path) -> None:
    table = _table(tmp_path / "t.jsonl", [("ok", -1.0, 2.0)])
    result = CliRunner().invoke(app, ["featurize", str(table), "--out", str(tmp_path / "s"),
                                      "--shard-size", shard_size])
    assert result.exit_code == 2 and "shard-size" in result.output
    with pytest.raises(UserError, match="shard size must be a whole number of rows >= 1"):
        featurize_to_store(open_source(str(table)), tmp_path / "s", spec=str(table), shard_size=int(shard_size),
                           progress=False)
    assert not (tmp_path / "s" / "manifest.json").exists()


# -- 6. one writer per store -----------------------------------------------------------------------------

HOLDER = textwrap.dedent("""
    import sys, time
    from hybridmat.locking import directory_lock
    with directory_lock(sys.argv[1], "featurize"):
        print("locked", flush=True)
        time.sleep(600)
""")


def _hold_lock(directory: Path) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(directory)], cwd=REPO, stdout=subprocess.PIPE,
                              text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    return holder


def test_a_second_writer_is_refused_and_a_dead_owner_is_taken_over(tmp_path: Path) -> None:
    store = tmp_path / "store"
    table = _table(tmp_path / "t.jsonl", [("ok", -1.0, 2.0)])
    holder = _hold_lock(store)
    try:
        with pytest.raises(DirectoryLockedError, match=rf"is being written by pid {holder.pid} on .*featurize"):
            featurize_to_store(open_source(str(table)), store, spec=str(table), overwrite=True, progress=False)
        assert not (store / "manifest.json").exists()  # refused before touching the store
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert read_owner(store)["pid"] == holder.pid  # the dead owner's record is still there: a stale lock
    manifest = featurize_to_store(open_source(str(table)), store, spec=str(table), settings=SETTINGS,
                                  progress=False)
    assert manifest["counts"]["rows"] == 1
    assert read_owner(store) is None and (store / LOCK_NAME).exists()  # released (emptied), not deleted


def test_the_cli_refuses_a_locked_store_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "store"
    table = _table(tmp_path / "t.jsonl", [("ok", -1.0, 2.0)])
    holder = _hold_lock(store)
    try:
        monkeypatch.setattr(sys, "argv", ["hybridmat", "featurize", str(table), "--out", str(store), "--overwrite"])
        with pytest.raises(SystemExit) as exit_status:
            main()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert exit_status.value.code == 2
    message = capsys.readouterr().err
    assert f"pid {holder.pid}" in message and "Traceback" not in message


def test_the_lock_is_reentrant_within_a_process(tmp_path: Path) -> None:
    with directory_lock(tmp_path, "screen"), directory_lock(tmp_path, "screen"):
        assert read_owner(tmp_path)["pid"] == os.getpid()
    assert read_owner(tmp_path) is None


# -- 7. Materials Project requests are bounded -----------------------------------------------------------

def test_an_endpoint_that_never_answers_fails_within_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MP_API_KEY", "0123456789abcdef0123456789abcdef")
    silent = socket.create_server(("127.0.0.1", 0))  # accepts TCP connections (backlog), never answers
    endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}/"
    try:
        source = MaterialsProjectSource(chemsys="Li-O", limit=5, endpoint=endpoint, max_retries=10, backoff_s=0.1,
                                        timeout_s=0.5, deadline_s=1.5)
        started = time.monotonic()
        with pytest.raises(MaterialsProjectError, match=r"timeout 0.5 s per attempt, deadline 1.5 s") as failed:
            list(source)
        assert time.monotonic() - started < 10
        assert endpoint in str(failed.value) and "no answer within" in str(failed.value)
    finally:
        silent.close()


# -- 8. one-line errors, no data lost --------------------------------------------------------------------

def test_an_invalid_utf8_line_is_a_row_error(tmp_path: Path) -> None:
    table = _table(tmp_path / "t.jsonl", [("first", -1.0, 2.0), ("last", -2.0, 1.0)])
    lines = table.read_bytes().splitlines(keepends=True)
    table.write_bytes(lines[0] + b'{"id": "bad\xff\xfe"}\n' + lines[1])
    items = list(open_source(str(table)))
    assert [item.id for item in items] == ["first", "row-1", "last"]
    assert items[1].stage == "read" and "line 2 is not UTF-8" in items[1].reason


def test_a_question_mark_in_a_file_name_is_escaped(tmp_path: Path) -> None:
    table = _table(tmp_path / "what?.jsonl", [("a", -1.0, 2.0), ("b", -2.0, 1.0)])
    escaped = str(table).replace("?", "%3F")
    assert [item.id for item in open_source(f"{escaped}?limit=1")] == ["a"]
    with pytest.raises(UserError, match="a '\\?' in a file name is written %3F"):
        open_source(str(table))  # unescaped, "?" starts the options


def test_rejected_checkpoints_and_model_directories_are_user_errors(tmp_path: Path) -> None:
    from hybridmat.training.checkpoint import read_state

    (tmp_path / "text.pt").write_text("not a checkpoint")
    with pytest.raises(UserError, match="rejected: not a weights-only torch checkpoint"):
        read_state(tmp_path / "text.pt")
    evil = tmp_path / "evil.pt"
    evil.write_bytes(b"\x80\x04\x95\x1d\x00\x00\x00\x00\x00\x00\x00\x8c\x05posix\x94\x8c\x06system\x94\x93\x94"
                     b"\x8c\x04true\x94\x85\x94R\x94.")
    with pytest.raises(UserError, match="rejected"):
        read_state(evil)
    with pytest.raises(UserError, match="is a directory"):
        read_state(tmp_path)


@pytest.mark.parametrize("error", [FileExistsError(17, "File exists", "out"), OSError(30, "Read-only file system"),
                                   OSError(28, "No space left on device"), PermissionError(13, "denied")])
def test_path_errors_are_the_users_not_bugs(error: OSError) -> None:
    assert is_user_error(error)
    assert not is_user_error(OSError(5, "Input/output error")) and not is_user_error(KeyError("x"))


def test_an_output_path_under_a_file_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    table = _table(tmp_path / "t.jsonl", [("ok", -1.0, 2.0)])
    (tmp_path / "afile").write_text("x")
    monkeypatch.setattr(sys, "argv", ["hybridmat", "featurize", str(table), "--out", str(tmp_path / "afile" / "s")])
    with pytest.raises(SystemExit) as exit_status:
        main()
    assert exit_status.value.code == 2
    err = capsys.readouterr().err
    assert "afile" in err and "Traceback" not in err
