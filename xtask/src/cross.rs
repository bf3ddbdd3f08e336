//! Cross builds of the daemon for router targets, without a C cross
//! toolchain.
//!
//! * Targets whose `rust-std` rustup ships (aarch64 and x86_64 musl) build
//!   with stable and link with rust-lld against the musl C library that
//!   rustup ships inside `rust-std` ("self-contained" linking).
//! * Targets without a shipped `rust-std` (armv7 hard-float musl: the 1.94,
//!   1.95, beta and nightly manifests all say `available = false`; mipsel
//!   musl is tier 3) build the standard library from source with nightly
//!   `-Z build-std` and link with rust-lld against a musl sysroot: by default
//!   the musl C library of Debian's `musl-dev` for that architecture
//!   (downloaded with `apt-get download`, not installed) plus LLVM's
//!   libunwind from rust-src, compiled with the host's clang.
//!
//! The linker settings go through per-target cargo environment variables,
//! so host builds are not affected.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{build, util};

/// One router target.
pub struct Target {
    /// Rust's target triple.
    pub triple: &'static str,
    /// The opkg architecture the packages for it are built for (what
    /// `opkg print-architecture` shows on such a router).
    pub opkg_arch: &'static str,
    pub how: How,
}

pub enum How {
    /// `rustup target add` and stable cargo, self-contained musl.
    Stable,
    /// nightly `-Z build-std` against a musl sysroot.
    BuildStd {
        /// Debian's architecture name and multiarch triplet for `musl-dev`,
        /// when Debian's musl fits the target's ABI.
        debian: Option<(&'static str, &'static str)>,
        /// clang flags for libunwind so it matches the Rust target's ABI.
        clang_flags: &'static [&'static str],
        /// Why there is no default sysroot (when `debian` is `None`).
        no_default_sysroot: &'static str,
    },
}

pub const TARGETS: &[Target] = &[
    Target {
        triple: "aarch64-unknown-linux-musl",
        opkg_arch: "aarch64_generic",
        how: How::Stable,
    },
    Target {
        triple: "armv7-unknown-linux-musleabihf",
        opkg_arch: "arm_cortex-a7_neon-vfpv4",
        how: How::BuildStd {
            debian: Some(("armhf", "arm-linux-musleabihf")),
            clang_flags: &["-mfloat-abi=hard", "-mfpu=vfpv3-d16"],
            no_default_sysroot: "",
        },
    },
    Target {
        triple: "x86_64-unknown-linux-musl",
        opkg_arch: "x86_64",
        how: How::Stable,
    },
    Target {
        triple: "mipsel-unknown-linux-musl",
        opkg_arch: "mipsel_24kc",
        how: How::BuildStd {
            debian: None,
            clang_flags: &["-mips32r2", "-msoft-float"],
            no_default_sysroot: "Rust's mipsel-unknown-linux-musl (like OpenWrt's mipsel_24kc) is \
                soft-float, but Debian's musl-dev:mipsel is built for the hard-float o32 ABI \
                (-mfpxx), and rust-lld refuses to mix them (\"floating point ABI '-msoft-float' \
                is incompatible with target floating point ABI '-mfpxx'\"). Point \
                IOT_INSPECTOR_SYSROOT_MIPSEL_UNKNOWN_LINUX_MUSL at a soft-float musl sysroot \
                (e.g. staging_dir/toolchain-mipsel_24kc_gcc-*_musl of the OpenWrt SDK: it has \
                lib/libc.a, lib/crt1.o, lib/crti.o, lib/crtn.o and include/), or build with the \
                feed Makefile in openwrt/",
        },
    },
];

/// The targets `cargo xtask package` builds when none is named.
pub const DEFAULT_TARGETS: &[&str] = &[
    "aarch64-unknown-linux-musl",
    "armv7-unknown-linux-musleabihf",
    "x86_64-unknown-linux-musl",
];

pub fn find(triple: &str) -> Result<&'static Target> {
    TARGETS
        .iter()
        .find(|t| t.triple == triple)
        .with_context(|| {
            format!(
                "unknown target {triple}; known: {}",
                TARGETS
                    .iter()
                    .map(|t| t.triple)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

fn env_name(triple: &str) -> String {
    triple.to_uppercase().replace('-', "_")
}

/// Where cargo puts the router build of the daemon for a target.
pub fn daemon_path(target: &Target) -> PathBuf {
    build::target_dir()
        .join(target.triple)
        .join("router")
        .join("iot-inspector")
}

/// Builds the daemon for a target with the `router` profile; returns the
/// binary's path.
pub fn build_daemon(target: &Target) -> Result<PathBuf> {
    let var = env_name(target.triple);
    let mut cmd = Command::new("cargo");
    match &target.how {
        How::Stable => {
            rustup_target(target.triple)?;
            cmd.arg("build")
                .env(format!("CARGO_TARGET_{var}_LINKER"), "rust-lld")
                .env(
                    format!("CARGO_TARGET_{var}_RUSTFLAGS"),
                    "-C link-self-contained=yes",
                );
        }
        How::BuildStd {
            debian,
            clang_flags,
            no_default_sysroot,
        } => {
            let sysroot = match std::env::var_os(format!("IOT_INSPECTOR_SYSROOT_{var}")) {
                Some(dir) => PathBuf::from(dir),
                None => match debian {
                    Some((arch, triplet)) => debian_sysroot(target.triple, arch, triplet)?,
                    None => bail!(
                        "{} cannot be built here: {no_default_sysroot}",
                        target.triple
                    ),
                },
            };
            ensure_libunwind(target.triple, &sysroot, clang_flags)?;
            let lib = sysroot.join("lib");
            let lib = lib.to_str().context("sysroot path is not UTF-8")?;
            if lib.contains(' ') {
                bail!(
                    "the sysroot path {lib} must not contain spaces (cargo splits RUSTFLAGS on them)"
                );
            }
            // Without self-contained linking rustc adds no C start files:
            // crt1.o goes first (-Z pre-link-args), crti.o/crtn.o last. Nothing
            // in a Rust binary contributes to .init, so crti+crtn side by side
            // make a valid empty _init/_fini.
            let flags = format!(
                "-C target-feature=+crt-static -C link-self-contained=no -L {lib} \
                 -Z pre-link-args={lib}/crt1.o -C link-arg={lib}/crti.o -C link-arg={lib}/crtn.o"
            );
            cmd.args(["+nightly", "build", "-Z", "build-std=std,panic_abort"])
                .env(format!("CARGO_TARGET_{var}_LINKER"), "rust-lld")
                .env(format!("CARGO_TARGET_{var}_RUSTFLAGS"), flags)
                // The outer cargo's variables would pin the stable toolchain.
                .env_remove("RUSTC")
                .env_remove("RUSTC_WRAPPER")
                .env_remove("RUSTUP_TOOLCHAIN");
        }
    }
    cmd.args([
        "--package",
        "iot-inspector",
        "--bin",
        "iot-inspector",
        "--profile",
        "router",
        "--target",
        target.triple,
    ])
    .current_dir(util::root());
    util::run(&mut cmd)?;
    let out = daemon_path(target);
    if !out.exists() {
        bail!("the build succeeded but {} is missing", out.display());
    }
    Ok(out)
}

fn rustup_target(triple: &str) -> Result<()> {
    let out = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("running rustup")?;
    if String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.trim() == triple)
    {
        return Ok(());
    }
    util::run(Command::new("rustup").args(["target", "add", triple]))
}

/// Cache of cross sysroots (kept between runs, like bpf-linker).
fn cache_dir(triple: &str) -> PathBuf {
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home)
        .join(".cache/iot-inspector/cross")
        .join(triple)
}

/// Debian's musl-dev for a foreign architecture, unpacked (not installed)
/// into the cache: `lib/` (libc.a, crt*.o) and `include/`.
fn debian_sysroot(triple: &str, arch: &str, triplet: &str) -> Result<PathBuf> {
    let dir = cache_dir(triple);
    if dir.join("lib/libc.a").exists() {
        return Ok(dir);
    }
    if !util::have("apt-get") {
        bail!(
            "building for {triple} needs Debian's musl-dev:{arch} (apt-get), or a musl sysroot in \
             IOT_INSPECTOR_SYSROOT_{}",
            env_name(triple)
        );
    }
    let download = dir.join("download");
    std::fs::create_dir_all(&download)?;
    // Let apt see the foreign architecture for these two calls only, instead
    // of `dpkg --add-architecture`, which would change the machine for good.
    let archs = [
        "-o",
        "APT::Architectures::=amd64",
        "-o",
        &format!("APT::Architectures::={arch}"),
    ];
    // Exit status ignored: a third-party source without this architecture
    // makes update fail while Debian's own index is fetched fine; the
    // download below fails clearly if it was not.
    let _ = Command::new("apt-get")
        .args(archs)
        .args(["update", "-qq"])
        .status();
    util::run(
        Command::new("apt-get")
            .args(archs)
            .args(["download", &format!("musl-dev:{arch}")])
            .current_dir(&download),
    )?;
    let deb = std::fs::read_dir(&download)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("musl-dev_") && n.ends_with(".deb"))
        })
        .context("apt-get download left no musl-dev .deb")?;
    let unpacked = dir.join("unpacked");
    let _ = std::fs::remove_dir_all(&unpacked);
    util::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked))?;
    let lib = dir.join("lib");
    let include = dir.join("include");
    std::fs::create_dir_all(&lib)?;
    copy_dir(&unpacked.join("usr/lib").join(triplet), &lib)?;
    copy_dir(&unpacked.join("usr/include").join(triplet), &include)?;
    std::fs::remove_dir_all(&unpacked)?;
    Ok(dir)
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let dest = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &dest)?;
        } else {
            std::fs::copy(entry.path(), &dest)?;
        }
    }
    Ok(())
}

/// std's unwind crate links `libunwind.a` statically on musl; rustup only
/// ships it inside `rust-std`, so build LLVM's libunwind from rust-src with
/// clang for the target (C and assembly, no C++ library needed).
fn ensure_libunwind(triple: &str, sysroot: &Path, clang_flags: &[&str]) -> Result<()> {
    let archive = sysroot.join("lib/libunwind.a");
    if archive.exists() {
        return Ok(());
    }
    for tool in ["clang", "llvm-ar"] {
        if !util::have(tool) {
            bail!("building libunwind for {triple} needs {tool} (Debian packages clang, llvm)");
        }
    }
    let out = Command::new("rustc")
        .args(["+nightly", "--print", "sysroot"])
        .env_remove("RUSTC")
        .env_remove("RUSTUP_TOOLCHAIN")
        .output()
        .context("running rustc +nightly")?;
    let rust_sysroot = PathBuf::from(String::from_utf8(out.stdout)?.trim());
    let src = rust_sysroot.join("lib/rustlib/src/rust/src/llvm-project/libunwind");
    if !src.join("src").exists() {
        bail!(
            "{} is missing: `rustup component add rust-src --toolchain nightly`",
            src.display()
        );
    }
    let resource = Command::new("clang").arg("-print-resource-dir").output()?;
    let resource = PathBuf::from(String::from_utf8(resource.stdout)?.trim()).join("include");
    let work = cache_dir(triple).join("libunwind-build");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let mut objects = Vec::new();
    for entry in std::fs::read_dir(src.join("src"))? {
        let path = entry?.path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        // The sources Rust's own build of libunwind uses on Linux (no SGX,
        // wasm or setjmp/longjmp unwinding).
        let (lang, std_flag) = if name.ends_with(".c") {
            ("c", "-std=c99")
        } else if name.ends_with(".cpp") {
            ("c++", "-std=c++17")
        } else if name.ends_with(".S") {
            ("assembler-with-cpp", "")
        } else {
            continue;
        };
        if ["Sgx", "wasm", "sjlj", "seh", "AIX"]
            .iter()
            .any(|skip| name.contains(skip))
        {
            continue;
        }
        if name == "Unwind-EHABI.cpp" && !triple.starts_with("arm") {
            continue;
        }
        let obj = work.join(format!("{name}.o"));
        let mut cmd = Command::new("clang");
        cmd.arg(format!("--target={triple}"))
            .args(clang_flags)
            .args(["-nostdinc", "-isystem"])
            .arg(&resource)
            .arg("-isystem")
            .arg(sysroot.join("include"))
            .arg("-I")
            .arg(src.join("include"))
            .args([
                "-O2",
                "-fPIC",
                "-funwind-tables",
                "-fvisibility=hidden",
                "-fno-exceptions",
                "-D_LIBUNWIND_IS_NATIVE_ONLY",
                "-D_LIBUNWIND_DISABLE_VISIBILITY_ANNOTATIONS",
                "-DNDEBUG",
                "-x",
                lang,
            ]);
        if !std_flag.is_empty() {
            cmd.arg(std_flag);
        }
        if lang == "c++" {
            cmd.args(["-nostdinc++", "-fno-rtti"]);
        }
        cmd.arg("-c").arg(&path).arg("-o").arg(&obj);
        util::run(&mut cmd)?;
        objects.push(obj);
    }
    util::run(
        Command::new("llvm-ar")
            .arg("rcs")
            .arg(&archive)
            .args(&objects),
    )?;
    Ok(())
}
