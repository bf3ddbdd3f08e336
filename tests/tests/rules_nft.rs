//! Blocking with nftables, for real: the simulated home ([`Lab`]) with one
//! device behind the fw4-like firewall in `gw`, the project's `Enforcer`
//! applying its table inside `gw`, and real ping/TCP traffic in IPv4 and
//! IPv6 proving what a block does.
//!
//! Needs root, `nft`, `conntrack`, `ping` and `iperf3` (`cargo xtask test`).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use iot_inspector::dissect::Mac;
use iot_inspector::rules::nft::{DestinationSets, DeviceAddresses, Enforcer};
use iot_inspector::rules::probe::{ProbeResult, probe};
use iot_inspector::rules::{DestinationFilter, RuleState};
use iot_inspector_lab::home::{self, Meter};
use iot_inspector_lab::{
    Device, DeviceSpec, Lab, SERVER_V4, SERVER_V6, SERVER2_V4, SERVER2_V6, within,
};

const CAM: DeviceSpec = DeviceSpec {
    name: "cam",
    mac: "02:00:5e:00:53:10",
    host: 10,
    vlan: None,
};
/// Two services per family on the "internet": a destination block stops
/// the first while the second keeps working.
const REMOTE_V4: [&str; 2] = [SERVER_V4, SERVER2_V4];
const REMOTE_V6: [&str; 2] = [SERVER_V6, SERVER2_V6];
const ECHO_PORT: u16 = 5000;
const UPLOAD_V4_PORT: u16 = 5001;
const UPLOAD_V6_PORT: u16 = 5002;

/// The home with the camera behind the fw4-like firewall and a TCP echo
/// service in wan, routing both families before a test measures anything.
fn home() -> Result<Lab> {
    let lab = Lab::new(&[CAM])?;
    lab.install_fw4_like()?;
    // [::] also accepts IPv4 (bindv6only is 0): one service on every
    // server address.
    let listener = lab
        .wan
        .spawn_thread(|| TcpListener::bind(("::", ECHO_PORT)))
        .join()
        .unwrap()?;
    thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = s.read(&mut buf) {
                    if s.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    for to in [REMOTE_V4[0], REMOTE_V6[0]] {
        if within(Duration::from_secs(5), || ping(cam(&lab), to)).is_none() {
            bail!("the lab does not route to {to}");
        }
    }
    Ok(lab)
}

fn cam(lab: &Lab) -> &Device {
    lab.device(CAM.name)
}

fn enforcer(lab: &Lab) -> Enforcer {
    Enforcer::new(Some(lab.gw.name.clone()))
}

fn ping(dev: &Device, to: &str) -> bool {
    dev.ns
        .cmd("ping")
        .args(["-c", "1", "-W", "1", "-n", to])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A fresh TCP connection from the device: connect, send, get the echo.
fn tcp_echo(dev: &Device, to: &str) -> bool {
    let addr = SocketAddr::new(to.parse().unwrap(), ECHO_PORT);
    dev.ns
        .spawn_thread(move || {
            let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(1500)) else {
                return false;
            };
            s.set_read_timeout(Some(Duration::from_millis(1500)))
                .unwrap();
            let mut buf = [0u8; 5];
            s.write_all(b"hello").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"hello"
        })
        .join()
        .unwrap()
}

/// TCP conntrack entries in gw of `family` whose original direction
/// matches `filter`.
fn tcp_conns(lab: &Lab, family: &str, filter: &[&str]) -> usize {
    lab.conntrack_count(&[&["-f", family, "-p", "tcp"], filter].concat())
        .unwrap()
}

/// A long upload from the camera to an iperf3 server in wan, counted where
/// it arrives.
fn upload(lab: &mut Lab, server: &str, port: u16) -> Result<Meter> {
    let cam = cam(lab).clone();
    let meter = Meter::install_masqueraded(lab, &cam, server, port)?;
    home::iperf_server(lab, server, port)?;
    let fam = if server.contains(':') { "-6" } else { "-4" };
    let client = home::iperf_client_spawn(&cam, server, port, &[fam, "-t", "60", "-b", "20M"])?;
    lab.adopt(client);
    Ok(meter)
}

/// Bytes the upload's server has received so far.
fn uploaded(meter: &Meter) -> u64 {
    meter.read().expect("reading the upload meter").bytes_up
}

/// Bytes the upload's server received during `window`.
fn progress(meter: &Meter, window: Duration) -> u64 {
    let a = uploaded(meter);
    thread::sleep(window);
    uploaded(meter) - a
}

fn flowing(meter: &Meter) -> bool {
    within(Duration::from_secs(5), || {
        progress(meter, Duration::from_millis(200)) > 0
    })
    .is_some()
}

fn mac() -> Mac {
    CAM.mac.parse().unwrap()
}

fn addresses(dev: &Device) -> DeviceAddresses {
    let mut a = DeviceAddresses::new();
    a.insert(
        mac(),
        vec![dev.ipv4.parse().unwrap(), dev.ipv6.parse().unwrap()],
    );
    a
}

fn state(rule: &str, blocked: bool, destinations: bool, persist: bool) -> RuleState {
    RuleState {
        rule: rule.into(),
        device: mac(),
        device_name: "camera".into(),
        blocked,
        destinations: destinations.then(|| DestinationFilter {
            domains: vec!["tracker.example".into()],
            ..Default::default()
        }),
        reason: "test".into(),
        next_change: None,
        persist,
        clock_unset: false,
    }
}

#[test]
fn device_block_stops_traffic_cuts_connections_and_unblock_restores() -> Result<()> {
    let mut lab = home()?;
    let cam = cam(&lab).clone();
    let (v4, v6) = (cam.ipv4.as_str(), cam.ipv6.as_str());
    let mut enf = enforcer(&lab);
    assert!(
        ping(&cam, REMOTE_V4[0]) && ping(&cam, REMOTE_V6[0]),
        "lab routes before any block"
    );
    assert!(tcp_echo(&cam, REMOTE_V4[0]) && tcp_echo(&cam, REMOTE_V6[0]));

    let up4 = upload(&mut lab, REMOTE_V4[0], UPLOAD_V4_PORT)?;
    let up6 = upload(&mut lab, REMOTE_V6[0], UPLOAD_V6_PORT)?;
    assert!(flowing(&up4), "IPv4 upload did not start");
    assert!(flowing(&up6), "IPv6 upload did not start");
    // fw4's accept-established rule is what carries these connections.
    assert!(tcp_conns(&lab, "ipv4", &["-s", v4, "--state", "ESTABLISHED"]) >= 1);
    assert!(tcp_conns(&lab, "ipv6", &["-s", v6, "--state", "ESTABLISHED"]) >= 1);

    // Block the device.
    let report = enf.apply(
        &[state("cam", true, false, false)],
        &addresses(&cam),
        &DestinationSets::default(),
    )?;
    assert_eq!(report.blocked_macs, 1);
    assert_eq!(report.blocked_addresses, 2);
    assert!(report.conntrack_deleted >= 2, "{report:?}");
    assert!(report.warnings.is_empty(), "{report:?}");
    let table = enf.current()?.expect("table exists");
    assert_eq!(table.hook.as_deref(), Some("forward"));
    assert_eq!(table.priority, Some(-10));
    assert_eq!(table.blocked_macs, vec![mac()]);
    assert_eq!(table.blocked_v4, vec![v4.parse::<Ipv4Addr>()?]);
    assert_eq!(table.blocked_v6, vec![v6.parse::<Ipv6Addr>()?]);

    // The open transfers stop within 1 s and stay stopped.
    thread::sleep(Duration::from_secs(1));
    assert_eq!(
        progress(&up4, Duration::from_millis(700)),
        0,
        "IPv4 upload still flowing after the block"
    );
    assert_eq!(
        progress(&up6, Duration::from_millis(700)),
        0,
        "IPv6 upload still flowing after the block"
    );
    // Their conntrack entries are gone (and none come back: the device's
    // retransmissions are rejected before conntrack confirms a new entry).
    assert_eq!(tcp_conns(&lab, "ipv4", &["-s", v4]), 0);
    assert_eq!(tcp_conns(&lab, "ipv6", &["-s", v6]), 0);
    assert!(
        !ping(&cam, REMOTE_V4[0]) && !ping(&cam, REMOTE_V6[0]),
        "ping must fail while blocked"
    );
    assert!(
        !tcp_echo(&cam, REMOTE_V4[1]) && !tcp_echo(&cam, REMOTE_V6[1]),
        "new TCP must fail while blocked"
    );

    // Unblock: new traffic works again within 1 s.
    let report = enf.apply(
        &[state("cam", false, false, false)],
        &addresses(&cam),
        &DestinationSets::default(),
    )?;
    assert_eq!(report.blocked_macs, 0);
    assert!(within(Duration::from_secs(1), || ping(&cam, REMOTE_V4[0])).is_some());
    assert!(within(Duration::from_secs(1), || ping(&cam, REMOTE_V6[0])).is_some());
    assert!(tcp_echo(&cam, REMOTE_V4[1]) && tcp_echo(&cam, REMOTE_V6[1]));
    // The long uploads pick up again at TCP's next retransmission, so TCP,
    // not our rules, sets the delay. The rules reject with ICMP "no route",
    // which keeps the sender from backing off far (measured: 0.1 s to 1.2 s);
    // the bound stays at what a sender backed off for seconds would need,
    // 15 s, both families watched together.
    let (b4, b6) = (uploaded(&up4), uploaded(&up6));
    let (mut resumed4, mut resumed6) = (None, None);
    let started = Instant::now();
    within(Duration::from_secs(15), || {
        if resumed4.is_none() && uploaded(&up4) > b4 {
            resumed4 = Some(started.elapsed());
        }
        if resumed6.is_none() && uploaded(&up6) > b6 {
            resumed6 = Some(started.elapsed());
        }
        resumed4.is_some() && resumed6.is_some()
    });
    eprintln!("uploads resumed after {resumed4:?} (IPv4), {resumed6:?} (IPv6)");
    assert!(resumed4.is_some(), "IPv4 upload did not resume");
    assert!(resumed6.is_some(), "IPv6 upload did not resume");

    enf.remove()?;
    assert!(enf.current()?.is_none());
    Ok(())
}

#[test]
fn without_cutting_the_conntrack_entry_survives_the_block() -> Result<()> {
    // What the conntrack removal changes: with it off, a blocked connection's
    // entry stays ESTABLISHED — on a router with flow offloading that entry
    // (and its flowtable entry) would keep the connection going past the
    // forward hook, so the Enforcer deletes it.
    let mut lab = home()?;
    let cam = cam(&lab).clone();
    let up = upload(&mut lab, REMOTE_V4[0], UPLOAD_V4_PORT)?;
    assert!(flowing(&up), "upload did not start");
    let mut enf = enforcer(&lab);
    enf.cut_connections = false;
    let r = enf.apply(
        &[state("cam", true, false, false)],
        &addresses(&cam),
        &DestinationSets::default(),
    )?;
    assert_eq!(r.conntrack_deleted, 0);
    thread::sleep(Duration::from_millis(500));
    assert_eq!(
        progress(&up, Duration::from_millis(500)),
        0,
        "the rule itself stops the packets"
    );
    assert!(tcp_conns(&lab, "ipv4", &["-s", &cam.ipv4, "--state", "ESTABLISHED"]) >= 1);
    // Cutting afterwards (a fresh enforcer sees everything as new) removes it.
    let mut enf2 = enforcer(&lab);
    let r = enf2.apply(
        &[state("cam", true, false, false)],
        &addresses(&cam),
        &DestinationSets::default(),
    )?;
    assert!(r.conntrack_deleted >= 1, "{r:?}");
    assert_eq!(tcp_conns(&lab, "ipv4", &["-s", &cam.ipv4]), 0);
    Ok(())
}

#[test]
fn fw4_reload_leaves_our_table_and_shutdown_keeps_only_persistent_blocks() -> Result<()> {
    let lab = home()?;
    let cam = cam(&lab);
    let mut enf = enforcer(&lab);
    enf.apply(
        &[state("cam", true, false, true)],
        &addresses(cam),
        &DestinationSets::default(),
    )?;
    assert!(!ping(cam, REMOTE_V4[0]));
    lab.reload_fw4_like()?;
    let t = enf.current()?.expect("our table survives the fw4 reload");
    assert_eq!(t.blocked_macs, vec![mac()]);
    assert!(
        !ping(cam, REMOTE_V4[0]) && !ping(cam, REMOTE_V6[0]),
        "still blocked after the reload"
    );
    // fw4 itself works again (the device is what is blocked, not the router).
    assert!(
        lab.gw
            .run("ping", &["-c", "1", "-W", "1", REMOTE_V4[0]])
            .is_ok()
    );

    // Clean stop with a persistent block: the block stays in force.
    enf.shutdown(
        &[
            state("cam", true, false, true),
            state("tv", false, false, false),
        ],
        &addresses(cam),
        &DestinationSets::default(),
    )?;
    assert!(enf.current()?.is_some());
    assert!(!ping(cam, REMOTE_V4[0]));
    // Clean stop with nothing persistent: the table goes and traffic flows.
    enf.shutdown(
        &[state("cam", true, false, false)],
        &addresses(cam),
        &DestinationSets::default(),
    )?;
    assert!(enf.current()?.is_none());
    assert!(within(Duration::from_secs(1), || ping(cam, REMOTE_V4[0])).is_some());
    Ok(())
}

#[test]
fn destination_block_stops_one_remote_while_another_works() -> Result<()> {
    let lab = home()?;
    let cam = cam(&lab);
    let mut enf = enforcer(&lab);
    let mut dests = DestinationSets::default();
    dests.add("cam_trackers", mac(), REMOTE_V4[0].parse()?, 600);
    dests.add("cam_trackers", mac(), REMOTE_V6[0].parse()?, 600);
    // An entry of a rule that is not in force must not block anything.
    dests.add("other", mac(), REMOTE_V4[1].parse()?, 600);

    // An established connection to the tracker, to be cut.
    let conn = cam
        .ns
        .spawn_thread(|| {
            let mut s = TcpStream::connect((REMOTE_V4[0], ECHO_PORT)).unwrap();
            s.write_all(b"x").unwrap();
            let mut b = [0u8; 1];
            s.read_exact(&mut b).unwrap();
            s
        })
        .join()
        .unwrap();
    assert_eq!(
        tcp_conns(
            &lab,
            "ipv4",
            &[
                "-s",
                &cam.ipv4,
                "-d",
                REMOTE_V4[0],
                "--state",
                "ESTABLISHED"
            ]
        ),
        1
    );

    let states = [
        state("cam_trackers", true, true, false),
        state("other", false, true, false),
    ];
    let r = enf.apply(&states, &addresses(cam), &dests)?;
    assert_eq!(r.destination_pairs, 2, "{r:?}");
    assert_eq!(r.blocked_macs, 0);
    assert!(r.conntrack_deleted >= 1, "{r:?}");
    assert_eq!(
        tcp_conns(&lab, "ipv4", &["-s", &cam.ipv4, "-d", REMOTE_V4[0]]),
        0
    );
    drop(conn);

    let t = enf.current()?.expect("table exists");
    assert_eq!(t.dest_v4.len(), 1);
    let (d, rmt, expires) = t.dest_v4[0];
    assert_eq!(
        (d, rmt),
        (cam.ipv4.parse()?, REMOTE_V4[0].parse::<Ipv4Addr>()?)
    );
    assert!(expires.is_some_and(|e| e > 590 && e <= 600), "{expires:?}");
    assert_eq!(t.dest_v6.len(), 1);

    assert!(
        !ping(cam, REMOTE_V4[0]) && !tcp_echo(cam, REMOTE_V4[0]),
        "tracker v4 blocked"
    );
    assert!(
        !ping(cam, REMOTE_V6[0]) && !tcp_echo(cam, REMOTE_V6[0]),
        "tracker v6 blocked"
    );
    assert!(
        ping(cam, REMOTE_V4[1]) && tcp_echo(cam, REMOTE_V4[1]),
        "other service v4 works"
    );
    assert!(
        ping(cam, REMOTE_V6[1]) && tcp_echo(cam, REMOTE_V6[1]),
        "other service v6 works"
    );

    // The rule going out of force lifts the destination block.
    enf.apply(
        &[state("cam_trackers", false, true, false)],
        &addresses(cam),
        &dests,
    )?;
    assert!(within(Duration::from_secs(1), || tcp_echo(cam, REMOTE_V4[0])).is_some());
    Ok(())
}

#[test]
fn probe_tells_a_sleeping_device_from_an_absent_one() -> Result<()> {
    let lab = home()?;
    let cam = cam(&lab);
    let t = Duration::from_secs(5);
    for ip in [&cam.ipv4, &cam.ipv6] {
        let r = probe(Some(&lab.gw.name), "br-lan", ip.parse()?, mac(), t)?;
        assert_eq!(r, ProbeResult::Answered, "{ip}");
    }
    // The device stops answering ARP and neighbour solicitations.
    cam.ns.nft(
        "table arp s {\n chain i {\n  type filter hook input priority 0; policy drop;\n }\n}\n\
         table ip6 s {\n chain i {\n  type filter hook input priority 0; policy accept;\n  icmpv6 type nd-neighbor-solicit drop\n }\n}\n",
    )?;
    for ip in [&cam.ipv4, &cam.ipv6] {
        let started = Instant::now();
        let r = probe(Some(&lab.gw.name), "br-lan", ip.parse()?, mac(), t)?;
        assert_eq!(r, ProbeResult::NoAnswer, "{ip}");
        assert!(started.elapsed() <= t + Duration::from_millis(500));
    }
    Ok(())
}
