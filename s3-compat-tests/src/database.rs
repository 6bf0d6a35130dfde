//! Throwaway PostgreSQL databases for tests that run several Drives on one metadata
//! database. The server is `$DRIVE_TEST_POSTGRES` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`, trust auth); `clients/setup.sh` makes sure
//! one runs there.

use sqlx::Connection;
use sqlx::postgres::PgConnection;

/// A database created for one test, dropped by [`TestDatabase::drop`].
pub struct TestDatabase {
    admin: String,
    name: String,
    url: String,
}

fn admin_url() -> String {
    std::env::var("DRIVE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

impl TestDatabase {
    /// Creates an empty database with a unique name.
    pub async fn create() -> Self {
        let admin = admin_url();
        let name = crate::unique("drive_test").replace('-', "_");
        let mut conn = PgConnection::connect(&admin).await.unwrap_or_else(|e| {
            panic!("cannot reach PostgreSQL at {admin}: {e} (run clients/setup.sh)")
        });
        sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create the test database");
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
        let url = format!("{base}/{name}");
        Self { admin, name, url }
    }

    /// The database's URL, for `--database-url`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Drops the database (after the Drives using it stopped).
    pub async fn drop(self) {
        let mut conn = PgConnection::connect(&self.admin)
            .await
            .expect("reach PostgreSQL");
        sqlx::raw_sql(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&mut conn)
        .await
        .expect("drop the test database");
    }
}
