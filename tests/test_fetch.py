"""fetch(): real HTTP against a loopback server, local reads only for local sources."""

from __future__ import annotations

import time

import pytest

from anyres_data.fetch import USER_AGENT, FetchSettings, fetch, new_session
from anyres_data.rejects import Rejected
from anyres_data.sources.demo import demo_bytes, demo_url
from tests.support.http_server import ImageServer

FAST = FetchSettings(timeout=0.5, deadline=10.0, retries=2, backoff=0.05, max_bytes=100_000)
BODY = bytes(range(256)) * 200  # 51,200 bytes


@pytest.fixture(scope="module")
def server():
    with ImageServer() as s:
        yield s


def reason_of(url: str, settings: FetchSettings = FAST, **kw) -> str:
    with pytest.raises(Rejected) as info:
        fetch(url, settings, **kw)
    return info.value.reason


def test_returns_the_bytes_exactly_and_names_the_project(server):
    url = server.add("/ok.jpg", BODY)
    with new_session(2) as session:
        assert fetch(url, FAST, session=session) == BODY
    assert server.user_agents[-1] == USER_AGENT and USER_AGENT.startswith("anyres-data/")


def test_http_errors_are_named_by_status_and_not_retried(server):
    url = server.add("/gone.jpg", b"no", status=404, content_type="text/html")
    assert reason_of(url) == "http_404"
    assert server.hits["/gone.jpg"] == 1
    assert reason_of(server.add("/forbidden.jpg", b"no", status=403)) == "http_403"


def test_503_with_retry_after_is_retried_until_it_succeeds(server):
    url = server.add("/busy.jpg", BODY, fail_first=2, retry_after="0")
    assert fetch(url, FAST) == BODY
    assert server.hits["/busy.jpg"] == 3


def test_5xx_that_persists_becomes_a_rejection_after_the_retries(server):
    url = server.add("/broken.jpg", b"oops", status=500)
    assert reason_of(url) == "http_500"
    assert server.hits["/broken.jpg"] == FAST.retries + 1


def test_a_server_that_does_not_answer_times_out(server):
    url = server.add("/slow.jpg", BODY, delay=2.0)
    start = time.monotonic()
    assert reason_of(url, FetchSettings(timeout=0.3, retries=0, backoff=0.0)) == "timeout"
    assert time.monotonic() - start < 1.9


def test_a_body_that_stalls_times_out(server):
    url = server.add("/drip.jpg", BODY * 4, chunk_delay=1.0)
    assert reason_of(url, FetchSettings(timeout=0.3, retries=0, max_bytes=10**6)) == "timeout"


def test_size_cap_from_content_length_and_while_streaming(server):
    big = BODY * 4  # 204,800 bytes > 100,000
    assert reason_of(server.add("/big.jpg", big)) == "too_large"
    assert reason_of(server.add("/big-stream.jpg", big, content_length=False)) == "too_large"
    assert fetch(server.add("/small-stream.jpg", BODY, content_length=False), FAST) == BODY


def test_a_dropped_connection_is_retried_then_named(server):
    url = server.add("/dropped.jpg", BODY, drop_after=1000)
    assert reason_of(url) == "connection_error"
    assert server.hits["/dropped.jpg"] == FAST.retries + 1


def test_connection_refused_is_a_connection_error():
    assert reason_of("http://127.0.0.1:9/x.jpg", FetchSettings(timeout=0.5, retries=0)) == "connection_error"


def test_web_sources_cannot_read_local_files(tmp_path):
    path = tmp_path / "secret.jpg"
    path.write_bytes(BODY)
    for url in (str(path), f"file://{path}", "ftp://example.com/a.jpg", "demo://0/64x64.jpg"):
        assert reason_of(url) == "unsupported_scheme"


def test_local_sources_read_paths_file_urls_and_demo_urls(tmp_path):
    path = tmp_path / "a.jpg"
    path.write_bytes(BODY)
    assert fetch(str(path), FAST, local=True) == BODY
    assert fetch(f"file://{path}", FAST, local=True) == BODY
    url = demo_url(3, 64, 48, "png")
    assert fetch(url, FAST, local=True) == demo_bytes(url)
    assert reason_of(str(tmp_path / "missing.jpg"), local=True) == "read_error"
    path.write_bytes(BODY * 4)
    assert reason_of(str(path), local=True) == "too_large"


def test_the_server_serves_a_directory_too(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.png").write_bytes(BODY)
    with ImageServer(directory=tmp_path) as server:
        assert fetch(server.url("/sub/a.png"), FAST) == BODY
        assert reason_of(server.url("/sub/missing.png")) == "http_404"
        assert reason_of(server.url("/../etc/hostname")) == "http_404"
