"""The Flickr source against the stand-in Flickr server on 127.0.0.1 (tests/support/flickr_server.py)."""

import email.utils
import itertools
import json
import logging
import time

import pytest
import requests

from anyres_data.sources.flickr import (
    FlickrClient,
    FlickrError,
    FlickrKeyError,
    FlickrSettings,
    RateLimiter,
    date_range,
    iter_flickr,
    iter_search_photos,
    photo_candidate,
    retry_after_seconds,
    search_params,
)
from tests.support.flickr_server import TEST_KEY, VOCABULARY, FlickrServer

EVERYTHING = VOCABULARY  # every corpus photo has at least one of these tags


@pytest.fixture(scope="module")
def server():
    with FlickrServer(n_photos=10_000, seed=1) as s:
        yield s


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("FLICKR_API_KEY", TEST_KEY)


def settings(server, **kw) -> FlickrSettings:
    kw.setdefault("api_calls_per_hour", 1e8)
    kw.setdefault("api_backoff", 0.01)
    return FlickrSettings(api_endpoint=server.endpoint, **kw)


def new_calls(server, since: int):
    return [c for c in server.calls[since:] if c.path.startswith("/services/rest")]


@pytest.fixture(scope="module")
def crawl(server):
    """Every photo of the corpus, through date-window splitting (10,000 matches, cap 4,000)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FLICKR_API_KEY", TEST_KEY)
        since = len(server.calls)
        candidates = list(iter_flickr(settings(server, tags=EVERYTHING)))
    return candidates, new_calls(server, since)


def test_date_window_splitting_yields_every_photo_exactly_once(server, crawl):
    candidates, calls = crawl
    ids = [c.source_id for c in candidates]
    assert len(ids) == len(set(ids)) == len(server.corpus) == 10_000
    assert set(ids) == set(server.by_id)
    uploads = [c.extra["flickr_date_upload"] for c in candidates]
    assert uploads == sorted(uploads)  # windows in time order, date-posted-asc inside each
    assert calls[0].total == 10_000 and calls[0].params["page"] == "1"  # over the cap: split
    paged = [c for c in calls if c.params["page"] != "1"]
    assert paged and all(c.total <= 4000 for c in paged)  # only windows under the cap are paged
    assert max(int(c.params["page"]) for c in calls) <= 8  # never past the 4,000th result (500 per page)
    assert all(c.params["per_page"] == "500" for c in calls)


def test_same_search_gives_the_same_stream(server, crawl):
    first = [c.source_id for c in crawl[0][:700]]
    again = [c.source_id for c in iter_flickr(settings(server, tags=EVERYTHING, max_photos=700))]
    assert again == first


def test_string_numbers_parsed_and_largest_size_chosen(server, crawl):
    candidates, _ = crawl
    photos = server.corpus
    assert any(p.string_numbers for p in photos) and any(not p.string_numbers for p in photos)
    assert any(not p.has_original for p in photos)
    fallbacks = 0
    for c in candidates:
        photo = server.by_id[c.source_id]
        sizes = photo.sizes()
        label = "o" if photo.has_original else max(sizes, key=lambda s: sizes[s][0] * sizes[s][1])
        fallbacks += label != "o"
        assert c.extra["flickr_size"] == label
        assert (c.width, c.height) == sizes[label]
        assert type(c.width) is int and type(c.extra["flickr_o_width"]) is int
        assert c.url == server.photo_url(photo, label)
        assert (c.license, c.owner, c.title) == (photo.license, photo.ownername, photo.title)
        assert c.extra["flickr_o_width"] == photo.width and c.extra["flickr_date_upload"] == photo.dateupload
        json.dumps(c.extra)
    assert fallbacks > 1000


def test_photo_urls_serve_jpegs_of_the_advertised_size(server, crawl):
    import pyvips

    small = [c for c in crawl[0] if c.width * c.height < 400_000][:3]
    for c in small:
        data = requests.get(c.url, timeout=10).content
        image = pyvips.Image.new_from_buffer(data, "")
        assert (image.width, image.height) == (c.width, c.height)
        assert data[:3] == b"\xff\xd8\xff"


def test_license_filter_is_sent_and_respected(server):
    licenses = ("4", "5", "9", "10")
    since = len(server.calls)
    got = list(iter_flickr(settings(server, query="church"), licenses=licenses))
    calls = new_calls(server, since)
    assert all(c.params["license"] == "4,5,9,10" and c.params["text"] == "church" for c in calls)
    expected = server.matching(text="church", licenses=licenses)
    assert [c.source_id for c in got] == [p.id for p in expected]
    assert {c.license for c in got} <= set(licenses) and len(got) > 100


def test_calls_name_the_project_and_keep_the_key_out_of_the_url(server):
    since = len(server.calls)
    list(iter_flickr(settings(server, query="bird", max_photos=1)))
    (call,) = new_calls(server, since)
    assert call.user_agent.startswith("anyres/") and call.path == "/services/rest/"
    assert call.params["api_key"] == TEST_KEY  # sent in the POST body: the URL path carries no query


def test_other_error_codes_are_clear_errors(server):
    with FlickrClient(TEST_KEY, endpoint=server.endpoint, calls_per_hour=1e8) as client:
        with pytest.raises(FlickrError, match=r'code 112: Method "flickr\.photos\.bogus" not found') as err:
            client.call("flickr.photos.bogus", {})
        assert err.value.code == 112
        with pytest.raises(FlickrError, match="code 3: Parameterless searches"):
            client.search({}, page=1, per_page=10)


def test_max_photos_stops_early(server):
    since = len(server.calls)
    got = list(iter_flickr(settings(server, query="bird", max_photos=7)))
    assert len(got) == 7 and len(new_calls(server, since)) == 1


def test_429_retry_after_is_honoured_as_a_date_and_in_seconds(server):
    server.fault("429", retry_after=email.utils.formatdate(time.time() + 2.5, usegmt=True))  # 1.5 to 2.5 s ahead
    server.fault("429", retry_after="1")
    since = len(server.calls)
    got = list(iter_flickr(settings(server, query="bird", max_photos=3)))
    calls = new_calls(server, since)
    assert [c.status for c in calls] == [429, 429, 200] and len(got) == 3
    assert calls[1].time - calls[0].time >= 1.4  # the HTTP date (whole seconds, so at least 1.5 s ahead)
    assert calls[2].time - calls[1].time >= 0.99  # Retry-After: 1 (the backoff alone would be 0.02 s)


def test_transient_faults_are_retried(server, caplog):
    clean = [c.source_id for c in iter_flickr(settings(server, query="lake"), licenses=("9",))]
    for kind in ("500", "reset", "truncated", "bad_json", "fail105", "503", "fail10"):
        server.fault(kind)
    since = len(server.calls)
    with caplog.at_level(logging.WARNING, logger="anyres_data.sources.flickr"):
        got = [
            c.source_id
            for c in iter_flickr(settings(server, query="lake", api_retries=7, api_backoff=0.002), licenses=("9",))
        ]
    assert got == clean
    faults = [c.fault for c in new_calls(server, since) if c.fault]
    assert faults == ["500", "reset", "truncated", "bad_json", "fail105", "503", "fail10"]
    assert "HTTP 500" in caplog.text and "code 105" in caplog.text and "invalid JSON" in caplog.text


def test_gives_up_after_the_configured_retries(server):
    server.fault("500", times=3)
    since = len(server.calls)
    with pytest.raises(FlickrError, match="failed 3 times, last: HTTP 500"):
        list(iter_flickr(settings(server, query="lake", api_retries=2)))
    assert len(new_calls(server, since)) == 3


def test_retry_after_parsing():
    assert retry_after_seconds("7") == 7.0
    now = time.time()
    assert retry_after_seconds(email.utils.formatdate(now + 30, usegmt=True), now=now) == pytest.approx(30, abs=1)
    assert retry_after_seconds(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


@pytest.mark.parametrize("bad_key", ["ffffffffffffffffffffffffffffffff", "not-a-key-at-all"])
def test_rejected_key_is_a_clear_error_that_does_not_leak_it(server, monkeypatch, caplog, bad_key):
    monkeypatch.setenv("FLICKR_API_KEY", bad_key)
    with caplog.at_level(logging.DEBUG), pytest.raises(FlickrKeyError) as err:
        list(iter_flickr(settings(server, query="church")))
    message = str(err.value)
    assert "code 100" in message and "Invalid API Key" in message and "FLICKR_API_KEY" in message
    assert bad_key not in message and bad_key not in caplog.text
    assert err.value.code == 100


def test_missing_key_says_how_to_set_it(server, monkeypatch, tmp_path):
    monkeypatch.delenv("FLICKR_API_KEY")
    with pytest.raises(FlickrKeyError, match="FLICKR_API_KEY"):
        list(iter_flickr(settings(server, query="church")))
    key_file = tmp_path / "flickr.key"
    key_file.write_text(TEST_KEY + "\n")
    got = list(iter_flickr(settings(server, query="church", api_key_file=key_file, max_photos=2)))
    assert len(got) == 2
    with pytest.raises(FlickrKeyError, match="cannot read the Flickr key file"):
        list(iter_flickr(settings(server, query="church", api_key_file=tmp_path / "missing.key")))


def test_key_never_appears_in_candidates_logs_or_reprs(server, caplog):
    for kind in ("reset", "500", "bad_json", "truncated"):
        server.fault(kind)
    s = settings(server, query="flower")
    with caplog.at_level(logging.DEBUG):
        got = list(iter_flickr(s, licenses=("4", "5")))
    assert got
    assert "retry" in caplog.text  # the faults were logged...
    assert TEST_KEY not in caplog.text  # ...without the key (also at DEBUG, urllib3 included)
    assert TEST_KEY not in repr(got) and TEST_KEY not in json.dumps([c.extra for c in got])
    assert TEST_KEY not in repr(s)
    with FlickrClient(TEST_KEY, endpoint=server.endpoint) as client:
        assert TEST_KEY not in repr(client)
        assert client.redact(f"url?api_key={TEST_KEY}&x=1") == "url?api_key=***&x=1"


def test_rate_limiter_spaces_calls(server):
    since = len(server.calls)
    got = list(iter_flickr(settings(server, query="bridge", per_page=25, api_calls_per_hour=36_000), licenses=("4",)))
    calls = new_calls(server, since)
    assert len(calls) >= 5 and len(got) > 40
    gaps = [b.time - a.time for a, b in itertools.pairwise(calls)]
    assert min(gaps) >= 0.1 - 0.02  # 3600 / 36,000 s apart, less the jitter between send and receipt


def test_rate_limiter_books_slots_without_sleeping_when_idle():
    now = [100.0]
    slept = []

    def sleep(s):
        slept.append(s)
        now[0] += s

    limiter = RateLimiter(3600, clock=lambda: now[0], sleep=sleep)  # one call per second
    limiter.wait()
    limiter.wait()
    now[0] += 0.25
    limiter.wait()
    now[0] += 5.0
    limiter.wait()
    assert slept == [1.0, 0.75]
    with pytest.raises(ValueError, match="calls per hour"):
        RateLimiter(0)


def test_a_second_with_more_than_the_cap_yields_what_is_reachable(caplog):
    with FlickrServer(n_photos=600, seed=3, cap=100, burst=150) as small:
        client = FlickrClient(TEST_KEY, endpoint=small.endpoint, calls_per_hour=1e8)
        params = search_params(FlickrSettings(tags=EVERYTHING))
        with client, caplog.at_level(logging.WARNING):
            photos = list(iter_search_photos(client, params, start=0, end=2_000_000_000, per_page=50, cap=100))
    ids = {p["id"] for p in photos}
    assert len(ids) == 600 - 50  # the 150 uploaded in one second: only 100 reachable
    assert "150 photos were uploaded in the same second" in caplog.text


def test_stand_in_caps_results_like_flickr(server):
    form = {"method": "flickr.photos.search", "api_key": TEST_KEY, "format": "json", "nojsoncallback": "1"}
    form |= {"tags": ",".join(EVERYTHING), "per_page": "500"}
    last = requests.post(server.endpoint, data=form | {"page": "8"}, timeout=10).json()["photos"]
    beyond = requests.post(server.endpoint, data=form | {"page": "9"}, timeout=10).json()["photos"]
    assert last["total"] == "10000" and last["pages"] == 20
    assert [p["id"] for p in beyond["photo"]] == [p["id"] for p in last["photo"]]  # repeats the last page


def test_bad_settings_are_clear_errors():
    with pytest.raises(ValueError, match="needs --query, --tags or --bbox"):
        search_params(FlickrSettings())
    with pytest.raises(ValueError, match="--per-page"):
        search_params(FlickrSettings(query="x", per_page=501))
    with pytest.raises(ValueError, match="--api-calls-per-hour"):
        search_params(FlickrSettings(query="x", api_calls_per_hour=0))
    with pytest.raises(ValueError, match="--bbox"):
        search_params(FlickrSettings(query="x", bbox="1,2,3"))
    with pytest.raises(ValueError, match="not a date"):
        date_range(FlickrSettings(query="x", min_upload_date="last year"))
    with pytest.raises(ValueError, match="before"):
        date_range(FlickrSettings(query="x", min_upload_date="2020-01-01", max_upload_date="2019-01-01"))
    assert date_range(FlickrSettings(min_upload_date="2020-01-01", max_upload_date="1600000000")) == (
        1577836800,
        1600000000,
    )
    assert date_range(FlickrSettings(min_upload_date="0"), now=86400 * 3 + 5) == (0, 86400 * 3)


def test_photo_without_any_url_is_skipped():
    assert photo_candidate({"id": "1", "owner": "x@N01", "license": "4"}) is None
    c = photo_candidate({"id": "2", "url_z": "https://x/2_z.jpg", "width_z": "640", "height_z": 480, "license": 4})
    assert (c.url, c.width, c.height, c.license, c.extra["flickr_size"]) == ("https://x/2_z.jpg", 640, 480, "4", "z")
