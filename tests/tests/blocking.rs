//! Blocking in the simulated home, with an fw4-like firewall in gw: the
//! daemon's rules change nftables and real traffic stops and resumes.
//! Needs root; `cargo xtask test` builds the daemon and the eBPF object.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use iot_inspector::rules::nft::{TableState, parse_table};
use iot_inspector_lab::home::{self, Meter};
use iot_inspector_lab::{Daemon, DeviceSpec, Lab, SERVER_V4, SERVER_V6, within};

const CAM: DeviceSpec = iot_inspector_lab::CAMERA;
const PHONE: DeviceSpec = DeviceSpec {
    name: "phone",
    mac: "da:a1:19:10:00:05",
    host: 14,
    vlan: None,
};
const TV: DeviceSpec = DeviceSpec {
    name: "tv",
    mac: "b0:a7:37:10:00:04",
    host: 13,
    vlan: None,
};

/// One quick ping (300 ms deadline).
fn reachable(lab: &Lab, dev: &str, target: &str) -> bool {
    lab.device(dev)
        .ns
        .cmd("ping")
        .args(["-c", "1", "-W", "0.3", target])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn table(lab: &Lab) -> Result<Option<TableState>> {
    let out = lab
        .gw
        .cmd("nft")
        .args(["-j", "list", "table", "inet", "iot_inspector"])
        .output()?;
    if !out.status.success() {
        return Ok(None);
    }
    Ok(Some(parse_table(&out.stdout)?))
}

fn mac_blocked(lab: &Lab, mac: &str) -> bool {
    table(lab)
        .ok()
        .flatten()
        .is_some_and(|t| t.blocked_macs.iter().any(|m| m.to_string() == mac))
}

fn start(lab: &mut Lab, extra: &str) -> Result<Daemon> {
    lab.write_config(extra)?;
    lab.start_daemon(&[])
}

/// Bytes the wan side has received from a device's upload so far.
fn uploaded(meter: &Meter) -> u64 {
    meter.read().map(|c| c.bytes_up).unwrap_or(0)
}

#[test]
fn a_block_stops_a_transfer_and_pings_within_a_second_and_unblock_restores_them() -> Result<()> {
    let mut lab = Lab::new(&[CAM])?;
    lab.install_fw4_like()?;
    let daemon = start(&mut lab, "")?;
    let cam = lab.device("cam").clone();
    for (server, port, fam) in [(SERVER_V4, 5601u16, "-4"), (SERVER_V6, 5602, "-6")] {
        assert!(
            reachable(&lab, "cam", server),
            "{server} not reachable before the block"
        );
        let meter = Meter::install_masqueraded(&lab, &cam, server, port)?;
        home::iperf_server(&mut lab, server, port)?;
        let client = home::iperf_client_spawn(&cam, server, port, &[fam, "-t", "30", "-b", "20M"])?;
        let child = lab.adopt(client);
        let _ = child;
        within(Duration::from_secs(5), || uploaded(&meter) > 1_000_000).expect("transfer started");

        daemon.cli(&["block", &cam.mac])?;
        let t0 = Instant::now();
        // Pings fail and the transfer stalls within 1 s.
        let stalled = within(Duration::from_secs(1), || {
            let a = uploaded(&meter);
            std::thread::sleep(Duration::from_millis(200));
            uploaded(&meter) == a && !reachable(&lab, "cam", server)
        });
        assert!(
            stalled.is_some(),
            "{server}: traffic still flowed {:?} after the block",
            t0.elapsed()
        );
        assert!(mac_blocked(&lab, &cam.mac));
        // It stays stopped.
        let a = uploaded(&meter);
        std::thread::sleep(Duration::from_secs(2));
        assert_eq!(
            uploaded(&meter),
            a,
            "{server}: bytes crossed a blocked device's path"
        );

        daemon.cli(&["unblock", &cam.mac])?;
        let unblocked = Instant::now();
        // The open transfer resumes within 1 s: blocked segments were
        // rejected with ICMP "no route", so the sender did not back off.
        let a = uploaded(&meter);
        let resumed = within(Duration::from_secs(1), || uploaded(&meter) > a + 100_000);
        assert!(
            resumed.is_some(),
            "{server}: the open transfer did not resume within 1 s of the unblock"
        );
        // By then the path is open for everything: a ping gets through.
        assert!(
            reachable(&lab, "cam", server),
            "{server}: ping did not come back {:?} after the unblock",
            unblocked.elapsed()
        );
    }
    let rules = daemon.get("/v1/rules")?;
    let history = rules["history"].as_array().unwrap();
    assert!(history.len() >= 4, "changes not recorded: {rules}");
    daemon.stop()?;
    Ok(())
}

#[test]
fn after_a_long_block_an_open_transfer_still_resumes_within_a_second() -> Result<()> {
    // Over 15 s the kernel's rate limit on the rejects' ICMP errors (about
    // one per second per host for IPv4) lets the device's TCP back off to
    // retransmissions more than a second apart; the daemon's own errors at
    // the unblock (rules::resume) undo that.
    let mut lab = Lab::new(&[CAM])?;
    lab.install_fw4_like()?;
    let daemon = start(&mut lab, "")?;
    let cam = lab.device("cam").clone();
    let port = 5603;
    let meter = Meter::install_masqueraded(&lab, &cam, SERVER_V4, port)?;
    home::iperf_server(&mut lab, SERVER_V4, port)?;
    let client = home::iperf_client_spawn(&cam, SERVER_V4, port, &["-4", "-t", "40", "-b", "20M"])?;
    lab.adopt(client);
    within(Duration::from_secs(5), || uploaded(&meter) > 1_000_000).expect("transfer started");
    daemon.cli(&["block", &cam.mac])?;
    std::thread::sleep(Duration::from_secs(15));
    let a = uploaded(&meter);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(uploaded(&meter), a, "bytes crossed while blocked");
    daemon.cli(&["unblock", &cam.mac])?;
    let resumed = within(Duration::from_secs(1), || uploaded(&meter) > a + 100_000);
    assert!(
        resumed.is_some(),
        "the open transfer did not resume within 1 s of the unblock after a 15 s block"
    );
    daemon.stop()?;
    Ok(())
}

#[test]
fn blocks_survive_a_firewall_reload_and_a_sigkill_and_restart_reconciles() -> Result<()> {
    let mut lab = Lab::new(&[CAM])?;
    lab.install_fw4_like()?;
    let cam_mac = lab.device("cam").mac.clone();
    let daemon = start(&mut lab, "")?;
    daemon.cli(&["block", &cam_mac])?;
    assert!(
        within(Duration::from_secs(2), || !reachable(
            &lab, "cam", SERVER_V4
        ))
        .is_some()
    );
    // fw4 reload: its table is deleted and recreated; ours stays.
    lab.reload_fw4_like()?;
    assert!(mac_blocked(&lab, &cam_mac));
    assert!(!reachable(&lab, "cam", SERVER_V4));
    // SIGKILL: nothing cleans up, the block stays in force.
    daemon.kill();
    assert!(mac_blocked(&lab, &cam_mac));
    assert!(!reachable(&lab, "cam", SERVER_V4));
    // Restart: the table is replaced in one transaction, never absent.
    let watcher = {
        let gw = lab.gw.name.clone();
        let mac = cam_mac.clone();
        std::thread::spawn(move || {
            let mut gaps = 0;
            for _ in 0..100 {
                let out = std::process::Command::new("ip")
                    .args([
                        "netns",
                        "exec",
                        &gw,
                        "nft",
                        "-j",
                        "list",
                        "table",
                        "inet",
                        "iot_inspector",
                    ])
                    .output()
                    .unwrap();
                let ok = out.status.success()
                    && parse_table(&out.stdout)
                        .map(|t| t.blocked_macs.iter().any(|m| m.to_string() == mac))
                        .unwrap_or(false);
                if !ok {
                    gaps += 1;
                }
                std::thread::sleep(Duration::from_millis(30));
            }
            gaps
        })
    };
    let daemon = lab.start_daemon(&[])?;
    let gaps = watcher.join().unwrap();
    assert_eq!(
        gaps, 0,
        "the block was missing {gaps} times during the restart"
    );
    assert!(!reachable(&lab, "cam", SERVER_V4));
    // A clean stop without `persist` removes the table.
    daemon.cli(&["unblock", &cam_mac])?;
    assert!(within(Duration::from_secs(2), || reachable(&lab, "cam", SERVER_V4)).is_some());
    daemon.stop()?;
    assert!(table(&lab)?.is_none(), "the table outlived a clean stop");
    Ok(())
}

#[test]
fn bad_rules_are_refused_with_a_clear_error_and_change_nothing() -> Result<()> {
    let mut lab = Lab::new(&[CAM])?;
    lab.install_fw4_like()?;
    let cam_mac = lab.device("cam").mac.clone();
    let daemon = start(&mut lab, "")?;
    daemon.cli(&["block", &cam_mac])?;
    let before = std::fs::read_to_string(lab.dir.join("config"))?;
    for (body, needle) in [
        (
            serde_json::json!({"device": cam_mac, "schedule": ["mon-fri 25:00-07:00"]}),
            "25:00",
        ),
        (
            serde_json::json!({"device": cam_mac, "schedule": [" 21:00-07:00"]}),
            "21:00-07:00",
        ),
        (
            serde_json::json!({"device": "2c:aa:8e:10:00", "schedule": ["mon 21:00-22:00"]}),
            "MAC",
        ),
    ] {
        match daemon.post("/v1/rules/set", &body) {
            Ok(v) => bail!("accepted {body}: {v}"),
            Err(e) => assert!(
                e.to_string().contains(needle) || e.to_string().contains("400"),
                "unclear error for {body}: {e}"
            ),
        }
    }
    assert_eq!(std::fs::read_to_string(lab.dir.join("config"))?, before);
    // A hand-edited file with a rule on a device that does not exist and a
    // bad MAC: the daemon says so and keeps the last good rules (the block).
    std::fs::write(
        lab.dir.join("config"),
        format!(
            "{before}\nconfig rule 'bad'\n\toption device 'nosuchdevice'\n\toption block '1'\nconfig device 'x'\n\toption mac 'zz:zz'\n"
        ),
    )?;
    unsafe { libc::kill(daemon.pid(), libc::SIGHUP) };
    let err = within(Duration::from_secs(3), || {
        daemon
            .get("/v1/rules")
            .map(|v| v["config_error"].is_string())
            .unwrap_or(false)
    });
    assert!(err.is_some(), "no config error shown");
    let v = daemon.get("/v1/rules")?;
    let msg = v["config_error"].as_str().unwrap();
    assert!(
        msg.contains("nosuchdevice") || msg.contains("zz:zz"),
        "{msg}"
    );
    assert!(
        mac_blocked(&lab, &cam_mac),
        "the last good block was dropped"
    );
    daemon.stop()?;
    Ok(())
}

/// Unix time of a local wall-clock instant in CET/CEST (2026 dates).
fn cet(y: i32, m: u32, d: u32, h: u32, min: u32, dst: bool) -> i64 {
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y } as i64;
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    let offset = if dst { 2 } else { 1 };
    days * 86400 + (h as i64 - offset) * 3600 + min as i64 * 60
}

#[test]
fn schedules_follow_a_controllable_clock_across_midnight_dst_and_restarts() -> Result<()> {
    let mut lab = Lab::new(&[CAM])?;
    lab.install_fw4_like()?;
    let cam_mac = lab.device("cam").mac.clone();
    let clock = lab.dir.join("clock");
    let set_clock = |t: i64| std::fs::write(&clock, t.to_string()).unwrap();
    // Monday 2026-03-23 20:59 CET.
    set_clock(cet(2026, 3, 23, 20, 59, false));
    lab.write_config(&format!(
            "config rule 'night'\n\toption device '{cam_mac}'\n\tlist schedule 'mon-fri 21:00-07:00'\n\tlist schedule 'sat 23:00-04:00'\n"
        ),
    )?;
    let tz = "CET-1CEST,M3.5.0,M10.5.0/3";
    let clock_s = clock.to_str().unwrap().to_string();
    let args = ["--clock-file", clock_s.as_str()];
    let daemon = lab.start_daemon_env(&args, &[("TZ", tz)])?;
    let expect = |daemon: &Daemon, blocked: bool, when: &str| {
        let ok = within(Duration::from_secs(3), || {
            mac_blocked(&lab, &cam_mac) == blocked
        });
        assert!(
            ok.is_some(),
            "{when}: expected {}, rules say {}",
            if blocked { "blocked" } else { "allowed" },
            daemon.get("/v1/rules").unwrap()
        );
    };
    expect(&daemon, false, "Mon 20:59");
    set_clock(cet(2026, 3, 23, 21, 0, false));
    expect(&daemon, true, "Mon 21:00");
    // Across midnight into Tuesday morning.
    set_clock(cet(2026, 3, 24, 0, 30, false));
    expect(&daemon, true, "Tue 00:30");
    set_clock(cet(2026, 3, 24, 6, 59, false));
    expect(&daemon, true, "Tue 06:59");
    set_clock(cet(2026, 3, 24, 7, 0, false));
    expect(&daemon, false, "Tue 07:00");
    // The DST night (Sun 2026-03-29 02:00 CET → 03:00 CEST): the Saturday
    // window ends at 04:00 local summer time, one hour less of wall time.
    set_clock(cet(2026, 3, 29, 1, 30, false));
    expect(&daemon, true, "Sun 01:30 CET");
    set_clock(cet(2026, 3, 29, 3, 59, true));
    expect(&daemon, true, "Sun 03:59 CEST");
    set_clock(cet(2026, 3, 29, 4, 0, true));
    expect(&daemon, false, "Sun 04:00 CEST");
    // A restart inside a window: blocked as soon as the daemon is up.
    set_clock(cet(2026, 3, 30, 22, 0, true));
    expect(&daemon, true, "Mon 22:00 CEST");
    daemon.kill();
    let daemon = lab.start_daemon_env(&args, &[("TZ", tz)])?;
    assert!(
        mac_blocked(&lab, &cam_mac),
        "not blocked right after a restart in a window"
    );
    let rules = daemon.get("/v1/rules")?;
    let state = &rules["states"][0];
    assert_eq!(state["blocked"], true);
    assert!(
        state["reason"].as_str().unwrap().contains("21:00"),
        "{state}"
    );
    assert_eq!(
        state["next_change"].as_i64(),
        Some(cet(2026, 3, 31, 7, 0, true)),
        "next change should be Tue 07:00 CEST: {state}"
    );
    daemon.stop()?;
    Ok(())
}

#[test]
fn away_mode_follows_the_household_phone() -> Result<()> {
    let mut lab = Lab::new(&[CAM, PHONE])?;
    lab.install_fw4_like()?;
    let cam_mac = lab.device("cam").mac.clone();
    let phone_mac = lab.device("phone").mac.clone();
    let daemon = start(
        &mut lab,
        &format!(
            "config device 'phone'\n\toption mac '{phone_mac}'\n\toption household '1'\n\toption label 'phone-anna'\nconfig rule 'away'\n\toption device '{cam_mac}'\n\toption away_mode '1'\nconfig presence 'presence'\n\toption away_delay '30'\n\toption probe_interval '5'\n"
        ),
    )?;
    // The phone talks: home, so the camera is blocked.
    assert!(home::ping(lab.device("phone"), SERVER_V4, 2));
    assert!(
        within(Duration::from_secs(10), || mac_blocked(&lab, &cam_mac)).is_some(),
        "camera not blocked while the phone is home: {}",
        daemon.get("/v1/rules")?
    );
    // The phone only sleeps: it sends nothing but its kernel answers the
    // router's ARP/NDP probes, so the household stays home.
    std::thread::sleep(Duration::from_secs(40));
    assert!(
        mac_blocked(&lab, &cam_mac),
        "a sleeping phone was taken for absent"
    );
    // The phone leaves: silent and not answering.
    lab.device("phone")
        .ns
        .ip(&["link", "set", "eth0", "down"])?;
    let allowed = within(Duration::from_secs(50), || !mac_blocked(&lab, &cam_mac));
    assert!(
        allowed.is_some(),
        "camera still blocked with everybody out: {}",
        daemon.get("/v1/rules")?
    );
    let rules = daemon.get("/v1/rules")?;
    assert!(rules["history"].to_string().contains("away"), "{rules}");
    // The phone comes back: blocked within 10 s.
    lab.device("phone").ns.ip(&["link", "set", "eth0", "up"])?;
    lab.device("phone").ns.ip(&[
        "route",
        "replace",
        "default",
        "via",
        iot_inspector_lab::GW_V4,
    ])?;
    let back = std::time::Instant::now();
    home::ping(lab.device("phone"), SERVER_V4, 1);
    assert!(
        within(Duration::from_secs(10), || mac_blocked(&lab, &cam_mac)).is_some(),
        "camera not blocked {:?} after the phone came home",
        back.elapsed()
    );
    daemon.stop()?;
    Ok(())
}

#[test]
fn a_destination_block_stops_the_trackers_a_tv_resolved_and_nothing_else() -> Result<()> {
    let mut lab = Lab::new(&[TV])?;
    lab.install_fw4_like()?;
    lab.start_dns(&[
        ("ad.doubleclick.net", "203.0.113.30"),
        ("api.roku.com", "203.0.113.40"),
    ])?;
    let tv_mac = lab.device("tv").mac.clone();
    let daemon = start(
        &mut lab,
        &format!(
            "config rule 'tv_ads'\n\toption device '{tv_mac}'\n\tlist block_category 'advertising'\n"
        ),
    )?;
    assert!(reachable(&lab, "tv", "203.0.113.30") && reachable(&lab, "tv", "203.0.113.40"));
    // The TV resolves both names through the router's path.
    for name in ["ad.doubleclick.net", "api.roku.com"] {
        lab.device("tv").ns.run(
            "dig",
            &["+short", "+tries=1", "+time=2", "@203.0.113.53", name],
        )?;
    }
    let blocked = within(Duration::from_secs(5), || {
        !reachable(&lab, "tv", "203.0.113.30")
    });
    assert!(
        blocked.is_some(),
        "the tracker stays reachable: {}",
        daemon.get("/v1/rules")?
    );
    assert!(
        reachable(&lab, "tv", "203.0.113.40"),
        "the TV's own service was blocked too"
    );
    let t = table(&lab)?.unwrap();
    assert!(
        t.dest_v4
            .iter()
            .any(|(d, r, _)| d.to_string() == "192.0.2.13" && r.to_string() == "203.0.113.30"),
        "{t:?}"
    );
    daemon.stop()?;
    Ok(())
}
