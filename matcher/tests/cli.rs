//! The `exposure-matcher` binary, run as a user would: derive vectors, usage errors (exit 64),
//! and the keygen → build → inspect → check round trip.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_exposure-matcher"))
        .args(args)
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn path(dir: &Path, name: &str) -> String {
    dir.join(name).to_str().unwrap().to_owned()
}

#[test]
fn derive_gaen_prints_the_official_vectors() {
    let output = run(&[
        "derive",
        "--scheme",
        "gaen",
        "--key",
        "75c734c6dd1a782de7a965da5eb93125",
        "--start-interval",
        "2642976",
    ]);
    assert!(output.status.success());
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 144);
    let vectors = common::gaen_vectors();
    for (row, line) in vectors
        .lines()
        .filter(|line| !line.starts_with('#'))
        .zip(&lines)
    {
        let fields: Vec<&str> = row.split('\t').collect();
        let slot = fields[1].parse::<u64>().unwrap() * 600;
        assert_eq!(*line, format!("{slot}\t{}\t{}", fields[2], fields[3]));
    }
}

#[test]
fn derive_bluezone_and_static_print_the_design_vectors() {
    let output = run(&[
        "derive",
        "--scheme",
        "bluezone",
        "--key",
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
        "--day",
        "20454",
    ]);
    assert!(output.status.success());
    let text = stdout(&output);
    assert_eq!(text.lines().count(), 96, "the whole day by default");
    assert_eq!(
        text.lines().next().unwrap(),
        "1767225600\t130cea6472130c185d8643df\t23322461d363d118cfe53475c26cf1c2ea139caa5250c89a756f07d908ef14c8"
    );
    let windowed = run(&[
        "derive",
        "--scheme",
        "bluezone",
        "--key",
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
        "--day",
        "20454",
        "--sub-keys",
        "96",
        "--from",
        "1767225600",
        "--until",
        "1767227400",
    ]);
    assert_eq!(stdout(&windowed).lines().count(), 2);
    let output = run(&[
        "derive",
        "--scheme",
        "static",
        "--id",
        "414231324344",
        "--from",
        "1767225600",
        "--until",
        "1767226500",
    ]);
    assert!(output.status.success());
    assert_eq!(
        stdout(&output),
        "1767225600\t414231324344\t063be4d45d30d6dbba399bae0c3520fa5c6121edb8c68e8e2eb618025487ff7b\n"
    );
}

#[test]
fn usage_errors_exit_64_with_a_message() {
    let cases: &[&[&str]] = &[
        &[],
        &["frobnicate"],
        &["derive"],
        &["derive", "--scheme", "gaen", "--start-interval", "1"],
        &[
            "derive",
            "--scheme",
            "gaen",
            "--key",
            "zz",
            "--start-interval",
            "1",
        ],
        &[
            "derive",
            "--scheme",
            "gaen",
            "--key",
            "00",
            "--start-interval",
            "1",
        ],
        &[
            "derive",
            "--scheme",
            "gaen",
            "--key",
            "75c734c6dd1a782de7a965da5eb93125",
            "--start-interval",
            "1",
            "--period",
            "0",
        ],
        &[
            "derive",
            "--scheme",
            "gaen",
            "--key",
            "75c734c6dd1a782de7a965da5eb93125",
            "--start-interval",
            "1",
            "--day",
            "3",
        ],
        &[
            "derive", "--scheme", "bluezone", "--key", "00", "--day", "1",
        ],
        &["derive", "--scheme", "static", "--id", "41", "--from", "1"],
        &[
            "derive", "--scheme", "static", "--id", "", "--from", "1", "--until", "2",
        ],
        &["derive", "--scheme", "rot13"],
        &["inspect"],
        &["build", "--tags", "x"],
    ];
    for args in cases {
        let output = run(args);
        assert_eq!(output.status.code(), Some(64), "{args:?}");
        assert!(!output.stderr.is_empty(), "{args:?} gives a message");
    }
    let output = run(&["derive", "--scheme", "gaen", "--start-interval", "1"]);
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("--key is required for --scheme gaen")
    );
}

#[test]
fn help_explains_every_subcommand() {
    let output = run(&["--help"]);
    assert_eq!(output.status.code(), Some(0));
    let text = stdout(&output);
    for subcommand in ["derive", "inspect", "check", "build", "keygen"] {
        assert!(text.contains(subcommand), "{subcommand} listed");
        let output = run(&[subcommand, "--help"]);
        assert_eq!(output.status.code(), Some(0), "{subcommand} --help");
    }
}

#[test]
fn keygen_build_inspect_check_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let key = path(dir.path(), "key.pem");
    let output = run(&["keygen", "--out", &key]);
    assert!(output.status.success());
    let public_pem = stdout(&output);
    assert!(public_pem.starts_with("-----BEGIN PUBLIC KEY-----"));
    let public = path(dir.path(), "public.pem");
    std::fs::write(&public, &public_pem).unwrap();
    assert_eq!(
        run(&["keygen", "--out", &key]).status.code(),
        Some(1),
        "never overwrites a key"
    );

    let derived = run(&[
        "derive",
        "--scheme",
        "gaen",
        "--key",
        "75c734c6dd1a782de7a965da5eb93125",
        "--start-interval",
        "2642976",
    ]);
    let tags = path(dir.path(), "tags.tsv");
    std::fs::write(&tags, &derived.stdout).unwrap();
    let batch = path(dir.path(), "batch.bin");
    let build = |width: &str, out: &str| {
        run(&[
            "build",
            "--tags",
            &tags,
            "--out",
            out,
            "--region",
            "VN-TB",
            "--signing-key",
            &key,
            "--fingerprint",
            width,
            "--min-elements",
            "1000",
            "--sequence",
            "7",
            "--created-at",
            "1767232800",
            "--decoy-seed",
            "5",
        ])
    };
    let output = build("16", &batch);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let again = path(dir.path(), "again.bin");
    build("16", &again);
    assert_eq!(
        std::fs::read(&batch).unwrap(),
        std::fs::read(&again).unwrap(),
        "seeded builds are byte-identical"
    );
    assert_eq!(build("12", &again).status.code(), Some(64));

    let output = run(&["inspect", &batch, "--public-key", &public]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = stdout(&output);
    for expected in [
        "region: VN-TB",
        "sequence: 7",
        "element_count: 1000",
        "slot_min: 1585785600",
        "slot_max: 1585871400",
        "filter_kind: 2 (16-bit fingerprints)",
        "created_at: 1767232800",
        "signature: valid",
        "bits_per_element: ",
    ] {
        assert!(text.contains(expected), "{expected:?} in {text}");
    }

    // Check: the first three real tags plus one stranger; exactly the real ones come back.
    let real: Vec<String> = stdout(&derived)
        .lines()
        .take(3)
        .map(|line| line.split('\t').nth(2).unwrap().to_owned())
        .collect();
    let queries = path(dir.path(), "queries.txt");
    std::fs::write(
        &queries,
        format!("{}\n{}\n", real.join("\n"), "ab".repeat(32)),
    )
    .unwrap();
    let output = run(&["check", &batch, "--tags", &queries, "--public-key", &public]);
    assert!(output.status.success());
    assert_eq!(stdout(&output), format!("{}\n", real.join("\n")));

    // Another key, a corrupted file: exit 1 with a reason.
    let other_key = path(dir.path(), "other.pem");
    let other_public = path(dir.path(), "other-public.pem");
    std::fs::write(
        &other_public,
        stdout(&run(&["keygen", "--out", &other_key])),
    )
    .unwrap();
    let output = run(&["inspect", &batch, "--public-key", &other_public]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout(&output).contains("signature: INVALID"));
    let mut bytes = std::fs::read(&batch).unwrap();
    bytes[0] = b'X';
    let corrupted = path(dir.path(), "corrupted.bin");
    std::fs::write(&corrupted, bytes).unwrap();
    let output = run(&["inspect", &corrupted]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("magic"));
}
