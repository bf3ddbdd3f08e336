//! `cargo xtask setup`: installs what the build and tests need on a fresh
//! Debian machine (as root). Each step checks first, so a second run only
//! checks.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

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
        || !vm_kernel_ready()
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
    vm_kernel()?;
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

/// Where Debian's kernel and static busybox for the flow-offload VM test
/// are unpacked (the same path as `iot_inspector_lab::vm::cache_dir`).
pub fn vm_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("IOT_INSPECTOR_VM_DIR") {
        return p.into();
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache/iot-inspector/vm")
}

fn vm_kernel_ready() -> bool {
    let dir = vm_dir();
    dir.join("busybox/busybox").exists()
        && std::fs::read_to_string(dir.join("kernel/version")).is_ok_and(|v| {
            let v = v.trim();
            dir.join(format!("kernel/boot/vmlinuz-{v}")).exists()
                && dir
                    .join(format!("kernel/lib/modules/{v}/modules.dep"))
                    .exists()
        })
}

/// Debian's kernel (it has `nf_flow_table`, this machine's may not) and
/// busybox-static, downloaded with apt and unpacked with dpkg-deb, never
/// installed: `linux-image-amd64` names the versioned package to fetch.
fn vm_kernel() -> Result<()> {
    if vm_kernel_ready() {
        return Ok(());
    }
    let out = Command::new("apt-cache")
        .args(["depends", "linux-image-amd64"])
        .output()
        .context("running apt-cache")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let package = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends:"))
        .map(str::trim)
        .find(|p| p.starts_with("linux-image-") && p.ends_with("-amd64"))
        .with_context(|| {
            format!("no versioned kernel in `apt-cache depends linux-image-amd64`: {text}")
        })?
        .to_string();
    let version = package.trim_start_matches("linux-image-").to_string();
    let dir = vm_dir();
    let download = dir.join("download");
    let _ = std::fs::remove_dir_all(&download);
    std::fs::create_dir_all(&download)?;
    util::run(
        Command::new("apt-get")
            .args(["download", &package, "busybox-static"])
            .current_dir(&download),
    )?;
    let deb = |prefix: &str| -> Result<PathBuf> {
        std::fs::read_dir(&download)?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(prefix) && n.ends_with(".deb"))
            })
            .with_context(|| format!("apt-get download left no {prefix}*.deb"))
    };
    let kernel = dir.join("kernel");
    let busybox = dir.join("busybox");
    let unpacked = download.join("busybox-static");
    for d in [&kernel, &busybox] {
        let _ = std::fs::remove_dir_all(d);
    }
    std::fs::create_dir_all(&busybox)?;
    util::run(
        Command::new("dpkg-deb")
            .arg("-x")
            .arg(deb(&format!("{package}_"))?)
            .arg(&kernel),
    )?;
    util::run(
        Command::new("dpkg-deb")
            .arg("-x")
            .arg(deb("busybox-static_")?)
            .arg(&unpacked),
    )?;
    std::fs::copy(unpacked.join("bin/busybox"), busybox.join("busybox"))?;
    // The package's postinst would run depmod; the VM's init needs modules.dep.
    util::run(Command::new("depmod").arg("-b").arg(&kernel).arg(&version))?;
    // Written last: its presence says the unpacking finished.
    std::fs::write(kernel.join("version"), format!("{version}\n"))?;
    std::fs::remove_dir_all(&download)?;
    Ok(())
}
