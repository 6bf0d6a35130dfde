-- File browser sessions ended by signing out: their sealed cookies are refused on every
-- replica until they would have expired anyway. ended_at is Unix seconds; rows older than
-- the longest session are removed when a new one is added.
CREATE TABLE ended_ui_sessions (
    session_id TEXT PRIMARY KEY,
    ended_at BIGINT NOT NULL
);
