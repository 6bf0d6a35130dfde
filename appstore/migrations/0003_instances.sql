-- Instances of apps, owned by the scheduler: who runs them, who may open them, and the hash
-- of the instance token their launcher and broker use. Whether one is running is the
-- runtime's to say; `suspended` is only what its owner asked for.
DROP TABLE instances;
CREATE TABLE instances (
    id TEXT PRIMARY KEY,
    app_id TEXT NOT NULL REFERENCES apps (id),
    owner_subject TEXT NOT NULL,
    owner_name TEXT NOT NULL,
    -- The owner's principal as JSON when the instance was started: what the broker vouches for.
    principal TEXT NOT NULL,
    visibility TEXT NOT NULL,
    routing_mode TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    suspended BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX instances_app ON instances (app_id);
CREATE INDEX instances_owner ON instances (owner_subject);

-- How many instances each user has, taken in the same transaction as the row, so the
-- instance limits hold when one user starts several at once.
ALTER TABLE app_owners ADD COLUMN instances BIGINT NOT NULL DEFAULT 0;

-- Terminated instances whose revocation Drive has not confirmed yet; retried until it does.
CREATE TABLE pending_revocations (
    instance_id TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL
);
