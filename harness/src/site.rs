//! The store as a site: `store/index.html` (every run, newest first, with its verdict and a
//! link to its report), written after every run so a CI artifact can be browsed without a
//! server, and `ordeal serve`, which serves the same index (filtered by `?verdict=` and
//! `?test=`) and the store's files over HTTP on 127.0.0.1 (axum, tower-http).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The index's file name in the store.
pub const INDEX: &str = "index.html";

/// The index's template.
const TEMPLATE: &str = include_str!("site/index.html");

/// The most runs the index lists (the newest).
pub const RUNS_MAX: usize = 5000;

/// One run in the index.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// The test's name (its directory).
    pub test: String,
    /// The run's directory name (`YYYYMMDDTHHMMSS-s<seed>`).
    pub run: String,
    /// When it started, `YYYY-MM-DD HH:MM:SS` UTC.
    pub time: String,
    /// The seed.
    pub seed: Option<u64>,
    /// `valid`, `invalid`, `unknown`, or `unchecked` (no `results.json`: still running, or the
    /// harness was killed).
    pub verdict: String,
    /// `ok` operations per second, rounded (empty when unknown).
    pub ops_per_s: String,
    /// The report, relative to the store, if the run has one.
    pub report: Option<String>,
    /// The run's directory, relative to the store.
    pub path: String,
    /// `sim` or `test`.
    pub kind: &'static str,
}

/// Filters of the index.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Filter {
    /// Only runs with this verdict.
    pub verdict: Option<String>,
    /// Only tests whose name contains this.
    pub test: Option<String>,
}

/// The runs of `store`, newest first (at most [`RUNS_MAX`]).
pub fn rows(store: &Path) -> Vec<Row> {
    let mut rows = Vec::new();
    let Ok(tests) = std::fs::read_dir(store) else { return rows };
    for test in tests.flatten() {
        let name = test.file_name().to_string_lossy().to_string();
        // `latest` is a link to a run; dot files are the store's own.
        if name == "latest" || name.starts_with('.') || !test.path().is_dir() {
            continue;
        }
        let Ok(runs) = std::fs::read_dir(test.path()) else { continue };
        for run in runs.flatten().filter(|run| run.path().join("test.toml").is_file()) {
            rows.push(row(store, &name, &run.path()));
        }
    }
    rows.sort_by(|a, b| b.run.cmp(&a.run).then_with(|| a.test.cmp(&b.test)));
    rows.truncate(RUNS_MAX);
    rows
}

fn row(store: &Path, test: &str, run_dir: &Path) -> Row {
    let run =
        run_dir.file_name().map(|name| name.to_string_lossy().to_string()).unwrap_or_default();
    let results: Value = std::fs::read_to_string(run_dir.join("results.json"))
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default();
    let relative = run_dir.strip_prefix(store).unwrap_or(run_dir).display().to_string();
    let simulated = std::fs::read_to_string(run_dir.join("test.toml"))
        .is_ok_and(|text| text.lines().any(|line| line.trim() == "[simulated]"));
    Row {
        test: test.to_string(),
        time: stamp(&run),
        seed: run.split_once("-s").and_then(|(_, seed)| seed.split('-').next()?.parse().ok()),
        verdict: results["verdict"].as_str().unwrap_or("unchecked").to_string(),
        ops_per_s: results["stats"]["ops_per_s"]
            .as_f64()
            .map_or(String::new(), |ops| format!("{ops:.0}")),
        report: run_dir
            .join(crate::report::FILE)
            .is_file()
            .then(|| format!("{relative}/{}", crate::report::FILE)),
        path: relative,
        kind: if simulated { "sim" } else { "test" },
        run,
    }
}

/// `20261206T183850-s21` as `2026-12-06 18:38:50`.
fn stamp(run: &str) -> String {
    let digits: String = run.chars().take(15).collect();
    if digits.len() < 15 || !digits.is_char_boundary(15) {
        return String::new();
    }
    let (date, time) = (&digits[..8], &digits[9..15]);
    format!(
        "{}-{}-{} {}:{}:{}",
        &date[..4],
        &date[4..6],
        &date[6..8],
        &time[..2],
        &time[2..4],
        &time[4..6]
    )
}

/// The index page of `rows` after `filter`.
///
/// # Errors
///
/// When the template fails (a bug).
pub fn render(store: &Path, rows: &[Row], filter: &Filter) -> anyhow::Result<String> {
    let shown: Vec<&Row> = rows
        .iter()
        .filter(|row| filter.verdict.as_deref().is_none_or(|verdict| row.verdict == verdict))
        .filter(|row| filter.test.as_deref().is_none_or(|test| row.test.contains(test)))
        .collect();
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    for row in rows {
        *counts.entry(row.verdict.as_str()).or_default() += 1;
    }
    let mut environment = minijinja::Environment::new();
    environment.add_template("index.html", TEMPLATE).context("the index's template")?;
    let template = environment.get_template("index.html").context("the index's template")?;
    let context = serde_json::json!({
        "store": store.display().to_string(),
        "rows": shown,
        "total": rows.len(),
        "counts": counts,
        "verdict": filter.verdict,
        "test": filter.test,
    });
    template.render(minijinja::value::Serde(context)).context("rendering the index")
}

/// Writes `store/index.html` (every run, unfiltered) and returns its path.
///
/// # Errors
///
/// When the file cannot be written.
pub fn write_index(store: &Path) -> anyhow::Result<PathBuf> {
    let html = render(store, &rows(store), &Filter::default())?;
    let path = store.join(INDEX);
    // Written beside and renamed: a reader never sees half a page.
    let temporary = store.join(format!(".index-{}.html", std::process::id()));
    std::fs::write(&temporary, html).with_context(|| format!("writing {}", temporary.display()))?;
    std::fs::rename(&temporary, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// [`write_index`], with a failure printed rather than returned.
pub fn write_index_or_warn(store: &Path) {
    if let Err(error) = write_index(store) {
        eprintln!("ordeal: no store index: {error:#}");
    }
}

/// The HTTP application: the index at `/` (filters as query parameters) and the store's files
/// below it.
pub fn app(store: PathBuf) -> axum::Router {
    use axum::extract::{Query, State};
    use axum::response::{Html, IntoResponse};
    let index = |State(store): State<PathBuf>, Query(filter): Query<Filter>| async move {
        match render(&store, &rows(&store), &filter) {
            Ok(html) => Html(html).into_response(),
            Err(error) => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, format!("{error:#}"))
                .into_response(),
        }
    };
    axum::Router::new()
        .route("/", axum::routing::get(index))
        .route("/index.html", axum::routing::get(index))
        .fallback_service(tower_http::services::ServeDir::new(&store))
        .with_state(store)
}

/// Serves `store` on 127.0.0.1:`port` until Ctrl-C.
///
/// # Errors
///
/// When the port cannot be bound.
pub async fn serve(store: PathBuf, port: u16) -> anyhow::Result<()> {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("binding {address}"))?;
    let bound = listener.local_addr().context("the bound address")?;
    eprintln!("ordeal: serving {} at http://{bound}/ (Ctrl-C stops)", store.display());
    axum::serve(listener, app(store))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("serving")
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};

    use super::*;

    /// A store with two runs: one valid with a report, one unchecked.
    fn store() -> tempfile::TempDir {
        let store = tempfile::tempdir().expect("a temporary store");
        let valid = store.path().join("poe-ts-register-mixed/20261206T101010-s3");
        std::fs::create_dir_all(&valid).expect("a run");
        std::fs::write(valid.join("test.toml"), "name = \"poe-ts-register-mixed\"\nseed = 3\n")
            .expect("test.toml");
        let results = r#"{"verdict":"valid","stats":{"ops_per_s":1039.4}}"#;
        std::fs::write(valid.join("results.json"), results).expect("results");
        std::fs::write(valid.join(crate::report::FILE), "<html>the report</html>").expect("report");
        let broken = store.path().join("pbft-bank-none/20261206T111111-s8");
        std::fs::create_dir_all(&broken).expect("a run");
        std::fs::write(broken.join("test.toml"), "[simulated]\n").expect("test.toml");
        store
    }

    #[test]
    fn the_index_lists_runs_newest_first_with_their_verdicts() {
        let store = store();
        let rows = rows(store.path());
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].test.as_str(), rows[0].verdict.as_str()),
            ("pbft-bank-none", "unchecked")
        );
        assert_eq!((rows[0].seed, rows[0].kind), (Some(8), "sim"));
        assert_eq!((rows[1].verdict.as_str(), rows[1].ops_per_s.as_str()), ("valid", "1039"));
        assert_eq!(rows[1].time, "2026-12-06 10:10:10");
        let path = write_index(store.path()).expect("index.html");
        let html = std::fs::read_to_string(path).expect("index.html");
        // minijinja escapes `/` in attributes as `&#x2f;`, which browsers decode.
        let link = "poe-ts-register-mixed/20261206T101010-s3/report.html".replace('/', "&#x2f;");
        assert!(html.contains(&format!(r#"<a href="{link}">report</a>"#)), "{html}");
        let filtered =
            render(store.path(), &rows, &Filter { verdict: Some("valid".into()), test: None })
                .expect("a page");
        assert!(
            filtered.contains("poe-ts-register-mixed") && !filtered.contains(">pbft-bank-none")
        );
    }

    /// `ordeal serve` answers the index (filtered by the query) and a run's report over HTTP.
    #[test]
    fn the_server_answers_the_index_and_a_report() {
        let store = store();
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("a port on loopback");
        let address = listener.local_addr().expect("an address");
        let app = app(store.path().to_path_buf());
        let server = std::thread::spawn(move || {
            runtime.block_on(async move {
                let serving = axum::serve(listener, app);
                // The test's requests are done well within this.
                let _ = tokio::time::timeout(std::time::Duration::from_secs(20), serving).await;
            });
        });
        let get = |path: &str| {
            let mut stream = std::net::TcpStream::connect(address).expect("connected");
            write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .expect("sent");
            let mut response = String::new();
            stream.read_to_string(&mut response).expect("an answer");
            response
        };
        let index = get("/");
        assert!(index.starts_with("HTTP/1.1 200"), "{index}");
        assert!(index.contains("pbft-bank-none") && index.contains("poe-ts-register-mixed"));
        let invalid_only = get("/?verdict=invalid");
        assert!(!invalid_only.contains(r#"data-test="poe-ts-register-mixed""#), "{invalid_only}");
        let report = get("/poe-ts-register-mixed/20261206T101010-s3/report.html");
        assert!(report.starts_with("HTTP/1.1 200") && report.contains("the report"), "{report}");
        let missing = get("/../../etc/passwd");
        assert!(!missing.starts_with("HTTP/1.1 200"), "{missing}");
        drop(server);
    }
}
