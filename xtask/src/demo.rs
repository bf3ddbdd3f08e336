//! `cargo xtask demo`: the simulated home with the daemon counting it.
//!
//! Builds everything, creates the namespaces (gw, wan and one per device),
//! starts the daemon in gw, keeps the devices busy with bounded traffic
//! loops, and prints where to look. Ctrl-C (or `--minutes`) ends it and
//! removes everything it made.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use iot_inspector_lab::home;
use iot_inspector_lab::{DeviceSpec, Lab, SERVER_V4, SERVER_V6};

use crate::build;

#[derive(clap::Args)]
pub struct Args {
    /// How long the demo runs before it cleans up.
    #[arg(long, default_value_t = 30)]
    pub minutes: u64,
}

/// The devices of the demo home (MAC vendor prefixes of the kinds of
/// product they stand for; addresses from 192.0.2.0/24).
pub const HOME: &[DeviceSpec] = &[
    DeviceSpec {
        name: "camera",
        mac: "2c:aa:8e:10:00:01",
        host: 10,
        vlan: None,
    },
    DeviceSpec {
        name: "plug",
        mac: "24:0a:c4:10:00:02",
        host: 11,
        vlan: None,
    },
    DeviceSpec {
        name: "speaker",
        mac: "48:a6:b8:10:00:03",
        host: 12,
        vlan: None,
    },
    DeviceSpec {
        name: "tv",
        mac: "b0:a7:37:10:00:04",
        host: 13,
        vlan: None,
    },
    DeviceSpec {
        name: "phone",
        mac: "da:a1:19:10:00:05",
        host: 14,
        vlan: None,
    },
    DeviceSpec {
        name: "laptop",
        mac: "3c:22:fb:10:00:06",
        host: 15,
        vlan: Some(10),
    },
];

pub fn run(args: &Args) -> Result<()> {
    // First: a signal arriving while the home is being built must not end
    // the process before the lab's clean-up runs.
    stop_on_signals();
    let built = build::run(&build::Args::default())?;
    // SAFETY: setting process environment before any thread starts.
    unsafe {
        std::env::set_var("IOT_INSPECTOR_BIN", &built.daemon);
        std::env::set_var("IOT_INSPECTOR_BPF", &built.bpf_object);
    }
    let mut lab = Lab::new(HOME)?;
    std::fs::write(
        lab.dir.join("config"),
        format!(
            "config iot-inspector 'main'\n\tlist lan 'br-lan'\n\toption dashboard '127.0.0.1:{DASHBOARD_PORT}'\n"
        ),
    )?;
    lab.start_dhcp_server()?;
    let daemon = lab.start_daemon(&[])?;
    // Devices introduce themselves the way their kind of product does.
    for (name, profile, hostname) in ANNOUNCE {
        let dev = lab.device(name).clone();
        let _ = lab.dhcp_client(&dev, hostname, None);
        let _ = lab.announce(&dev, profile, (args.minutes * 60) as u32);
    }
    forward_to_namespace(DASHBOARD_PORT, &lab.gw.name)?;
    // The internet: a DNS server and web servers under the names the
    // devices use.
    lab.start_dns(NAMES)?;
    for ip in [
        "203.0.113.30",
        "203.0.113.40",
        "203.0.113.50",
        "203.0.113.60",
    ] {
        lab.serve_web(ip)?;
    }
    for d in lab.devices.clone() {
        lab.use_wan_dns(&d)?;
    }
    let sock = daemon.socket.display().to_string();
    let bin = built.daemon.display().to_string();
    println!(
        "\nThe simulated home is running ({} devices behind gw, the internet in wan).\n\
         The dashboard: http://127.0.0.1:{DASHBOARD_PORT}/ (forwarded into gw)\n\
         Look at it with:\n  {bin} --socket {sock} devices\n  {bin} --socket {sock} flows --since 5m\n  {bin} --socket {sock} status\n\
         Daemon log: {}\nCtrl-C stops the demo and removes everything.\n",
        lab.devices.len(),
        daemon.log.display()
    );
    let until = Instant::now() + Duration::from_secs(args.minutes * 60);
    let mut round = 0u32;
    let mut port = 6000u16;
    while Instant::now() < until && !STOP.load(Ordering::SeqCst) {
        // Each round: every device pings, one device moves some data.
        for d in lab.devices.clone() {
            let target = if round.is_multiple_of(2) {
                SERVER_V4
            } else {
                SERVER_V6
            };
            home::ping(&d, target, 1);
        }
        // Each device visits its services by name (DNS, then HTTPS or HTTP).
        for (dev, name, scheme) in VISITS {
            let d = lab.device(dev).clone();
            let _ =
                d.ns.cmd("curl")
                    .args(["-sk", "-o", "/dev/null", "--max-time", "5"])
                    .arg(format!("{scheme}://{name}/big.bin"))
                    .status();
        }
        let d = lab.devices[(round as usize) % lab.devices.len()].clone();
        if home::iperf_server(&mut lab, SERVER_V4, port).is_ok() {
            let _ = home::iperf_client(&d, SERVER_V4, port, &["-4", "-t", "2", "-b", "5M"]);
        }
        port = if port > 6900 { 6000 } else { port + 1 };
        round += 1;
        for _ in 0..10 {
            if STOP.load(Ordering::SeqCst) {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    println!("stopping the demo");
    daemon.stop()?;
    drop(lab);
    Ok(())
}

/// The dashboard's port, inside gw and forwarded on the host's loopback.
const DASHBOARD_PORT: u16 = 8088;

/// What each demo device announces (profile of `iot-lab-announce`, DHCP hostname).
const ANNOUNCE: &[(&str, &str, &str)] = &[
    ("camera", "camera", "Reolink-E1-Pro"),
    ("plug", "plug", "wemo-plug-1A2B"),
    ("speaker", "speaker", "SonosZP"),
    ("tv", "tv", "Roku-Ultra"),
    ("phone", "phone", "Janes-iPhone"),
    ("laptop", "laptop", "Janes-MacBook-Pro"),
];

/// Names the demo's DNS server answers, on the wan's web servers.
const NAMES: &[(&str, &str)] = &[
    ("api.xbcs.net", "203.0.113.30"),
    ("ad.doubleclick.net", "203.0.113.40"),
    ("b.scorecardresearch.com", "203.0.113.40"),
    ("api.roku.com", "203.0.113.50"),
    ("api.sonos.com", "203.0.113.50"),
    ("captive.apple.com", "203.0.113.60"),
    ("connectivitycheck.gstatic.com", "203.0.113.60"),
    ("api.reolink.com", "203.0.113.30"),
];

/// (device, name, scheme) fetched every round.
const VISITS: &[(&str, &str, &str)] = &[
    ("plug", "api.xbcs.net", "https"),
    ("tv", "api.roku.com", "https"),
    ("tv", "ad.doubleclick.net", "http"),
    ("tv", "b.scorecardresearch.com", "http"),
    ("speaker", "api.sonos.com", "https"),
    ("camera", "api.reolink.com", "https"),
    ("phone", "captive.apple.com", "http"),
    ("laptop", "connectivitycheck.gstatic.com", "http"),
];

/// Forwards 127.0.0.1:`port` on the host to 127.0.0.1:`port` inside a
/// namespace: each connection's thread enters the namespace (setns affects
/// only the calling thread) to connect there.
fn forward_to_namespace(port: u16, ns: &str) -> Result<()> {
    use std::net::{TcpListener, TcpStream};
    let listener = TcpListener::bind(("127.0.0.1", port))?;
    let ns_path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let ns_path = ns_path.clone();
            std::thread::spawn(move || {
                let Ok(f) = std::fs::File::open(&ns_path) else {
                    return;
                };
                use std::os::fd::AsRawFd;
                // SAFETY: setns on this thread only, with a valid netns fd.
                if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return;
                }
                let Ok(upstream) = TcpStream::connect(("127.0.0.1", port)) else {
                    return;
                };
                let (mut a, mut b) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
                let t = std::thread::spawn(move || {
                    let _ = std::io::copy(&mut a, &mut b);
                    let _ = b.shutdown(std::net::Shutdown::Write);
                });
                let (mut c, mut u) = (client, upstream);
                let _ = std::io::copy(&mut u, &mut c);
                let _ = c.shutdown(std::net::Shutdown::Write);
                let _ = t.join();
            });
        }
    });
    Ok(())
}

/// Set by SIGINT/SIGTERM: the demo stops its rounds and cleans up.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Turns SIGINT and SIGTERM into [`STOP`] with a handler, not by blocking
/// them and waiting in a thread: a blocked set is inherited by every
/// program the lab starts (the daemon then ignored the SIGTERM that stops
/// it), while handlers are reset to the default in an exec'd child.
fn stop_on_signals() {
    let handler = on_stop_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only stores to an atomic (async-signal-safe).
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}
