//! `softverbs dev`, `link`, `res` and `stat`: the devices, ports, resources
//! and counters, in the manner of iproute2's `rdma` and `ibv_devinfo -v`.
//!
//! In the embedded backend a process sees its own devices and objects, so
//! `res` and `stat` are most useful at the end of a run (`perf --res`,
//! `pingpong --stats`); with the daemon they become host-wide.

use std::process::ExitCode;

use anyhow::{bail, Result};
use serde_json::{json, Value};
use softverbs::{DeviceInfo, ResDetail, Resource};

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

/// `softverbs link [show [NAME[/PORT]]]`.
#[derive(clap::Args, Debug)]
pub struct LinkArgs {
    /// `show` (the default).
    #[arg(value_parser = ["show"], default_value = "show")]
    pub verb: String,
    /// Only this device (`rxe0` or `rxe0/1`).
    pub name: Option<String>,
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

fn selected(name: Option<&str>) -> Result<Vec<DeviceInfo>> {
    let all = softverbs::devices()?;
    let Some(name) = name else { return Ok(all) };
    let dev = name.split('/').next().unwrap_or(name);
    let found: Vec<DeviceInfo> = all.iter().filter(|d| d.name == dev).cloned().collect();
    if found.is_empty() {
        let names: Vec<&str> = all.iter().map(|d| d.name.as_str()).collect();
        bail!(
            "no device named {dev} (devices: {}); devices come from SOFTVERBS_DEVICES",
            names.join(", ")
        );
    }
    Ok(found)
}

fn device_json(d: &DeviceInfo) -> Value {
    json!({
        "ifname": d.name,
        "kind": d.kind,
        "node_guid": guid(d.node_guid),
        "caps": d.caps,
        "qp_types": d.caps.qp_types.names(),
        "operations": d.caps.ops.names(),
        "ports": d.ports,
        "gids": d.gids.iter().map(|g| g.to_string()).collect::<Vec<_>>(),
    })
}

/// `softverbs dev`.
pub fn dev(args: &DevArgs) -> Result<ExitCode> {
    let devs = selected(args.name.as_deref())?;
    if args.json {
        println!("{}", Value::Array(devs.iter().map(device_json).collect()));
        return Ok(ExitCode::SUCCESS);
    }
    for (i, d) in devs.iter().enumerate() {
        let c = &d.caps;
        if !args.verbose && args.name.is_none() {
            println!(
                "{i}: {}: node_type ca fw {} node_guid {} sys_image_guid {} qp_types {} ops {}",
                d.name,
                c.fw_ver,
                guid(c.node_guid),
                guid(c.sys_image_guid),
                c.qp_types.names().join(","),
                c.ops.names().join(",")
            );
            continue;
        }
        println!("hca_id:\t{}", d.name);
        println!("\ttransport:\t\t\tInfiniBand (0)");
        println!("\tfw_ver:\t\t\t\t{}", c.fw_ver);
        println!("\tnode_guid:\t\t\t{}", guid(c.node_guid));
        println!("\tsys_image_guid:\t\t\t{}", guid(c.sys_image_guid));
        println!("\tvendor_id:\t\t\t{:#06x}", c.vendor_id);
        println!("\tvendor_part_id:\t\t\t{}", c.vendor_part_id);
        println!("\thw_ver:\t\t\t\t{:#X}", c.hw_ver);
        println!("\tphys_port_cnt:\t\t\t{}", c.phys_port_cnt);
        let rows: [(&str, String); 22] = [
            ("max_mr_size", format!("{:#x}", c.max_mr_size)),
            ("page_size_cap", format!("{:#x}", c.page_size_cap)),
            ("max_qp", c.max_qp.to_string()),
            ("max_qp_wr", c.max_qp_wr.to_string()),
            ("max_sge", c.max_sge.to_string()),
            ("max_sge_rd", c.max_sge_rd.to_string()),
            ("max_cq", c.max_cq.to_string()),
            ("max_cqe", c.max_cqe.to_string()),
            ("max_mr", c.max_mr.to_string()),
            ("max_pd", c.max_pd.to_string()),
            ("max_qp_rd_atom", c.max_qp_rd_atom.to_string()),
            ("max_qp_init_rd_atom", c.max_qp_init_rd_atom.to_string()),
            ("max_res_rd_atom", c.max_res_rd_atom.to_string()),
            (
                "atomic_cap",
                match c.atomic_cap {
                    softverbs::AtomicCap::None => "ATOMIC_NONE (0)",
                    softverbs::AtomicCap::Hca => "ATOMIC_HCA (1)",
                    softverbs::AtomicCap::Glob => "ATOMIC_GLOB (2)",
                }
                .to_string(),
            ),
            ("max_mw", c.max_mw.to_string()),
            ("max_ah", c.max_ah.to_string()),
            ("max_srq", c.max_srq.to_string()),
            ("max_srq_wr", c.max_srq_wr.to_string()),
            ("max_srq_sge", c.max_srq_sge.to_string()),
            ("max_inline_data", c.max_inline_data.to_string()),
            ("max_pkeys", c.max_pkeys.to_string()),
            ("local_ca_ack_delay", c.local_ca_ack_delay.to_string()),
        ];
        for (k, v) in rows {
            println!(
                "\t{k}:{}{v}",
                "\t".repeat(4usize.saturating_sub((k.len() + 2) / 8).max(1))
            );
        }
        println!("\tqp_types:\t\t\t{}", c.qp_types.names().join(", "));
        println!("\toperations:\t\t\t{}", c.ops.names().join(", "));
        for p in &d.ports {
            println!("\t\tport:\t{}", p.port);
            let active = p.state == softverbs::PortState::Active;
            println!(
                "\t\t\tstate:\t\t\t{}",
                if active {
                    "PORT_ACTIVE (4)"
                } else {
                    "PORT_DOWN (1)"
                }
            );
            println!("\t\t\tmax_mtu:\t\t{} ({})", p.max_mtu, mtu_enum(p.max_mtu));
            println!(
                "\t\t\tactive_mtu:\t\t{} ({})",
                p.active_mtu,
                mtu_enum(p.active_mtu)
            );
            println!("\t\t\tlink_layer:\t\t{}", p.link_layer);
            for (i, g) in d.gids.iter().enumerate() {
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
    let devs = selected(args.name.as_deref())?;
    let mut out = Vec::new();
    for d in &devs {
        for p in &d.ports {
            let state = if p.state == softverbs::PortState::Active {
                "ACTIVE"
            } else {
                "DOWN"
            };
            if args.json {
                out.push(json!({
                    "ifname": d.name, "port": p.port, "state": state,
                    "physical_state": if state == "ACTIVE" { "LINK_UP" } else { "DISABLED" },
                    "mtu": p.active_mtu, "max_mtu": p.max_mtu, "netdev": p.netdev, "udp": p.udp_addr,
                    "gids": d.gids.iter().map(|g| g.to_string()).collect::<Vec<_>>(),
                }));
            } else {
                let gids: Vec<String> = d.gids.iter().map(|g| g.to_string()).collect();
                println!(
                    "link {}/{} state {state} physical_state {} mtu {} netdev {} udp {} gids {}",
                    d.name,
                    p.port,
                    if state == "ACTIVE" {
                        "LINK_UP"
                    } else {
                        "DISABLED"
                    },
                    p.active_mtu,
                    p.netdev,
                    p.udp_addr,
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

/// Print resources as `rdma res show` does; shared with `perf --res` and
/// `pingpong --res`.
pub fn print_resources(kind: Option<&str>, json_out: bool) -> Result<()> {
    let res: Vec<Resource> = softverbs::resources()?
        .into_iter()
        .filter(|r| kind.is_none_or(|k| r.kind().as_str() == k))
        .collect();
    if json_out {
        println!("{}", serde_json::to_string(&res)?);
        return Ok(());
    }
    if res.is_empty() {
        println!("(no resources: the embedded backend shows this process's objects; use --res at the end of perf or pingpong)");
    }
    for r in &res {
        let who = format!("comm {} pid {}", r.comm, r.pid);
        let line = match &r.detail {
            ResDetail::Pd { pdn } => format!("pd {pdn}"),
            ResDetail::Mr { pdn, lkey, rkey, addr, len, access } => {
                format!("mr lkey {lkey:#x} rkey {rkey:#x} iova {addr:#x} mrlen {len} access {access:#x} pdn {pdn}")
            }
            ResDetail::Mw { pdn, rkey, mw_type, bound_mr } => {
                format!("mw rkey {rkey:#x} type {mw_type} pdn {pdn}{}", bound_mr.map(|l| format!(" mr {l:#x}")).unwrap_or_default())
            }
            ResDetail::Channel {} => "channel".to_string(),
            ResDetail::Cq { cqn, cqe, channel } => format!("cq cqn {cqn} cqe {cqe} channel {}", if *channel { "yes" } else { "no" }),
            ResDetail::Srq { pdn, srqn, max_wr, max_sge, limit } => {
                format!("srq srqn {srqn} max_wr {max_wr} max_sge {max_sge} limit {limit} pdn {pdn}")
            }
            ResDetail::Qp { pdn, qpn, qp_type, state, sq_psn, rq_psn, path_mtu, dest_qpn, dest_gid, .. } => format!(
                "qp lqpn {qpn} rqpn {dest_qpn} type {qp_type} state {state} sq-psn {sq_psn} rq-psn {rq_psn} path-mtu {path_mtu} dgid {dest_gid} pdn {pdn}"
            ),
            ResDetail::Ah { pdn, id, dgid } => format!("ah {id} dgid {dgid} pdn {pdn}"),
        };
        println!("link {}/1 {line} {who}", r.device);
    }
    Ok(())
}

/// `softverbs res`.
pub fn res(args: &ResArgs) -> Result<ExitCode> {
    print_resources(args.kind.as_deref(), args.json)?;
    Ok(ExitCode::SUCCESS)
}

/// Print counters as `rdma statistic show` does; shared with `--stats`.
pub fn print_stats(name: Option<&str>, qp: Option<u32>, json_out: bool) -> Result<()> {
    let devs = selected(name)?;
    let mut all = Vec::new();
    for d in &devs {
        let c = softverbs::counters(&d.name)?;
        let mut v = serde_json::to_value(c)?;
        if let Some(qpn) = qp {
            let qps: Vec<Resource> = softverbs::resources()?
                .into_iter()
                .filter(|r| {
                    r.device == d.name
                        && matches!(r.detail, ResDetail::Qp { qpn: q, .. } if q == qpn)
                })
                .collect();
            if qps.is_empty() {
                bail!("no QP {qpn} on {} in this process", d.name);
            }
            v = json!({ "qp": qpn, "note": "per-QP counters are in `res show qp -j` (query_qp)" });
        }
        if json_out {
            all.push(json!({ "ifname": d.name, "port": 1, "counters": v }));
            continue;
        }
        let mut line = format!("link {}/1", d.name);
        flatten("", &v, &mut line);
        println!("{line}");
    }
    if json_out {
        println!("{}", Value::Array(all));
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
