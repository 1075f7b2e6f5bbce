//! The HTML report beside each summary, rendered by a real headless Chromium or Chrome
//! (`scripts/test.sh` finds one or installs Debian's package): it must draw its charts, log no
//! console error and make no request (its Content Security Policy turns any request into a
//! console error). The screenshot is kept in `target/tmp/report/` as the test's artifact.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::{TestEnv, invoke};

const CUSTOMERS: &str = include_str!("../data/customers.csv");

/// The browser: `CHROMIUM` (scripts/test.sh sets it), else Chromium or Chrome under the names
/// they have on PATH, else the macOS application bundles. Missing, the test fails with one line
/// naming what to install: a browser test that skips would pass without having looked.
fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("CHROMIUM").map(PathBuf::from).filter(|path| path.is_file()) {
        return path;
    }
    let on_path = ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"].iter().find_map(|name| {
        std::env::split_paths(&std::env::var_os("PATH")?).map(|dir| dir.join(name)).find(|path| path.is_file())
    });
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    let bundles = ["Chromium.app/Contents/MacOS/Chromium", "Google Chrome.app/Contents/MacOS/Google Chrome"]
        .iter()
        .flat_map(|bundle| [Path::new("/Applications").join(bundle), home.join("Applications").join(bundle)]);
    on_path.into_iter().chain(bundles).find(|path| path.is_file()).unwrap_or_else(|| {
        panic!(
            "no Chromium or Chrome found: install Debian's chromium package (scripts/test.sh does where apt \
             exists) or Chromium/Google Chrome on macOS, or set CHROMIUM to the browser's path"
        )
    })
}

/// Runs Chromium headless on `page` with `args`; its stdout and its console lines.
fn render(page: &Path, profile: &Path, args: &[&str]) -> (String, Vec<String>) {
    let output = Command::new(chromium())
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"])
        .args(["--disable-background-networking", "--disable-component-update", "--disable-sync"])
        .args(["--enable-logging=stderr", "--v=0", "--window-size=1280,1700"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("Chromium runs");
    assert!(output.status.success(), "Chromium failed: {}", String::from_utf8_lossy(&output.stderr));
    let console = String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter(|line| line.contains(":CONSOLE"))
        .map(str::to_string)
        .collect();
    (String::from_utf8_lossy(&output.stdout).into_owned(), console)
}

#[tokio::test]
async fn the_report_draws_its_charts_in_a_real_browser_with_no_error_and_no_request() {
    let env = TestEnv::new().await;
    env.put("incoming/customers.csv", CUSTOMERS).await;
    invoke(&env.app(&[]), env.enrich_event("incoming/customers.csv")).await;
    let html = env.get("enriched/customers.csv.report.html").await.expect("the report is written beside the summary");
    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report");
    std::fs::create_dir_all(&artifacts).expect("the artifact folder");
    let page = artifacts.join("report.html");
    std::fs::write(&page, &html).expect("the page");
    let screenshot = artifacts.join("report.png");
    let _ = std::fs::remove_file(&screenshot);
    let profile = tempfile::tempdir().expect("a browser profile");

    let (_, console) = render(&page, profile.path(), &[&format!("--screenshot={}", screenshot.display())]);
    let (dom, more_console) = render(&page, profile.path(), &["--dump-dom"]);

    assert!(console.is_empty() && more_console.is_empty(), "console messages: {console:?} {more_console:?}");
    let png = std::fs::metadata(&screenshot).expect("a screenshot").len();
    assert!(png > 20_000, "the screenshot holds a drawn page ({png} bytes): {}", screenshot.display());
    for chart in ["Industries", "Employees", "Countries", "Match confidence"] {
        assert!(dom.contains(&format!("aria-label=\"{chart}\"")), "the {chart} chart is drawn");
    }
    assert!(dom.matches("class=\"bar\"").count() >= 8, "bars in the charts");
    assert!(dom.matches("class=\"segment\"").count() >= 2, "the rows-by-status bar has its parts");
    assert!(dom.contains("Contoso"), "the first companies are listed");
    let summary = env.summary("enriched/customers.csv.summary.json").await;
    assert!(dom.contains(&format!("<b>{}</b>rows", summary["rows"]["total"])), "the counts are the summary's");
}

#[tokio::test]
async fn a_report_that_would_fetch_anything_is_caught() {
    // The check above can fail: a page that asks for an image is refused and logged.
    let folder = tempfile::tempdir().expect("a folder");
    let page = folder.path().join("fetching.html");
    let report_head =
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">";
    std::fs::write(
        &page,
        format!(
            "<!DOCTYPE html><html><head>{report_head}</head><body><img src=\"http://example.com/x.png\"></body></html>"
        ),
    )
    .expect("the page");
    let profile = tempfile::tempdir().expect("a browser profile");

    let (_, console) = render(&page, profile.path(), &["--dump-dom"]);

    assert!(console.iter().any(|line| line.contains("Content Security Policy")), "{console:?}");
}
