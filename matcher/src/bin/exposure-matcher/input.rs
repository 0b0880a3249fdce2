//! Reading the CLI's input files: tag lists and PEM keys.

use std::path::Path;

use anyhow::{Context, bail};
use exposure_matcher::Tag;

/// One line of a tag list: a tag, with its slot start when the line came from `derive`.
#[derive(Clone, Copy, Debug)]
pub struct TagLine {
    /// Slot start, when the line gave one.
    pub slot_start: Option<u64>,
    /// The tag.
    pub tag: Tag,
}

/// Reads a tag list: one tag per line, either 64 hex digits alone or a `derive` output line
/// (`slot_start<TAB>identifier_hex<TAB>tag_hex`). Blank lines and `#` comments are skipped.
pub fn read_tag_lines(path: &Path) -> anyhow::Result<Vec<TagLine>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut lines = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let parsed = match fields.as_slice() {
            [tag] => Tag::from_hex(tag).map(|tag| TagLine {
                slot_start: None,
                tag,
            }),
            [slot_start, _identifier, tag] => {
                let Ok(slot_start) = slot_start.parse::<u64>() else {
                    bail!(
                        "{}:{}: slot_start must be an integer",
                        path.display(),
                        number + 1
                    );
                };
                Tag::from_hex(tag).map(|tag| TagLine {
                    slot_start: Some(slot_start),
                    tag,
                })
            }
            _ => bail!(
                "{}:{}: expected a 64-digit hex tag or `slot_start identifier tag`",
                path.display(),
                number + 1
            ),
        };
        match parsed {
            Ok(tag_line) => lines.push(tag_line),
            Err(error) => bail!("{}:{}: {error}", path.display(), number + 1),
        }
    }
    Ok(lines)
}

/// Reads a whole text file, naming it on failure.
pub fn read_text(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}
