//! Gather and scatter over a scatter/gather list, through [`Memory`]: the
//! one place every engine (RC/UC/UD here, SRD in `softverbs-srd`) copies
//! between packets and registered memory.

use crate::memory::{MemError, MemKey, Memory};
use crate::wr::{Payload, Sge};

/// Copy `dst.len()` bytes starting `offset` bytes into the payload.
/// Fails with `OutOfBounds` when the payload is shorter.
pub fn gather(
    mem: &dyn Memory,
    payload: &Payload,
    offset: u64,
    dst: &mut [u8],
) -> Result<(), MemError> {
    match payload {
        Payload::Inline(data) => {
            let start = usize::try_from(offset).map_err(|_| MemError::OutOfBounds)?;
            let src = data
                .get(start..start + dst.len())
                .ok_or(MemError::OutOfBounds)?;
            dst.copy_from_slice(src);
            Ok(())
        }
        Payload::Sgl(sgl) => {
            let mut done = 0;
            for (sge, at, n) in walk(sgl, offset, dst.len()) {
                mem.read(
                    MemKey::Local(sge.lkey),
                    sge.addr + at,
                    &mut dst[done..done + n],
                )?;
                done += n;
            }
            if done == dst.len() {
                Ok(())
            } else {
                Err(MemError::OutOfBounds)
            }
        }
    }
}

/// Copy `src` into the scatter list starting `offset` bytes in. Fails with
/// `OutOfBounds` (a length error for the caller) if the list is too short.
pub fn scatter(mem: &mut dyn Memory, sgl: &[Sge], offset: u64, src: &[u8]) -> Result<(), MemError> {
    let mut done = 0;
    for (sge, at, n) in walk(sgl, offset, src.len()) {
        mem.write(MemKey::Local(sge.lkey), sge.addr + at, &src[done..done + n])?;
        done += n;
    }
    if done == src.len() {
        Ok(())
    } else {
        Err(MemError::OutOfBounds)
    }
}

/// The pieces `(sge, offset within sge, length)` that cover `len` bytes
/// starting at `offset` of the list.
fn walk(sgl: &[Sge], mut offset: u64, len: usize) -> impl Iterator<Item = (&Sge, u64, usize)> {
    let mut left = len;
    sgl.iter().filter_map(move |sge| {
        let sge_len = u64::from(sge.length);
        if left == 0 {
            return None;
        }
        if offset >= sge_len {
            offset -= sge_len;
            return None;
        }
        let n = usize::try_from((sge_len - offset).min(left as u64)).unwrap_or(left);
        let at = offset;
        offset = 0;
        left -= n;
        Some((sge, at, n))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walk_spans_sges() {
        let sgl = [
            Sge {
                addr: 100,
                length: 4,
                lkey: 1,
            },
            Sge {
                addr: 200,
                length: 4,
                lkey: 2,
            },
            Sge {
                addr: 300,
                length: 4,
                lkey: 3,
            },
        ];
        let v: Vec<_> = walk(&sgl, 2, 7).map(|(s, at, n)| (s.lkey, at, n)).collect();
        assert_eq!(v, vec![(1, 2, 2), (2, 0, 4), (3, 0, 1)]);
        assert_eq!(walk(&sgl, 12, 1).count(), 0);
        assert_eq!(walk(&sgl, 0, 0).count(), 0);
    }
}
