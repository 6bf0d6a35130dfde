//! `drive keys`: manages your own long-term access keys through a running Drive's API,
//! authenticated by an OIDC access token.

use std::process::ExitCode;

use serde_json::Value;

use crate::api;

/// Arguments of `drive keys`.
#[derive(Debug, clap::Args)]
pub struct KeysArgs {
    /// Drive's base URL.
    #[arg(long, env = "DRIVE_ENDPOINT", default_value = "http://127.0.0.1:9000")]
    endpoint: String,
    /// An OIDC access token of yours (prefer the environment variable to the flag).
    #[arg(long, env = "DRIVE_TOKEN", hide_env_values = true)]
    token: String,
    #[command(subcommand)]
    action: KeysAction,
}

#[derive(Debug, clap::Subcommand)]
enum KeysAction {
    /// Create a key; its secret is printed this once.
    Create {
        /// A note to recognize the key by.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List your keys, revoked ones included.
    List,
    /// Revoke a key: it stops working on every Drive replica at once.
    Revoke {
        /// The key's access key id.
        access_key_id: String,
    },
}

/// Runs `drive keys`; prints the result or the error.
pub fn run(args: KeysArgs) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts");
    match runtime.block_on(call(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("drive keys: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn call(args: &KeysArgs) -> Result<(), String> {
    let base = format!("{}{}keys", args.endpoint.trim_end_matches('/'), api::PREFIX);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())?;
    let request = match &args.action {
        KeysAction::Create { description } => http
            .post(&base)
            .header("content-type", "application/json")
            .body(serde_json::json!({ "description": description }).to_string()),
        KeysAction::List => http.get(&base),
        KeysAction::Revoke { access_key_id } => http.delete(format!("{base}/{access_key_id}")),
    };
    let response = request
        .bearer_auth(&args.token)
        .send()
        .await
        .map_err(|e| format!("cannot reach {}: {e}", args.endpoint))?;
    let status = response.status();
    let body = response.bytes().await.map_err(|e| e.to_string())?;
    let json: Value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).map_err(|e| format!("unexpected answer ({status}): {e}"))?
    };
    if !status.is_success() {
        let message = json["message"].as_str().unwrap_or("no message");
        return Err(format!("{status}: {message}"));
    }
    let text = |v: &Value, k: &str| v[k].as_str().unwrap_or_default().to_owned();
    match &args.action {
        KeysAction::Create { .. } => {
            println!("AWS_ACCESS_KEY_ID={}", text(&json, "accessKeyId"));
            println!("AWS_SECRET_ACCESS_KEY={}", text(&json, "secretAccessKey"));
            eprintln!("The secret is shown only now; store it safely.");
        }
        KeysAction::List => {
            for key in json["keys"].as_array().into_iter().flatten() {
                let state = key["revokedAt"]
                    .as_str()
                    .map_or_else(|| "active".to_owned(), |t| format!("revoked {t}"));
                println!(
                    "{}\t{}\t{state}\t{}",
                    text(key, "accessKeyId"),
                    text(key, "createdAt"),
                    text(key, "description")
                );
            }
        }
        KeysAction::Revoke { access_key_id } => println!("revoked {access_key_id}"),
    }
    Ok(())
}
