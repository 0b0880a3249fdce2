//! Who may scrape `/metrics`: with `--metrics-token-file`, only a scraper that sends the token
//! as a bearer token; a token too short to be a secret is refused at start.

use exposure_server::ServerConfig;
use exposure_server::metrics_http::{ScrapeAccess, serve};
use exposure_server::transport::connections::ListenerLimits;
use exposure_tests::http_client::HttpClient;
use http::Method;

/// The token the test's scraper holds (as `openssl rand -hex 16` would make).
const TOKEN: &str = "5f0c2a9e71d84b36a1e0c7d2948b3f60";

#[tokio::test]
async fn a_scrape_needs_the_bearer_token_when_one_is_set() {
    let handle = exposure_server::metrics::install().expect("recorder");
    metrics::counter!(exposure_server::metrics::POLLS_TOTAL).increment(3);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let config = ServerConfig::with_data_dir("/nonexistent");
    let serving = tokio::spawn(serve(
        listener,
        handle,
        None,
        ListenerLimits::metrics(&config),
        ScrapeAccess::with_token(TOKEN).expect("a usable token"),
    ));
    let client = HttpClient::new(&url);

    let anonymous = client.get("/metrics").await;
    assert_eq!(anonymous.status, 401);
    assert_eq!(anonymous.header("www-authenticate"), "Bearer");
    assert!(
        !anonymous.text().contains("exposure_"),
        "{}",
        anonymous.text()
    );
    let wrong = client
        .send(
            Method::GET,
            "/metrics",
            &[("authorization", "Bearer 5f0c2a9e71d84b36a1e0c7d2948b3f61")],
        )
        .await;
    assert_eq!(wrong.status, 401);
    let bearer = format!("Bearer {TOKEN}");
    let scraper = client
        .send(Method::GET, "/metrics", &[("authorization", &bearer)])
        .await;
    assert_eq!(scraper.status, 200);
    assert!(
        scraper.text().contains("exposure_polls_total 3"),
        "{}",
        scraper.text()
    );
    serving.abort();
}

#[test]
fn a_short_or_spaced_token_is_refused() {
    assert!(ScrapeAccess::with_token("short").is_err());
    assert!(ScrapeAccess::with_token("a token with spaces in it").is_err());
    assert!(ScrapeAccess::with_token(TOKEN).is_ok());
}
