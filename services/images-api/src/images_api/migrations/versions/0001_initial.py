"""images-api schema: accounts, auth, sites, contents, images, tasks, logs, publications, outbox, inbox.

Revision ID: 0001
"""

from __future__ import annotations

from alembic import op

from writer_images.db import run_ddl
from writer_images.inbox import inbox_ddl
from writer_images.outbox import outbox_ddl

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TABLES = """
CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public;

CREATE TABLE accounts (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id bigint NOT NULL REFERENCES accounts ON DELETE CASCADE,
    email text NOT NULL,
    password_hash text NOT NULL,
    role text NOT NULL CHECK (role IN ('owner', 'editor', 'viewer')),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

CREATE TABLE refresh_tokens (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id bigint NOT NULL REFERENCES users ON DELETE CASCADE,
    family_id uuid NOT NULL,
    token_hash text NOT NULL UNIQUE,
    expires_at timestamptz NOT NULL,
    used_at timestamptz,
    revoked_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

-- In Postgres so that the limit holds across API instances.
CREATE TABLE login_attempts (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email text NOT NULL,
    ip text NOT NULL,
    succeeded boolean NOT NULL,
    attempted_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX login_attempts_email ON login_attempts (lower(email), attempted_at);
CREATE INDEX login_attempts_ip ON login_attempts (ip, attempted_at);

CREATE TABLE sites (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id bigint NOT NULL REFERENCES accounts ON DELETE CASCADE,
    name text NOT NULL,
    base_url text NOT NULL,
    username text NOT NULL,
    application_password_sealed text NOT NULL,
    site_key text NOT NULL UNIQUE,
    webhook_secret_sealed text NOT NULL,
    revision integer NOT NULL DEFAULT 1,
    deleted_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sites_account ON sites (account_id, id) WHERE deleted_at IS NULL;

CREATE TABLE sectors (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id bigint NOT NULL REFERENCES accounts ON DELETE CASCADE,
    site_id bigint NOT NULL REFERENCES sites ON DELETE CASCADE,
    name text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sectors_site ON sectors (account_id, site_id, id);

CREATE TABLE image_settings (
    account_id bigint PRIMARY KEY REFERENCES accounts ON DELETE CASCADE,
    provider text NOT NULL,
    model text NOT NULL,
    image_type text NOT NULL,
    max_in_article_images integer NOT NULL,
    image_format text NOT NULL,
    desktop_enabled boolean NOT NULL,
    mobile_enabled boolean NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE contents (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id bigint NOT NULL REFERENCES accounts ON DELETE CASCADE,
    site_id bigint REFERENCES sites ON DELETE SET NULL,
    sector_id bigint REFERENCES sectors ON DELETE SET NULL,
    title text NOT NULL,
    html text NOT NULL DEFAULT '',
    status text NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'published')),
    publish_at timestamptz,
    external_id text,
    external_url text,
    sync_status text,
    wp_status text,
    wp_modified_at timestamptz,
    publication_key text,
    -- maintained by the images trigger so the grouped view can filter and sort on it at 100k rows
    overall_status text NOT NULL DEFAULT 'pending',
    images_total integer NOT NULL DEFAULT 0,
    images_generated integer NOT NULL DEFAULT 0,
    images_failed integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX contents_title ON contents (account_id, lower(title), id);
CREATE INDEX contents_site_title ON contents (account_id, site_id, sector_id, lower(title), id);
CREATE INDEX contents_updated ON contents (account_id, updated_at, id);
CREATE INDEX contents_overall ON contents (account_id, overall_status, id);
-- covers the count of the common filter combinations with an index-only scan
CREATE INDEX contents_filters ON contents (account_id, site_id, overall_status, status, sync_status, sector_id);
CREATE INDEX contents_title_trgm ON contents USING gin (lower(title) public.gin_trgm_ops);
CREATE INDEX contents_external ON contents (site_id, external_id) WHERE external_id IS NOT NULL;
CREATE INDEX contents_publication_key ON contents (publication_key) WHERE publication_key IS NOT NULL;

CREATE TABLE images (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id bigint NOT NULL REFERENCES accounts ON DELETE CASCADE,
    content_id bigint NOT NULL REFERENCES contents ON DELETE CASCADE,
    image_type text NOT NULL CHECK (image_type IN ('featured', 'in_article')),
    position integer NOT NULL,
    prompt text NOT NULL DEFAULT '',
    alt_text text NOT NULL DEFAULT '',
    caption text,
    status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'queued', 'generating', 'generated', 'failed')),
    revision integer NOT NULL DEFAULT 1,
    requested_revision integer NOT NULL DEFAULT 0,
    blob_key text,
    sha256 text,
    content_type text,
    renditions jsonb NOT NULL DEFAULT '[]'::jsonb,
    provider text,
    model text,
    revised_prompt text,
    error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    generated_at timestamptz
);
CREATE INDEX images_content ON images (content_id, image_type, position);
CREATE INDEX images_status ON images (account_id, status, image_type, content_id);

-- overall_status: complete when every slot is generated; else failed when any failed; else partial
-- when one is generated; else pending (see domain/rules.py; a unit test keeps the two in step).
CREATE FUNCTION refresh_content_image_stats(target bigint) RETURNS void LANGUAGE sql AS $$
    UPDATE contents c SET
        images_total = s.total,
        images_generated = s.generated,
        images_failed = s.failed,
        overall_status = CASE
            WHEN s.total > 0 AND s.generated = s.total THEN 'complete'
            WHEN s.failed > 0 THEN 'failed'
            WHEN s.generated > 0 THEN 'partial'
            ELSE 'pending' END,
        updated_at = now()
    FROM (
        SELECT count(*) AS total,
               count(*) FILTER (WHERE status = 'generated') AS generated,
               count(*) FILTER (WHERE status = 'failed') AS failed
        FROM images WHERE content_id = target
    ) s
    WHERE c.id = target;
$$;

CREATE FUNCTION images_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM refresh_content_image_stats(OLD.content_id);
    ELSE
        PERFORM refresh_content_image_stats(NEW.content_id);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER images_stats AFTER INSERT OR DELETE OR UPDATE OF status, content_id ON images
    FOR EACH ROW EXECUTE FUNCTION images_changed();

-- Every change to what the grouped view shows tells the API processes (their page caches), at commit.
CREATE FUNCTION notify_account_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('images_api_changes', 'account:' || OLD.account_id);
    ELSE
        PERFORM pg_notify('images_api_changes', 'account:' || NEW.account_id);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER contents_changed AFTER INSERT OR UPDATE OR DELETE ON contents
    FOR EACH ROW EXECUTE FUNCTION notify_account_change();
CREATE TRIGGER images_changed_notify AFTER INSERT OR UPDATE OR DELETE ON images
    FOR EACH ROW EXECUTE FUNCTION notify_account_change();

CREATE TABLE tasks (
    id uuid PRIMARY KEY,
    account_id bigint NOT NULL REFERENCES accounts ON DELETE CASCADE,
    content_id bigint NOT NULL REFERENCES contents ON DELETE CASCADE,
    state text NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'completed', 'failed')),
    total integer NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
CREATE INDEX tasks_content ON tasks (account_id, content_id, created_at);

CREATE TABLE task_items (
    task_id uuid NOT NULL REFERENCES tasks ON DELETE CASCADE,
    image_id bigint NOT NULL REFERENCES images ON DELETE CASCADE,
    revision integer NOT NULL,
    state text NOT NULL DEFAULT 'queued'
        CHECK (state IN ('queued', 'generating', 'generated', 'failed', 'superseded')),
    stage text,
    percent integer NOT NULL DEFAULT 0,
    error text,
    attempts integer NOT NULL DEFAULT 1,
    deadline_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (task_id, image_id)
);
CREATE INDEX task_items_overdue ON task_items (deadline_at) WHERE state IN ('queued', 'generating');
CREATE INDEX task_items_image ON task_items (image_id, revision);

CREATE TABLE ai_logs (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    call_id uuid NOT NULL UNIQUE,
    account_id bigint NOT NULL REFERENCES accounts ON DELETE CASCADE,
    task_id uuid,
    image_id bigint,
    content_id bigint,
    function text NOT NULL,
    provider text NOT NULL,
    model text NOT NULL,
    prompt text NOT NULL,
    size text NOT NULL,
    latency_ms integer NOT NULL,
    images integer NOT NULL,
    input_tokens integer,
    output_tokens integer,
    estimated_cost_usd double precision NOT NULL,
    success boolean NOT NULL,
    error text,
    called_at timestamptz NOT NULL
);
CREATE INDEX ai_logs_account ON ai_logs (account_id, id DESC);

CREATE TABLE publications (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id bigint NOT NULL REFERENCES accounts ON DELETE CASCADE,
    content_id bigint NOT NULL REFERENCES contents ON DELETE CASCADE,
    site_id bigint NOT NULL,
    publication_key text NOT NULL,
    attempt_id uuid NOT NULL UNIQUE,
    action text NOT NULL CHECK (action IN ('publish', 'republish')),
    status text NOT NULL DEFAULT 'requested' CHECK (status IN ('requested', 'published', 'failed')),
    reason text,
    code text,
    external_id text,
    external_url text,
    request jsonb NOT NULL,
    rerequests integer NOT NULL DEFAULT 0,
    deadline_at timestamptz NOT NULL,
    requested_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
CREATE INDEX publications_content ON publications (account_id, content_id, id);
CREATE INDEX publications_overdue ON publications (deadline_at) WHERE status = 'requested';
"""


def upgrade(schema: str) -> None:
    run_ddl(op.execute, TABLES, outbox_ddl(), inbox_ddl())


def downgrade(schema: str) -> None:
    raise NotImplementedError("forward-only migrations")
