-- App instances whose credentials Drive refuses: the App Store revokes an instance when it
-- terminates, and every replica refuses its broker tokens and the session credentials
-- minted from them. Revocations are permanent; revoked_at is Unix seconds.
CREATE TABLE revoked_instances (
    instance_id TEXT PRIMARY KEY,
    revoked_at BIGINT NOT NULL
);
