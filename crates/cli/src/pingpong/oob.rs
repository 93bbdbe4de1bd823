//! rdma-core `ibv_{rc,uc,ud,srq}_pingpong` out-of-band exchange
//! (`pp_client_exch_dest` / `pp_server_exch_dest`, docs/oob-and-tools.md §1.4).
//!
//! Each side sends `"%04x:%06x:%06x:%s"` (LID:QPN:PSN:GID, the GID as 32
//! lowercase hex digits in wire order) plus a NUL: 52 bytes. The client
//! writes first; the server moves its QP to RTR/RTS between reading the
//! client's message and writing its own, so the server side is split into
//! [`PpServer::read_remote`] and [`PpServer::reply`]. After the server's
//! reply the client writes `"done\0"`. srq exchanges [`SRQ_MAX_QP`] records
//! each way whatever `-q` is, unused ones all zero.

use std::time::Duration;

use super::net::{escape_bytes, Family, OobError, OobListener, OobStream};

/// Size of one address message, NUL included.
pub const MSG_LEN: usize = 52;
/// The client's last message.
pub const DONE: &[u8; 5] = b"done\0";
/// srq_pingpong always exchanges this many records (`MAX_QP`).
pub const SRQ_MAX_QP: usize = 256;

/// One QP's address as exchanged (`struct pingpong_dest`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PpDest {
    /// Port LID (0 on RoCE).
    pub lid: u16,
    /// QP number (24 bits).
    pub qpn: u32,
    /// Initial PSN (24 bits).
    pub psn: u32,
    /// GID in wire (network) byte order; all zero without `-g`.
    pub gid: [u8; 16],
}

impl PpDest {
    /// The 52-byte message, NUL terminated.
    pub fn encode(&self) -> [u8; MSG_LEN] {
        let mut text = format!("{:04x}:{:06x}:{:06x}:", self.lid, self.qpn, self.psn);
        for b in self.gid {
            text.push_str(&format!("{b:02x}"));
        }
        let mut out = [0u8; MSG_LEN];
        let n = text.len().min(MSG_LEN - 1);
        out[..n].copy_from_slice(&text.as_bytes()[..n]);
        out
    }

    /// Parses a message as the real tools do (`sscanf("%x:%x:%x:%s")`, then
    /// 32 hex digits of GID), strictly: anything else is an error that
    /// shows the bytes.
    pub fn decode(msg: &[u8]) -> Result<Self, OobError> {
        let bad = |reason: String| OobError::Malformed {
            what: "pingpong address message".to_string(),
            bytes: msg.to_vec(),
            reason,
        };
        let end = msg.iter().position(|&b| b == 0).unwrap_or(msg.len());
        let text =
            std::str::from_utf8(&msg[..end]).map_err(|_| bad("not ASCII text".to_string()))?;
        let fields: Vec<&str> = text.split(':').collect();
        if fields.len() != 4 {
            return Err(bad(format!(
                "expected 4 ':'-separated fields LID:QPN:PSN:GID, found {}",
                fields.len()
            )));
        }
        let hex = |name: &str, s: &str, max: u32| -> Result<u32, OobError> {
            let v = u32::from_str_radix(s, 16)
                .map_err(|_| bad(format!("{name} {s:?} is not a hexadecimal number")))?;
            if v > max {
                return Err(bad(format!("{name} {s:?} is larger than {max:#x}")));
            }
            Ok(v)
        };
        let lid = hex("LID", fields[0], 0xffff)? as u16;
        let qpn = hex("QPN", fields[1], 0xff_ffff)?;
        let psn = hex("PSN", fields[2], 0xff_ffff)?;
        let g = fields[3];
        if g.len() != 32 || !g.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad(format!("GID {g:?} is not 32 hexadecimal digits")));
        }
        let mut gid = [0u8; 16];
        for (i, byte) in gid.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&g[2 * i..2 * i + 2], 16).expect("checked hex");
        }
        Ok(PpDest { lid, qpn, psn, gid })
    }

    /// True when bytes 8..16 (the interface id) are non-zero: only then do
    /// the real tools build a global (GRH) address vector toward this peer.
    pub fn is_global(&self) -> bool {
        self.gid[8..].iter().any(|&b| b != 0)
    }
}

/// Timeouts of one exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PpTimeouts {
    /// Bound on the client's `connect`.
    pub connect: Duration,
    /// Bound on each read (`None`: forever).
    pub io: Option<Duration>,
    /// Bound on the server's wait for a client (`None`: forever, as the
    /// real servers).
    pub accept: Option<Duration>,
}

impl Default for PpTimeouts {
    fn default() -> Self {
        PpTimeouts {
            connect: Duration::from_secs(10),
            io: Some(Duration::from_secs(60)),
            accept: None,
        }
    }
}

/// The client side: connect, write ours, read theirs, write `done`.
#[derive(Debug)]
pub struct PpClient {
    stream: OobStream,
}

impl PpClient {
    /// Connects to the server (each resolved address once, no retry).
    pub fn connect(host: &str, port: u16, timeouts: PpTimeouts) -> Result<Self, OobError> {
        let stream = OobStream::connect(host, port, Family::Any, timeouts.connect, timeouts.io)?;
        Ok(PpClient { stream })
    }

    /// rc/uc/ud: sends `local`, returns the server's address, sends `done`
    /// and closes. The caller then moves its QP to RTR/RTS.
    pub fn exchange(self, local: &PpDest) -> Result<PpDest, OobError> {
        let mut remote = self.exchange_records(std::slice::from_ref(local), 1)?;
        Ok(remote.remove(0))
    }

    /// srq: sends `local` padded with zero records to [`SRQ_MAX_QP`]
    /// messages, reads as many back, sends `done`; returns the first
    /// `local.len()` remote records (both sides must use the same `-q`).
    pub fn exchange_srq(self, local: &[PpDest]) -> Result<Vec<PpDest>, OobError> {
        if local.is_empty() || local.len() > SRQ_MAX_QP {
            return Err(OobError::Sequence {
                reason: format!("srq needs 1..={SRQ_MAX_QP} QPs, got {}", local.len()),
            });
        }
        self.exchange_records(local, SRQ_MAX_QP)
    }

    fn exchange_records(
        mut self,
        local: &[PpDest],
        records: usize,
    ) -> Result<Vec<PpDest>, OobError> {
        for i in 0..records {
            let d = local.get(i).copied().unwrap_or_default();
            self.stream.send("our address", &d.encode())?;
        }
        let mut remote = Vec::with_capacity(local.len());
        for i in 0..records {
            let msg = self.stream.recv(&record_name(i, records), MSG_LEN)?;
            if i < local.len() {
                remote.push(PpDest::decode(&msg)?);
            }
        }
        self.stream.send("done", DONE)?;
        self.stream.close();
        Ok(remote)
    }
}

fn record_name(i: usize, records: usize) -> String {
    if records == 1 {
        "the peer's 52-byte address message".to_string()
    } else {
        format!("the peer's address record {i} of {records}")
    }
}

/// The server side: accept, read the client's address, (caller connects
/// its QP), reply, read `done`.
#[derive(Debug)]
pub struct PpServer {
    stream: OobStream,
    records: usize,
}

impl PpServer {
    /// Listens on `port` (0 = ephemeral) of every IPv4 address.
    pub fn listen(port: u16) -> Result<OobListener, OobError> {
        OobListener::bind(None, port)
    }

    /// Accepts one client on `listener`.
    pub fn accept(listener: OobListener, timeouts: PpTimeouts) -> Result<Self, OobError> {
        let stream = listener.accept(timeouts.accept, timeouts.io)?;
        Ok(PpServer { stream, records: 1 })
    }

    #[allow(dead_code)] // used by tests/oob_golden.rs
    /// The client's address.
    pub fn peer(&self) -> &str {
        self.stream.peer()
    }

    /// rc/uc/ud: reads the client's 52-byte address.
    pub fn read_remote(&mut self) -> Result<PpDest, OobError> {
        self.records = 1;
        let msg = self.stream.recv(&record_name(0, 1), MSG_LEN)?;
        PpDest::decode(&msg)
    }

    /// srq: reads [`SRQ_MAX_QP`] records and returns the first `num_qp`.
    pub fn read_remote_srq(&mut self, num_qp: usize) -> Result<Vec<PpDest>, OobError> {
        self.records = SRQ_MAX_QP;
        let mut out = Vec::with_capacity(num_qp);
        for i in 0..SRQ_MAX_QP {
            let msg = self.stream.recv(&record_name(i, SRQ_MAX_QP), MSG_LEN)?;
            if i < num_qp {
                out.push(PpDest::decode(&msg)?);
            }
        }
        Ok(out)
    }

    /// Sends our address(es) (padded to [`SRQ_MAX_QP`] after
    /// [`PpServer::read_remote_srq`]) and waits for the client's `done`.
    pub fn reply(mut self, local: &[PpDest]) -> Result<(), OobError> {
        for i in 0..self.records {
            let d = local.get(i).copied().unwrap_or_default();
            self.stream.send("our address", &d.encode())?;
        }
        let done = self.stream.recv("the client's \"done\"", DONE.len())?;
        if &done[..] != DONE {
            return Err(OobError::Malformed {
                what: "\"done\" message".to_string(),
                bytes: done,
                reason: format!("expected \"{}\"", escape_bytes(DONE)),
            });
        }
        self.stream.close();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PCAP_MSG: &[u8; 52] = b"0000:000011:dc9985:00000000000000000000ffff0a4d0002\0";

    #[test]
    fn encodes_the_pcap_message() {
        let mut gid = [0u8; 16];
        gid[10..].copy_from_slice(&[0xff, 0xff, 10, 77, 0, 2]);
        let d = PpDest {
            lid: 0,
            qpn: 0x11,
            psn: 0xdc9985,
            gid,
        };
        assert_eq!(&d.encode(), PCAP_MSG);
        assert_eq!(PpDest::decode(PCAP_MSG).unwrap(), d);
        assert!(d.is_global());
        assert!(!PpDest::default().is_global());
    }

    #[test]
    fn zero_record_is_all_zero_digits() {
        assert_eq!(
            &PpDest::default().encode(),
            b"0000:000000:000000:00000000000000000000000000000000\0"
        );
    }

    #[test]
    fn malformed_names_the_bytes() {
        let e = PpDest::decode(b"0000:zz:000000:00\0").unwrap_err();
        let s = e.to_string();
        assert!(s.contains("QPN \"zz\""), "{s}");
        assert!(s.contains("0000:zz:000000:00\\0"), "{s}");
        let e = PpDest::decode(b"0000:000011:dc9985:0000\0").unwrap_err();
        assert!(e.to_string().contains("32 hexadecimal digits"));
        assert!(PpDest::decode(b"0000:1000000:0:00000000000000000000000000000000\0").is_err());
    }
}
