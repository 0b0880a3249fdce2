//! The staff console (DESIGN.md section 13) in a real browser: headless chromium driven over
//! WebDriver (`exposure_tests::browser`) against a real server on loopback. Everything a
//! person does goes through the browser: opening the enrolment link that
//! `exposure-server user add` prints, reading the TOTP key off the page, typing into the
//! forms and clicking their buttons. The test computes the TOTP codes itself (its own
//! RFC 6238 in `console_client`, checked against the RFC's vectors in `console.rs`); a phone
//! uploads with the issued code over the real gRPC API. The server runs on a manual clock, so
//! TOTP steps, the lock and the idle timeout are moved through rather than waited for.
//!
//! Every page a test sees is screenshotted into
//! `$CARGO_TARGET_TMPDIR/console-browser/<test>/`; with `EXPOSURE_SCREENSHOTS=docs/console`
//! the README's two (`login.png`, `issue-code.png`) are written there too.

use std::path::Path;

use exposure_server::Clock;
use exposure_server::admin::user::Role;
use exposure_server::storage::Store;
use exposure_tests::browser::{Chrome, Options};
use exposure_tests::console_client::{
    authority_id, base32_decode, totp, upload_with_code, user_add, yesterday_key,
};
use exposure_tests::{REGION, TEST_NOW, TestServer};
use serde_json::json;

/// A password of 23 characters, on no list of common ones.
const PASSWORD: &str = "Mùa xuân ở Thái Bình 26";
/// The one message of every failed sign-in (the console's English catalogue).
const LOGIN_FAILED: &str =
    "The e-mail address, password or code is not right, or the account is locked for a while.";
/// The screenshots the README shows (docs/console/).
const PUBLISHED: [&str; 2] = ["login", "issue-code"];

/// An enrolled member of staff, as the test knows them.
struct Staff {
    email: String,
    secret: Vec<u8>,
}

/// A server on a manual clock, and a browser speaking `languages`; `None` when chromium is
/// missing outside CI (the harness has said so).
async fn start(test: &str, languages: &str) -> Option<(TestServer, Chrome)> {
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("console-browser")
        .join(test);
    let chrome = Chrome::start(Options {
        languages,
        shots: shots.clone(),
    })
    .await?;
    eprintln!("screenshots: {}", shots.display());
    let server = TestServer::start_with(Clock::manual(TEST_NOW), |_| {}).await;
    Some((server, chrome))
}

/// Runs `exposure-server user add` for the harness's authority on the running server's data
/// directory (the server applies it) and returns the enrolment link it prints.
async fn enrolment_link(server: &TestServer, email: &str, roles: Vec<Role>) -> String {
    let report = user_add(server, authority_id(server), email, roles)
        .await
        .expect("user add");
    let link = report.lines().last().expect("the link is the last line");
    assert!(
        link.starts_with(&format!("{}/enrol?token=", server.console_url)),
        "{report}"
    );
    link.to_owned()
}

/// Returns a six-digit code that is no TOTP code of `secret` for the steps around `now`.
fn wrong_code(secret: &[u8], now: u64) -> String {
    let near: Vec<String> = [now - 30, now, now + 30]
        .iter()
        .map(|time| totp(secret, *time, 6))
        .collect();
    (0..10)
        .map(|shift| {
            let mut code = near[1].clone().into_bytes();
            code[5] = b'0' + (code[5] - b'0' + 1 + shift) % 10;
            String::from_utf8(code).expect("digits")
        })
        .find(|code| !near.contains(code))
        .expect("a wrong code")
}

/// Fills and submits the enrolment form.
async fn submit_enrolment(chrome: &Chrome, code: &str) {
    chrome
        .type_into("form[action='/enrol'] input[name='password']", PASSWORD)
        .await;
    chrome
        .type_into(
            "form[action='/enrol'] input[name='password_again']",
            PASSWORD,
        )
        .await;
    chrome
        .type_into("form[action='/enrol'] input[name='totp']", code)
        .await;
    chrome
        .click("form[action='/enrol'] button[type='submit']")
        .await;
}

/// Adds an account with `roles` and enrols it in the browser through its link.
async fn enrol(server: &TestServer, chrome: &mut Chrome, email: &str, roles: Vec<Role>) -> Staff {
    let link = enrolment_link(server, email, roles).await;
    chrome.open(&link).await;
    assert_eq!(chrome.count(".qr svg").await, 1, "the key as a QR code");
    let key = chrome.text("code.secret").await;
    let secret = base32_decode(&key);
    assert_eq!(secret.len(), 20, "a 160-bit key: {key}");
    chrome.shot("enrol", &[]).await;

    // A wrong code is refused, and the form comes back.
    let now = server.clock.now();
    submit_enrolment(chrome, &wrong_code(&secret, now)).await;
    assert!(
        chrome
            .text("p.error")
            .await
            .starts_with("The code is not right"),
        "{}",
        chrome.text("main").await
    );
    chrome.shot("enrol-wrong-code", &[]).await;
    assert_eq!(chrome.text("code.secret").await, key, "the same key");

    submit_enrolment(chrome, &totp(&secret, now, 6)).await;
    assert_eq!(
        chrome.text("p.notice").await,
        "Your account is ready. Sign in."
    );
    chrome.shot("enrolled", &[]).await;
    // The link works once.
    chrome.open(&link).await;
    assert_eq!(chrome.count("form[action='/enrol']").await, 0);
    Staff {
        email: email.to_owned(),
        secret,
    }
}

/// Signs in on the sign-in page with `password` and `code`.
async fn submit_login(
    server: &TestServer,
    chrome: &Chrome,
    email: &str,
    password: &str,
    code: &str,
) {
    chrome.open(&format!("{}/login", server.console_url)).await;
    chrome.type_into("input[name='email']", email).await;
    chrome.type_into("input[name='password']", password).await;
    chrome.type_into("input[name='totp']", code).await;
    chrome
        .click("form[action='/login'] button[type='submit']")
        .await;
}

/// Signs in with `password` and the TOTP code of a fresh time step (each step's code is
/// accepted once, so the clock moves on by one step first).
async fn log_in_with(server: &TestServer, chrome: &Chrome, staff: &Staff, password: &str) {
    server.clock.advance(30);
    let code = totp(&staff.secret, server.clock.now(), 6);
    submit_login(server, chrome, &staff.email, password, &code).await;
}

/// Signs in and checks that the home page opened.
async fn log_in(server: &TestServer, chrome: &Chrome, staff: &Staff) {
    log_in_with(server, chrome, staff, PASSWORD).await;
    assert_eq!(chrome.path().await, "/", "{}", chrome.text("main").await);
}

#[tokio::test]
async fn an_issuer_enrols_signs_in_issues_a_code_that_uploads_and_signs_out() {
    let Some((server, mut chrome)) = start("issuer", "en").await else {
        return;
    };
    // Without a session, the console is its sign-in page.
    chrome.open(&format!("{}/", server.console_url)).await;
    assert_eq!(chrome.path().await, "/login");
    assert_eq!(chrome.text("h1").await, "Sign in");
    chrome.shot("login", &PUBLISHED).await;

    let staff = enrol(
        &server,
        &mut chrome,
        "nurse.lan@example.org",
        vec![Role::Issuer],
    )
    .await;

    // A wrong password and a wrong code: the same one message.
    log_in_with(&server, &chrome, &staff, "not the password").await;
    assert_eq!(chrome.path().await, "/login");
    assert_eq!(chrome.text("p.error").await, LOGIN_FAILED);
    chrome.shot("login-wrong-password", &[]).await;
    server.clock.advance(30);
    let now = server.clock.now();
    let code = wrong_code(&staff.secret, now);
    submit_login(&server, &chrome, &staff.email, PASSWORD, &code).await;
    assert_eq!(chrome.text("p.error").await, LOGIN_FAILED);
    chrome.shot("login-wrong-code", &[]).await;

    log_in(&server, &chrome, &staff).await;
    assert_eq!(chrome.text("h1").await, "Issue an upload code");
    assert!(
        chrome
            .text("header .account")
            .await
            .contains("nurse.lan@example.org")
    );
    chrome.shot("home", &[]).await;

    chrome
        .find("select[name='region']")
        .await
        .select_by_value(REGION)
        .await
        .expect("region");
    chrome
        .find("select[name='report_type']")
        .await
        .select_by_value("confirmed_test")
        .await
        .expect("report type");
    chrome.type_into("input[name='valid_hours']", "24").await;
    chrome
        .click("form[action='/codes'] button[type='submit']")
        .await;
    assert_eq!(chrome.text("h1").await, "Upload code");
    let code = chrome.text("p.code").await;
    assert_eq!(code.len(), 11, "XXXXX-XXXXX: {code}");
    assert_eq!(code.as_bytes()[5], b'-', "{code}");
    assert_eq!(chrome.count(".qr svg").await, 1, "a QR code beside it");
    // Valid 24 h from the server's clock (2026-01-10 12:00 UTC and the steps moved since).
    let expiry = chrome.text("main time").await;
    assert!(
        expiry.starts_with("2026-01-11 12:") && expiry.ends_with(" UTC"),
        "{expiry}"
    );
    chrome.shot("issue-code", &PUBLISHED).await;

    // The patient's phone uploads with it over the real gRPC API.
    let mut client = server.upload_client().await;
    let answer = upload_with_code(
        &mut client,
        "browser-code",
        vec![yesterday_key(0x62)],
        &code,
    )
    .await
    .expect("the code from the browser uploads");
    assert_eq!(answer.keys_accepted, 1);

    // Signing out ends the session: the console is its sign-in page again.
    chrome
        .click("form[action='/logout'] button[type='submit']")
        .await;
    assert_eq!(chrome.path().await, "/login");
    chrome.shot("signed-out", &[]).await;
    chrome.open(&format!("{}/", server.console_url)).await;
    assert_eq!(chrome.path().await, "/login");
    chrome.close().await;

    let authority = authority_id(&server);
    let dir = server.stop().await;
    let store = Store::open(dir.path()).expect("reopen");
    let codes = store.codes_of_authority(&authority).expect("codes");
    assert_eq!(codes.len(), 1, "one code issued");
    assert!(codes[0].consumed_at > 0, "and it was used");
}

#[tokio::test]
async fn a_viewer_gets_the_403_page_and_nothing_is_issued() {
    let Some((server, mut chrome)) = start("viewer", "en").await else {
        return;
    };
    chrome.open(&format!("{}/login", server.console_url)).await;
    let staff = enrol(
        &server,
        &mut chrome,
        "viewer@example.org",
        vec![Role::Viewer],
    )
    .await;
    log_in(&server, &chrome, &staff).await;
    assert_eq!(
        chrome.count("form[action='/codes']").await,
        0,
        "no issue form"
    );
    assert_eq!(
        chrome.text("p.notice").await,
        "Your account has nothing to do on this page yet."
    );
    chrome.shot("viewer-home", &[]).await;

    // The viewer builds the issue form in her own page (as with the browser's developer
    // tools), with her session's CSRF token, and clicks it.
    let csrf = chrome
        .find("form[action='/logout'] input[name='csrf']")
        .await
        .attr("value")
        .await
        .expect("csrf attribute")
        .expect("csrf token");
    let fields = json!({
        "csrf": csrf,
        "region": REGION,
        "report_type": "confirmed_test",
        "valid_hours": "24",
    });
    chrome
        .client()
        .execute(
            "const form = document.createElement('form');
             form.method = 'post';
             form.action = '/codes';
             form.id = 'forged';
             for (const [name, value] of Object.entries(arguments[0])) {
               const input = document.createElement('input');
               input.type = 'hidden';
               input.name = name;
               input.value = value;
               form.appendChild(input);
             }
             const button = document.createElement('button');
             button.type = 'submit';
             button.textContent = 'Issue';
             form.appendChild(button);
             document.body.appendChild(form);",
            vec![fields],
        )
        .await
        .expect("the form is built");
    chrome.click("#forged button").await;
    assert_eq!(chrome.path().await, "/codes");
    assert_eq!(chrome.text("h1").await, "Not allowed");
    assert_eq!(
        chrome.text("p.notice").await,
        "Your account may not issue codes."
    );
    assert_eq!(chrome.count("p.code").await, 0);
    chrome.shot("viewer-403", &[]).await;
    chrome.close().await;

    let authority = authority_id(&server);
    let dir = server.stop().await;
    let store = Store::open(dir.path()).expect("reopen");
    assert!(
        store
            .codes_of_authority(&authority)
            .expect("codes")
            .is_empty(),
        "nothing issued"
    );
}

#[tokio::test]
async fn five_failed_logins_lock_the_account_and_an_idle_session_expires() {
    let Some((server, mut chrome)) = start("lock", "en").await else {
        return;
    };
    chrome.open(&format!("{}/login", server.console_url)).await;
    let staff = enrol(
        &server,
        &mut chrome,
        "doctor.minh@example.org",
        vec![Role::Issuer],
    )
    .await;
    for _ in 0..5 {
        log_in_with(&server, &chrome, &staff, "still not the password").await;
        assert_eq!(chrome.text("p.error").await, LOGIN_FAILED);
    }
    // Locked: the right password and code are refused, with the one message.
    log_in_with(&server, &chrome, &staff, PASSWORD).await;
    assert_eq!(chrome.path().await, "/login");
    assert_eq!(chrome.text("p.error").await, LOGIN_FAILED);
    chrome.shot("locked", &[]).await;

    // 15 minutes after the lock it opens.
    server.clock.advance(15 * 60);
    log_in(&server, &chrome, &staff).await;
    // 29 minutes idle: still signed in; each page moves the idle deadline.
    server.clock.advance(29 * 60);
    chrome.open(&format!("{}/", server.console_url)).await;
    assert_eq!(chrome.path().await, "/");
    // 31 minutes idle: the session has ended.
    server.clock.advance(31 * 60);
    chrome.open(&format!("{}/", server.console_url)).await;
    assert_eq!(chrome.path().await, "/login");
    chrome.shot("idle-expired", &[]).await;
    chrome.close().await;

    let authority = authority_id(&server);
    let dir = server.stop().await;
    let store = Store::open(dir.path()).expect("reopen");
    let actions: Vec<(String, String)> = store
        .audit_records(&authority)
        .expect("audit records")
        .into_iter()
        .filter(|record| record.action != "user_add")
        .map(|record| (record.action, record.result))
        .collect();
    let failed = |result: &str| ("login_failed".to_owned(), result.to_owned());
    let mut expected = vec![("enrol".to_owned(), "ok".to_owned())];
    expected.extend(std::iter::repeat_n(failed("wrong password"), 5));
    expected.push(("lock".to_owned(), "ok".to_owned()));
    expected.push(failed("account locked"));
    expected.push(("login".to_owned(), "ok".to_owned()));
    assert_eq!(actions, expected);
}

#[tokio::test]
async fn a_browser_in_vietnamese_gets_the_vietnamese_pages() {
    let Some((server, mut chrome)) = start("vietnamese", "vi,en").await else {
        return;
    };
    chrome.open(&format!("{}/", server.console_url)).await;
    assert_eq!(chrome.path().await, "/login");
    let html = chrome.find("html").await;
    assert_eq!(
        html.attr("lang").await.expect("lang").as_deref(),
        Some("vi")
    );
    assert_eq!(chrome.text("h1").await, "Đăng nhập");
    assert!(chrome.text("form").await.contains("Mật khẩu"));
    chrome.shot("login-vi", &[]).await;
    submit_login(
        &server,
        &chrome,
        "ai.do@example.org",
        "không phải mật khẩu",
        "123456",
    )
    .await;
    assert!(
        chrome
            .text("p.error")
            .await
            .starts_with("Email, mật khẩu hoặc mã không đúng"),
        "{}",
        chrome.text("main").await
    );
    chrome.shot("login-failed-vi", &[]).await;
    chrome.close().await;
    server.stop().await;
}
