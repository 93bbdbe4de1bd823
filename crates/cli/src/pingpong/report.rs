//! The stdout lines of rdma-core's pingpong tools (docs/oob-and-tools.md
//! §1.6), as pure functions.

use super::oob::PpDest;
use super::Tool;

/// The GID as glibc's `inet_ntop(AF_INET6, …)` prints it: `::` for zero,
/// `::ffff:10.77.0.2` for v4-mapped, `::1.2.3.4` for v4-compatible, the
/// first longest run of two or more zero groups compressed.
pub fn gid_to_string(gid: &[u8; 16]) -> String {
    let words: Vec<u16> = gid
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    // Longest run of zero words (first one wins on ties), length >= 2.
    let mut best: Option<(usize, usize)> = None;
    let mut cur: Option<(usize, usize)> = None;
    for (i, &w) in words.iter().enumerate() {
        if w == 0 {
            cur = Some(match cur {
                None => (i, 1),
                Some((b, l)) => (b, l + 1),
            });
        } else if let Some(c) = cur.take() {
            best = longer(best, c);
        }
    }
    if let Some(c) = cur {
        best = longer(best, c);
    }
    let best = best.filter(|b| b.1 >= 2);
    let mut s = String::new();
    let mut i = 0;
    while i < 8 {
        if let Some((base, len)) = best {
            if i == base {
                s.push(':');
                i += len;
                if i == 8 {
                    s.push(':');
                }
                continue;
            }
        }
        if i > 0 {
            s.push(':');
        }
        let embedded_v4 = i == 6
            && best.is_some_and(|(b, l)| b == 0 && (l == 6 || (l == 5 && words[5] == 0xffff)));
        if embedded_v4 {
            s.push_str(&format!("{}.{}.{}.{}", gid[12], gid[13], gid[14], gid[15]));
            break;
        }
        s.push_str(&format!("{:x}", words[i]));
        i += 1;
    }
    s
}

/// The longer of two zero runs `(base, len)`, the earlier on a tie.
fn longer(best: Option<(usize, usize)>, c: (usize, usize)) -> Option<(usize, usize)> {
    match best {
        Some(b) if b.1 >= c.1 => Some(b),
        _ => Some(c),
    }
}

/// `  local address:  LID 0x%04x, QPN 0x%06x, PSN 0x%06x, GID %s` — with
/// ud's quirk `PSN 0x%06x: GID`.
pub fn local_address_line(tool: Tool, d: &PpDest) -> String {
    let sep = if matches!(tool, Tool::Ud | Tool::Srd) {
        ":"
    } else {
        ","
    };
    format!(
        "  local address:  LID 0x{:04x}, QPN 0x{:06x}, PSN 0x{:06x}{sep} GID {}",
        d.lid,
        d.qpn,
        d.psn,
        gid_to_string(&d.gid)
    )
}

/// `  remote address: LID 0x%04x, QPN 0x%06x, PSN 0x%06x, GID %s` (all
/// four tools).
pub fn remote_address_line(d: &PpDest) -> String {
    format!(
        "  remote address: LID 0x{:04x}, QPN 0x{:06x}, PSN 0x{:06x}, GID {}",
        d.lid,
        d.qpn,
        d.psn,
        gid_to_string(&d.gid)
    )
}

/// The elapsed time the tools compute, in **f32** microseconds:
/// `(end.tv_sec-start.tv_sec)*1000000 + (end.tv_usec-start.tv_usec)`.
pub fn elapsed_usec(start: (i64, i64), end: (i64, i64)) -> f32 {
    ((end.0 - start.0) * 1_000_000 + (end.1 - start.1)) as f32
}

/// The two result lines, `%lld bytes in %.2f seconds = %.2f Mbit/sec` and
/// `%d iters in %.2f seconds = %.2f usec/iter`, with the tools' mix of
/// float and double arithmetic (`size * iters * 2` bytes).
pub fn result_lines(size: u32, iters: u32, usec: f32) -> [String; 2] {
    let bytes = size as i64 * iters as i64 * 2;
    let secs = usec as f64 / 1_000_000.0;
    let mbit = bytes as f64 * 8.0 / usec as f64;
    let per_iter = (usec / iters as f32) as f64;
    [
        format!("{bytes} bytes in {secs:.2} seconds = {mbit:.2} Mbit/sec"),
        format!("{iters} iters in {secs:.2} seconds = {per_iter:.2} usec/iter"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapped(a: u8, b: u8, c: u8, d: u8) -> [u8; 16] {
        let mut g = [0u8; 16];
        g[10..].copy_from_slice(&[0xff, 0xff, a, b, c, d]);
        g
    }

    #[test]
    fn gid_strings_match_inet_ntop() {
        assert_eq!(gid_to_string(&mapped(10, 77, 0, 2)), "::ffff:10.77.0.2");
        assert_eq!(gid_to_string(&[0; 16]), "::");
        let mut one = [0u8; 16];
        one[15] = 1;
        assert_eq!(gid_to_string(&one), "::1");
        let mut compat = [0u8; 16];
        compat[12..].copy_from_slice(&[1, 2, 3, 4]);
        assert_eq!(gid_to_string(&compat), "::1.2.3.4");
        let link_local = [
            0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0x02, 0x11, 0x22, 0xff, 0xfe, 0x33, 0x44, 0x55,
        ];
        assert_eq!(gid_to_string(&link_local), "fe80::211:22ff:fe33:4455");
        // First longest run wins; single zero groups are not compressed.
        let g = [0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 3, 0, 0, 0, 4];
        assert_eq!(gid_to_string(&g), "1:0:2::3:0:4");
        let g = [0, 1, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 3, 0, 4];
        assert_eq!(gid_to_string(&g), "1::2:0:0:3:4");
        let mut tail = [0u8; 16];
        tail[0] = 0x20;
        tail[1] = 0x01;
        assert_eq!(gid_to_string(&tail), "2001::");
    }

    #[test]
    fn address_lines_match_the_doc_example() {
        let local = PpDest {
            lid: 0,
            qpn: 0x11,
            psn: 0x49e5d0,
            gid: mapped(10, 77, 0, 2),
        };
        let remote = PpDest {
            lid: 0,
            qpn: 0x11,
            psn: 0xb31c56,
            gid: mapped(10, 77, 0, 3),
        };
        assert_eq!(
            local_address_line(Tool::Rc, &local),
            "  local address:  LID 0x0000, QPN 0x000011, PSN 0x49e5d0, GID ::ffff:10.77.0.2"
        );
        assert_eq!(
            local_address_line(Tool::Ud, &local),
            "  local address:  LID 0x0000, QPN 0x000011, PSN 0x49e5d0: GID ::ffff:10.77.0.2"
        );
        assert_eq!(
            remote_address_line(&remote),
            "  remote address: LID 0x0000, QPN 0x000011, PSN 0xb31c56, GID ::ffff:10.77.0.3"
        );
    }

    #[test]
    fn result_lines_match_the_doc_example() {
        // 12400 us for 1000 iterations of 4096 bytes: 8192000 bytes.
        let usec = elapsed_usec((100, 990_000), (101, 2_400));
        assert_eq!(usec, 12_400.0);
        let [a, b] = result_lines(4096, 1000, usec);
        assert_eq!(a, "8192000 bytes in 0.01 seconds = 5285.16 Mbit/sec");
        assert_eq!(b, "1000 iters in 0.01 seconds = 12.40 usec/iter");
        // The doc's example prints 5283.11 Mbit/sec, which no whole number
        // of microseconds gives (12404 → 5283.46, 12405 → 5283.03).
        let [a, b] = result_lines(4096, 1000, 12_405.0);
        assert_eq!(a, "8192000 bytes in 0.01 seconds = 5283.03 Mbit/sec");
        assert_eq!(b, "1000 iters in 0.01 seconds = 12.40 usec/iter");
    }

    #[test]
    fn f32_precision_shows_like_c() {
        // 16777217 us is not representable in f32: C prints 16.78 s from 16777216.
        let usec = elapsed_usec((0, 0), (16, 777_217));
        assert_eq!(usec, 16_777_216.0);
        let [_, b] = result_lines(1, 3, usec);
        // 16777216f / 3 = 5592405.5 (f32: 5592405.5), printed %.2f.
        assert_eq!(b, "3 iters in 16.78 seconds = 5592405.50 usec/iter");
    }
}
