"""fetch(): real HTTP against a loopback server, local reads only for local sources."""

from __future__ import annotations

import gzip
import os
import time
from pathlib import Path

import pytest

from anyres_data.build.fetch import USER_AGENT, FetchSettings, fetch, fetch_data, new_session
from anyres_data.payload import SpilledFile
from anyres_data.rejects import Rejected
from anyres_data.sources.demo import demo_bytes, demo_url
from tests.support.guard import finishes
from tests.support.http_server import ImageServer
from tests.support.photos import encode, structured_image

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
    assert reason_of(url, FetchSettings(timeout=0.3, first_byte_timeout=0.3, retries=0, backoff=0.0)) == "timeout"
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


# ---------------------------------------------------------------------------------------------- hostile servers


@pytest.mark.parametrize("head", [False, True], ids=["body", "status-line-and-headers"])
def test_a_server_that_drips_one_byte_at_a_time_ends_at_the_deadline(server, head):
    # 10 bytes a second never trip a 0.5 s read timeout; the body would take 100 s, the deadline is 1 s
    url = server.add(f"/drip-{head}.jpg", BODY[:1000], drip=0.1, drip_head=head)
    settings = FetchSettings(timeout=0.5, first_byte_timeout=0.5, deadline=1.0, retries=2, backoff=0.05)
    with pytest.raises(Rejected) as info:
        finishes(fetch, url, settings, session=new_session(1))
    assert info.value.reason == "timeout" and "deadline" in info.value.message


def test_the_first_byte_may_take_longer_than_the_gap_between_chunks(server):
    url = server.add("/thinks.jpg", BODY, delay=0.6)  # a server that renders before it answers
    assert fetch(url, FetchSettings(timeout=0.2, first_byte_timeout=10.0, retries=0)) == BODY
    assert server.hits["/thinks.jpg"] == 1  # not timed out and asked again
    url = server.add("/stalls.jpg", BODY * 4, chunk_delay=1.0)  # ... but a stalled body still times out
    assert reason_of(url, FetchSettings(timeout=0.3, first_byte_timeout=10.0, retries=0, max_bytes=10**6)) == "timeout"


@pytest.mark.parametrize("target", ["file:///etc/hostname", "ftp://127.0.0.1/a.jpg"])
def test_a_redirect_to_another_scheme_is_unsupported_scheme(server, target):
    url = server.add(f"/redirect-{target[:3]}.jpg", b"", status=302, headers={"Location": target})
    with pytest.raises(Rejected) as info:
        fetch(url, FAST)
    assert info.value.reason == "unsupported_scheme" and target[:3] in info.value.message


def test_large_downloads_go_to_a_temporary_file_and_bombs_stop_early(server, tmp_path):
    jpeg = encode(structured_image(300, 200, seed=1), "JPEG")
    settings = FetchSettings(retries=0, spill_bytes=1000)
    data = fetch_data(server.add("/spilled.jpg", jpeg), settings, spill_dir=str(tmp_path))
    assert isinstance(data, SpilledFile) and Path(data.path).parent == tmp_path
    assert Path(data.path).read_bytes() == jpeg and data.size == len(jpeg)
    small = fetch_data(server.add("/small.jpg", jpeg[:500]), settings, spill_dir=str(tmp_path))
    assert small == jpeg[:500]
    # 64 MiB of zeros in 64 KB of gzip: no image format in its first bytes, so the rest is never inflated
    bomb = gzip.compress(bytes(64 * 2**20), compresslevel=1)
    url = server.add("/bomb.jpg", bomb, headers={"Content-Encoding": "gzip"})
    with pytest.raises(Rejected) as info:
        fetch_data(url, settings, spill_dir=str(tmp_path), images_only=True)
    assert info.value.reason == "not_an_image" and "binary data" in info.value.message
    # one that starts like a JPEG streams to disk and stops at the size cap; no file is left behind
    bomb = gzip.compress(jpeg[:4] + bytes(64 * 2**20), compresslevel=1)
    url = server.add("/jpeg-bomb.jpg", bomb, headers={"Content-Encoding": "gzip"})
    capped = FetchSettings(retries=0, spill_bytes=1000, max_bytes=8 * 2**20)
    with pytest.raises(Rejected) as info:
        fetch_data(url, capped, spill_dir=str(tmp_path), images_only=True)
    assert info.value.reason == "too_large"
    assert [p.name for p in tmp_path.iterdir()] == [Path(data.path).name]


def test_a_named_pipe_is_a_read_error_not_a_hang(tmp_path):
    pipe = tmp_path / "pipe.jpg"
    os.mkfifo(pipe)
    with pytest.raises(Rejected) as info:
        finishes(fetch, str(pipe), FAST, local=True)
    assert info.value.reason == "read_error" and "named pipe" in info.value.message


def test_local_paths_are_never_read_as_url_chains(tmp_path, monkeypatch):
    (tmp_path / "a::b.jpg").write_bytes(b"the file a::b.jpg")
    monkeypatch.chdir(tmp_path)
    Path("b.jpg").write_bytes(b"b.jpg in the working directory")
    for url in (str(tmp_path / "a::b.jpg"), f"file://{tmp_path}/a::b.jpg"):
        assert fetch(url, FAST, local=True) == b"the file a::b.jpg"
