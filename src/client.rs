//! Commands that talk to a running engine over its HTTP API.

use std::path::Path;

use anyhow::{Context, bail};
use serde_json::Value;

use crate::cli::{CertArgs, Remote, SqlArgs, TokenCreateArgs};

fn request(remote: &Remote, path: &str) -> anyhow::Result<reqwest::RequestBuilder> {
    request_with(reqwest::Method::POST, remote, path)
}

fn request_with(
    method: reqwest::Method,
    remote: &Remote,
    path: &str,
) -> anyhow::Result<reqwest::RequestBuilder> {
    let url = format!("{}/api/v1{path}", remote.url.trim_end_matches('/'));
    Ok(reqwest::Client::new()
        .request(method, url)
        .bearer_auth(remote.bearer()?))
}

async fn answer(response: reqwest::Response) -> anyhow::Result<reqwest::Response> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let message = body["error"]["message"].as_str().unwrap_or("no message");
    let code = body["error"]["code"].as_str().unwrap_or("error");
    bail!("{status}: {code}: {message}")
}

pub(crate) async fn import(file: &Path, remote: &Remote) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let doc: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", file.display()))?;
    let response = request(remote, "/registry/import")?
        .json(&doc)
        .send()
        .await
        .with_context(|| format!("cannot reach {}", remote.url))?;
    let report: Value = answer(response).await?.json().await?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

pub(crate) async fn sql(args: &SqlArgs) -> anyhow::Result<()> {
    let accept = match args.format.as_str() {
        "csv" => "text/csv",
        "json" => "application/json",
        _ => vigil_server::ARROW_STREAM,
    };
    let response = request(&args.remote, "/sql")?
        .header(reqwest::header::ACCEPT, accept)
        .json(&serde_json::json!({ "sql": args.sql }))
        .send()
        .await
        .with_context(|| format!("cannot reach {}", args.remote.url))?;
    let body = answer(response).await?.bytes().await?;
    if args.format != "table" {
        print!("{}", String::from_utf8_lossy(&body));
        if !body.ends_with(b"\n") {
            println!();
        }
        return Ok(());
    }
    let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(body), None)?;
    let batches = reader.collect::<Result<Vec<_>, _>>()?;
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    println!("{}", arrow::util::pretty::pretty_format_batches(&batches)?);
    println!("{rows} row{}", if rows == 1 { "" } else { "s" });
    Ok(())
}

/// `90d`, `12h`, `30m`, `45s` or plain seconds.
fn parse_lifetime(s: &str) -> anyhow::Result<u64> {
    let s = s.trim();
    let (digits, unit) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], c),
        _ => (s, 's'),
    };
    let n: u64 = digits
        .parse()
        .with_context(|| format!("{s:?} is not a lifetime such as 90d, 12h, 30m or 3600"))?;
    let unit = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        other => bail!("{s:?}: unit {other:?} is not one of s, m, h, d"),
    };
    n.checked_mul(unit)
        .with_context(|| format!("{s:?} is too long"))
}

/// `vigil token create`: prints the token once, then what it grants.
pub(crate) async fn token_create(args: &TokenCreateArgs) -> anyhow::Result<()> {
    let expires_in_s = args.expires_in.as_deref().map(parse_lifetime).transpose()?;
    let mut body = serde_json::json!({"name": args.name, "role": args.role});
    if !args.regions.is_empty() {
        body["regions"] = serde_json::json!(args.regions);
    }
    if let Some(owner) = &args.owner_id {
        body["owner_id"] = serde_json::json!(owner);
    }
    if let Some(s) = expires_in_s {
        body["expires_in_s"] = serde_json::json!(s);
    }
    let response = request(&args.remote, "/tokens")?
        .json(&body)
        .send()
        .await
        .with_context(|| format!("cannot reach {}", args.remote.url))?;
    let issued: Value = answer(response).await?.json().await?;
    println!("{}", issued["token"].as_str().unwrap_or_default());
    eprintln!(
        "id {}  {}  expires {}  (the token is shown once; keep it secret)",
        issued["id"].as_str().unwrap_or_default(),
        grant(&issued),
        issued["expires_at"].as_str().unwrap_or("never")
    );
    Ok(())
}

/// `role[regions]` or `owner[OWN1]`.
fn grant(t: &Value) -> String {
    let role = t["role"].as_str().unwrap_or("?");
    if let Some(owner) = t["owner_id"].as_str() {
        return format!("{role}[{owner}]");
    }
    match t["regions"].as_array() {
        Some(rs) if !rs.is_empty() => format!(
            "{role}[{}]",
            rs.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(",")
        ),
        _ => role.to_owned(),
    }
}

pub(crate) async fn token_list(remote: &Remote) -> anyhow::Result<()> {
    let response = request_with(reqwest::Method::GET, remote, "/tokens")?
        .send()
        .await
        .with_context(|| format!("cannot reach {}", remote.url))?;
    let body: Value = answer(response).await?.json().await?;
    let items = body["items"].as_array().cloned().unwrap_or_default();
    println!(
        "{:<21} {:<8} {:<24} {:<20} {:<20} {:<20} NAME",
        "ID", "STATUS", "GRANT", "CREATED", "EXPIRES", "LAST USED"
    );
    for t in &items {
        println!(
            "{:<21} {:<8} {:<24} {:<20} {:<20} {:<20} {}",
            text_of(&t["id"]),
            text_of(&t["status"]),
            grant(t),
            text_of(&t["created_at"]),
            text_of(&t["expires_at"]),
            text_of(&t["last_used_at"]),
            text_of(&t["name"])
        );
    }
    println!(
        "{} token{}",
        items.len(),
        if items.len() == 1 { "" } else { "s" }
    );
    Ok(())
}

pub(crate) async fn token_revoke(id: &str, remote: &Remote) -> anyhow::Result<()> {
    let response = request_with(reqwest::Method::DELETE, remote, &format!("/tokens/{id}"))?
        .send()
        .await
        .with_context(|| format!("cannot reach {}", remote.url))?;
    let t: Value = answer(response).await?.json().await?;
    println!(
        "revoked {} ({}, {}) at {}",
        text_of(&t["id"]),
        text_of(&t["name"]),
        grant(&t),
        text_of(&t["revoked_at"])
    );
    Ok(())
}

fn text_of(v: &Value) -> &str {
    v.as_str().unwrap_or("-")
}

/// An RFC 3339 time or epoch milliseconds.
fn parse_time(s: &str) -> anyhow::Result<i64> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .with_context(|| {
            format!("{s:?} is neither RFC 3339 (2026-11-24T08:00:00+08:00) nor epoch ms")
        })
}

/// `vigil rules reload`: the engine re-reads its rule file.
pub(crate) async fn reload(remote: &Remote) -> anyhow::Result<()> {
    let response = request(remote, "/rules/reload")?
        .send()
        .await
        .with_context(|| format!("cannot reach {}", remote.url))?;
    let body: Value = answer(response).await?.json().await?;
    println!(
        "reloaded {}; defined rules: {}",
        body["file"].as_str().unwrap_or("(no rule file)"),
        body["defined"]
    );
    Ok(())
}

pub(crate) async fn replay(args: &crate::cli::ReplayArgs) -> anyhow::Result<()> {
    let from = parse_time(&args.from)?;
    let to = match &args.to {
        Some(t) => parse_time(t)?,
        None => chrono::Utc::now().timestamp_millis(),
    };
    // A rule file as it is (line numbers in errors match it), or the
    // `[rules]` section of an engine configuration file.
    let rules = match &args.rules {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let doc: toml::Table =
                toml::from_str(&text).with_context(|| format!("{} is not TOML", path.display()))?;
            match doc.get("rules").and_then(toml::Value::as_table) {
                Some(section) => Some(toml::to_string(section)?),
                None => Some(text),
            }
        }
    };
    let response = request(&args.remote, "/rules/replay")?
        .json(&serde_json::json!({"from": from, "to": to, "rules": rules}))
        .send()
        .await
        .with_context(|| format!("cannot reach {}", args.remote.url))?;
    let body: Value = answer(response).await?.json().await?;
    let alarms = body["alarms"].as_array().cloned().unwrap_or_default();
    for a in &alarms {
        let at = a["updated_at"].as_i64().unwrap_or_default();
        let when = chrono::DateTime::from_timestamp_millis(at)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_default();
        let change = match (a["state"].as_str(), a["version"].as_u64()) {
            (Some("cleared"), _) => "CLEARED",
            (_, Some(1)) => "RAISED",
            _ => "CHANGED",
        };
        println!(
            "{when}  {change:<8} {:<9} {:<32} {}  count {}  {}",
            a["severity"].as_str().unwrap_or(""),
            a["rule"].as_str().unwrap_or(""),
            a["equipment_id"].as_str().unwrap_or(""),
            a["count"],
            a["details"]
        );
    }
    println!(
        "{} readings replayed, {} alarm changes",
        body["readings"],
        alarms.len()
    );
    Ok(())
}

/// `vigil device cert` / `vigil feed cert`: asks the engine's device CA for
/// a certificate and writes cert.pem, key.pem (0600) and ca.pem.
pub(crate) async fn certificate(
    path: &str,
    mut body: Value,
    args: &CertArgs,
) -> anyhow::Result<()> {
    if let Some(days) = args.days {
        body["days"] = days.into();
    }
    if let Some(csr) = &args.csr {
        let pem = std::fs::read_to_string(csr)
            .with_context(|| format!("cannot read {}", csr.display()))?;
        body["csr_pem"] = pem.into();
    }
    let response = request(&args.remote, path)?
        .json(&body)
        .send()
        .await
        .with_context(|| format!("cannot reach {}", args.remote.url))?;
    let issued: Value = answer(response).await?.json().await?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let text = |key: &str| issued[key].as_str().map(str::to_owned);
    let write = |name: &str, text: &str, mode: u32| -> anyhow::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let file = args.out.join(name);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&file)
            .with_context(|| format!("cannot write {}", file.display()))?;
        f.write_all(text.as_bytes())?;
        Ok(())
    };
    let cert = text("cert_pem").context("the engine's answer has no cert_pem")?;
    write("cert.pem", &cert, 0o644)?;
    write("ca.pem", &text("ca_pem").unwrap_or_default(), 0o644)?;
    if let Some(key) = text("key_pem") {
        write("key.pem", &key, 0o600)?;
    }
    println!(
        "{} for tenant {}: serial {}, valid until {}; written to {}",
        if issued["device_id"].is_string() {
            "device certificate"
        } else {
            "alarm-feed certificate"
        },
        issued["tenant"].as_str().unwrap_or(""),
        issued["serial"].as_str().unwrap_or(""),
        issued["not_after"].as_str().unwrap_or(""),
        args.out.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn lifetimes_take_units() {
        assert_eq!(super::parse_lifetime("90d").unwrap(), 90 * 86_400);
        assert_eq!(super::parse_lifetime("12h").unwrap(), 12 * 3600);
        assert_eq!(super::parse_lifetime("30m").unwrap(), 1800);
        assert_eq!(super::parse_lifetime("45").unwrap(), 45);
        assert!(super::parse_lifetime("3w").is_err());
        assert!(super::parse_lifetime("d").is_err());
        assert!(super::parse_lifetime("99999999999999999999d").is_err());
    }
}
