"""Issue 19 (hardening), the smaller items about input from outside: config files, account ids,
`--check-config` output, and what unauthenticated clients can make the web server log.

Each test failed before its fix.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from exporter.check_config import summarize
from exporter.config import ConfigError, parse_config
from tests.conftest import SimServer, StartExporter, config_for

ROOT = Path(__file__).resolve().parent.parent


def account_config(account_id: str, container_name: str = "c") -> str:
    return textwrap.dedent(
        f"""
        accounts:
          - account_id: {account_id}
            username: ops@acme.example
            password: pw
            containers: [{{id: c1, name: {container_name}}}]
        """
    )


@pytest.mark.parametrize("account_id", ['".."', '"."', "../acme", '"-acme"', '"acme\\u202e"'])
def test_an_account_id_that_is_not_one_is_a_config_error(account_id: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(account_config(account_id))
    assert str(caught.value).startswith("accounts[0].account_id: must")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("account_id", ["acme-AB12CD", "boomi_test.1", "A1"])
def test_real_account_ids_are_accepted(account_id: str) -> None:
    assert parse_config(account_config(account_id)).accounts[0].account_id == account_id


def test_check_config_escapes_newlines_and_bidi_overrides_in_names() -> None:
    config = parse_config(account_config("acme", '"prod\\n  account evil\\u202eLIVE"'))
    summary = summarize(config)
    assert "\u202e" not in summary
    (line,) = [line for line in summary.splitlines() if "c1" in line]
    assert line == "      c1 (prod\\n  account evil\\u202eLIVE)"
    assert not any(line.strip() == "account evil" for line in summary.splitlines())


def _limited_memory() -> None:
    # Before the bound the read of /dev/zero grew without end: fail it with MemoryError
    # instead of taking the machine's memory.
    resource.setrlimit(resource.RLIMIT_AS, (2 * 2**30, 2 * 2**30))


def test_a_config_of_endless_size_is_refused_quickly() -> None:
    process = subprocess.run(
        [sys.executable, "-m", "exporter", "--check-config", "--config", "/dev/zero"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,  # a generous process-level bound; the refusal is immediate
        cwd=ROOT,
        preexec_fn=_limited_memory,
    )
    assert process.returncode == 2, process.stderr
    assert process.stderr.strip() == (
        "boomi-listener-exporter: bad configuration: cannot read config file /dev/zero:"
        " larger than 8 MiB"
    )


# -- unauthenticated clients and the log -------------------------------------------------------

MALFORMED = [
    b"GARBAGE / HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    b"GET /\x00 HTTP/1.1\r\n\r\n",
]


async def test_malformed_requests_are_logged_once_per_kind_without_a_traceback(
    sim_server: SimServer, start_exporter: StartExporter, caplog: pytest.LogCaptureFixture
) -> None:
    running = await start_exporter(config_for(sim_server))
    port = int(running.url.rsplit(":", 1)[1])
    caplog.set_level(logging.DEBUG)
    for payload in MALFORMED * 5:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(payload)
        await writer.drain()
        assert (await reader.read(100)).startswith(b"HTTP/1.0 400")
        writer.close()
        await writer.wait_closed()
    server_records = [r for r in caplog.records if r.name.startswith("aiohttp")]
    assert not [r for r in server_records if r.exc_info or "Traceback" in r.getMessage()]
    messages = [r.getMessage() for r in server_records]
    assert len(messages) == len(set(messages)) <= len(MALFORMED)  # at most once per kind
    assert all("refused a malformed request" in message for message in messages)
    # The server still serves.
    assert "boomi_container_up" in await running.text()


CHILD = """
import asyncio, resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (48, 48))
from exporter.cli import setup_logging
from exporter.metrics import ExporterMetrics
from exporter.state import SnapshotStore
from exporter.web import create_app, start_server
setup_logging("info", "text")

async def main():
    store = SnapshotStore()
    runner, port = await start_server(create_app(store, ExporterMetrics(store)), "127.0.0.1", 0)
    print(port, flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


async def test_running_out_of_file_descriptors_is_logged_once_without_a_traceback() -> None:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert child.stdout is not None and child.stderr is not None
    port = int(await asyncio.wait_for(child.stdout.readline(), 30))
    connections = []
    try:
        # More connections than the child has descriptors; asyncio retries accept() every
        # second, so holding them for 3.5 s makes it fail several times.
        for _ in range(80):
            connections.append(await asyncio.open_connection("127.0.0.1", port))
        await asyncio.sleep(3.5)
    finally:
        for _, writer in connections:
            writer.close()
        child.terminate()
        _, stderr_bytes = await child.communicate()
    stderr = stderr_bytes.decode()
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if "accept" in line]
    assert len(lines) == 1, stderr
    assert "cannot accept connections (Too many open files)" in lines[0]
