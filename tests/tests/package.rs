//! The OpenWrt packages, checked the way a router would see them.
//!
//! 1. Every built .ipk in `target/packages/` is unpacked with `tar` (an ipk
//!    is a gzipped tar, not Debian's `ar`) and its layout, control fields,
//!    file modes and owners, conffiles, the binary's architecture (readelf)
//!    and the shell syntax of its scripts (`sh -n`, busybox `ash -n`) are
//!    checked.
//! 2. The x86_64 packages are installed into a staging root (files + the
//!    `/usr/lib/opkg/info` entries opkg writes) and their postinst/prerm and
//!    the init script run there under busybox in a chroot, inside a network
//!    namespace with a `br-lan` bridge. Only OpenWrt's own shell libraries
//!    (`/lib/functions.sh`, `/lib/functions/procd.sh`, `/etc/rc.common`) and
//!    two of its tools (`uci`, rpcd's init script) are stand-ins: they record
//!    what was asked and really start the command line procd would run.
//!
//! Packages are built first (`cargo xtask package --target
//! x86_64-unknown-linux-musl`) when none is there. The staging part needs
//! root (it runs in `cargo xtask test`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn packages_dir() -> PathBuf {
    root().join("target/packages")
}

/// opkg architecture → what `readelf -h` reports for the daemon.
const ARCHES: &[(&str, &str, &str)] = &[
    ("aarch64_generic", "ELF64", "AArch64"),
    ("arm_cortex-a7_neon-vfpv4", "ELF32", "ARM"),
    ("x86_64", "ELF64", "Advanced Micro Devices X86-64"),
    ("mipsel_24kc", "ELF32", "MIPS R3000"),
];

fn run(cmd: &mut Command) -> Output {
    let shown = format!("{cmd:?}");
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    assert!(
        out.status.success(),
        "{shown} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&run(cmd).stdout).into_owned()
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The built packages, building the x86_64 one first if it is missing.
fn packages() -> Vec<PathBuf> {
    let list = || -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(packages_dir())
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "ipk"))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    let has_x86 = |v: &[PathBuf]| {
        v.iter()
            .any(|p| p.to_string_lossy().ends_with("_x86_64.ipk"))
    };
    let mut v = list();
    if !has_x86(&v) {
        eprintln!(
            "no x86_64 package in {}: building it",
            packages_dir().display()
        );
        run(Command::new(env!("CARGO"))
            .args(["xtask", "package", "--target", "x86_64-unknown-linux-musl"])
            .current_dir(root()));
        v = list();
    }
    assert!(has_x86(&v), "cargo xtask package wrote no x86_64 package");
    v
}

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        // Tests run in parallel and unpack the same packages: a counter
        // keeps their directories apart.
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("iipk{}-{n}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One package, unpacked.
struct Unpacked {
    name: String,
    version: String,
    arch: String,
    fields: BTreeMap<String, String>,
    /// control.tar.gz, extracted.
    control: PathBuf,
    /// data.tar.gz, extracted.
    data: PathBuf,
    /// data.tar.gz's entries: path (without `./`) → (mode string, owner).
    listing: BTreeMap<String, (String, String)>,
    control_listing: BTreeMap<String, (String, String)>,
    _dir: TempDir,
}

/// `tar -tv` entries: path → (`-rwxr-xr-x`, `0/0`).
fn listing(archive: &Path) -> BTreeMap<String, (String, String)> {
    let text = stdout(
        Command::new("tar")
            .arg("--numeric-owner")
            .arg("-tvzf")
            .arg(archive),
    );
    text.lines()
        .map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            assert!(cols.len() >= 6, "odd tar listing line: {line}");
            let path = cols[5]
                .trim_start_matches("./")
                .trim_end_matches('/')
                .to_string();
            (path, (cols[0].to_string(), cols[1].to_string()))
        })
        .collect()
}

fn unpack(ipk: &Path) -> Unpacked {
    let file = ipk.file_name().unwrap().to_string_lossy().into_owned();
    let stem = file.strip_suffix(".ipk").unwrap();
    let parts: Vec<&str> = stem.splitn(3, '_').collect();
    assert_eq!(parts.len(), 3, "{file} is not name_version_arch.ipk");
    let dir = TempDir::new(&format!("unpack-{stem}"));

    // The outer archive: exactly three members, as ipkg-build writes them.
    let outer = listing(ipk);
    let members: Vec<&str> = outer.keys().map(|s| s.as_str()).collect();
    assert_eq!(
        members,
        ["control.tar.gz", "data.tar.gz", "debian-binary"],
        "{file}: members"
    );
    for (path, (_, owner)) in &outer {
        assert_eq!(owner, "0/0", "{file}: {path} not owned by root");
    }
    run(Command::new("tar")
        .arg("-xzf")
        .arg(ipk)
        .arg("-C")
        .arg(&dir.0));
    assert_eq!(
        std::fs::read(dir.0.join("debian-binary")).unwrap(),
        b"2.0\n",
        "{file}: debian-binary"
    );
    let control = dir.0.join("control");
    let data = dir.0.join("data");
    for (sub, archive) in [(&control, "control.tar.gz"), (&data, "data.tar.gz")] {
        std::fs::create_dir_all(sub).unwrap();
        run(Command::new("tar")
            .args(["--numeric-owner", "-xpzf"])
            .arg(dir.0.join(archive))
            .arg("-C")
            .arg(sub));
    }
    let text = std::fs::read_to_string(control.join("control")).unwrap();
    let mut fields = BTreeMap::new();
    let mut last = String::new();
    for line in text.lines() {
        if let Some(cont) = line.strip_prefix(' ') {
            let v: &mut String = fields.get_mut(&last).expect("continuation first");
            v.push('\n');
            v.push_str(cont);
        } else {
            let (k, v) = line
                .split_once(": ")
                .unwrap_or_else(|| panic!("{file}: bad control line {line:?}"));
            last = k.to_string();
            fields.insert(k.to_string(), v.to_string());
        }
    }
    Unpacked {
        name: parts[0].to_string(),
        version: parts[1].to_string(),
        arch: parts[2].to_string(),
        fields,
        listing: listing(&dir.0.join("data.tar.gz")),
        control_listing: listing(&dir.0.join("control.tar.gz")),
        control,
        data,
        _dir: dir,
    }
}

fn mode_of<'a>(p: &'a Unpacked, path: &str) -> &'a str {
    &p.listing
        .get(path)
        .unwrap_or_else(|| panic!("{}: no {path} in data.tar.gz", p.name))
        .0
}

fn check_scripts_parse(paths: &[PathBuf]) {
    for path in paths {
        run(Command::new("sh").arg("-n").arg(path));
        run(Command::new("busybox").args(["sh", "-n"]).arg(path));
    }
}

fn check_common(p: &Unpacked) {
    let f = &p.fields;
    for key in [
        "Package",
        "Version",
        "Depends",
        "Source",
        "License",
        "Section",
        "Architecture",
        "Installed-Size",
        "Description",
        "Maintainer",
    ] {
        assert!(
            f.get(key).is_some_and(|v| !v.trim().is_empty()),
            "{}: control lacks {key}",
            p.name
        );
    }
    assert_eq!(f["Package"], p.name);
    assert_eq!(f["Version"], p.version);
    assert_eq!(f["Architecture"], p.arch);
    // Installed-Size is the sum of the data files' sizes.
    let mut total = 0u64;
    for (path, (mode, owner)) in &p.listing {
        assert_eq!(owner, "0/0", "{}: {path} owned by {owner}", p.name);
        if mode.starts_with('-') {
            total += std::fs::metadata(p.data.join(path)).unwrap().len();
        } else {
            assert!(mode.starts_with('d'), "{}: {path} is {mode}", p.name);
        }
    }
    assert_eq!(
        f["Installed-Size"],
        total.to_string(),
        "{}: Installed-Size",
        p.name
    );
    for (path, (_, owner)) in &p.control_listing {
        assert_eq!(owner, "0/0", "{}: control {path} owned by {owner}", p.name);
    }
    // postinst/prerm: the OpenWrt wrappers around default_postinst/prerm.
    for (script, call) in [
        ("postinst", "default_postinst $0 $@"),
        ("prerm", "default_prerm $0 $@"),
    ] {
        assert_eq!(
            p.control_listing[script].0, "-rwxr-xr-x",
            "{}: {script}",
            p.name
        );
        let text = std::fs::read_to_string(p.control.join(script)).unwrap();
        assert!(text.starts_with("#!/bin/sh\n"), "{}: {script}", p.name);
        assert!(text.contains(". ${IPKG_INSTROOT}/lib/functions.sh"));
        assert!(text.contains(call), "{}: {script} lacks {call}", p.name);
    }
    let mut scripts: Vec<PathBuf> = ["postinst", "prerm", "postinst-pkg"]
        .iter()
        .map(|s| p.control.join(s))
        .filter(|s| s.exists())
        .collect();
    for dir in ["etc/init.d", "etc/uci-defaults"] {
        if let Ok(d) = std::fs::read_dir(p.data.join(dir)) {
            scripts.extend(d.filter_map(|e| e.ok()).map(|e| e.path()));
        }
    }
    check_scripts_parse(&scripts);
}

fn check_daemon(p: &Unpacked) {
    let depends: Vec<&str> = p.fields["Depends"].split(", ").collect();
    for needed in [
        "libc",
        "kmod-sched-core",
        "kmod-sched-bpf",
        "kmod-nft-core",
        "nftables-json",
    ] {
        assert!(
            depends.contains(&needed),
            "Depends lacks {needed}: {depends:?}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(p.control.join("conffiles")).unwrap(),
        "/etc/config/iot-inspector\n"
    );
    assert_eq!(mode_of(p, "usr/sbin/iot-inspector"), "-rwxr-xr-x");
    assert_eq!(mode_of(p, "etc/init.d/iot-inspector"), "-rwxr-xr-x");
    assert_eq!(
        mode_of(p, "etc/uci-defaults/90-iot-inspector"),
        "-rwxr-xr-x"
    );
    assert!(
        ["-rw-------", "-rw-r--r--"].contains(&mode_of(p, "etc/config/iot-inspector")),
        "config mode {}",
        mode_of(p, "etc/config/iot-inspector")
    );
    assert_eq!(
        mode_of(p, "usr/lib/iot-inspector/iot-inspector.bpf.o"),
        "-rw-r--r--"
    );

    // The binary is for the package's architecture, and static (the
    // router's musl version does not matter).
    let (_, class, machine) = ARCHES
        .iter()
        .find(|(a, _, _)| *a == p.arch)
        .unwrap_or_else(|| panic!("unknown opkg arch {}", p.arch));
    let bin = p.data.join("usr/sbin/iot-inspector");
    let header = stdout(Command::new("readelf").arg("-h").arg(&bin));
    let field = |name: &str| {
        header
            .lines()
            .find_map(|l| l.trim().strip_prefix(name).map(|v| v.trim().to_string()))
            .unwrap_or_default()
    };
    assert_eq!(field("Class:"), *class, "{}: ELF class", p.arch);
    assert_eq!(field("Machine:"), *machine, "{}: ELF machine", p.arch);
    assert!(field("Data:").contains("little endian"));
    let file = stdout(Command::new("file").arg(&bin));
    assert!(
        file.contains("statically linked") || file.contains("static-pie linked"),
        "{}: not static: {file}",
        p.arch
    );
    let bpf = stdout(
        Command::new("readelf")
            .arg("-h")
            .arg(p.data.join("usr/lib/iot-inspector/iot-inspector.bpf.o")),
    );
    assert!(bpf.contains("Linux BPF"), "eBPF object: {bpf}");

    // The init script is a procd service with the reload trigger.
    let init = std::fs::read_to_string(p.data.join("etc/init.d/iot-inspector")).unwrap();
    assert!(init.starts_with("#!/bin/sh /etc/rc.common\n"));
    for needle in [
        "USE_PROCD=1",
        "START=",
        "STOP=",
        "procd_add_reload_trigger \"iot-inspector\"",
    ] {
        assert!(init.contains(needle), "init script lacks {needle}");
    }
    // Every option the daemon documents is in the default config.
    let config = std::fs::read_to_string(p.data.join("etc/config/iot-inspector")).unwrap();
    for option in [
        "enabled",
        "window",
        "database",
        "socket",
        "flow_table_size",
        "retention_raw",
        "retention_minute",
        "retention_hour",
        "bpf_object",
        "dashboard",
        "token",
        "log_level",
    ] {
        assert!(
            config.contains(&format!("\toption {option} '")),
            "default config lacks option {option}"
        );
    }
    assert!(config.contains("\tlist lan 'br-lan'"));
    assert!(config.contains("option bpf_object '/usr/lib/iot-inspector/iot-inspector.bpf.o'"));
}

fn check_luci(p: &Unpacked) {
    assert_eq!(p.arch, "all");
    let depends = &p.fields["Depends"];
    for needed in ["luci-base", "rpcd", "iot-inspector"] {
        assert!(
            depends.split(", ").any(|d| d == needed),
            "Depends: {depends}"
        );
    }
    let pkg = std::fs::read_to_string(p.control.join("postinst-pkg")).unwrap();
    assert!(pkg.contains("/tmp/luci-indexcache"));
    assert!(pkg.contains("/tmp/luci-modulecache/"));
    assert!(pkg.contains("rpcd"));
    for (path, (mode, _)) in &p.listing {
        if mode.starts_with('-') {
            assert!(
                path.starts_with("www/") || !path.starts_with("www"),
                "LuCI file {path}"
            );
        }
    }
}

#[test]
fn packages_unpack_and_check() {
    let all = packages();
    let mut arches = Vec::new();
    let mut luci = false;
    for ipk in &all {
        let p = unpack(ipk);
        check_common(&p);
        match p.name.as_str() {
            "iot-inspector" => {
                check_daemon(&p);
                arches.push(p.arch.clone());
            }
            "luci-app-iot-inspector" => {
                check_luci(&p);
                luci = true;
            }
            other => panic!("unexpected package {other}"),
        }
    }
    assert!(luci, "no luci-app-iot-inspector package");
    assert!(arches.iter().any(|a| a == "x86_64"));
    eprintln!("checked {} packages (daemon for {arches:?})", all.len());
}

// ---------------------------------------------------------------------------
// Running the scripts in a staging root.

/// OpenWrt's /lib/functions.sh, reduced to what packages' scripts use:
/// default_postinst/default_prerm follow base-files' versions (uci-defaults
/// of the package, postinst-pkg, enable + start of its init scripts; on
/// removal disable + stop), config_load/config_get_bool read the UCI file.
const FUNCTIONS_SH: &str = r#"
config_load() { CONFIG_FILE="/etc/config/$1"; echo "config_load $1" >> /tmp/calls.log; }
config_get() {
	local var="$1" section="$2" option="$3" default="$4" val
	val=$(sed -n "/^config [^ ]* '$section'/,/^config /s/^[[:space:]]*option $option '\(.*\)'/\1/p" "$CONFIG_FILE" | head -n 1)
	eval "$var=\"\${val:-\$default}\""
}
config_get_bool() {
	local _v
	config_get _v "$2" "$3" "$4"
	case "$_v" in 1|on|true|yes|enabled) _v=1 ;; *) _v=0 ;; esac
	eval "$1=$_v"
}
default_postinst() {
	local root="${IPKG_INSTROOT}"
	local pkgname="$(basename ${1%.*})"
	local filelist="$root/usr/lib/opkg/info/${pkgname}.list"
	local ret=0
	echo "default_postinst $pkgname" >> /tmp/calls.log
	if [ -z "$root" ]; then
		for i in $(grep -s "^/etc/uci-defaults/" "$filelist"); do
			( [ -f "$i" ] && cd "$(dirname $i)" && . "$i" ) && rm -f "$i"
		done
		rm -f /tmp/luci-indexcache.*
	fi
	if [ -f "$root/usr/lib/opkg/info/${pkgname}.postinst-pkg" ]; then
		( . "$root/usr/lib/opkg/info/${pkgname}.postinst-pkg" )
		ret=$?
	fi
	for i in $(grep -s "^/etc/init.d/" "$filelist"); do
		if [ -n "$root" ]; then
			/bin/sh "$root/etc/rc.common" "$root$i" enable
		else
			[ "$PKG_UPGRADE" = "1" ] || "$i" enable
			"$i" start
		fi
	done
	return $ret
}
default_prerm() {
	local root="${IPKG_INSTROOT}"
	local pkgname="$(basename ${1%.*})"
	local filelist="$root/usr/lib/opkg/info/${pkgname}.list"
	echo "default_prerm $pkgname" >> /tmp/calls.log
	for i in $(grep -s "^/etc/init.d/" "$filelist"); do
		"$i" disable
		"$i" stop
	done
	return 0
}
"#;

/// procd's shell API, recording each call; closing an instance starts its
/// command in the background like procd would (pid in /var/run).
const PROCD_SH: &str = r#"
procd_log() { echo "procd $*" >> /tmp/procd.log; }
procd_open_service() { PROCD_SERVICE="$1"; procd_log open_service "$@"; }
procd_close_service() {
	type service_triggers >/dev/null 2>&1 && service_triggers
	procd_log close_service
}
procd_open_instance() { PROCD_CMD=""; procd_log open_instance "$@"; }
procd_set_param() {
	procd_log set_param "$@"
	if [ "$1" = command ]; then
		shift
		PROCD_CMD=""
		for a in "$@"; do PROCD_CMD="$PROCD_CMD '$a'"; done
	fi
}
procd_append_param() { procd_log append_param "$@"; }
procd_close_instance() {
	procd_log close_instance
	[ -n "$PROCD_CMD" ] || return 0
	local pidfile="/var/run/procd-$PROCD_SERVICE.pid"
	if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
		procd_log already_running
		return 0
	fi
	# exec in a subshell: the pid is the daemon's own, and no shell stays
	# behind holding the caller's stdout/stderr open.
	( exec </dev/null >>/tmp/daemon.log 2>&1; eval "exec $PROCD_CMD" ) &
	echo $! > "$pidfile"
	procd_log started $!
}
procd_add_reload_trigger() { procd_log reload_trigger "$@"; }
procd_send_signal() {
	procd_log send_signal "$@"
	local sig="${3:-HUP}"
	kill -"$sig" "$(cat "/var/run/procd-$1.pid")"
}
procd_kill() {
	procd_log kill "$@"
	local pidfile="/var/run/procd-$1.pid" pid n=0
	[ -f "$pidfile" ] || return 0
	pid="$(cat "$pidfile")"
	kill -TERM "$pid" 2>/dev/null
	while [ $n -lt 50 ] && kill -0 "$pid" 2>/dev/null && ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null; do
		sleep 0.2; n=$((n + 1))
	done
	rm -f "$pidfile"
}
"#;

/// /etc/rc.common for procd services: `/bin/sh /etc/rc.common SCRIPT ACTION`.
const RC_COMMON: &str = r#"
initscript="$1"
action="${2:-help}"
shift 2
. /lib/functions.sh
. /lib/functions/procd.sh
. "$initscript"
name="$(basename "$initscript")"
mkdir -p /etc/rc.d
case "$action" in
	enable)
		ln -sf "../init.d/$name" "/etc/rc.d/S${START}${name}"
		ln -sf "../init.d/$name" "/etc/rc.d/K${STOP}${name}" ;;
	disable) rm -f /etc/rc.d/S??"$name" /etc/rc.d/K??"$name" ;;
	enabled) [ -e "/etc/rc.d/S${START}${name}" ] ;;
	start)
		procd_open_service "$name" "$initscript"
		start_service "$@"
		procd_close_service ;;
	stop)
		type stop_service >/dev/null 2>&1 && stop_service "$@"
		procd_kill "$name" ;;
	reload)
		if type reload_service >/dev/null 2>&1; then reload_service "$@"; else "$0" "$initscript" start; fi ;;
	*) echo "rc.common stand-in: $action" >&2; exit 1 ;;
esac
"#;

/// uci, enough for the uci-defaults script: `get` answers from the file,
/// everything is logged.
const UCI: &str = r#"#!/bin/sh
echo "uci $*" >> /tmp/uci.log
[ "$1" = "-q" ] && shift
case "$1" in
	get)
		pkg="${2%%.*}"; section="${2#*.}"
		grep -q "^config [^ ]* '$section'" "/etc/config/$pkg" 2>/dev/null && echo "$pkg" ;;
	batch) cat >> /tmp/uci.log ;;
	commit) ;;
	*) exit 1 ;;
esac
"#;

/// A network namespace for the daemon, deleted on drop.
struct Netns(String);

impl Netns {
    fn new() -> Netns {
        let name = format!("iipk{}", std::process::id());
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(std::process::Stdio::null())
            .status();
        run(Command::new("ip").args(["netns", "add", &name]));
        let ns = Netns(name);
        for args in [
            vec!["link", "set", "lo", "up"],
            vec!["link", "add", "br-lan", "type", "bridge"],
            vec![
                "link", "add", "lan1", "type", "veth", "peer", "name", "lan1p",
            ],
            vec!["link", "set", "lan1", "master", "br-lan"],
            vec!["addr", "add", "192.0.2.1/24", "dev", "br-lan"],
            vec!["link", "set", "lan1", "up"],
            vec!["link", "set", "br-lan", "up"],
        ] {
            run(Command::new("ip").arg("-n").arg(&ns.0).args(args));
        }
        ns
    }

    /// A command run inside the namespace, chrooted into `root`, with proc,
    /// sys and dev mounted there (in the private mount namespace `ip netns exec`
    /// makes, so nothing shows outside).
    fn chroot(&self, root: &Path, script: &str) -> Command {
        let r = root.display();
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.0, "sh", "-c"])
            .arg(format!(
                "mount -t proc proc {r}/proc && mount --rbind /sys {r}/sys && \
             mount --rbind /dev {r}/dev && \
             exec chroot {r} /bin/sh -c '{script}'"
            ));
        cmd.env_clear().env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
        cmd
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Kills a started daemon if the test ends early.
struct Daemon(Option<i32>);

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            // SAFETY: plain kill(2) on a pid this test started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map(|s| {
            !s.lines()
                .any(|l| l.starts_with("State:") && l.contains('Z'))
        })
        .unwrap_or(false)
}

/// What opkg does before running postinst: unpack the data, keep the
/// control files and the file list under /usr/lib/opkg/info.
fn install(p: &Unpacked, root: &Path) {
    let archive = p._dir.0.join("data.tar.gz");
    run(Command::new("tar")
        .args(["--numeric-owner", "-xpzf"])
        .arg(&archive)
        .arg("-C")
        .arg(root));
    let info = root.join("usr/lib/opkg/info");
    std::fs::create_dir_all(&info).unwrap();
    for entry in std::fs::read_dir(&p.control).unwrap() {
        let entry = entry.unwrap();
        let dest = info.join(format!(
            "{}.{}",
            p.name,
            entry.file_name().to_string_lossy()
        ));
        std::fs::copy(entry.path(), dest).unwrap();
    }
    let files: String = p
        .listing
        .iter()
        .filter(|(_, (mode, _))| mode.starts_with('-'))
        .map(|(path, _)| format!("/{path}\n"))
        .collect();
    std::fs::write(info.join(format!("{}.list", p.name)), files).unwrap();
}

fn write_exec(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A root with busybox (and the libraries it links) and the stand-ins.
fn staging_root(dir: &Path) {
    for sub in [
        "bin",
        "sbin",
        "etc/config",
        "lib/functions",
        "tmp",
        "var/run",
        "proc",
        "sys",
        "dev",
    ] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let busybox = stdout(Command::new("sh").args(["-c", "command -v busybox"]));
    let busybox = busybox.trim();
    std::fs::copy(busybox, dir.join("bin/busybox")).unwrap();
    // Debian's busybox is dynamically linked: bring its libraries along.
    for line in stdout(Command::new("ldd").arg(busybox)).lines() {
        let lib = line
            .split_whitespace()
            .find(|w| w.starts_with('/'))
            .map(PathBuf::from);
        if let Some(lib) = lib {
            let dest = dir.join(lib.strip_prefix("/").unwrap());
            std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
            std::fs::copy(&lib, dest).unwrap();
        }
    }
    run(Command::new("chroot")
        .arg(dir)
        .args(["/bin/busybox", "--install", "-s", "/bin"]));
    std::fs::write(dir.join("lib/functions.sh"), FUNCTIONS_SH).unwrap();
    std::fs::write(dir.join("lib/functions/procd.sh"), PROCD_SH).unwrap();
    std::fs::write(dir.join("etc/rc.common"), RC_COMMON).unwrap();
    write_exec(&dir.join("sbin/uci"), UCI);
    write_exec(
        &dir.join("etc/init.d/rpcd"),
        "#!/bin/sh\necho \"rpcd $*\" >> /tmp/rpcd.log\n",
    );
}

fn read(root: &Path, path: &str) -> String {
    std::fs::read_to_string(root.join(path)).unwrap_or_default()
}

#[test]
fn scripts_install_start_and_remove_in_staging_root() {
    if !is_root() {
        eprintln!("SKIPPED: running the package scripts in a staging root needs root");
        return;
    }
    let all = packages();
    let ipk = |name: &str| {
        all.iter()
            .find(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(&format!("{name}_"))
                    && (name != "iot-inspector" || p.to_string_lossy().ends_with("_x86_64.ipk"))
            })
            .unwrap_or_else(|| panic!("no {name} package"))
    };
    let daemon_pkg = unpack(ipk("iot-inspector"));
    let luci_pkg = unpack(ipk("luci-app-iot-inspector"));
    let stage = TempDir::new("root");
    let root = &stage.0;
    staging_root(root);
    install(&daemon_pkg, root);
    let netns = Netns::new();
    let mut daemon = Daemon(None);

    // The binary runs on this kernel and says what it is.
    let out = run(netns
        .chroot(root, "/usr/sbin/iot-inspector --version")
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"));
    let version = String::from_utf8_lossy(&out.stdout);
    assert!(
        version.contains("iot-inspector") && version.contains(env!("CARGO_PKG_VERSION")),
        "--version said {version:?}"
    );

    // postinst as opkg runs it on a router.
    run(&mut netns.chroot(
        root,
        "/bin/sh /usr/lib/opkg/info/iot-inspector.postinst configure",
    ));
    let calls = read(root, "tmp/calls.log");
    assert!(calls.contains("default_postinst iot-inspector"), "{calls}");
    // uci-defaults ran once and was removed, like on first boot.
    assert!(!root.join("etc/uci-defaults/90-iot-inspector").exists());
    let uci = read(root, "tmp/uci.log");
    assert!(
        uci.contains("uci -q get iot-inspector.main"),
        "uci calls: {uci:?}"
    );
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(root.join("etc/config/iot-inspector"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Enabled (rc.d links with the script's priorities) and started.
    assert!(
        std::fs::symlink_metadata(root.join("etc/rc.d/S95iot-inspector")).is_ok(),
        "not enabled"
    );
    assert!(std::fs::symlink_metadata(root.join("etc/rc.d/K05iot-inspector")).is_ok());
    let procd = read(root, "tmp/procd.log");
    assert!(
        procd.contains(
            "set_param command /usr/sbin/iot-inspector run --config /etc/config/iot-inspector"
        ),
        "{procd}"
    );
    assert!(procd.contains("set_param respawn"), "{procd}");
    assert!(procd.contains("set_param stdout 1") && procd.contains("set_param stderr 1"));
    assert!(procd.contains("reload_trigger iot-inspector"), "{procd}");
    let pid: i32 = read(root, "var/run/procd-iot-inspector.pid")
        .trim()
        .parse()
        .expect("procd stand-in recorded no pid");
    daemon.0 = Some(pid);

    // Once the daemon has `run`, it must still be up after 2 s with its
    // socket; until then (lead's work in progress) only --version counts.
    let has_run = netns
        .chroot(root, "/usr/sbin/iot-inspector run --help >/dev/null 2>&1")
        .status()
        .is_ok_and(|s| s.success());
    if has_run {
        std::thread::sleep(Duration::from_secs(2));
        assert!(
            alive(pid),
            "the daemon exited within 2 s:\n{}",
            read(root, "tmp/daemon.log")
        );
        let socket = root.join("var/run/iot-inspector.sock");
        let deadline = Instant::now() + Duration::from_secs(5);
        while !socket.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(
            socket.exists(),
            "no socket at /var/run/iot-inspector.sock:\n{}",
            read(root, "tmp/daemon.log")
        );
        // A UCI change reloads: SIGHUP, and the daemon keeps running.
        run(&mut netns.chroot(root, "/etc/init.d/iot-inspector reload"));
        assert!(read(root, "tmp/procd.log").contains("send_signal iot-inspector * HUP"));
        std::thread::sleep(Duration::from_millis(500));
        assert!(
            alive(pid),
            "the daemon died on SIGHUP:\n{}",
            read(root, "tmp/daemon.log")
        );
    } else {
        eprintln!(
            "NOTE: `iot-inspector run` is not implemented yet; checked --version and the \
             command procd was given, not the running daemon"
        );
    }

    // The LuCI app: caches dropped, rpcd reloaded.
    install(&luci_pkg, root);
    std::fs::write(root.join("tmp/luci-indexcache.json"), "{}").unwrap();
    std::fs::create_dir_all(root.join("tmp/luci-modulecache")).unwrap();
    std::fs::write(root.join("tmp/luci-modulecache/x.lua"), "").unwrap();
    run(&mut netns.chroot(
        root,
        "/bin/sh /usr/lib/opkg/info/luci-app-iot-inspector.postinst configure",
    ));
    assert!(!root.join("tmp/luci-indexcache.json").exists());
    assert!(!root.join("tmp/luci-modulecache").exists());
    assert!(read(root, "tmp/rpcd.log").contains("rpcd reload"));

    // prerm: stopped (SIGTERM) and disabled.
    run(&mut netns.chroot(
        root,
        "/bin/sh /usr/lib/opkg/info/iot-inspector.prerm remove",
    ));
    assert!(read(root, "tmp/calls.log").contains("default_prerm iot-inspector"));
    assert!(read(root, "tmp/procd.log").contains("procd kill iot-inspector"));
    assert!(std::fs::symlink_metadata(root.join("etc/rc.d/S95iot-inspector")).is_err());
    assert!(std::fs::symlink_metadata(root.join("etc/rc.d/K05iot-inspector")).is_err());
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!alive(pid), "the daemon survived prerm's stop");
    daemon.0 = None;
}
