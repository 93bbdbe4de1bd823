//! perftest 6.06's computations and output (docs/oob-and-tools.md §2.5,
//! §2.6): bandwidth rows from per-WR post/completion timestamps, latency
//! rows from per-iteration timestamps, the banner, the address lines and
//! the tables with perftest's exact printf formats, and JSON objects.
//! Timestamps are in "cycles"; with a nanosecond clock pass
//! `cycles_per_sec = 1e9`.

use serde::Serialize;

use super::msg::QpInfoMsg;
use super::{Kind, PerfTest, Verb};

/// 87 dashes.
pub const RESULT_LINE: &str =
    "---------------------------------------------------------------------------------------";
/// The bandwidth header, MB/sec (MiB/s).
pub const RESULT_FMT: &str =
    " #bytes     #iterations    BW peak[MB/sec]    BW average[MB/sec]   MsgRate[Mpps]";
/// The bandwidth header with `--report_gbits`.
pub const RESULT_FMT_G: &str =
    " #bytes     #iterations    BW peak[Gb/sec]    BW average[Gb/sec]   MsgRate[Mpps]";
/// The latency header.
pub const RESULT_FMT_LAT: &str = " #bytes #iterations    t_min[usec]    t_max[usec]  t_typical[usec]    t_avg[usec]    t_stdev[usec]   99% percentile[usec]   99.9% percentile[usec] ";
/// The latency header in duration mode.
pub const RESULT_FMT_LAT_DUR: &str = " #bytes        #iterations       t_avg[usec]    tps average";
/// The server's preamble, printed before `accept`.
pub const WAITING_FOR_CLIENT: &str =
    "\n************************************\n* Waiting for client to connect... *\n************************************\n";

/// C's `%#0Nx`: the width includes the `0x`, and 0 gets no `0x`.
pub fn c_alt_hex(v: u64, width: usize) -> String {
    if v == 0 {
        format!("{:0width$x}", 0)
    } else {
        format!("{:#0width$x}", v)
    }
}

/// The address line(s) of one QP (`ctx_print_pingpong_data`), each ending
/// in `\n`: `side` is `"local"` or `"remote"`. Read adds `OUT`, read and
/// write add `RKey`/`VAddr`; the GID line is printed when the key has one.
pub fn address_lines(side: &str, test: PerfTest, k: &QpInfoMsg) -> String {
    let mut s = format!(
        " {side} address: LID {} QPN {} PSN {}",
        c_alt_hex(k.lid as u64, 4),
        c_alt_hex(k.qpn as u64, 6),
        c_alt_hex(k.psn as u64, 6)
    );
    if test.verb == Verb::Read {
        s.push_str(&format!(" OUT {}", c_alt_hex(k.out_reads as u64, 4)));
    }
    if matches!(test.verb, Verb::Read | Verb::Write) {
        s.push_str(&format!(
            " RKey {} VAddr {}",
            c_alt_hex(k.rkey as u64, 8),
            c_alt_hex(k.vaddr, 16)
        ));
    }
    s.push('\n');
    if let Some(gid) = k.gid {
        let bytes: Vec<String> = gid.iter().map(|b| format!("{b:02}")).collect();
        s.push_str(&format!(" GID: {}\n", bytes.join(":")));
    }
    s
}

/// What the banner shows (`ctx_print_test_info`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BannerInfo {
    /// The test.
    pub test: PerfTest,
    /// Atomic tests: `"FETCH_AND_ADD"` or `"CMP_AND_SWAP"`.
    pub atomic_name: Option<&'static str>,
    /// `-b`.
    pub duplex: bool,
    /// `-l`.
    pub post_list: u32,
    /// True on the client.
    pub is_client: bool,
    /// Device name.
    pub device: String,
    /// QPs.
    pub num_qps: u32,
    /// `"RC"`, `"UC"`, `"UD"`.
    pub connection: &'static str,
    /// `ibv_wr*` API line (`--use_old_post_send` turns it OFF).
    pub wr_api: bool,
    /// TX depth.
    pub tx_depth: u32,
    /// RX depth.
    pub rx_depth: u32,
    /// CQ moderation.
    pub cq_mod: u32,
    /// MTU in bytes after negotiation.
    pub mtu: u32,
    /// `"Ethernet"` or `"IB"`.
    pub link_type: &'static str,
    /// GID index, if any.
    pub gid_index: Option<u32>,
    /// Max inline data (write/send).
    pub inline_size: u32,
    /// Outstanding reads (read/atomic).
    pub out_reads: u32,
    /// `-e`: the text after "Using " (perftest prints `%s_comp%d`).
    pub events: Option<String>,
}

/// The test title, e.g. `Atomic FETCH_AND_ADD BW Test`.
pub fn title(b: &BannerInfo) -> String {
    let mut s = String::from(match b.test.verb {
        Verb::Send => "Send ",
        Verb::Write => "RDMA_Write ",
        Verb::Read => "RDMA_Read ",
        Verb::Atomic => "Atomic ",
    });
    if let Some(a) = b.atomic_name {
        s.push_str(a);
        s.push(' ');
    }
    if b.duplex {
        s.push_str("Bidirectional ");
    }
    if b.post_list > 1 {
        s.push_str("Post List ");
    }
    s.push_str(if b.test.is_bw() { "BW " } else { "Latency " });
    s.push_str("Test");
    s
}

/// The banner block, lines ending in `\n`.
pub fn banner(b: &BannerInfo) -> String {
    let bw = b.test.is_bw();
    let on = |x: bool| if x { "ON" } else { "OFF" };
    let mut s = format!("{RESULT_LINE}\n                    {}\n", title(b));
    if let Some(ev) = &b.events {
        s.push_str(&format!(" Test with events. Using {ev}\n"));
    }
    s.push_str(&format!(
        " Dual-port       : OFF\t\tDevice         : {}\n",
        b.device
    ));
    s.push_str(&format!(
        " Number of qps   : {}\t\tTransport type : IB\n",
        b.num_qps
    ));
    s.push_str(&format!(
        " Connection type : {}\t\tUsing SRQ      : OFF\n",
        b.connection
    ));
    let relaxed = !(b.test.verb == Verb::Write && b.test.kind == Kind::Lat);
    s.push_str(&format!(" PCIe relax order: {}\n", on(relaxed)));
    s.push_str(&format!(" ibv_wr* API     : {}\n", on(b.wr_api)));
    if b.is_client || b.duplex {
        s.push_str(&format!(
            " TX depth        : {}\n",
            if bw { b.tx_depth } else { 1 }
        ));
    }
    if b.test.verb == Verb::Send && (!b.is_client || b.duplex) {
        s.push_str(&format!(" RX depth        : {}\n", b.rx_depth));
    }
    if b.post_list > 1 {
        s.push_str(&format!(" Post List       : {}\n", b.post_list));
    }
    if bw {
        s.push_str(&format!(" CQ Moderation   : {}\n", b.cq_mod));
    }
    s.push_str(&format!(" Mtu             : {}[B]\n", b.mtu));
    s.push_str(&format!(" Link type       : {}\n", b.link_type));
    if let Some(g) = b.gid_index {
        s.push_str(&format!(" GID index       : {g}\n"));
    }
    if matches!(b.test.verb, Verb::Read | Verb::Atomic) {
        s.push_str(&format!(" Outstand reads  : {}\n", b.out_reads));
    } else {
        s.push_str(&format!(" Max inline data : {}[B]\n", b.inline_size));
    }
    s.push_str(" rdma_cm QPs\t : OFF\n Data ex. method : Ethernet\n");
    s.push_str(RESULT_LINE);
    s.push('\n');
    s
}

/// One bandwidth row (`print_report_bw`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct BwRow {
    /// Message size.
    pub bytes: u64,
    /// Completed iterations (over all QPs).
    pub iterations: u64,
    /// Peak bandwidth (MiB/s or Gb/s); 0 without peak.
    pub bw_peak: f64,
    /// Average bandwidth.
    pub bw_average: f64,
    /// Million messages per second.
    pub msg_rate_mpps: f64,
    /// True for Gb/s, false for MB/sec (MiB/s).
    pub gbits: bool,
}

/// Inputs of [`bw_row`].
#[derive(Clone, Copy, Debug)]
pub struct BwInput<'a> {
    /// Message size.
    pub size: u64,
    /// `iters * num_qps` (duration mode: the sample count).
    pub n: u64,
    /// Post time of each WR (`tposted`), at least `n` entries unless `no_peak`.
    pub tposted: &'a [u64],
    /// Completion time per WR index (`tcompleted`).
    pub tcompleted: &'a [u64],
    /// Clock rate (1e9 for nanoseconds).
    pub cycles_per_sec: f64,
    /// `-l`.
    pub post_list: u64,
    /// CQ moderation.
    pub cq_mod: u64,
    /// No peak: only `tposted[0]` and `tcompleted[0]` are used.
    pub no_peak: bool,
    /// Gb/s.
    pub gbits: bool,
}

/// `print_report_bw`'s arithmetic, with its integer divisions.
pub fn bw_row(i: &BwInput<'_>) -> BwRow {
    let ff: u64 = if i.gbits { 125_000_000 } else { 0x100000 };
    let n = i.n.max(1);
    let loc = if i.no_peak { 0 } else { (n - 1) as usize };
    let cycles = i.tcompleted[loc].wrapping_sub(i.tposted[0]).max(1) as f64;
    let bw_avg = (i.size as f64 * n as f64 * i.cycles_per_sec) / (cycles * ff as f64);
    let msg_rate = (n as f64 * i.cycles_per_sec) / (cycles * 1e6);
    let bw_peak = if i.no_peak {
        0.0
    } else {
        let n = n as usize;
        let cq_mod = i.cq_mod.max(1) as usize;
        let mut opt = i.tcompleted[0].wrapping_sub(i.tposted[0]);
        let mut upd = |j: usize, k: usize| {
            let t = i.tcompleted[j].wrapping_sub(i.tposted[k]) / (j - k + 1) as u64;
            opt = opt.min(t);
        };
        for k in (0..n).step_by(i.post_list.max(1) as usize) {
            let mut j = (k + 1).div_ceil(cq_mod) * cq_mod - 1;
            while j < n {
                upd(j, k);
                j += cq_mod;
            }
            if n.checked_rem(cq_mod) != Some(0) && n > k {
                upd(n - 1, k);
            }
        }
        let up = (i.size as f64 * i.cycles_per_sec) as u64;
        up as f64 / (opt.max(1) as f64 * ff as f64)
    };
    BwRow {
        bytes: i.size,
        iterations: i.n,
        bw_peak,
        bw_average: bw_avg,
        msg_rate_mpps: msg_rate,
        gbits: i.gbits,
    }
}

/// The bandwidth header for the unit.
pub fn bw_header(gbits: bool) -> &'static str {
    if gbits {
        RESULT_FMT_G
    } else {
        RESULT_FMT
    }
}

/// `REPORT_FMT` (or `REPORT_FMT_EXT` with Gb/s below 0.1), no newline.
pub fn format_bw_row(r: &BwRow) -> String {
    if r.gbits && r.bw_average < 0.1 {
        format!(
            " {:<7}    {}           {:<7.6}            {:<7.6}            {:<7.6}",
            r.bytes, r.iterations, r.bw_peak, r.bw_average, r.msg_rate_mpps
        )
    } else {
        format!(
            " {:<7}    {:<10}       {:<7.2}            {:<7.2}\t\t   {:<7.6}",
            r.bytes, r.iterations, r.bw_peak, r.bw_average, r.msg_rate_mpps
        )
    }
}

/// One latency row (`print_report_lat`), in microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct LatRow {
    /// Message size.
    pub bytes: u64,
    /// Iterations.
    pub iterations: u64,
    /// Smallest sample.
    pub t_min: f64,
    /// Second-largest sample (perftest drops the largest).
    pub t_max: f64,
    /// Median.
    pub t_typical: f64,
    /// Mean.
    pub t_avg: f64,
    /// Standard deviation of integer-truncated deviations.
    pub t_stdev: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p99_9: f64,
}

/// `print_report_lat`: latencies from the `iters` post timestamps of one
/// run. Read and atomic measure one round trip per sample; send and write
/// halve theirs. Returns `None` with fewer than 4 timestamps.
pub fn lat_row(test: PerfTest, size: u64, tposted: &[u64], cycles_per_sec: f64) -> Option<LatRow> {
    let iters = tposted.len();
    if iters < 4 {
        return None;
    }
    let mut delta: Vec<u64> = tposted
        .windows(2)
        .map(|w| w[1].wrapping_sub(w[0]))
        .collect();
    delta.sort_unstable();
    let rtt = if matches!(test.verb, Verb::Read | Verb::Atomic) {
        1.0
    } else {
        2.0
    };
    let q = cycles_per_sec / 1e6 * rtt;
    let n = iters - 1 - 2;
    let median = if (n - 1) % 2 == 1 {
        (delta[n / 2] + delta[n / 2 - 1]) / 2
    } else {
        delta[n / 2]
    };
    let avg = delta[..n].iter().map(|&d| d as f64 / q).sum::<f64>() / n as f64;
    let var = delta[..n]
        .iter()
        .map(|&d| {
            let dev = (avg - d as f64 / q) as i32;
            dev.wrapping_mul(dev) as f64
        })
        .sum::<f64>()
        / n as f64;
    let pct = |p: f64| delta[((n as f64 * p).ceil() as usize).min(delta.len() - 1)] as f64 / q;
    Some(LatRow {
        bytes: size,
        iterations: iters as u64,
        t_min: delta[0] as f64 / q,
        t_max: delta[n] as f64 / q,
        t_typical: median as f64 / q,
        t_avg: avg,
        t_stdev: var.sqrt(),
        p99: pct(0.99),
        p99_9: pct(0.999),
    })
}

/// `REPORT_FMT_LAT`, no newline.
pub fn format_lat_row(r: &LatRow) -> String {
    format!(
        " {:<7} {}          {:<7.2}        {:<7.2}      {:<7.2}  \t       {:<7.2}     \t{:<7.2}\t\t{:<7.2} \t\t{:<7.2}",
        r.bytes, r.iterations, r.t_min, r.t_max, r.t_typical, r.t_avg, r.t_stdev, r.p99, r.p99_9
    )
}

/// Duration-mode latency row (`print_report_lat_duration`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct LatDurRow {
    /// Message size.
    pub bytes: u64,
    /// Iterations in the sample window.
    pub iterations: u64,
    /// Mean latency in µs.
    pub t_avg: f64,
    /// Transactions per second.
    pub tps: f64,
}

/// `t_avg = cycles/MHz/rtt/iters`, `tps = iters/(cycles/(MHz·1e6))`.
pub fn lat_dur_row(
    test: PerfTest,
    size: u64,
    iters: u64,
    cycles: u64,
    cycles_per_sec: f64,
) -> LatDurRow {
    let mhz = cycles_per_sec / 1e6;
    let rtt = if matches!(test.verb, Verb::Read | Verb::Atomic) {
        1.0
    } else {
        2.0
    };
    LatDurRow {
        bytes: size,
        iterations: iters,
        t_avg: cycles as f64 / mhz / rtt / iters.max(1) as f64,
        tps: iters as f64 / (cycles.max(1) as f64 / (mhz * 1e6)),
    }
}

/// `REPORT_FMT_LAT_DUR`, no newline.
pub fn format_lat_dur_row(r: &LatDurRow) -> String {
    format!(
        " {:<7}       {}            {:<7.2}        {:<7.2}",
        r.bytes, r.iterations, r.t_avg, r.tps
    )
}

/// The JSON object of a run (`-j`).
#[derive(Clone, Debug, Serialize)]
pub struct JsonReport<'a> {
    /// `write_bw`, …
    pub test: &'static str,
    /// `"client"` or `"server"`.
    pub role: &'static str,
    /// `"MB/sec"` (MiB/s) or `"Gb/sec"` for bandwidth tests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bw_unit: Option<&'static str>,
    /// Bandwidth rows.
    #[serde(skip_serializing_if = "<[BwRow]>::is_empty")]
    pub bw: &'a [BwRow],
    /// Latency rows (µs).
    #[serde(skip_serializing_if = "<[LatRow]>::is_empty")]
    pub lat: &'a [LatRow],
}

/// Serialises a run's rows as one JSON object.
pub fn json_report(
    test: PerfTest,
    is_client: bool,
    bw: &[BwRow],
    lat: &[LatRow],
) -> serde_json::Value {
    let unit = bw
        .first()
        .map(|r| if r.gbits { "Gb/sec" } else { "MB/sec" });
    serde_json::to_value(JsonReport {
        test: test.name(),
        role: if is_client { "client" } else { "server" },
        bw_unit: unit,
        bw,
        lat,
    })
    .expect("plain data serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wbw() -> PerfTest {
        PerfTest::new(Verb::Write, Kind::Bw)
    }

    #[test]
    fn c_alt_hex_semantics() {
        assert_eq!(c_alt_hex(0, 4), "0000");
        assert_eq!(c_alt_hex(1, 4), "0x01");
        assert_eq!(c_alt_hex(0x14, 6), "0x0014");
        assert_eq!(c_alt_hex(0x5d1ed5, 6), "0x5d1ed5");
        assert_eq!(c_alt_hex(0x54c, 8), "0x00054c");
        assert_eq!(c_alt_hex(0, 8), "00000000");
        assert_eq!(c_alt_hex(0x55ef3f472000, 16), "0x0055ef3f472000");
    }

    #[test]
    fn address_lines_match_the_doc() {
        let mut gid = [0u8; 16];
        gid[10..].copy_from_slice(&[0xff, 0xff, 10, 77, 0, 2]);
        let k = QpInfoMsg {
            lid: 0,
            out_reads: 0x80,
            qpn: 0x14,
            psn: 0x5d1ed5,
            rkey: 0x54c,
            vaddr: 0x55ef3f472000,
            gid: Some(gid),
            srqn: 0,
        };
        assert_eq!(
            address_lines("local", wbw(), &k),
            " local address: LID 0000 QPN 0x0014 PSN 0x5d1ed5 RKey 0x00054c VAddr 0x0055ef3f472000\n GID: 00:00:00:00:00:00:00:00:00:00:255:255:10:77:00:02\n"
        );
        let read = PerfTest::new(Verb::Read, Kind::Bw);
        assert!(address_lines("remote", read, &k)
            .starts_with(" remote address: LID 0000 QPN 0x0014 PSN 0x5d1ed5 OUT 0x80 RKey"));
        let send = PerfTest::new(Verb::Send, Kind::Lat);
        let no_gid = QpInfoMsg { gid: None, ..k };
        assert_eq!(
            address_lines("local", send, &no_gid),
            " local address: LID 0000 QPN 0x0014 PSN 0x5d1ed5\n"
        );
    }

    #[test]
    fn banner_matches_the_doc() {
        let b = BannerInfo {
            test: wbw(),
            atomic_name: None,
            duplex: false,
            post_list: 1,
            is_client: true,
            device: "rxe0".into(),
            num_qps: 1,
            connection: "RC",
            wr_api: true,
            tx_depth: 128,
            rx_depth: 1,
            cq_mod: 100,
            mtu: 1024,
            link_type: "Ethernet",
            gid_index: Some(1),
            inline_size: 0,
            out_reads: 1,
            events: None,
        };
        let want = format!(
            "{RESULT_LINE}\n                    RDMA_Write BW Test\n Dual-port       : OFF\t\tDevice         : rxe0\n Number of qps   : 1\t\tTransport type : IB\n Connection type : RC\t\tUsing SRQ      : OFF\n PCIe relax order: ON\n ibv_wr* API     : ON\n TX depth        : 128\n CQ Moderation   : 100\n Mtu             : 1024[B]\n Link type       : Ethernet\n GID index       : 1\n Max inline data : 0[B]\n rdma_cm QPs\t : OFF\n Data ex. method : Ethernet\n{RESULT_LINE}\n"
        );
        assert_eq!(banner(&b), want);
        let a = BannerInfo {
            test: PerfTest::new(Verb::Atomic, Kind::Bw),
            atomic_name: Some("FETCH_AND_ADD"),
            ..b.clone()
        };
        assert_eq!(title(&a), "Atomic FETCH_AND_ADD BW Test");
        assert!(banner(&a).contains(" Outstand reads  : 1\n"));
        let l = BannerInfo {
            test: PerfTest::new(Verb::Read, Kind::Lat),
            ..b.clone()
        };
        assert_eq!(title(&l), "RDMA_Read Latency Test");
        assert!(!banner(&l).contains("CQ Moderation"));
        let s = BannerInfo {
            test: PerfTest::new(Verb::Send, Kind::Bw),
            is_client: false,
            rx_depth: 512,
            ..b
        };
        let sb = banner(&s);
        assert!(sb.contains(" RX depth        : 512\n") && !sb.contains("TX depth"));
    }

    #[test]
    fn bw_row_hand_computed() {
        // 4 WRs of 1 MiB, cq_mod 1, ns clock: posted at 0,10,20,30 µs,
        // completed at 1000,1500,3000,4000 µs.
        let tposted = [0, 10_000, 20_000, 30_000];
        let tcompleted = [1_000_000, 1_500_000, 3_000_000, 4_000_000];
        let input = BwInput {
            size: 1 << 20,
            n: 4,
            tposted: &tposted,
            tcompleted: &tcompleted,
            cycles_per_sec: 1e9,
            post_list: 1,
            cq_mod: 1,
            no_peak: false,
            gbits: false,
        };
        let r = bw_row(&input);
        // 4 MiB in 4 ms = 1000 MiB/s; 1e6 msg/s = 1 Mpps.
        assert!((r.bw_average - 1000.0).abs() < 1e-9, "{r:?}");
        assert!((r.msg_rate_mpps - 0.001).abs() < 1e-12);
        // Peak: the smallest (tcompleted[j]-tposted[i])/(j-i+1) is i=0,
        // j=1: 1.5e6/2 = 750000 ns per MiB → 1333.33 MiB/s.
        assert!((r.bw_peak - 1e9 / 750_000.0).abs() < 1e-9, "{}", r.bw_peak);
        assert_eq!(
            format_bw_row(&r),
            " 1048576    4                1333.33            1000.00\t\t   0.001000"
        );
        // No peak: tposted[0] is the start, tcompleted[0] the end.
        let g = bw_row(&BwInput {
            gbits: true,
            no_peak: true,
            tposted: &[0],
            tcompleted: &[4_000_000],
            ..input
        });
        // 4 MiB·8 / 4 ms = 8.388608 Gb/s.
        assert!((g.bw_average - 8.388608).abs() < 1e-9);
        assert_eq!(g.bw_peak, 0.0);
        assert!(format_bw_row(&g).starts_with(" 1048576    4                0.00       "));
        // Below 0.1 Gb/s the 6-decimal format is used.
        let slow = BwRow {
            bw_average: 0.05,
            ..g
        };
        assert_eq!(
            format_bw_row(&slow),
            " 1048576    4           0.000000            0.050000            0.001000"
        );
    }

    #[test]
    fn bw_row_against_the_capture() {
        // ib_write_bw -s 8192 -n 5 reported 6.31 / 6.31 / 0.000808: with
        // cq_mod 5 one completion at the end; 6.19 ms for 5 × 8 KiB.
        // Unsignalled WRs leave tcompleted at 0, so the initial
        // tcompleted[0]-tposted[0] wraps to a huge value, as in C.
        let t0 = 1_000_000_000_000u64;
        let tposted = [t0, t0 + 1_000, t0 + 2_000, t0 + 3_000, t0 + 4_000];
        let tcompleted = [0, 0, 0, 0, t0 + 6_190_000];
        let r = bw_row(&BwInput {
            size: 8192,
            n: 5,
            tposted: &tposted,
            tcompleted: &tcompleted,
            cycles_per_sec: 1e9,
            post_list: 1,
            cq_mod: 5,
            no_peak: false,
            gbits: false,
        });
        assert_eq!(
            format_bw_row(&r),
            " 8192       5                6.31               6.31   \t\t   0.000808"
        );
    }

    #[test]
    fn lat_row_hand_computed() {
        // 8 timestamps (ns) → 7 deltas: 10,20,30,40,50,60,1000 µs·2 (send
        // halves the round trip). Sorted; n = 7-2 = 5 samples used.
        let d_us = [20u64, 40, 60, 80, 100, 120, 2000];
        let mut t = vec![0u64];
        for d in d_us {
            t.push(t.last().unwrap() + d * 1000);
        }
        let r = lat_row(PerfTest::new(Verb::Send, Kind::Lat), 2, &t, 1e9).unwrap();
        assert_eq!(r.t_min, 10.0);
        assert_eq!(r.t_max, 60.0, "second-largest");
        assert_eq!(r.t_typical, 30.0, "median of 5");
        assert_eq!(r.t_avg, 30.0);
        // deviations 20,10,0,-10,-20 → squares 400,100,0,100,400 → /5 = 200.
        assert!((r.t_stdev - 200f64.sqrt()).abs() < 1e-12);
        // ceil(5*0.99)=5 → delta[5] = 60; ceil(5*0.999)=5 → 60.
        assert_eq!((r.p99, r.p99_9), (60.0, 60.0));
        assert_eq!(
            format_lat_row(&r),
            " 2       8          10.00          60.00        30.00    \t       30.00       \t14.14  \t\t60.00   \t\t60.00  "
        );
        // Even n: (n-1)%2 == 1 → mean of the two middle (integer division).
        let t: Vec<u64> = [0u64, 3, 4, 9, 10, 20, 21].to_vec();
        let r = lat_row(PerfTest::new(Verb::Read, Kind::Lat), 2, &t, 1e6).unwrap();
        // deltas 3,1,5,1,10,1 sorted 1,1,1,3,5,10; n=4; median (1+1)/2=1.
        assert_eq!((r.t_min, r.t_typical, r.t_max), (1.0, 1.0, 5.0));
        // avg 1.5, deviations truncated: 0,0,0,-1 → sum 1 → /4 → √0.25.
        assert_eq!(r.t_avg, 1.5);
        assert_eq!(r.t_stdev, 0.5);
        assert!(lat_row(PerfTest::new(Verb::Read, Kind::Lat), 2, &[0, 1, 2], 1e6).is_none());
    }

    #[test]
    fn duration_and_json() {
        let r = lat_dur_row(
            PerfTest::new(Verb::Write, Kind::Lat),
            2,
            1000,
            10_000_000,
            1e9,
        );
        assert_eq!((r.t_avg, r.tps), (5.0, 100_000.0));
        assert_eq!(
            format_lat_dur_row(&r),
            " 2             1000            5.00           100000.00"
        );
        let row = BwRow {
            bytes: 8,
            iterations: 5,
            bw_peak: 1.0,
            bw_average: 2.0,
            msg_rate_mpps: 0.5,
            gbits: false,
        };
        let v = json_report(wbw(), true, &[row], &[]);
        assert_eq!(v["test"], "write_bw");
        assert_eq!(v["bw_unit"], "MB/sec");
        assert_eq!(v["bw"][0]["bw_average"], 2.0);
        assert!(v.get("lat").is_none());
    }
}
