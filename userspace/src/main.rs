//! `iot-inspector`: the daemon and its command line.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};
use iot_inspector::api::{DeviceView, FlowView, client};
use iot_inspector::config::{self, Settings};
use iot_inspector::daemon::{self, RunOptions, Status};
use iot_inspector::dissect::Mac;
use iot_inspector::report;

#[derive(Parser)]
#[command(
    name = "iot-inspector",
    version,
    about = "See what every device on your network is, does and talks to"
)]
struct Cli {
    /// The daemon's API socket.
    #[arg(long, global = true, default_value = config::DEFAULT_SOCKET)]
    socket: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon in the foreground.
    Run(RunArgs),
    /// List the devices on the network.
    Devices {
        /// Print JSON for programs.
        #[arg(long)]
        json: bool,
    },
    /// Show whom devices talk to.
    Flows {
        /// Only this device (MAC address).
        #[arg(long)]
        device: Option<String>,
        /// How far back (30s, 20m, 1h, 7d).
        #[arg(long, default_value = "20m")]
        since: String,
        #[arg(long)]
        json: bool,
    },
    /// Show the daemon's state and the kernel's counters.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Block a device now (until `unblock`).
    Block {
        /// The device's MAC address.
        device: String,
    },
    /// Lift a block or pause made with `block` or `pause`.
    Unblock { device: String },
    /// Block a device for a while (30m, 2h, 1d).
    Pause {
        device: String,
        #[arg(long = "for", default_value = "1h")]
        duration: String,
    },
    /// Show the rules, their state now and their next change.
    Rules {
        #[arg(long)]
        json: bool,
    },
    /// Name a device.
    Label { device: String, label: String },
    /// Write the anonymised research data set (5-second windows, devices'
    /// identification and labels); see docs/export-schema.md.
    Export {
        /// How far back (20m, 1d, 7d) or Unix seconds.
        #[arg(long, default_value = "1d")]
        since: String,
        /// msgpack, jsonl or csv.
        #[arg(long, default_value = "jsonl")]
        format: String,
        /// The file to write.
        #[arg(long, short)]
        output: PathBuf,
        /// Keep device-chosen names and typed labels (off: they can carry
        /// people's names).
        #[arg(long)]
        include_names: bool,
    },
    /// Ask the donation endpoint to delete everything this router sent.
    ForgetDonations {
        /// UCI configuration file (for `donate_url`, `salt_file`, `donate_record`).
        #[arg(long, default_value = config::DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// rpcd exec-plugin protocol (run by /usr/libexec/rpcd/iot-inspector).
    #[command(hide = true)]
    Rpcd {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run a pcap/pcapng capture through the same pipeline as the daemon:
    /// devices with identity and evidence, flows with names and explanations.
    Analyze {
        file: PathBuf,
        /// The router's MAC (guessed when not given).
        #[arg(long)]
        router: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// UCI configuration file.
    #[arg(long, default_value = config::DEFAULT_CONFIG)]
    config: PathBuf,
    /// LAN bridges or interfaces (overrides the config's `lan`).
    #[arg(long)]
    lan: Vec<String>,
    /// The eBPF object.
    #[arg(long, env = "IOT_INSPECTOR_BPF")]
    bpf_object: Option<PathBuf>,
    /// The database file.
    #[arg(long)]
    database: Option<PathBuf>,
    /// Directory on a bpffs for pinned maps and links.
    #[arg(long)]
    pin_dir: Option<PathBuf>,
    /// Seconds per accounting window.
    #[arg(long)]
    window: Option<u64>,
    /// Flow table entries.
    #[arg(long)]
    flow_table_size: Option<u32>,
    /// Tests only: read the rules' "now" (unix seconds) from this file.
    #[arg(long, hide = true)]
    clock_file: Option<PathBuf>,
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("iot-inspector: {e:#}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(a) => {
            let mut s = Settings::load(&a.config)?;
            if !a.lan.is_empty() {
                s.lan = a.lan;
            }
            if let Some(p) = a.bpf_object {
                s.bpf_object = p;
            }
            if let Some(p) = a.database {
                s.database = p;
            }
            if let Some(p) = a.pin_dir {
                s.pin_dir = p;
            }
            if let Some(w) = a.window {
                s.window_secs = w.clamp(1, 60);
            }
            if let Some(n) = a.flow_table_size {
                s.flow_table_size = n;
            }
            s.clock_file = a.clock_file;
            s.socket = cli.socket;
            s.validate()?;
            env_logger::Builder::new()
                .parse_filters(&std::env::var("RUST_LOG").unwrap_or_else(|_| s.log_level.clone()))
                .format_timestamp_secs()
                .init();
            daemon::run(RunOptions {
                settings: s,
                config_path: Some(a.config),
            })
        }
        Command::Devices { json } => {
            let devs: Vec<DeviceView> = client::get(&cli.socket, "/v1/devices")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&devs)?);
            } else {
                print!("{}", report::devices(&devs));
            }
            Ok(())
        }
        Command::Flows {
            device,
            since,
            json,
        } => {
            let mut path = format!("/v1/flows?since={since}");
            if let Some(d) = device {
                let mac: iot_inspector::dissect::Mac = d.parse()?;
                path.push_str(&format!("&device={mac}"));
            }
            let flows: Vec<FlowView> = client::get(&cli.socket, &path)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&flows)?);
            } else {
                print!("{}", report::flows(&flows));
            }
            Ok(())
        }
        Command::Block { device } => {
            let mac: Mac = device.parse()?;
            let _: serde_json::Value = client::post(
                &cli.socket,
                "/v1/rules/block",
                &serde_json::json!({ "mac": mac }),
            )?;
            println!("{mac} is blocked");
            Ok(())
        }
        Command::Unblock { device } => {
            let mac: Mac = device.parse()?;
            let v: serde_json::Value = client::post(
                &cli.socket,
                "/v1/rules/unblock",
                &serde_json::json!({ "mac": mac }),
            )?;
            if v["removed"] == true {
                println!("{mac} is no longer blocked by hand");
            } else {
                println!("{mac} had no block or pause made by hand (see `iot-inspector rules`)");
            }
            Ok(())
        }
        Command::Pause { device, duration } => {
            let mac: Mac = device.parse()?;
            let d = iot_inspector::time::parse_duration(&duration).map_err(anyhow::Error::msg)?;
            let until = iot_inspector::time::unix_secs() + d.as_secs();
            let _: serde_json::Value = client::post(
                &cli.socket,
                "/v1/rules/pause",
                &serde_json::json!({ "mac": mac, "until": until }),
            )?;
            println!("{mac} is paused for {duration}");
            Ok(())
        }
        Command::Label { device, label } => {
            let mac: Mac = device.parse()?;
            let _: serde_json::Value = client::post(
                &cli.socket,
                "/v1/devices/label",
                &serde_json::json!({ "mac": mac, "label": label }),
            )?;
            Ok(())
        }
        Command::Export {
            since,
            format,
            output,
            include_names,
        } => {
            let output = std::path::absolute(&output)?;
            let v: serde_json::Value = client::post(
                &cli.socket,
                "/v1/export",
                &serde_json::json!({
                    "since": since, "format": format, "output": output, "include_names": include_names
                }),
            )?;
            println!(
                "wrote {} ({} devices, {} windows)",
                output.display(),
                v["summary"]["devices"],
                v["summary"]["rows"]
            );
            Ok(())
        }
        Command::ForgetDonations { config } => {
            let s = Settings::load(&config)?;
            let url = s.donate_url.ok_or_else(|| {
                anyhow::anyhow!("no donate_url in {}: nothing was donated", config.display())
            })?;
            let salt = iot_inspector::export::salt(&s.salt_file)?;
            let id = iot_inspector::export::installation_id(&salt);
            let r = iot_inspector::export::request_deletion(
                &url,
                &id,
                &s.donate_record,
                &iot_inspector::export::DonateOptions::default(),
            )?;
            println!("asked {url} to delete installation {id}: {}", r.outcome);
            Ok(())
        }
        Command::Rpcd { args } => iot_inspector::rpcd::run(&args, &cli.socket),
        Command::Analyze { file, router, json } => {
            let router = router.map(|r| r.parse::<Mac>()).transpose()?;
            let a = iot_inspector::analyze::analyze(&file, router)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&a)?);
            } else {
                println!(
                    "{} frames, router {}\n",
                    a.frames,
                    a.router
                        .map(|m| m.to_string())
                        .unwrap_or_else(|| "not found".into())
                );
                print!("{}", report::devices(&a.devices));
                for d in &a.devices {
                    if let Some(i) = &d.identity {
                        println!("\n{} — {}:", d.mac, report::device_name(d));
                        for s in i.evidence.iter().take(8) {
                            println!(
                                "  {}: {} → {}",
                                report::inert(&s.source),
                                report::inert(&s.value),
                                report::inert(&s.suggests)
                            );
                        }
                    }
                }
                println!();
                print!("{}", report::flows(&a.flows));
            }
            Ok(())
        }
        Command::Rules { json } => {
            let v: serde_json::Value = client::get(&cli.socket, "/v1/rules")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print!("{}", report::rules(&v));
            }
            Ok(())
        }
        Command::Status { json } => {
            let st: serde_json::Value = client::get(&cli.socket, "/v1/status")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&st)?);
            } else {
                let st: Status = serde_json::from_value(st)?;
                println!(
                    "iot-inspector {} — ports: {}",
                    st.version,
                    st.ports.join(", ")
                );
                println!(
                    "flows: {} of {} ({:.1} %), evicted {}",
                    st.flows_live, st.flow_capacity, st.flow_table_use_pct, st.flows_evicted
                );
                for (k, v) in &st.kernel {
                    println!("  {k}: {v}");
                }
                print!("{}", st.lists.summary(iot_inspector::time::unix_secs()));
            }
            Ok(())
        }
    }
}
