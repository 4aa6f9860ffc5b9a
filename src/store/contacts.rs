//! Contacts and identities: create, read, retire a recycled number, merge and unmerge.
//! A merge moves the merged contact's live identities to the survivor and records exactly
//! which ones, so an unmerge puts them back; nothing is deleted.

use super::db::Db;
use super::{json_col, Store, StoreError};
use crate::domain::ids::{self, IdKind};
use crate::domain::{now_ms, rfc3339};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Connection, Row};
use utoipa::ToSchema;

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct IdentityView {
    pub id: String,
    /// `tel:+E164`, `mailto:…`, `whatsapp:…`, `telegram:…`.
    pub address: String,
    pub valid_from: String,
    /// Set when the identity was retired (a recycled number).
    pub valid_to: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ContactView {
    pub id: String,
    pub name: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    /// Set while this contact is merged into another.
    pub merged_into: Option<String>,
    pub identities: Vec<IdentityView>,
    pub created_at: String,
}

/// Why a contact write did not happen.
pub enum ContactOutcome<T> {
    Done(T),
    NotFound,
    /// An address already belongs to another live identity.
    AddressTaken {
        address: String,
        contact_id: String,
    },
    /// Merge/unmerge preconditions (self-merge, nothing to unmerge).
    Invalid(String),
}

fn identity(r: &AnyRow) -> Result<IdentityView, sqlx::Error> {
    Ok(IdentityView {
        id: r.try_get("id")?,
        address: r.try_get("address")?,
        valid_from: rfc3339(r.try_get("valid_from")?),
        valid_to: r.try_get::<Option<i64>, _>("valid_to")?.map(rfc3339),
    })
}

async fn load(
    conn: &mut AnyConnection,
    tenant_id: &str,
    id: &str,
) -> Result<Option<ContactView>, sqlx::Error> {
    let Some(r) = sqlx::query("SELECT id, name, metadata, merged_into, created_at FROM contacts WHERE id = $1 AND tenant_id = $2")
        .bind(id)
        .bind(tenant_id)
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(None);
    };
    let rows = sqlx::query("SELECT id, address, valid_from, valid_to FROM identities WHERE contact_id = $1 ORDER BY created_at, id")
        .bind(id)
        .fetch_all(&mut *conn)
        .await?;
    Ok(Some(ContactView {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        metadata: json_col(&r, "metadata"),
        merged_into: r.try_get("merged_into")?,
        identities: rows.iter().map(identity).collect::<Result<_, _>>()?,
        created_at: rfc3339(r.try_get("created_at")?),
    }))
}

async fn live_owner(
    conn: &mut AnyConnection,
    tenant_id: &str,
    address: &str,
) -> Result<Option<String>, sqlx::Error> {
    crate::threading::contacts::owner(&mut Db::Any(&mut *conn), tenant_id, address).await
}

async fn insert_identity(
    conn: &mut AnyConnection,
    tenant_id: &str,
    contact_id: &str,
    address: &str,
    now: i64,
) -> Result<String, sqlx::Error> {
    let id = ids::new_id(IdKind::Identity);
    sqlx::query("INSERT INTO identities (id, tenant_id, contact_id, address, valid_from, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(&id)
        .bind(tenant_id)
        .bind(contact_id)
        .bind(address)
        .bind(now)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    Ok(id)
}

impl Store {
    pub async fn contact(
        &self,
        tenant_id: &str,
        id: &str,
    ) -> Result<Option<ContactView>, StoreError> {
        let mut conn = self.reader().acquire().await?;
        Ok(load(&mut conn, tenant_id, id).await?)
    }

    pub async fn contacts(
        &self,
        tenant_id: &str,
        cursor: Option<&str>,
        limit: i64,
    ) -> Result<(Vec<ContactView>, Option<String>), StoreError> {
        let sql = format!("SELECT id FROM contacts WHERE tenant_id = $1 AND ($2 = '' OR id < $3) ORDER BY id DESC LIMIT {}", limit + 1);
        let k = cursor.unwrap_or_default();
        let mut conn = self.reader().acquire().await?;
        let rows = sqlx::query(&sql)
            .bind(tenant_id)
            .bind(k)
            .bind(k)
            .fetch_all(&mut *conn)
            .await?;
        let mut out = Vec::new();
        for r in rows.iter().take(usize::try_from(limit).unwrap_or(50)) {
            let id: String = r.try_get("id")?;
            if let Some(c) = load(&mut conn, tenant_id, &id).await? {
                out.push(c);
            }
        }
        let next = if rows.len() > out.len() {
            out.last().map(|c| c.id.clone())
        } else {
            None
        };
        Ok((out, next))
    }

    /// Creates a contact with normalized identities.
    pub async fn create_contact(
        &self,
        tenant_id: &str,
        name: Option<&str>,
        metadata: Option<&serde_json::Value>,
        addresses: &[String],
    ) -> Result<ContactOutcome<ContactView>, StoreError> {
        let mut conn = self.write_conn().await?;
        let mut tx = conn.begin().await?;
        for a in addresses {
            if let Some(owner) = live_owner(&mut tx, tenant_id, a).await? {
                return Ok(ContactOutcome::AddressTaken {
                    address: a.clone(),
                    contact_id: owner,
                });
            }
        }
        let id = ids::new_id(IdKind::Contact);
        let now = now_ms();
        sqlx::query("INSERT INTO contacts (id, tenant_id, name, metadata, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(&id)
            .bind(tenant_id)
            .bind(name)
            .bind(metadata.map(|m| m.to_string()))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        for a in addresses {
            insert_identity(&mut tx, tenant_id, &id, a, now).await?;
        }
        let view = load(&mut tx, tenant_id, &id).await?;
        tx.commit().await?;
        view.map(ContactOutcome::Done)
            .ok_or_else(|| StoreError::Corrupt("contact vanished".into()))
    }

    /// Adds a live identity to a contact.
    pub async fn add_identity(
        &self,
        tenant_id: &str,
        contact_id: &str,
        address: &str,
    ) -> Result<ContactOutcome<IdentityView>, StoreError> {
        let mut conn = self.write_conn().await?;
        let mut tx = conn.begin().await?;
        if load(&mut tx, tenant_id, contact_id).await?.is_none() {
            return Ok(ContactOutcome::NotFound);
        }
        if let Some(owner) = live_owner(&mut tx, tenant_id, address).await? {
            return Ok(ContactOutcome::AddressTaken {
                address: address.into(),
                contact_id: owner,
            });
        }
        let id = insert_identity(&mut tx, tenant_id, contact_id, address, now_ms()).await?;
        let row =
            sqlx::query("SELECT id, address, valid_from, valid_to FROM identities WHERE id = $1")
                .bind(&id)
                .fetch_one(&mut *tx)
                .await?;
        let v = identity(&row)?;
        tx.commit().await?;
        Ok(ContactOutcome::Done(v))
    }

    /// Retires an identity (a recycled number): from `valid_to` on it no longer leads to
    /// this contact or its conversations.
    pub async fn retire_identity(
        &self,
        tenant_id: &str,
        contact_id: &str,
        identity_id: &str,
        valid_to: i64,
    ) -> Result<ContactOutcome<IdentityView>, StoreError> {
        let mut conn = self.write_conn().await?;
        let mut tx = conn.begin().await?;
        let n = sqlx::query("UPDATE identities SET valid_to = $1 WHERE id = $2 AND contact_id = $3 AND tenant_id = $4")
            .bind(valid_to)
            .bind(identity_id)
            .bind(contact_id)
            .bind(tenant_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            return Ok(ContactOutcome::NotFound);
        }
        // Threading only follows live identities (and leases check the live owner), so the
        // next sender from this number gets a contact and conversation of their own.
        let row =
            sqlx::query("SELECT id, address, valid_from, valid_to FROM identities WHERE id = $1")
                .bind(identity_id)
                .fetch_one(&mut *tx)
                .await?;
        let v = identity(&row)?;
        tx.commit().await?;
        Ok(ContactOutcome::Done(v))
    }

    /// Merges `other` into `survivor`: its live identities move, the move is recorded.
    pub async fn merge_contacts(
        &self,
        tenant_id: &str,
        survivor: &str,
        other: &str,
    ) -> Result<ContactOutcome<ContactView>, StoreError> {
        if survivor == other {
            return Ok(ContactOutcome::Invalid(
                "a contact cannot be merged into itself".into(),
            ));
        }
        let mut conn = self.write_conn().await?;
        let mut tx = conn.begin().await?;
        let (Some(s), Some(o)) = (
            load(&mut tx, tenant_id, survivor).await?,
            load(&mut tx, tenant_id, other).await?,
        ) else {
            return Ok(ContactOutcome::NotFound);
        };
        if s.merged_into.is_some() || o.merged_into.is_some() {
            return Ok(ContactOutcome::Invalid(
                "one of the contacts is already merged".into(),
            ));
        }
        let moved: Vec<String> = o
            .identities
            .iter()
            .filter(|i| i.valid_to.is_none())
            .map(|i| i.id.clone())
            .collect();
        for id in &moved {
            sqlx::query("UPDATE identities SET contact_id = $1 WHERE id = $2")
                .bind(survivor)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("UPDATE contacts SET merged_into = $1 WHERE id = $2")
            .bind(survivor)
            .bind(other)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO contact_merges (id, tenant_id, survivor_id, merged_id, identities, conversations, created_at) VALUES ($1, $2, $3, $4, $5, '[]', $6)",
        )
        .bind(ids::new_id(IdKind::Event))
        .bind(tenant_id)
        .bind(survivor)
        .bind(other)
        .bind(serde_json::to_string(&moved).unwrap_or_default())
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        let v = load(&mut tx, tenant_id, survivor).await?;
        tx.commit().await?;
        v.map(ContactOutcome::Done)
            .ok_or_else(|| StoreError::Corrupt("contact vanished".into()))
    }

    /// Undoes the last merge of `other` into `survivor`, restoring both exactly.
    pub async fn unmerge_contacts(
        &self,
        tenant_id: &str,
        survivor: &str,
        other: &str,
    ) -> Result<ContactOutcome<ContactView>, StoreError> {
        let mut conn = self.write_conn().await?;
        let mut tx = conn.begin().await?;
        if load(&mut tx, tenant_id, survivor).await?.is_none()
            || load(&mut tx, tenant_id, other).await?.is_none()
        {
            return Ok(ContactOutcome::NotFound);
        }
        let row = sqlx::query(
            "SELECT id, identities FROM contact_merges WHERE tenant_id = $1 AND survivor_id = $2 AND merged_id = $3 AND undone_at IS NULL ORDER BY created_at DESC LIMIT 1",
        )
        .bind(tenant_id)
        .bind(survivor)
        .bind(other)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(ContactOutcome::Invalid(format!(
                "{other} is not merged into {survivor}"
            )));
        };
        let merge_id: String = row.try_get("id")?;
        let moved: Vec<String> = json_col(&row, "identities").unwrap_or_default();
        for id in &moved {
            sqlx::query("UPDATE identities SET contact_id = $1 WHERE id = $2 AND contact_id = $3")
                .bind(other)
                .bind(id)
                .bind(survivor)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("UPDATE contacts SET merged_into = NULL WHERE id = $1")
            .bind(other)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE contact_merges SET undone_at = $1 WHERE id = $2")
            .bind(now_ms())
            .bind(&merge_id)
            .execute(&mut *tx)
            .await?;
        let v = load(&mut tx, tenant_id, survivor).await?;
        tx.commit().await?;
        v.map(ContactOutcome::Done)
            .ok_or_else(|| StoreError::Corrupt("contact vanished".into()))
    }
}
