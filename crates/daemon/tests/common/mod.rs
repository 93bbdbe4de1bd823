//! Helpers shared by the daemon's multi-process tests: an RC endpoint
//! over the raw client API, the one-line "card" peers exchange, and child
//! processes (this test binary, an ignored test as the entry point)
//! driven through their stdin and stdout.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;

use softverbs_core::calls::VerbsCalls;
use softverbs_core::driver::AhAttr;
use softverbs_core::events::CompChannel;
use softverbs_core::{ModifyAttrs, QpCreate};
use softverbs_daemon::client::{Client, CompQueue, SharedMr, WorkQueue};
use softverbs_transport::{Access, Mtu, QpState, QpType};
use softverbs_wire::Gid;

/// One RC endpoint over the daemon's raw client API.
pub struct Side {
    pub c: Client,
    pub pd: softverbs_core::PdRef,
    pub qp: softverbs_core::QpRef,
    pub sq: WorkQueue,
    pub rq: WorkQueue,
    pub cq: CompQueue,
    pub mr: SharedMr,
}

pub const MEM: usize = 1 << 16;

pub fn side(path: &Path, dev: &str, channel: Option<Arc<CompChannel>>) -> Side {
    let c = Client::open(path, dev).unwrap();
    let pd = c.alloc_pd().unwrap();
    let cq = c.create_cq(256, None).unwrap();
    let qp = c
        .create_qp(
            pd.handle,
            &QpCreate {
                qp_type: QpType::Rc,
                send_cq: cq.handle,
                recv_cq: cq.handle,
                srq: None,
                max_send_wr: 64,
                max_recv_wr: 64,
                max_send_sge: 1,
                max_recv_sge: 1,
                max_inline_data: 64,
                sq_sig_all: false,
            },
        )
        .unwrap();
    let mr = c
        .reg_shared(
            pd.handle,
            MEM,
            Access::LOCAL_WRITE | Access::REMOTE_WRITE | Access::REMOTE_READ,
        )
        .unwrap();
    let sq = c.send_queue(qp.handle, 64, 1, 64).unwrap();
    let rq = c.recv_queue(qp.handle, 64, 1, false).unwrap();
    let cqr = c.comp_queue(cq.handle, cq.id, 256, channel).unwrap();
    Side {
        c,
        pd,
        qp,
        sq,
        rq,
        cq: cqr,
        mr,
    }
}

/// Polls `s`'s QP state for up to 5 s until it is `want`; returns the last
/// state seen. A query answered `Busy` (the daemon's own modify holds the
/// QP at that instant) is simply asked again.
pub fn wait_qp_state(s: &Side, want: QpState) -> QpState {
    let mut state = None;
    for _ in 0..500 {
        match s.c.query_qp(s.qp.handle) {
            Ok(attrs) => state = Some(attrs.state),
            Err(softverbs_core::VerbsError::Busy { .. }) => {}
            Err(e) => panic!("query_qp: {e}"),
        }
        if state == Some(want) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    state.expect("query_qp answered Busy for 5 s")
}

/// What a peer needs to connect: `qpn gid rkey addr` on one line.
pub fn card(s: &Side) -> String {
    format!(
        "{} {} {} {}",
        s.qp.qpn,
        s.c.query_gid(1, 1).unwrap(),
        s.mr.r.rkey,
        s.mr.r.addr
    )
}

pub struct Peer {
    pub qpn: u32,
    pub gid: Gid,
    pub rkey: u32,
    pub addr: u64,
}

pub fn parse_card(l: &str) -> Peer {
    let f: Vec<&str> = l.split_whitespace().collect();
    Peer {
        qpn: f[0].parse().unwrap(),
        gid: f[1].parse().unwrap(),
        rkey: f[2].parse().unwrap(),
        addr: f[3].parse().unwrap(),
    }
}

/// INIT → RTR → RTS toward `p` (short retry timer: 4 ms × 2^... see
/// `timeout`, 3 retries, so a dead peer is an error within a second).
pub fn connect(s: &Side, p: &Peer) {
    let h = s.qp.handle;
    let m = |a: ModifyAttrs| s.c.modify_qp(h, &a).unwrap();
    m(ModifyAttrs {
        qp_state: Some(QpState::Init),
        pkey_index: Some(0),
        port_num: Some(1),
        qp_access_flags: Some(Access::LOCAL_WRITE | Access::REMOTE_WRITE | Access::REMOTE_READ),
        ..Default::default()
    });
    m(ModifyAttrs {
        qp_state: Some(QpState::Rtr),
        path_mtu: Some(Mtu::Mtu1024),
        dest_qp_num: Some(p.qpn),
        rq_psn: Some(1),
        max_dest_rd_atomic: Some(1),
        min_rnr_timer: Some(1),
        ah_attr: Some(AhAttr {
            dgid: p.gid,
            sgid_index: 1,
            hop_limit: 64,
            traffic_class: 0,
            flow_label: 0,
            sl: 0,
            port: 1,
        }),
        ..Default::default()
    });
    m(ModifyAttrs {
        qp_state: Some(QpState::Rts),
        sq_psn: Some(1),
        timeout: Some(12),
        retry_cnt: Some(3),
        rnr_retry: Some(3),
        max_rd_atomic: Some(1),
        ..Default::default()
    });
}

pub struct Kid {
    pub child: Child,
    out: BufReader<ChildStdout>,
    inp: ChildStdin,
}

impl Kid {
    pub fn spawn(test: &str, env: &[(&str, &str)]) -> Kid {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args(["--exact", test, "--nocapture", "--include-ignored"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let inp = child.stdin.take().unwrap();
        Kid { child, out, inp }
    }

    /// The next line the child prints that starts with `tag`.
    pub fn line(&mut self, tag: &str) -> String {
        let mut l = String::new();
        loop {
            l.clear();
            assert!(
                self.out.read_line(&mut l).unwrap() > 0,
                "child exited before printing {tag}"
            );
            if let Some(rest) = l.trim_end().strip_prefix(tag) {
                return rest.trim().to_string();
            }
        }
    }

    pub fn say(&mut self, l: &str) {
        writeln!(self.inp, "{l}").unwrap();
        self.inp.flush().unwrap();
    }
}

pub fn stdin_line() -> String {
    let mut l = String::new();
    std::io::stdin().read_line(&mut l).unwrap();
    l.trim().to_string()
}
