//! Attaching the programs to the LAN ports and following ports that come and
//! go (Wi-Fi interfaces appear and disappear as radios restart).
//!
//! Why the member ports and not the bridge: software flow offloading moves
//! established flows past the bridge's forwarding path, but frames still
//! cross the ports, so TC on each port sees them all.
//!
//! Kernel facts:
//! - On ≥ 6.6, TC programs attach through TCX links; a link pinned in bpffs
//!   outlives the daemon and `BPF_LINK_UPDATE` swaps the program in place, so
//!   a restart neither double counts (two programs) nor drops a window (none).
//! - On older kernels (5.15 of OpenWrt 23.05) cls_bpf filters attached over
//!   netlink persist on their own; a restart replaces the filter with the same
//!   priority and handle, again in place.
//! - Ports are found in `/sys/class/net/<bridge>/brif/` and polled every
//!   second: cheap, and needs no netlink subscription.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use aya::Ebpf;
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::tc::{self, NlOptions, SchedClassifierLink, TcAttachOptions, TcHandle};
use aya::programs::{LinkOrder, SchedClassifier, TcAttachType};
use aya::util::KernelVersion;
use iot_inspector_common::programs;

/// Priority and handle of our cls_bpf filters on kernels without TCX.
const NL_PRIORITY: u16 = 0x4001;
const NL_HANDLE: TcHandle = TcHandle::new(0, 0x1a07);

/// One attached program on one port.
#[derive(Debug)]
enum Attachment {
    /// A TCX link pinned at this path.
    Pinned(PathBuf),
    /// A netlink cls_bpf filter (detached when dropped).
    Netlink(SchedClassifierLink),
}

/// What is attached to one port.
#[derive(Debug)]
pub struct PortState {
    pub ifindex: u32,
    attachments: Vec<Attachment>,
}

/// The configured LAN interfaces and the ports the programs are attached to.
pub struct Ports {
    lan: Vec<String>,
    links_dir: PathBuf,
    tcx: bool,
    attached: HashMap<String, PortState>,
}

/// What one [`Ports::sync`] changed.
#[derive(Debug, Default)]
pub struct SyncReport {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub failed: Vec<(String, String)>,
}

impl Ports {
    pub fn new(lan: Vec<String>, pin_dir: &Path) -> Self {
        Self {
            lan,
            links_dir: pin_dir.join("links"),
            tcx: KernelVersion::current().is_ok_and(|v| v >= KernelVersion::new(6, 6, 0)),
            attached: HashMap::new(),
        }
    }

    /// Names of the ports the programs are on now.
    pub fn attached(&self) -> Vec<String> {
        let mut v: Vec<String> = self.attached.keys().cloned().collect();
        v.sort();
        v
    }

    /// The ports that should carry the programs: members of configured
    /// bridges, and configured interfaces that are not bridges.
    pub fn discover(&self) -> Vec<(String, u32)> {
        let mut out = Vec::new();
        for name in &self.lan {
            let brif = Path::new("/sys/class/net").join(name).join("brif");
            if brif.is_dir() {
                if let Ok(rd) = std::fs::read_dir(&brif) {
                    for e in rd.flatten() {
                        let port = e.file_name().to_string_lossy().into_owned();
                        if let Some(ix) = ifindex(&port) {
                            out.push((port, ix));
                        }
                    }
                }
            } else if let Some(ix) = ifindex(name) {
                out.push((name.clone(), ix));
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// Attaches to new ports and forgets ports that left.
    pub fn sync(&mut self, ebpf: &mut Ebpf) -> SyncReport {
        let mut report = SyncReport::default();
        let wanted = self.discover();
        let gone: Vec<String> = self
            .attached
            .iter()
            .filter(|(name, st)| !wanted.iter().any(|(n, ix)| n == *name && *ix == st.ifindex))
            .map(|(n, _)| n.clone())
            .collect();
        for name in gone {
            if let Some(st) = self.attached.remove(&name) {
                release(st);
            }
            report.removed.push(name);
        }
        for (name, ix) in wanted {
            if self.attached.contains_key(&name) {
                continue;
            }
            match self.attach_port(ebpf, &name, ix) {
                Ok(st) => {
                    self.attached.insert(name.clone(), st);
                    report.added.push(name);
                }
                Err(e) => report.failed.push((name, format!("{e:#}"))),
            }
        }
        report
    }

    fn attach_port(&self, ebpf: &mut Ebpf, port: &str, ifindex: u32) -> Result<PortState> {
        let mut attachments = Vec::new();
        if !self.tcx {
            // cls_bpf needs the clsact qdisc; it may already be there.
            if let Err(e) = tc::qdisc_add_clsact(port) {
                let exists = matches!(&e, tc::TcError::NetlinkError(n) if n.raw_os_error() == Some(libc::EEXIST));
                if !exists {
                    return Err(anyhow!(e).context(format!("adding clsact to {port}")));
                }
            }
        }
        for (prog_name, kind, tag) in [
            (programs::INGRESS, TcAttachType::Ingress, "ingress"),
            (programs::EGRESS, TcAttachType::Egress, "egress"),
        ] {
            let prog: &mut SchedClassifier = ebpf
                .program_mut(prog_name)
                .ok_or_else(|| anyhow!("no program {prog_name}"))?
                .try_into()?;
            let a = if self.tcx {
                // bpffs refuses names with dots (reserved by the kernel), and
                // VLAN interfaces have them.
                let safe = port.replace('.', "_");
                let pin = self.links_dir.join(format!("{safe}-{ifindex}-{tag}"));
                attach_tcx(prog, port, kind, &pin)?
            } else {
                attach_netlink(prog, port, kind)?
            };
            attachments.push(a);
        }
        Ok(PortState {
            ifindex,
            attachments,
        })
    }

    /// Detaches everything (clean stop).
    pub fn detach_all(&mut self) {
        for (_, st) in self.attached.drain() {
            release(st);
        }
        // Links of ports that vanished while we were down.
        if let Ok(rd) = std::fs::read_dir(&self.links_dir) {
            for e in rd.flatten() {
                if let Ok(p) = PinnedLink::from_pin(e.path()) {
                    let _ = p.unpin();
                } else {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }

    /// Leaves everything attached and pinned (the daemon is going away but
    /// counting should go on, e.g. before an upgrade restart).
    pub fn leave_attached(&mut self) {
        for (_, st) in self.attached.drain() {
            for a in st.attachments {
                if let Attachment::Netlink(l) = a {
                    std::mem::forget(l);
                }
            }
        }
    }
}

fn release(st: PortState) {
    for a in st.attachments {
        match a {
            Attachment::Pinned(path) => {
                // Unpinning drops the last reference: the link detaches.
                match PinnedLink::from_pin(&path) {
                    Ok(p) => drop(p.unpin()),
                    Err(_) => drop(std::fs::remove_file(&path)),
                }
            }
            Attachment::Netlink(l) => drop(l),
        }
    }
}

fn attach_tcx(
    prog: &mut SchedClassifier,
    port: &str,
    kind: TcAttachType,
    pin: &Path,
) -> Result<Attachment> {
    std::fs::create_dir_all(pin.parent().unwrap())?;
    if let Ok(old) = PinnedLink::from_pin(pin) {
        // A link from an earlier run: swap our program into it.
        let fd: FdLink = old.into();
        let replaced = SchedClassifierLink::try_from(fd)
            .map_err(|e| anyhow!(e))
            .and_then(|link| prog.attach_to_link(link).map_err(|e| anyhow!(e)));
        match replaced {
            Ok(id) => {
                let link = prog.take_link(id)?;
                let fd: FdLink = link.try_into().map_err(|e| anyhow!("{e}"))?;
                let _ = std::fs::remove_file(pin);
                fd.pin(pin).context("re-pinning a TCX link")?;
                return Ok(Attachment::Pinned(pin.to_path_buf()));
            }
            Err(e) => {
                log::warn!("could not reuse the pinned link on {port} ({e:#}); attaching anew");
                let _ = std::fs::remove_file(pin);
            }
        }
    }
    let id = prog
        .attach_with_options(port, kind, TcAttachOptions::TcxOrder(LinkOrder::default()))
        .with_context(|| format!("attaching to {port}"))?;
    let link = prog.take_link(id)?;
    let fd: FdLink = link.try_into().map_err(|e| anyhow!("{e}"))?;
    fd.pin(pin)
        .with_context(|| format!("pinning the link at {}", pin.display()))?;
    Ok(Attachment::Pinned(pin.to_path_buf()))
}

fn attach_netlink(
    prog: &mut SchedClassifier,
    port: &str,
    kind: TcAttachType,
) -> Result<Attachment> {
    // Replace our filter from an earlier run in place, if it is there.
    if let Ok(old) = SchedClassifierLink::attached(port, kind, NL_PRIORITY, NL_HANDLE, None)
        && let Ok(id) = prog.attach_to_link(old)
    {
        return Ok(Attachment::Netlink(prog.take_link(id)?));
    }
    let id = prog
        .attach_with_options(
            port,
            kind,
            TcAttachOptions::Netlink(NlOptions {
                priority: NL_PRIORITY,
                handle: NL_HANDLE,
                classid: None,
            }),
        )
        .with_context(|| format!("attaching to {port}"))?;
    Ok(Attachment::Netlink(prog.take_link(id)?))
}

fn ifindex(name: &str) -> Option<u32> {
    let s = std::fs::read_to_string(Path::new("/sys/class/net").join(name).join("ifindex"))
        .map_err(|e: io::Error| e)
        .ok()?;
    s.trim().parse().ok()
}
