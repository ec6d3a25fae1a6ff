//! Real receivers for the messages the server sends: an SMTP server
//! (Debian's `python3-aiosmtpd`, started per test) and an HTTP gateway
//! (an axum server on a free port) that keep what they are sent.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// An SMTP server on a free port; the messages it received, as text.
pub struct Smtp {
    pub port: u16,
    _child: Child,
    received: Arc<Mutex<Vec<String>>>,
}

impl Smtp {
    pub async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new("/usr/bin/python3")
            .args([
                "-u",
                "-m",
                "aiosmtpd",
                "-n",
                "-l",
                &format!("127.0.0.1:{port}"),
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("python3-aiosmtpd is installed (.ci/run installs it)");
        let received = Arc::new(Mutex::new(Vec::new()));
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let sink = Arc::clone(&received);
        tokio::spawn(async move {
            let mut lines = lines;
            let mut current = String::new();
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("END MESSAGE") {
                    sink.lock().unwrap().push(std::mem::take(&mut current));
                } else {
                    current.push_str(&line);
                    current.push('\n');
                }
            }
        });
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Self {
                    port,
                    _child: child,
                    received,
                };
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the SMTP server did not start");
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// The `n`th message (waits up to 10 s for it).
    pub async fn message(&self, n: usize) -> String {
        for _ in 0..400 {
            if let Some(m) = self.received.lock().unwrap().get(n) {
                return m.clone();
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("no message {n} arrived");
    }

    pub fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }
}

/// What a gateway received: the `X-Webhook-Secret` and the JSON body of
/// each request.
type Requests = Arc<Mutex<Vec<(Option<String>, Value)>>>;

/// An HTTP gateway: records each POST's JSON and `X-Webhook-Secret`;
/// answers `status`.
pub struct Gateway {
    pub url: String,
    received: Requests,
}

impl Gateway {
    pub async fn start(status: u16) -> Self {
        use axum::routing::post;
        let received: Requests = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&received);
        let app = axum::Router::new().route(
            "/send",
            post(
                move |headers: axum::http::HeaderMap, body: axum::Json<Value>| {
                    let sink = Arc::clone(&sink);
                    async move {
                        let secret = headers
                            .get("x-webhook-secret")
                            .map(|v| v.to_str().unwrap().to_owned());
                        sink.lock().unwrap().push((secret, body.0));
                        axum::http::StatusCode::from_u16(status).unwrap()
                    }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/send", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, received }
    }

    /// The `n`th request (waits up to 10 s for it).
    pub async fn request(&self, n: usize) -> (Option<String>, Value) {
        for _ in 0..400 {
            if let Some(r) = self.received.lock().unwrap().get(n) {
                return r.clone();
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("no request {n} arrived");
    }
}

/// The six-digit code in a message's text.
pub fn code_in(text: &str) -> String {
    text.split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .unwrap_or_else(|| panic!("no code in {text}"))
        .to_owned()
}
