//! The repository stands alone: nothing in its build files, sources, tests or scripts reads the
//! design brief's folder beside the checkout (the parent folder's `shared`) or on the machine
//! it was written on.
//! A newcomer's clone has no such folder; the vectors the tests need are in `tests/vectors/`.
//! Documentation may mention the brief, so docs are not checked.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository's root: the parent of this crate.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the repository")
        .to_owned()
}

/// The repository's files (tracked, and new ones git does not ignore), relative to the root;
/// without git, every file outside `.git` and build folders.
fn repository_files(root: &Path) -> Vec<PathBuf> {
    let listed = Command::new("git")
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .current_dir(root)
        .output();
    match listed {
        Ok(output) if output.status.success() => output
            .stdout
            .split(|byte| *byte == 0)
            .filter(|name| !name.is_empty())
            .map(|name| PathBuf::from(String::from_utf8_lossy(name).into_owned()))
            .collect(),
        _ => {
            let mut files = Vec::new();
            walk(root, Path::new(""), &mut files);
            files
        }
    }
}

fn walk(root: &Path, relative: &Path, files: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(root.join(relative)).expect("read a repository folder");
    for entry in entries {
        let entry = entry.expect("a folder entry");
        let name = entry.file_name();
        let path = relative.join(&name);
        let file_type = entry.file_type().expect("file type");
        if file_type.is_dir() {
            if name != ".git" && name != "target" {
                walk(root, &path, files);
            }
        } else if file_type.is_file() {
            files.push(path);
        }
    }
}

/// Whether a file is part of the build, the tests or the scripts (and not documentation).
fn is_checked(path: &Path) -> bool {
    let name = path
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or("");
    let extension = path.extension().and_then(|ext| ext.to_str()).unwrap_or("");
    let in_folder = |folder: &str| path.starts_with(folder);
    if extension == "md" {
        return false;
    }
    matches!(
        extension,
        "rs" | "toml"
            | "sh"
            | "py"
            | "proto"
            | "yml"
            | "yaml"
            | "conf"
            | "json"
            | "tsv"
            | "service"
    ) || name.starts_with("Dockerfile")
        || name == "Makefile"
        || name == "Cargo.lock"
        || in_folder(".ci")
        || in_folder("scripts")
        || in_folder("deploy")
}

/// The references a standalone repository must not hold, built by concatenation so this file
/// does not hold them itself.
fn forbidden() -> Vec<String> {
    let folder = ["sha", "red"].concat();
    vec![
        format!("../{folder}"),
        format!("/work/{folder}"),
        format!("{folder}/vectors"),
        format!("{folder}/DESIGN.md"),
    ]
}

#[test]
fn no_build_file_source_test_or_script_reads_the_shared_folder() {
    let root = root();
    let files = repository_files(&root);
    assert!(
        files.iter().any(|path| path.ends_with("Cargo.toml")),
        "the repository's files were not found under {}",
        root.display()
    );
    let forbidden = forbidden();
    let mut offending = Vec::new();
    let mut checked = 0;
    for path in files.iter().filter(|path| is_checked(path)) {
        let Ok(text) = std::fs::read_to_string(root.join(path)) else {
            continue;
        };
        checked += 1;
        for (number, line) in text.lines().enumerate() {
            if forbidden.iter().any(|pattern| line.contains(pattern)) {
                offending.push(format!(
                    "{}:{}: {}",
                    path.display(),
                    number + 1,
                    line.trim()
                ));
            }
        }
    }
    assert!(checked > 50, "only {checked} files were checked");
    assert!(
        offending.is_empty(),
        "these lines depend on a folder outside the repository (copy what they need into it):\n{}",
        offending.join("\n")
    );
}

#[test]
fn the_check_catches_a_reference_to_the_shared_folder() {
    let line = format!(
        "let path = \"{}/gaen-rpi.tsv\";",
        forbidden()[0].clone() + "/vectors"
    );
    assert!(forbidden().iter().any(|pattern| line.contains(pattern)));
    assert!(is_checked(Path::new("matcher/tests/common/mod.rs")));
    assert!(is_checked(Path::new(".ci/run")));
    assert!(is_checked(Path::new("deploy/Dockerfile")));
    assert!(!is_checked(Path::new("docs/DESIGN.md")));
    assert!(!is_checked(Path::new("README.md")));
    assert!(!is_checked(Path::new("deploy/README.md")));
}
