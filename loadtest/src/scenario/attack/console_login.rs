//! `console-login`: sign-in forms posted to the staff console (`--console`, plaintext HTTP/1.1
//! on loopback) as fast as it answers, one form at a time on each of `attackers` keep-alive
//! connections. Each form names an address no account has; the console checks its password
//! against a dummy Argon2id hash all the same (DESIGN.md section 13), so every attempt costs the
//! server what a real sign-in costs. It measures the lever issue 19 names: can sign-ins starve
//! uploads and polls? With the server's per-network budget
//! (`--console-logins-per-network-per-hour`) lifted, the forms stand for an attacker with many
//! networks; with it in place, most are answered 429 before any hashing.
//!
//! Every answer is counted by its HTTP status (`401` checked and refused, `503` the password
//! checks were busy, `429` over the network's budget) and timed from the request's first byte
//! to the answer's last; [`super::AttackStats::answers`] gives the percentiles, so the same run
//! tells how many checks a second the console holds beside the mix and how long each took.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use super::{AttackPlan, Counters, RENEW_PAUSE, Stop, raw};
use crate::target::Target;

/// The longest the attacker waits for one answer before it drops the connection.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest answer body read (the sign-in page is a few kilobytes).
const MAX_BODY: usize = 1 << 20;

/// Starts one task per attacking connection.
pub(super) fn spawn(
    plan: &AttackPlan,
    counters: &Arc<Counters>,
    stop: &Stop,
    tasks: &mut JoinSet<()>,
) -> anyhow::Result<()> {
    let console = plan
        .console
        .clone()
        .ok_or_else(|| anyhow::anyhow!("the console-login attack needs --console"))?;
    for worker in 0..plan.attackers {
        let console = console.clone();
        let counters = Arc::clone(counters);
        let mut stop = stop.clone();
        tasks.spawn(async move {
            let mut sent = 0_u64;
            while !stop.is_stopped() && counters.take_attempt() {
                let Ok(stream) = raw::tcp_connect(&console).await else {
                    counters.connect_failed();
                    if !stop.pause(RENEW_PAUSE).await {
                        return;
                    }
                    continue;
                };
                let _held = counters.connection_opened();
                let mut stream = BufReader::new(stream);
                // Forms on this connection until the server closes it or the attack stops.
                while !stop.is_stopped() && counters.take_attempt() {
                    sent += 1;
                    let form = sign_in_form(&console, worker, sent);
                    let _call = counters.call_started();
                    let started = Instant::now();
                    let answered = tokio::select! {
                        answered = tokio::time::timeout(ANSWER_TIMEOUT, exchange(&mut stream, &form)) => answered,
                        () = stop.wait() => return,
                    };
                    match answered {
                        Ok(Ok(answer)) => {
                            counters.answered(&answer.status.to_string(), started.elapsed());
                            if answer.close {
                                counters.closed_by_server();
                                break;
                            }
                        }
                        Ok(Err(_)) => {
                            counters.ended_by_server("closed");
                            counters.closed_by_server();
                            break;
                        }
                        Err(_) => {
                            counters.outcome("timeout");
                            break;
                        }
                    }
                }
                if !stop.pause(RENEW_PAUSE).await {
                    return;
                }
            }
        });
    }
    Ok(())
}

/// Returns one sign-in request: an address no account has, a wrong password, a code.
fn sign_in_form(console: &Target, worker: usize, sent: u64) -> Vec<u8> {
    let body = format!(
        "email=nobody-{worker}-{sent}%40attack.invalid&password=not-the-password-{sent}&totp=000000"
    );
    format!(
        "POST /login HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {length}\r\n\r\n{body}",
        host = console
            .uri()
            .authority()
            .map_or_else(|| console.host().to_owned(), ToString::to_string),
        length = body.len(),
    )
    .into_bytes()
}

/// The parts of an HTTP/1.1 answer the attack counts.
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    status: u16,
    /// The server said it closes the connection after this answer.
    close: bool,
}

/// Sends `request` and reads one whole answer (status line, headers, a `Content-Length` body).
async fn exchange(stream: &mut BufReader<TcpStream>, request: &[u8]) -> std::io::Result<Answer> {
    stream.get_mut().write_all(request).await?;
    read_answer(stream).await
}

async fn read_answer<R: tokio::io::AsyncBufRead + Unpin>(
    stream: &mut R,
) -> std::io::Result<Answer> {
    let invalid =
        |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let mut line = String::new();
    if stream.read_line(&mut line).await? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| invalid("status line"))?;
    let mut length = 0_usize;
    let mut close = false;
    loop {
        line.clear();
        if stream.read_line(&mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else {
            return Err(invalid("header line"));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = value.parse().map_err(|_| invalid("content-length"))?;
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        }
    }
    if length > MAX_BODY {
        return Err(invalid("body too large"));
    }
    let mut body = vec![0; length];
    stream.read_exact(&mut body).await?;
    Ok(Answer { status, close })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_answer_is_read_whole_and_the_next_one_after_it() {
        let bytes: &[u8] = b"HTTP/1.1 401 Unauthorized\r\ncontent-type: text/html\r\nContent-Length: 5\r\n\r\nhello\
HTTP/1.1 503 Service Unavailable\r\nretry-after: 5\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
        let mut reader = BufReader::new(bytes);
        assert_eq!(
            read_answer(&mut reader).await.expect("first"),
            Answer {
                status: 401,
                close: false
            }
        );
        assert_eq!(
            read_answer(&mut reader).await.expect("second"),
            Answer {
                status: 503,
                close: true
            }
        );
        assert!(read_answer(&mut reader).await.is_err(), "nothing more");
    }

    #[test]
    fn the_form_is_a_complete_request_with_its_length() {
        let console = Target::parse("http://127.0.0.1:8081", false).expect("target");
        let request = String::from_utf8(sign_in_form(&console, 3, 9)).expect("text");
        let (head, body) = request.split_once("\r\n\r\n").expect("head and body");
        assert!(
            head.starts_with("POST /login HTTP/1.1\r\nHost: 127.0.0.1:8081\r\n"),
            "{head}"
        );
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{head}"
        );
        assert_eq!(
            body,
            "email=nobody-3-9%40attack.invalid&password=not-the-password-9&totp=000000"
        );
    }
}
