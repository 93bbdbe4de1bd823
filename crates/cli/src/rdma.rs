//! `softverbs dev`, `link`, `res` and `stat`: the devices, ports, resources
//! and counters, in the manner of iproute2's `rdma` and `ibv_devinfo -v`.
//!
//! They read from the daemon when one answers on its socket (every
//! process of the host: `daemon at PATH: all processes`), else from this
//! process's embedded devices (`embedded: this process`, most useful at
//! the end of a run: `perf --res`, `pingpong --stats`). See [`crate::host`].

use std::process::ExitCode;

use anyhow::{bail, Result};
use serde_json::{json, Value};
use softverbs::DeviceInfo;

use crate::host::Source;

/// `softverbs dev [show [NAME]]`.
#[derive(clap::Args, Debug)]
pub struct DevArgs {
    /// `show` (the default).
    #[arg(value_parser = ["show"], default_value = "show")]
    pub verb: String,
    /// Only this device.
    pub name: Option<String>,
    /// Every attribute, as `ibv_devinfo -v`.
    #[arg(short, long)]
    pub verbose: bool,
    /// JSON output.
    #[arg(short, long)]
    pub json: bool,
}

/// `softverbs link [show [NAME[/PORT]]]`, `link add NAME type KIND netdev
/// IFACE [mtu N]`, `link delete NAME`.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  softverbs link show rxe0/1\n  softverbs link add rxe2 type rxe netdev eth0 mtu 4096   (needs a running softverbs daemon)\n  softverbs link delete rxe2"
)]
pub struct LinkArgs {
    /// `show` (the default); `add` and `delete` change the daemon's devices.
    #[arg(value_parser = ["show", "add", "delete", "del"], default_value = "show")]
    pub verb: String,
    /// show: only this device (`rxe0` or `rxe0/1`); add: `NAME type
    /// rxe|udonly|srd netdev IFACE|ADDR [mtu N] [port N]`; delete: `NAME`.
    pub words: Vec<String>,
    /// JSON output.
    #[arg(short, long)]
    pub json: bool,
}

/// `softverbs res [show [pd|mr|mw|cq|srq|qp|ah]]`.
#[derive(clap::Args, Debug)]
pub struct ResArgs {
    /// `show` (the default).
    #[arg(value_parser = ["show"], default_value = "show")]
    pub verb: String,
    /// Only objects of this kind.
    #[arg(value_parser = ["pd", "mr", "mw", "cq", "srq", "qp", "ah", "channel"])]
    pub kind: Option<String>,
    /// JSON output.
    #[arg(short, long)]
    pub json: bool,
}

/// `softverbs stat [show [NAME]]`.
#[derive(clap::Args, Debug)]
pub struct StatArgs {
    /// `show` (the default).
    #[arg(value_parser = ["show"], default_value = "show")]
    pub verb: String,
    /// Only this device.
    pub name: Option<String>,
    /// Per-QP counters of this QPN instead of the device's.
    #[arg(long)]
    pub qp: Option<u32>,
    /// JSON output.
    #[arg(short, long)]
    pub json: bool,
}

fn guid(g: u64) -> String {
    let b = g.to_be_bytes();
    format!(
        "{:02x}{:02x}:{:02x}{:02x}:{:02x}{:02x}:{:02x}{:02x}",
        b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]
    )
}

/// The devices of `src` as `dev -j` shows them, only `name` if given.
fn selected(src: &Source, name: Option<&str>) -> Result<Vec<Value>> {
    let all: Vec<Value> = match src {
        Source::Embedded => softverbs::devices()?.iter().map(device_json).collect(),
        Source::Daemon(p) => softverbs_daemon::control::device_info(p)?
            .into_iter()
            .map(|mut v| {
                if let Some(g) = v["node_guid"].as_u64() {
                    v["node_guid"] = json!(guid(g));
                }
                v
            })
            .collect(),
    };
    let Some(name) = name else { return Ok(all) };
    let dev = name.split('/').next().unwrap_or(name);
    let found: Vec<Value> = all.iter().filter(|d| d["ifname"] == dev).cloned().collect();
    if found.is_empty() {
        let names: Vec<String> = all.iter().map(|d| text(&d["ifname"])).collect();
        let from = match src {
            Source::Embedded => "devices come from SOFTVERBS_DEVICES".to_string(),
            Source::Daemon(p) => format!("the daemon at {}'s devices", p.display()),
        };
        bail!(
            "no device named {dev} (devices: {}); {from}",
            names.join(", ")
        );
    }
    Ok(found)
}

/// A JSON value as text: strings without their quotes.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn num(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().map(text).collect())
        .unwrap_or_default()
}

fn device_json(d: &DeviceInfo) -> Value {
    let mut v = json!({
        "ifname": d.name,
        "kind": d.kind,
        "node_guid": guid(d.node_guid),
        "caps": d.caps,
        "qp_types": d.caps.qp_types.names(),
        "operations": d.caps.ops.names(),
        "ports": d.ports,
        "gids": d.gids.iter().map(|g| g.to_string()).collect::<Vec<_>>(),
    });
    // An EFA-like device: what efadv_query_device reports.
    if d.caps.qp_types.names().contains(&"SRD") {
        if let Ok(a) =
            softverbs::Context::open(&d.name).and_then(|c| softverbs::efa::query_device(&c))
        {
            v["efa"] = softverbs_daemon::control::efa_json(&a);
        }
    }
    v
}

/// `softverbs dev`.
pub fn dev(args: &DevArgs) -> Result<ExitCode> {
    let devs = selected(&Source::detect()?, args.name.as_deref())?;
    if args.json {
        println!("{}", Value::Array(devs));
        return Ok(ExitCode::SUCCESS);
    }
    for (i, d) in devs.iter().enumerate() {
        let c = &d["caps"];
        if !args.verbose && args.name.is_none() {
            println!(
                "{i}: {}: node_type ca fw {} node_guid {} sys_image_guid {} qp_types {} ops {}",
                text(&d["ifname"]),
                text(&c["fw_ver"]),
                guid(num(&c["node_guid"])),
                guid(num(&c["sys_image_guid"])),
                names(&d["qp_types"]).join(","),
                names(&d["operations"]).join(",")
            );
            continue;
        }
        println!("hca_id:\t{}", text(&d["ifname"]));
        println!("\ttransport:\t\t\tInfiniBand (0)");
        println!("\tfw_ver:\t\t\t\t{}", text(&c["fw_ver"]));
        println!("\tnode_guid:\t\t\t{}", guid(num(&c["node_guid"])));
        println!("\tsys_image_guid:\t\t\t{}", guid(num(&c["sys_image_guid"])));
        println!("\tvendor_id:\t\t\t{:#06x}", num(&c["vendor_id"]));
        println!("\tvendor_part_id:\t\t\t{}", num(&c["vendor_part_id"]));
        println!("\thw_ver:\t\t\t\t{:#X}", num(&c["hw_ver"]));
        println!("\tphys_port_cnt:\t\t\t{}", num(&c["phys_port_cnt"]));
        let hex = ["max_mr_size", "page_size_cap"];
        let plain = [
            "max_qp",
            "max_qp_wr",
            "max_sge",
            "max_sge_rd",
            "max_cq",
            "max_cqe",
            "max_mr",
            "max_pd",
            "max_qp_rd_atom",
            "max_qp_init_rd_atom",
            "max_res_rd_atom",
            "atomic_cap",
            "max_mw",
            "max_ah",
            "max_srq",
            "max_srq_wr",
            "max_srq_sge",
            "max_inline_data",
            "max_pkeys",
            "local_ca_ack_delay",
        ];
        let rows = hex
            .iter()
            .map(|k| (*k, format!("{:#x}", num(&c[*k]))))
            .chain(plain.iter().map(|k| {
                let v = if *k == "atomic_cap" {
                    match c[*k].as_str() {
                        Some("Hca") => "ATOMIC_HCA (1)",
                        Some("Glob") => "ATOMIC_GLOB (2)",
                        _ => "ATOMIC_NONE (0)",
                    }
                    .to_string()
                } else {
                    text(&c[*k])
                };
                (*k, v)
            }));
        for (k, v) in rows {
            println!(
                "\t{k}:{}{v}",
                "\t".repeat(4usize.saturating_sub((k.len() + 2) / 8).max(1))
            );
        }
        println!("\tqp_types:\t\t\t{}", names(&d["qp_types"]).join(", "));
        println!("\toperations:\t\t\t{}", names(&d["operations"]).join(", "));
        let efa = &d["efa"];
        if efa.is_object() {
            println!("\tefa (efadv_query_device):");
            for k in [
                "max_sq_wr",
                "max_rq_wr",
                "max_sq_sge",
                "max_rq_sge",
                "inline_buf_size",
                "max_rdma_size",
            ] {
                let tabs = "\t".repeat(3usize.saturating_sub((k.len() + 2) / 8).max(1));
                println!("\t\t{k}:{tabs}{}", text(&efa[k]));
            }
            println!(
                "\t\tdevice_caps:\t\t{}",
                names(&efa["device_caps"]).join(", ")
            );
        }
        let gids = names(&d["gids"]);
        for p in d["ports"].as_array().into_iter().flatten() {
            println!("\t\tport:\t{}", num(&p["port"]));
            println!(
                "\t\t\tstate:\t\t\t{}",
                if p["state"] == "Active" {
                    "PORT_ACTIVE (4)"
                } else {
                    "PORT_DOWN (1)"
                }
            );
            let (max, act) = (num(&p["max_mtu"]) as u32, num(&p["active_mtu"]) as u32);
            println!("\t\t\tmax_mtu:\t\t{max} ({})", mtu_enum(max));
            println!("\t\t\tactive_mtu:\t\t{act} ({})", mtu_enum(act));
            println!("\t\t\tlink_layer:\t\t{}", text(&p["link_layer"]));
            for (i, g) in gids.iter().enumerate() {
                println!("\t\t\tGID[{i:3}]:\t\t{g}, RoCE v2");
            }
        }
        println!();
    }
    Ok(ExitCode::SUCCESS)
}

fn mtu_enum(bytes: u32) -> u32 {
    match bytes {
        256 => 1,
        512 => 2,
        1024 => 3,
        2048 => 4,
        _ => 5,
    }
}

/// `softverbs link`.
pub fn link(args: &LinkArgs) -> Result<ExitCode> {
    match args.verb.as_str() {
        "add" => return crate::host::link_add(&args.words),
        "delete" | "del" => return crate::host::link_delete(&args.words),
        _ => {}
    }
    if args.words.len() > 1 {
        bail!("usage: softverbs link show [NAME[/PORT]]");
    }
    let devs = selected(&Source::detect()?, args.words.first().map(String::as_str))?;
    let mut out = Vec::new();
    for d in &devs {
        let gids = names(&d["gids"]);
        for p in d["ports"].as_array().into_iter().flatten() {
            let state = if p["state"] == "Active" {
                "ACTIVE"
            } else {
                "DOWN"
            };
            let phys = if state == "ACTIVE" {
                "LINK_UP"
            } else {
                "DISABLED"
            };
            if args.json {
                out.push(json!({
                    "ifname": d["ifname"], "port": p["port"], "state": state,
                    "physical_state": phys,
                    "mtu": p["active_mtu"], "max_mtu": p["max_mtu"], "netdev": p["netdev"], "udp": p["udp_addr"],
                    "gids": gids,
                }));
            } else {
                println!(
                    "link {}/{} state {state} physical_state {phys} mtu {} netdev {} udp {} gids {}",
                    text(&d["ifname"]),
                    num(&p["port"]),
                    num(&p["active_mtu"]),
                    text(&p["netdev"]),
                    text(&p["udp_addr"]),
                    gids.join(",")
                );
            }
        }
    }
    if args.json {
        println!("{}", Value::Array(out));
    }
    Ok(ExitCode::SUCCESS)
}

/// The resources of `src`, as JSON objects (`softverbs_core::Resource`).
fn resource_values(src: &Source) -> Result<Vec<Value>> {
    Ok(match src {
        Source::Embedded => softverbs::resources()?
            .iter()
            .map(serde_json::to_value)
            .collect::<std::result::Result<_, _>>()?,
        Source::Daemon(p) => softverbs_daemon::client::resources(p)?,
    })
}

/// Print resources as `rdma res show` does; shared with `perf --res` and
/// `pingpong --res`. Text output starts with a `# source` line; JSON is
/// the list of objects, each with `"source"` (`embedded` or `daemon`).
pub fn print_resources(kind: Option<&str>, json_out: bool) -> Result<()> {
    let src = Source::detect()?;
    let res: Vec<Value> = resource_values(&src)?
        .into_iter()
        .filter(|r| kind.is_none_or(|k| r["kind"] == k))
        .map(|mut r| {
            r["source"] = json!(src.tag());
            r
        })
        .collect();
    if json_out {
        println!("{}", serde_json::to_string(&res)?);
        return Ok(());
    }
    println!("# {}", src.describe());
    if res.is_empty() {
        match src {
            Source::Embedded => println!("(no resources: the embedded backend shows this process's objects; use --res at the end of perf or pingpong, or start softverbs daemon)"),
            Source::Daemon(_) => println!("(no resources: no client holds objects)"),
        }
    }
    for r in &res {
        let t = |k: &str| text(&r[k]);
        let h = |k: &str| format!("{:#x}", num(&r[k]));
        let who = format!("comm {} pid {}", t("comm"), t("pid"));
        let line = match r["kind"].as_str().unwrap_or("") {
            "pd" => format!("pd {}", t("pdn")),
            "mr" => format!(
                "mr lkey {} rkey {} iova {} mrlen {} access {} pdn {}",
                h("lkey"),
                h("rkey"),
                h("addr"),
                t("len"),
                h("access"),
                t("pdn")
            ),
            "mw" => format!(
                "mw rkey {} type {} pdn {}{}",
                h("rkey"),
                t("mw_type"),
                t("pdn"),
                r["bound_mr"]
                    .as_u64()
                    .map(|l| format!(" mr {l:#x}"))
                    .unwrap_or_default()
            ),
            "channel" => "channel".to_string(),
            "cq" => format!(
                "cq cqn {} cqe {} channel {}",
                t("cqn"),
                t("cqe"),
                if r["channel"] == true { "yes" } else { "no" }
            ),
            "srq" => format!(
                "srq srqn {} max_wr {} max_sge {} limit {} pdn {}",
                t("srqn"),
                t("max_wr"),
                t("max_sge"),
                t("limit"),
                t("pdn")
            ),
            "qp" => format!(
                "qp lqpn {} rqpn {} type {} state {} sq-psn {} rq-psn {} path-mtu {} dgid {} pdn {}",
                t("qpn"),
                t("dest_qpn"),
                t("qp_type"),
                t("state"),
                t("sq_psn"),
                t("rq_psn"),
                t("path_mtu"),
                t("dest_gid"),
                t("pdn")
            ),
            "ah" => format!("ah {} dgid {} pdn {}", t("id"), t("dgid"), t("pdn")),
            other => other.to_string(),
        };
        println!("link {}/1 {line} {who}", t("device"));
    }
    Ok(())
}

/// `softverbs res`.
pub fn res(args: &ResArgs) -> Result<ExitCode> {
    print_resources(args.kind.as_deref(), args.json)?;
    Ok(ExitCode::SUCCESS)
}

/// Print counters as `rdma statistic show` does; shared with `--stats`.
/// Text output starts with a `# source` line (and, from the daemon, its
/// own counters); JSON is `{"source", "daemon"?, "devices": [...]}`.
pub fn print_stats(name: Option<&str>, qp: Option<u32>, json_out: bool) -> Result<()> {
    let src = Source::detect()?;
    let devs = selected(&src, name)?;
    let (daemon, mut counters) = match &src {
        Source::Embedded => {
            let mut m = serde_json::Map::new();
            for d in &devs {
                let n = text(&d["ifname"]);
                m.insert(n.clone(), serde_json::to_value(softverbs::counters(&n)?)?);
            }
            (None, m)
        }
        Source::Daemon(p) => {
            let v = softverbs_daemon::control::counters(p)?;
            let m = v["devices"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|d| (text(&d["ifname"]), d["counters"].clone()))
                .collect();
            (Some(v["daemon"].clone()), m)
        }
    };
    let mut all = Vec::new();
    if !json_out {
        println!("# {}", src.describe());
        if let Some(d) = &daemon {
            let mut line = "daemon".to_string();
            flatten("", d, &mut line);
            println!("{line}");
        }
    }
    for d in &devs {
        let n = text(&d["ifname"]);
        let mut v = counters.remove(&n).unwrap_or(Value::Null);
        if let Some(qpn) = qp {
            let found = resource_values(&src)?
                .iter()
                .any(|r| r["device"] == n.as_str() && r["kind"] == "qp" && r["qpn"] == qpn);
            if !found {
                bail!("no QP {qpn} on {n} ({})", src.describe());
            }
            v = json!({ "qp": qpn, "note": "per-QP counters are in `res show qp -j` (query_qp)" });
        }
        if json_out {
            all.push(json!({ "ifname": n, "port": 1, "counters": v }));
            continue;
        }
        let mut line = format!("link {n}/1");
        flatten("", &v, &mut line);
        println!("{line}");
    }
    if json_out {
        let mut out = json!({ "source": src.tag(), "devices": all });
        if let Some(d) = daemon {
            out["daemon"] = d;
        }
        println!("{out}");
    }
    Ok(())
}

fn flatten(prefix: &str, v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}_{k}")
                };
                flatten(&key, v, out);
            }
        }
        other => out.push_str(&format!(" {prefix} {other}")),
    }
}

/// `softverbs stat`.
pub fn stat(args: &StatArgs) -> Result<ExitCode> {
    print_stats(args.name.as_deref(), args.qp, args.json)?;
    Ok(ExitCode::SUCCESS)
}
