//! `cargo xtask package`: cross-builds the daemon and writes OpenWrt
//! packages without the SDK.
//!
//! An .ipk as opkg installs it (and as OpenWrt's `ipkg-build` writes it) is
//! a gzipped tar of `./debian-binary` ("2.0\n"), `./data.tar.gz` and
//! `./control.tar.gz`; not the `ar` archive of Debian packages. Every entry
//! is owned by root:root with a fixed mtime (SOURCE_DATE_EPOCH, or a
//! constant), and gzip headers carry no name or time, so the same inputs
//! give the same bytes.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use flate2::{Compression, GzBuilder};

use crate::{build, cross, setup, util};

#[derive(clap::Args, Default)]
pub struct Args {
    /// Rust target to build for (repeatable). Default: aarch64, armv7
    /// hard-float and x86_64 musl. Also known: mipsel-unknown-linux-musl
    /// (needs a soft-float musl sysroot, see README.md, "On a router").
    #[arg(long = "target", value_name = "TRIPLE")]
    pub targets: Vec<String>,
}

/// Package release appended to the crate version (OpenWrt's PKG_RELEASE).
const RELEASE: u32 = 1;
/// mtime of every entry when SOURCE_DATE_EPOCH is not set (2025-01-01).
const DEFAULT_EPOCH: u64 = 1_735_689_600;
/// The size goal for the aarch64 daemon package (README, issue 7).
pub const AARCH64_SIZE_GOAL: u64 = 2_500_000;

const DAEMON_DEPENDS: &[&str] = &[
    "libc",
    // clsact qdisc (sch_ingress) and cls_bpf/act_bpf for the TC programs.
    "kmod-sched-core",
    "kmod-sched-bpf",
    // Blocking: the daemon's own nftables table, written as JSON (`nft -j`).
    "kmod-nft-core",
    "nftables-json",
    // Cutting existing connections of a blocked device (`conntrack -D`).
    "conntrack",
];
const LUCI_DEPENDS: &[&str] = &["libc", "luci-base", "rpcd", "iot-inspector"];

/// Where the packages are written.
pub fn packages_dir() -> PathBuf {
    util::root().join("target/packages")
}

/// The opkg version of both packages, e.g. `0.1.0-r1`.
pub fn version() -> String {
    format!("{}-r{RELEASE}", env!("CARGO_PKG_VERSION"))
}

/// Each built package's file name and size in bytes, by name (for the bench
/// and the README's table).
#[allow(dead_code)] // called by `cargo xtask bench`
pub fn sizes() -> Result<Vec<(String, u64)>> {
    let dir = packages_dir();
    let mut out = Vec::new();
    if !dir.exists() {
        return Ok(out);
    }
    for entry in std::fs::read_dir(&dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".ipk") {
            out.push((name, entry.metadata()?.len()));
        }
    }
    out.sort();
    Ok(out)
}

pub fn run(args: &Args) -> Result<()> {
    let triples: Vec<String> = if args.targets.is_empty() {
        cross::DEFAULT_TARGETS
            .iter()
            .map(|s| s.to_string())
            .collect()
    } else {
        args.targets.clone()
    };
    let targets = triples
        .iter()
        .map(|t| cross::find(t))
        .collect::<Result<Vec<_>>>()?;

    setup::ensure()?;
    let bpf_object = build::build_ebpf()?;
    let dir = packages_dir();
    std::fs::create_dir_all(&dir)?;
    let epoch = source_date_epoch();

    let mut written = Vec::new();
    for target in &targets {
        let daemon = cross::build_daemon(target)?;
        written.push(daemon_package(target, &daemon, &bpf_object, epoch, &dir)?);
    }
    written.push(luci_package(epoch, &dir)?);

    println!("packages in {}:", dir.display());
    for path in &written {
        let size = std::fs::metadata(path)?.len();
        println!(
            "  {:>9} bytes  {}",
            size,
            path.file_name().unwrap().to_string_lossy()
        );
    }
    if let Some(path) = written
        .iter()
        .find(|p| p.to_string_lossy().ends_with("_aarch64_generic.ipk"))
    {
        let size = std::fs::metadata(path)?.len();
        let verdict = if size <= AARCH64_SIZE_GOAL {
            "within"
        } else {
            "OVER"
        };
        println!(
            "aarch64 iot-inspector package: {size} bytes, {verdict} the {AARCH64_SIZE_GOAL}-byte goal"
        );
    }
    Ok(())
}

fn source_date_epoch() -> u64 {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(DEFAULT_EPOCH)
}

/// A file or directory of a package, by its path without the leading `./`.
struct Entry {
    mode: u32,
    /// `None` for a directory.
    data: Option<Vec<u8>>,
}

/// Files of a tree, with their parent directories added (0755).
#[derive(Default)]
struct Tree(BTreeMap<String, Entry>);

impl Tree {
    fn file(&mut self, path: &str, mode: u32, data: Vec<u8>) {
        let path = path.trim_start_matches('/');
        let mut parent = Path::new(path).parent();
        while let Some(dir) = parent.filter(|d| !d.as_os_str().is_empty()) {
            self.0
                .entry(dir.to_string_lossy().into_owned())
                .or_insert(Entry {
                    mode: 0o755,
                    data: None,
                });
            parent = dir.parent();
        }
        self.0.insert(
            path.to_string(),
            Entry {
                mode,
                data: Some(data),
            },
        );
    }

    /// Adds every file under `src` at `dest` (for the LuCI app's htdocs and
    /// root trees), keeping the executable bit of the source files.
    fn add_dir(&mut self, src: &Path, dest: &str) -> Result<()> {
        if !src.exists() {
            return Ok(());
        }
        let mut entries: Vec<_> = std::fs::read_dir(src)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = format!("{}/{name}", dest.trim_end_matches('/'));
            let kind = entry.file_type()?;
            if kind.is_dir() {
                self.add_dir(&entry.path(), &path)?;
            } else if kind.is_file() {
                use std::os::unix::fs::PermissionsExt;
                let exec = entry.metadata()?.permissions().mode() & 0o111 != 0;
                let mode = if exec { 0o755 } else { 0o644 };
                self.file(&path, mode, std::fs::read(entry.path())?);
            }
        }
        Ok(())
    }

    fn installed_size(&self) -> u64 {
        self.0
            .values()
            .filter_map(|e| e.data.as_ref())
            .map(|d| d.len() as u64)
            .sum()
    }

    fn file_paths(&self) -> impl Iterator<Item = &str> {
        self.0
            .iter()
            .filter(|(_, e)| e.data.is_some())
            .map(|(p, _)| p.as_str())
    }

    /// The tree as a gzipped tar: `./` first, then every entry as `./path`
    /// in name order, like ipkg-build's `tar --sort=name`.
    fn tar_gz(&self, epoch: u64) -> Result<Vec<u8>> {
        let mut entries = vec![(
            String::new(),
            &Entry {
                mode: 0o755,
                data: None,
            },
        )];
        entries.extend(self.0.iter().map(|(p, e)| (p.clone(), e)));
        let mut tar = tar::Builder::new(Vec::new());
        for (path, entry) in entries {
            let name = match entry.data {
                Some(_) => format!("./{path}"),
                None if path.is_empty() => "./".to_string(),
                None => format!("./{path}/"),
            };
            append(&mut tar, &name, entry.mode, entry.data.as_deref(), epoch)?;
        }
        gzip(&tar.into_inner()?, epoch)
    }
}

/// Appends one entry with the name written as given: tar's `set_path`
/// would drop the leading `./` that ipkg-build's archives (and the opkg
/// versions that look for `./control.tar.gz`) use.
fn append(
    tar: &mut tar::Builder<Vec<u8>>,
    name: &str,
    mode: u32,
    data: Option<&[u8]>,
    epoch: u64,
) -> Result<()> {
    let mut header = tar::Header::new_gnu();
    {
        let gnu = header.as_gnu_mut().context("GNU header")?;
        if name.len() >= gnu.name.len() {
            bail!("path too long for a tar header: {name}");
        }
        gnu.name[..name.len()].copy_from_slice(name.as_bytes());
    }
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_username("root")?;
    header.set_groupname("root")?;
    header.set_mtime(epoch);
    match data {
        Some(bytes) => {
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(bytes.len() as u64);
            header.set_cksum();
            tar.append(&header, bytes)?;
        }
        None => {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_size(0);
            header.set_cksum();
            tar.append(&header, std::io::empty())?;
        }
    }
    Ok(())
}

fn gzip(data: &[u8], epoch: u64) -> Result<Vec<u8>> {
    let mut gz = GzBuilder::new()
        .mtime(epoch as u32)
        .write(Vec::new(), Compression::best());
    gz.write_all(data)?;
    Ok(gz.finish()?)
}

/// What goes into control.tar.gz besides the data.
struct Control<'a> {
    package: &'a str,
    arch: &'a str,
    depends: &'a [&'a str],
    section: &'a str,
    description: &'a str,
    conffiles: &'a [&'a str],
    /// The package's own part of postinst, run by default_postinst.
    postinst_pkg: Option<&'a str>,
}

/// OpenWrt's buildroot writes these two for every package: the common work
/// (uci-defaults, enabling and starting /etc/init.d scripts, dropping the
/// LuCI index cache, running `postinst-pkg`) is in /lib/functions.sh.
const POSTINST: &str = r#"#!/bin/sh
[ "${IPKG_NO_SCRIPT}" = "1" ] && exit 0
[ -s ${IPKG_INSTROOT}/lib/functions.sh ] || exit 0
. ${IPKG_INSTROOT}/lib/functions.sh
default_postinst $0 $@
"#;
/// default_prerm stops and disables the package's /etc/init.d scripts.
const PRERM: &str = r#"#!/bin/sh
[ -s ${IPKG_INSTROOT}/lib/functions.sh ] || exit 0
. ${IPKG_INSTROOT}/lib/functions.sh
default_prerm $0 $@
"#;
/// What luci.mk adds for LuCI apps: the menu and module caches must go for
/// the new views to show, and rpcd must re-read its ACLs and plugins.
const LUCI_POSTINST_PKG: &str = r#"[ -n "${IPKG_INSTROOT}" ] || {
	rm -f /tmp/luci-indexcache*
	rm -rf /tmp/luci-modulecache/
	/etc/init.d/rpcd reload 2>/dev/null
	exit 0
}
"#;

fn write_ipk(control: &Control, data: &Tree, epoch: u64, dir: &Path) -> Result<PathBuf> {
    let version = version();
    let mut text = String::new();
    let mut field = |k: &str, v: &str| text.push_str(&format!("{k}: {v}\n"));
    field("Package", control.package);
    field("Version", &version);
    field("Depends", &control.depends.join(", "));
    field("Source", env!("CARGO_PKG_REPOSITORY"));
    field("SourceName", control.package);
    field("License", &env!("CARGO_PKG_LICENSE").replace(" OR ", " "));
    field("Section", control.section);
    field("SourceDateEpoch", &epoch.to_string());
    field("Maintainer", "iot-inspector developers");
    field("Architecture", control.arch);
    field("Installed-Size", &data.installed_size().to_string());
    // Continuation lines of a multi-line description start with a space.
    let mut lines = control.description.lines();
    field("Description", lines.next().unwrap_or_default());
    for line in lines {
        text.push(' ');
        text.push_str(if line.is_empty() { "." } else { line });
        text.push('\n');
    }

    let mut ctl = Tree::default();
    ctl.file("control", 0o644, text.into_bytes());
    if !control.conffiles.is_empty() {
        let mut list = control.conffiles.join("\n");
        list.push('\n');
        ctl.file("conffiles", 0o644, list.into_bytes());
    }
    ctl.file("postinst", 0o755, POSTINST.as_bytes().to_vec());
    ctl.file("prerm", 0o755, PRERM.as_bytes().to_vec());
    if let Some(body) = control.postinst_pkg {
        ctl.file("postinst-pkg", 0o755, body.as_bytes().to_vec());
    }
    for conf in control.conffiles {
        if !data.file_paths().any(|p| p == conf.trim_start_matches('/')) {
            bail!("conffile {conf} is not in {}", control.package);
        }
    }

    let mut outer = tar::Builder::new(Vec::new());
    append(&mut outer, "./debian-binary", 0o644, Some(b"2.0\n"), epoch)?;
    append(
        &mut outer,
        "./data.tar.gz",
        0o644,
        Some(&data.tar_gz(epoch)?),
        epoch,
    )?;
    append(
        &mut outer,
        "./control.tar.gz",
        0o644,
        Some(&ctl.tar_gz(epoch)?),
        epoch,
    )?;
    let bytes = gzip(&outer.into_inner()?, epoch)?;
    let path = dir.join(format!(
        "{}_{version}_{}.ipk",
        control.package, control.arch
    ));
    std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

fn openwrt_file(name: &str) -> Result<Vec<u8>> {
    let path = util::root().join("openwrt/files").join(name);
    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))
}

fn daemon_package(
    target: &cross::Target,
    daemon: &Path,
    bpf_object: &Path,
    epoch: u64,
    dir: &Path,
) -> Result<PathBuf> {
    let mut data = Tree::default();
    data.file("usr/sbin/iot-inspector", 0o755, std::fs::read(daemon)?);
    data.file(
        "usr/lib/iot-inspector/iot-inspector.bpf.o",
        0o644,
        std::fs::read(bpf_object)?,
    );
    data.file(
        "etc/init.d/iot-inspector",
        0o755,
        openwrt_file("iot-inspector.init")?,
    );
    // 0600: the file can hold the dashboard token.
    data.file(
        "etc/config/iot-inspector",
        0o600,
        openwrt_file("iot-inspector.config")?,
    );
    data.file(
        "etc/uci-defaults/90-iot-inspector",
        0o755,
        openwrt_file("iot-inspector.uci-defaults")?,
    );
    write_ipk(
        &Control {
            package: "iot-inspector",
            arch: target.opkg_arch,
            depends: DAEMON_DEPENDS,
            section: "net",
            description: "See what every smart-home device on your network is, does and talks to.\n\
                Counts traffic per device and destination with eBPF on the LAN ports,\n\
                names devices and the services they reach, and blocks them with\n\
                nftables on request. Everything stays on the router.",
            conffiles: &["/etc/config/iot-inspector"],
            postinst_pkg: None,
        },
        &data,
        epoch,
        dir,
    )
}

fn luci_package(epoch: u64, dir: &Path) -> Result<PathBuf> {
    let src = util::root().join("luci-app");
    let mut data = Tree::default();
    // luci.mk's layout: htdocs/ is served from /www, root/ is the filesystem.
    data.add_dir(&src.join("htdocs"), "www")?;
    data.add_dir(&src.join("root"), "")?;
    write_ipk(
        &Control {
            package: "luci-app-iot-inspector",
            arch: "all",
            depends: LUCI_DEPENDS,
            section: "luci",
            description: "LuCI pages for iot-inspector: devices, what they do and whom they\n\
                talk to, and blocking rules.",
            conffiles: &[],
            postinst_pkg: Some(LUCI_POSTINST_PKG),
        },
        &data,
        epoch,
        dir,
    )
}
