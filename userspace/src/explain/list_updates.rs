//! Keeps the owner's lists ([`super::lists`]) in force and up to date.
//!
//! The updates run on a thread of their own with its own small runtime:
//! a slow server, a hung download or the parsing of a 4 MB list can then
//! never hold up start-up, the window loop or the API. The thread
//!
//! 1. puts the last good copies on disk in force at once (no network);
//! 2. downloads each list when it is due: shortly after start (or at once
//!    for a list just added), then every `interval`; a copy fetched less
//!    than `interval` ago (say before a restart) is not fetched again
//!    early, which spares the list's server and the router's flash;
//! 3. validates what it got; a good list is saved (only when it changed)
//!    and the knowledge base in force is rebuilt and swapped in; a failed
//!    or invalid download keeps the last good copy and records the error,
//!    and is retried sooner (from a minute, doubling, up to `interval`);
//! 4. follows configuration changes (a change aborts a download under way).

use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;

use super::lists::{self, CopyMeta, ListError, ListFormat, ListSpec, ParsedList};
use super::{Category, KnowledgeBase};
use crate::time::unix_secs;

/// The lists the owner configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListsConfig {
    pub enabled: bool,
    /// How often each list is downloaded.
    pub interval: Duration,
    /// Where the last good copies are kept.
    pub dir: PathBuf,
    pub lists: Vec<ListSpec>,
}

/// One list as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListStatus {
    pub name: String,
    pub url: String,
    pub format: ListFormat,
    pub category: Category,
    /// Domains of this list in force now (0: none yet).
    pub domains: usize,
    /// Where the copy in force came from: `download` (this run) or
    /// `saved_copy` (the last good copy on disk); `None`: no copy.
    pub copy: Option<String>,
    /// Unix seconds of the download that gave the copy in force.
    pub last_success: Option<u64>,
    /// Unix seconds of the last finished download attempt in this run.
    pub last_attempt: Option<u64>,
    /// Why the last attempt failed (`None` after a success).
    pub last_error: Option<String>,
    /// Unix seconds of the next attempt.
    pub next_attempt: Option<u64>,
}

/// All lists as the API shows them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListsView {
    pub enabled: bool,
    pub interval_secs: u64,
    pub lists: Vec<ListStatus>,
}

impl ListsView {
    /// A few lines for `iot-inspector status`.
    pub fn summary(&self, now: u64) -> String {
        use std::fmt::Write;
        let ago = |t: u64| match now.saturating_sub(t) {
            s if s < 120 => format!("{s} s ago"),
            s if s < 7200 => format!("{} min ago", s / 60),
            s if s < 172_800 => format!("{} h ago", s / 3600),
            s => format!("{} days ago", s / 86400),
        };
        if !self.enabled {
            return "lists: off\n".into();
        }
        let mut out = format!(
            "lists: {} configured, downloaded every {}\n",
            self.lists.len(),
            match self.interval_secs {
                s if s % 86400 == 0 => format!("{} d", s / 86400),
                s if s % 3600 == 0 => format!("{} h", s / 3600),
                s if s % 60 == 0 => format!("{} min", s / 60),
                s => format!("{s} s"),
            }
        );
        for l in &self.lists {
            let format = match l.format {
                ListFormat::Hosts => "hosts",
                ListFormat::Domains => "domains",
                ListFormat::Json => "json",
            };
            let _ = write!(
                out,
                "  {} ({format}, {}): {} domains",
                l.name, l.url, l.domains
            );
            match (&l.copy, l.last_success) {
                (Some(c), Some(t)) if c == "saved_copy" => {
                    let _ = write!(out, " from the saved copy (downloaded {})", ago(t));
                }
                (Some(_), Some(t)) => {
                    let _ = write!(out, ", downloaded {}", ago(t));
                }
                _ => {}
            }
            if let Some(e) = &l.last_error {
                let _ = write!(out, "; last attempt failed: {e}");
            }
            out.push('\n');
        }
        out
    }
}

/// The first download after start waits this long at most, so the router
/// can bring its WAN up and the daemon settle first.
const FIRST_DELAY: Duration = Duration::from_secs(10);
/// The first retry after a failure; it doubles up to the interval.
const FIRST_RETRY: Duration = Duration::from_secs(60);

/// The handle the daemon keeps: configuration changes go through it.
/// Dropping it stops the updates.
pub struct ListUpdater {
    tx: watch::Sender<ListsConfig>,
}

impl ListUpdater {
    /// Starts the update thread. `publish` gets the lists' state after every
    /// change (called on that thread).
    pub fn start(
        config: ListsConfig,
        publish: impl Fn(ListsView) + Send + 'static,
    ) -> std::io::Result<ListUpdater> {
        let (tx, rx) = watch::channel(config);
        std::thread::Builder::new()
            .name("list-updates".into())
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt.block_on(run(rx, publish)),
                    Err(e) => log::error!("list updates cannot run: {e}"),
                }
            })?;
        Ok(ListUpdater { tx })
    }

    /// Applies a (re-read) configuration; nothing happens if it is unchanged.
    pub fn configure(&self, config: ListsConfig) {
        self.tx.send_if_modified(|c| {
            if *c == config {
                false
            } else {
                *c = config;
                true
            }
        });
    }
}

/// One configured list and what is in force for it.
struct Entry {
    spec: ListSpec,
    list: Option<ParsedList>,
    /// Hash of the bytes of `list`: an unchanged download is not saved
    /// again nor the knowledge base rebuilt.
    hash: Option<u64>,
    status: ListStatus,
    due: Instant,
    failures: u32,
}

async fn run(mut rx: watch::Receiver<ListsConfig>, publish: impl Fn(ListsView)) {
    let mut cfg = rx.borrow_and_update().clone();
    let mut entries = Vec::new();
    if reconfigure(&mut entries, &cfg, FIRST_DELAY.min(cfg.interval)) {
        install(&entries);
    }
    publish(view(&cfg, &entries));
    loop {
        let next = entries
            .iter()
            .enumerate()
            .min_by_key(|(_, e)| e.due)
            .map(|(i, e)| (i, e.due, e.spec.url.clone()));
        let work = async move {
            match next {
                Some((i, due, url)) => {
                    tokio::time::sleep_until(due).await;
                    (i, lists::fetch(&url).await)
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            changed = rx.changed() => {
                if changed.is_err() {
                    return;
                }
                cfg = rx.borrow_and_update().clone();
                if reconfigure(&mut entries, &cfg, Duration::ZERO) {
                    install(&entries);
                }
            }
            (i, fetched) = work => {
                if absorb(&mut entries[i], &cfg, fetched) {
                    install(&entries);
                }
            }
        }
        publish(view(&cfg, &entries));
    }
}

fn hash_of(bytes: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

/// The lists in force, in order, by name and content.
fn in_force(entries: &[Entry]) -> Vec<(String, u64)> {
    entries
        .iter()
        .filter_map(|e| Some((e.spec.name.clone(), e.hash?)))
        .collect()
}

/// Makes `entries` follow `cfg`: unchanged lists keep their state, new ones
/// start from their last good copy on disk and are due after `delay` (or
/// when their copy gets `interval` old). True when the lists in force
/// changed.
fn reconfigure(entries: &mut Vec<Entry>, cfg: &ListsConfig, delay: Duration) -> bool {
    let before = in_force(entries);
    let mut old: Vec<Option<Entry>> = std::mem::take(entries).into_iter().map(Some).collect();
    if cfg.enabled {
        let now = Instant::now();
        for spec in &cfg.lists {
            if let Some(mut e) = old
                .iter_mut()
                .find(|e| e.as_ref().is_some_and(|e| e.spec == *spec))
                .and_then(Option::take)
            {
                e.due = e.due.min(now + cfg.interval);
                entries.push(e);
                continue;
            }
            let mut e = Entry {
                spec: spec.clone(),
                list: None,
                hash: None,
                status: ListStatus {
                    name: spec.name.clone(),
                    url: spec.url.clone(),
                    format: spec.format,
                    category: spec.category,
                    domains: 0,
                    copy: None,
                    last_success: None,
                    last_attempt: None,
                    last_error: None,
                    next_attempt: None,
                },
                due: now + delay,
                failures: 0,
            };
            if let Some((list, bytes, meta)) = lists::load_cached_one(spec, &cfg.dir) {
                e.status.domains = list.domain_count();
                e.status.copy = Some("saved_copy".into());
                e.hash = Some(hash_of(&bytes));
                e.list = Some(list);
                if let Some(m) = meta {
                    e.status.last_success = Some(m.fetched);
                    let age = Duration::from_secs(unix_secs().saturating_sub(m.fetched));
                    e.due = now + delay.max(cfg.interval.saturating_sub(age));
                }
                log::info!(
                    "list `{}`: {} domains from the last good copy",
                    spec.name,
                    e.status.domains
                );
            }
            entries.push(e);
        }
    }
    in_force(entries) != before
}

/// Records what a download gave. True when the list in force changed.
fn absorb(e: &mut Entry, cfg: &ListsConfig, fetched: Result<Vec<u8>, ListError>) -> bool {
    let now = unix_secs();
    e.status.last_attempt = Some(now);
    let name = e.spec.name.clone();
    let mut changed = false;
    match fetched.and_then(|bytes| lists::parse(&e.spec, &bytes).map(|l| (l, bytes))) {
        Ok((list, bytes)) => {
            let hash = hash_of(&bytes);
            let same = e.hash == Some(hash);
            let meta = CopyMeta {
                url: e.spec.url.clone(),
                fetched: now,
            };
            let saved = if same {
                Ok(())
            } else {
                lists::save_last_good(&cfg.dir, &name, &bytes)
            };
            let saved = saved.and_then(|()| lists::save_meta(&cfg.dir, &name, &meta));
            e.status.last_error = saved
                .err()
                .map(|err| format!("in force, but no copy could be kept: {err}"));
            e.status.domains = list.domain_count();
            e.status.copy = Some("download".into());
            e.status.last_success = Some(now);
            e.failures = 0;
            e.due = Instant::now() + cfg.interval;
            if !same {
                log::info!("list `{name}`: {} domains downloaded", list.domain_count());
                e.list = Some(list);
                e.hash = Some(hash);
                changed = true;
            }
        }
        Err(err) => {
            e.failures += 1;
            let retry = FIRST_RETRY
                .saturating_mul(1 << (e.failures - 1).min(16))
                .min(cfg.interval);
            e.due = Instant::now() + retry;
            log::warn!(
                "list `{name}`: {err}; {}",
                if e.list.is_some() {
                    "keeping the last good copy"
                } else {
                    "no copy in force"
                }
            );
            e.status.last_error = Some(err.0);
        }
    }
    changed
}

/// Puts the built-in knowledge base with the lists in force over it in force.
fn install(entries: &[Entry]) {
    let lists: Vec<&ParsedList> = entries.iter().filter_map(|e| e.list.as_ref()).collect();
    if lists.is_empty() {
        super::set_current(None);
    } else {
        super::set_current(Some(Arc::new(KnowledgeBase::builtin().with_lists(lists))));
    }
}

fn view(cfg: &ListsConfig, entries: &[Entry]) -> ListsView {
    let now = Instant::now();
    let unix = unix_secs();
    ListsView {
        enabled: cfg.enabled,
        interval_secs: cfg.interval.as_secs(),
        lists: entries
            .iter()
            .map(|e| ListStatus {
                next_attempt: Some(unix + e.due.saturating_duration_since(now).as_secs()),
                ..e.status.clone()
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Serves whatever `body` holds (status line and body) to each
    /// connection on 127.0.0.1; a `None` body hangs the connection.
    /// What the test server answers: status line and body, or nothing.
    type Reply = Arc<Mutex<Option<(&'static str, Vec<u8>)>>>;

    async fn serve(body: Reply) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let body = body.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 2048];
                    let _ = s.read(&mut buf).await;
                    let Some((status, b)) = body.lock().unwrap().clone() else {
                        std::future::pending::<()>().await;
                        return;
                    };
                    let head = format!(
                        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        b.len()
                    );
                    let _ = s.write_all(head.as_bytes()).await;
                    let _ = s.write_all(&b).await;
                });
            }
        });
        format!("http://{addr}/gadgets.json")
    }

    const GADGETS: &[u8] = br#"{"organisations":[{"name":"Gadget Updates Co","category":"software_updates","domains":["fw.updater-co.example"]}]}"#;

    fn spec(url: &str) -> ListSpec {
        ListSpec {
            name: "gadgets".into(),
            url: url.into(),
            format: ListFormat::Json,
            category: Category::Other,
        }
    }

    fn explained_org(name: &str) -> Option<String> {
        super::super::current()
            .explain(name, &[], None)
            .organisation
    }

    async fn wait_for(
        views: &Arc<Mutex<Vec<ListsView>>>,
        what: impl Fn(&ListsView) -> bool,
    ) -> ListsView {
        for _ in 0..200 {
            if let Some(v) = views.lock().unwrap().last().filter(|v| what(v)) {
                return v.clone();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("never got there: {:?}", views.lock().unwrap().last());
    }

    /// The whole life of a list through the updater: a failed first
    /// download, a good one (saved, in force), an invalid one (the good
    /// copy stays), then a new updater that starts from the saved copy
    /// without any download while the server hangs. Uses the process-wide
    /// knowledge base in force, with a domain no other test explains.
    #[tokio::test]
    async fn updater_downloads_keeps_last_good_and_starts_from_the_saved_copy() {
        let dir = tempfile::tempdir().unwrap();
        let body = Arc::new(Mutex::new(Some(("404 Not Found", b"no".to_vec()))));
        let url = serve(body.clone()).await;
        let cfg = ListsConfig {
            enabled: true,
            interval: Duration::from_millis(300),
            dir: dir.path().to_path_buf(),
            lists: vec![spec(&url)],
        };
        let views = Arc::new(Mutex::new(Vec::new()));
        let v2 = views.clone();
        let up = ListUpdater::start(cfg.clone(), move |v| v2.lock().unwrap().push(v)).unwrap();
        let v = wait_for(&views, |v| v.lists[0].last_attempt.is_some()).await;
        assert!(v.lists[0].last_error.as_deref().unwrap().contains("404"));
        assert_eq!(v.lists[0].domains, 0);
        assert_eq!(explained_org("fw.updater-co.example"), None);

        *body.lock().unwrap() = Some(("200 OK", GADGETS.to_vec()));
        let v = wait_for(&views, |v| v.lists[0].domains == 1).await;
        assert_eq!(v.lists[0].copy.as_deref(), Some("download"));
        assert_eq!(v.lists[0].last_error, None);
        assert_eq!(
            explained_org("fw.updater-co.example").as_deref(),
            Some("Gadget Updates Co")
        );
        assert!(dir.path().join("gadgets.list").exists());

        *body.lock().unwrap() = Some(("200 OK", b"<html>\n<p>captive portal</p>\n".to_vec()));
        let v = wait_for(&views, |v| v.lists[0].last_error.is_some()).await;
        assert!(
            v.lists[0].last_error.as_deref().unwrap().contains("JSON"),
            "{v:?}"
        );
        assert_eq!(v.lists[0].domains, 1);
        assert_eq!(
            explained_org("fw.updater-co.example").as_deref(),
            Some("Gadget Updates Co")
        );

        // Off: the built-in base alone.
        up.configure(ListsConfig {
            enabled: false,
            ..cfg.clone()
        });
        wait_for(&views, |v| !v.enabled).await;
        assert_eq!(explained_org("fw.updater-co.example"), None);
        drop(up);

        // A restart, the server hanging: the saved copy is in force before
        // any download finished.
        *body.lock().unwrap() = None;
        let views = Arc::new(Mutex::new(Vec::new()));
        let v2 = views.clone();
        let up = ListUpdater::start(
            ListsConfig {
                interval: Duration::from_secs(3600),
                ..cfg
            },
            move |v| v2.lock().unwrap().push(v),
        )
        .unwrap();
        let v = wait_for(&views, |v| !v.lists.is_empty()).await;
        assert_eq!(v.lists[0].copy.as_deref(), Some("saved_copy"));
        assert_eq!(v.lists[0].last_attempt, None);
        assert!(v.lists[0].last_success.is_some());
        // Fetched moments ago: not due again before the interval.
        assert!(v.lists[0].next_attempt.unwrap() > unix_secs() + 3000);
        assert_eq!(
            explained_org("fw.updater-co.example").as_deref(),
            Some("Gadget Updates Co")
        );
        up.configure(ListsConfig {
            enabled: false,
            interval: Duration::from_secs(3600),
            dir: dir.path().to_path_buf(),
            lists: vec![],
        });
        wait_for(&views, |v| !v.enabled).await;
    }

    #[test]
    fn status_lines_say_what_is_in_force_and_what_failed() {
        let mut v = ListsView::default();
        assert_eq!(v.summary(1000), "lists: off\n");
        v.enabled = true;
        v.interval_secs = 86400;
        v.lists.push(ListStatus {
            name: "gadgets".into(),
            url: "http://198.51.100.7/g.json".into(),
            format: ListFormat::Json,
            category: Category::Other,
            domains: 12,
            copy: Some("saved_copy".into()),
            last_success: Some(10_000 - 7200),
            last_attempt: Some(9990),
            last_error: Some("http://198.51.100.7/g.json: HTTP 404 Not Found".into()),
            next_attempt: None,
        });
        let text = v.summary(10_000);
        assert!(
            text.starts_with("lists: 1 configured, downloaded every 1 d\n"),
            "{text}"
        );
        assert!(
            text.contains("gadgets (json, http://198.51.100.7/g.json): 12 domains from the saved copy (downloaded 2 h ago); last attempt failed: http://198.51.100.7/g.json: HTTP 404"),
            "{text}"
        );
    }

    #[test]
    fn a_copy_from_another_address_is_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let s = spec("http://198.51.100.7/a.json");
        lists::save_last_good(dir.path(), "gadgets", GADGETS).unwrap();
        lists::save_meta(
            dir.path(),
            "gadgets",
            &CopyMeta {
                url: s.url.clone(),
                fetched: 1,
            },
        )
        .unwrap();
        assert!(lists::load_cached_one(&s, dir.path()).is_some());
        let moved = spec("http://198.51.100.7/b.json");
        assert!(lists::load_cached_one(&moved, dir.path()).is_none());
    }
}
