//! Commands that talk to a running engine over its HTTP API.

use std::path::Path;

use anyhow::{Context, bail};
use serde_json::Value;

use crate::cli::{Remote, SqlArgs};

fn request(remote: &Remote, path: &str) -> anyhow::Result<reqwest::RequestBuilder> {
    let url = format!("{}/api/v1{path}", remote.url.trim_end_matches('/'));
    let mut req = reqwest::Client::new().post(url);
    match &remote.token {
        Some(token) => req = req.bearer_auth(token),
        None => bail!("no token: pass --token or set VIGIL_ADMIN_TOKEN"),
    }
    Ok(req)
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

pub async fn import(file: &Path, remote: &Remote) -> anyhow::Result<()> {
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

pub async fn sql(args: &SqlArgs) -> anyhow::Result<()> {
    let accept = match args.format.as_str() {
        "csv" => "text/csv",
        "json" => "application/json",
        _ => crate::sql::ARROW_STREAM,
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
