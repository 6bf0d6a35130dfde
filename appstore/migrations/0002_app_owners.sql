-- How many app versions each user owns, changed in the same transactions as `apps`, so that
-- checking AppVersionLimit and taking a slot is one atomic step (a row lock on PostgreSQL,
-- the write lock on SQLite) even when one user imports several apps at once.
CREATE TABLE app_owners (
    subject TEXT PRIMARY KEY,
    apps BIGINT NOT NULL
);

INSERT INTO app_owners (subject, apps)
SELECT owner_subject, COUNT(*) FROM apps GROUP BY owner_subject;
