//! `irnn report` opened in headless Chromium (Debian's `chromium`): the page loads with
//! no console message (its content security policy turns any script or external
//! resource into one, which a control page shows), its screenshot is not blank, and the
//! numbers it shows are those of `irnn eval --json` on the same model and data.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use support::*;

fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser"].iter().find_map(|name| {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
    })
}

/// Runs headless Chromium on `page` with `args` (a fresh profile each time); returns
/// stdout and the console messages it logged.
fn chromium_run(chrome: &Path, page: &Path, args: &[&str]) -> (String, Vec<String>) {
    let profile = tempfile::tempdir().expect("profile dir");
    let o = Command::new(chrome)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs");
    assert!(
        o.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let console = String::from_utf8_lossy(&o.stderr)
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(str::to_string)
        .collect();
    (String::from_utf8_lossy(&o.stdout).into_owned(), console)
}

fn irnn(args: &[&str]) -> std::process::Output {
    let o = Command::new(irnn_bin())
        .args(args)
        .current_dir(repo_root())
        .output()
        .expect("irnn runs");
    assert!(
        o.status.success(),
        "irnn {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// The `data-value` of the element with `id` in the dumped DOM, and its text.
fn shown(dom: &str, id: &str) -> (f64, String) {
    let at = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("the page has no element #{id}"));
    let rest = &dom[at..];
    let v = rest
        .split("data-value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_else(|| panic!("#{id} has no data-value"));
    let text = rest
        .split_once('>')
        .and_then(|(_, r)| r.split('<').next())
        .unwrap_or_default();
    (
        v.parse()
            .unwrap_or_else(|_| panic!("#{id}: {v:?} is no number")),
        text.to_string(),
    )
}

/// Share of pixels whose colour differs from the most common one, and how many
/// distinct colours there are.
fn non_background(png_path: &Path) -> (f64, usize) {
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(png_path).expect("screenshot"),
    ));
    let mut reader = decoder.read_info().expect("png header");
    let mut buf = vec![0; reader.output_buffer_size().expect("png size")];
    let info = reader.next_frame(&mut buf).expect("png frame");
    let channels = info.color_type.samples();
    let mut counts = std::collections::HashMap::new();
    for px in buf[..info.buffer_size()].chunks(channels) {
        *counts
            .entry(px[..3.min(channels)].to_vec())
            .or_insert(0usize) += 1;
    }
    let total: usize = counts.values().sum();
    let background = counts.values().copied().max().unwrap_or(0);
    (1.0 - background as f64 / total as f64, counts.len())
}

#[test]
fn report_opens_in_chromium_with_the_numbers_of_eval() {
    let Some(chrome) = chromium() else {
        skip::requires(
            "report opened in Chromium",
            "chromium (apt-get install chromium; scripts/test installs it)",
            false,
        );
        return;
    };
    let model = "examples/gru_charlm/gru_charlm.irnn.json";
    let float = "examples/gru_charlm/gru_charlm.json";
    let data = "examples/charlm/data/test.npy";
    let dir = tempfile::tempdir().expect("tmp");
    let page = dir.path().join("report.html");
    irnn(&[
        "report",
        model,
        "--float",
        float,
        "--data",
        data,
        "-o",
        page.to_str().unwrap(),
    ]);
    let html = std::fs::read_to_string(&page).expect("report written");
    // One self-contained file: inline SVG charts, no script, nothing fetched.
    assert!(html.matches("<svg").count() >= 10, "too few charts");
    for banned in ["<script", " src=", " href=", "url("] {
        assert!(!html.contains(banned), "the report contains {banned:?}");
    }

    // The control page: a script and an external image break the same policy, and
    // the console check sees both.
    let bad = dir.path().join("bad.html");
    std::fs::write(
        &bad,
        html.replacen(
            "</body>",
            "<img src=\"https://example.invalid/x.png\"><script>console.error(1)</script></body>",
            1,
        ),
    )
    .unwrap();
    let (_, console) = chromium_run(&chrome, &bad, &["--dump-dom"]);
    assert!(
        console.len() >= 2,
        "the control page's policy violations went unseen: {console:?}"
    );

    let (dom, console) = chromium_run(&chrome, &page, &["--dump-dom"]);
    assert!(console.is_empty(), "console messages: {console:#?}");
    assert!(
        dom.contains("irnn report: gru_charlm"),
        "the page did not render"
    );

    let shot = dir.path().join("report.png");
    chromium_run(
        &chrome,
        &page,
        &[
            "--window-size=1240,1600",
            &format!("--screenshot={}", shot.display()),
        ],
    );
    let (ink, colours) = non_background(&shot);
    assert!(
        ink > 0.05 && colours > 16,
        "the screenshot looks blank: {:.1}% non-background pixels, {colours} colours",
        ink * 100.0
    );

    let o = irnn(&["eval", model, "--float", float, "--data", data, "--json"]);
    let eval: serde_json::Value = serde_json::from_slice(&o.stdout).expect("eval --json");
    let want = |side: &str| eval[side]["bits_per_token"].as_f64().expect("bits");
    for (id, v) in [
        ("float-bits_per_token", want("float")),
        ("integer-bits_per_token", want("integer")),
        ("top1_agreement", eval["top1_agreement"].as_f64().unwrap()),
        ("predictions", eval["predictions"].as_f64().unwrap()),
    ] {
        let (got, text) = shown(&dom, id);
        assert_eq!(got, v, "#{id}: the page says {got}, irnn eval --json {v}");
        let rounded = match id {
            "top1_agreement" => format!("{:.2}%", v * 100.0),
            "predictions" => format!("{v}"),
            _ => format!("{v:.4}"),
        };
        assert_eq!(text, rounded, "#{id} shows {text:?}");
    }
}
