//! A throw-away qemu VM running Debian's kernel, for what this machine's
//! kernel cannot do (it has no `nf_flow_table`, so no software flow offload).
//!
//! The VM has no disk and no network card. Its userland is the host's own
//! root filesystem, shared read-only over 9p with a tmpfs overlay on top, so
//! the host-built daemon, the eBPF object, nft, iperf3 and conntrack all run
//! in it unchanged. A small initramfs (Debian's static busybox and the few
//! Debian modules needed to reach 9p) mounts that root, bind-mounts Debian's
//! module tree at `/lib/modules/<version>`, runs a shell script the caller
//! passes in, with a second 9p share — a host temp directory — as its
//! writable output directory, and powers off.
//!
//! `cargo xtask setup` downloads and unpacks the kernels of [`Kernel`] and
//! busybox into [`cache_dir`]; the tests need no network.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Where `cargo xtask setup` unpacks Debian's kernels and static busybox
/// (`IOT_INSPECTOR_VM_DIR` overrides it). Layout: `kernels/<name>/` (one
/// per [`Kernel`], named by [`Kernel::name`]) is `dpkg-deb -x` of that
/// kernel's `linux-image-<version>` with the module directories the VM never
/// loads from pruned, a `modules.dep` made by `depmod`, and a `version` file
/// naming the version (written last: it says the unpacking finished);
/// `busybox/busybox` is the static binary from `busybox-static`.
pub fn cache_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("IOT_INSPECTOR_VM_DIR") {
        return p.into();
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache/iot-inspector/vm")
}

/// The Debian kernels the VM boots. OpenWrt ships 5.15 (23.05) and 6.6
/// (24.10); Debian ships neither, so these bracket them: 5.10 and 6.1
/// around 5.15, 6.1 and 6.12 around 6.6. Below 6.6 the daemon attaches
/// with netlink cls_bpf filters, from 6.6 on with TCX links.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// bullseye's `linux-image-amd64` (5.10): just below OpenWrt 23.05's
    /// 5.15.
    Bullseye,
    /// bookworm's `linux-image-amd64` (6.1): between 5.15 and 6.6, with
    /// netlink cls_bpf like 5.15.
    Bookworm,
    /// bookworm's `linux-image-6.12-amd64` (6.12, from bookworm-security):
    /// above OpenWrt 24.10's 6.6, with TCX like 6.6.
    Bookworm612,
}

impl Kernel {
    pub const ALL: [Kernel; 3] = [Kernel::Bullseye, Kernel::Bookworm, Kernel::Bookworm612];

    /// Its directory under `kernels/`, and how tests name it.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Bullseye => "bullseye-5.10",
            Kernel::Bookworm => "bookworm-6.1",
            Kernel::Bookworm612 => "bookworm-6.12",
        }
    }

    /// The Debian release whose archive has it.
    pub fn release(self) -> &'static str {
        match self {
            Kernel::Bullseye => "bullseye",
            Kernel::Bookworm | Kernel::Bookworm612 => "bookworm",
        }
    }

    /// The meta package that depends on the versioned
    /// `linux-image-<version>` to download.
    pub fn meta_package(self) -> &'static str {
        match self {
            Kernel::Bullseye | Kernel::Bookworm => "linux-image-amd64",
            Kernel::Bookworm612 => "linux-image-6.12-amd64",
        }
    }

    /// Major and minor version (the series) every version of it has.
    pub fn series(self) -> (u32, u32) {
        match self {
            Kernel::Bullseye => (5, 10),
            Kernel::Bookworm => (6, 1),
            Kernel::Bookworm612 => (6, 12),
        }
    }

    /// Whether the daemon attaches with TCX links there (6.6 and later) and
    /// not with netlink cls_bpf filters.
    pub fn has_tcx(self) -> bool {
        self.series() >= (6, 6)
    }

    /// Where `cargo xtask setup` unpacks it.
    pub fn dir(self) -> PathBuf {
        cache_dir().join("kernels").join(self.name())
    }

    /// Whether the test run can go on without it: bullseye is past its
    /// LTS and will leave deb.debian.org, and its kernel is only checked to
    /// be refused. Setup then records why in [`Kernel::unavailable_note`].
    pub fn optional(self) -> bool {
        self == Kernel::Bullseye
    }

    /// Where setup wrote why an optional kernel could not be downloaded.
    pub fn unavailable_note(self) -> PathBuf {
        cache_dir()
            .join("kernels")
            .join(format!("{}.unavailable", self.name()))
    }

    /// Whether `version` (as `uname -r` prints it) belongs to this series.
    pub fn matches(self, version: &str) -> bool {
        let (major, minor) = self.series();
        let mut parts = version.split(['.', '-']);
        parts.next() == Some(major.to_string().as_str())
            && parts.next() == Some(minor.to_string().as_str())
    }
}

/// Debian's kernel and what the initramfs is made of.
#[derive(Clone, Debug)]
pub struct Image {
    pub kernel: Kernel,
    pub version: String,
    pub vmlinuz: PathBuf,
    /// `lib/modules/<version>` (with modules.dep).
    pub modules: PathBuf,
    pub busybox: PathBuf,
}

/// Modules the initramfs loads (with their dependencies) to reach the 9p
/// root and build the overlay; everything else is loaded later from the
/// bind-mounted module tree with the host's modprobe.
pub const BOOT_MODULES: &[&str] = &["virtio_pci", "9pnet_virtio", "9p", "overlay"];

impl Image {
    /// The unpacked `kernel`, or an error saying to run `cargo xtask setup`.
    pub fn find(kernel: Kernel) -> Result<Image> {
        let dir = kernel.dir();
        let missing = |what: &Path| {
            anyhow::anyhow!(
                "{} is missing: run `cargo xtask setup` (as root) to download Debian's kernel \
                 ({} of {}) and busybox-static into {}",
                what.display(),
                kernel.meta_package(),
                kernel.release(),
                cache_dir().display()
            )
        };
        let vfile = dir.join("version");
        let version = std::fs::read_to_string(&vfile)
            .map_err(|_| missing(&vfile))?
            .trim()
            .to_string();
        if !kernel.matches(&version) {
            bail!(
                "{} holds kernel {version}, not the {:?} series of {}: remove it and run `cargo xtask setup`",
                dir.display(),
                kernel.series(),
                kernel.name()
            );
        }
        let img = Image {
            kernel,
            vmlinuz: dir.join(format!("boot/vmlinuz-{version}")),
            modules: dir.join(format!("lib/modules/{version}")),
            busybox: cache_dir().join("busybox/busybox"),
            version,
        };
        for p in [&img.vmlinuz, &img.modules.join("modules.dep"), &img.busybox] {
            if !p.exists() {
                return Err(missing(p));
            }
        }
        Ok(img)
    }

    /// The module files to insmod for `names`, dependencies first
    /// (from modules.dep); those built into the kernel are left out.
    pub fn module_load_order(&self, names: &[&str]) -> Result<Vec<PathBuf>> {
        module_load_order(&self.modules, names)
    }
}

/// The module files under `modules` (a `lib/modules/<version>` with
/// modules.dep) to insmod for `names`, dependencies first.
pub fn module_load_order(modules: &Path, names: &[&str]) -> Result<Vec<PathBuf>> {
    let dep = std::fs::read_to_string(modules.join("modules.dep"))?;
    // modules.dep: "kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko kernel/fs/netfs/netfs.ko ..."
    let mut deps: HashMap<String, Vec<String>> = HashMap::new();
    let mut by_name: HashMap<String, String> = HashMap::new();
    for line in dep.lines() {
        let Some((m, rest)) = line.split_once(':') else {
            continue;
        };
        deps.insert(
            m.to_string(),
            rest.split_whitespace().map(str::to_string).collect(),
        );
        by_name.insert(module_name(m), m.to_string());
    }
    fn visit(
        m: &str,
        deps: &HashMap<String, Vec<String>>,
        seen: &mut Vec<String>,
        depth: usize,
    ) -> Result<()> {
        if depth > 64 {
            bail!("module dependency loop at {m}");
        }
        if seen.iter().any(|s| s == m) {
            return Ok(());
        }
        for d in deps.get(m).into_iter().flatten() {
            visit(d, deps, seen, depth + 1)?;
        }
        seen.push(m.to_string());
        Ok(())
    }
    // Built into the kernel (6.12 builds virtio_pci in): nothing to load.
    let builtin: Vec<String> = std::fs::read_to_string(modules.join("modules.builtin"))
        .unwrap_or_default()
        .lines()
        .map(module_name)
        .collect();
    let mut order = Vec::new();
    for n in names {
        if builtin.contains(&n.replace('-', "_")) {
            continue;
        }
        let m = by_name
            .get(&n.replace('-', "_"))
            .with_context(|| format!("no module {n} in {}", modules.display()))?;
        visit(m, &deps, &mut order, 0)?;
    }
    Ok(order.iter().map(|m| modules.join(m)).collect())
}

/// "kernel/net/9p/9pnet_virtio.ko" → "9pnet_virtio" (as modprobe names it).
fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    stem.replace('-', "_")
}

/// How qemu runs the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    /// KVM when /dev/kvm can be opened read-write, else software emulation.
    /// `IOT_INSPECTOR_VM_ACCEL=kvm|tcg` forces one.
    pub fn preferred() -> Accel {
        match std::env::var("IOT_INSPECTOR_VM_ACCEL").as_deref() {
            Ok("tcg") => return Accel::Tcg,
            Ok("kvm") => return Accel::Kvm,
            _ => {}
        }
        let usable = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
            .is_ok();
        if usable { Accel::Kvm } else { Accel::Tcg }
    }
}

/// What one VM run left behind.
#[derive(Debug)]
pub struct Outcome {
    pub accel: Accel,
    /// From qemu's start to the script's start inside the guest.
    pub boot: Duration,
    /// From qemu's start to its exit.
    pub total: Duration,
    /// The serial console (kernel log and init's messages).
    pub console: String,
    /// The script's exit status (None when it did not finish).
    pub status: Option<i32>,
    /// Every regular file the script left in its output directory
    /// (`$IIL_OUT`), by name; `script.log` is its stdout and stderr.
    pub files: BTreeMap<String, String>,
}

impl Outcome {
    pub fn file(&self, name: &str) -> &str {
        self.files.get(name).map(String::as_str).unwrap_or("")
    }
}

/// Printed by /init once the script starts: the boot is over.
const STARTED: &str = "iil-vm: script starting";

/// The guest's /init (busybox sh). Paths come from the kernel command line
/// (`iil.*=` parameters are not passed to init's environment, so they are
/// read from /proc/cmdline).
const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /bin
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
arg() { tr ' ' '\n' < /proc/cmdline | sed -n "s/^$1=//p" | tail -1; }
OUT=$(arg iil.out)
MODS=$(arg iil.modules)
KVER=$(arg iil.kver)
off() { sync; poweroff -f; echo o > /proc/sysrq-trigger; sleep 5; }
for m in $(cat /modules.list); do
    insmod "/modules/$m" || { echo "iil-vm: insmod $m failed"; off; }
done
mkdir -p /lower /rw /root
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144 hostroot /lower || { echo "iil-vm: no 9p root"; off; }
mount -t tmpfs -o size=160m tmpfs /rw
mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work /root || { echo "iil-vm: no overlay"; off; }
R=/root
mount -t proc proc $R/proc
mount -t sysfs sys $R/sys
mount -t devtmpfs dev $R/dev
mkdir -p $R/dev/pts $R/dev/shm
mount -t devpts devpts $R/dev/pts
# What udev would add to a devtmpfs (nft -f - opens /dev/stdin).
ln -sf /proc/self/fd $R/dev/fd
ln -sf /proc/self/fd/0 $R/dev/stdin
ln -sf /proc/self/fd/1 $R/dev/stdout
ln -sf /proc/self/fd/2 $R/dev/stderr
# /tmp stays the host's (through the overlay): a checkout there (CI
# clones into temp directories) must be visible to the guest.
for d in /run /var/tmp; do mount -t tmpfs tmpfs $R$d; done
mount -t bpf bpf $R/sys/fs/bpf
mount -t cgroup2 cgroup2 $R/sys/fs/cgroup 2>/dev/null
mkdir -p "$R/lib/modules/$KVER" "$R$OUT"
mount --bind "$R$MODS" "$R/lib/modules/$KVER"
# The kernel's own module requests (nft's object types on 5.10, …) run
# modprobe from this initramfs: hand them to the host's in the root.
echo /bin/modprobe-root > /proc/sys/kernel/modprobe
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 out "$R$OUT" || { echo "iil-vm: no output share"; off; }
hostname iil-vm
echo "iil-vm: script starting"
chroot $R /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root IIL_OUT="$OUT" /bin/sh "$OUT/script.sh" > "$R$OUT/script.log" 2>&1
echo $? > "$R$OUT/status"
echo "iil-vm: script finished ($(cat $R$OUT/status))"
umount "$R$OUT"
off
"#;

/// What the kernel runs to load a module it needs (see INIT).
const MODPROBE_ROOT: &str =
    "#!/bin/busybox sh\nexec /bin/busybox chroot /root /sbin/modprobe \"$@\"\n";

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A qemu process and its scratch directory; dropping it kills qemu and
/// removes the directory.
struct Guest {
    child: Option<Child>,
    dir: PathBuf,
}

impl Drop for Guest {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A newc cpio archive (the initramfs format), written by hand: a few
/// dozen lines, against a dependency or an external `cpio` tool.
struct Cpio {
    buf: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn new() -> Cpio {
        Cpio {
            buf: Vec::new(),
            ino: 1,
        }
    }

    fn entry(&mut self, name: &str, mode: u32, data: &[u8]) {
        let fields = [
            self.ino,
            mode,
            0,
            0,
            1,
            0,
            data.len() as u32,
            0,
            0,
            0,
            0,
            name.len() as u32 + 1,
            0,
        ];
        self.ino += 1;
        self.buf.extend_from_slice(b"070701");
        for f in fields {
            self.buf.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(0);
        self.pad();
        self.buf.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    fn dir(&mut self, name: &str) {
        self.entry(name, 0o040755, &[]);
    }

    fn file(&mut self, name: &str, exec: bool, data: &[u8]) {
        self.entry(name, if exec { 0o100755 } else { 0o100644 }, data);
    }

    fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[]);
        self.buf
    }
}

/// Runs `script` (POSIX sh, run by the host's /bin/sh inside the guest) in
/// a VM booted from `image`. The script finds its output directory in
/// `$IIL_OUT`. Everything is bounded by `limit`; qemu is killed and the
/// scratch directory removed in every case. With KVM, a boot that does not
/// reach the script within `kvm_boot_limit` (nested KVM that hangs) is
/// retried with TCG.
pub fn run_script(image: &Image, script: &str, limit: Duration) -> Result<Outcome> {
    let accel = Accel::preferred();
    if accel == Accel::Kvm && !KVM_HUNG.load(Ordering::SeqCst) {
        match run_once(image, script, limit, Accel::Kvm, Some(KVM_BOOT_LIMIT)) {
            Err(e) if e.to_string().contains(NO_BOOT) => {
                eprintln!("vm: KVM did not boot the guest ({e}); retrying with TCG");
                KVM_HUNG.store(true, Ordering::SeqCst);
            }
            other => return other,
        }
    }
    run_once(image, script, limit, Accel::Tcg, None)
}

/// Set once KVM failed to boot a guest: the next VMs of this process (one
/// per kernel) go straight to TCG instead of waiting out the boot limit
/// again.
static KVM_HUNG: AtomicBool = AtomicBool::new(false);

/// How long a KVM boot may take before it counts as hung.
const KVM_BOOT_LIMIT: Duration = Duration::from_secs(25);
const NO_BOOT: &str = "guest did not boot";

fn run_once(
    image: &Image,
    script: &str,
    limit: Duration,
    accel: Accel,
    boot_limit: Option<Duration>,
) -> Result<Outcome> {
    let dir = std::env::temp_dir().join(format!(
        "iilvm-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let out = dir.join("out");
    std::fs::create_dir_all(&out)?;
    let mut guest = Guest {
        child: None,
        dir: dir.clone(),
    };
    std::fs::write(out.join("script.sh"), script)?;

    // The initramfs: busybox, /init and the boot modules.
    let mut cpio = Cpio::new();
    for d in ["bin", "modules", "proc", "sys", "dev"] {
        cpio.dir(d);
    }
    cpio.file("bin/busybox", true, &std::fs::read(&image.busybox)?);
    cpio.file("init", true, INIT.as_bytes());
    cpio.file("bin/modprobe-root", true, MODPROBE_ROOT.as_bytes());
    let mut list = String::new();
    for (i, m) in image.module_load_order(BOOT_MODULES)?.iter().enumerate() {
        let name = format!("{i:02}-{}", m.file_name().unwrap().to_string_lossy());
        cpio.file(&format!("modules/{name}"), false, &std::fs::read(m)?);
        list.push_str(&name);
        list.push('\n');
    }
    cpio.file("modules.list", false, list.as_bytes());
    let initrd = dir.join("initrd.cpio");
    std::fs::write(&initrd, cpio.finish())?;

    let console = dir.join("console.log");
    let cmdline = format!(
        "console=ttyS0 panic=-1 quiet loglevel=4 iil.out={} iil.modules={} iil.kver={}",
        out.display(),
        image.modules.display(),
        image.version
    );
    let mut cmd = Command::new("qemu-system-x86_64");
    match accel {
        // `-cpu host` can ask for MSRs a nested hypervisor refuses; the
        // default CPU model is enough here.
        Accel::Kvm => cmd.args(["-accel", "kvm"]),
        Accel::Tcg => cmd.args(["-accel", "tcg,thread=multi", "-cpu", "max"]),
    };
    cmd.args(["-m", "512M", "-smp", "2", "-nographic", "-no-reboot"])
        .args(["-monitor", "none", "-nic", "none"])
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .arg("-kernel")
        .arg(&image.vmlinuz)
        .arg("-initrd")
        .arg(&initrd)
        .args(["-append", &cmdline])
        .args([
            "-virtfs",
            "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
        ])
        .arg("-virtfs")
        .arg(format!(
            "local,path={},mount_tag=out,security_model=none,multidevs=remap",
            out.display()
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("qemu.err"))?);
    let started = Instant::now();
    guest.child = Some(
        cmd.spawn()
            .context("starting qemu-system-x86_64 (run `cargo xtask setup`)")?,
    );
    let mut boot = None;
    let status = loop {
        let child = guest.child.as_mut().unwrap();
        if let Some(st) = child.try_wait()? {
            break Some(st);
        }
        if boot.is_none() && std::fs::read_to_string(&console).is_ok_and(|c| c.contains(STARTED)) {
            boot = Some(started.elapsed());
        }
        if boot.is_none()
            && let Some(b) = boot_limit
            && started.elapsed() > b
        {
            break None;
        }
        if started.elapsed() > limit {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let total = started.elapsed();
    if let Some(c) = &mut guest.child {
        let _ = c.kill();
        let _ = c.wait();
    }
    let console_text =
        String::from_utf8_lossy(&std::fs::read(&console).unwrap_or_default()).replace('\r', "");
    let qemu_err = std::fs::read_to_string(dir.join("qemu.err")).unwrap_or_default();
    if status.is_some_and(|s| !s.success()) {
        bail!(
            "qemu failed ({}): {qemu_err}\nconsole:\n{}",
            status.unwrap(),
            tail(&console_text, 3000)
        );
    }
    let Some(boot) = boot.or_else(|| console_text.contains(STARTED).then_some(total)) else {
        bail!(
            "{NO_BOOT} within {:?} ({accel:?}): {qemu_err}\nconsole:\n{}",
            total,
            tail(&console_text, 3000)
        );
    };
    let mut files = BTreeMap::new();
    for e in std::fs::read_dir(&out)?.flatten() {
        if e.file_type().is_ok_and(|t| t.is_file()) {
            let bytes = std::fs::read(e.path()).unwrap_or_default();
            files.insert(
                e.file_name().to_string_lossy().into_owned(),
                String::from_utf8_lossy(&bytes).into_owned(),
            );
        }
    }
    let exit = files
        .get("status")
        .and_then(|s| s.trim().parse::<i32>().ok());
    if status.is_none() {
        bail!(
            "the VM ran out of its {limit:?} ({accel:?}, booted in {boot:?}); script log:\n{}\nconsole:\n{}",
            tail(
                files.get("script.log").map(String::as_str).unwrap_or(""),
                4000
            ),
            tail(&console_text, 2000)
        );
    }
    Ok(Outcome {
        accel,
        boot,
        total,
        console: console_text,
        status: exit,
        files,
    })
}

/// The last `n` bytes of a text (at a character boundary).
pub fn tail(s: &str, n: usize) -> &str {
    let mut start = s.len().saturating_sub(n);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_follow_modprobe() {
        assert_eq!(module_name("kernel/net/9p/9pnet_virtio.ko"), "9pnet_virtio");
        assert_eq!(module_name("kernel/fs/9p/9p.ko.xz"), "9p");
        assert_eq!(module_name("kernel/crypto/crc32c-intel.ko"), "crc32c_intel");
    }

    #[test]
    fn kernels_know_their_series() {
        assert!(Kernel::Bullseye.matches("5.10.0-35-amd64"));
        assert!(Kernel::Bookworm.matches("6.1.0-56-amd64"));
        assert!(Kernel::Bookworm612.matches("6.12.117+deb12-amd64"));
        // 6.12 is not 6.1, nor 5.1 5.10.
        assert!(!Kernel::Bookworm.matches("6.12.117+deb12-amd64"));
        assert!(!Kernel::Bullseye.matches("5.1.0-1-amd64"));
        assert!(!Kernel::Bookworm612.matches("6.1.0-56-amd64"));
        assert!(!Kernel::Bookworm.has_tcx() && !Kernel::Bullseye.has_tcx());
        assert!(Kernel::Bookworm612.has_tcx());
        let mut names: Vec<&str> = Kernel::ALL.iter().map(|k| k.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(
            names.len(),
            Kernel::ALL.len(),
            "two kernels share a directory"
        );
    }

    #[test]
    fn cpio_entries_are_newc_and_aligned() {
        let mut c = Cpio::new();
        c.file("init", true, b"abc");
        let b = c.finish();
        assert_eq!(&b[..6], b"070701");
        assert_eq!(b.len() % 4, 0);
        // mode field (second) of the first header
        assert_eq!(&b[14..22], b"000081ed");
        // filesize field (seventh)
        assert_eq!(&b[54..62], b"00000003");
        let name_at = 110;
        assert_eq!(&b[name_at..name_at + 5], b"init\0");
        assert!(b.windows(10).any(|w| w == b"TRAILER!!!"));
    }
}
