//! A real browser for the console's tests: Debian's headless chromium, driven over WebDriver
//! (the `fantoccini` client) through its own `chromedriver`, which runs as a child process on a
//! free loopback port and is killed, with the browser it started, when the [`Chrome`] drops.
//! Each browser has a fresh temporary profile (no cookies, no cache), the languages it is
//! given (sent as `Accept-Language`), writes a PNG of every page a test asks it to
//! [`Chrome::shot`] into a folder, and saves what a page downloads into a folder of its own
//! ([`Chrome::download`]).
//!
//! Where chromium or chromedriver is missing, [`Chrome::start`] reports it through
//! [`crate::outside::missing`]: the test fails under `CI` and is skipped loudly elsewhere.

use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::error::NewSessionError;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

/// Where Debian's packages put the two programs, tried before `PATH`.
const CHROMIUM: [&str; 2] = ["/usr/bin/chromium", "chromium"];
const CHROMEDRIVER: [&str; 2] = ["/usr/bin/chromedriver", "chromedriver"];
/// How long chromedriver may take to answer its first request.
const DRIVER_START: Duration = Duration::from_secs(30);
/// How long a page may take to come after a click (Argon2id on a busy machine).
const PAGE_LOAD: Duration = Duration::from_secs(30);
/// The browser window: a laptop's, so the screenshots show the page as staff see it.
pub const WINDOW: (u32, u32) = (1000, 840);

/// What a browser is started with.
pub struct Options<'a> {
    /// The browser's languages, most preferred first (`Accept-Language`), e.g. `"vi,en"`.
    pub languages: &'a str,
    /// The folder every screenshot of this browser goes to (created when missing).
    pub shots: PathBuf,
    /// The names of the screenshots that are also written to `$EXPOSURE_SCREENSHOTS` when it
    /// is set (the pictures of the docs), each taken by one test only.
    pub published: &'a [&'a str],
}

/// A headless chromium under its own chromedriver.
pub struct Chrome {
    client: Client,
    driver: Child,
    shots: PathBuf,
    published: Vec<String>,
    taken: usize,
    downloads: tempfile::TempDir,
    _profile: tempfile::TempDir,
}

impl Chrome {
    /// Starts chromedriver and a browser session; `None` (after a loud line) when chromium or
    /// chromedriver is not installed outside CI. Panics under `CI` when they are missing, and
    /// whenever one is installed but fails to start.
    pub async fn start(options: Options<'_>) -> Option<Self> {
        let install = "install Debian's chromium and chromium-driver \
                       (apt-get install chromium chromium-driver; .ci/run does)";
        let Some(chromium) = program(&CHROMIUM) else {
            crate::outside::missing("chromium", install);
            return None;
        };
        let Some(chromedriver) = program(&CHROMEDRIVER) else {
            crate::outside::missing("chromedriver", install);
            return None;
        };
        std::fs::create_dir_all(&options.shots)
            .unwrap_or_else(|error| panic!("screenshot folder {:?}: {error}", options.shots));
        let profile = tempfile::tempdir().expect("browser profile folder");
        let downloads = tempfile::tempdir().expect("browser download folder");
        let port = free_port();
        // Its own process group, so that dropping the harness ends chromedriver and every
        // browser process it started, even when a test panics before closing the session.
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|error| panic!("starting {chromedriver:?}: {error}"));
        let mut chrome_options = json!({
            "binary": chromium,
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-sync",
                "--hide-scrollbars",
                format!("--window-size={},{}", WINDOW.0, WINDOW.1),
                format!("--lang={}", options.languages.split(',').next().unwrap_or("en")),
                format!("--user-data-dir={}", profile.path().display()),
            ],
            "prefs": { "intl.accept_languages": options.languages },
        });
        // No password manager or translation bar over the pages being screenshotted.
        chrome_options["prefs"]["credentials_enable_service"] = json!(false);
        chrome_options["prefs"]["translate"] = json!({ "enabled": false });
        // Downloads are saved without asking, into the browser's own folder.
        chrome_options["prefs"]["download"] = json!({
            "default_directory": downloads.path(),
            "prompt_for_download": false,
            "directory_upgrade": true,
        });
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        capabilities.insert("goog:chromeOptions".into(), chrome_options);
        Some(Self {
            client: connect(port, capabilities).await,
            driver,
            shots: options.shots,
            published: options
                .published
                .iter()
                .map(|name| (*name).to_owned())
                .collect(),
            taken: 0,
            downloads,
            _profile: profile,
        })
    }

    /// The WebDriver client, for what the helpers below do not cover.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Opens `url` and waits for it to load.
    pub async fn open(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|error| panic!("opening {url}: {error}"));
    }

    /// Returns the path of the page shown (`/login`), with its query.
    pub async fn path(&self) -> String {
        let url = self.client.current_url().await.expect("current url");
        match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        }
    }

    /// Returns the first element `css` selects; panics, naming it and the page, when none.
    pub async fn find(&self, css: &str) -> Element {
        match self.client.find(Locator::Css(css)).await {
            Ok(element) => element,
            Err(error) => {
                let page = match self.client.find(Locator::Css("body")).await {
                    Ok(body) => body.text().await.unwrap_or_default(),
                    Err(_) => String::new(),
                };
                panic!(
                    "no {css} on {}: {error}; the page says:\n{page}",
                    self.path().await
                )
            }
        }
    }

    /// Returns how many elements `css` selects.
    pub async fn count(&self, css: &str) -> usize {
        self.all(css).await.len()
    }

    /// Returns the visible text of the first element `css` selects.
    pub async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.expect("element text")
    }

    /// Returns the visible texts of every element `css` selects, in the page's order.
    pub async fn texts(&self, css: &str) -> Vec<String> {
        let mut texts = Vec::new();
        for element in self.all(css).await {
            texts.push(element.text().await.expect("element text"));
        }
        texts
    }

    /// Returns the attribute `name` of every element `css` selects, in the page's order;
    /// panics when one lacks it.
    pub async fn attributes(&self, css: &str, name: &str) -> Vec<String> {
        let mut values = Vec::new();
        for element in self.all(css).await {
            let value = element.attr(name).await.expect("attribute");
            values.push(value.unwrap_or_else(|| panic!("{css} without {name}")));
        }
        values
    }

    async fn all(&self, css: &str) -> Vec<Element> {
        self.client
            .find_all(Locator::Css(css))
            .await
            .unwrap_or_else(|error| panic!("finding {css}: {error}"))
    }

    /// Types `text` into the field `css` selects (after clearing it), key by key.
    pub async fn type_into(&self, css: &str, text: &str) {
        let field = self.find(css).await;
        field.clear().await.expect("clear field");
        field.send_keys(text).await.expect("type into field");
    }

    /// Clicks the button `css` selects and waits until the browser shows the page its form's
    /// answer: the click returns once the click is done, and the form is submitted after it,
    /// so the old page's root element going stale marks the new page.
    pub async fn click(&self, css: &str) {
        let old = self.find("html").await;
        self.press(css).await;
        let started = Instant::now();
        loop {
            match old.tag_name().await {
                // Gone with its document: chromedriver says "stale element", "no such
                // element" or "does not belong to the document", as the page is swapped. A
                // failure of the session itself shows at the next command.
                Err(_) => return,
                Ok(_) if started.elapsed() > PAGE_LOAD => {
                    panic!("no new page {PAGE_LOAD:?} after clicking {css}")
                }
                Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    /// Clicks the element `css` selects, and returns once the click is done.
    pub async fn press(&self, css: &str) {
        self.find(css)
            .await
            .click()
            .await
            .unwrap_or_else(|error| panic!("clicking {css}: {error}"));
    }

    /// Clicks the button `css` selects, whose answer is a download rather than a page, and
    /// returns the downloaded file's name and bytes once the browser has saved it whole.
    pub async fn download(&self, css: &str) -> (String, Vec<u8>) {
        self.press(css).await;
        let started = Instant::now();
        loop {
            let names: Vec<String> = std::fs::read_dir(self.downloads.path())
                .expect("download folder")
                .map(|entry| {
                    entry
                        .expect("download folder entry")
                        .file_name()
                        .to_string_lossy()
                        .into_owned()
                })
                .collect();
            // Chromium writes `NAME.crdownload` (or a `.com.google.Chrome.*` temporary) and
            // renames it to NAME when the download is complete.
            let done: Vec<&String> = names
                .iter()
                .filter(|name| !name.ends_with(".crdownload") && !name.starts_with('.'))
                .collect();
            match done.as_slice() {
                [name] if names.len() == 1 => {
                    let path = self.downloads.path().join(name);
                    let bytes = std::fs::read(&path)
                        .unwrap_or_else(|error| panic!("reading {path:?}: {error}"));
                    std::fs::remove_file(&path).expect("remove the download");
                    return ((*name).clone(), bytes);
                }
                _ if started.elapsed() > PAGE_LOAD => {
                    panic!("no download {PAGE_LOAD:?} after clicking {css}: {names:?}")
                }
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    /// Scrolls the element `css` selects to the top of the window (for a screenshot of a
    /// page's lower part).
    pub async fn scroll_to(&self, css: &str) {
        let element = self.find(css).await;
        let argument = serde_json::to_value(&element).expect("element as JSON");
        self.client
            .execute("arguments[0].scrollIntoView(true);", vec![argument])
            .await
            .unwrap_or_else(|error| panic!("scrolling to {css}: {error}"));
    }

    /// Saves a PNG of the window as `NN-name.png` in the screenshot folder and returns its
    /// path; when `EXPOSURE_SCREENSHOTS` names a folder (relative to the repository root) and
    /// `name` is one of the browser's published names, the same picture is written there as
    /// `name.png` (the pictures of the docs).
    pub async fn shot(&mut self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("screenshot");
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 1000,
            "a screenshot is a PNG ({} bytes)",
            png.len()
        );
        self.taken += 1;
        let path = self.shots.join(format!("{:02}-{name}.png", self.taken));
        std::fs::write(&path, &png).unwrap_or_else(|error| panic!("writing {path:?}: {error}"));
        if let Some(folder) = std::env::var_os("EXPOSURE_SCREENSHOTS")
            && self.published.iter().any(|published| published == name)
        {
            // Relative to the repository root (tests run in the crate's folder).
            let root = Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .expect("the workspace root");
            let folder = root.join(folder);
            std::fs::create_dir_all(&folder).expect("EXPOSURE_SCREENSHOTS folder");
            let published = folder.join(format!("{name}.png"));
            std::fs::write(&published, &png)
                .unwrap_or_else(|error| panic!("writing {published:?}: {error}"));
            eprintln!("screenshot for the docs: {}", published.display());
        }
        path
    }

    /// Ends the browser session (the browser quits) and chromedriver.
    pub async fn close(self) {
        // A clone: `Drop` still owns the harness and ends chromedriver.
        if let Err(error) = self.client.clone().close().await {
            eprintln!("closing the browser session: {error}");
        }
    }
}

impl Drop for Chrome {
    fn drop(&mut self) {
        // The group chromedriver leads (see `start`): the driver and any browser still open.
        // (`kill` the program: this crate has no unsafe code to call `kill(2)` with.)
        let group = format!("-{}", self.driver.id());
        let killed = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        if !killed.is_ok_and(|status| status.success()) {
            let _ = self.driver.kill();
        }
        let _ = self.driver.wait();
    }
}

/// Returns the first of `candidates` that is installed: an absolute path that exists, or a
/// name found on `PATH`.
fn program(candidates: &[&str]) -> Option<PathBuf> {
    candidates.iter().find_map(|candidate| {
        let path = Path::new(candidate);
        if path.is_absolute() {
            return path.is_file().then(|| path.to_owned());
        }
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|folder| folder.join(candidate))
                .find(|path| path.is_file())
        })
    })
}

/// Returns a loopback port that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Opens a session on the chromedriver at `port`, retrying while it starts.
async fn connect(port: u16, capabilities: serde_json::Map<String, serde_json::Value>) -> Client {
    let url = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    loop {
        let attempt = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities.clone())
            .connect(&url)
            .await;
        match attempt {
            Ok(client) => return client,
            // Refused while chromedriver starts.
            Err(
                NewSessionError::Failed(_) | NewSessionError::FailedC(_) | NewSessionError::Lost(_),
            ) if started.elapsed() < DRIVER_START => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("no browser session from chromedriver at {url}: {error}"),
        }
    }
}
