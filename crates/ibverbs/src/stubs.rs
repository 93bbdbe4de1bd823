//! What softverbs does not implement: the symbols exist (every version node
//! must, or the loader refuses the library; binaries are BIND_NOW, so
//! libmlx5's and libefa's imports must resolve) and fail cleanly.
//!
//! The private `ibv_cmd_*` / `verbs_*` interface serves providers (drivers
//! loaded by the real libibverbs); softverbs has no providers, so a
//! provider library that is loaded (perftest links libmlx5 and libefa)
//! registers itself with `verbs_register_driver_34` and is never called.
//!
//! A stub ignores its arguments: with the SysV calling convention a
//! function defined without parameters may be called with any.

#![allow(unsafe_code)] // C entry points (#[no_mangle]) and an exported data object

use core::ffi::{c_int, c_uint, c_void};
use std::sync::atomic::AtomicBool;

use crate::util::{minus_one, null, EOPNOTSUPP};

/// `verbs_allow_disassociate_destroy` (IBVERBS_PRIVATE_34, a `bool` that
/// providers read).
#[no_mangle]
pub static verbs_allow_disassociate_destroy: AtomicBool = AtomicBool::new(false);

/// Verbs that return an errno: `EOPNOTSUPP`.
macro_rules! errno_stubs {
    ($($name:ident),* $(,)?) => {$(
        #[doc = concat!("`", stringify!($name), "`: not supported, returns `EOPNOTSUPP`.")]
        #[no_mangle]
        pub extern "C" fn $name() -> c_int {
            EOPNOTSUPP
        }
    )*};
}

/// Verbs that return a pointer: NULL with errno `EOPNOTSUPP`.
macro_rules! null_stubs {
    ($($name:ident),* $(,)?) => {$(
        #[doc = concat!("`", stringify!($name), "`: not supported, NULL with errno `EOPNOTSUPP`.")]
        #[no_mangle]
        pub extern "C" fn $name() -> *mut c_void {
            null(EOPNOTSUPP)
        }
    )*};
}

/// Verbs that return -1 on failure: -1 with errno `EOPNOTSUPP`.
macro_rules! minus_one_stubs {
    ($($name:ident),* $(,)?) => {$(
        #[doc = concat!("`", stringify!($name), "`: not supported, -1 with errno `EOPNOTSUPP`.")]
        #[no_mangle]
        pub extern "C" fn $name() -> c_int {
            minus_one(EOPNOTSUPP)
        }
    )*};
}

/// Functions without a result: nothing happens.
macro_rules! void_stubs {
    ($($name:ident),* $(,)?) => {$(
        #[doc = concat!("`", stringify!($name), "`: does nothing here.")]
        #[no_mangle]
        pub extern "C" fn $name() {}
    )*};
}

errno_stubs!(
    execute_ioctl,
    ibv_attach_mcast,
    ibv_detach_mcast,
    ibv_query_ece,
    ibv_set_ece,
    ibv_resolve_eth_l2_from_gid,
    ibv_cmd_advise_mr,
    ibv_cmd_alloc_dm,
    ibv_cmd_alloc_mw,
    ibv_cmd_alloc_pd,
    ibv_cmd_attach_mcast,
    ibv_cmd_close_xrcd,
    ibv_cmd_create_ah,
    ibv_cmd_create_counters,
    ibv_cmd_create_cq,
    ibv_cmd_create_cq_ex,
    ibv_cmd_create_flow,
    ibv_cmd_create_flow_action_esp,
    ibv_cmd_create_qp,
    ibv_cmd_create_qp_ex,
    ibv_cmd_create_qp_ex2,
    ibv_cmd_create_rwq_ind_table,
    ibv_cmd_create_srq,
    ibv_cmd_create_srq_ex,
    ibv_cmd_create_wq,
    ibv_cmd_dealloc_mw,
    ibv_cmd_dealloc_pd,
    ibv_cmd_dereg_mr,
    ibv_cmd_destroy_ah,
    ibv_cmd_destroy_counters,
    ibv_cmd_destroy_cq,
    ibv_cmd_destroy_flow,
    ibv_cmd_destroy_flow_action,
    ibv_cmd_destroy_qp,
    ibv_cmd_destroy_rwq_ind_table,
    ibv_cmd_destroy_srq,
    ibv_cmd_destroy_wq,
    ibv_cmd_detach_mcast,
    ibv_cmd_free_dm,
    ibv_cmd_get_context,
    ibv_cmd_modify_cq,
    ibv_cmd_modify_flow_action_esp,
    ibv_cmd_modify_qp,
    ibv_cmd_modify_qp_ex,
    ibv_cmd_modify_srq,
    ibv_cmd_modify_wq,
    ibv_cmd_open_qp,
    ibv_cmd_open_xrcd,
    ibv_cmd_poll_cq,
    ibv_cmd_post_recv,
    ibv_cmd_post_send,
    ibv_cmd_post_srq_recv,
    ibv_cmd_query_context,
    ibv_cmd_query_device_any,
    ibv_cmd_query_mr,
    ibv_cmd_query_port,
    ibv_cmd_query_qp,
    ibv_cmd_query_srq,
    ibv_cmd_read_counters,
    ibv_cmd_reg_dm_mr,
    ibv_cmd_reg_dmabuf_mr,
    ibv_cmd_reg_mr,
    ibv_cmd_req_notify_cq,
    ibv_cmd_rereg_mr,
    ibv_cmd_resize_cq,
);

null_stubs!(
    _verbs_init_and_alloc_context,
    verbs_open_device,
    ibv_import_device,
    ibv_import_dm,
    ibv_import_mr,
    ibv_import_pd,
    ibv_reg_dmabuf_mr,
);

minus_one_stubs!(ibv_read_ibdev_sysfs_file);

void_stubs!(
    __verbs_log,
    verbs_init_cq,
    verbs_register_driver_34,
    verbs_set_ops,
    verbs_uninit_context,
    ibv_copy_ah_attr_from_kern,
    ibv_copy_path_rec_from_kern,
    ibv_copy_path_rec_to_kern,
    ibv_copy_qp_attr_from_kern,
    ibv_unimport_dm,
    ibv_unimport_mr,
    ibv_unimport_pd,
);

/// `__ioctl_final_num_attrs`: providers' ioctl helper; no ioctl is built here.
#[no_mangle]
pub extern "C" fn __ioctl_final_num_attrs(num_attrs: c_uint, _link: *mut c_void) -> c_uint {
    num_attrs
}
