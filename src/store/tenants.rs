//! Tenants and API keys. Keys are shown once and stored as SHA-256 hashes.

use crate::domain::{ids, now_ms};
use sqlx::{AnyConnection, Row};

pub enum AdminJob {
    CreateTenant { name: String },
    CreateApiKey { tenant: String, key_hash: String },
}

pub enum AdminDone {
    Tenant { id: String, created: bool },
    ApiKey { id: String },
    UnknownTenant,
}

pub async fn run(conn: &mut AnyConnection, job: &AdminJob) -> Result<AdminDone, sqlx::Error> {
    match job {
        AdminJob::CreateTenant { name } => {
            if let Some(r) = sqlx::query("SELECT id FROM tenants WHERE name = $1")
                .bind(name)
                .fetch_optional(&mut *conn)
                .await?
            {
                return Ok(AdminDone::Tenant {
                    id: r.try_get("id")?,
                    created: false,
                });
            }
            // Replicas starting together on one database all ensure `default`: the loser of
            // the race takes the winner's row instead of failing on the unique name.
            let id = ids::new_id(ids::IdKind::Tenant);
            let inserted = sqlx::query(
                "INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
            )
            .bind(&id)
            .bind(name)
            .bind(now_ms())
            .execute(&mut *conn)
            .await?
            .rows_affected();
            if inserted == 0 {
                let r = sqlx::query("SELECT id FROM tenants WHERE name = $1")
                    .bind(name)
                    .fetch_one(&mut *conn)
                    .await?;
                return Ok(AdminDone::Tenant {
                    id: r.try_get("id")?,
                    created: false,
                });
            }
            Ok(AdminDone::Tenant { id, created: true })
        }
        AdminJob::CreateApiKey { tenant, key_hash } => {
            let Some(r) = sqlx::query("SELECT id FROM tenants WHERE name = $1 OR id = $2")
                .bind(tenant)
                .bind(tenant)
                .fetch_optional(&mut *conn)
                .await?
            else {
                return Ok(AdminDone::UnknownTenant);
            };
            let tenant_id: String = r.try_get("id")?;
            let id = ids::new_id(ids::IdKind::ApiKey);
            sqlx::query("INSERT INTO api_keys (id, tenant_id, key_hash, created_at) VALUES ($1, $2, $3, $4)")
                .bind(&id)
                .bind(&tenant_id)
                .bind(key_hash)
                .bind(now_ms())
                .execute(&mut *conn)
                .await?;
            Ok(AdminDone::ApiKey { id })
        }
    }
}
