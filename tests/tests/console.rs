//! The staff console (DESIGN.md section 13) against a real server on loopback, driven over
//! real HTTP by a cookie-keeping client: accounts from `exposure-server user add` on the
//! running server, enrolment with a password and a TOTP second factor whose codes the test
//! computes itself (its own RFC 6238, checked first against the RFC's published vectors),
//! sign-in, the one message for every failure, lockout, the per-network attempt budget,
//! sessions and their CSRF tokens, roles, a code issued in the browser that uploads over the
//! real gRPC API, and the Vietnamese pages. The server runs on a manual clock, so TOTP steps,
//! lock lengths and session timeouts are moved through rather than waited for.

use std::net::IpAddr;

use exposure_proto::v1::{BatchKind, DiagnosisKey};
use exposure_server::Clock;
use exposure_server::admin::AdminError;
use exposure_server::admin::user::Role;
use exposure_server::storage::Store;
use exposure_server::storage::console::AuditRecord;
use exposure_tests::console_client::{
    Answer, Browser, another_authority, authority_id, backup_and_restore, base32_decode,
    enrolment_link, exported_onsets, field_value, text_of_class, totp, upload_with_code, user_add,
    yesterday_key,
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

/// Adds an account with `roles` and enrols it in a browser of its own; returns both.
async fn staff(server: &TestServer, email: &str, roles: Vec<Role>) -> (Browser, Staff) {
    let mut browser = Browser::new(&server.console_url);
    let staff = enrol(server, &mut browser, email, roles).await;
    (browser, staff)
}

/// Adds an account with `roles` and enrols it through its link; returns what the person knows.
async fn enrol(server: &TestServer, browser: &mut Browser, email: &str, roles: Vec<Role>) -> Staff {
    let link = enrolment_link(server, authority_id(server), email, roles).await;
    enrol_with_link(server, browser, &link, email).await
}

/// Enrols through the enrolment `link` of `email`; returns what the person knows.
async fn enrol_with_link(
    server: &TestServer,
    browser: &mut Browser,
    link: &str,
    email: &str,
) -> Staff {
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

    let issued = issue_one(&mut browser, &csrf).await;
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
    let mut client = server.upload_client().await;
    let answer = upload_with_code(
        &mut client,
        "console-code",
        vec![yesterday_key(0x61)],
        &code,
    )
    .await
    .expect("the console's code uploads");
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
    let (mut browser, staff) = staff(&server, "doctor.minh@example.org", vec![Role::Issuer]).await;

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
    let (mut browser, staff) = staff(&server, "viewer@example.org", vec![Role::Viewer]).await;
    log_in(&server, &mut browser, &staff).await;
    let home = browser.get("/").await;
    assert_eq!(home.status, 200);
    assert!(!home.text().contains("action=\"/codes\""), "no issue form");
    let csrf = field_value(home.text(), "csrf");
    let refused = issue_one(&mut browser, &csrf).await;
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

/// Times one sign-in attempt with `attempt` from `browser`.
async fn timed_login(
    browser: &mut Browser,
    attempt: &[(&str, &str)],
) -> (u16, std::time::Duration) {
    let started = std::time::Instant::now();
    let answer = browser.post("/login", attempt).await;
    (answer.status.as_u16(), started.elapsed())
}

#[tokio::test]
async fn refused_sign_ins_are_answered_after_the_refusal_delay() {
    const DELAY: std::time::Duration = std::time::Duration::from_millis(1500);
    let server = TestServer::start_with(Clock::manual(TEST_NOW), |config| {
        config.refusal_delay = DELAY;
        config.console_logins_per_network_per_hour = 2;
    })
    .await;
    let mut browser = Browser::new(&server.console_url);
    let attempt = [
        ("email", "nobody@example.org"),
        ("password", "not the password at all"),
        ("totp", "123456"),
    ];
    // A failed sign-in (checked against the dummy hash) and one over the network's budget
    // both wait out the delay; the sign-in page itself does not.
    for expected in [401, 401, 429] {
        let (status, took) = timed_login(&mut browser, &attempt).await;
        assert_eq!(status, expected);
        assert!(took >= DELAY, "{expected} answered after {took:?}");
    }
    let started = std::time::Instant::now();
    assert_eq!(browser.get("/login").await.status, 200);
    assert!(started.elapsed() < DELAY, "{:?}", started.elapsed());

    // Without a delay the same refusal is answered at once.
    let quick = TestServer::start_with(Clock::manual(TEST_NOW), |_| {}).await;
    let (status, took) = timed_login(&mut Browser::new(&quick.console_url), &attempt).await;
    assert_eq!(status, 401);
    assert!(took < DELAY, "{took:?}");
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
    let (mut browser, staff) = staff(&server, "idle@example.org", vec![Role::Issuer]).await;
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
    let (mut browser, staff) = staff(&server, "busy@example.org", vec![Role::Issuer]).await;
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
    let server = start().await;
    let authority = authority_id(&server);
    let (mut browser, staff) = staff(&server, "kept@example.org", vec![Role::Issuer]).await;
    log_in(&server, &mut browser, &staff).await;
    let session = browser
        .cookie(SESSION_COOKIE)
        .expect("signed in")
        .to_owned();

    let (restored_server, restored) = backup_and_restore(server, 1).await;
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

/// A full-day GAEN key starting at `interval` (Unix seconds / 600 of a UTC midnight), with its
/// own days since onset when given.
fn day_key(byte: u8, interval: u32, own: Option<i32>) -> DiagnosisKey {
    let mut key = gaen(key16(byte), interval, 144);
    if let Some(exposure_proto::v1::diagnosis_key::Key::Gaen(inner)) = key.key.as_mut() {
        inner.days_since_onset_of_symptoms = own;
    }
    key
}

/// Posts the console's issue form with a symptom-onset and a test date (either may be empty).
/// Issues one code (a confirmed test, 24 hours) with the form of the home page.
async fn issue_one(browser: &mut Browser, csrf: &str) -> Answer {
    issue_dated(browser, csrf, "", "").await
}

async fn issue_dated(browser: &mut Browser, csrf: &str, onset: &str, test: &str) -> Answer {
    browser
        .post(
            "/codes",
            &[
                ("csrf", csrf),
                ("region", REGION),
                ("report_type", "confirmed_test"),
                ("valid_hours", "24"),
                ("symptom_onset_date", onset),
                ("test_date", test),
            ],
        )
        .await
}

#[tokio::test]
async fn the_onset_or_test_date_of_a_code_fills_in_days_since_onset_in_the_gaen_export() {
    use exposure_proto::v1::IssueUploadCodesRequest;
    // Midnights UTC as 10-minute interval numbers (`date -u -d 2025-12-27 +%s` / 600, ...).
    const DEC_27: u32 = 1_766_793_600 / 600;
    const DEC_28: u32 = 1_766_880_000 / 600;
    const DEC_30: u32 = 1_767_052_800 / 600;
    const JAN_08: u32 = 1_767_830_400 / 600;
    const JAN_09: u32 = 1_767_916_800 / 600;
    assert_eq!((DEC_27, JAN_09), (2_944_656, 2_946_528));

    let server = start().await;
    let mut client = server.upload_client().await;
    let grpc_order = |symptom_onset_date: &str, test_date: &str| {
        server.authorized(IssueUploadCodesRequest {
            region: REGION.into(),
            count: 1,
            symptom_onset_date: symptom_onset_date.into(),
            test_date: test_date.into(),
            ..Default::default()
        })
    };
    // TEST_NOW is 2026-01-10 12:00 UTC: tomorrow and 31 days back are refused, naming the field.
    for (onset, test, field, problem) in [
        (
            "2026-01-11",
            "",
            "symptom_onset_date",
            "must not be in the future",
        ),
        ("", "2025-12-10", "test_date", "must be at most 30 days ago"),
        (
            "10.01.2026",
            "",
            "symptom_onset_date",
            "must be a date YYYY-MM-DD",
        ),
    ] {
        let status = client
            .issue_upload_codes(grpc_order(onset, test))
            .await
            .expect_err("a bad date is refused");
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains(field), "{status:?}");
        assert!(status.message().contains(problem), "{status:?}");
    }
    // A test date 28 days back (2025-12-13) over gRPC, and a code without a date.
    let issue = |request| {
        let mut client = client.clone();
        async move {
            client
                .issue_upload_codes(request)
                .await
                .expect("issued")
                .into_inner()
                .codes[0]
                .code
                .clone()
        }
    };
    let tested = issue(grpc_order("", "2025-12-13")).await;
    let undated = issue(grpc_order("", "")).await;

    // A symptom-onset date (2026-01-05) on the console's form; a bad one names its field.
    let (mut browser, staff) = staff(&server, "dated@example.org", vec![Role::Issuer]).await;
    log_in(&server, &mut browser, &staff).await;
    let home = browser.get("/").await;
    assert!(home.text().contains("id=\"symptom_onset_date\""));
    assert!(home.text().contains("id=\"test_date\""));
    let csrf = field_value(home.text(), "csrf");
    for (onset, test, field) in [
        ("2026-01-11", "", "symptom_onset_date"),
        ("", "2025-12-10", "test_date"),
    ] {
        let refused = issue_dated(&mut browser, &csrf, onset, test).await;
        assert_eq!(refused.status, 400, "{}", refused.text());
        assert!(error_text(&refused).contains(field), "{}", refused.text());
        assert_eq!(text_of_class(refused.text(), "code"), None);
    }
    let issued = issue_dated(&mut browser, &csrf, "2026-01-05", "").await;
    assert_eq!(issued.status, 200, "{}", issued.text());
    let onset = text_of_class(issued.text(), "code").expect("the code");

    // The phones upload over the real gRPC API.
    for (code, id, keys) in [
        (
            &onset,
            "onset",
            vec![
                day_key(0x11, JAN_09, None),
                day_key(0x12, DEC_30, None),
                day_key(0x13, JAN_08, Some(-3)),
            ],
        ),
        (
            &tested,
            "tested",
            vec![
                day_key(0x21, DEC_27, None),
                day_key(0x22, DEC_28, None),
                day_key(0x23, JAN_09, None),
            ],
        ),
        (&undated, "undated", vec![day_key(0x31, JAN_09, None)]),
    ] {
        let answer = upload_with_code(&mut client, id, keys, code)
            .await
            .expect("the code uploads");
        assert!(answer.keys_accepted > 0);
    }

    let Some(onsets) = exported_onsets(&server, 7).await else {
        return;
    };
    let hex_of = |byte: u8| hex::encode([byte; 16]);
    let expected = [
        // Onset 2026-01-05: 2026-01-09 is 4 days after, 2025-12-30 6 days before.
        (0x11, Some(4)),
        (0x12, Some(-6)),
        // A key with its own value keeps it.
        (0x13, Some(-3)),
        // Test date 2025-12-13: 2025-12-27 is 14 days after; 2025-12-28 (15) and 2026-01-09
        // (27) fall outside -14..=14 and carry none.
        (0x21, Some(14)),
        (0x22, None),
        (0x23, None),
        // No date: absent.
        (0x31, None),
    ];
    let expected: std::collections::BTreeMap<String, Option<i64>> = expected
        .into_iter()
        .map(|(byte, days)| (hex_of(byte), days))
        .collect();
    assert_eq!(onsets, expected);
    server.stop().await;
}

/// Returns the `data-status` of each row of the page's codes table, top to bottom.
fn statuses(answer: &Answer) -> Vec<String> {
    answer
        .text()
        .split("data-status=\"")
        .skip(1)
        .map(|rest| rest.split('"').next().expect("closing quote").to_owned())
        .collect()
}

/// Issues `count` codes over gRPC with `token`; returns them.
async fn issue_with_token(server: &TestServer, token: &str, count: u32) -> Vec<String> {
    use exposure_proto::v1::IssueUploadCodesRequest;
    let request = fixtures::with_authorization(
        IssueUploadCodesRequest {
            region: REGION.into(),
            count,
            ..Default::default()
        },
        "Bearer",
        token,
    );
    server
        .upload_client()
        .await
        .issue_upload_codes(request)
        .await
        .expect("issued")
        .into_inner()
        .codes
        .into_iter()
        .map(|code| code.code)
        .collect()
}

#[tokio::test]
async fn the_codes_list_shows_status_and_issuer_newest_first_never_the_code() {
    let server = start().await;
    let (mut issuer_browser, issuer) =
        staff(&server, "issuer@example.org", vec![Role::Issuer]).await;
    let (mut viewer_browser, viewer) =
        staff(&server, "viewer@example.org", vec![Role::Viewer]).await;

    // The issuer issues a code that is used, then one valid for an hour that expires.
    log_in(&server, &mut issuer_browser, &issuer).await;
    let csrf = field_value(issuer_browser.get("/").await.text(), "csrf");
    let mut issued = Vec::new();
    for hours in ["24", "1"] {
        server.clock.advance(1);
        let answer = issuer_browser
            .post(
                "/codes",
                &[
                    ("csrf", csrf.as_str()),
                    ("region", REGION),
                    ("report_type", "self_report"),
                    ("valid_hours", hours),
                ],
            )
            .await;
        assert_eq!(answer.status, 200, "{}", answer.text());
        issued.push(text_of_class(answer.text(), "code").expect("code"));
    }
    let mut client = server.upload_client().await;
    upload_with_code(&mut client, "listed", vec![yesterday_key(0x41)], &issued[0])
        .await
        .expect("uploads");
    // 55 more with the authority's token, later; and one of another authority.
    server.clock.advance(1);
    issued.extend(issue_with_token(&server, &server.token, 55).await);
    let (_, other_token) = another_authority(&server, "Ha Noi CDC", REGION).await;
    issued.extend(issue_with_token(&server, &other_token, 3).await);

    // An hour and a minute later the one-hour code has expired.
    server.clock.advance(61 * 60);
    log_in(&server, &mut viewer_browser, &viewer).await;
    let first = viewer_browser.get("/codes").await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert!(first.text().contains("id=\"codes\""));
    assert!(
        first.text().contains(": 57<"),
        "57 codes of this authority, none of the other: {}",
        first.text()
    );
    assert_eq!(statuses(&first), vec!["unused"; 50], "newest first");
    assert!(first.text().contains("API token"), "issued with the token");
    assert!(first.text().contains("id=\"page-older\""));
    let second = viewer_browser.get("/codes?page=2").await;
    let mut expected = vec!["unused"; 5];
    expected.extend(["expired", "used"]);
    assert_eq!(statuses(&second), expected);
    assert!(second.text().contains("issuer@example.org"));
    assert!(second.text().contains("Self-report"));
    assert!(!second.text().contains("id=\"page-older\""));
    for page in [&first, &second] {
        for code in &issued {
            assert!(!page.text().contains(code.as_str()), "{code} shown");
            assert!(
                !page.text().contains(&code.replace('-', "")),
                "{code} shown"
            );
        }
        assert_eq!(page.header("cache-control"), "no-store");
    }

    // The issuer sees only the two they issued.
    log_in(&server, &mut issuer_browser, &issuer).await;
    let own = issuer_browser.get("/codes").await;
    assert_eq!(statuses(&own), ["expired", "used"], "{}", own.text());
    // Vietnamese.
    viewer_browser.accept_language = Some("vi".into());
    let vietnamese = viewer_browser.get("/codes?page=2").await;
    assert!(
        vietnamese.text().contains("Đã dùng"),
        "{}",
        vietnamese.text()
    );
    assert!(vietnamese.text().contains("Hết hạn"));
    server.stop().await;
}

#[tokio::test]
async fn past_the_daily_quota_of_the_authority_every_account_is_refused_until_midnight() {
    let server = TestServer::start_with(Clock::manual(TEST_NOW), |config| {
        config.console_codes_per_user_per_day = 2;
        config.console_codes_per_authority_per_day = 3;
    })
    .await;
    let (mut first_browser, first) = staff(&server, "first@example.org", vec![Role::Issuer]).await;
    let (mut second_browser, second) =
        staff(&server, "second@example.org", vec![Role::Issuer]).await;
    log_in(&server, &mut first_browser, &first).await;
    log_in(&server, &mut second_browser, &second).await;
    let first_csrf = field_value(first_browser.get("/").await.text(), "csrf");
    let second_csrf = field_value(second_browser.get("/").await.text(), "csrf");
    for _ in 0..2 {
        assert_eq!(
            issue_dated(&mut first_browser, &first_csrf, "", "")
                .await
                .status,
            200
        );
    }
    // The account's quota first, then the authority's (2 + 1 = 3).
    let own = issue_dated(&mut first_browser, &first_csrf, "", "").await;
    assert_eq!(own.status, 429);
    assert!(
        error_text(&own)
            .contains("Your daily quota of codes is used up; it resets at 2026-01-11 00:00 UTC"),
        "{}",
        own.text()
    );
    assert_eq!(
        issue_dated(&mut second_browser, &second_csrf, "", "")
            .await
            .status,
        200
    );
    let home = second_browser.get("/").await;
    assert_eq!(
        text_of_id(&home, "quota-authority"),
        "Codes your authority issued today: 3 / 3"
    );
    assert_eq!(
        text_of_id(&home, "quota-user"),
        "Codes you issued today: 1 / 2"
    );
    let refused = issue_dated(&mut second_browser, &second_csrf, "", "").await;
    assert_eq!(refused.status, 429);
    assert!(
        error_text(&refused).contains(
            "Your authority's daily quota of codes is used up; it resets at 2026-01-11 00:00 UTC"
        ),
        "{}",
        refused.text()
    );
    assert_eq!(text_of_class(refused.text(), "code"), None);
    // The authority's token is not counted by the console's quota.
    assert_eq!(issue_with_token(&server, &server.token, 5).await.len(), 5);

    let authority = authority_id(&server);
    let dir = server.stop().await;
    let results: Vec<String> = Store::open(dir.path())
        .expect("reopen")
        .audit_records(&authority)
        .expect("audit records")
        .into_iter()
        .filter(|record| record.action == "code_issue")
        .map(|record| record.result)
        .collect();
    assert_eq!(
        results,
        [
            "ok",
            "ok",
            "daily quota of the account reached",
            "ok",
            "daily quota of the authority reached"
        ]
    );
    let store = Store::open(dir.path()).expect("reopen");
    assert_eq!(
        store.codes_of_authority(&authority).expect("codes").len(),
        3 + 5
    );
}

/// Returns the text of the element with `id`, which holds no other element.
fn text_of_id(answer: &Answer, id: &str) -> String {
    let marker = format!("id=\"{id}\"");
    let start = answer
        .text()
        .find(&marker)
        .unwrap_or_else(|| panic!("no #{id}: {}", answer.text()));
    let rest = &answer.text()[start..];
    let rest = &rest[rest.find('>').expect("tag end") + 1..];
    rest[..rest.find('<').expect("closing tag")].to_owned()
}

#[tokio::test]
async fn a_bulk_issue_downloads_a_csv_of_1000_distinct_codes_that_upload() {
    let server = TestServer::start_with(Clock::manual(TEST_NOW), |config| {
        config.console_codes_per_user_per_day = 1000;
        config.console_codes_per_authority_per_day = 2000;
    })
    .await;
    let (mut browser, staff) = staff(&server, "bulk@example.org", vec![Role::Issuer]).await;
    log_in(&server, &mut browser, &staff).await;
    let home = browser.get("/").await;
    assert!(home.text().contains("id=\"bulk_count\""));
    let csrf = field_value(home.text(), "csrf");
    let bulk = |count: &'static str| {
        [
            ("csrf", csrf.clone()),
            ("region", REGION.to_owned()),
            ("report_type", "confirmed_test".to_owned()),
            ("valid_hours", "48".to_owned()),
            ("count", count.to_owned()),
        ]
    };
    for count in ["1001", "0", "many"] {
        let fields = bulk(count);
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let refused = browser.post("/codes/bulk", &fields).await;
        assert_eq!(refused.status, 400, "{count}: {}", refused.text());
        assert!(error_text(&refused).contains("count"), "{}", refused.text());
    }
    let fields = bulk("1000");
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let download = browser.post("/codes/bulk", &fields).await;
    assert_eq!(download.status, 200, "{}", download.text());
    assert_eq!(download.header("cache-control"), "no-store");
    assert!(download.header("content-type").starts_with("text/csv"));
    assert!(
        download
            .header("content-disposition")
            .starts_with("attachment"),
        "a download"
    );
    let mut lines = download.text().lines();
    assert_eq!(lines.next(), Some("code,expires_at"));
    let mut codes = std::collections::BTreeSet::new();
    for line in lines {
        let (code, expires) = line.split_once(',').expect("two columns");
        // 48 h after 2026-01-10 12:00 UTC, give or take the steps the login moved.
        assert!(expires.starts_with("2026-01-12 12:"), "{line}");
        assert_eq!(code.len(), 11, "{line}");
        assert_eq!(&code[5..6], "-", "{line}");
        assert!(
            code.chars()
                .filter(|c| *c != '-')
                .all(|c| "0123456789ABCDEFGHJKMNPQRSTVWXYZ".contains(c)),
            "Crockford base32: {line}"
        );
        codes.insert(code.to_owned());
    }
    assert_eq!(codes.len(), 1000, "1,000 distinct codes");

    // A sample of them uploads over the real gRPC API (every 50th).
    let mut client = server.upload_client().await;
    for (index, code) in codes
        .iter()
        .enumerate()
        .filter(|(index, _)| index % 50 == 0)
    {
        let keys = vec![yesterday_key(index as u8)];
        let answer = upload_with_code(&mut client, &format!("bulk-{index}"), keys, code)
            .await
            .unwrap_or_else(|status| panic!("{code}: {status:?}"));
        assert_eq!(answer.keys_accepted, 1);
    }
    // Both quotas counted the thousand: the account's is used up.
    let refused = issue_dated(&mut browser, &csrf, "", "").await;
    assert_eq!(refused.status, 429, "{}", refused.text());
    assert!(error_text(&refused).contains("Your daily quota"));

    let authority = authority_id(&server);
    let dir = server.stop().await;
    let issues: Vec<(String, String)> = audit(&dir, &authority)
        .await
        .into_iter()
        .filter(|record| record.action == "code_issue")
        .map(|record| (record.object, record.result))
        .collect();
    assert_eq!(issues.len(), 5, "{issues:?}");
    assert_eq!(
        issues[3],
        (
            format!("1000 codes, CONFIRMED_TEST, {REGION}"),
            "ok".to_owned()
        ),
        "one record for the thousand"
    );
    let store = Store::open(dir.path()).expect("reopen");
    let stored = store.codes_of_authority(&authority).expect("codes");
    assert_eq!(stored.len(), 1000);
    assert_eq!(
        stored.iter().filter(|code| code.consumed_at > 0).count(),
        20
    );
    let (day, count) = store.authority_codes_today(&authority).expect("count");
    assert_eq!((day, count), (TEST_NOW / DAY, 1000));
}

/// Returns the `action` cells of the page's audit table, top to bottom.
fn audit_actions(answer: &Answer) -> Vec<String> {
    answer
        .text()
        .split("<td class=\"action\">")
        .skip(1)
        .map(|rest| rest.split('<').next().expect("cell end").to_owned())
        .collect()
}

#[tokio::test]
async fn admins_read_the_audit_log_newest_first_and_as_csv_and_it_is_kept_400_days() {
    let server = start().await;
    let (mut admin_browser, admin) = staff(&server, "admin@example.org", vec![Role::Admin]).await;
    let (mut issuer_browser, issuer) =
        staff(&server, "writer@example.org", vec![Role::Issuer]).await;
    assert_eq!(
        log_in_with(&server, &mut issuer_browser, &issuer, "wrong password")
            .await
            .status,
        401
    );
    log_in(&server, &mut issuer_browser, &issuer).await;
    let csrf = field_value(issuer_browser.get("/").await.text(), "csrf");
    assert_eq!(
        issue_dated(&mut issuer_browser, &csrf, "", "").await.status,
        200
    );
    // Not an admin: no audit log.
    let refused = issuer_browser.get("/audit").await;
    assert_eq!(refused.status, 403);
    assert!(!refused.text().contains("id=\"audit\""));
    assert_eq!(issuer_browser.get("/audit.csv").await.status, 403);

    log_in(&server, &mut admin_browser, &admin).await;
    let page = admin_browser.get("/audit").await;
    assert_eq!(page.status, 200, "{}", page.text());
    // `user add` records the system's clock, not the server's: they are left out of the order.
    let actions: Vec<String> = audit_actions(&page)
        .into_iter()
        .filter(|action| action != "user_add")
        .collect();
    assert_eq!(
        actions,
        [
            "login",
            "code_issue",
            "login",
            "login_failed",
            "enrol",
            "enrol"
        ],
        "newest first: {}",
        page.text()
    );
    assert!(page.text().contains("writer@example.org"));
    let csv = admin_browser.get("/audit.csv").await;
    assert_eq!(csv.status, 200);
    assert!(csv.header("content-type").starts_with("text/csv"));
    let lines: Vec<&str> = csv
        .text()
        .lines()
        .filter(|line| !line.contains("\"user_add\""))
        .collect();
    assert_eq!(
        lines[0],
        "time_utc,user,action,object,result,client_network"
    );
    assert_eq!(lines.len(), 1 + 6);
    assert_eq!(csv.text().lines().count(), 1 + 8, "and the two user_add");
    assert!(
        lines[1].starts_with("\"2026-01-10 12:")
            && lines[1].contains("\"admin@example.org\",\"login\","),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].contains("\"code_issue\",\"1 code, CONFIRMED_TEST, VN-TB\",\"ok\",\"127.0.0.1\""),
        "{}",
        lines[2]
    );

    // 401 days on, retention has deleted every record of those days.
    server.clock.advance(401 * DAY);
    let data_dir = server.data_dir().to_owned();
    let authority = authority_id(&server);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (dir, authority) = (data_dir.clone(), authority.clone());
        let left = tokio::task::spawn_blocking(move || {
            Store::open_read_only(&dir)
                .expect("read-only store")
                .audit_records(&authority)
                .expect("records")
        })
        .await
        .expect("read task");
        // `user add` records the system's clock, not the server's: they may be younger.
        if left.iter().all(|record| record.action == "user_add") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still kept: {left:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    server.stop().await;
}

/// Posts one change of the users page.
async fn users_change(
    browser: &mut Browser,
    csrf: &str,
    action: &str,
    email: &str,
    roles: &[&str],
) -> Answer {
    let mut fields = vec![("csrf", csrf), ("action", action), ("email", email)];
    for role in roles {
        fields.push((role, "1"));
    }
    browser.post("/users", &fields).await
}

/// Returns the text of the users table's cell of `class` in the row of `email`.
fn user_cell(answer: &Answer, email: &str, class: &str) -> String {
    let row = format!("id=\"user-{email}\"");
    let start = answer
        .text()
        .find(&row)
        .unwrap_or_else(|| panic!("no row of {email}: {}", answer.text()));
    let rest = &answer.text()[start..];
    let marker = format!("class=\"{class}\">");
    let cell = &rest[rest.find(&marker).expect("cell") + marker.len()..];
    cell[..cell.find('<').expect("cell end")].to_owned()
}

#[tokio::test]
async fn admins_invite_change_roles_disable_and_reset_but_never_remove_the_last_admin() {
    let server = start().await;
    let (mut admin_browser, admin) = staff(&server, "chief@example.org", vec![Role::Admin]).await;
    log_in(&server, &mut admin_browser, &admin).await;
    let page = admin_browser.get("/users").await;
    assert_eq!(page.status, 200, "{}", page.text());
    assert!(page.text().contains("id=\"invite\""));
    let csrf = field_value(page.text(), "csrf");

    // An invitation gives the same one-time link as `user add`.
    let invited = users_change(
        &mut admin_browser,
        &csrf,
        "invite",
        "Nurse.Hoa@Example.org",
        &["role_issuer"],
    )
    .await;
    assert_eq!(invited.status, 200, "{}", invited.text());
    let link = text_of_id(&invited, "enrol-link");
    let mut nurse_browser = Browser::new(&server.console_url);
    let nurse = enrol_with_link(&server, &mut nurse_browser, &link, "nurse.hoa@example.org").await;
    log_in(&server, &mut nurse_browser, &nurse).await;
    // Not an admin: no users page.
    assert_eq!(nurse_browser.get("/users").await.status, 403);
    let taken = users_change(
        &mut admin_browser,
        &csrf,
        "invite",
        "nurse.hoa@example.org",
        &["role_viewer"],
    )
    .await;
    assert_eq!(taken.status, 409);
    assert!(error_text(&taken).contains("already has an account"));

    // Roles change.
    let changed = users_change(
        &mut admin_browser,
        &csrf,
        "roles",
        "nurse.hoa@example.org",
        &["role_viewer", "role_issuer"],
    )
    .await;
    assert_eq!(changed.status, 200, "{}", changed.text());
    assert_eq!(
        user_cell(&changed, "nurse.hoa@example.org", "roles"),
        "issuer,viewer"
    );

    // The last admin can be neither demoted nor disabled.
    for (action, roles) in [("roles", vec!["role_issuer"]), ("disable", vec![])] {
        let refused = users_change(
            &mut admin_browser,
            &csrf,
            action,
            "chief@example.org",
            &roles,
        )
        .await;
        assert_eq!(refused.status, 409, "{action}: {}", refused.text());
        assert!(
            error_text(&refused).contains("at least one enabled admin"),
            "{}",
            refused.text()
        );
    }
    let page = admin_browser.get("/users").await;
    assert_eq!(user_cell(&page, "chief@example.org", "roles"), "admin");
    assert_eq!(user_cell(&page, "chief@example.org", "state"), "Active");

    // Disabled: the session ends and sign-in fails.
    let disabled = users_change(
        &mut admin_browser,
        &csrf,
        "disable",
        "nurse.hoa@example.org",
        &[],
    )
    .await;
    assert_eq!(
        user_cell(&disabled, "nurse.hoa@example.org", "state"),
        "Disabled"
    );
    assert_eq!(nurse_browser.get("/").await.header("location"), "/login");
    assert_eq!(
        log_in_with(&server, &mut nurse_browser, &nurse, PASSWORD)
            .await
            .status,
        401
    );
    users_change(
        &mut admin_browser,
        &csrf,
        "enable",
        "nurse.hoa@example.org",
        &[],
    )
    .await;
    log_in(&server, &mut nurse_browser, &nurse).await;

    // A second-factor reset: the old key no longer signs in; a new link enrols again.
    let reset = users_change(
        &mut admin_browser,
        &csrf,
        "reset",
        "nurse.hoa@example.org",
        &[],
    )
    .await;
    assert_eq!(reset.status, 200, "{}", reset.text());
    let link = text_of_id(&reset, "enrol-link");
    assert_eq!(nurse_browser.get("/").await.header("location"), "/login");
    assert_eq!(
        log_in_with(&server, &mut nurse_browser, &nurse, PASSWORD)
            .await
            .status,
        401
    );
    let renewed =
        enrol_with_link(&server, &mut nurse_browser, &link, "nurse.hoa@example.org").await;
    assert_ne!(renewed.secret, nurse.secret, "a new second factor");
    log_in(&server, &mut nurse_browser, &renewed).await;

    // A second admin makes the demotion of the first possible.
    users_change(
        &mut admin_browser,
        &csrf,
        "roles",
        "nurse.hoa@example.org",
        &["role_admin"],
    )
    .await;
    let demoted = users_change(
        &mut admin_browser,
        &csrf,
        "roles",
        "chief@example.org",
        &["role_viewer"],
    )
    .await;
    assert_eq!(demoted.status, 200, "{}", demoted.text());
    assert_eq!(
        admin_browser.get("/users").await.status,
        403,
        "no longer an admin"
    );

    // The admin of another authority sees none of these accounts and changes none.
    let first_authority = authority_id(&server);
    let (other_authority, _) = another_authority(&server, "Ha Noi CDC", "VN-HN").await;
    let link = enrolment_link(
        &server,
        other_authority,
        "other@example.org",
        vec![Role::Admin],
    )
    .await;
    let mut other_browser = Browser::new(&server.console_url);
    let other = enrol_with_link(&server, &mut other_browser, &link, "other@example.org").await;
    log_in(&server, &mut other_browser, &other).await;
    let page = other_browser.get("/users").await;
    assert_eq!(page.status, 200);
    assert!(page.text().contains("other@example.org"));
    assert!(
        !page.text().contains("chief@example.org"),
        "{}",
        page.text()
    );
    assert!(!page.text().contains("nurse.hoa@example.org"));
    let other_csrf = field_value(page.text(), "csrf");
    let refused = users_change(
        &mut other_browser,
        &other_csrf,
        "disable",
        "nurse.hoa@example.org",
        &[],
    )
    .await;
    assert_eq!(refused.status, 404, "{}", refused.text());
    assert!(error_text(&refused).contains("No such user"));
    log_in(&server, &mut nurse_browser, &renewed).await;

    let dir = server.stop().await;
    let summary: Vec<(String, String)> = audit(&dir, &first_authority)
        .await
        .into_iter()
        .filter(|record| !["login", "login_failed", "enrol"].contains(&record.action.as_str()))
        .map(|record| (record.action, record.result))
        .collect();
    let expected: Vec<(String, String)> = [
        ("user_invite", "ok"),
        ("user_invite", "address taken"),
        ("role_change", "ok"),
        ("role_change", "last admin"),
        ("user_disable", "last admin"),
        ("user_disable", "ok"),
        ("user_enable", "ok"),
        ("second_factor_reset", "ok"),
        ("role_change", "ok"),
        ("role_change", "ok"),
    ]
    .into_iter()
    .map(|(action, result)| (action.to_owned(), result.to_owned()))
    .collect();
    assert_eq!(summary, expected);
}

#[tokio::test]
async fn statistics_count_per_day_hide_small_counts_and_come_as_svg_and_csv() {
    // Padding on: the batches hold synthetic keys beside the six real ones, and the statistics
    // must not count them as published keys.
    let server = TestServer::start_with(Clock::manual(TEST_NOW), |config| {
        config.stats_min_count = 2;
        config.pad_min_keys = 40;
    })
    .await;
    let (mut issuer_browser, issuer) =
        staff(&server, "counts@example.org", vec![Role::Issuer]).await;
    log_in(&server, &mut issuer_browser, &issuer).await;
    let csrf = field_value(issuer_browser.get("/").await.text(), "csrf");
    let mut codes = Vec::new();
    for _ in 0..3 {
        let issued = issue_dated(&mut issuer_browser, &csrf, "", "").await;
        codes.push(text_of_class(issued.text(), "code").expect("code"));
    }
    // Two code uploads of 1 and 2 keys, 10 and 20 minutes after the codes were issued (the
    // issuer's session stays within its 30 idle minutes), one token upload of 3 keys.
    let mut client = server.upload_client().await;
    for (index, keys) in [vec![0x71], vec![0x72, 0x73]].into_iter().enumerate() {
        server.clock.advance(600);
        let mut upload = fixtures::upload(
            &format!("stats-{index}"),
            keys.into_iter().map(yesterday_key).collect(),
        );
        upload.region = String::new();
        client
            .upload_diagnosis_keys(fixtures::with_code(upload, &codes[index]))
            .await
            .expect("uploads");
    }
    server
        .upload(fixtures::upload(
            "stats-token",
            vec![
                yesterday_key(0x74),
                yesterday_key(0x75),
                yesterday_key(0x76),
            ],
        ))
        .await;
    // An issuer alone sees no statistics.
    assert_eq!(issuer_browser.get("/stats").await.status, 403);

    let (mut viewer_browser, viewer) =
        staff(&server, "numbers@example.org", vec![Role::Viewer]).await;
    log_in(&server, &mut viewer_browser, &viewer).await;
    // The publisher runs every 200 ms: wait until the CSV counts the six keys as published.
    let expected = "2026-01-10,3,2,< 2,< 2,2,6,6,10";
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let csv = viewer_browser.get("/stats.csv").await;
        assert_eq!(csv.status, 200);
        if csv.text().lines().nth(1) == Some(expected) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "statistics never counted six keys published: {}",
            csv.text()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // The runs that published them padded each up to 40 keys or more with synthetic keys.
    let store = Store::open_read_only(server.data_dir()).expect("read-only store");
    let synthetic = store.count_synthetic_keys().expect("count");
    assert!(synthetic >= 40 - 6, "{synthetic} synthetic keys");
    drop(store);
    let page = viewer_browser.get("/stats").await;
    assert_eq!(page.status, 200, "{}", page.text());
    let start = page
        .text()
        .find("id=\"day-2026-01-10\"")
        .expect("today's row");
    let cells: Vec<&str> = page.text()[start..]
        .split("<td class=\"count\">")
        .skip(1)
        .take(7)
        .map(|cell| cell.split('<').next().expect("cell"))
        .collect();
    // Issued 3, used 2, expired 0 (< 2), token uploads 1 (< 2), code uploads 2, keys 6, keys
    // published 6 (the synthetic keys beside them are not the authority's).
    assert_eq!(cells, ["3", "2", "&lt; 2", "&lt; 2", "2", "6", "6"]);
    // The median of 10 and 20 minutes: the lower middle of an even count.
    assert!(
        page.text()[start..].contains("<td class=\"count median\">10</td>"),
        "{}",
        &page.text()[start..]
    );
    assert!(page.text().contains("<svg id=\"stats-chart\""));
    assert!(!page.text().contains("<script"));
    let csv = viewer_browser.get("/stats.csv").await;
    assert_eq!(csv.status, 200);
    let lines: Vec<&str> = csv.text().lines().collect();
    assert_eq!(
        lines,
        [
            "day,codes_issued,codes_used,codes_expired_unused,uploads_by_token,uploads_by_code,keys,keys_published,median_minutes_code_to_upload",
            expected
        ]
    );
    viewer_browser.accept_language = Some("vi".into());
    assert!(
        viewer_browser
            .get("/stats")
            .await
            .text()
            .contains("Thống kê theo ngày")
    );
    // A day later the publisher rolls 2026-01-10 up into a daily batch: the keys it publishes
    // again are not counted again. The third code expired unused on the 11th.
    server.clock.advance(86_400);
    server
        .wait_for_batches(|listing| {
            listing
                .batches
                .iter()
                .any(|batch| batch.kind() == BatchKind::Daily)
        })
        .await;
    viewer_browser.accept_language = None;
    log_in(&server, &mut viewer_browser, &viewer).await;
    let csv = viewer_browser.get("/stats.csv").await;
    assert_eq!(csv.status, 200);
    assert_eq!(
        csv.text().lines().skip(1).collect::<Vec<_>>(),
        [expected, "2026-01-11,< 2,< 2,< 2,< 2,< 2,< 2,< 2,"]
    );
    server.stop().await;
}
