-- The App Store's repository: apps (one row per name + version), tags, the instances that
-- keep an app from being deleted, and browser sign-in state. Times are unix milliseconds;
-- flags are 0/1 integers so that SQLite and PostgreSQL read them alike.
CREATE TABLE apps (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    -- 'importing' while its objects are written to Drive, then 'ready'.
    state TEXT NOT NULL,
    title TEXT NOT NULL,
    description TEXT NOT NULL,
    long_description TEXT NOT NULL,
    owner_subject TEXT NOT NULL,
    owner_name TEXT NOT NULL,
    visibility TEXT NOT NULL,
    lifecycle TEXT NOT NULL,
    runtime_version TEXT,
    -- The validated app.toml as JSON: runtime settings, env, files, link.
    manifest TEXT NOT NULL,
    bundle_key TEXT NOT NULL,
    bundle_size BIGINT NOT NULL,
    bundle_sha256 TEXT NOT NULL,
    -- JSON list of {key, content_type, size}: the icon first (or none), then screenshots.
    icon TEXT,
    screenshots TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (name, version)
);
CREATE INDEX apps_owner ON apps (owner_subject);
CREATE INDEX apps_state_created ON apps (state, created_at);

CREATE TABLE tags (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    title TEXT NOT NULL,
    color TEXT NOT NULL,
    description TEXT NOT NULL,
    is_category BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Roles of a tag: 'admin' roles may assign it (none: any full-access user), 'visitor' roles
-- let visitors see the ALL_USERS apps that carry it.
CREATE TABLE tag_roles (
    tag_id TEXT NOT NULL REFERENCES tags (id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    role TEXT NOT NULL,
    PRIMARY KEY (tag_id, kind, role)
);

CREATE TABLE app_tags (
    app_id TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    tag_id TEXT NOT NULL REFERENCES tags (id) ON DELETE CASCADE,
    PRIMARY KEY (app_id, tag_id)
);
CREATE INDEX app_tags_tag ON app_tags (tag_id);

-- Instances of apps; the scheduler owns the rows. An app with instances cannot be deleted.
CREATE TABLE instances (
    id TEXT PRIMARY KEY,
    app_id TEXT NOT NULL REFERENCES apps (id),
    owner_subject TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX instances_app ON instances (app_id);

-- Browser sessions: the id is stored hashed, the refresh token sealed with the session key.
CREATE TABLE web_sessions (
    id_hash TEXT PRIMARY KEY,
    principal TEXT NOT NULL,
    csrf_token TEXT NOT NULL,
    sealed_refresh_token TEXT,
    -- When the roles in `principal` are checked again (the access token's expiry).
    access_expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

-- Sign-ins under way: the state is stored hashed, the PKCE verifier sealed.
CREATE TABLE login_flows (
    state_hash TEXT PRIMARY KEY,
    sealed_verifier TEXT NOT NULL,
    nonce TEXT NOT NULL,
    return_to TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
