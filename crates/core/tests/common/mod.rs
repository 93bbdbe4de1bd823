//! A fake driver: plain maps, no networking, a log of every create and
//! destroy, and switches to make it misbehave.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use softverbs_core::caps::{DeviceCaps, QpTypes};
use softverbs_core::driver::*;
use softverbs_core::events::{AsyncEvents, CompChannel};
use softverbs_core::mem::{Backing, MemBlock};
use softverbs_core::uapi::DriverSpec;
use softverbs_core::{Device, Owner, Result, VerbsError};
use softverbs_transport::{Access, ModifyQp, QpAttrs, QpCounters, QpState, QpType, RecvWr, SendWr};
use softverbs_wire::Gid;

#[derive(Default)]
pub struct State {
    pub pds: BTreeMap<u32, ()>,
    pub mrs: BTreeMap<u32, (u32, Backing)>,
    pub mws: BTreeMap<u32, u32>,
    pub cqs: BTreeMap<u32, u32>,
    pub srqs: BTreeMap<u32, SrqAttr>,
    pub qps: BTreeMap<u32, (QpInit, QpState, QpAttrs)>,
    pub ahs: BTreeMap<u32, AhAttr>,
}

impl State {
    pub fn total(&self) -> usize {
        self.pds.len()
            + self.mrs.len()
            + self.mws.len()
            + self.cqs.len()
            + self.srqs.len()
            + self.qps.len()
            + self.ahs.len()
    }
}

pub struct Fake {
    pub name: String,
    pub caps: DeviceCaps,
    pub spec: Option<&'static DriverSpec>,
    pub st: Mutex<State>,
    pub log: Mutex<Vec<String>>,
    next: AtomicU32,
    /// Grant fewer send WRs than asked (a driver bug the core catches).
    pub shortchange: AtomicBool,
    /// Refuse every create with NoResources.
    pub full: AtomicBool,
}

impl Fake {
    pub fn new(name: &str, caps: DeviceCaps) -> Arc<Self> {
        Arc::new(Fake {
            name: name.into(),
            caps,
            spec: None,
            st: Mutex::default(),
            log: Mutex::default(),
            next: AtomicU32::new(1),
            shortchange: AtomicBool::new(false),
            full: AtomicBool::new(false),
        })
    }

    pub fn rxe() -> Arc<Self> {
        Self::new("fake0", DeviceCaps::rxe_like(0x1234))
    }

    pub fn ud_only() -> Arc<Self> {
        let mut caps = DeviceCaps::rxe_like(0x99);
        caps.qp_types = QpTypes {
            ud: true,
            ..QpTypes::default()
        };
        caps.ops.srq = false;
        caps.ops.memory_windows = false;
        caps.ops.rdma_read = false;
        caps.ops.rdma_write = false;
        caps.ops.atomics = false;
        Self::new("ud0", caps)
    }

    pub fn with_spec(name: &str, spec: &'static DriverSpec) -> Arc<Self> {
        Arc::new(Fake {
            spec: Some(spec),
            ..Arc::try_unwrap(Self::new(name, DeviceCaps::rxe_like(7)))
                .ok()
                .unwrap()
        })
    }

    fn id(&self) -> Result<u32> {
        if self.full.load(Ordering::Relaxed) {
            return Err(VerbsError::NoResources("the fake is full".into()));
        }
        Ok(self.next.fetch_add(1, Ordering::Relaxed))
    }

    fn log(&self, s: String) {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).push(s);
    }

    pub fn st(&self) -> std::sync::MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn take_log(&self) -> Vec<String> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }
}

fn nf(what: &str, id: u32) -> VerbsError {
    VerbsError::NotFound(format!("{what} {id}"))
}

impl Driver for Fake {
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> &str {
        "fake"
    }
    fn caps(&self) -> &DeviceCaps {
        &self.caps
    }
    fn port(&self, port: u8) -> Result<PortAttr> {
        if port != 1 {
            return Err(VerbsError::invalid(format!("no port {port}")));
        }
        Ok(PortAttr {
            port: 1,
            state: PortState::Active,
            max_mtu: 4096,
            active_mtu: 1024,
            gid_tbl_len: 2,
            link_layer: "Ethernet",
            netdev: "lo".into(),
            udp_addr: "127.0.0.1:4791".into(),
        })
    }
    fn gids(&self, _port: u8) -> Result<Vec<Gid>> {
        Ok(vec![
            Gid::from_ipv4("127.0.0.1".parse().unwrap()),
            Gid::from_ipv4("127.0.0.2".parse().unwrap()),
        ])
    }
    fn counters(&self) -> DeviceCounters {
        DeviceCounters {
            sent_pkts: 42,
            ..Default::default()
        }
    }
    fn alloc_pd(&self) -> Result<u32> {
        let id = self.id()?;
        self.st().pds.insert(id, ());
        self.log(format!("alloc_pd {id}"));
        Ok(id)
    }
    fn dealloc_pd(&self, pd: u32) -> Result<()> {
        self.st().pds.remove(&pd).ok_or_else(|| nf("pd", pd))?;
        self.log(format!("dealloc_pd {pd}"));
        Ok(())
    }
    fn reg_mr(&self, pd: u32, backing: Backing, access: Access) -> Result<MrKeys> {
        let iova = backing.addr();
        self.reg_mr_iova(pd, backing, iova, access)
    }
    fn reg_mr_iova(&self, pd: u32, backing: Backing, iova: u64, _access: Access) -> Result<MrKeys> {
        let id = self.id()?;
        self.st().mrs.insert(id, (pd, backing));
        self.log(format!("reg_mr {id} iova {iova:#x}"));
        Ok(MrKeys {
            lkey: id,
            rkey: id | 0x100,
        })
    }
    fn rereg_mr(&self, lkey: u32, change: MrRereg) -> Result<()> {
        let mut st = self.st();
        let mr = st.mrs.get_mut(&lkey).ok_or_else(|| nf("mr", lkey))?;
        if let Some(pd) = change.pd {
            mr.0 = pd;
        }
        let iova = change.memory.map(|(b, iova)| {
            mr.1 = b;
            iova
        });
        drop(st);
        self.log(format!(
            "rereg_mr {lkey} pd {:?} access {:?} iova {iova:x?}",
            change.pd,
            change.access.map(|a| a.0)
        ));
        Ok(())
    }
    fn dereg_mr(&self, lkey: u32) -> Result<()> {
        self.st().mrs.remove(&lkey).ok_or_else(|| nf("mr", lkey))?;
        self.log(format!("dereg_mr {lkey}"));
        Ok(())
    }
    fn alloc_mw(&self, pd: u32, _t: MwType) -> Result<u32> {
        let id = self.id()?;
        self.st().mws.insert(id, pd);
        self.log(format!("alloc_mw {id}"));
        Ok(id)
    }
    fn bind_mw(&self, _qpn: u32, mw_rkey: u32, _bind: MwBind) -> Result<u32> {
        let mut st = self.st();
        let pd = st.mws.remove(&mw_rkey).ok_or_else(|| nf("mw", mw_rkey))?;
        let new = (mw_rkey & !0xff) + ((mw_rkey + 1) & 0xff);
        let new = if new == mw_rkey {
            mw_rkey + 0x1000
        } else {
            new + 0x1000
        };
        st.mws.insert(new, pd);
        Ok(new)
    }
    fn dealloc_mw(&self, rkey: u32) -> Result<()> {
        self.st().mws.remove(&rkey).ok_or_else(|| nf("mw", rkey))?;
        self.log(format!("dealloc_mw {rkey}"));
        Ok(())
    }
    fn invalidate(&self, _pd: u32, _rkey: u32) -> Result<()> {
        Ok(())
    }
    fn create_cq(
        &self,
        cqe: u32,
        _channel: Option<Arc<CompChannel>>,
        _events: Arc<AsyncEvents>,
    ) -> Result<(u32, u32)> {
        let id = self.id()?;
        let granted = cqe.next_power_of_two();
        self.st().cqs.insert(id, granted);
        self.log(format!("create_cq {id}"));
        Ok((id, granted))
    }
    fn resize_cq(&self, cq: u32, cqe: u32) -> Result<u32> {
        let mut st = self.st();
        let c = st.cqs.get_mut(&cq).ok_or_else(|| nf("cq", cq))?;
        *c = cqe;
        Ok(cqe)
    }
    fn destroy_cq(&self, cq: u32) -> Result<()> {
        self.st().cqs.remove(&cq).ok_or_else(|| nf("cq", cq))?;
        self.log(format!("destroy_cq {cq}"));
        Ok(())
    }
    fn poll_cq(&self, _cq: u32, _max: usize, _out: &mut Vec<Wc>) -> Result<usize> {
        Ok(0)
    }
    fn req_notify_cq(&self, _cq: u32, _solicited_only: bool) -> Result<()> {
        Ok(())
    }
    fn create_srq(&self, _pd: u32, attr: SrqAttr, _events: Arc<AsyncEvents>) -> Result<u32> {
        let id = self.id()?;
        self.st().srqs.insert(id, attr);
        self.log(format!("create_srq {id}"));
        Ok(id)
    }
    fn modify_srq(&self, srq: u32, max_wr: Option<u32>, limit: Option<u32>) -> Result<()> {
        let mut st = self.st();
        let a = st.srqs.get_mut(&srq).ok_or_else(|| nf("srq", srq))?;
        if let Some(w) = max_wr {
            a.max_wr = w;
        }
        if let Some(l) = limit {
            a.limit = l;
        }
        Ok(())
    }
    fn query_srq(&self, srq: u32) -> Result<SrqAttr> {
        self.st()
            .srqs
            .get(&srq)
            .copied()
            .ok_or_else(|| nf("srq", srq))
    }
    fn destroy_srq(&self, srq: u32) -> Result<()> {
        self.st().srqs.remove(&srq).ok_or_else(|| nf("srq", srq))?;
        self.log(format!("destroy_srq {srq}"));
        Ok(())
    }
    fn post_srq_recv(&self, _srq: u32, _wr: RecvWr) -> Result<()> {
        Ok(())
    }
    fn create_qp(&self, _pd: u32, init: &QpInit, _e: Arc<AsyncEvents>) -> Result<(u32, QpInit)> {
        let id = self.id()?;
        let mut granted = init.clone();
        if self.shortchange.load(Ordering::Relaxed) {
            granted.max_send_wr = init.max_send_wr / 2;
        }
        self.st()
            .qps
            .insert(id, (granted.clone(), QpState::Reset, QpAttrs::default()));
        self.log(format!("create_qp {id}"));
        Ok((id, granted))
    }
    fn modify_qp(&self, qpn: u32, m: &ModifyQp) -> Result<()> {
        let mut st = self.st();
        let (_, state, a) = st.qps.get_mut(&qpn).ok_or_else(|| nf("qp", qpn))?;
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = m.$f { a.$f = v; } )* };
        }
        set!(
            path_mtu,
            qkey,
            dest_qpn,
            dgid,
            rq_psn,
            sq_psn,
            timeout,
            retry_cnt,
            rnr_retry,
            min_rnr_timer,
            max_rd_atomic,
            max_dest_rd_atomic,
            access,
            pkey
        );
        if let Some(s) = m.state {
            *state = s;
        }
        Ok(())
    }
    fn query_qp(&self, qpn: u32) -> Result<QpInfo> {
        let st = self.st();
        let (init, state, attrs) = st.qps.get(&qpn).ok_or_else(|| nf("qp", qpn))?;
        Ok(QpInfo {
            qpn,
            state: *state,
            attrs: *attrs,
            init: init.clone(),
            counters: QpCounters {
                sent_pkts: qpn.into(),
                acks_sent: 3,
                ..Default::default()
            },
        })
    }
    fn destroy_qp(&self, qpn: u32) -> Result<()> {
        self.st().qps.remove(&qpn).ok_or_else(|| nf("qp", qpn))?;
        self.log(format!("destroy_qp {qpn}"));
        Ok(())
    }
    fn post_send(&self, _qpn: u32, _wr: SendWr) -> Result<()> {
        Ok(())
    }
    fn post_recv(&self, _qpn: u32, _wr: RecvWr) -> Result<()> {
        Ok(())
    }
    fn create_ah(&self, _pd: u32, attr: AhAttr) -> Result<u32> {
        let id = self.id()?;
        self.st().ahs.insert(id, attr);
        self.log(format!("create_ah {id}"));
        Ok(id)
    }
    fn destroy_ah(&self, ah: u32) -> Result<()> {
        self.st().ahs.remove(&ah).ok_or_else(|| nf("ah", ah))?;
        self.log(format!("destroy_ah {ah}"));
        Ok(())
    }
    fn driver_spec(&self) -> Option<&'static DriverSpec> {
        self.spec
    }
}

pub fn owner(pid: u32, comm: &str) -> Owner {
    Owner {
        pid,
        comm: comm.into(),
    }
}

pub fn device(f: &Arc<Fake>) -> Arc<Device> {
    Device::new(f.clone())
}

pub fn block(len: usize) -> Backing {
    Backing::Block(Arc::new(MemBlock::new(len)))
}

pub fn av() -> AhAttr {
    AhAttr {
        dgid: Gid::from_ipv4("127.0.0.2".parse().unwrap()),
        sgid_index: 0,
        hop_limit: 64,
        traffic_class: 0,
        flow_label: 0,
        sl: 0,
        port: 1,
    }
}

pub fn qp_type_ok(t: QpType) -> QpType {
    t
}
