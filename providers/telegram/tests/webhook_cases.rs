//! Webhook table: messages, replies, forwards, media, channel posts, blocks, ignored updates
//! and forged secrets.
#![allow(clippy::unwrap_used)]

use serde_json::{json, Value};
use weft_provider::{ConnectionSpec, Provider, ProviderKind};
use weft_testkit::{request, run_webhook_cases, WebhookCase, WebhookExpect};

const SECRET: &str = "weft_tg-QrErFtZodSA4JLtAEY8cW6q72Ci7pKwz";
const URL: &str = "https://weft.example/webhooks/telegram/tg/updates";
const HEADER: &str = "X-Telegram-Bot-Api-Secret-Token";

fn provider(username: Option<&str>) -> std::sync::Arc<dyn Provider> {
    let mut spec = ConnectionSpec::new("tg", ProviderKind::Telegram);
    spec.credentials
        .insert("bot_token", "7000000001:AAH-test_token-0123456789");
    spec.credentials.insert("secret_token", SECRET);
    if let Some(u) = username {
        spec.settings.insert("bot_username".into(), u.into());
    }
    weft_telegram::build(&spec).unwrap()
}

fn req(kind: &str, secret: Option<&str>, body: String) -> weft_provider::WebhookRequest {
    let headers: Vec<(&str, &str)> = secret.map(|s| vec![(HEADER, s)]).unwrap_or_default();
    request("POST", URL, kind, &headers, body, 1_767_225_600)
}

fn private(id: i64) -> Value {
    json!({"id": id, "first_name": "Nic", "type": "private"})
}

fn nic() -> Value {
    json!({"id": 3527065, "is_bot": false, "first_name": "Nic", "language_code": "de"})
}

/// A `message` update from Nic with `extra` fields merged in.
fn message(update_id: i64, extra: Value) -> String {
    let mut m = json!({"message_id": 42, "from": nic(), "chat": private(3527065), "date": 1767225600, "text": "Ja, Donnerstag passt."});
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            m.as_object_mut().unwrap().remove(k);
        } else {
            m[k] = v.clone();
        }
    }
    json!({"update_id": update_id, "message": m}).to_string()
}

fn case(name: &'static str, body: String, want: Value) -> WebhookCase {
    WebhookCase {
        name,
        request: req("updates", Some(SECRET), body),
        expect: WebhookExpect::Events(want),
    }
}

fn base_message(extra: Value) -> Value {
    let mut v = json!({
        "type": "message", "channel": "telegram", "provider_message_id": "3527065:42",
        "from": "telegram:3527065", "to": "telegram:weft_demo_bot", "profile_name": "Nic",
        "received_at_ms": 1_767_225_600_000_i64, "dedupe_key": "100",
    });
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    v
}

fn member(update_id: i64, old: &str, new: &str) -> String {
    let bot = json!({"id": 7000000001_i64, "is_bot": true, "first_name": "Weft", "username": "weft_demo_bot"});
    json!({"update_id": update_id, "my_chat_member": {
        "chat": private(3527065), "from": nic(), "date": 1767225600,
        "old_chat_member": {"user": bot, "status": old}, "new_chat_member": {"user": bot, "status": new},
    }})
    .to_string()
}

fn cases() -> Vec<WebhookCase> {
    let vector_body = weft_testkit::vectors::cases("telegram_secret_token.json")[0]["body"]
        .as_str()
        .unwrap()
        .to_string();
    vec![
        case("the vector's reply: reply_to_message → chat:message", vector_body, json!([{
            "type": "message", "provider_message_id": "3527065:42", "from": "telegram:3527065", "to": "telegram:weft_demo_bot",
            "body": "Ja, Donnerstag passt.", "reply_to_provider_id": "3527065:41", "forwarded": false,
            "profile_name": "Nic", "dedupe_key": "174114371", "received_at_ms": 1_767_225_600_000_i64,
        }])),
        case("plain text", message(100, json!({})), json!([base_message(json!({"body": "Ja, Donnerstag passt.", "reply_to_provider_id": null, "media": []}))])),
        case("photo with caption: largest size, caption as body", message(100, json!({
            "text": null, "caption": "Rechnung",
            "photo": [{"file_id": "small", "file_unique_id": "a", "width": 90, "height": 90}, {"file_id": "large", "file_unique_id": "b", "width": 1280, "height": 1280}],
        })), json!([base_message(json!({"body": "Rechnung", "media": [{"provider_media_id": "large", "content_type": "image/jpeg", "url": null}]}))])),
        case("document with its mime type", message(100, json!({
            "text": null, "document": {"file_id": "doc1", "file_unique_id": "d", "file_name": "a.pdf", "mime_type": "application/pdf"},
        })), json!([base_message(json!({"body": null, "media": [{"provider_media_id": "doc1", "content_type": "application/pdf"}]}))])),
        case("voice note", message(100, json!({
            "text": null, "voice": {"file_id": "v1", "file_unique_id": "v", "duration": 3, "mime_type": "audio/ogg"},
        })), json!([base_message(json!({"media": [{"provider_media_id": "v1", "content_type": "audio/ogg"}]}))])),
        case("forward_origin marks a forward, not a reply", message(100, json!({
            "forward_origin": {"type": "user", "sender_user": {"id": 1, "is_bot": false, "first_name": "X"}, "date": 1767220000},
            "reply_to_message": {"message_id": 41, "chat": private(3527065), "date": 1},
        })), json!([base_message(json!({"forwarded": true, "reply_to_provider_id": null}))])),
        case("legacy forward_from marks a forward", message(100, json!({"forward_from": {"id": 1, "is_bot": false, "first_name": "X"}, "forward_date": 1767220000})),
            json!([base_message(json!({"forwarded": true}))])),
        case("group message: from the group chat, named by the sender", message(100, json!({
            "chat": {"id": -1001234567890_i64, "title": "Team", "type": "supergroup"}, "message_id": 9,
        })), json!([{"from": "telegram:-1001234567890", "provider_message_id": "-1001234567890:9", "profile_name": "Nic"}])),
        case("channel post: named by the channel", json!({"update_id": 101, "channel_post": {
            "message_id": 5, "sender_chat": {"id": -1009876543210_i64, "title": "weft news", "type": "channel"},
            "chat": {"id": -1009876543210_i64, "title": "weft news", "type": "channel"}, "date": 1767225600, "text": "Neu!",
        }}).to_string(), json!([{"type": "message", "from": "telegram:-1009876543210", "body": "Neu!", "profile_name": "weft news", "dedupe_key": "101"}])),
        case("edited messages are skipped", json!({"update_id": 102, "edited_message": {
            "message_id": 42, "from": nic(), "chat": private(3527065), "date": 1767225600, "edit_date": 1767225660, "text": "Freitag?",
        }}).to_string(), json!([])),
        case("blocked (member → kicked) is an opt-out", member(103, "member", "kicked"), json!([{
            "type": "consent", "address": "telegram:3527065", "channel": "telegram", "action": "opt_out", "dedupe_key": "103",
        }])),
        case("unblocked (kicked → member) is an opt-in", member(104, "kicked", "member"), json!([{"type": "consent", "action": "opt_in", "dedupe_key": "104"}])),
        case("promoted to administrator is no consent event", member(105, "member", "administrator"), json!([])),
        case("left a group is no consent event", member(106, "member", "left"), json!([])),
        case("callback queries give no events", json!({"update_id": 107, "callback_query": {"id": "1", "from": nic(), "data": "yes"}}).to_string(), json!([])),
        WebhookCase {
            name: "kind inbound is an alias",
            request: req("inbound", Some(SECRET), message(100, json!({}))),
            expect: WebhookExpect::Events(json!([{"type": "message", "body": "Ja, Donnerstag passt."}])),
        },
        WebhookCase { name: "junk body is unparseable", request: req("updates", Some(SECRET), "{nope".into()), expect: WebhookExpect::Unparseable },
        WebhookCase {
            name: "an update without update_id is unparseable",
            request: req("updates", Some(SECRET), json!({"message": {"message_id": 1}}).to_string()),
            expect: WebhookExpect::Unparseable,
        },
        WebhookCase { name: "missing secret header is rejected", request: req("updates", None, message(100, json!({}))), expect: WebhookExpect::Rejected },
        WebhookCase {
            name: "another bot's secret is rejected",
            request: req("updates", Some("weft_tg-YotCHiZrpCb5EGlMtzTJoiEccxI65MPS"), message(100, json!({}))),
            expect: WebhookExpect::Rejected,
        },
        WebhookCase {
            name: "the secret in upper case is rejected",
            request: req("updates", Some(&SECRET.to_uppercase()), message(100, json!({}))),
            expect: WebhookExpect::Rejected,
        },
        WebhookCase { name: "an empty secret header is rejected", request: req("updates", Some(""), message(100, json!({}))), expect: WebhookExpect::Rejected },
    ]
}

#[test]
fn webhook_table() {
    let cases = cases();
    assert!(cases.len() >= 20, "{}", cases.len());
    run_webhook_cases(provider(Some("@weft_demo_bot")).as_ref(), &cases);
}

#[test]
fn without_a_username_the_connection_id_names_the_bot() {
    let p = provider(None);
    let events = p
        .parse(&req("updates", Some(SECRET), message(100, json!({}))))
        .unwrap();
    let v = serde_json::to_value(&events).unwrap();
    assert_eq!(v[0]["to"], "telegram:tg");
}

#[test]
fn declares_its_kinds_and_has_no_handshake() {
    let p = provider(None);
    assert_eq!(p.capabilities().webhook_kinds, &["updates", "inbound"]);
    assert!(p
        .handshake(&request("GET", URL, "updates", &[], "", 0))
        .is_none());
}
