//! The staff console (DESIGN.md section 13) in a real browser: headless chromium driven over
//! WebDriver (`exposure_tests::browser`) against a real server on loopback. Everything a
//! person does goes through the browser: opening the enrolment link that
//! `exposure-server user add` prints, reading the TOTP key off the page, typing into the
//! forms (dates included) and clicking their buttons, downloading the bulk CSV. The test
//! computes the TOTP codes itself (its own RFC 6238 in `console_client`, checked against the
//! RFC's vectors in `console.rs`); phones upload with the issued codes over the real gRPC API,
//! and the published GAEN export is read by the independent Python decoder. The server runs
//! on a manual clock, so TOTP steps, the lock and the idle timeout are moved through rather
//! than waited for. Each test has one server and one browser.
//!
//! Every page a test sees is screenshotted into
//! `$CARGO_TARGET_TMPDIR/console-browser/<test>/`; with `EXPOSURE_SCREENSHOTS=docs/console`
//! the pictures of the docs (each page once, by the test that shows it) are written there
//! too (docs/OPERATIONS.md, "What staff see").

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Instant;

use exposure_server::admin::user::Role;
use exposure_server::storage::Store;
use exposure_server::{Clock, ServerConfig};
use exposure_tests::browser::{Chrome, Options};
use exposure_tests::console_client::{
    another_authority, authority_id, backup_and_restore, base32_decode, enrolment_link,
    exported_onsets, totp, upload_with_code, yesterday_key,
};
use exposure_tests::fixtures::{gaen, key16};
use exposure_tests::{REGION, TEST_NOW, TestServer};
use futures::StreamExt as _;
use serde_json::json;

/// A password of 23 characters, on no list of common ones.
const PASSWORD: &str = "Mùa xuân ở Thái Bình 26";
/// The one message of every failed sign-in (the console's English catalogue).
const LOGIN_FAILED: &str =
    "The e-mail address, password or code is not right, or the account is locked for a while.";

/// An enrolled member of staff, as the test knows them.
struct Staff {
    email: String,
    secret: Vec<u8>,
}

/// A server on a manual clock, its configuration changed by `adjust`, and a browser speaking
/// `languages` that also writes the screenshots named in `published` to
/// `$EXPOSURE_SCREENSHOTS`; `None` when chromium is missing outside CI (the harness has said
/// so).
async fn start(
    test: &str,
    languages: &str,
    published: &[&str],
    adjust: impl FnOnce(&mut ServerConfig),
) -> Option<(TestServer, Chrome)> {
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("console-browser")
        .join(test);
    let chrome = Chrome::start(Options {
        languages,
        shots: shots.clone(),
        published,
    })
    .await?;
    eprintln!("screenshots: {}", shots.display());
    let server = TestServer::start_with(Clock::manual(TEST_NOW), adjust).await;
    Some((server, chrome))
}

/// As [`start`] in English, with a member of staff of the harness's authority enrolled (as
/// `email`, with `roles`) and signed in.
async fn start_signed_in(
    test: &str,
    published: &[&str],
    adjust: impl FnOnce(&mut ServerConfig),
    email: &str,
    roles: Vec<Role>,
) -> Option<(TestServer, Chrome, Staff)> {
    let (server, mut chrome) = start(test, "en", published, adjust).await?;
    let staff = enrol(&server, &mut chrome, email, roles).await;
    log_in(&server, &chrome, &staff).await;
    Some((server, chrome, staff))
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

/// Adds an account of the harness's authority with `roles` and enrols it in the browser
/// through its link.
async fn enrol(server: &TestServer, chrome: &mut Chrome, email: &str, roles: Vec<Role>) -> Staff {
    enrol_in(server, chrome, authority_id(server), email, roles).await
}

/// Adds an account of `authority` with `roles` and enrols it in the browser through its link.
async fn enrol_in(
    server: &TestServer,
    chrome: &mut Chrome,
    authority: String,
    email: &str,
    roles: Vec<Role>,
) -> Staff {
    let link = enrolment_link(server, authority, email, roles).await;
    chrome.open(&link).await;
    assert_eq!(chrome.count(".qr svg").await, 1, "the key as a QR code");
    let key = chrome.text("code.secret").await;
    let secret = base32_decode(&key);
    assert_eq!(secret.len(), 20, "a 160-bit key: {key}");
    chrome.shot("enrol").await;

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
    chrome.shot("enrol-wrong-code").await;
    assert_eq!(chrome.text("code.secret").await, key, "the same key");

    submit_enrolment(chrome, &totp(&secret, now, 6)).await;
    assert_eq!(
        chrome.text("p.notice").await,
        "Your account is ready. Sign in."
    );
    chrome.shot("enrolled").await;
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
    let Some((server, mut chrome)) = start(
        "issuer",
        "en",
        &["login", "enrol", "home", "issue-code"],
        |_| {},
    )
    .await
    else {
        return;
    };
    // Without a session, the console is its sign-in page.
    chrome.open(&format!("{}/", server.console_url)).await;
    assert_eq!(chrome.path().await, "/login");
    assert_eq!(chrome.text("h1").await, "Sign in");
    chrome.shot("login").await;

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
    chrome.shot("login-wrong-password").await;
    server.clock.advance(30);
    let now = server.clock.now();
    let code = wrong_code(&staff.secret, now);
    submit_login(&server, &chrome, &staff.email, PASSWORD, &code).await;
    assert_eq!(chrome.text("p.error").await, LOGIN_FAILED);
    chrome.shot("login-wrong-code").await;

    log_in(&server, &chrome, &staff).await;
    assert_eq!(chrome.text("h1").await, "Issue an upload code");
    assert!(
        chrome
            .text("header .account")
            .await
            .contains("nurse.lan@example.org")
    );
    chrome.shot("home").await;

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
    chrome.shot("issue-code").await;

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
    chrome.shot("signed-out").await;
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
    let Some((server, mut chrome, _)) = start_signed_in(
        "viewer",
        &["forbidden"],
        |_| {},
        "viewer@example.org",
        vec![Role::Viewer],
    )
    .await
    else {
        return;
    };
    assert_eq!(
        chrome.count("form[action='/codes']").await,
        0,
        "no issue form"
    );
    assert_eq!(
        chrome.text("p.notice").await,
        "Your account has nothing to do on this page yet."
    );
    chrome.shot("viewer-home").await;

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
    chrome.shot("forbidden").await;
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
    let Some((server, mut chrome)) = start("lock", "en", &["locked"], |_| {}).await else {
        return;
    };
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
    chrome.shot("locked").await;

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
    chrome.shot("idle-expired").await;
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
    let Some((server, mut chrome)) = start("vietnamese", "vi,en", &["login-vi"], |_| {}).await
    else {
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
    chrome.shot("login-vi").await;
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
    chrome.shot("login-failed-vi").await;
    chrome.close().await;
    server.stop().await;
}

/// Opens the home page and fills the issue form: the region, a confirmed test, 24 hours.
async fn fill_issue_form(server: &TestServer, chrome: &Chrome) {
    chrome.open(&format!("{}/", server.console_url)).await;
    chrome
        .find("form[action='/codes'] select[name='region']")
        .await
        .select_by_value(REGION)
        .await
        .expect("region");
    chrome
        .find("form[action='/codes'] select[name='report_type']")
        .await
        .select_by_value("confirmed_test")
        .await
        .expect("report type");
    chrome
        .type_into("form[action='/codes'] input[name='valid_hours']", "24")
        .await;
}

/// Issues one code with the home page's form (a confirmed test, 24 hours) and returns it.
async fn issue_code(server: &TestServer, chrome: &Chrome) -> String {
    fill_issue_form(server, chrome).await;
    chrome
        .click("form[action='/codes'] button[type='submit']")
        .await;
    assert_eq!(chrome.text("h1").await, "Upload code");
    chrome.text("p.code").await
}

#[tokio::test]
async fn a_dated_code_uploads_shows_used_and_carries_days_since_onset_and_refusals_issue_nothing() {
    // Midnights UTC as 10-minute interval numbers (`date -u -d 2026-01-09 +%s` / 600, ...).
    const DEC_28: u32 = 1_766_880_000 / 600;
    const JAN_02: u32 = 1_767_312_000 / 600;
    const JAN_09: u32 = 1_767_916_800 / 600;
    assert_eq!((DEC_28, JAN_02, JAN_09), (2_944_800, 2_945_520, 2_946_528));
    let quota = |config: &mut ServerConfig| config.console_codes_per_user_per_day = 2;
    let Some((server, mut chrome, _)) = start_signed_in(
        "dated",
        &["codes", "quota"],
        quota,
        "doctor.hai@example.org",
        vec![Role::Issuer],
    )
    .await
    else {
        return;
    };

    // A form whose CSRF token was taken out (as another site's form would lack it) is refused.
    fill_issue_form(&server, &chrome).await;
    chrome
        .client()
        .execute(
            "document.querySelector(\"form[action='/codes'] input[name='csrf']\").remove();",
            Vec::new(),
        )
        .await
        .expect("the token is removed");
    assert_eq!(
        chrome
            .count("form[action='/codes'] input[name='csrf']")
            .await,
        0
    );
    chrome
        .click("form[action='/codes'] button[type='submit']")
        .await;
    assert_eq!(chrome.path().await, "/codes");
    assert_eq!(chrome.text("h1").await, "Not allowed");
    assert_eq!(
        chrome.text("p.notice").await,
        "This form has expired or did not come from the console. \
         Go back, reload the page and try again."
    );
    assert_eq!(chrome.count("p.code").await, 0);
    chrome.shot("csrf-refused").await;

    // The symptom-onset date typed into the form's date field, as a person does
    // (month, day, year in an English browser).
    fill_issue_form(&server, &chrome).await;
    chrome
        .type_into("input[name='symptom_onset_date']", "01022026")
        .await;
    assert_eq!(
        chrome
            .find("input[name='symptom_onset_date']")
            .await
            .prop("value")
            .await
            .expect("value")
            .as_deref(),
        Some("2026-01-02")
    );
    chrome.shot("home-dated").await;
    chrome
        .click("form[action='/codes'] button[type='submit']")
        .await;
    assert_eq!(chrome.text("h1").await, "Upload code");
    let code = chrome.text("p.code").await;

    // The patient's phone uploads keys of three literal days with it.
    let mut client = server.upload_client().await;
    let keys = vec![
        gaen(key16(0x51), JAN_09, 144),
        gaen(key16(0x52), JAN_02, 144),
        gaen(key16(0x53), DEC_28, 144),
    ];
    let answer = upload_with_code(&mut client, "dated", keys, &code)
        .await
        .expect("the dated code uploads");
    assert_eq!(answer.keys_accepted, 3);
    chrome.open(&format!("{}/codes", server.console_url)).await;
    assert_eq!(
        chrome.attributes("#codes td.status", "data-status").await,
        ["used"]
    );
    assert_eq!(chrome.text("#codes td.status").await, "Used");

    // The published export, read by the independent decoder: each key's day minus
    // 2026-01-02.
    if let Some(onsets) = exported_onsets(&server, 3).await {
        let expected: BTreeMap<String, Option<i64>> = [(0x51, 7), (0x52, 0), (0x53, -5)]
            .into_iter()
            .map(|(byte, days)| (hex::encode(key16(byte)), Some(days)))
            .collect();
        assert_eq!(onsets, expected);
    }

    // The account's quota is 2 a day: the second code is issued, the third refused with the
    // time the quota resets (TEST_NOW is 2026-01-10 12:00 UTC: the next midnight). A minute
    // later than the first, so that the list's order is the issue order.
    server.clock.advance(60);
    issue_code(&server, &chrome).await;
    fill_issue_form(&server, &chrome).await;
    assert_eq!(
        chrome.text("#quota-user").await,
        "Codes you issued today: 2 / 2"
    );
    chrome
        .click("form[action='/codes'] button[type='submit']")
        .await;
    assert_eq!(chrome.count("p.code").await, 0);
    assert_eq!(
        chrome.text("p.error").await,
        "The code could not be issued: Your daily quota of codes is used up; \
         it resets at 2026-01-11 00:00 UTC"
    );
    chrome.shot("quota").await;

    // The list holds the two codes issued, newest first: nothing came of the refusals.
    chrome.open(&format!("{}/codes", server.console_url)).await;
    assert_eq!(
        chrome.attributes("#codes td.status", "data-status").await,
        ["unused", "used"]
    );
    assert_eq!(chrome.text("#codes-total").await, "In all: 2");
    assert_fits(&chrome, "#codes").await;
    chrome.shot("codes").await;
    chrome.close().await;
    server.stop().await;
}

/// Checks that the table `css` selects is shown whole in the laptop-sized window, with no
/// column hidden behind its scroll bar.
async fn assert_fits(chrome: &Chrome, css: &str) {
    let table = chrome.find(css).await;
    let argument = serde_json::to_value(&table).expect("element as JSON");
    let widths = chrome
        .client()
        .execute(
            "const box = arguments[0].parentElement;
             return [box.scrollWidth, box.clientWidth];",
            vec![argument],
        )
        .await
        .expect("widths");
    assert_eq!(
        widths[0], widths[1],
        "{css} is wider than its page: {widths}"
    );
}

/// Returns the roles and the state shown in the users page's row of `email`.
async fn user_row(chrome: &Chrome, email: &str) -> (String, String) {
    let row = format!("tr[id='user-{email}']");
    (
        chrome.text(&format!("{row} td.roles")).await,
        chrome.text(&format!("{row} td.state")).await,
    )
}

#[tokio::test]
async fn the_last_admin_stays_and_another_authoritys_admin_sees_nothing_of_this_one() {
    let Some((server, mut chrome, _)) = start_signed_in(
        "authorities",
        &["users", "audit"],
        |_| {},
        "chief@example.org",
        vec![Role::Admin, Role::Issuer],
    )
    .await
    else {
        return;
    };
    let authority = authority_id(&server);
    let code = issue_code(&server, &chrome).await;

    // The only admin takes the admin role off their own account: refused, and so is
    // disabling it; the page reloaded shows the account as it was.
    chrome.open(&format!("{}/users", server.console_url)).await;
    assert_eq!(
        user_row(&chrome, "chief@example.org").await,
        ("admin,issuer".to_owned(), "Active".to_owned())
    );
    assert_fits(&chrome, "#users").await;
    chrome.shot("users").await;
    let row = "tr[id='user-chief@example.org']";
    chrome
        .press(&format!("{row} input[name='role_admin']"))
        .await;
    chrome.click(&format!("{row} button[value='roles']")).await;
    let last_admin =
        "An authority always keeps at least one enabled admin; the change was not made.";
    assert_eq!(chrome.text("p.error").await, last_admin);
    chrome.shot("last-admin").await;
    chrome
        .click(&format!(
            "{row} form:has(input[value='disable']) button[type='submit']"
        ))
        .await;
    assert_eq!(chrome.text("p.error").await, last_admin);
    chrome.open(&format!("{}/users", server.console_url)).await;
    assert_eq!(
        user_row(&chrome, "chief@example.org").await,
        ("admin,issuer".to_owned(), "Active".to_owned())
    );

    chrome.open(&format!("{}/audit", server.console_url)).await;
    assert!(chrome.text("#audit").await.contains("role_change"));
    assert_fits(&chrome, "#audit").await;
    chrome.shot("audit").await;
    chrome
        .click("form[action='/logout'] button[type='submit']")
        .await;

    // The admin of another authority, in the same browser.
    let (other_authority, _) = another_authority(&server, "Ha Noi CDC", "VN-HN").await;
    assert_ne!(other_authority, authority);
    let other = enrol_in(
        &server,
        &mut chrome,
        other_authority,
        "other.admin@example.org",
        vec![Role::Admin, Role::Viewer],
    )
    .await;
    log_in(&server, &chrome, &other).await;
    for page in ["/codes", "/users", "/audit", "/stats"] {
        chrome.open(&format!("{}{page}", server.console_url)).await;
        assert_eq!(chrome.path().await, page);
        let source = chrome.client().source().await.expect("page source");
        for secret in ["chief@example.org", code.as_str(), &code.replace('-', "")] {
            assert!(!source.contains(secret), "{page} shows {secret}: {source}");
        }
    }
    chrome.open(&format!("{}/codes", server.console_url)).await;
    assert_eq!(chrome.text("#codes-total").await, "In all: 0");
    assert_eq!(chrome.count("#codes tbody tr").await, 0);
    chrome.open(&format!("{}/users", server.console_url)).await;
    assert_eq!(chrome.count("#users tbody tr").await, 1);
    chrome.open(&format!("{}/audit", server.console_url)).await;
    let rows = audit_rows(&chrome).await;
    assert!(!rows.is_empty());
    for row in &rows {
        assert_eq!(row[1], "other.admin@example.org", "{rows:?}");
    }
    chrome.close().await;
    server.stop().await;
}

#[tokio::test]
async fn a_bulk_issue_downloads_1000_distinct_codes_that_all_upload() {
    let limits = |config: &mut ServerConfig| {
        config.console_codes_per_user_per_day = 1000;
        // A thousand uploads at once, as a campaign's phones would over a day.
        config.authority_uploads_per_minute = 0;
    };
    let Some((server, mut chrome, _)) = start_signed_in(
        "bulk",
        &["bulk", "stats"],
        limits,
        "campaign@example.org",
        vec![Role::Issuer, Role::Viewer],
    )
    .await
    else {
        return;
    };
    chrome
        .find("#bulk_region")
        .await
        .select_by_value(REGION)
        .await
        .expect("region");
    chrome.type_into("#bulk_valid_hours", "48").await;
    chrome.type_into("#bulk_count", "1000").await;
    chrome.scroll_to("#bulk").await;
    chrome.shot("bulk").await;
    let started = Instant::now();
    let (name, csv) = chrome.download("#bulk_submit").await;
    eprintln!(
        "1,000 codes issued and downloaded in {:?}",
        started.elapsed()
    );
    assert!(
        name.starts_with("codes-") && name.ends_with(".csv"),
        "{name}"
    );
    let csv = String::from_utf8(csv).expect("a UTF-8 CSV");
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("code,expires_at"));
    let mut codes = BTreeSet::new();
    for line in lines {
        let (code, expires) = line.split_once(',').expect("two columns");
        // 48 h after 2026-01-10 12:00 UTC, and the steps the sign-in moved.
        assert!(expires.starts_with("2026-01-12 12:"), "{line}");
        assert!(
            code.len() == 11 && code.as_bytes()[5] == b'-',
            "XXXXX-XXXXX: {line}"
        );
        codes.insert(code.to_owned());
    }
    assert_eq!(codes.len(), 1000, "1,000 distinct codes");

    // Every one of them uploads over the real gRPC API, 16 phones at a time.
    let started = Instant::now();
    let client = server.upload_client().await;
    let yesterday = ((TEST_NOW / 86_400 - 1) * 144) as u32;
    let accepted: Vec<u32> = futures::stream::iter(codes.iter().enumerate())
        .map(|(index, code)| {
            let mut client = client.clone();
            async move {
                let mut key = [0xb0; 16];
                key[..4].copy_from_slice(&(index as u32).to_be_bytes());
                let keys = vec![gaen(key, yesterday, 144)];
                upload_with_code(&mut client, &format!("bulk-{index}"), keys, code)
                    .await
                    .unwrap_or_else(|status| panic!("{code}: {status:?}"))
                    .keys_accepted
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    eprintln!("1,000 uploads in {:?}", started.elapsed());
    assert_eq!(accepted, vec![1; 1000]);

    // The codes list says so too.
    chrome.open(&format!("{}/codes", server.console_url)).await;
    assert_eq!(chrome.text("#codes-total").await, "In all: 1000");
    assert_eq!(
        chrome.attributes("#codes td.status", "data-status").await,
        vec!["used"; 50]
    );
    // And the statistics: a thousand issued and used today.
    chrome.open(&format!("{}/stats", server.console_url)).await;
    assert_eq!(chrome.count("svg#stats-chart").await, 1);
    let today = chrome.texts("tr[id='day-2026-01-10'] td").await;
    assert_eq!(today[..3], ["2026-01-10", "1000", "1000"], "{today:?}");
    assert_fits(&chrome, "#stats").await;
    chrome.shot("stats").await;
    chrome.close().await;
    server.stop().await;
}

#[tokio::test]
async fn after_backup_and_restore_staff_sign_in_again_and_the_audit_log_is_kept() {
    let Some((server, chrome, staff)) = start_signed_in(
        "restore",
        &[],
        |_| {},
        "keeper@example.org",
        vec![Role::Admin],
    )
    .await
    else {
        return;
    };
    chrome.open(&format!("{}/audit", server.console_url)).await;
    let before = audit_rows(&chrome).await;
    assert_eq!(
        before.iter().map(|row| row[2].as_str()).collect::<Vec<_>>(),
        ["login", "enrol"],
        "{before:?}"
    );

    let (server, _restored) = backup_and_restore(server, 1).await;

    // The browser still holds the session cookie of before the backup (cookies are kept per
    // host, not per port); the restored server sends it to sign in.
    let cookies = chrome.client().get_all_cookies().await.expect("cookies");
    assert!(
        cookies
            .iter()
            .any(|cookie| cookie.name() == "exposure-session"),
        "{cookies:?}"
    );
    chrome.open(&format!("{}/audit", server.console_url)).await;
    assert_eq!(chrome.path().await, "/login");
    log_in(&server, &chrome, &staff).await;
    chrome.open(&format!("{}/audit", server.console_url)).await;
    let after = audit_rows(&chrome).await;
    assert_eq!(after.len(), before.len() + 1, "{after:?}");
    assert_eq!(after[0][2], "login");
    assert_eq!(after[1..], before[..], "the records of before the backup");
    chrome.close().await;
    server.stop_kept().await;
}

/// Returns the audit page's rows (time, user, action, object, result, network), newest first,
/// leaving out the `user add` records, which read the system's clock, not the server's.
async fn audit_rows(chrome: &Chrome) -> Vec<Vec<String>> {
    let cells = chrome.texts("#audit tbody td").await;
    assert_eq!(cells.len() % 6, 0, "six columns: {cells:?}");
    cells
        .chunks(6)
        .filter(|row| row[2] != "user_add")
        .map(<[String]>::to_vec)
        .collect()
}
