//! Data donation (opt-in, off by default): uploading an export to the
//! research endpoint the owner configured, and asking it to delete what
//! this installation sent.
//!
//! The daemon has no TLS stack (it must stay small, and the router already
//! has one), so uploads run the router's own fetcher: `uclient-fetch` on
//! OpenWrt (ustream-ssl with the system CA bundle), `curl` elsewhere.
//!
//! ## Protocol
//!
//! `uclient-fetch` can only GET and POST and cannot add headers, so the
//! protocol needs nothing else:
//!
//! - upload: `POST {url}/v1/donations/{installation}` with the export as
//!   the body; any 2xx means stored.
//! - deletion: `POST {url}/v1/donations/{installation}/delete` with an
//!   empty body; any 2xx means everything this installation sent is gone.
//!
//! `{installation}` is [`super::installation_id`]: the endpoint never
//! learns anything else that ties donations to a home. Only `https://`
//! endpoints are accepted (plain `http://` only on loopback, for tests).
//!
//! Every attempt, successful or not, is appended to a JSON-lines record
//! file (what, where, when, how many bytes, their SHA-256, the outcome),
//! kept to the last [`MAX_RECORDS`] lines.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// Lines kept in the record file.
pub const MAX_RECORDS: usize = 1000;

/// The program that does the HTTPS request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fetcher {
    /// OpenWrt's `uclient-fetch`.
    UclientFetch,
    Curl,
}

impl Fetcher {
    /// `uclient-fetch` when the system has it (OpenWrt), else `curl`.
    pub fn detect() -> Option<Fetcher> {
        let in_path = |name: &str| {
            std::env::var_os("PATH")
                .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        };
        if in_path("uclient-fetch") {
            Some(Fetcher::UclientFetch)
        } else if in_path("curl") {
            Some(Fetcher::Curl)
        } else {
            None
        }
    }
}

/// How to reach the endpoint.
#[derive(Clone, Debug)]
pub struct DonateOptions {
    /// A CA certificate to trust (PEM) instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// The whole request's time limit.
    pub timeout: Duration,
    /// `None`: [`Fetcher::detect`].
    pub fetcher: Option<Fetcher>,
}

impl Default for DonateOptions {
    fn default() -> Self {
        DonateOptions {
            ca_file: None,
            timeout: Duration::from_secs(120),
            fetcher: None,
        }
    }
}

/// One line of the record file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DonationRecord {
    /// Unix seconds.
    pub time: u64,
    /// `upload` or `delete`.
    pub action: String,
    /// The endpoint's base URL.
    pub url: String,
    pub installation: String,
    /// Bytes sent (0 for a deletion).
    pub bytes: u64,
    /// SHA-256 of what was sent, hex.
    pub sha256: String,
    /// `ok` or `failed: <why>`.
    pub outcome: String,
}

fn check_url(url: &str) -> Result<String> {
    let base = url.trim_end_matches('/');
    let loopback = ["http://127.0.0.1", "http://localhost", "http://[::1]"]
        .iter()
        .any(|p| {
            base.starts_with(p) && matches!(base.as_bytes().get(p.len()), None | Some(b':' | b'/'))
        });
    if !(base.starts_with("https://") || loopback) {
        bail!("the donation endpoint must be https:// (got `{url}`)");
    }
    if base.len() > 512
        || base
            .bytes()
            .any(|b| b.is_ascii_control() || b == b' ' || b == b'?' || b == b'#')
    {
        bail!("the donation endpoint URL is not acceptable: `{url}`");
    }
    Ok(base.to_string())
}

fn check_installation(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("an installation id is hex (got `{id}`)");
    }
    Ok(())
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Runs the fetcher to POST `body_file` (or an empty body) to `url`.
fn post(url: &str, body_file: Option<&Path>, opts: &DonateOptions) -> Result<()> {
    let fetcher = opts
        .fetcher
        .or_else(Fetcher::detect)
        .context("neither uclient-fetch nor curl is installed")?;
    let secs = opts.timeout.as_secs().max(1).to_string();
    let mut cmd = match fetcher {
        Fetcher::Curl => {
            let mut c = Command::new("curl");
            c.args(["-fsS", "-o", "/dev/null", "--max-time", &secs, "-X", "POST"])
                .args(["-H", "Content-Type: application/octet-stream"]);
            match body_file {
                Some(f) => c.arg("--data-binary").arg(format!("@{}", f.display())),
                None => c.args(["--data-binary", ""]),
            };
            if let Some(ca) = &opts.ca_file {
                c.arg("--cacert").arg(ca);
            }
            c
        }
        Fetcher::UclientFetch => {
            let mut c = Command::new("uclient-fetch");
            c.args(["-q", "-O", "/dev/null", "-T", &secs]);
            match body_file {
                Some(f) => c.arg(format!("--post-file={}", f.display())),
                None => c.arg("--post-data="),
            };
            if let Some(ca) = &opts.ca_file {
                c.arg(format!("--ca-certificate={}", ca.display()));
            }
            c
        }
    };
    cmd.arg("--").arg(url);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {fetcher:?}"))?;
    // Our own bound as well as the fetcher's: a hung program must not hang
    // the caller.
    let deadline = Instant::now() + opts.timeout + Duration::from_secs(5);
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{fetcher:?} did not finish in time");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if !status.success() {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            use std::io::Read;
            let _ = (&mut e).take(4096).read_to_string(&mut err);
        }
        bail!("{fetcher:?} failed ({status}): {}", err.trim());
    }
    Ok(())
}

/// Appends a record, keeping the file to the last [`MAX_RECORDS`] lines.
pub(crate) fn append(path: &Path, r: &DonationRecord) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    writeln!(f, "{}", serde_json::to_string(r)?)?;
    drop(f);
    let lines: Vec<String> = std::io::BufReader::new(std::fs::File::open(path)?)
        .lines()
        .collect::<std::io::Result<_>>()?;
    if lines.len() > MAX_RECORDS {
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp)?;
        for l in &lines[lines.len() - MAX_RECORDS..] {
            writeln!(f, "{l}")?;
        }
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
    }
    Ok(())
}

/// The record file's entries, oldest first (unreadable lines skipped).
pub fn records(path: &Path) -> Result<Vec<DonationRecord>> {
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    Ok(std::io::BufReader::new(f)
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str(&l).ok())
        .collect())
}

fn finish(record_path: &Path, mut r: DonationRecord, result: Result<()>) -> Result<DonationRecord> {
    r.outcome = match &result {
        Ok(()) => "ok".into(),
        Err(e) => format!("failed: {e:#}"),
    };
    append(record_path, &r)?;
    result.map(|()| r)
}

/// Uploads an export for `installation` and records the attempt.
pub fn donate(
    url: &str,
    installation: &str,
    export: &[u8],
    record_path: &Path,
    opts: &DonateOptions,
) -> Result<DonationRecord> {
    let base = check_url(url)?;
    check_installation(installation)?;
    let record = DonationRecord {
        time: crate::time::unix_secs(),
        action: "upload".into(),
        url: base.clone(),
        installation: installation.into(),
        bytes: export.len() as u64,
        sha256: sha256_hex(export),
        outcome: String::new(),
    };
    // The fetchers read the body from a file; it sits next to the record.
    let dir = record_path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let body = dir.join(format!(".donation-{}.body", std::process::id()));
    std::fs::write(&body, export).with_context(|| format!("writing {}", body.display()))?;
    let result = post(
        &format!("{base}/v1/donations/{installation}"),
        Some(&body),
        opts,
    );
    let _ = std::fs::remove_file(&body);
    finish(record_path, record, result)
}

/// Asks the endpoint to delete everything `installation` sent, and
/// records the request.
pub fn request_deletion(
    url: &str,
    installation: &str,
    record_path: &Path,
    opts: &DonateOptions,
) -> Result<DonationRecord> {
    let base = check_url(url)?;
    check_installation(installation)?;
    let record = DonationRecord {
        time: crate::time::unix_secs(),
        action: "delete".into(),
        url: base.clone(),
        installation: installation.into(),
        bytes: 0,
        sha256: sha256_hex(b""),
        outcome: String::new(),
    };
    let result = post(
        &format!("{base}/v1/donations/{installation}/delete"),
        None,
        opts,
    );
    finish(record_path, record, result)
}
