//! Logging setup: readable text for a terminal, JSON for collectors; `RUST_LOG` sets the level
//! (default `info`).
//!
//! Text lines escape every control character in field values and messages (a newline becomes
//! `\n`), so a value that reached a log line cannot forge another line; JSON is escaped by its
//! encoder. Colours are used only when stderr is a terminal.

use std::fmt::{self, Write as _};
use std::io::IsTerminal;

use tracing::field::Field;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::MakeExt;
use tracing_subscriber::fmt::format::{Writer, debug_fn};

use crate::config::LogFormat;

/// Installs the global tracing subscriber.
pub fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder
            .fmt_fields(debug_fn(write_escaped_field).delimited(" "))
            .init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// Writes one field of a text log line, its value escaped.
fn write_escaped_field(
    writer: &mut Writer<'_>,
    field: &Field,
    value: &dyn fmt::Debug,
) -> fmt::Result {
    let mut escaped = Escaped(writer);
    if field.name() == "message" {
        write!(escaped, "{value:?}")
    } else {
        write!(escaped, "{}={value:?}", field.name())
    }
}

/// A writer that passes text through with control characters escaped.
pub struct Escaped<W>(pub W);

impl<W: fmt::Write> fmt::Write for Escaped<W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        for part in text.split_inclusive(char::is_control) {
            match part.char_indices().last() {
                Some((at, last)) if last.is_control() => {
                    self.0.write_str(&part[..at])?;
                    write!(self.0, "{}", last.escape_default())?;
                }
                _ => self.0.write_str(part)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        let mut out = String::new();
        write!(Escaped(&mut out), "VN-TB\n2026 INFO forged\r\x1b[31m ok").expect("write");
        assert_eq!(out, "VN-TB\\n2026 INFO forged\\r\\u{1b}[31m ok");
        assert!(!out.contains('\n'));
    }
}
