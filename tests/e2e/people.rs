//! People against the real binary: tokens issued, listed and revoked with
//! `vigil token …`; a revoked token refused on REST, SSE, SQL and the MQTT
//! alarm feed; an expired token refused; roles checked before bodies on
//! every admin endpoint; the data dir private on disk.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::harness::*;

/// `vigil token …` against the running engine, the admin token in the
/// environment (not on the command line).
fn token_cli(vigil: &Vigil, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .arg("token")
        .args(args)
        .env("VIGIL_URL", format!("http://{}", vigil.http))
        .env("VIGIL_ADMIN_TOKEN", TOKEN)
        .env_remove("VIGIL_ADMIN_TOKEN_FILE")
        .output()
        .expect("vigil token runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Issues a token with the CLI: (token, id).
fn issue(vigil: &Vigil, args: &[&str]) -> (String, String) {
    let mut all = vec!["create"];
    all.extend_from_slice(args);
    let (ok, out, err) = token_cli(vigil, &all);
    assert!(ok, "vigil token create failed: {err}");
    let token = out.trim().to_owned();
    assert!(token.starts_with("vgl_"), "{out}");
    let id = err
        .split_whitespace()
        .find(|w| w.starts_with("tok_"))
        .unwrap_or_else(|| panic!("no id in {err:?}"))
        .to_owned();
    (token, id)
}

async fn get_as(vigil: &Vigil, token: &str, path: &str) -> (u16, Value) {
    let r = vigil
        .client
        .get(vigil.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// What an MQTT alarm-feed session saw.
#[derive(Debug)]
enum Seen {
    Connected,
    SubAck,
    Alarm(Value),
    Closed,
}

/// An alarm-feed login (`token:…`) that reports what it sees.
/// A feed reader's session; `label` follows the client id prefix its token
/// requires. Its keep-alive (30 s) is longer than any wait below, so it
/// sends nothing of its own while a test watches it.
fn feed_session(vigil: &Vigil, label: &str, token: &str) -> mpsc::UnboundedReceiver<Seen> {
    let client_id = format!("{}-{label}", vigil_ingest::feed_client_prefix(token));
    let mut opts = MqttOptions::new(client_id, vigil.mqtt.ip().to_string(), vigil.mqtt.port());
    opts.set_credentials("token:e2e", token);
    opts.set_keep_alive(Duration::from_secs(30));
    let (client, mut events) = AsyncClient::new(opts, 64);
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let seen = match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    client
                        .subscribe("/tenants/r440700/v1/alarms/#", QoS::AtLeastOnce)
                        .await
                        .unwrap();
                    Seen::Connected
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => Seen::SubAck,
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    Seen::Alarm(serde_json::from_slice(&p.payload).unwrap())
                }
                Ok(_) => continue,
                Err(_) => Seen::Closed,
            };
            let closed = matches!(seen, Seen::Closed);
            if tx.send(seen).is_err() || closed {
                return;
            }
        }
    });
    rx
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Seen>, what: &str) -> Seen {
    tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
        .expect("session task alive")
}

/// An overspeed from a Jiangmen elevator: an alarm for region 440703.
async fn overspeed(dev: &mut Device) {
    let seq = dev
        .send(
            now_ms(),
            json!({"direction": "up", "speed_mps": 3.5, "leveled": false, "floor": 9}),
        )
        .await;
    dev.wait_ack(seq, 20).await;
}

async fn calm(dev: &mut Device) {
    let seq = dev.send(now_ms(), json!({})).await;
    dev.wait_ack(seq, 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_is_refused_on_every_surface() {
    let vigil = Vigil::start().await;
    let secrets = secrets(&vigil.import(&registry_doc(2)).await);
    let (token, id) = issue(
        &vigil,
        &[
            "--name",
            "analyst on leave",
            "--role",
            "analyst",
            "--region",
            "440700",
        ],
    );

    // Before: every surface works for it.
    let (status, body) = get_as(&vigil, &token, "/equipment").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = vigil
        .post_as(
            &token,
            "/sql",
            &json!({"sql": "SELECT count(*) AS n FROM equipment"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let sse = Feed::open(&vigil, &token, "").await;
    let mut open = feed_session(&vigil, "analyst-open", &token);
    assert!(matches!(next(&mut open, "CONNACK").await, Seen::Connected));
    assert!(matches!(next(&mut open, "SUBACK").await, Seen::SubAck));
    let mut dev = Device::connect(vigil.mqtt, "DEV0000", &secrets["DEV0000"])
        .await
        .unwrap();
    overspeed(&mut dev).await;
    sse.wait_for(20, "the alarm on SSE", |a| a["equipment_id"] == "EQ0000")
        .await;
    let Seen::Alarm(first) = next(&mut open, "the alarm on MQTT").await else {
        panic!("the feed session should see the alarm");
    };
    assert_eq!(first["equipment_id"], "EQ0000");

    // Revoke with the CLI.
    let (ok, out, err) = token_cli(&vigil, &["revoke", &id]);
    assert!(ok, "{err}");
    assert!(out.contains(&id) && out.contains("revoked"), "{out}");

    // REST and SQL: refused at once, saying why.
    let (status, body) = get_as(&vigil, &token, "/equipment").await;
    assert_eq!(status, 401, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("bearer token was revoked at "),
        "{body}"
    );
    let (status, body) = vigil
        .post_as(&token, "/sql", &json!({"sql": "SELECT 1"}))
        .await;
    assert_eq!(status, 401, "{body}");
    // SSE: the open stream ends; a new one is refused.
    eventually(10, "the open SSE stream to end", || {
        let ended = sse.ended();
        async move { ended.then_some(()) }
    })
    .await;
    let r = vigil
        .client
        .get(vigil.url("/alarms/stream"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // MQTT: the open session is closed by the revocation itself, while it
    // sends nothing and nothing is sent to it; the engine counts why.
    match next(&mut open, "the open session to end").await {
        Seen::Closed => {}
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        vigil
            .metric(r#"vigil_ingest_disconnects_total{reason="feed_revoked"}"#)
            .await,
        1.0,
        "the engine closed it"
    );
    assert_eq!(
        vigil.metric(r#"vigil_ingest_sessions{login="feed"}"#).await,
        0.0
    );
    // MQTT: a new login is refused.
    let mut late = feed_session(&vigil, "analyst-late", &token);
    assert!(
        matches!(next(&mut late, "the refusal").await, Seen::Closed),
        "a revoked token gets no MQTT session"
    );
    assert_eq!(
        vigil
            .metric(r#"vigil_ingest_rejected_total{reason="connect_bad_token"}"#)
            .await,
        1.0
    );
    // Alarms go on for everyone else.
    let admin = Feed::open(&vigil, TOKEN, "").await;
    let mut other = Device::connect(vigil.mqtt, "DEV0001", &secrets["DEV0001"])
        .await
        .unwrap();
    overspeed(&mut other).await;
    admin
        .wait_for(20, "the next alarm on SSE", |a| {
            a["equipment_id"] == "EQ0001"
        })
        .await;

    // The list says what happened, and shows no secret.
    let (ok, out, _) = token_cli(&vigil, &["list"]);
    assert!(ok);
    let line = out.lines().find(|l| l.contains(&id)).expect("listed");
    assert!(
        line.contains("revoked") && line.contains("analyst[440700]"),
        "{line}"
    );
    dev.disconnect().await;
    other.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_refused_and_lists_show_no_secret() {
    let vigil = Vigil::start().await;
    vigil.import(&registry_doc(1)).await;
    let (short, short_id) = issue(
        &vigil,
        &[
            "--name",
            "contractor",
            "--role",
            "supervisor",
            "--region",
            "440703",
            "--expires-in",
            "3s",
        ],
    );
    let (long, long_id) = issue(
        &vigil,
        &[
            "--name",
            "owner desk",
            "--role",
            "owner",
            "--owner-id",
            "OW1",
        ],
    );
    let (status, _) = get_as(&vigil, &short, "/equipment").await;
    assert_eq!(status, 200);
    let sse = Feed::open(&vigil, &short, "").await;
    eventually(15, "the token to expire", || {
        let vigil = &vigil;
        let short = short.clone();
        async move {
            let (status, body) = get_as(vigil, &short, "/equipment").await;
            (status == 401).then_some(body)
        }
    })
    .await;
    let (status, body) = get_as(&vigil, &short, "/alarms").await;
    assert_eq!(status, 401);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("bearer token expired at "),
        "{body}"
    );
    eventually(10, "the SSE stream to end at the expiry", || {
        let ended = sse.ended();
        async move { ended.then_some(()) }
    })
    .await;
    let (status, _) = get_as(&vigil, &long, "/equipment").await;
    assert_eq!(status, 200, "other tokens are untouched");

    // GET /tokens and `vigil token list`: ids, grants and dates, never a
    // token or its hash.
    let (status, list) = vigil.get("/tokens").await;
    assert_eq!(status, 200, "{list}");
    let (ok, cli, _) = token_cli(&vigil, &["list"]);
    assert!(ok);
    for (token, id) in [(&short, &short_id), (&long, &long_id)] {
        use sha2_011::Digest;
        let hash = hex::encode(sha2_011::Sha256::digest(token.as_bytes()));
        for shown in [list.to_string(), cli.clone()] {
            assert!(shown.contains(id.as_str()), "{shown}");
            assert!(!shown.contains(&token[4..]), "a token is never shown again");
            assert!(!shown.contains(&hash[..16]), "nor its hash");
        }
    }
    let items = list["items"].as_array().unwrap();
    let short_item = items.iter().find(|t| t["id"] == short_id.as_str()).unwrap();
    assert_eq!(short_item["status"], "expired");
    assert_eq!(short_item["regions"], json!(["440703"]));
    assert!(short_item["last_used_at"].is_string());
    let long_item = items.iter().find(|t| t["id"] == long_id.as_str()).unwrap();
    assert_eq!(long_item["status"], "active");
    assert_eq!(long_item["owner_id"], "OW1");
    let (status, one) = vigil.get(&format!("/tokens/{long_id}")).await;
    assert_eq!((status, &one), (200, long_item));
}

/// Every endpoint that changes something or reads every region, with the
/// id of something that exists where the path needs one.
fn admin_endpoints(alarm: &str) -> Vec<(reqwest::Method, String)> {
    use reqwest::Method;
    let mut e = vec![
        (Method::POST, "/registry/import".to_owned()),
        (Method::POST, "/tokens".to_owned()),
        (Method::GET, "/tokens".to_owned()),
        (Method::GET, "/tokens/tok_0123456789abcdef".to_owned()),
        (Method::DELETE, "/tokens/tok_0123456789abcdef".to_owned()),
        (Method::POST, "/rules/replay".to_owned()),
        (Method::POST, "/rules/reload".to_owned()),
    ];
    for (kind, id) in [
        ("owners", "OW1"),
        ("maintainers", "MT1"),
        ("equipment", "EQ0000"),
        ("devices", "DEV0000"),
        ("stations", "ST1"),
        ("persons", "P1"),
        ("cylinders", "C1"),
    ] {
        e.push((Method::POST, format!("/{kind}")));
        e.push((Method::PUT, format!("/{kind}/{id}")));
        e.push((Method::DELETE, format!("/{kind}/{id}")));
    }
    // Not admin-only, but not for analysts or owners either.
    e.push((Method::POST, format!("/alarms/{alarm}/ack")));
    e.push((Method::POST, format!("/alarms/{alarm}/resolve")));
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_are_checked_before_the_body_on_every_admin_endpoint() {
    let vigil = Vigil::start().await;
    let secrets = secrets(&vigil.import(&registry_doc(1)).await);
    let mut dev = Device::connect(vigil.mqtt, "DEV0000", &secrets["DEV0000"])
        .await
        .unwrap();
    overspeed(&mut dev).await;
    // The alarm reaches the board after the rules have run: wait for it.
    let alarm = eventually(20, "an open alarm", || async {
        let (_, alarms) = vigil.get("/alarms?state=open").await;
        alarms["alarms"][0]["alarm_id"].as_str().map(str::to_owned)
    })
    .await;
    let (analyst, _) = issue(
        &vigil,
        &["--name", "a", "--role", "analyst", "--region", "440700"],
    );
    let (owner, _) = issue(
        &vigil,
        &["--name", "o", "--role", "owner", "--owner-id", "OW1"],
    );
    let (supervisor, _) = issue(
        &vigil,
        &["--name", "s", "--role", "supervisor", "--region", "440700"],
    );
    let malformed = ["{\"from\": ", "[1, 2", "not json", ""];
    let mut checked = 0;
    for (who, token) in [
        ("analyst", &analyst),
        ("owner", &owner),
        ("supervisor", &supervisor),
    ] {
        for (method, path) in admin_endpoints(&alarm) {
            if who == "supervisor" && path.starts_with("/alarms/") {
                continue; // Supervisors handle alarms.
            }
            for body in malformed {
                let r = vigil
                    .client
                    .request(method.clone(), vigil.url(&path))
                    .bearer_auth(token)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                let answer: Value = r.json().await.unwrap_or(Value::Null);
                assert_eq!(status, 403, "{who} {method} {path} with {body:?}: {answer}");
                assert_eq!(answer["error"]["code"], "forbidden");
                checked += 1;
            }
        }
        // SQL is not for owners; maintenance records are not for analysts
        // and supervisors.
        let path = if who == "owner" {
            "/sql"
        } else {
            "/maintenance"
        };
        let r = vigil
            .client
            .post(vigil.url(path))
            .bearer_auth(token)
            .body("{\"sql\": ")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 403, "{who} POST {path}");
    }
    assert!(checked > 100, "{checked}");
    // The admin with the same bodies gets the parser's word.
    for path in ["/rules/replay", "/registry/import", "/tokens", "/owners"] {
        let r = vigil
            .client
            .post(vigil.url(path))
            .bearer_auth(TOKEN)
            .body("{\"from\": ")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 400, "admin POST {path}");
    }
    dev.disconnect().await;
}

/// Every folder and file under `dir`, with its permission bits.
fn modes(dir: &Path) -> Vec<(String, bool, u32)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let meta = std::fs::symlink_metadata(&p).unwrap();
        if meta.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
        }
        if meta.is_dir() || meta.is_file() {
            out.push((
                p.display().to_string(),
                meta.is_dir(),
                meta.permissions().mode() & 0o777,
            ));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_dir_is_private_and_the_admin_token_comes_from_a_file() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("vigil-data");
    std::fs::create_dir(&data).unwrap();
    // An operator's careless setup: a readable folder and token file.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(data.join("admin.token"), format!("{TOKEN}\n")).unwrap();
    std::fs::set_permissions(
        data.join("admin.token"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let mut vigil = Vigil::start_in(&data, None).await;
    let secrets = secrets(&vigil.import(&registry_doc(1)).await);
    let mut dev = Device::connect(vigil.mqtt, "DEV0000", &secrets["DEV0000"])
        .await
        .unwrap();
    overspeed(&mut dev).await;
    calm(&mut dev).await;
    issue(
        &vigil,
        &["--name", "n", "--role", "analyst", "--region", "440700"],
    );
    dev.disconnect().await;
    assert!(vigil.stop().success(), "clean stop; log:\n{}", vigil.log());

    let log = vigil.log();
    assert!(
        log.contains("made them private"),
        "the fix is logged:\n{log}"
    );
    assert!(
        log.contains("can be read by other users"),
        "the token file too:\n{log}"
    );
    assert!(
        !log.contains("--admin-token is visible"),
        "no flag, no warning"
    );
    let all = modes(&data);
    assert!(
        all.iter()
            .any(|(p, is_dir, _)| !is_dir && p.contains("/registry/")),
        "the registry wrote its files: {all:?}"
    );
    assert!(
        all.iter()
            .any(|(p, is_dir, _)| !is_dir && (p.contains("/store/") || p.contains("/pg-wal/"))),
        "the store wrote its files too: {all:?}"
    );
    for (path, is_dir, mode) in &all {
        let want = if *is_dir { 0o700 } else { 0o600 };
        assert_eq!(*mode, want, "{path} is {mode:o}");
    }
}
