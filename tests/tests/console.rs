//! The staff console (DESIGN.md section 13) against a real server on loopback, driven over
//! real HTTP by a cookie-keeping client: accounts from `exposure-server user add` on the
//! running server, enrolment with a password and a TOTP second factor whose codes the test
//! computes itself (its own RFC 6238, checked first against the RFC's published vectors),
//! sign-in, the one message for every failure, lockout, the per-network attempt budget,
//! sessions and their CSRF tokens, roles, a code issued in the browser that uploads over the
//! real gRPC API, and the Vietnamese pages. The server runs on a manual clock, so TOTP steps,
//! lock lengths and session timeouts are moved through rather than waited for.

use std::net::IpAddr;

use exposure_proto::v1::DiagnosisKey;
use exposure_server::Clock;
use exposure_server::admin::user::{Role, UserCommand};
use exposure_server::admin::{AdminError, DataDir};
use exposure_server::storage::Store;
use exposure_server::storage::console::AuditRecord;
use exposure_tests::console_client::{
    Answer, Browser, base32_decode, field_value, text_of_class, totp,
};
use exposure_tests::fixtures::{self, gaen, key16};
use exposure_tests::{REGION, TEST_NOW, TestServer};

const DAY: u64 = 86_400;
/// A password of 23 characters, on no list of common ones.
const PASSWORD: &str = "Mùa xuân ở Thái Bình 26";
/// The session cookie's name on plaintext loopback (see `console::session`).
const SESSION_COOKIE: &str = "exposure-session";

/// An enrolled member of staff, as the test knows them.
struct Staff {
    email: String,
    secret: Vec<u8>,
}

async fn start() -> TestServer {
    TestServer::start_with(Clock::manual(TEST_NOW), |_| {}).await
}

/// Returns the id of the harness's authority (read beside the running server).
fn authority_id(server: &TestServer) -> String {
    let store = Store::open_read_only(server.data_dir()).expect("read-only store");
    let authorities = store.list_authorities().expect("authorities");
    assert_eq!(authorities.len(), 1, "the harness made one authority");
    authorities[0].id.clone()
}

/// Runs `exposure-server user add` on the running server's data directory.
async fn user_add(
    server: &TestServer,
    authority: String,
    email: &str,
    roles: Vec<Role>,
) -> Result<String, AdminError> {
    // The console answers once the server has opened its store: from then on the command
    // goes through the running server's inbox.
    let answer = Browser::new(&server.console_url).get("/login").await;
    assert_eq!(answer.status, 200);
    let command = UserCommand::Add {
        data: DataDir {
            data_dir: server.data_dir().to_owned(),
        },
        authority,
        email: email.to_owned(),
        roles,
        console_url: server.console_url.clone(),
    };
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        exposure_server::admin::user(command, &mut out)
            .map(|()| String::from_utf8(out).expect("utf-8 report"))
    })
    .await
    .expect("user add task")
}

/// Adds an account with `roles` and enrols it through its link; returns what the person knows.
async fn enrol(server: &TestServer, browser: &mut Browser, email: &str, roles: Vec<Role>) -> Staff {
    let report = user_add(server, authority_id(server), email, roles)
        .await
        .expect("user add");
    assert!(
        report.contains("the running server has applied the change"),
        "{report}"
    );
    let link = report.lines().last().expect("the link is the last line");
    let path = link
        .strip_prefix(&server.console_url)
        .unwrap_or_else(|| panic!("link {link} is not on the console"));
    assert!(path.starts_with("/enrol?token="), "{path}");

    let page = browser.get(path).await;
    assert_eq!(page.status, 200, "{}", page.text());
    assert!(page.text().contains("<svg"), "the key is also a QR code");
    let secret_text = text_of_class(page.text(), "secret").expect("the key as text");
    let secret = base32_decode(&secret_text);
    assert_eq!(secret.len(), 20, "a 160-bit key: {secret_text}");
    let token = field_value(page.text(), "token");
    let now = server.clock.now();
    let code = totp(&secret, now, 6);

    // A common password is refused, and so is a code of the wrong step.
    let common = browser
        .post(
            "/enrol",
            &[
                ("token", &token),
                ("password", "Password1234"),
                ("password_again", "Password1234"),
                ("totp", &code),
            ],
        )
        .await;
    assert_eq!(common.status, 400);
    assert!(common.text().contains("too common"), "{}", common.text());
    let stale = browser
        .post(
            "/enrol",
            &[
                ("token", &token),
                ("password", PASSWORD),
                ("password_again", PASSWORD),
                ("totp", &totp(&secret, now - 90, 6)),
            ],
        )
        .await;
    assert_eq!(stale.status, 400);
    assert!(
        stale.text().contains("The code is not right"),
        "{}",
        stale.text()
    );

    let done = browser
        .post(
            "/enrol",
            &[
                ("token", &token),
                ("password", PASSWORD),
                ("password_again", PASSWORD),
                ("totp", &code),
            ],
        )
        .await;
    assert_eq!(done.status, 200, "{}", done.text());
    assert!(
        done.text().contains("Your account is ready"),
        "{}",
        done.text()
    );
    // The link works once.
    assert_eq!(browser.get(path).await.status, 404);
    Staff {
        email: email.to_owned(),
        secret,
    }
}

/// Signs in with `password` and the TOTP code of a fresh time step (each step's code is
/// accepted once, so the clock moves on by one step first).
async fn log_in_with(
    server: &TestServer,
    browser: &mut Browser,
    staff: &Staff,
    password: &str,
) -> Answer {
    server.clock.advance(30);
    let code = totp(&staff.secret, server.clock.now(), 6);
    browser
        .post(
            "/login",
            &[
                ("email", &staff.email),
                ("password", password),
                ("totp", &code),
            ],
        )
        .await
}

async fn log_in(server: &TestServer, browser: &mut Browser, staff: &Staff) -> Answer {
    let answer = log_in_with(server, browser, staff, PASSWORD).await;
    assert_eq!(answer.status, 303, "{}", answer.text());
    assert_eq!(answer.header("location"), "/");
    answer
}

/// Returns the text of the page's error paragraph.
fn error_text(answer: &Answer) -> String {
    text_of_class(answer.text(), "error")
        .unwrap_or_else(|| panic!("no error on the page: {}", answer.text()))
}

fn yesterday_key(byte: u8) -> DiagnosisKey {
    gaen(key16(byte), ((TEST_NOW / DAY - 1) * 144) as u32, 144)
}

/// Returns the audit records of `authority`, oldest first, after checking that the first is
/// the `user add` of the command line (which reads the system clock, not the test's, so it is
/// left out of the order).
async fn audit(dir: &tempfile::TempDir, authority: &str) -> Vec<AuditRecord> {
    let records = Store::open(dir.path())
        .expect("reopen")
        .audit_records(authority)
        .expect("audit records");
    let (added, records): (Vec<AuditRecord>, Vec<AuditRecord>) = records
        .into_iter()
        .partition(|record| record.action == "user_add");
    assert_eq!(added.len(), 1, "{added:?}");
    assert_eq!(added[0].network, "command line");
    records
}

#[test]
fn the_tests_own_totp_matches_rfc_6238() {
    // RFC 6238 Appendix B, SHA-1, secret "12345678901234567890" (ASCII).
    let secret = base32_decode("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
    assert_eq!(secret, b"12345678901234567890");
    for (time, expected) in [
        (59, "94287082"),
        (1_111_111_109, "07081804"),
        (1_111_111_111, "14050471"),
        (1_234_567_890, "89005924"),
        (2_000_000_000, "69279037"),
        (20_000_000_000, "65353130"),
    ] {
        assert_eq!(totp(&secret, time, 8), expected, "T = {time}");
    }
    assert_eq!(totp(&secret, 1_111_111_109, 6), "081804");
}

#[tokio::test]
async fn an_issuer_enrols_signs_in_and_issues_a_code_that_uploads() {
    let server = start().await;
    let mut browser = Browser::new(&server.console_url);
    assert_eq!(browser.get("/").await.header("location"), "/login");
    // Addresses are read case-insensitively, at `user add` and at login alike.
    let staff = enrol(
        &server,
        &mut browser,
        "Nurse.Lan@Example.org",
        vec![Role::Issuer],
    )
    .await;

    let signed = log_in(&server, &mut browser, &staff).await;
    let cookie = signed.header("set-cookie");
    assert!(
        cookie.starts_with(&format!("{SESSION_COOKIE}=")),
        "{cookie}"
    );
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attribute), "{attribute} missing: {cookie}");
    }
    let session = browser
        .cookie(SESSION_COOKIE)
        .expect("session cookie")
        .to_owned();
    assert_eq!(session.len(), 64, "256 bits in hex");

    let home = browser.get("/").await;
    assert_eq!(home.status, 200, "{}", home.text());
    assert!(home.text().contains(REGION));
    let csrf = field_value(home.text(), "csrf");

    // Without the session's CSRF token, nothing is issued.
    let forged = browser
        .post(
            "/codes",
            &[
                ("region", REGION),
                ("report_type", "confirmed_test"),
                ("valid_hours", "24"),
            ],
        )
        .await;
    assert_eq!(forged.status, 403, "{}", forged.text());
    assert_eq!(text_of_class(forged.text(), "code"), None);
    let wrong = browser
        .post(
            "/codes",
            &[
                ("csrf", &"0".repeat(64)),
                ("region", REGION),
                ("valid_hours", "24"),
            ],
        )
        .await;
    assert_eq!(wrong.status, 403);

    let issued = browser
        .post(
            "/codes",
            &[
                ("csrf", &csrf),
                ("region", REGION),
                ("report_type", "confirmed_test"),
                ("valid_hours", "24"),
            ],
        )
        .await;
    assert_eq!(issued.status, 200, "{}", issued.text());
    assert_eq!(issued.header("cache-control"), "no-store");
    let policy = issued.header("content-security-policy");
    assert!(policy.contains("default-src 'self'"), "{policy}");
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    let code = text_of_class(issued.text(), "code").expect("the code, large");
    assert_eq!(code.len(), 11, "XXXXX-XXXXX: {code}");
    assert!(issued.text().contains("<svg"), "a QR code beside it");
    // Valid 24 h from the server's clock: 2026-01-11 12:00 UTC, give or take the steps moved.
    assert!(
        issued.text().contains("2026-01-11 12:"),
        "{}",
        issued.text()
    );

    // The patient's phone uploads with it over the real gRPC API.
    let mut upload = fixtures::upload("console-code", vec![yesterday_key(0x61)]);
    upload.region = String::new();
    let answer = server
        .upload_client()
        .await
        .upload_diagnosis_keys(fixtures::with_code(upload, &code))
        .await
        .expect("the console's code uploads")
        .into_inner();
    assert_eq!(answer.keys_accepted, 1);

    // Logout ends the session: the old cookie no longer signs in.
    let out = browser.post("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(out.status, 303);
    assert_eq!(
        browser.cookie(SESSION_COOKIE),
        None,
        "the cookie is cleared"
    );
    browser.set_cookie(SESSION_COOKIE, &session);
    assert_eq!(browser.get("/").await.header("location"), "/login");

    let authority = authority_id(&server);
    let dir = server.stop().await;
    let records = audit(&dir, &authority).await;
    let actions: Vec<&str> = records.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(actions, ["enrol", "login", "code_issue"], "{records:?}");
    let issue = &records[2];
    assert_eq!(issue.email, "nurse.lan@example.org");
    assert_eq!(issue.object, format!("1 code, CONFIRMED_TEST, {REGION}"));
    assert_eq!(issue.network, "127.0.0.1");
    assert!(
        records
            .iter()
            .all(|record| !format!("{record:?}").contains(&code)),
        "no audit record holds the code"
    );
    let store = Store::open(dir.path()).expect("reopen");
    let codes = store.codes_of_authority(&authority).expect("codes");
    assert_eq!(codes.len(), 1, "one code issued, none by the refused posts");
    assert!(codes[0].consumed_at > 0, "and it was used");
}

#[tokio::test]
async fn every_login_failure_says_the_same_and_five_in_a_row_lock_the_account() {
    let server = start().await;
    let mut browser = Browser::new(&server.console_url);
    let staff = enrol(
        &server,
        &mut browser,
        "doctor.minh@example.org",
        vec![Role::Issuer],
    )
    .await;

    let wrong_password = log_in_with(&server, &mut browser, &staff, "not the password").await;
    assert_eq!(wrong_password.status, 401);
    server.clock.advance(30);
    let wrong_code = browser
        .post(
            "/login",
            &[
                ("email", &staff.email),
                ("password", PASSWORD),
                ("totp", "000000"),
            ],
        )
        .await;
    assert_eq!(wrong_code.status, 401);
    let nobody = browser
        .post(
            "/login",
            &[
                ("email", "nobody@example.org"),
                ("password", PASSWORD),
                ("totp", "123456"),
            ],
        )
        .await;
    assert_eq!(nobody.status, 401);
    let message = error_text(&wrong_password);
    assert_eq!(
        error_text(&wrong_code),
        message,
        "one message for every failure"
    );
    assert_eq!(error_text(&nobody), message);
    assert_eq!(wrong_password.body, wrong_code.body, "the very same page");

    // Three more failures make five in a row: the account locks, and the right password
    // and code are refused with the same message.
    for _ in 0..3 {
        assert_eq!(
            log_in_with(&server, &mut browser, &staff, "still wrong")
                .await
                .status,
            401
        );
    }
    let locked = log_in_with(&server, &mut browser, &staff, PASSWORD).await;
    assert_eq!(locked.status, 401, "locked");
    assert_eq!(error_text(&locked), message);
    assert_eq!(browser.cookie(SESSION_COOKIE), None);

    // 15 minutes after the lock it opens.
    server.clock.advance(15 * 60);
    log_in(&server, &mut browser, &staff).await;

    let authority = authority_id(&server);
    let dir = server.stop().await;
    let records = audit(&dir, &authority).await;
    let summary: Vec<(&str, &str)> = records
        .iter()
        .map(|record| (record.action.as_str(), record.result.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            ("enrol", "ok"),
            ("login_failed", "wrong password"),
            ("login_failed", "wrong or reused code"),
            ("login_failed", "wrong password"),
            ("login_failed", "wrong password"),
            ("login_failed", "wrong password"),
            ("lock", "ok"),
            ("login_failed", "account locked"),
            ("login", "ok"),
        ],
        "{records:?}"
    );
    assert_eq!(records[6].object, "locked for 15 min");
}

#[tokio::test]
async fn a_viewer_gets_403_and_nothing_is_issued() {
    let server = start().await;
    let mut browser = Browser::new(&server.console_url);
    let staff = enrol(
        &server,
        &mut browser,
        "viewer@example.org",
        vec![Role::Viewer],
    )
    .await;
    log_in(&server, &mut browser, &staff).await;
    let home = browser.get("/").await;
    assert_eq!(home.status, 200);
    assert!(!home.text().contains("action=\"/codes\""), "no issue form");
    let csrf = field_value(home.text(), "csrf");
    let refused = browser
        .post(
            "/codes",
            &[
                ("csrf", &csrf),
                ("region", REGION),
                ("report_type", "confirmed_test"),
                ("valid_hours", "24"),
            ],
        )
        .await;
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert!(
        refused.text().contains("may not issue codes"),
        "{}",
        refused.text()
    );
    assert_eq!(text_of_class(refused.text(), "code"), None);

    let authority = authority_id(&server);
    let dir = server.stop().await;
    let store = Store::open(dir.path()).expect("reopen");
    assert!(
        store
            .codes_of_authority(&authority)
            .expect("codes")
            .is_empty()
    );
}

#[tokio::test]
async fn accept_language_vi_gives_the_vietnamese_pages_and_the_switch_remembers() {
    let server = start().await;
    let mut browser = Browser::new(&server.console_url);
    let english = browser.get("/login").await;
    assert!(
        english.text().contains("<html lang=\"en\">"),
        "{}",
        english.text()
    );
    assert!(english.text().contains("Sign in"));

    browser.accept_language = Some("vi-VN,vi;q=0.9,en;q=0.5".into());
    let vietnamese = browser.get("/login").await;
    assert!(
        vietnamese.text().contains("<html lang=\"vi\">"),
        "{}",
        vietnamese.text()
    );
    assert!(vietnamese.text().contains("Đăng nhập"));
    assert!(vietnamese.text().contains("Mật khẩu"));
    let failed = browser
        .post(
            "/login",
            &[("email", "a@example.org"), ("password", "x"), ("totp", "1")],
        )
        .await;
    assert!(
        failed.text().contains("Email, mật khẩu hoặc mã không đúng"),
        "{}",
        failed.text()
    );

    // The switch wins over the header, and is remembered.
    let switched = browser.get("/login?lang=en").await;
    assert!(switched.text().contains("<html lang=\"en\">"));
    assert_eq!(browser.cookie("exposure-lang"), Some("en"));
    assert!(
        browser
            .get("/login")
            .await
            .text()
            .contains("<html lang=\"en\">")
    );
}

#[tokio::test]
async fn login_attempts_are_limited_per_client_network() {
    let server = TestServer::start_with(Clock::manual(TEST_NOW), |config| {
        config.console_logins_per_network_per_hour = 3;
    })
    .await;
    let mut first = Browser::from_address(&server.console_url, IpAddr::from([127, 0, 0, 1]));
    let attempt = [
        ("email", "a@example.org"),
        ("password", "wrong password"),
        ("totp", "123456"),
    ];
    for _ in 0..3 {
        assert_eq!(first.post("/login", &attempt).await.status, 401);
    }
    let limited = first.post("/login", &attempt).await;
    assert_eq!(limited.status, 429);
    assert!(error_text(&limited).contains("Too many sign-in attempts"));
    // Another network has its own budget.
    let mut second = Browser::from_address(&server.console_url, IpAddr::from([127, 0, 0, 2]));
    assert_eq!(second.post("/login", &attempt).await.status, 401);
}

#[tokio::test]
async fn an_idle_session_ends_after_30_minutes() {
    let server = start().await;
    let mut browser = Browser::new(&server.console_url);
    let staff = enrol(
        &server,
        &mut browser,
        "idle@example.org",
        vec![Role::Issuer],
    )
    .await;
    log_in(&server, &mut browser, &staff).await;
    server.clock.advance(29 * 60);
    assert_eq!(
        browser.get("/").await.status,
        200,
        "29 minutes idle: still signed in"
    );
    server.clock.advance(29 * 60);
    assert_eq!(
        browser.get("/").await.status,
        200,
        "each request moves the idle deadline"
    );
    server.clock.advance(31 * 60);
    assert_eq!(browser.get("/").await.header("location"), "/login");
}

#[tokio::test]
async fn user_add_names_a_bad_authority_or_address() {
    let server = start().await;
    let unknown = user_add(
        &server,
        "no-such-id".into(),
        "a@example.org",
        vec![Role::Admin],
    )
    .await;
    match unknown {
        Err(AdminError::Usage(message)) => assert!(message.contains("--authority"), "{message}"),
        other => panic!("expected a usage error, got {other:?}"),
    }
    let bad = user_add(
        &server,
        authority_id(&server),
        "not an address",
        vec![Role::Admin],
    )
    .await;
    match bad {
        Err(AdminError::Usage(message)) => assert!(message.contains("--email"), "{message}"),
        other => panic!("expected a usage error, got {other:?}"),
    }
    user_add(
        &server,
        authority_id(&server),
        "twice@example.org",
        vec![Role::Issuer],
    )
    .await
    .expect("first");
    let again = user_add(
        &server,
        authority_id(&server),
        "twice@example.org",
        vec![Role::Issuer],
    )
    .await;
    assert!(matches!(again, Err(AdminError::Usage(_))), "{again:?}");
}

#[tokio::test]
async fn past_the_daily_quota_of_an_account_the_page_says_when_it_resets() {
    let server = TestServer::start_with(Clock::manual(TEST_NOW), |config| {
        config.console_codes_per_user_per_day = 2;
    })
    .await;
    let mut browser = Browser::new(&server.console_url);
    let staff = enrol(
        &server,
        &mut browser,
        "busy@example.org",
        vec![Role::Issuer],
    )
    .await;
    log_in(&server, &mut browser, &staff).await;
    let csrf = field_value(browser.get("/").await.text(), "csrf");
    let form = [
        ("csrf", csrf.as_str()),
        ("region", REGION),
        ("report_type", "self_report"),
        ("valid_hours", "2"),
    ];
    for _ in 0..2 {
        let issued = browser.post("/codes", &form).await;
        assert_eq!(issued.status, 200, "{}", issued.text());
    }
    let refused = browser.post("/codes", &form).await;
    assert_eq!(refused.status, 429, "{}", refused.text());
    assert_eq!(text_of_class(refused.text(), "code"), None);
    // TEST_NOW is 2026-01-10 12:00 UTC: the quota resets at the next midnight UTC.
    assert!(
        error_text(&refused).contains("resets at 2026-01-11 00:00 UTC"),
        "{}",
        refused.text()
    );
    // The next day (the session has ended by then: sign in again), a bad validity names its
    // field and costs nothing of the quota.
    server.clock.advance(DAY);
    log_in(&server, &mut browser, &staff).await;
    let csrf = field_value(browser.get("/").await.text(), "csrf");
    let form = [
        ("csrf", csrf.as_str()),
        ("region", REGION),
        ("report_type", "self_report"),
        ("valid_hours", "2"),
    ];
    let bad = browser
        .post(
            "/codes",
            &[
                ("csrf", csrf.as_str()),
                ("region", REGION),
                ("valid_hours", "0"),
            ],
        )
        .await;
    assert_eq!(bad.status, 400);
    assert!(error_text(&bad).contains("valid_hours"), "{}", bad.text());
    for _ in 0..2 {
        assert_eq!(
            browser.post("/codes", &form).await.status,
            200,
            "a new day, a new quota"
        );
    }
}

#[tokio::test]
async fn backup_and_restore_keep_accounts_and_the_audit_log_and_end_sessions() {
    use exposure_server::admin::backup::{BackupCommand, RestoreCommand};
    let server = start().await;
    let authority = authority_id(&server);
    let mut browser = Browser::new(&server.console_url);
    let staff = enrol(
        &server,
        &mut browser,
        "kept@example.org",
        vec![Role::Issuer],
    )
    .await;
    log_in(&server, &mut browser, &staff).await;
    let session = browser
        .cookie(SESSION_COOKIE)
        .expect("signed in")
        .to_owned();

    let root = tempfile::tempdir().expect("backup root");
    // A sealed backup, which holds the signing keys the restored server starts with.
    let key_file = root.path().join("backup.key");
    std::fs::write(&key_file, rand::random::<[u8; 32]>()).expect("backup key");
    let backup = BackupCommand {
        data: DataDir {
            data_dir: server.data_dir().to_owned(),
        },
        to: Some(root.path().join("backups")),
        verify: None,
        keep: None,
        without_signing_keys: false,
        backup_key_file: Some(key_file.clone()),
        upload_to: None,
        upload_options: Vec::new(),
    };
    let restored = tempfile::tempdir().expect("restore target");
    let restore = RestoreCommand {
        from: root.path().join("backups"),
        data_dir: restored.path().to_owned(),
        sequence_gap: 0,
        backup_key_file: Some(key_file),
        ..RestoreCommand::default()
    };
    let report = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        exposure_server::admin::backup::backup(backup, &mut out)
            .expect("backup of the running server");
        exposure_server::admin::backup::restore(restore, &mut out).expect("restore");
        String::from_utf8(out).expect("utf-8 report")
    })
    .await
    .expect("backup task");
    assert!(
        report.contains("console: 1 sessions of the backup ended"),
        "{report}"
    );
    let clock = server.clock.clone();
    server.stop().await;

    let config = exposure_tests::test_config(restored.path());
    let restored_server = TestServer::restart(&restored, String::new(), clock, config).await;
    let mut again = Browser::new(&restored_server.console_url);
    again.set_cookie(SESSION_COOKIE, &session);
    assert_eq!(
        again.get("/").await.header("location"),
        "/login",
        "the backup's session ended at restore"
    );
    log_in(&restored_server, &mut again, &staff).await;
    assert_eq!(
        again.get("/").await.status,
        200,
        "the account and its key came back"
    );
    restored_server.stop_kept().await;

    let actions: Vec<String> = audit(&restored, &authority)
        .await
        .into_iter()
        .map(|record| record.action)
        .collect();
    assert_eq!(actions, ["enrol", "login", "login"]);
}
