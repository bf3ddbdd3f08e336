//! `cargo xtask setup`: installs what the build and tests need on a fresh
//! Debian machine (as root). Each step checks first, so a second run only
//! checks.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use iot_inspector_lab::vm::{self, Kernel};

use crate::util::{self, have};

/// Debian packages: the simulated home (iproute2, nftables, conntrack,
/// dnsmasq, iperf3, udhcpc, dig, curl, openssl, tcpdump), eBPF inspection
/// (bpftool), the browser tests (chromium + driver), and packaging checks
/// (file, binutils for readelf).
pub const DEBIAN_PACKAGES: &[&str] = &[
    "iproute2",
    "nftables",
    "conntrack",
    "dnsmasq-base",
    "iperf3",
    "udhcpc",
    "dnsutils",
    "curl",
    "openssl",
    "tcpdump",
    "iputils-ping",
    "ethtool",
    "bpftool",
    "chromium",
    "chromium-driver",
    "file",
    "binutils",
    "procps",
    "psmisc",
    // Packaging: libunwind for the -Z build-std router targets (clang,
    // llvm-ar), and the shell the package test runs OpenWrt's scripts with.
    "clang",
    "llvm",
    "busybox",
    // The flow-offload VM test (tests/tests/offload_vm.rs): qemu, and kmod
    // for depmod/modprobe of Debian's kernel modules.
    "qemu-system-x86",
    "kmod",
];

/// Programs whose presence shows the packages above are installed.
const PROBES: &[&str] = &[
    "ip",
    "nft",
    "conntrack",
    "dnsmasq",
    "iperf3",
    "udhcpc",
    "dig",
    "curl",
    "openssl",
    "tcpdump",
    "ping",
    "ethtool",
    "bpftool",
    "chromium",
    "chromedriver",
    "file",
    "readelf",
    "pkill",
    "clang",
    "llvm-ar",
    "busybox",
    "qemu-system-x86_64",
    "depmod",
];

/// Where bpf-linker is built and kept between runs.
pub fn tools_dir() -> PathBuf {
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache/iot-inspector/bpf-linker")
}

pub fn bpf_linker_bin() -> PathBuf {
    tools_dir().join("bin")
}

/// Whether anything is missing (so other commands know to run setup).
pub fn needed() -> bool {
    !PROBES.iter().all(|p| have(p))
        || !bpf_linker_bin().join("bpf-linker").exists()
        || !nightly_has_rust_src()
        || !vm_kernels_ready()
}

pub fn ensure() -> Result<()> {
    if needed() { run_setup() } else { Ok(()) }
}

pub fn run() -> Result<()> {
    run_setup()
}

fn run_setup() -> Result<()> {
    debian_packages()?;
    rust_src()?;
    bpf_linker()?;
    vm_kernels()?;
    eprintln!("setup: everything is in place");
    Ok(())
}

fn debian_packages() -> Result<()> {
    if PROBES.iter().all(|p| have(p)) {
        return Ok(());
    }
    if !have("apt-get") {
        bail!(
            "setup needs Debian's apt-get to install {DEBIAN_PACKAGES:?}; install them by hand on this system"
        );
    }
    util::run(Command::new("apt-get").args(["update", "-qq"]))?;
    util::run(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(DEBIAN_PACKAGES)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

fn nightly_has_rust_src() -> bool {
    Command::new("rustup")
        .args(["component", "list", "--installed", "--toolchain", "nightly"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("rust-src"))
        .unwrap_or(false)
}

fn rust_src() -> Result<()> {
    if nightly_has_rust_src() {
        return Ok(());
    }
    util::run(Command::new("rustup").args([
        "toolchain",
        "install",
        "nightly",
        "--profile",
        "minimal",
    ]))?;
    util::run(Command::new("rustup").args([
        "component",
        "add",
        "rust-src",
        "--toolchain",
        "nightly",
    ]))
}

/// bpf-linker must use the LLVM of the nightly rustc (22). Debian has no
/// LLVM 22, but nightly ships it as a shared library; link against that.
fn bpf_linker() -> Result<()> {
    let prefix = tools_dir();
    if prefix.join("bin/bpf-linker").exists() {
        return Ok(());
    }
    let out = Command::new("rustc")
        .args(["+nightly", "--print", "sysroot"])
        .output()
        .context("running rustc +nightly")?;
    let sysroot = PathBuf::from(String::from_utf8(out.stdout)?.trim());
    let lib = prefix.join("lib");
    std::fs::create_dir_all(&lib)?;
    let llvm = std::fs::read_dir(sysroot.join("lib"))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libLLVM.so.") && n.contains("-rust-"))
        })
        .context("nightly toolchain has no libLLVM.so.*-rust-* to build bpf-linker against")?;
    for name in [
        "libLLVM.so".to_string(),
        llvm.file_name().unwrap().to_string_lossy().into_owned(),
    ] {
        let link = lib.join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&llvm, &link)?;
    }
    let major = llvm
        .file_name()
        .unwrap()
        .to_string_lossy()
        .trim_start_matches("libLLVM.so.")
        .split('.')
        .next()
        .unwrap_or("22")
        .to_string();
    util::run(
        Command::new("cargo")
            .args([
                "install",
                "bpf-linker",
                "--version",
                "0.13.0",
                "--locked",
                "--no-default-features",
            ])
            .args(["--features", &format!("llvm-{major}")])
            .arg("--root")
            .arg(&prefix)
            .env("LLVM_PREFIX", &prefix),
    )
}

/// The flow-offload VM tests' kernels and busybox are complete.
fn vm_kernels_ready() -> bool {
    Kernel::ALL
        .into_iter()
        .all(|k| vm::Image::find(k).is_ok() || (k.optional() && k.unavailable_note().exists()))
}

/// Debian's kernels (they have `nf_flow_table`, this machine's may not) and
/// busybox-static for the VM tests: downloaded with apt and unpacked with
/// dpkg-deb, never installed. Each kernel lands in its own directory
/// ([`Kernel::dir`]); one already there is kept.
fn vm_kernels() -> Result<()> {
    if vm_kernels_ready() {
        return Ok(());
    }
    let dir = vm::cache_dir();
    std::fs::create_dir_all(&dir)?;
    migrate_single_kernel(&dir)?;
    if !dir.join("busybox/busybox").exists() {
        busybox(&dir)?;
    }
    for k in Kernel::ALL {
        if vm::Image::find(k).is_ok() || (k.optional() && k.unavailable_note().exists()) {
            continue;
        }
        let result = vm_kernel(&dir, k);
        if result.is_err() {
            // What a failed attempt left: its apt files and a partial unpack.
            let _ = std::fs::remove_dir_all(dir.join(format!("download-{}", k.name())));
            let _ = std::fs::remove_dir_all(partial_dir(k));
        }
        match result {
            Ok(()) => {}
            // Its release left the mirror: the tests go on without it and
            // say so; remove the note to try again.
            Err(e) if k.optional() => {
                let note = k.unavailable_note();
                eprintln!(
                    "setup: WARNING: no {} kernel ({e:#}); its VM test will say so and pass. \
                     Remove {} to try again.",
                    k.name(),
                    note.display()
                );
                std::fs::create_dir_all(note.parent().unwrap())?;
                std::fs::write(&note, format!("{e:#}\n"))?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Earlier setups unpacked one kernel, bookworm's default, at `kernel/`:
/// it becomes [`Kernel::Bookworm`]'s directory (pruned) instead of being
/// downloaded again.
fn migrate_single_kernel(dir: &Path) -> Result<()> {
    let old = dir.join("kernel");
    if !old.exists() {
        return Ok(());
    }
    let version = std::fs::read_to_string(old.join("version")).unwrap_or_default();
    let version = version.trim();
    let target = Kernel::Bookworm.dir();
    if Kernel::Bookworm.matches(version)
        && old.join(format!("boot/vmlinuz-{version}")).exists()
        && !target.join("version").exists()
    {
        eprintln!("setup: moving {} to {}", old.display(), target.display());
        let _ = std::fs::remove_dir_all(&target);
        std::fs::create_dir_all(target.parent().unwrap())?;
        // The version file goes back last, once pruned and depmod'ed.
        std::fs::remove_file(old.join("version"))?;
        std::fs::rename(&old, &target)?;
        prune_modules(&target, version)?;
        std::fs::write(target.join("version"), format!("{version}\n"))?;
    } else {
        std::fs::remove_dir_all(&old)?;
    }
    Ok(())
}

fn busybox(dir: &Path) -> Result<()> {
    let download = dir.join("download-busybox");
    let _ = std::fs::remove_dir_all(&download);
    std::fs::create_dir_all(&download)?;
    util::run(
        Command::new("apt-get")
            .args(["download", "busybox-static"])
            .current_dir(&download),
    )?;
    let unpacked = download.join("unpacked");
    util::run(
        Command::new("dpkg-deb")
            .arg("-x")
            .arg(deb_in(&download, "busybox-static_")?)
            .arg(&unpacked),
    )?;
    let busybox = dir.join("busybox");
    std::fs::create_dir_all(&busybox)?;
    std::fs::copy(unpacked.join("bin/busybox"), busybox.join("busybox"))?;
    std::fs::remove_dir_all(&download)?;
    Ok(())
}

/// The `.deb` in `dir` whose name starts with `prefix`.
fn deb_in(dir: &Path, prefix: &str) -> Result<PathBuf> {
    std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix) && n.ends_with(".deb"))
        })
        .with_context(|| {
            format!(
                "apt-get download left no {prefix}*.deb in {}",
                dir.display()
            )
        })
}

/// The archive keys apt checks the kernels' releases with (Debian's
/// keyring package holds those of the current and the previous releases).
const DEBIAN_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// Downloads and unpacks `kernel` into its directory. apt runs with a
/// private configuration under `dir` — its own sources list (the kernel's
/// release, whatever release this machine runs), lists and cache — so the
/// system's apt sources are neither read nor changed; it is removed after.
fn vm_kernel(dir: &Path, kernel: Kernel) -> Result<()> {
    let work = dir.join(format!("download-{}", kernel.name()));
    let _ = std::fs::remove_dir_all(&work);
    let apt_dir = work.join("apt");
    for d in [
        "lists/partial",
        "cache/archives/partial",
        "sources.list.d",
        "preferences.d",
    ] {
        std::fs::create_dir_all(apt_dir.join(d))?;
    }
    let release = kernel.release();
    let sources = apt_dir.join("sources.list");
    std::fs::write(
        &sources,
        format!(
            "deb [signed-by={DEBIAN_KEYRING}] http://deb.debian.org/debian {release} main\n\
             deb [signed-by={DEBIAN_KEYRING}] http://deb.debian.org/debian {release}-updates main\n\
             deb [signed-by={DEBIAN_KEYRING}] http://deb.debian.org/debian-security {release}-security main\n"
        ),
    )?;
    let opt = |key: &str, value: &Path| format!("{key}={}", value.display());
    let apt_options = [
        opt("Dir::Etc::SourceList", &sources),
        opt("Dir::Etc::SourceParts", &apt_dir.join("sources.list.d")),
        opt("Dir::Etc::Preferences", &apt_dir.join("preferences")),
        opt("Dir::Etc::PreferencesParts", &apt_dir.join("preferences.d")),
        opt("Dir::State::Lists", &apt_dir.join("lists")),
        opt("Dir::Cache", &apt_dir.join("cache")),
        // The VM is x86_64 whatever this machine is; no translations.
        "APT::Architecture=amd64".to_string(),
        "APT::Architectures::=amd64".to_string(),
        "Acquire::Languages=none".to_string(),
        // Files under root's home: apt's `_apt` user could not write them.
        "APT::Sandbox::User=root".to_string(),
    ];
    let apt = |program: &str| {
        let mut c = Command::new(program);
        for o in &apt_options {
            c.arg("-o").arg(o);
        }
        c
    };
    util::run(apt("apt-get").args(["update", "-qq"]))?;
    let meta = kernel.meta_package();
    let out = apt("apt-cache")
        .args(["depends", meta])
        .output()
        .context("running apt-cache")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let package = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends:"))
        .map(str::trim)
        .find(|p| p.starts_with("linux-image-") && p.ends_with("-amd64"))
        .with_context(|| {
            format!(
                "no versioned kernel in `apt-cache depends {meta}` of {release}{}: \
                 apt-get update's warnings above say whether {release} is still on deb.debian.org",
                if text.trim().is_empty() {
                    String::new()
                } else {
                    format!(" ({})", text.trim())
                }
            )
        })?
        .to_string();
    let version = package.trim_start_matches("linux-image-").to_string();
    if !kernel.matches(&version) {
        bail!(
            "{meta} of {release} now names {package}, not the {:?} series {} stands for: update vm::Kernel",
            kernel.series(),
            kernel.name()
        );
    }
    let debs = work.join("debs");
    std::fs::create_dir_all(&debs)?;
    util::run(
        apt("apt-get")
            .args(["download", &package])
            .current_dir(&debs),
    )?;
    // Unpacked beside its final place and renamed when complete.
    let target = kernel.dir();
    let partial = partial_dir(kernel);
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial)?;
    util::run(
        Command::new("dpkg-deb")
            .arg("-x")
            .arg(deb_in(&debs, &format!("{package}_"))?)
            .arg(&partial),
    )?;
    std::fs::remove_dir_all(&work)?;
    prune_modules(&partial, &version)?;
    std::fs::write(partial.join("version"), format!("{version}\n"))?;
    let _ = std::fs::remove_dir_all(&target);
    std::fs::rename(&partial, &target)?;
    eprintln!(
        "setup: {} is {version} ({})",
        kernel.name(),
        target.display()
    );
    Ok(())
}

/// Where a kernel is unpacked before it is renamed into [`Kernel::dir`].
fn partial_dir(kernel: Kernel) -> PathBuf {
    kernel
        .dir()
        .with_file_name(format!("{}.partial", kernel.name()))
}

/// Module directories (under `lib/modules/<version>/kernel`) of which the
/// VM keeps only the listed children: it has no hardware but virtio, and
/// its filesystems are 9p and overlay. An unpacked kernel is ~400 MB,
/// mostly drivers.
const MODULES_KEEP_ONLY: &[(&str, &[&str])] = &[
    ("drivers", &["virtio", "net", "char", "block"]),
    ("fs", &["9p", "overlayfs", "netfs", "fscache"]),
];

/// … and those it removes whole.
const MODULES_DROP: &[&str] = &[
    "sound",
    "drivers/net/wireless",
    "drivers/net/ethernet",
    "drivers/net/usb",
    "drivers/net/can",
    "net/bluetooth",
    "net/mac80211",
    "net/wireless",
];

/// Removes the module directories the VM never loads from, then every
/// module left that depends on a removed one (so `modules.dep` stays
/// whole), and runs depmod (the package's postinst would; the VM's init
/// needs modules.dep). The dependencies come from a depmod of the whole
/// tree: Debian's System.map is a placeholder, so `depmod -e` cannot tell
/// a symbol of a removed module from one of the kernel's own.
fn prune_modules(root: &Path, version: &str) -> Result<()> {
    let modules = root.join(format!("lib/modules/{version}"));
    let before = tree_bytes(root);
    depmod(root, version)?;
    let deps = std::fs::read_to_string(modules.join("modules.dep"))?;
    let kernel = modules.join("kernel");
    for (parent, keep) in MODULES_KEEP_ONLY {
        let Ok(entries) = std::fs::read_dir(kernel.join(parent)) else {
            continue;
        };
        for e in entries.flatten() {
            if !keep.iter().any(|k| e.file_name() == *k) {
                remove_path(&e.path())?;
            }
        }
    }
    for d in MODULES_DROP {
        let p = kernel.join(d);
        if p.exists() {
            remove_path(&p)?;
        }
    }
    // modules.dep lists each module's dependencies, indirect ones too.
    for line in deps.lines() {
        let Some((module, needs)) = line.split_once(':') else {
            continue;
        };
        let path = modules.join(module);
        if path.exists() && needs.split_whitespace().any(|d| !modules.join(d).exists()) {
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        }
    }
    depmod(root, version)?;
    vm::module_load_order(&modules, vm::BOOT_MODULES)
        .context("pruning removed a module the VM boots with")?;
    eprintln!(
        "setup: kernel {version} pruned from {} to {} MB",
        before >> 20,
        tree_bytes(root) >> 20
    );
    Ok(())
}

fn depmod(root: &Path, version: &str) -> Result<()> {
    util::run(Command::new("depmod").arg("-b").arg(root).arg(version))
}

/// Bytes of the regular files under `p`.
fn tree_bytes(p: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(p) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => tree_bytes(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

fn remove_path(p: &Path) -> Result<()> {
    if p.is_dir() {
        std::fs::remove_dir_all(p)
    } else {
        std::fs::remove_file(p)
    }
    .with_context(|| format!("removing {}", p.display()))
}
