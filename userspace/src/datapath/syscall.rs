//! Map operations aya 0.14 does not expose, made with the `bpf(2)` syscall.
//!
//! - `BPF_MAP_LOOKUP_BATCH` (kernel ≥ 5.6 for hash maps, per-CPU and LRU
//!   included) reads hundreds of flows per syscall. aya's iterator makes two
//!   syscalls per entry (`GET_NEXT_KEY` + `LOOKUP_ELEM`): at 50,000 flows
//!   every 5 s that alone would cost more CPU than the daemon's budget.
//! - `BPF_MAP_LOOKUP_AND_DELETE_ELEM` on hash maps (kernel ≥ 5.14) removes an
//!   idle flow and returns its final counters atomically, so bytes that arrive
//!   between our last read and the delete are not lost. Older kernels fall
//!   back to lookup + delete.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_MAP_LOOKUP_AND_DELETE_ELEM: libc::c_long = 21;
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;

/// `union bpf_attr` as used by the element commands.
#[repr(C)]
#[derive(Default)]
struct ElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// `union bpf_attr` as used by the batch commands.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<()> {
    // SAFETY: `attr` is a valid, initialised bpf_attr prefix of the size passed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Size of one CPU's value in a per-CPU map's value buffer (rounded to 8).
pub fn percpu_stride(value_size: usize) -> usize {
    value_size.div_ceil(8) * 8
}

/// Reads every entry of a per-CPU hash map in batches, calling `each` with
/// the raw key bytes and the raw per-CPU value bytes (`ncpus` strides).
/// Returns the number of entries read.
pub fn lookup_all_percpu(
    map: BorrowedFd<'_>,
    key_size: usize,
    value_size: usize,
    ncpus: usize,
    batch: usize,
    mut each: impl FnMut(&[u8], &[u8]),
) -> io::Result<usize> {
    let stride = percpu_stride(value_size) * ncpus;
    let mut batch = batch.max(16);
    let mut keys = vec![0u8; key_size * batch];
    let mut values = vec![0u8; stride * batch];
    // Hash maps use a u32 bucket cursor; leave room for any token size.
    let mut token_in = [0u8; 64];
    let mut token_out = [0u8; 64];
    let mut first = true;
    let mut total = 0;
    loop {
        let mut attr = BatchAttr {
            in_batch: if first {
                0
            } else {
                token_in.as_mut_ptr() as u64
            },
            out_batch: token_out.as_mut_ptr() as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: batch as u32,
            map_fd: map.as_raw_fd() as u32,
            ..Default::default()
        };
        let res = bpf(BPF_MAP_LOOKUP_BATCH, &mut attr);
        let n = attr.count as usize;
        match &res {
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) && n == 0 => {
                // One bucket holds more entries than the batch: grow and retry.
                batch *= 2;
                keys.resize(key_size * batch, 0);
                values.resize(stride * batch, 0);
                continue;
            }
            Err(e) if e.raw_os_error() != Some(libc::ENOENT) => return Err(res.unwrap_err()),
            _ => {}
        }
        for i in 0..n.min(batch) {
            each(
                &keys[i * key_size..(i + 1) * key_size],
                &values[i * stride..(i + 1) * stride],
            );
        }
        total += n;
        if res.is_err() {
            // ENOENT: the walk is complete.
            return Ok(total);
        }
        token_in = token_out;
        first = false;
    }
}

/// Removes one entry and returns its per-CPU value bytes as it was at removal,
/// or `None` when the key is no longer there.
pub fn lookup_and_delete_percpu(
    map: BorrowedFd<'_>,
    key: &[u8],
    value_size: usize,
    ncpus: usize,
) -> io::Result<Option<Vec<u8>>> {
    let mut value = vec![0u8; percpu_stride(value_size) * ncpus];
    let mut attr = ElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: key.as_ptr() as u64,
        value: value.as_mut_ptr() as u64,
        ..Default::default()
    };
    match bpf(BPF_MAP_LOOKUP_AND_DELETE_ELEM, &mut attr) {
        Ok(()) => return Ok(Some(value)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | ENOTSUPP)) => {}
        Err(e) => return Err(e),
    }
    // Kernel < 5.14: read, then delete (a packet in between is lost).
    let mut attr = ElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: key.as_ptr() as u64,
        value: value.as_mut_ptr() as u64,
        ..Default::default()
    };
    match bpf(BPF_MAP_LOOKUP_ELEM, &mut attr) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut del = ElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: key.as_ptr() as u64,
        ..Default::default()
    };
    match bpf(BPF_MAP_DELETE_ELEM, &mut del) {
        Ok(()) => Ok(Some(value)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Linux's internal ENOTSUPP (524), which some map types return for
/// commands they lack; libc has no name for it.
const ENOTSUPP: i32 = 524;
