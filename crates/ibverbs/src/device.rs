//! Devices: the list (`ibv_get_device_list`), names, GUIDs, indices, and
//! the queries that need only the device (`ibv_read_sysfs_file` answers
//! for our own devices).

#![allow(unsafe_code)] // C entry points (#[no_mangle]) and raw pointers from C

use core::ffi::{c_char, c_int, CStr};
use std::sync::OnceLock;

use softverbs::DeviceInfo;

use crate::sys;
use crate::util::{copy_cstr, null, set_errno, EINVAL, ENOMEM};

const DEVICE_MAGIC: u64 = 0x736f_6674_6465_7631; // "softdev1"

/// A device as C sees it (`ibv_device`, first) and what we know of it.
#[repr(C)]
pub(crate) struct DevBox {
    pub c: sys::ibv_device,
    magic: u64,
    pub index: c_int,
    pub info: DeviceInfo,
}

// SAFETY: the C part is written once at creation and only read afterwards;
// its raw pointers are null.
unsafe impl Sync for DevBox {}
// SAFETY: as above.
unsafe impl Send for DevBox {}

// The Vec is never changed once built, so its elements never move: the
// `ibv_device` pointers handed out stay valid for the process's lifetime.
static DEVICES: OnceLock<Result<Vec<DevBox>, String>> = OnceLock::new();

/// The devices of this process, created once (`SOFTVERBS_DEVICES`).
pub(crate) fn devices() -> Result<&'static [DevBox], &'static str> {
    let r = DEVICES.get_or_init(|| {
        let infos = softverbs::devices().map_err(|e| e.to_string())?;
        Ok(infos
            .into_iter()
            .enumerate()
            .map(|(i, info)| {
                let mut c = sys::ibv_device {
                    node_type: sys::IBV_NODE_CA,
                    transport_type: sys::IBV_TRANSPORT_IB,
                    ..Default::default()
                };
                copy_cstr(&mut c.name, &info.name);
                copy_cstr(&mut c.dev_name, &format!("uverbs{i}"));
                copy_cstr(
                    &mut c.dev_path,
                    &format!("/sys/class/infiniband_verbs/uverbs{i}"),
                );
                copy_cstr(
                    &mut c.ibdev_path,
                    &format!("/sys/class/infiniband/{}", info.name),
                );
                DevBox {
                    c,
                    magic: DEVICE_MAGIC,
                    index: i as c_int,
                    info,
                }
            })
            .collect())
    });
    match r {
        Ok(v) => Ok(v),
        Err(e) => Err(e.as_str()),
    }
}

/// The names of the devices this library lists.
pub fn device_names() -> Vec<String> {
    devices()
        .map(|d| d.iter().map(|d| d.info.name.clone()).collect())
        .unwrap_or_default()
}

/// The device behind a C pointer, if it is one of ours.
pub(crate) fn dev_ref(p: *mut sys::ibv_device) -> Option<&'static DevBox> {
    let all = devices().ok()?;
    all.iter()
        .find(|d| core::ptr::eq(&d.c, p.cast_const()))
        .filter(|d| d.magic == DEVICE_MAGIC)
}

/// `ibv_get_device_list`: a NULL-terminated array, freed by
/// `ibv_free_device_list`.
///
/// # Safety
/// `num_devices` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn ibv_get_device_list(num_devices: *mut c_int) -> *mut *mut sys::ibv_device {
    let all = match devices() {
        Ok(v) => v,
        Err(e) => {
            eprintln!("softverbs libibverbs: {e}");
            if !num_devices.is_null() {
                // SAFETY: the caller passes a writable int or NULL.
                unsafe { *num_devices = 0 };
            }
            return null(EINVAL);
        }
    };
    let mut list: Vec<*mut sys::ibv_device> = all
        .iter()
        .map(|d| core::ptr::addr_of!(d.c).cast_mut())
        .collect();
    list.push(core::ptr::null_mut());
    if !num_devices.is_null() {
        // SAFETY: as above.
        unsafe { *num_devices = all.len() as c_int };
    }
    Box::into_raw(list.into_boxed_slice()).cast()
}

/// `ibv_free_device_list`.
///
/// # Safety
/// `list` came from `ibv_get_device_list` and is freed once.
#[no_mangle]
pub unsafe extern "C" fn ibv_free_device_list(list: *mut *mut sys::ibv_device) {
    if list.is_null() {
        return;
    }
    let mut n = 0;
    // SAFETY: the list is NULL-terminated (we built it).
    while !unsafe { *list.add(n) }.is_null() {
        n += 1;
    }
    // SAFETY: the list was a boxed slice of n + 1 pointers.
    drop(unsafe { Box::from_raw(core::ptr::slice_from_raw_parts_mut(list, n + 1)) });
}

/// `ibv_get_device_name`.
///
/// # Safety
/// `device` came from `ibv_get_device_list`.
#[no_mangle]
pub unsafe extern "C" fn ibv_get_device_name(device: *mut sys::ibv_device) -> *const c_char {
    match dev_ref(device) {
        Some(d) => d.c.name.as_ptr(),
        None => null::<c_char>(EINVAL).cast_const(),
    }
}

/// `ibv_get_device_guid`: the node GUID in network byte order.
///
/// # Safety
/// `device` came from `ibv_get_device_list`.
#[no_mangle]
pub unsafe extern "C" fn ibv_get_device_guid(device: *mut sys::ibv_device) -> sys::__be64 {
    match dev_ref(device) {
        Some(d) => d.info.node_guid.to_be(),
        None => {
            set_errno(EINVAL);
            0
        }
    }
}

/// `ibv_get_device_index`: the index, or -1.
///
/// # Safety
/// `device` came from `ibv_get_device_list`.
#[no_mangle]
pub unsafe extern "C" fn ibv_get_device_index(device: *mut sys::ibv_device) -> c_int {
    dev_ref(device).map_or(-1, |d| d.index)
}

/// What `ibv_read_sysfs_file` answers for a file of one of our devices
/// (`/sys/class/infiniband/<dev>/<file>`, or `ports/1/<file>`).
pub(crate) fn sysfs_answer(dir: &str, file: &str) -> Option<String> {
    let all = devices().ok()?;
    let path = format!("{}/{}", dir.trim_end_matches('/'), file);
    all.iter().find_map(|d| {
        let base = format!("/sys/class/infiniband/{}/", d.info.name);
        let rest = path.strip_prefix(&base)?;
        let c = &d.info.caps;
        Some(match rest {
            "node_type" => "1: CA".to_string(),
            "fw_ver" => c.fw_ver.clone(),
            "hw_rev" => c.hw_ver.to_string(),
            "hca_type" => "softverbs".to_string(),
            "board_id" => format!("softverbs {}", d.info.kind),
            "node_desc" => format!("softverbs {}", d.info.name),
            "node_guid" | "sys_image_guid" => {
                let g = c.node_guid.to_be_bytes();
                format!(
                    "{:02x}{:02x}:{:02x}{:02x}:{:02x}{:02x}:{:02x}{:02x}",
                    g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7]
                )
            }
            "ports/1/link_layer" => "Ethernet".to_string(),
            "ports/1/state" => "4: ACTIVE".to_string(),
            "ports/1/phys_state" => "5: LinkUp".to_string(),
            _ => return None,
        })
    })
}

/// `ibv_read_sysfs_file`: our devices' files are answered here; any other
/// path is read from the file system, as libibverbs does. Returns the
/// length read (a trailing newline removed), or -1.
///
/// # Safety
/// `dir` and `file` are C strings; `buf` holds `size` bytes.
#[no_mangle]
pub unsafe extern "C" fn ibv_read_sysfs_file(
    dir: *const c_char,
    file: *const c_char,
    buf: *mut c_char,
    size: usize,
) -> c_int {
    if dir.is_null() || file.is_null() || buf.is_null() || size == 0 {
        return crate::util::minus_one(EINVAL);
    }
    // SAFETY: the caller passes NUL-terminated strings.
    let (d, f) = unsafe { (CStr::from_ptr(dir), CStr::from_ptr(file)) };
    let (d, f) = (d.to_string_lossy(), f.to_string_lossy());
    let text = match sysfs_answer(&d, &f) {
        Some(t) => t,
        None => match std::fs::read(format!("{d}/{f}")) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) => return crate::util::minus_one(e.raw_os_error().unwrap_or(ENOMEM)),
        },
    };
    let text = text.trim_end_matches('\n');
    let n = text.len().min(size - 1);
    // SAFETY: `buf` holds `size` > n bytes.
    let out = unsafe { core::slice::from_raw_parts_mut(buf, size) };
    // copy_cstr cuts at n bytes itself (slicing the str there would panic
    // inside a multi-byte character).
    copy_cstr(out, text);
    n as c_int
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_names_and_free() {
        let mut n = -1;
        // SAFETY: a valid out-pointer; the list is freed once.
        unsafe {
            let list = ibv_get_device_list(&mut n);
            assert!(!list.is_null());
            assert!(n >= 1);
            for i in 0..n as usize {
                let d = *list.add(i);
                let name = CStr::from_ptr(ibv_get_device_name(d)).to_str().unwrap();
                assert_eq!(name, device_names()[i]);
                assert_eq!(ibv_get_device_index(d), i as c_int);
                assert_ne!(ibv_get_device_guid(d), 0);
            }
            assert!((*list.add(n as usize)).is_null());
            ibv_free_device_list(list);
        }
    }

    #[test]
    fn sysfs_of_our_devices() {
        let name = &device_names()[0];
        let dir = format!("/sys/class/infiniband/{name}");
        assert_eq!(sysfs_answer(&dir, "node_type").as_deref(), Some("1: CA"));
        assert!(sysfs_answer(&dir, "no_such_file").is_none());
        assert!(sysfs_answer("/sys/class/infiniband/nope", "fw_ver").is_none());
    }

    #[test]
    fn sysfs_read_cuts_inside_a_character() {
        let dir = std::env::temp_dir().join(format!("svibv-sysfs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("f"), "\u{e9}\u{e9}\n").unwrap();
        let d = std::ffi::CString::new(dir.to_str().unwrap()).unwrap();
        let mut buf = [1 as c_char; 2];
        // SAFETY: C strings and a buffer of 2 bytes.
        let n = unsafe { ibv_read_sysfs_file(d.as_ptr(), c"f".as_ptr(), buf.as_mut_ptr(), 2) };
        assert_eq!(n, 1);
        assert_eq!(buf[1], 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
