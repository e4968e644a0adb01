"""Watched secret files: re-read on change (also Kubernetes' ..data symlink swap), never lost."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import pytest

from exporter.secretfile import SecretFile, SecretWatcher, strip_one_newline

SECRET = "S3cr3tValue-7a1f"
ROTATED = "R0tat3dValue-93bc"


class CountingRead:
    """A read function that counts how often each file was actually read."""

    def __init__(self) -> None:
        self.reads = 0
        self.fail_with: OSError | None = None

    def __call__(self, path: Path) -> bytes:
        self.reads += 1
        if self.fail_with is not None:
            raise self.fail_with
        return path.read_bytes()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def replace_atomically(path: Path, text: str) -> None:
    """What most tools (and a careful operator) do: write a new file, then rename it over."""
    temporary = path.with_name(path.name + ".new")
    write(temporary, text)
    os.replace(temporary, path)


def warnings_in(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("token\n", "token"),
        ("token\r\n", "token"),
        ("token\n\n", "token\n"),  # only one newline goes, as the config's *_file keys do
        ("token", "token"),
        (" token ", " token "),
    ],
)
def test_one_trailing_newline_is_stripped_like_the_config_does(
    tmp_path: Path, content: str, expected: str
) -> None:
    path = tmp_path / "secret"
    write(path, content)
    assert SecretFile(path).value == expected
    assert strip_one_newline(content) == expected


def test_an_unchanged_file_is_not_read_again(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    write(path, SECRET)
    read = CountingRead()
    secret = SecretFile(path, read=read)
    assert read.reads == 1
    for _ in range(5):
        assert secret.refresh() is False
    assert read.reads == 1
    assert secret.value == SECRET


def test_a_changed_file_is_read_and_reported_as_changed(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    write(path, SECRET)
    clock = FakeClock()
    secret = SecretFile(path, clock=clock)
    clock.now += 5
    write(path, ROTATED + "\n")
    assert secret.refresh() is True
    assert secret.value == ROTATED
    assert secret.loaded_at == clock.now
    assert secret.refresh() is False


def test_a_rewrite_with_the_same_content_is_read_but_not_a_change(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    write(path, SECRET)
    read = CountingRead()
    secret = SecretFile(path, read=read)
    replace_atomically(path, SECRET)
    assert secret.refresh() is False
    assert read.reads == 2
    assert secret.value == SECRET


def test_an_atomic_rename_with_equal_size_and_mtime_is_caught(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    write(path, SECRET)
    secret = SecretFile(path)
    before = path.stat()
    replace_atomically(path, SECRET.upper())  # same length
    # The new file may get the very same mtime; only its inode tells it apart.
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_size == before.st_size
    assert secret.refresh() is True
    assert secret.value == SECRET.upper()


def kubernetes_volume(root: Path, version: str, value: str) -> None:
    """Lay out a secret volume as the kubelet does: key -> ..data/key, ..data -> ..<version>."""
    directory = root / f"..{version}"
    directory.mkdir()
    write(directory / "password", value)
    data = root / "..data"
    if not data.exists():
        data.symlink_to(directory.name)
        (root / "password").symlink_to("..data/password")
        return
    # The kubelet's update: a new symlink, renamed over ..data in one step.
    temporary = root / "..data_tmp"
    temporary.symlink_to(directory.name)
    os.replace(temporary, data)


def test_a_kubernetes_data_symlink_swap_is_caught(tmp_path: Path) -> None:
    kubernetes_volume(tmp_path, "2024_01_01", SECRET)
    read = CountingRead()
    secret = SecretFile(tmp_path / "password", read=read)
    assert secret.value == SECRET
    assert secret.refresh() is False
    kubernetes_volume(tmp_path, "2024_02_01", ROTATED)
    assert secret.refresh() is True
    assert secret.value == ROTATED
    assert read.reads == 2


def test_a_vanished_file_keeps_the_last_value_and_warns_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "secret"
    write(path, SECRET)
    clock = FakeClock()
    secret = SecretFile(path, label="accounts[0].password_file", clock=clock)
    path.unlink()
    with caplog.at_level(logging.INFO, logger="exporter.secretfile"):
        for _ in range(3):
            clock.now += 10
            assert secret.refresh() is False
    assert secret.value == SECRET
    assert secret.problem is not None
    assert "last good value stays in use" in secret.problem
    assert secret.problem_since == 1010.0
    warnings = warnings_in(caplog)
    assert len(warnings) == 1
    assert "accounts[0].password_file" in warnings[0]
    assert SECRET not in caplog.text

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="exporter.secretfile"):
        write(path, ROTATED)
        assert secret.refresh() is True
    assert secret.value == ROTATED
    assert secret.problem is None
    assert "readable again" in caplog.text
    assert ROTATED not in caplog.text


def test_an_empty_file_keeps_the_last_value(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "secret"
    write(path, SECRET)
    secret = SecretFile(path)
    with caplog.at_level(logging.WARNING, logger="exporter.secretfile"):
        write(path, "\n")
        assert secret.refresh() is False
        assert secret.refresh() is False
    assert secret.value == SECRET
    assert secret.problem is not None and "is empty" in secret.problem
    assert len(warnings_in(caplog)) == 1


def test_an_unreadable_file_keeps_the_last_value(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "secret"
    write(path, SECRET)
    read = CountingRead()
    secret = SecretFile(path, read=read)
    read.fail_with = PermissionError(13, "Permission denied")
    with caplog.at_level(logging.WARNING, logger="exporter.secretfile"):
        os.chmod(path, 0o000)  # changes the ctime only; the stamp must still notice
        assert secret.refresh() is False
        assert secret.refresh() is False
    assert secret.value == SECRET
    assert secret.problem is not None and "Permission denied" in secret.problem
    assert len(warnings_in(caplog)) == 1
    read.fail_with = None
    os.chmod(path, 0o600)
    assert secret.refresh() is False  # readable again, and the value did not change
    assert secret.problem is None


def test_a_different_problem_is_logged_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "secret"
    write(path, SECRET)
    secret = SecretFile(path)
    with caplog.at_level(logging.WARNING, logger="exporter.secretfile"):
        write(path, "")
        secret.refresh()
        path.unlink()
        secret.refresh()
        secret.refresh()
    assert len(warnings_in(caplog)) == 2
    assert secret.value == SECRET


def test_not_utf8_keeps_the_last_value(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    write(path, SECRET)
    secret = SecretFile(path)
    path.write_bytes(b"\xff\xfe")
    assert secret.refresh() is False
    assert secret.value == SECRET
    assert secret.problem is not None and "UTF-8" in secret.problem


def test_a_file_missing_at_start_has_no_value_until_it_appears(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    secret = SecretFile(path)
    assert secret.value is None
    assert secret.problem is not None and "No such file" in secret.problem
    assert "last good value" not in secret.problem
    write(path, SECRET)
    assert secret.refresh() is True
    assert secret.value == SECRET


# --- the watcher ------------------------------------------------------------------------------


def test_the_watcher_refreshes_at_most_once_per_interval(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    write(path, SECRET)
    clock = FakeClock()
    secret = SecretFile(path)
    changed: list[str] = []
    watcher = SecretWatcher(
        [secret], on_change=lambda file: changed.append(file.label), clock=clock
    )
    assert watcher.check() == []
    write(path, ROTATED)
    clock.now += 9.9
    assert watcher.check() == []  # too early: not even a stat
    assert secret.value == SECRET
    clock.now += 0.1
    assert watcher.check() == [secret]
    assert changed == [secret.label]
    assert secret.value == ROTATED


def test_the_watcher_stats_each_file_once_per_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = []
    for index in range(3):
        path = tmp_path / f"secret{index}"
        write(path, SECRET)
        files.append(SecretFile(path))
    stats: list[str] = []
    real_stat = os.stat

    def counting_stat(path: object, *args: object, **kwargs: object) -> os.stat_result:
        if str(path).startswith(str(tmp_path)):
            stats.append(str(path))
        return real_stat(path, *args, **kwargs)  # type: ignore[arg-type]

    clock = FakeClock()
    watcher = SecretWatcher(files, clock=clock)
    monkeypatch.setattr(os, "stat", counting_stat)
    watcher.check()
    clock.now += 1
    watcher.check()
    assert sorted(stats) == sorted(str(file.path) for file in files)


@pytest.mark.parametrize("interval", [0, -1, 30.5, 60])
def test_the_interval_must_be_positive_and_at_most_30_seconds(interval: float) -> None:
    with pytest.raises(ValueError, match="at most 30"):
        SecretWatcher(interval_seconds=interval)


async def test_the_watcher_loop_picks_up_a_rotation(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    write(path, SECRET)
    secret = SecretFile(path)
    clock = FakeClock()
    sleeps: list[float] = []
    changed: list[SecretFile] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock.now += seconds
        if len(sleeps) == 2:
            replace_atomically(path, ROTATED)
        if len(sleeps) == 4:
            raise asyncio.CancelledError

    watcher = SecretWatcher(
        [secret],
        on_change=lambda file: changed.append(secret),
        interval_seconds=10,
        clock=clock,
        sleep=fake_sleep,
    )
    with pytest.raises(asyncio.CancelledError):
        await watcher.run()
    assert sleeps == [10, 10, 10, 10]
    assert changed == [secret]
    assert secret.value == ROTATED


def test_a_failing_callback_does_not_stop_the_other_files(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    paths = [tmp_path / "a", tmp_path / "b"]
    for path in paths:
        write(path, SECRET)
    files = [SecretFile(path) for path in paths]
    seen: list[Path] = []

    def on_change(file: object) -> None:
        assert isinstance(file, SecretFile)
        seen.append(file.path)
        if file.path == paths[0]:
            raise RuntimeError("consumer bug")

    watcher = SecretWatcher(files, on_change=on_change, clock=FakeClock())
    for path in paths:
        write(path, ROTATED)
    with caplog.at_level(logging.ERROR):
        assert watcher.refresh_all() == files
    assert seen == paths
    assert "consumer bug" in caplog.text
    assert all(file.value == ROTATED for file in files)
