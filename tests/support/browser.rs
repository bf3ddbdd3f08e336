//! Headless Chromium for the browser tests and the UI benchmark:
//! chromedriver and one Chromium session inside a lab namespace, and a way
//! to run async code on a thread that joined that namespace. Included by
//! `tests/tests/browser.rs` and `tests/benches/ui.rs` (`#[path]`), so both
//! drive the browser the same way.
#![allow(dead_code)]

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use fantoccini::{Client, ClientBuilder, Locator};
use iot_inspector_lab::Netns;
use serde_json::{Value, json};

/// Where the test run saves its screenshots (`target/screenshots/`).
pub fn screenshots() -> PathBuf {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `f` on a thread inside the namespace `ns`, on its own tokio runtime.
pub fn in_netns<T: Send>(ns: &Netns, f: impl AsyncFnOnce() -> Result<T> + Send) -> Result<T> {
    let path = format!("/var/run/netns/{}", ns.name);
    std::thread::scope(|s| {
        s.spawn(move || {
            let file = std::fs::File::open(&path).with_context(|| format!("opening {path}"))?;
            use std::os::fd::AsRawFd;
            // SAFETY: setns(2) on an fd we own; it moves only this thread.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                bail!("setns {path}: {}", std::io::Error::last_os_error());
            }
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(f())
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

/// chromedriver and a Chromium session (both in the calling thread's namespace).
pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: PathBuf,
}

impl Browser {
    pub async fn start(ns: &Netns, port: u16, profile: PathBuf) -> Result<Browser> {
        for tool in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
            if !std::path::Path::new(tool).exists() {
                bail!(
                    "{tool} is missing: install the Debian packages chromium and chromium-driver"
                );
            }
        }
        let mut driver = ns
            .cmd("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting chromedriver")?;
        let until = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > until {
                let _ = driver.kill();
                let _ = driver.wait();
                bail!("chromedriver did not listen on 127.0.0.1:{port}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = std::fs::remove_dir_all(&profile);
        std::fs::create_dir_all(&profile)?;
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--hide-scrollbars",
                    "--window-size=1280,1000",
                    format!("--user-data-dir={}", profile.display()),
                ],
            }),
        );
        let client =
            match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(caps)
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    let _ = driver.kill();
                    let _ = driver.wait();
                    return Err(e).context("opening a Chromium session");
                }
            };
        Ok(Browser {
            client,
            driver,
            _profile: profile,
        })
    }

    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }

    pub async fn js(&self, script: &str, args: Vec<Value>) -> Result<Value> {
        Ok(self.client.execute(script, args).await?)
    }

    /// The textContent of every element matching `css`.
    pub async fn texts(&self, css: &str) -> Result<Vec<String>> {
        let v = self
            .js(
                "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.textContent)",
                vec![json!(css)],
            )
            .await?;
        Ok(serde_json::from_value(v)?)
    }

    /// Waits until `css` matches something whose text satisfies `ok`.
    pub async fn wait_text(
        &self,
        css: &str,
        within: Duration,
        ok: impl Fn(&str) -> bool,
    ) -> Result<String> {
        let until = Instant::now() + within;
        loop {
            if let Some(t) = self.texts(css).await?.into_iter().find(|t| ok(t)) {
                return Ok(t);
            }
            if Instant::now() > until {
                bail!(
                    "nothing matching {css} with the expected text; found {:?}; page: {}",
                    self.texts(css).await?,
                    self.texts("body")
                        .await?
                        .join("")
                        .chars()
                        .take(1500)
                        .collect::<String>()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn click(&self, css: &str) -> Result<()> {
        let e = self
            .client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
            .with_context(|| format!("waiting for {css}"))?;
        e.click().await.with_context(|| format!("clicking {css}"))?;
        Ok(())
    }

    /// Saves a PNG of the page under target/screenshots.
    pub async fn screenshot(&self, name: &str) -> Result<()> {
        // Let the last fetches land and the layout settle.
        tokio::time::sleep(Duration::from_millis(400)).await;
        let png = self.client.screenshot().await?;
        std::fs::write(screenshots().join(format!("{name}.png")), png)?;
        Ok(())
    }

    /// Fails if a JavaScript dialog is open (an injected `alert` ran), and
    /// if the page holds an element a device name could have injected.
    pub async fn assert_no_script_ran(&self, at: &str) -> Result<()> {
        if let Ok(text) = self.client.get_alert_text().await {
            bail!("{at}: a dialog opened: {text:?}");
        }
        let injected = self
            .js(
                "return document.querySelectorAll('main img, main [onerror]').length",
                vec![],
            )
            .await?;
        if injected != json!(0) {
            bail!("{at}: the page holds injected elements");
        }
        Ok(())
    }

    /// Navigates to `url` from a blank page (a full document load, not a
    /// hash change) and returns the in-page time (ms since navigation
    /// start) when `ready` (a JS expression) first held, and the
    /// navigation timing's load event end.
    pub async fn timed_load(&self, url: &str, ready: &str) -> Result<(f64, f64)> {
        self.client.goto("about:blank").await?;
        self.client.goto(url).await?;
        let script = format!(
            "const done = arguments[arguments.length - 1];
             const deadline = performance.now() + 10000;
             function check() {{
                 let ok = false;
                 try {{ ok = !!({ready}); }} catch (e) {{ ok = false; }}
                 if (ok) {{
                     const nav = performance.getEntriesByType('navigation')[0];
                     done([performance.now(), nav ? nav.loadEventEnd : -1]);
                 }} else if (performance.now() > deadline) {{
                     done(null);
                 }} else {{
                     requestAnimationFrame(check);
                 }}
             }}
             check();"
        );
        let v = self.client.execute_async(&script, vec![]).await?;
        let Some(a) = v.as_array() else {
            let body = self
                .client
                .execute(
                    "return document.body ? document.body.innerText.slice(0, 800) : ''",
                    vec![],
                )
                .await?;
            bail!("{url}: the view's data never rendered ({ready}); page: {body}");
        };
        Ok((
            a[0].as_f64().unwrap_or(f64::NAN),
            a[1].as_f64().unwrap_or(f64::NAN),
        ))
    }
}

/// Named traffic for the views to show: DNS answers from wan's dnsmasq,
/// then short transfers to the named servers (iperf3 ports from `port`).
pub fn named_traffic(lab: &mut iot_inspector_lab::Lab, port: u16) -> Result<()> {
    use iot_inspector_lab::{SERVER_V4, SERVER2_V4, home};
    for (i, (dev, name, server)) in [
        ("cam", "api.xbcs.net", SERVER_V4),
        ("tv", "www.google-analytics.com", SERVER2_V4),
        ("tv", "api.netflix.com", SERVER_V4),
    ]
    .into_iter()
    .enumerate()
    {
        lab.device(dev).ns.run(
            "dig",
            &["+short", "+tries=1", "+time=2", "@203.0.113.53", name],
        )?;
        let port = port + i as u16;
        home::iperf_server(lab, server, port)?;
        let d = lab.device(dev).clone();
        home::iperf_client(&d, server, port, &["-t", "2", "-b", "4M"])?;
    }
    Ok(())
}
