//! A client for the streaming server behind CRI Exec and Attach (containerd's copy of the
//! kubelet's): a WebSocket with the `channel.k8s.io` subprotocols, as `kubectl exec` speaks
//! it. Every binary frame starts with a channel byte: 0 stdin, 1 stdout, 2 stderr, 3 error
//! (a JSON `Status` in v4, sent when the command ends), 4 resize (JSON
//! `{"Width":w,"Height":h}`).
//!
//! The session is blocking (it runs on the CRI client's tokio runtime) and keeps everything
//! read so far, so a test can wait for a prompt, send input and then look at all output.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::cri::runtime;

/// The subprotocols offered, best first. containerd 1.6 knows v4 and the original one;
/// v5 (which adds closing stdin) came later and is offered for newer servers.
pub const PROTOCOLS: &str = "v5.channel.k8s.io, v4.channel.k8s.io, channel.k8s.io";

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const ERROR: u8 = 3;
pub const RESIZE: u8 = 4;
/// v5 only: a frame `[255, channel]` closes that channel (stdin).
pub const CLOSE: u8 = 255;

/// One exec or attach stream.
pub struct Session {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The subprotocol the server chose.
    pub protocol: String,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// What came on the error channel (v4: a JSON Status).
    pub error: Vec<u8>,
    /// Everything received, by channel number (port-forward uses 0 for data, 1 for errors).
    pub channels: std::collections::BTreeMap<u8, Vec<u8>>,
    /// The server closed the stream.
    pub closed: bool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("protocol", &self.protocol)
            .field("stdout", &self.stdout_text())
            .field("stderr", &String::from_utf8_lossy(&self.stderr))
            .field("error", &String::from_utf8_lossy(&self.error))
            .field("closed", &self.closed)
            .finish()
    }
}

/// The WebSocket URL for a streaming URL from CRI Exec or Attach (`http://host:port/...`).
pub fn ws_url(url: &str) -> Result<String> {
    if let Some(rest) = url.strip_prefix("http://") {
        Ok(format!("ws://{rest}"))
    } else if let Some(rest) = url.strip_prefix("https://") {
        Ok(format!("wss://{rest}"))
    } else {
        bail!("the streaming URL {url:?} is neither http nor https")
    }
}

impl Session {
    /// Connects to a streaming URL from CRI Exec or Attach.
    pub fn connect(url: &str) -> Result<Self> {
        let ws_url = ws_url(url)?;
        let mut request = ws_url
            .as_str()
            .into_client_request()
            .with_context(|| format!("building a WebSocket request for {ws_url}"))?;
        request.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static(PROTOCOLS));
        let (ws, response) = runtime()
            .block_on(async {
                tokio::time::timeout(
                    Duration::from_secs(30),
                    tokio_tungstenite::connect_async(request),
                )
                .await
            })
            .map_err(|_| anyhow!("WebSocket handshake with {ws_url}: no answer within 30 s"))?
            .with_context(|| format!("WebSocket handshake with {ws_url}"))?;
        let protocol = response
            .headers()
            .get("Sec-WebSocket-Protocol")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        Ok(Self {
            ws,
            protocol,
            stdout: Vec::new(),
            stderr: Vec::new(),
            error: Vec::new(),
            channels: Default::default(),
            closed: false,
        })
    }

    pub fn send_frame(&mut self, channel: u8, data: &[u8]) -> Result<()> {
        let mut frame = Vec::with_capacity(data.len() + 1);
        frame.push(channel);
        frame.extend_from_slice(data);
        let ws = &mut self.ws;
        runtime()
            .block_on(async {
                tokio::time::timeout(
                    Duration::from_secs(30),
                    ws.send(Message::Binary(frame.into())),
                )
                .await
            })
            .map_err(|_| anyhow!("sending on channel {channel}: blocked for 30 s"))?
            .with_context(|| format!("sending on channel {channel}"))
    }

    /// Writes `data` to the process's stdin.
    pub fn stdin(&mut self, data: &[u8]) -> Result<()> {
        self.send_frame(STDIN, data)
    }

    /// Resizes the terminal (a ResizePty through containerd).
    pub fn resize(&mut self, width: u16, height: u16) -> Result<()> {
        let json = format!(r#"{{"Width":{width},"Height":{height}}}"#);
        self.send_frame(RESIZE, json.as_bytes())
    }

    /// Closes stdin; only the v5 protocol can (older ones end stdin by closing the stream).
    pub fn close_stdin(&mut self) -> Result<()> {
        if self.protocol != "v5.channel.k8s.io" {
            bail!("the server chose {:?}, which cannot close stdin alone", self.protocol);
        }
        let frame = [CLOSE, STDIN];
        let ws = &mut self.ws;
        runtime().block_on(ws.send(Message::Binary(frame.to_vec().into()))).context("closing stdin")
    }

    /// Reads one message (or times out); false when the stream ended.
    fn read_one(&mut self, until: Instant) -> Result<bool> {
        if self.closed {
            return Ok(false);
        }
        let left = until.saturating_duration_since(Instant::now());
        let ws = &mut self.ws;
        let next = runtime().block_on(async { tokio::time::timeout(left, ws.next()).await });
        let message = match next {
            Err(_) => return Ok(true), // timed out; the caller checks its deadline
            Ok(None) => {
                self.closed = true;
                return Ok(false);
            }
            Ok(Some(Err(e))) => {
                use tokio_tungstenite::tungstenite::Error;
                if matches!(e, Error::ConnectionClosed | Error::AlreadyClosed | Error::Protocol(_))
                {
                    self.closed = true;
                    return Ok(false);
                }
                return Err(e).context("reading from the stream");
            }
            Ok(Some(Ok(m))) => m,
        };
        let data: Vec<u8> = match message {
            Message::Binary(b) => b.to_vec(),
            Message::Text(t) => t.as_bytes().to_vec(),
            Message::Close(_) => {
                self.closed = true;
                return Ok(false);
            }
            _ => return Ok(true),
        };
        let Some((&channel, body)) = data.split_first() else {
            return Ok(true);
        };
        self.channels.entry(channel).or_default().extend_from_slice(body);
        match channel {
            STDOUT => self.stdout.extend_from_slice(body),
            STDERR => self.stderr.extend_from_slice(body),
            ERROR => self.error.extend_from_slice(body),
            _ => {}
        }
        Ok(true)
    }

    /// Reads until `done(self)` holds; fails naming `what` if it does not within `timeout`
    /// or the stream ends first.
    pub fn read_until(
        &mut self,
        timeout: Duration,
        what: &str,
        done: impl Fn(&Self) -> bool,
    ) -> Result<()> {
        let until = Instant::now() + timeout;
        loop {
            if done(self) {
                return Ok(());
            }
            if Instant::now() >= until {
                bail!("waiting for {what}: not seen within {timeout:?}; so far {self:?}");
            }
            if !self.read_one(until)? {
                if done(self) {
                    return Ok(());
                }
                bail!("waiting for {what}: the stream ended first; it carried {self:?}");
            }
        }
    }

    /// Reads until the server closes the stream.
    pub fn wait_closed(&mut self, timeout: Duration) -> Result<()> {
        let until = Instant::now() + timeout;
        while self.read_one(until)? {
            if Instant::now() >= until {
                bail!("the stream is still open after {timeout:?}; so far {self:?}");
            }
        }
        Ok(())
    }

    /// Closes the stream from this side (detach).
    pub fn close(mut self) -> Result<()> {
        let ws = &mut self.ws;
        let _ = runtime()
            .block_on(async { tokio::time::timeout(Duration::from_secs(5), ws.close(None)).await });
        Ok(())
    }

    /// What came on `channel` so far.
    pub fn channel(&self, channel: u8) -> &[u8] {
        self.channels.get(&channel).map_or(&[], Vec::as_slice)
    }

    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// The exit status the error channel reported: `Some(0)` for v4's Success status,
    /// the exit code of a `NonZeroExitCode` status, `None` when nothing (parsable) came.
    pub fn exit_code(&self) -> Option<i32> {
        let status: serde_json::Value = serde_json::from_slice(&self.error).ok()?;
        match status.get("status")?.as_str()? {
            "Success" => Some(0),
            _ => status
                .pointer("/details/causes")?
                .as_array()?
                .iter()
                .find(|c| c.get("reason").and_then(|r| r.as_str()) == Some("ExitCode"))?
                .get("message")?
                .as_str()?
                .parse()
                .ok(),
        }
    }
}
