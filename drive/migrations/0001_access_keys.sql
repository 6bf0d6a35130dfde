-- Long-term access keys users create for themselves. The secret is sealed with the
-- server key (shared_identity::Sealer); the principal is the creator as they were
-- when the key was made (JSON).
CREATE TABLE access_keys (
    access_key_id TEXT PRIMARY KEY,
    subject TEXT NOT NULL,
    principal TEXT NOT NULL,
    sealed_secret TEXT NOT NULL,
    description TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

CREATE INDEX access_keys_subject ON access_keys (subject);
