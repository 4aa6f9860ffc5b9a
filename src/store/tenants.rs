//! Tenants and API keys. Keys are shown once and stored as SHA-256 hashes.

use super::db::{query, Db};
use crate::domain::{ids, now_ms};
use sqlx::Row;

pub enum AdminJob {
    CreateTenant {
        name: String,
    },
    CreateApiKey {
        tenant: String,
        key_hash: String,
    },
    /// Revokes a key given its id (`key_…`) or its hash.
    RevokeApiKey {
        id_or_hash: String,
    },
}

pub enum AdminDone {
    Tenant {
        id: String,
        created: bool,
    },
    ApiKey {
        id: String,
    },
    UnknownTenant,
    /// How many live keys were revoked (0: no such live key).
    Revoked(u64),
}

pub async fn run(conn: &mut Db<'_>, job: &AdminJob) -> Result<AdminDone, sqlx::Error> {
    match job {
        AdminJob::CreateTenant { name } => {
            if let Some(r) = query("SELECT id FROM tenants WHERE name = $1")
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
            let inserted = query(
                "INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
            )
            .bind(&id)
            .bind(name)
            .bind(now_ms())
            .execute(&mut *conn)
            .await?
            .rows_affected();
            if inserted == 0 {
                let r = query("SELECT id FROM tenants WHERE name = $1")
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
            let Some(r) = query("SELECT id FROM tenants WHERE name = $1 OR id = $2")
                .bind(tenant)
                .bind(tenant)
                .fetch_optional(&mut *conn)
                .await?
            else {
                return Ok(AdminDone::UnknownTenant);
            };
            let tenant_id: String = r.try_get("id")?;
            let id = ids::new_id(ids::IdKind::ApiKey);
            query("INSERT INTO api_keys (id, tenant_id, key_hash, created_at) VALUES ($1, $2, $3, $4)")
                .bind(&id)
                .bind(&tenant_id)
                .bind(key_hash)
                .bind(now_ms())
                .execute(&mut *conn)
                .await?;
            Ok(AdminDone::ApiKey { id })
        }
        AdminJob::RevokeApiKey { id_or_hash } => {
            let n = query(
                "UPDATE api_keys SET revoked_at = $1 WHERE (id = $2 OR key_hash = $3) AND revoked_at IS NULL",
            )
            .bind(now_ms())
            .bind(id_or_hash)
            .bind(id_or_hash)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            Ok(AdminDone::Revoked(n))
        }
    }
}
