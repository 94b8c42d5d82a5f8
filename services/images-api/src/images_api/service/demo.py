"""Demo data: one account with an owner login, 2 sites × 2 sectors and ~60 contents in mixed states,
so that every endpoint can be tried at once. Idempotent: a second run changes nothing."""

from __future__ import annotations

import io
from dataclasses import dataclass

import asyncpg
from PIL import Image, ImageDraw

from images_api.domain import rules
from images_api.service import auth, contents, image_settings, sites
from writer_images.blobstore import FilesystemBlobStore, StoredBlob
from writer_images.outbox import Outbox
from writer_images.secrets import SecretBox

DEMO_ACCOUNT = "demo"
DEMO_EMAIL = "demo@example.com"
DEMO_PASSWORD = "demo-password"  # noqa: S105 - a published demo login, by design
CONTENTS = 60
_TOPICS = [
    "Lisbon",
    "Kyoto",
    "Patagonia",
    "Iceland",
    "Marrakesh",
    "Oaxaca",
    "Tasmania",
    "Dolomites",
    "Hanoi",
    "Cape Town",
    "Sourdough",
    "Ramen",
    "Tapas",
    "Curry",
    "Espresso",
    "Dumplings",
    "Paella",
    "Tacos",
    "Pho",
    "Gelato",
]
_PALETTE = [(231, 111, 81), (42, 157, 143), (38, 70, 83), (233, 196, 106), (244, 162, 97), (106, 76, 147)]


@dataclass(frozen=True)
class DemoResult:
    created: bool
    account_id: int
    email: str
    password: str
    contents: int


def render_demo_image(index: int, width: int = 640, height: int = 360) -> bytes:
    """A simple gradient, different per index: enough for the page to show pictures."""
    start = _PALETTE[index % len(_PALETTE)]
    end = _PALETTE[(index + 2) % len(_PALETTE)]
    image = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(image)
    for x in range(width):
        t = x / max(1, width - 1)
        draw.line(
            [(x, 0), (x, height)], fill=tuple(int(a + (b - a) * t) for a, b in zip(start, end, strict=True))
        )
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=80)
    return out.getvalue()


async def seed_demo(
    pool: asyncpg.Pool,
    outbox: Outbox,
    box: SecretBox,
    blobs: FilesystemBlobStore,
    *,
    email: str = DEMO_EMAIL,
    password: str = DEMO_PASSWORD,
) -> DemoResult:
    async with pool.acquire() as conn:
        existing = await conn.fetchrow("SELECT account_id FROM users WHERE lower(email) = lower($1)", email)
        if existing:
            count = await conn.fetchval(
                "SELECT count(*) FROM contents WHERE account_id = $1", existing["account_id"]
            )
            return DemoResult(False, existing["account_id"], email, password, count)
        pictures: list[StoredBlob] = [
            await blobs.put(render_demo_image(i), extension="jpg") for i in range(6)
        ]
        async with conn.transaction():
            await auth.create_user(conn, DEMO_ACCOUNT, email, password, "owner")
            account_id = await auth.ensure_account(conn, DEMO_ACCOUNT)
            await image_settings.save(conn, account_id, image_settings.ImageGenerationSettings())
            site_ids: list[tuple[int, str, list[int]]] = []
            for name, url in (
                ("Travel notes", "https://travel.example.com"),
                ("Food journal", "https://food.example.com"),
            ):
                site = await sites.create_site(
                    conn,
                    outbox,
                    box,
                    account_id,
                    name=name,
                    base_url=url,
                    username="editor",
                    application_password="demo demo demo demo",  # noqa: S106 - demo data
                    allow_private=False,
                )
                sectors = [
                    (await sites.create_sector(conn, account_id, site["id"], sector))["id"]
                    for sector in ("Guides", "Stories")
                ]
                site_ids.append((site["id"], url, sectors))
            for i in range(CONTENTS):
                await _demo_content(conn, account_id, i, site_ids, pictures)
    return DemoResult(True, account_id, email, password, CONTENTS)


async def _demo_content(
    conn: asyncpg.Connection,
    account_id: int,
    i: int,
    site_ids: list[tuple[int, str, list[int]]],
    pictures: list[StoredBlob],
) -> None:
    site_id, base_url, sectors = site_ids[i % 2]
    sector_id = sectors[(i // 2) % 2]
    topic = _TOPICS[i % len(_TOPICS)]
    title = f"{topic}: field notes #{i + 1}"
    html = "".join(
        f"<h2>{topic} — part {k}</h2><p>Notes on {topic.lower()}, part {k}.</p>" for k in (1, 2, 3)
    )
    status = "draft" if i % 3 == 0 else "published"
    content_id = await contents.insert_content(
        conn,
        account_id,
        title=title,
        html=html,
        status=status,
        site_id=site_id,
        sector_id=sector_id,
        publish_at=None,
        in_article_slots=3,
    )
    images = await conn.fetch("SELECT id FROM images WHERE content_id = $1 ORDER BY position", content_id)
    mix = i % 5  # 0 pending, 1 partial, 2 complete, 3 failed, 4 complete
    for n, image in enumerate(images):
        if mix in (2, 4) or (mix == 1 and n == 0) or (mix == 3 and n < 2):
            picture = pictures[(i + n) % len(pictures)]
            await conn.execute(
                """UPDATE images SET status = 'generated', blob_key = $2, sha256 = $3, content_type = 'image/jpeg',
                       renditions = $4, provider = 'local', model = 'local-v1', generated_at = now() WHERE id = $1""",
                image["id"],
                picture.key,
                picture.sha256,
                [
                    {
                        "name": "original",
                        "blob_key": picture.key,
                        "width": 640,
                        "height": 360,
                        "format": "jpg",
                        "content_type": "image/jpeg",
                        "bytes": picture.size,
                        "sha256": picture.sha256,
                    }
                ],
            )
        elif mix == 3 and n == 2:
            await conn.execute(
                "UPDATE images SET status = 'failed', error = 'provider refused the prompt (demo)' WHERE id = $1",
                image["id"],
            )
    if status == "published" and mix in (2, 4) and i % 2 == 0:
        post_id = str(1000 + i)
        await conn.execute(
            """UPDATE contents SET external_id = $2, external_url = $3, sync_status = 'published', wp_status = 'publish',
                   publication_key = $4 WHERE id = $1""",
            content_id,
            post_id,
            f"{base_url}/{topic.lower()}-field-notes-{i + 1}/",
            rules.publication_key(account_id, content_id, site_id),
        )
