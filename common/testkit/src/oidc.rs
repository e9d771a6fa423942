//! A real OpenID provider per test (npm `oidc-provider`, `tests/oidc/provider.mjs` on Node) that
//! issues Microsoft-Entra-shaped ID tokens, killed on drop; [`sign_in`] and [`abort`] drive its
//! login and consent pages over HTTP; [`run_browser_check`] runs the real-browser check of the
//! sign-in popup (`tests/oidc/browser.mjs`, headless chromium).
//!
//! The scripts live in `$TTSCM_TEST_OIDC_DIR` (set by `tests/run.sh`, which runs `npm ci` there),
//! falling back to `tests/oidc` in the workspace.
//!
//! Accounts: any login name with any password. The ID token carries `sub` = the login, `oid` =
//! [`object_id`] of it, `tid` = [`TEST_TENANT`], `name` = the login capitalised,
//! `preferred_username` and `email` = `<login>@contoso.example` — except that a login starting
//! with `noemail` has no `email` claim.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tempfile::TempDir;
use url::Url;

/// The tenant id (`tid`) of every account.
pub const TEST_TENANT: &str = "11111111-2222-3333-4444-555555555555";
/// The one client the provider knows.
pub const TEST_CLIENT_ID: &str = "ttscm-test";
/// Its secret (`client_secret_post` at the token endpoint).
pub const TEST_CLIENT_SECRET: &str = "ttscm-test-secret";
/// The domain of `preferred_username` and `email`.
pub const TEST_DOMAIN: &str = "contoso.example";

/// Generous: on a fresh machine with a cold disk cache, several providers (and Chromium) start at
/// once on two cores.
const START_DEADLINE: Duration = Duration::from_secs(30);
const BROWSER_DEADLINE: Duration = Duration::from_secs(120);
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Redirects and form posts a sign-in may take (it needs five).
const MAX_STEPS: usize = 12;

/// A running OpenID provider (`node provider.mjs`), killed on drop.
pub struct OidcProvider {
    /// `http://127.0.0.1:<port>`; discovery is at `{issuer}/.well-known/openid-configuration`.
    pub issuer: String,
    child: Child,
    /// Held open: the provider exits when its stdin closes, so it also ends when the test
    /// process dies without running `Drop`.
    _stdin: Option<ChildStdin>,
    log_dir: TempDir,
}

impl OidcProvider {
    /// Starts a provider whose client [`TEST_CLIENT_ID`] may redirect to exactly `redirect_uris`.
    ///
    /// Panics when Node or the npm packages are missing (run the suite with `tests/run.sh`) or
    /// when the provider does not report its issuer within 30 s.
    pub fn start(redirect_uris: &[String]) -> Self {
        let dir = oidc_dir();
        let log_dir = tempfile::tempdir().expect("a temp dir can be created");
        let log_path = log_dir.path().join("provider.log");
        let log = std::fs::File::create(&log_path).expect("the provider log can be created");
        let mut child = Command::new("node")
            .arg(dir.join("provider.mjs"))
            .current_dir(&dir)
            .env("OIDC_PORT", "0")
            .env("OIDC_REDIRECT_URIS", redirect_uris.join(","))
            .env("OIDC_CLIENT_ID", TEST_CLIENT_ID)
            .env("OIDC_CLIENT_SECRET", TEST_CLIENT_SECRET)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start node ({e}); {RUN_SH}"));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout is piped");

        // The first stdout line is `{"issuer":"…"}`; the rest (there should be none) is drained.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = tx.send(lines.next());
            lines.for_each(drop);
        });
        let line = match rx.recv_timeout(START_DEADLINE) {
            Ok(Some(Ok(line))) => line,
            outcome => {
                let _ = child.kill();
                let _ = child.wait();
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                panic!("the OpenID provider did not report its issuer ({outcome:?}); its log:\n{log}");
            }
        };
        let issuer = serde_json::from_str::<serde_json::Value>(&line)
            .ok()
            .and_then(|v| v["issuer"].as_str().map(str::to_owned))
            .unwrap_or_else(|| panic!("unexpected first line from provider.mjs: {line}"));
        Self {
            issuer,
            child,
            _stdin: stdin,
            log_dir,
        }
    }

    /// What the provider wrote to stderr so far (warnings, errors).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_dir.path().join("provider.log")).unwrap_or_default()
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const RUN_SH: &str = "run the suite with tests/run.sh (npm ci in tests/oidc)";

/// `$TTSCM_TEST_OIDC_DIR`, or `tests/oidc` in the workspace; panics when its npm packages are
/// not installed.
fn oidc_dir() -> PathBuf {
    let dir = std::env::var_os("TTSCM_TEST_OIDC_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/oidc"));
    assert!(
        dir.join("node_modules/oidc-provider").is_dir(),
        "{} has no node_modules; {RUN_SH}",
        dir.display()
    );
    dir
}

/// The `oid` claim of `login`: an RFC 9562 version-8 UUID from the first 16 bytes of
/// SHA-256(`"oid:" + login`), the same derivation as `provider.mjs`.
pub fn object_id(login: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, format!("oid:{login}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest.as_ref()[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|byte| format!("{byte:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// Signs in as `login` (any password) on the provider `authorize_url` belongs to: follows its
/// redirects and submits the login and consent forms with a cookie-keeping client, and answers
/// the first redirect that leaves the provider's origin — on success the absolute
/// `{redirect_uri}?code=…&state=…&iss=…`, for a rejected request its `?error=…&state=…` —
/// without requesting it.
///
/// Panics when the provider answers anything else (e.g. an error page for an unknown client or
/// redirect URI).
pub async fn sign_in(authorize_url: &str, login: &str) -> String {
    drive(authorize_url, Some(login)).await
}

/// Like [`sign_in`], but the user cancels on the login page: answers the redirect to the relying
/// party, `{redirect_uri}?error=access_denied&error_description=…&state=…`.
pub async fn abort(authorize_url: &str) -> String {
    drive(authorize_url, None).await
}

/// Follows the provider's pages until a redirect leaves its origin. `login` `None` cancels on
/// the first interaction page instead of signing in.
async fn drive(authorize_url: &str, login: Option<&str>) -> String {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(HTTP_TIMEOUT)
        .build()
        .expect("an HTTP client can be built");
    let mut url = Url::parse(authorize_url).expect("the authorize URL is absolute");
    let origin = url.origin();
    let mut form: Option<Vec<(&str, &str)>> = None;
    for _ in 0..MAX_STEPS {
        let request = match form.take() {
            Some(fields) => client
                .post(url.clone())
                .header(reqwest::header::CONTENT_TYPE, FORM)
                .body(form_body(&fields)),
            None => client.get(url.clone()),
        };
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("OpenID provider request {url} failed: {e}"));
        let status = response.status();
        if status.is_redirection() {
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_else(|| panic!("{status} from {url} without a Location"));
            let next = url
                .join(location)
                .unwrap_or_else(|e| panic!("bad Location {location:?} from {url}: {e}"));
            if next.origin() != origin {
                return next.into();
            }
            url = next;
            continue;
        }
        let body = response.text().await.unwrap_or_default();
        assert!(
            status.is_success(),
            "OpenID provider answered {status} for {url}:\n{body}"
        );
        // An interaction page of oidc-provider's development interactions.
        let prompt = attribute_after(&body, r#"name="prompt" value=""#)
            .unwrap_or_else(|| panic!("no interaction form at {url}:\n{body}"));
        match (prompt, login) {
            (_, None) => {
                // The page's "[ Cancel ]" link: `/interaction/{uid}/abort`.
                let path = format!("{}/abort", url.path());
                url.set_path(&path);
                url.set_query(None);
            }
            ("login", Some(login)) => {
                url = form_action(&body, &url);
                form = Some(vec![("prompt", "login"), ("login", login), ("password", "x")]);
            }
            ("consent", Some(_)) => {
                url = form_action(&body, &url);
                form = Some(vec![("prompt", "consent")]);
            }
            (other, _) => panic!("unexpected interaction prompt {other:?} at {url}"),
        }
    }
    panic!("the sign-in at {authorize_url} did not leave the provider within {MAX_STEPS} steps")
}

const FORM: &str = "application/x-www-form-urlencoded";

/// `fields` as an `application/x-www-form-urlencoded` body.
pub fn form_body(fields: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish()
}

/// The value of the attribute that `marker` (ending in `="`) opens.
fn attribute_after<'a>(html: &'a str, marker: &str) -> Option<&'a str> {
    let start = html.find(marker)? + marker.len();
    let len = html[start..].find('"')?;
    Some(&html[start..start + len])
}

/// The (absolute or relative) `action` of the page's form, resolved against `page`.
fn form_action(html: &str, page: &Url) -> Url {
    attribute_after(html, r#"<form autocomplete="off" action=""#)
        .or_else(|| attribute_after(html, r#"action=""#))
        .and_then(|action| page.join(action).ok())
        .unwrap_or_else(|| panic!("no form action at {page}"))
}

/// Runs `node browser.mjs --edge <edge> --login <login> --screenshot-dir <dir>` (the popup
/// sign-in in headless chromium; the edge's OpenID provider must be an [`OidcProvider`]) and
/// answers its JSON result: `popupClosed`, `message` (the WebSocket message after `waiting`),
/// `errorPageText`, `screenshot`, `errorPageStatus`, `popupLastUrl` and `error` (a step of the
/// flow that failed, or null).
///
/// Blocks for up to 120 s; call it from `spawn_blocking` when the edge runs on the caller's
/// runtime. Panics with the script's stderr when it fails or times out. Chromium is
/// `$TTSCM_TEST_CHROMIUM` (default `/usr/bin/chromium`).
pub fn run_browser_check(edge: &str, login: &str, screenshot_dir: &Path) -> serde_json::Value {
    run_browser_script(&[
        "--edge".as_ref(),
        edge.as_ref(),
        "--login".as_ref(),
        login.as_ref(),
        "--screenshot-dir".as_ref(),
        screenshot_dir.as_os_str(),
    ])
}

/// [`run_browser_check`] from a web app on `app_origin` (served by the script; another origin
/// than the edge's): an opener-bound sign-in, its completion code passed from the popup to the
/// socket by the page.
pub fn run_browser_check_from(
    edge: &str,
    app_origin: &str,
    login: &str,
    screenshot_dir: &Path,
) -> serde_json::Value {
    run_browser_script(&[
        "--edge".as_ref(),
        edge.as_ref(),
        "--login".as_ref(),
        login.as_ref(),
        "--screenshot-dir".as_ref(),
        screenshot_dir.as_os_str(),
        "--app-origin".as_ref(),
        app_origin.as_ref(),
    ])
}

/// Runs `node browser.mjs --self-test`: the same browser check against a stand-in edge speaking
/// the edge's sign-in contract, with a provider of its own. Answers the result like
/// [`run_browser_check`]; panics with the script's stderr when the check does not hold, so a
/// broken browser harness (chromium, playwright-core, the provider's pages) shows up here rather
/// than as a sign-in failure of the edge.
pub fn browser_self_test(screenshot_dir: &Path) -> serde_json::Value {
    run_browser_script(&[
        "--self-test".as_ref(),
        "--screenshot-dir".as_ref(),
        screenshot_dir.as_os_str(),
    ])
}

/// `node browser.mjs <args>` with a 120 s limit; its JSON result line.
fn run_browser_script(args: &[&OsStr]) -> serde_json::Value {
    let dir = oidc_dir();
    let mut child = Command::new("node")
        .arg(dir.join("browser.mjs"))
        .args(args)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start node ({e}); {RUN_SH}"));
    let stdout = read_to_end_in_thread(child.stdout.take().expect("stdout is piped"));
    let stderr = read_to_end_in_thread(child.stderr.take().expect("stderr is piped"));

    // stdout ends when the script exits (chromium does not inherit it).
    let started = Instant::now();
    let Ok(out) = stdout.recv_timeout(BROWSER_DEADLINE) else {
        let _ = child.kill();
        let _ = child.wait();
        let err = stderr.recv_timeout(Duration::from_secs(5)).unwrap_or_default();
        panic!(
            "browser.mjs did not finish within {:?}; stderr:\n{err}",
            started.elapsed()
        );
    };
    let status = child.wait().expect("browser.mjs can be waited for");
    let err = stderr.recv_timeout(Duration::from_secs(5)).unwrap_or_default();
    assert!(status.success(), "browser.mjs failed ({status}); stderr:\n{err}");
    let line = out.lines().rev().find(|l| l.starts_with('{')).unwrap_or_default();
    serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("browser.mjs printed no JSON result ({e}): {out}\nstderr:\n{err}"))
}

/// Reads `pipe` to its end on a thread; the text arrives on the returned channel.
fn read_to_end_in_thread(mut pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        let _ = tx.send(text);
    });
    rx
}
