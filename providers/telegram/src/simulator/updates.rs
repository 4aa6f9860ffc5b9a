//! Updates the simulator posts to weft, with the secret-token header.

use super::api::{bot_user, now};
use super::{Shared, SimError};
use crate::verify::SECRET_HEADER;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use weft_simkit::CallbackBehaviour;

/// What weft answered to an update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookReply {
    pub status: u16,
    pub body: String,
    pub update_id: i64,
    /// The `message_id` of a posted message (in its chat), if one was posted.
    pub message_id: Option<i64>,
}

fn user(chat_id: i64) -> Value {
    json!({"id": chat_id, "is_bot": false, "first_name": "Sim", "last_name": "User", "language_code": "en"})
}

fn private_chat(chat_id: i64) -> Value {
    json!({"id": chat_id, "first_name": "Sim", "last_name": "User", "type": "private"})
}

/// A `message` update from the private chat `chat_id`.
pub(super) fn message(
    shared: &Shared,
    chat_id: i64,
    text: &str,
    reply_to: Option<i64>,
    forwarded: bool,
) -> Value {
    let message_id = shared.next_message_id(chat_id);
    let mut m = json!({
        "message_id": message_id,
        "from": user(chat_id),
        "chat": private_chat(chat_id),
        "date": now(),
        "text": text,
    });
    if let Some(r) = reply_to {
        m["reply_to_message"] = json!({
            "message_id": r,
            "from": bot_user(shared),
            "chat": private_chat(chat_id),
            "date": now(),
        });
    }
    if forwarded {
        let origin =
            json!({"type": "hidden_user", "sender_user_name": "Someone Else", "date": now() - 60});
        m["forward_origin"] = origin;
    }
    json!({ "message": m })
}

/// A `my_chat_member` update: the bot's status in the private chat went `old → new`.
pub(super) fn member(shared: &Shared, chat_id: i64, old: &str, new: &str) -> Value {
    let mut new_member = json!({"user": bot_user(shared), "status": new});
    if new == "kicked" {
        new_member["until_date"] = json!(0);
    }
    json!({"my_chat_member": {
        "chat": private_chat(chat_id),
        "from": user(chat_id),
        "date": now(),
        "old_chat_member": {"user": bot_user(shared), "status": old},
        "new_chat_member": new_member,
    }})
}

/// Posts one update (once), setting its `update_id` if missing.
pub(super) async fn post(shared: &Shared, mut update: Value) -> Result<WebhookReply, SimError> {
    let hook = shared.webhook();
    let url = hook.url.ok_or(SimError::NoWebhookUrl)?;
    let update_id = match update["update_id"].as_i64() {
        Some(id) => id,
        None => {
            let id = shared.next_update.fetch_add(1, Ordering::Relaxed);
            update["update_id"] = json!(id);
            id
        }
    };
    let message_id = update["message"]["message_id"].as_i64();
    let mut req = shared
        .client
        .post(&url)
        .header("content-type", "application/json");
    match shared.callbacks.behaviour() {
        CallbackBehaviour::Unsigned => {}
        CallbackBehaviour::Forged => {
            req = req.header(SECRET_HEADER, format!("{}-forged", hook.secret))
        }
        _ => req = req.header(SECRET_HEADER, hook.secret.as_str()),
    }
    let resp = req.body(update.to_string()).send().await?;
    let status = resp.status().as_u16();
    let body = resp.text().await?;
    Ok(WebhookReply {
        status,
        body,
        update_id,
        message_id,
    })
}
