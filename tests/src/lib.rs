//! The simulated home: network namespaces on one machine, shared by the
//! end-to-end tests and `cargo xtask demo`.
//!
//! ```text
//!  device namespaces (eth0)          gw namespace                  wan namespace
//!  cam  192.0.2.10  2001:db8:1::10 ─ p0 ┐
//!  plug 192.0.2.11  2001:db8:1::11 ─ p1 ├ br-lan 192.0.2.1 ── wan0 ═ eth0 198.51.100.2
//!  …                                    ┘  2001:db8:1::1        198.51.100.1   servers on 203.0.113.0/24
//!                                                                                  and 2001:db8:ee::/64
//! ```
//!
//! Only documentation ranges are used (192.0.2.0/24, 198.51.100.0/24,
//! 203.0.113.0/24, 2001:db8::/32). Every namespace name starts with
//! [`PREFIX`] and the creating process id, so a later run removes what a
//! crashed one left behind; [`Lab`]'s `Drop` removes everything it made.

pub mod announce;
pub mod home;
pub mod vm;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Namespaces made by this crate start with this.
pub const PREFIX: &str = "iil";

/// The upstream server addresses the wan namespace answers on.
pub const SERVER_V4: &str = "203.0.113.10";
pub const SERVER2_V4: &str = "203.0.113.20";
pub const SERVER_V6: &str = "2001:db8:ee::10";
pub const SERVER2_V6: &str = "2001:db8:ee::20";
pub const GW_V4: &str = "192.0.2.1";
pub const GW_V6: &str = "2001:db8:1::1";

static SEQ: AtomicU32 = AtomicU32::new(0);

/// Runs a command and fails with its output when it fails.
pub fn sh(cmd: &mut Command) -> Result<Output> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("starting {shown}"))?;
    if !out.status.success() {
        bail!(
            "{shown} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

/// A network namespace this crate created.
#[derive(Clone, Debug)]
pub struct Netns {
    pub name: String,
}

impl Netns {
    fn create(name: &str) -> Result<Netns> {
        sh(Command::new("ip").args(["netns", "add", name]))?;
        let ns = Netns {
            name: name.to_string(),
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        // No duplicate address detection: addresses are usable at once.
        ns.sysctl("net.ipv6.conf.all.accept_dad", "0")?;
        ns.sysctl("net.ipv6.conf.default.accept_dad", "0")?;
        Ok(ns)
    }

    /// A command that runs inside the namespace.
    pub fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Runs a command inside the namespace and waits for it.
    pub fn run(&self, program: &str, args: &[&str]) -> Result<Output> {
        sh(self.cmd(program).args(args))
    }

    pub fn ip(&self, args: &[&str]) -> Result<Output> {
        let mut c = Command::new("ip");
        c.args(["-n", &self.name]).args(args);
        sh(&mut c)
    }

    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        self.run("sysctl", &["-qw", &format!("{key}={value}")])?;
        Ok(())
    }

    /// Applies an nftables ruleset inside the namespace.
    pub fn nft(&self, ruleset: &str) -> Result<()> {
        let mut child = self
            .cmd("nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        use std::io::Write;
        child.stdin.take().unwrap().write_all(ruleset.as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!("nft -f failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }

    /// Processes running inside the namespace.
    pub fn pids(&self) -> Vec<i32> {
        Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn destroy(&self) {
        for pid in self.pids() {
            // SAFETY: plain kill(2).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(PathBuf::from("/etc/netns").join(&self.name));
    }
}

/// Whether the lab process that made `name` (`iil<pid in hex>x<n>…`) is
/// gone; `None` for names that are not a lab's.
fn made_by_a_dead_lab(name: &str) -> Option<bool> {
    let rest = name.strip_prefix(PREFIX)?;
    let pid_hex: String = rest.chars().take_while(|c| *c != 'x').collect();
    let pid = i32::from_str_radix(&pid_hex, 16).ok()?;
    // SAFETY: kill(pid, 0) only checks existence.
    Some(unsafe { libc::kill(pid, 0) } != 0)
}

/// Removes what lab processes that no longer run left behind (killed, so
/// their `Drop` never ran): their namespaces (with the processes in them),
/// and their scratch directories with the bpffs mounted there (its pins
/// would keep maps alive).
pub fn sweep_stale() {
    if let Ok(out) = Command::new("ip").args(["netns", "list"]).output() {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            if made_by_a_dead_lab(name) == Some(true) {
                Netns {
                    name: name.to_string(),
                }
                .destroy();
            }
        }
    }
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if made_by_a_dead_lab(&name) == Some(true) && e.path().is_dir() {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(e.path().join("bpffs"))
                .stderr(Stdio::null())
                .status();
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// One device of the simulated home.
#[derive(Clone, Debug)]
pub struct Device {
    pub name: String,
    pub ns: Netns,
    pub mac: String,
    pub ipv4: String,
    pub ipv6: String,
    /// The gw-side port it hangs off.
    pub port: String,
    pub vlan: Option<u16>,
}

/// What a device looks like before it joins.
#[derive(Clone, Debug)]
pub struct DeviceSpec {
    pub name: &'static str,
    pub mac: &'static str,
    /// Last octet of its addresses (192.0.2.N, 2001:db8:1::N).
    pub host: u8,
    /// Behind a VLAN-tagged port (the tag is added and removed on the port pair).
    pub vlan: Option<u16>,
}

/// The camera most tests and benches put in the home (host .10).
pub const CAMERA: DeviceSpec = DeviceSpec {
    name: "cam",
    mac: "2c:aa:8e:10:00:01",
    host: 10,
    vlan: None,
};

/// The simulated home.
pub struct Lab {
    pub id: String,
    pub gw: Netns,
    pub wan: Netns,
    pub devices: Vec<Device>,
    /// Scratch directory: bpffs mount, database, socket, logs.
    pub dir: PathBuf,
    bpffs: PathBuf,
    children: Vec<Child>,
    next_port: u32,
    /// Per-namespace /etc directories made for resolvers.
    etc_dirs: Vec<PathBuf>,
    /// Extra addresses added to wan's loopback.
    wan_addrs: Vec<String>,
}

impl Lab {
    /// Builds gw, wan and the given devices. Needs root.
    pub fn new(devices: &[DeviceSpec]) -> Result<Lab> {
        sweep_stale();
        let id = format!(
            "{PREFIX}{:x}x{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        let dir = std::env::temp_dir().join(&id);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let bpffs = dir.join("bpffs");
        std::fs::create_dir_all(&bpffs)?;
        sh(Command::new("mount").args(["-t", "bpf", "bpf"]).arg(&bpffs))?;
        let mut lab = Lab {
            gw: Netns {
                name: format!("{id}-gw"),
            },
            wan: Netns {
                name: format!("{id}-wan"),
            },
            id,
            devices: Vec::new(),
            dir,
            bpffs,
            children: Vec::new(),
            next_port: 0,
            etc_dirs: Vec::new(),
            wan_addrs: Vec::new(),
        };
        lab.build_core()?;
        for d in devices {
            lab.add_device(d)?;
        }
        Ok(lab)
    }

    fn build_core(&mut self) -> Result<()> {
        self.gw = Netns::create(&self.gw.name)?;
        self.wan = Netns::create(&self.wan.name)?;
        let gw = &self.gw;
        let wan = &self.wan;
        gw.ip(&["link", "add", "br-lan", "type", "bridge"])?;
        gw.ip(&["addr", "add", "192.0.2.1/24", "dev", "br-lan"])?;
        gw.ip(&["addr", "add", "2001:db8:1::1/64", "dev", "br-lan", "nodad"])?;
        gw.ip(&["link", "set", "br-lan", "up"])?;
        gw.ip(&[
            "link", "add", "wan0", "type", "veth", "peer", "name", "eth0", "netns", &wan.name,
        ])?;
        gw.ip(&["addr", "add", "198.51.100.1/24", "dev", "wan0"])?;
        gw.ip(&["addr", "add", "2001:db8:ff::1/64", "dev", "wan0", "nodad"])?;
        gw.ip(&["link", "set", "wan0", "up"])?;
        gw.sysctl("net.ipv4.ip_forward", "1")?;
        gw.sysctl("net.ipv6.conf.all.forwarding", "1")?;
        gw.ip(&["route", "add", "203.0.113.0/24", "via", "198.51.100.2"])?;
        gw.ip(&[
            "-6",
            "route",
            "add",
            "2001:db8:ee::/64",
            "via",
            "2001:db8:ff::2",
        ])?;
        wan.ip(&["addr", "add", "198.51.100.2/24", "dev", "eth0"])?;
        wan.ip(&["addr", "add", "2001:db8:ff::2/64", "dev", "eth0", "nodad"])?;
        wan.ip(&["link", "set", "eth0", "up"])?;
        for a in [SERVER_V4, SERVER2_V4, "203.0.113.30", "203.0.113.40"] {
            wan.ip(&["addr", "add", &format!("{a}/32"), "dev", "lo"])?;
        }
        for a in [SERVER_V6, SERVER2_V6] {
            wan.ip(&["addr", "add", &format!("{a}/128"), "dev", "lo", "nodad"])?;
        }
        wan.ip(&["route", "add", "192.0.2.0/24", "via", "198.51.100.1"])?;
        wan.ip(&[
            "-6",
            "route",
            "add",
            "2001:db8:1::/64",
            "via",
            "2001:db8:ff::1",
        ])?;
        Ok(())
    }

    /// Adds a device namespace on a new bridge port (also while the daemon runs).
    pub fn add_device(&mut self, spec: &DeviceSpec) -> Result<Device> {
        let ns = Netns::create(&format!("{}-{}", self.id, spec.name))?;
        let port = format!("p{}", self.next_port);
        self.next_port += 1;
        let gw = &self.gw;
        gw.ip(&[
            "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns.name,
        ])?;
        ns.ip(&["link", "set", "eth0", "address", spec.mac])?;
        // A real LAN carries MTU-sized frames: segmentation offloads off on
        // both ends of the link, so what crosses it is what a wire would
        // carry (veth would otherwise pass 64 kB GSO super-packets through).
        for feature in ["tso", "gso", "gro", "tx-udp-segmentation"] {
            // Some features are missing on some kernels; each is best effort.
            let _ = ns.run("ethtool", &["-K", "eth0", feature, "off"]);
            let _ = gw.run("ethtool", &["-K", &port, feature, "off"]);
        }
        ns.ip(&["link", "set", "eth0", "up"])?;
        gw.ip(&["link", "set", &port, "master", "br-lan"])?;
        gw.ip(&["link", "set", &port, "up"])?;
        if let Some(vid) = spec.vlan {
            // The link between the device and its port carries 802.1Q
            // frames: both ends push the tag on the way out and pop it on
            // the way in (see iot-lab-vlan for why it is done with BPF).
            for (ns, ifname) in [(&ns, "eth0"), (gw, port.as_str())] {
                let child = vlan_tagger(ns, ifname, vid)?;
                self.children.push(child);
            }
        }
        let dev_if = "eth0";
        let ipv4 = format!("192.0.2.{}", spec.host);
        let ipv6 = format!("2001:db8:1::{:x}", spec.host);
        ns.ip(&["addr", "add", &format!("{ipv4}/24"), "dev", dev_if])?;
        ns.ip(&["addr", "add", &format!("{ipv6}/64"), "dev", dev_if, "nodad"])?;
        ns.ip(&["route", "add", "default", "via", GW_V4])?;
        ns.ip(&["-6", "route", "add", "default", "via", GW_V6])?;
        let dev = Device {
            name: spec.name.to_string(),
            ns,
            mac: spec.mac.to_lowercase(),
            ipv4,
            ipv6,
            port,
            vlan: spec.vlan,
        };
        self.devices.push(dev.clone());
        Ok(dev)
    }

    pub fn device(&self, name: &str) -> &Device {
        self.devices
            .iter()
            .find(|d| d.name == name)
            .unwrap_or_else(|| panic!("no device {name} in the lab"))
    }

    /// Keeps a background process to be killed when the lab goes.
    pub fn adopt(&mut self, child: Child) -> &mut Child {
        self.children.push(child);
        self.children.last_mut().unwrap()
    }

    /// Where the daemon pins its maps (a bpffs the lab mounted).
    pub fn pin_dir(&self) -> PathBuf {
        self.bpffs.join("iot-inspector")
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("api.sock")
    }

    pub fn database(&self) -> PathBuf {
        self.dir.join("db.redb")
    }

    /// Writes the daemon's config: the main section on `br-lan`, plus
    /// `options` (lines like "\toption window '5'\n").
    pub fn write_config(&self, options: &str) -> Result<()> {
        std::fs::write(
            self.dir.join("config"),
            format!("config iot-inspector 'main'\n\tlist lan 'br-lan'\n{options}"),
        )?;
        Ok(())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for d in &self.etc_dirs {
            let _ = std::fs::remove_dir_all(d);
        }
        for d in &self.devices {
            d.ns.destroy();
        }
        self.wan.destroy();
        self.gw.destroy();
        let _ = Command::new("umount").arg("-l").arg(&self.bpffs).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The fw4-like ruleset of [`Lab::install_fw4_like`].
const FW4_LIKE: &str = "table inet fw4 {
    chain forward {
        type filter hook forward priority filter; policy drop;
        ct state established,related accept
        iifname \"br-lan\" oifname \"wan0\" accept
    }
    chain srcnat {
        type nat hook postrouting priority srcnat; policy accept;
        oifname \"wan0\" masquerade
    }
}
";

/// Starts `iot-lab-vlan` on an interface and waits until its programs are on.
fn vlan_tagger(ns: &Netns, ifname: &str, vid: u16) -> Result<Child> {
    let bin = daemon_binary().parent().unwrap().join("iot-lab-vlan");
    let mut child = ns
        .cmd(bin.to_str().unwrap())
        .args([ifname, &vid.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    use std::io::BufRead;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line)?;
    if line.trim() != "ready" {
        let _ = child.kill();
        let out = child.wait_with_output()?;
        bail!(
            "iot-lab-vlan failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(child)
}

/// The daemon under test, started in the gw namespace.
pub struct Daemon {
    pub child: Child,
    pub socket: PathBuf,
    pub log: PathBuf,
}

/// Where the build put things: `IOT_INSPECTOR_BIN` / `IOT_INSPECTOR_BPF`, else
/// the workspace's target directory.
pub fn daemon_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("IOT_INSPECTOR_BIN") {
        return p.into();
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    for profile in ["debug", "release"] {
        let p = target.join(profile).join("iot-inspector");
        if p.exists() {
            return p;
        }
    }
    target.join("debug/iot-inspector")
}

pub fn bpf_object() -> PathBuf {
    if let Some(p) = std::env::var_os("IOT_INSPECTOR_BPF") {
        return p.into();
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("target/bpf/iot-inspector.bpf.o")
}

impl Lab {
    /// Starts `iot-inspector run` in gw and waits until its API answers.
    pub fn start_daemon(&mut self, extra: &[&str]) -> Result<Daemon> {
        self.start_daemon_env(extra, &[])
    }

    /// The firewall an OpenWrt router has (fw4's shape): its own
    /// `table inet fw4` whose forward chain accepts established traffic
    /// first, lets the LAN out, and masquerades to the wan side.
    pub fn install_fw4_like(&self) -> Result<()> {
        self.gw.nft(FW4_LIKE)
    }

    /// What a `service firewall reload` does to fw4's table: delete and
    /// recreate it.
    pub fn reload_fw4_like(&self) -> Result<()> {
        self.gw.nft(&format!("delete table inet fw4\n{FW4_LIKE}"))
    }

    /// A DNS server (dnsmasq) in wan on 203.0.113.53 answering `names`
    /// (name → IPv4 address) with a short TTL, and nothing else.
    pub fn start_dns(&mut self, names: &[(&str, &str)]) -> Result<()> {
        self.wan
            .ip(&["addr", "add", "203.0.113.53/32", "dev", "lo"])?;
        let mut cmd = self.wan.cmd("dnsmasq");
        cmd.args([
            "--keep-in-foreground",
            "--no-resolv",
            "--no-hosts",
            "--no-dhcp-interface=lo",
            "--listen-address=203.0.113.53",
            "--bind-interfaces",
            "--local-ttl=60",
            "--pid-file=",
            "--user=root",
        ]);
        for (name, addr) in names {
            cmd.arg(format!("--host-record={name},{addr}"));
        }
        let child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn()?;
        self.children.push(child);
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            let out = self.wan.run("ss", &["-Hlun", "sport = :53"])?;
            if !out.stdout.is_empty() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("dnsmasq did not start in wan")
    }

    /// A DHCP server (dnsmasq, DHCP only) on gw's br-lan, handing out
    /// 192.0.2.100–199; its lease file is in the lab directory.
    pub fn start_dhcp_server(&mut self) -> Result<()> {
        let leases = self.dir.join("dnsmasq.leases");
        let child = self
            .gw
            .cmd("dnsmasq")
            .args([
                "--keep-in-foreground",
                "--port=0",
                "--interface=br-lan",
                "--bind-interfaces",
                "--dhcp-range=192.0.2.100,192.0.2.199,255.255.255.0,1h",
                "--dhcp-authoritative",
                "--pid-file=",
                "--user=root",
            ])
            .arg(format!("--dhcp-leasefile={}", leases.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.children.push(child);
        std::thread::sleep(Duration::from_millis(300));
        Ok(())
    }

    /// Runs the real udhcpc client in a device namespace (hostname and
    /// vendor class as the device would send them); the lease is not
    /// applied (the device keeps its static address).
    pub fn dhcp_client(&self, dev: &Device, hostname: &str, vendor: Option<&str>) -> Result<()> {
        let mut c = dev.ns.cmd("udhcpc");
        c.args([
            "-i",
            "eth0",
            "-n",
            "-q",
            "-f",
            "-t",
            "3",
            "-T",
            "1",
            "-s",
            "/bin/true",
        ])
        .args(["-x", &format!("hostname:{hostname}")]);
        if let Some(v) = vendor {
            c.args(["-V", v]);
        }
        let out = c.stdin(Stdio::null()).output()?;
        // Identification needs the client's messages, not the lease: a run
        // that sent its DISCOVERs but got no lease is fine.
        let text = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() && !text.contains("discover") {
            bail!("udhcpc in {} failed: {text}", dev.name);
        }
        Ok(())
    }

    /// Starts a device's announcements (mDNS, SSDP, UPnP description) for
    /// `secs` seconds.
    pub fn announce(&mut self, dev: &Device, profile: &str, secs: u32) -> Result<()> {
        let bin = daemon_binary().parent().unwrap().join("iot-lab-announce");
        let child = dev
            .ns
            .cmd(bin.to_str().unwrap())
            .args([
                profile, "--ip", &dev.ipv4, "--ip6", &dev.ipv6, "--ifname", "eth0",
            ])
            .args([
                "--count",
                "3",
                "--interval-ms",
                "1000",
                "--duration-s",
                &secs.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        self.children.push(child);
        Ok(())
    }

    /// Points a device's resolver at the wan DNS server (203.0.113.53):
    /// `ip netns exec` bind-mounts /etc/netns/NAME/resolv.conf.
    pub fn use_wan_dns(&mut self, dev: &Device) -> Result<()> {
        let dir = PathBuf::from("/etc/netns").join(&dev.ns.name);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(
            dir.join("resolv.conf"),
            "nameserver 203.0.113.53\noptions timeout:2 attempts:1\n",
        )?;
        self.etc_dirs.push(dir);
        Ok(())
    }

    /// Plain-HTTP and HTTPS servers in wan on `ip`, serving `big.bin`
    /// (200 kB) from the lab directory: busybox httpd on port 80 and
    /// openssl s_server (self-signed certificate) on 443.
    pub fn serve_web(&mut self, ip: &str) -> Result<()> {
        let www = self.dir.join("www");
        if !www.exists() {
            std::fs::create_dir_all(&www)?;
            std::fs::write(www.join("big.bin"), vec![0x5a; 200_000])?;
            sh(Command::new("openssl")
                .args([
                    "req",
                    "-x509",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:prime256v1",
                ])
                .args(["-nodes", "-days", "1", "-subj", "/CN=lab", "-keyout"])
                .arg(www.join("key.pem"))
                .arg("-out")
                .arg(www.join("cert.pem")))?;
        }
        if !self.wan_addrs.contains(&ip.to_string()) {
            let _ = self
                .wan
                .ip(&["addr", "add", &format!("{ip}/32"), "dev", "lo"]);
            self.wan_addrs.push(ip.to_string());
        }
        let httpd = self
            .wan
            .cmd("busybox")
            .args(["httpd", "-f", "-p", &format!("{ip}:80"), "-h"])
            .arg(&www)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.children.push(httpd);
        let tls = self
            .wan
            .cmd("openssl")
            .args([
                "s_server",
                "-quiet",
                "-WWW",
                "-accept",
                &format!("{ip}:443"),
            ])
            .arg("-cert")
            .arg(www.join("cert.pem"))
            .arg("-key")
            .arg(www.join("key.pem"))
            .current_dir(&www)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.children.push(tls);
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            let out = self.wan.run("ss", &["-Hltn", &format!("src {ip}")])?;
            let text = String::from_utf8_lossy(&out.stdout);
            if text.contains(":80 ") && text.contains(":443 ") {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("web servers on {ip} did not start")
    }

    /// Records what crosses gw's br-lan into a pcap file until stopped.
    pub fn capture(&mut self, file: &Path) -> Result<()> {
        let child = self
            .gw
            .cmd("tcpdump")
            .args(["-i", "br-lan", "-U", "-s", "0", "-w"])
            .arg(file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.children.push(child);
        std::thread::sleep(Duration::from_millis(500));
        Ok(())
    }

    /// Stops background processes (a capture flushes its file on SIGTERM).
    pub fn stop_children(&mut self) {
        for c in &mut self.children {
            // SAFETY: plain kill(2) of our child.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        }
        std::thread::sleep(Duration::from_millis(300));
        for mut c in self.children.drain(..) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the daemon with extra arguments and environment.
    pub fn start_daemon_env(&mut self, extra: &[&str], env: &[(&str, &str)]) -> Result<Daemon> {
        let bin = daemon_binary();
        let obj = bpf_object();
        if !bin.exists() || !obj.exists() {
            bail!(
                "build first: {} and {} are needed (`cargo xtask build`)",
                bin.display(),
                obj.display()
            );
        }
        let log = self.dir.join("daemon.log");
        let logf = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let config = self.dir.join("config");
        if !config.exists() {
            self.write_config("")?;
        }
        let socket = self.socket();
        let mut cmd = self.gw.cmd(bin.to_str().unwrap());
        cmd.arg("--socket")
            .arg(&socket)
            .arg("run")
            .arg("--config")
            .arg(&config)
            .arg("--bpf-object")
            .arg(&obj)
            .arg("--database")
            .arg(self.database())
            .arg("--pin-dir")
            .arg(self.pin_dir())
            .args(if extra.contains(&"--window") {
                &[][..]
            } else {
                &["--window", "1"][..]
            })
            .args(extra)
            .envs(env.iter().copied())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(logf.try_clone()?)
            .stderr(logf);
        let child = cmd.spawn()?;
        let d = Daemon { child, socket, log };
        d.wait_ready(Duration::from_secs(20))?;
        Ok(d)
    }
}

impl Daemon {
    /// Waits until the API answers /v1/status with at least one port.
    pub fn wait_ready(&self, within: Duration) -> Result<()> {
        let until = Instant::now() + within;
        while Instant::now() < until {
            if let Ok(v) = self.get("/v1/status")
                && v["ports"].as_array().is_some_and(|p| !p.is_empty())
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("the daemon did not come up; its log:\n{}", self.log_text())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GETs an API path with curl over the unix socket.
    pub fn get(&self, path: &str) -> Result<serde_json::Value> {
        let out = sh(Command::new("curl")
            .args(["-fsS", "--max-time", "5", "--unix-socket"])
            .arg(&self.socket)
            .arg(format!("http://localhost{path}")))?;
        Ok(serde_json::from_slice(&out.stdout)?)
    }

    /// Waits until a window ending after `after_unix` has been stored.
    pub fn wait_window_after(&self, after_unix: u64, within: Duration) -> Result<()> {
        let until = Instant::now() + within;
        while Instant::now() < until {
            if let Ok(v) = self.get("/v1/status")
                && v["last_window_end"].as_u64().unwrap_or(0) > after_unix
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        bail!("no window after {after_unix} was stored")
    }

    /// Runs the command line against this daemon.
    pub fn cli(&self, args: &[&str]) -> Result<String> {
        let out = sh(Command::new(daemon_binary())
            .arg("--socket")
            .arg(&self.socket)
            .args(args))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// POSTs JSON to an API path.
    pub fn post(&self, path: &str, body: &serde_json::Value) -> Result<serde_json::Value> {
        let out = Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "5",
                "-H",
                "content-type: application/json",
                "--unix-socket",
            ])
            .arg(&self.socket)
            .args(["-d", &body.to_string(), "-w", "\n%{http_code}"])
            .arg(format!("http://localhost{path}"))
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (json, code) = text.rsplit_once('\n').unwrap_or((&text, "0"));
        let v: serde_json::Value = serde_json::from_str(json).unwrap_or(serde_json::Value::Null);
        if code != "200" {
            bail!("POST {path} answered {code}: {v}");
        }
        Ok(v)
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Stops the daemon with SIGTERM (a clean stop) and waits.
    pub fn stop(mut self) -> Result<std::process::ExitStatus> {
        // SAFETY: plain kill(2) of our child.
        unsafe { libc::kill(self.pid(), libc::SIGTERM) };
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if let Some(st) = self.child.try_wait()? {
                return Ok(st);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        bail!("the daemon did not stop within 10 s")
    }

    /// Kills the daemon with SIGKILL (no cleanup at all).
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Unix time now.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Polls `f` every 50 ms until it holds or `limit` has passed; how long it
/// took.
pub fn within(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if f() {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Netns {
    /// Runs `f` on a new thread that has joined this namespace: in-process
    /// clients and servers of a test (setns(2) moves only the calling
    /// thread, so the rest of the test stays where it was).
    pub fn spawn_thread<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::spawn(move || {
            use std::os::fd::AsRawFd;
            let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            // SAFETY: setns(2) on an fd we own; it moves only this thread.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
            f()
        })
    }
}

impl Lab {
    /// How many conntrack entries gw holds that match `filter` (arguments of
    /// `conntrack -L`, e.g. `["-f", "ipv4", "-p", "tcp", "-s", ip]`).
    pub fn conntrack_count(&self, filter: &[&str]) -> Result<usize> {
        let out = self.gw.run("conntrack", &[&["-L"], filter].concat())?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .count())
    }
}
