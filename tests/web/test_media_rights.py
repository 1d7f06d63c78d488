"""Every owner media route answers 404 to anyone but the owner, segments included."""

from __future__ import annotations

from pathlib import Path

from tests.support import LiveServer, add_user, api_login, bearer, wait_for_status


def test_only_the_owner_reaches_a_videos_media(live: LiveServer, clip: Path) -> None:
    add_user(live.settings, "ann@example.org")
    add_user(live.settings, "eve@example.org")
    with live.client() as client:
        ann = bearer(api_login(client, "ann@example.org")["access"])
        eve = bearer(api_login(client, "eve@example.org")["access"])
        video_id = client.post(
            "/api/videos", headers=ann, files={"file": ("c.mp4", clip.read_bytes())}
        ).json()["id"]
        video = wait_for_status(client, video_id, {"READY"}, headers=ann)
        rung = video["renditions"][0]["name"]  # type: ignore[index]
        base = f"/api/videos/{video_id}"
        urls = [
            base,
            f"{base}/thumbnail.jpg",
            f"{base}/download",
            f"{base}/hls/master.m3u8",
            f"{base}/hls/{rung}/index.m3u8",
            f"{base}/hls/{rung}/init.mp4",
            f"{base}/hls/{rung}/seg_00001.m4s",
            f"{base}/events",
        ]
        for url in urls:
            assert client.get(url, headers=ann).status_code == 200, url
        for url in urls:
            refused = client.get(url, headers=eve)
            assert refused.status_code == 404, url
            assert set(refused.json()) == {"detail"}
            assert client.get(url).status_code == 401, url
        assert client.patch(base, headers=eve, json={"title": "mine"}).status_code == 404
        assert client.delete(base, headers=eve).status_code == 404
        # Path tricks land on nothing.
        for trick in (f"{base}/hls/{rung}/..%2F..%2Fthumbnail.jpg", f"{base}/hls/x/index.m3u8"):
            assert client.get(trick, headers=ann).status_code == 404, trick
        assert client.get(base, headers=ann).json()["title"] == "c"
